//! Deploying the registry and then the splitter that pays by it (as `script/Deploy.s.sol`
//! does), from the bytecode in `assets/contracts/`, and the record of where they went.

use std::path::{Path, PathBuf};

use alloy_network::TransactionBuilder;
use alloy_primitives::{Address, B256, keccak256};
use alloy_rpc_types_eth::TransactionRequest;
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Result;
use super::client::{ChainClient, ContractAddresses, TxOutcome};
use super::contracts::{AdapterRegistry, RewardSplitter};
use super::error::ChainError;

/// The record's file name in the local chain's state folder.
pub const DEPLOYMENT_FILE: &str = "deployment.json";

/// Where the contracts were deployed, and what to recognise them by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    pub chain_id: u64,
    pub registry: Address,
    pub splitter: Address,
    /// The block of the registry's deployment: where a scan of the registry's events starts.
    pub deploy_block: u64,
    pub deployer: Address,
    /// keccak256 of the code found at each address right after deployment.
    pub registry_code_hash: B256,
    pub splitter_code_hash: B256,
    /// [`artifacts_hash`] of the bytecode deployed: new artifacts mean new contracts.
    pub artifacts_hash: B256,
}

impl Deployment {
    pub fn contracts(&self) -> ContractAddresses {
        ContractAddresses {
            registry: self.registry,
            splitter: self.splitter,
        }
    }

    /// The record in `dir`, or `None` if there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(DEPLOYMENT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ChainError::Io {
                    what: "cannot read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ChainError::Deployment {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the record to `dir` (through a temporary file, so a crash leaves the old one).
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(DEPLOYMENT_FILE);
        let tmp = dir.join(format!("{DEPLOYMENT_FILE}.tmp"));
        let mut text = serde_json::to_string_pretty(self).map_err(|e| ChainError::Deployment {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ChainError::Io { what, path, source }
        };
        std::fs::write(&tmp, text).map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot write", &path))?;
        Ok(path)
    }
}

/// keccak256 of the registry's and the splitter's creation bytecode, as built into this binary.
pub fn artifacts_hash() -> B256 {
    keccak256(
        [
            &AdapterRegistry::BYTECODE[..],
            &RewardSplitter::BYTECODE[..],
        ]
        .concat(),
    )
}

/// Deploys the registry, then the splitter that pays by it, from `signer`.
pub async fn deploy(client: &ChainClient, signer: &PrivateKeySigner) -> Result<Deployment> {
    let registry_tx =
        TransactionRequest::default().with_deploy_code(AdapterRegistry::BYTECODE.clone());
    let registry_out = client
        .send("deploy AdapterRegistry", signer, registry_tx)
        .await?;
    let registry = created(client, &registry_out)?;
    let splitter_code = RewardSplitter::deploy_builder(client.provider().clone(), registry)
        .calldata()
        .clone();
    let splitter_tx = TransactionRequest::default().with_deploy_code(splitter_code);
    let splitter_out = client
        .send("deploy RewardSplitter", signer, splitter_tx)
        .await?;
    let splitter = created(client, &splitter_out)?;
    let deployment = Deployment {
        chain_id: client.chain_id(),
        registry,
        splitter,
        deploy_block: registry_out.block_number,
        deployer: signer.address(),
        registry_code_hash: client.code_hash(registry).await?,
        splitter_code_hash: client.code_hash(splitter).await?,
        artifacts_hash: artifacts_hash(),
    };
    info!(
        chain_id = deployment.chain_id,
        %registry,
        %splitter,
        block = deployment.deploy_block,
        "contracts deployed"
    );
    Ok(deployment)
}

fn created(client: &ChainClient, outcome: &TxOutcome) -> Result<Address> {
    outcome.contract_address.ok_or_else(|| ChainError::Rpc {
        url: client.url().to_string(),
        what: "deploy".into(),
        message: format!("the receipt of {} names no new contract", outcome.tx_hash),
    })
}

/// The contracts in `dir`'s record if they are still there (same chain, same code, same
/// artifacts); otherwise deployed anew from `signer` and recorded. The bool says whether the
/// record was reused.
pub async fn ensure_deployed(
    client: &ChainClient,
    signer: &PrivateKeySigner,
    dir: &Path,
) -> Result<(Deployment, bool)> {
    match Deployment::read(dir) {
        Ok(Some(existing)) => match still_there(client, &existing).await? {
            None => {
                info!(registry = %existing.registry, splitter = %existing.splitter, "reusing the deployed contracts");
                return Ok((existing, true));
            }
            Some(why) => warn!("deploying the contracts again: {why}"),
        },
        Ok(None) => {}
        Err(ChainError::Deployment { path, reason }) => {
            // Keep the unreadable file for a person to look at rather than overwrite it.
            let aside = path.with_extension("json.unreadable");
            warn!(path = %path.display(), %reason, "unreadable deployment record, moved aside");
            std::fs::rename(&path, &aside).map_err(|source| ChainError::Io {
                what: "cannot move aside",
                path,
                source,
            })?;
        }
        Err(e) => return Err(e),
    }
    let deployment = deploy(client, signer).await?;
    deployment.write(dir)?;
    Ok((deployment, false))
}

/// Why a recorded deployment cannot be reused, or `None` if it can.
async fn still_there(client: &ChainClient, d: &Deployment) -> Result<Option<String>> {
    if d.chain_id != client.chain_id() {
        return Ok(Some(format!(
            "the record is for chain {}, this is chain {}",
            d.chain_id,
            client.chain_id()
        )));
    }
    if d.artifacts_hash != artifacts_hash() {
        return Ok(Some("the contracts in this build have changed".into()));
    }
    for (name, address, hash) in [
        ("registry", d.registry, d.registry_code_hash),
        ("splitter", d.splitter, d.splitter_code_hash),
    ] {
        let code = client.code(address).await?;
        if code.is_empty() {
            return Ok(Some(format!("no code at the {name} address {address}")));
        }
        if keccak256(&code) != hash {
            return Ok(Some(format!("other code at the {name} address {address}")));
        }
    }
    Ok(None)
}
