//! The chain the studio registers adapters on and pays rewards through.
//!
//! By default it is the local chain: anvil on loopback, started on first use, its state in
//! `<workspace>/chain/` so records survive a restart, the registry and the reward splitter
//! deployed on first start (see [`wallet::chain`]). A running local chain is announced in
//! `chain/endpoint.json`, so a command run while `modelfactory serve` or `chain up` holds the
//! chain uses that one instead of starting a second anvil on the same state. Any other EVM
//! network is a setting (RPC URL, chain id, contract addresses), checked before it is saved.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ::wallet::chain::{
    ChainClient, ContractAddresses, DEV_MNEMONIC, LOCAL_CHAIN_ID, LocalChain, LocalChainOptions,
    Rewards, ensure_deployed,
};
use ::wallet::keystore::signer_from_mnemonic;
use ::wallet::{Address, B256, SecretString, U256};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Studio;
use crate::error::{Error, Result};
use crate::wallet::parse_address;

/// The settings key holding [`ChainSettings`] as JSON.
const SETTINGS_KEY: &str = "chain";
/// Announces a running local chain to other processes on the same workspace.
const ENDPOINT_FILE: &str = "endpoint.json";
/// What a new account on the local chain is given to pay gas with: 10 ETH.
const LOCAL_GAS_MONEY: u128 = 10_000_000_000_000_000_000;

/// Which chain to use. An empty `rpc_url` is the local chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSettings {
    #[serde(default)]
    pub rpc_url: String,
    /// Required for a remote chain: a wrong network is refused rather than written to.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// The registry and splitter addresses on a remote chain.
    #[serde(default)]
    pub registry: Option<String>,
    #[serde(default)]
    pub splitter: Option<String>,
}

impl ChainSettings {
    pub fn is_local(&self) -> bool {
        self.rpc_url.trim().is_empty()
    }
}

/// Where the chain stands, as `chain status` and Settings show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The local chain (anvil) rather than a configured network.
    pub local: bool,
    pub url: Option<String>,
    pub chain_id: Option<u64>,
    /// Whether the chain answered (for the local chain: whether it is running now).
    pub reachable: bool,
    pub block: Option<u64>,
    pub registry: Option<String>,
    pub splitter: Option<String>,
    /// The local chain's state file.
    pub state_file: Option<String>,
    /// Why it is not usable, when it is not.
    pub problem: Option<String>,
}

/// A chain connection with its contracts, checked.
#[derive(Clone)]
pub struct Connected {
    pub client: ChainClient,
    pub contracts: ContractAddresses,
}

impl Connected {
    pub fn local(&self) -> bool {
        self.client.chain_id() == LOCAL_CHAIN_ID
    }
}

/// What one process holds of the local chain: the anvil it started, if any.
#[derive(Default)]
pub(crate) struct ChainState {
    local: Mutex<Option<LocalChain>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Endpoint {
    url: String,
    pid: u32,
}

/// A payment into an adapter and how the contract split it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub manifest_hash: String,
    pub payer: String,
    /// Wei, as a decimal string (amounts exceed JSON's exact integers).
    pub amount_wei: String,
    pub tx_hash: String,
    pub block: u64,
    /// Each contributor's credit from this payment, in wei.
    pub split: Vec<(String, String)>,
}

/// A payment as the API and the desktop app receive it. No `Debug`: it holds a passphrase.
#[derive(Deserialize)]
pub struct PayRequest {
    /// A manifest hash (0x…).
    pub manifest_hash: String,
    /// Wei, or ETH with an `eth` suffix.
    pub amount: String,
    pub from: String,
    pub passphrase: String,
}

/// What an account holds and is owed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardBalance {
    pub address: String,
    /// Wei in the account.
    pub balance_wei: String,
    /// Wei credited by the splitter and not yet withdrawn.
    pub owed_wei: String,
}

/// A withdrawal of everything owed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawResult {
    pub address: String,
    pub amount_wei: String,
    pub tx_hash: String,
    pub block: u64,
}

/// The runtime every chain call runs on: one for the process, so connections made in one call
/// stay usable in the next.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("chain")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|message| Error::InvalidInput {
            field: "chain".into(),
            message: format!("cannot start the chain client's runtime: {message}"),
        })?;
    Ok(runtime.block_on(future))
}

/// Parses a wei amount: digits, or a decimal number of ETH with an `eth` suffix (`0.5eth`).
pub fn parse_wei(text: &str) -> Result<U256> {
    let t = text.trim().to_ascii_lowercase();
    let bad = |why: &str| Error::InvalidInput {
        field: "amount".into(),
        message: format!("{text:?} {why}; give wei (1000000000000000000) or ETH (1eth)"),
    };
    let wei = if let Some(eth) = t.strip_suffix("eth") {
        let eth = eth.trim();
        let (whole, frac) = eth.split_once('.').unwrap_or((eth, ""));
        if frac.len() > 18 || (whole.is_empty() && frac.is_empty()) {
            return Err(bad("is not an amount"));
        }
        let digits = format!("{whole}{frac:0<18}");
        U256::from_str_radix(&digits, 10).map_err(|_| bad("is not an amount"))?
    } else {
        U256::from_str_radix(&t, 10).map_err(|_| bad("is not an amount"))?
    };
    if wei.is_zero() {
        return Err(bad("is zero"));
    }
    Ok(wei)
}

impl Studio {
    pub fn chain_settings(&self) -> Result<ChainSettings> {
        let stored: Option<String> = self
            .inner
            .db
            .lock()
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![SETTINGS_KEY],
                |r| r.get(0),
            )
            .optional()?;
        Ok(stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// Saves the chain settings after checking them: a remote chain must answer with the chain
    /// id given and hold our contracts at the addresses given. Nothing is saved otherwise.
    pub fn save_chain_settings(&self, settings: &ChainSettings) -> Result<ChainSettings> {
        let mut clean = settings.clone();
        clean.rpc_url = clean.rpc_url.trim().trim_end_matches('/').to_string();
        if clean.is_local() {
            clean = ChainSettings::default();
        } else {
            let invalid = |message: String| Error::InvalidSetting {
                key: "chain".into(),
                message,
            };
            let chain_id = clean
                .chain_id
                .ok_or_else(|| invalid("a remote chain needs its chain id".into()))?;
            let (Some(registry), Some(splitter)) = (&clean.registry, &clean.splitter) else {
                return Err(invalid(
                    "a remote chain needs the registry and splitter addresses".into(),
                ));
            };
            let contracts = ContractAddresses {
                registry: parse_address(registry)?,
                splitter: parse_address(splitter)?,
            };
            let url = clean.rpc_url.clone();
            block_on(async move {
                let client = ChainClient::connect(&url, Some(chain_id)).await?;
                client.check_contracts(&contracts).await
            })??;
            clean.registry = Some(contracts.registry.to_checksum(None));
            clean.splitter = Some(contracts.splitter.to_checksum(None));
        }
        self.inner.db.lock().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![SETTINGS_KEY, serde_json::to_string(&clean).unwrap_or_default()],
        )?;
        Ok(clean)
    }

    fn chain_dir(&self) -> PathBuf {
        self.workspace().root().join("chain")
    }

    /// The configured chain, connected and checked; the local chain is started and its
    /// contracts deployed when needed.
    pub fn connect_chain(&self) -> Result<Connected> {
        let settings = self.chain_settings()?;
        if !settings.is_local() {
            let contracts = ContractAddresses {
                registry: parse_address(settings.registry.as_deref().unwrap_or_default())?,
                splitter: parse_address(settings.splitter.as_deref().unwrap_or_default())?,
            };
            let url = settings.rpc_url.clone();
            let chain_id = settings.chain_id;
            let client = block_on(async move {
                let client = ChainClient::connect(&url, chain_id).await?;
                client.check_contracts(&contracts).await?;
                Ok::<_, ::wallet::chain::ChainError>(client)
            })??;
            return Ok(Connected { client, contracts });
        }
        let client = self.local_chain_client()?;
        let dir = self.chain_dir();
        let deployer = signer_from_mnemonic(&SecretString::from(DEV_MNEMONIC), 0)?;
        let (deployment, _) = block_on({
            let client = client.clone();
            async move { ensure_deployed(&client, &deployer, &dir).await }
        })??;
        Ok(Connected {
            client,
            contracts: deployment.contracts(),
        })
    }

    /// A client for the local chain: the anvil this process started, one another process
    /// announced, or a new one.
    fn local_chain_client(&self) -> Result<ChainClient> {
        let mut held = self
            .inner
            .chain
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(chain) = held.as_ref() {
            let client = chain.client().clone();
            if block_on(async { client.block_number().await })?.is_ok() {
                return Ok(client);
            }
            tracing::warn!("the local chain this process started stopped answering; restarting it");
            *held = None;
        }
        let dir = self.chain_dir();
        let endpoint_path = dir.join(ENDPOINT_FILE);
        if let Some(endpoint) = std::fs::read_to_string(&endpoint_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Endpoint>(&t).ok())
            && let Ok(Ok(client)) =
                block_on(ChainClient::connect(&endpoint.url, Some(LOCAL_CHAIN_ID)))
        {
            tracing::debug!(url = %endpoint.url, pid = endpoint.pid, "using the running local chain");
            return Ok(client);
        }
        let mut options = LocalChainOptions::new(&dir);
        if let Some(root) =
            crate::datanets::assets_dir().and_then(|a| a.parent().map(PathBuf::from))
        {
            options = options.repo_root(root);
        }
        let chain = block_on(LocalChain::start(&options))??;
        let endpoint = Endpoint {
            url: chain.url().to_string(),
            pid: std::process::id(),
        };
        if let Err(e) = std::fs::write(
            &endpoint_path,
            serde_json::to_vec(&endpoint).unwrap_or_default(),
        ) {
            tracing::warn!(path = %endpoint_path.display(), "cannot announce the local chain: {e}");
        }
        let client = chain.client().clone();
        *held = Some(chain);
        Ok(client)
    }

    /// Where the chain stands, without starting anything.
    pub fn chain_status(&self) -> Result<ChainStatus> {
        let settings = self.chain_settings()?;
        if settings.is_local() {
            let dir = self.chain_dir();
            let url = {
                let held = self
                    .inner
                    .chain
                    .local
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                held.as_ref().map(|c| c.url().to_string())
            }
            .or_else(|| {
                std::fs::read_to_string(dir.join(ENDPOINT_FILE))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Endpoint>(&t).ok())
                    .map(|e| e.url)
            });
            let deployment = ::wallet::chain::Deployment::read(&dir).ok().flatten();
            let mut status = ChainStatus {
                local: true,
                url: url.clone(),
                chain_id: Some(LOCAL_CHAIN_ID),
                reachable: false,
                block: None,
                registry: deployment.as_ref().map(|d| d.registry.to_checksum(None)),
                splitter: deployment.as_ref().map(|d| d.splitter.to_checksum(None)),
                state_file: Some(
                    dir.join(::wallet::chain::local::STATE_FILE)
                        .display()
                        .to_string(),
                ),
                problem: None,
            };
            match url {
                Some(url) => match block_on(async move {
                    let client = ChainClient::connect(&url, Some(LOCAL_CHAIN_ID)).await?;
                    client.block_number().await
                })? {
                    Ok(block) => {
                        status.reachable = true;
                        status.block = Some(block);
                    }
                    Err(_) => {
                        status.problem =
                            Some("not running: `modelfactory chain up` starts it".into())
                    }
                },
                None => {
                    status.problem = Some(
                        "not started yet: it starts on first use, or with `modelfactory chain up`"
                            .into(),
                    )
                }
            }
            return Ok(status);
        }
        let mut status = ChainStatus {
            local: false,
            url: Some(settings.rpc_url.clone()),
            chain_id: settings.chain_id,
            reachable: false,
            block: None,
            registry: settings.registry.clone(),
            splitter: settings.splitter.clone(),
            state_file: None,
            problem: None,
        };
        match self.connect_chain() {
            Ok(connected) => {
                status.reachable = true;
                status.block = block_on(async move { connected.client.block_number().await })?.ok();
            }
            Err(e) => status.problem = Some(e.to_string()),
        }
        Ok(status)
    }

    /// Starts the local chain (or connects to the configured one) and deploys the contracts.
    pub fn chain_up(&self) -> Result<ChainStatus> {
        self.connect_chain()?;
        self.chain_status()
    }

    /// Gives a new account gas money, on the local chain only; elsewhere it must hold ETH.
    pub(crate) fn fund_if_local(&self, chain: &Connected, address: Address) -> Result<()> {
        if chain.local() {
            let client = chain.client.clone();
            block_on(async move {
                client
                    .fund_local(address, U256::from(LOCAL_GAS_MONEY))
                    .await
            })??;
        }
        Ok(())
    }

    /// Pays `amount` wei from `payer` into the adapter registered as `manifest_hash`.
    pub fn rewards_pay(
        &self,
        payer: &str,
        passphrase: &SecretString,
        manifest_hash: &str,
        amount: U256,
    ) -> Result<Payment> {
        let hash = parse_hash(manifest_hash)?;
        let payer_address = parse_address(payer)?;
        let signer = self.keystore()?.unlock(payer_address, passphrase)?;
        let chain = self.connect_chain()?;
        self.fund_if_local(&chain, payer_address)?;
        let rewards = Rewards::new(&chain.client, chain.contracts.splitter);
        let (outcome, split) = block_on(async move {
            let split = rewards.preview(hash, amount).await?;
            let outcome = rewards.pay(&signer, hash, amount).await?;
            Ok::<_, ::wallet::chain::ChainError>((outcome, split))
        })??;
        Ok(Payment {
            manifest_hash: hash.to_string(),
            payer: payer_address.to_checksum(None),
            amount_wei: amount.to_string(),
            tx_hash: outcome.tx_hash.to_string(),
            block: outcome.block_number,
            split: split
                .into_iter()
                .map(|(a, w)| (a.to_checksum(None), w.to_string()))
                .collect(),
        })
    }

    /// Pays what a [`PayRequest`] says.
    pub fn rewards_pay_request(&self, request: PayRequest) -> Result<Payment> {
        let passphrase = SecretString::from(request.passphrase);
        let amount = parse_wei(&request.amount)?;
        self.rewards_pay(&request.from, &passphrase, &request.manifest_hash, amount)
    }

    pub fn rewards_balance(&self, address: &str) -> Result<RewardBalance> {
        let address = parse_address(address)?;
        let chain = self.connect_chain()?;
        let rewards = Rewards::new(&chain.client, chain.contracts.splitter);
        let client = chain.client.clone();
        let (balance, owed) = block_on(async move {
            let balance = client.balance(address).await?;
            let owed = rewards.owed(address).await?;
            Ok::<_, ::wallet::chain::ChainError>((balance, owed))
        })??;
        Ok(RewardBalance {
            address: address.to_checksum(None),
            balance_wei: balance.to_string(),
            owed_wei: owed.to_string(),
        })
    }

    /// Withdraws everything the splitter owes `address` into it.
    pub fn rewards_withdraw(
        &self,
        address: &str,
        passphrase: &SecretString,
    ) -> Result<WithdrawResult> {
        let address = parse_address(address)?;
        let signer = self.keystore()?.unlock(address, passphrase)?;
        let chain = self.connect_chain()?;
        self.fund_if_local(&chain, address)?;
        let rewards = Rewards::new(&chain.client, chain.contracts.splitter);
        let withdrawal = block_on(async move { rewards.withdraw(&signer).await })??;
        Ok(WithdrawResult {
            address: address.to_checksum(None),
            amount_wei: withdrawal.amount.to_string(),
            tx_hash: withdrawal.tx.tx_hash.to_string(),
            block: withdrawal.tx.block_number,
        })
    }
}

/// Parses a 32-byte hash given as 0x-hex.
pub fn parse_hash(text: &str) -> Result<B256> {
    text.trim()
        .parse::<B256>()
        .map_err(|e| Error::InvalidInput {
            field: "manifest hash".into(),
            message: format!("{text:?} is not a 32-byte hash in 0x-hex: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_wei_and_eth() {
        assert_eq!(parse_wei("1000").expect("wei"), U256::from(1000u64));
        assert_eq!(
            parse_wei("1.5eth").expect("eth"),
            U256::from(1_500_000_000_000_000_000u128)
        );
        assert_eq!(
            parse_wei(" 2 ETH").expect("eth"),
            U256::from(2_000_000_000_000_000_000u128)
        );
        for bad in ["", "0", "-1", "1.2.3eth", "abc", "0.0000000000000000001eth"] {
            assert!(parse_wei(bad).is_err(), "{bad:?}");
        }
    }
}
