//! The adapter registry: build a registration, sign it (EIP-712, computed here and equal to
//! the contract's `hashRegistration`), preview its gas, register it, and read records back.

use std::collections::HashSet;

use alloy_network::TransactionBuilder;
use alloy_primitives::{Address, B256, Signature};
use alloy_rpc_types_eth::TransactionRequest;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolCall, eip712_domain};
use tracing::info;

use super::client::{ChainClient, GasPreview, TxOutcome};
use super::contracts::AdapterRegistry::{self, AdapterRegistryErrors, AdapterRegistryInstance};
use super::contracts::Registration;
use super::error::{ChainError, Revert};
use super::{Result, TOTAL_SHARES};
use crate::signing;

/// The registry's limit on contributors per adapter (`MAX_CONTRIBUTORS`).
pub const MAX_CONTRIBUTORS: usize = 256;

/// The fields of a registration, contributors in any order. [`build`](Self::build) checks them
/// as the contract does, so a mistake shows before any gas is spent, and sorts the contributors
/// into the ascending order the contract requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistration {
    pub manifest_hash: B256,
    pub adapter_hash: B256,
    pub base_model: String,
    pub datanet_roots: Vec<B256>,
    pub uri: String,
    /// The manifest hash of the previous version, which must be registered already.
    pub parent: Option<B256>,
    pub publisher: Address,
    /// Each contributor's share in basis points: nonzero, summing to exactly 10 000.
    pub shares: Vec<(Address, u16)>,
}

impl NewRegistration {
    pub fn build(self) -> Result<Registration> {
        let invalid = |reason: String| ChainError::InvalidRegistration(reason);
        if self.manifest_hash.is_zero() {
            return Err(invalid("the manifest hash is zero".into()));
        }
        if self.adapter_hash.is_zero() {
            return Err(invalid("the adapter hash is zero".into()));
        }
        if self.base_model.is_empty() {
            return Err(invalid("the base model is empty".into()));
        }
        if self.uri.is_empty() {
            return Err(invalid("the URI is empty".into()));
        }
        if self.publisher.is_zero() {
            return Err(invalid("the publisher is the zero address".into()));
        }
        if self.shares.is_empty() {
            return Err(invalid("there are no contributors".into()));
        }
        if self.shares.len() > MAX_CONTRIBUTORS {
            return Err(invalid(format!(
                "{} contributors, more than the registry's {MAX_CONTRIBUTORS}",
                self.shares.len()
            )));
        }
        let mut shares = self.shares;
        shares.sort_by_key(|(address, _)| *address);
        let mut seen = HashSet::new();
        let mut sum = 0u32;
        for (address, bps) in &shares {
            if address.is_zero() {
                return Err(invalid("a contributor is the zero address".into()));
            }
            if !seen.insert(*address) {
                return Err(invalid(format!("contributor {address} is listed twice")));
            }
            if *bps == 0 {
                return Err(invalid(format!("contributor {address} has a zero share")));
            }
            sum += u32::from(*bps);
        }
        if sum != u32::from(TOTAL_SHARES) {
            return Err(invalid(format!(
                "the shares sum to {sum} basis points, not {TOTAL_SHARES}"
            )));
        }
        Ok(Registration {
            manifestHash: self.manifest_hash,
            adapterHash: self.adapter_hash,
            baseModel: self.base_model,
            datanetRoots: self.datanet_roots,
            uri: self.uri,
            parent: self.parent.unwrap_or_default(),
            publisher: self.publisher,
            contributors: shares.iter().map(|(a, _)| *a).collect(),
            shares: shares.iter().map(|(_, s)| *s).collect(),
        })
    }
}

/// The registry's EIP-712 domain on one chain and at one address.
pub fn domain(chain_id: u64, registry: Address) -> Eip712Domain {
    eip712_domain! {
        name: "ModelFactory AdapterRegistry",
        version: "1",
        chain_id: chain_id,
        verifying_contract: registry,
    }
}

/// The EIP-712 digest the publisher signs, as the contract's `hashRegistration` computes it.
pub fn digest(registration: &Registration, chain_id: u64, registry: Address) -> B256 {
    signing::struct_hash(registration, &domain(chain_id, registry))
}

/// The publisher's signature over `registration` for the registry at `registry` on `chain_id`.
pub fn sign(
    signer: &PrivateKeySigner,
    registration: &Registration,
    chain_id: u64,
    registry: Address,
) -> Result<Signature> {
    Ok(signing::sign_struct(
        signer,
        registration,
        &domain(chain_id, registry),
    )?)
}

/// When a registration was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisteredAt {
    pub block_number: u64,
    pub timestamp: u64,
}

/// The registry contract at one address, through a [`ChainClient`].
#[derive(Clone, Debug)]
pub struct Registry {
    client: ChainClient,
    address: Address,
}

impl Registry {
    pub fn new(client: &ChainClient, address: Address) -> Self {
        Self {
            client: client.clone(),
            address,
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    fn contract(&self) -> AdapterRegistryInstance<alloy_provider::DynProvider> {
        AdapterRegistry::new(self.address, self.client.provider().clone())
    }

    /// [`digest`] on this registry's chain and address.
    pub fn digest(&self, registration: &Registration) -> B256 {
        digest(registration, self.client.chain_id(), self.address)
    }

    /// [`sign`] for this registry's chain and address.
    pub fn sign(
        &self,
        signer: &PrivateKeySigner,
        registration: &Registration,
    ) -> Result<Signature> {
        sign(signer, registration, self.client.chain_id(), self.address)
    }

    /// The contract's own `hashRegistration`, to check [`digest`] against.
    pub async fn onchain_digest(&self, registration: &Registration) -> Result<B256> {
        self.contract()
            .hashRegistration(registration.clone())
            .call()
            .await
            .map_err(|e| self.client.contract_error("hashRegistration", e))
    }

    fn register_tx(
        &self,
        registration: &Registration,
        signature: &Signature,
    ) -> TransactionRequest {
        let call = AdapterRegistry::registerCall {
            r: registration.clone(),
            signature: signature.as_bytes().to_vec().into(),
        };
        TransactionRequest::default()
            .with_to(self.address)
            .with_input(call.abi_encode())
    }

    /// Gas and the most it may cost for `from` to submit the registration. Fails as
    /// [`register`](Self::register) would (the contract's reason, too little ETH).
    pub async fn preview_register(
        &self,
        from: Address,
        registration: &Registration,
        signature: &Signature,
    ) -> Result<GasPreview> {
        self.client
            .preview("register", from, &self.register_tx(registration, signature))
            .await
    }

    /// Submits the registration, signed by the publisher, from `sender` (the publisher or any
    /// relayer: the contract checks the signature, not the sender). The signature is not
    /// checked here, so a contract-wallet publisher (ERC-1271) works too.
    pub async fn register(
        &self,
        sender: &PrivateKeySigner,
        registration: &Registration,
        signature: &Signature,
    ) -> Result<TxOutcome> {
        let outcome = self
            .client
            .send(
                "register",
                sender,
                self.register_tx(registration, signature),
            )
            .await?;
        info!(
            manifest = %registration.manifestHash,
            registry = %self.address,
            tx = %outcome.tx_hash,
            "adapter registered"
        );
        Ok(outcome)
    }

    /// Whether `manifest_hash` is registered: a publish that was interrupted checks this
    /// before registering again.
    pub async fn is_registered(&self, manifest_hash: B256) -> Result<bool> {
        self.contract()
            .isRegistered(manifest_hash)
            .call()
            .await
            .map_err(|e| self.client.contract_error("isRegistered", e))
    }

    /// The registration as signed, or `None` if `manifest_hash` is not registered.
    pub async fn get_registration(&self, manifest_hash: B256) -> Result<Option<Registration>> {
        not_registered_is_none(
            self.contract()
                .getRegistration(manifest_hash)
                .call()
                .await
                .map_err(|e| self.client.contract_error("getRegistration", e)),
        )
    }

    /// The block and time of the registration, or `None` if not registered.
    pub async fn registered_at(&self, manifest_hash: B256) -> Result<Option<RegisteredAt>> {
        let at = not_registered_is_none(
            self.contract()
                .registeredAt(manifest_hash)
                .call()
                .await
                .map_err(|e| self.client.contract_error("registeredAt", e)),
        )?;
        Ok(at.map(|r| RegisteredAt {
            block_number: r.blockNumber,
            timestamp: r.timestamp,
        }))
    }
}

fn not_registered_is_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(ChainError::Reverted { revert, .. })
            if matches!(
                *revert,
                Revert::Registry(AdapterRegistryErrors::NotRegistered(_))
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
