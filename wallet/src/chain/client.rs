//! A connection to one EVM chain over JSON-RPC: the chain id checked on connect, balances, code
//! checks for configured contracts, funding on the local chain, and sending a transaction with
//! its errors made plain.

use std::time::{Duration, Instant};

use alloy_network::{EthereumWallet, TransactionBuilder};
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use alloy_rpc_client::RpcClient;
use alloy_rpc_types_eth::{Log, TransactionReceipt, TransactionRequest};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolStruct;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::contracts::{AdapterRegistry, Registration, RewardSplitter};
use super::error::{ChainError, Revert, classify};
use super::transport::{HttpTransport, display_url};
use super::{LOCAL_CHAIN_ID, Result};

/// Where the registry and the reward splitter are on a chain (what a settings page stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractAddresses {
    pub registry: Address,
    pub splitter: Address,
}

/// What a transaction will cost at most, before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasPreview {
    /// The node's estimate.
    pub gas_estimate: u64,
    /// The limit that will be sent: the estimate and a margin.
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// `gas_limit × max_fee_per_gas` plus any value sent: what the sender must hold. The fee
    /// actually paid is usually much less (gas used × the block's price).
    pub max_cost: U256,
    /// The sender's balance now.
    pub balance: U256,
}

/// A transaction that was mined successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    pub tx_hash: B256,
    pub block_number: u64,
    pub gas_used: u64,
    pub effective_gas_price: u128,
    /// `gas_used × effective_gas_price`: what the sender paid in fees.
    pub fee: U256,
    /// The new contract, for a deployment.
    pub contract_address: Option<Address>,
    pub logs: Vec<Log>,
}

/// Estimates leave room for the gas cost to shift a little between estimate and inclusion (a
/// contract wallet's ERC-1271 check, the 63/64 rule); unused gas is not charged.
const GAS_MARGIN_PERCENT: u64 = 20;

#[derive(Clone, Debug)]
pub struct ChainClient {
    provider: DynProvider,
    rpc: RpcClient,
    url: String,
    chain_id: u64,
    poll_interval: Duration,
    receipt_timeout: Duration,
}

impl ChainClient {
    /// Connects to `url` (http or https) and reads its chain id, which must equal
    /// `expected_chain_id` when one is given.
    pub async fn connect(url: &str, expected_chain_id: Option<u64>) -> Result<Self> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ChainError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ChainError::BadUrl {
                url: display_url(&parsed),
                reason: "only http:// and https:// RPC URLs are supported".into(),
            });
        }
        let shown = display_url(&parsed);
        let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        let transport = HttpTransport::new(parsed).map_err(|e| ChainError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let rpc = RpcClient::new(transport, local);
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_client(rpc.clone())
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::Unreachable {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        if let Some(expected) = expected_chain_id
            && expected != chain_id
        {
            return Err(ChainError::WrongChain {
                url: shown,
                expected,
                found: chain_id,
            });
        }
        debug!(url = %shown, chain_id, "connected");
        Ok(Self {
            provider,
            rpc,
            url: shown,
            chain_id,
            // A local node mines at once; a public one every few seconds.
            poll_interval: if local {
                Duration::from_millis(20)
            } else {
                Duration::from_secs(2)
            },
            receipt_timeout: Duration::from_secs(if local { 30 } else { 300 }),
        })
    }

    /// How long [`send`](Self::send) waits for a receipt (30 s on loopback, 5 min elsewhere).
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The URL as shown in messages: scheme, host and port only.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub fn is_local_chain(&self) -> bool {
        self.chain_id == LOCAL_CHAIN_ID
    }

    pub(crate) fn classify(&self, call: &str, e: alloy_transport::TransportError) -> ChainError {
        classify(e, &self.url, call, None)
    }

    pub(crate) fn contract_error(&self, call: &str, e: alloy_contract::Error) -> ChainError {
        match e {
            alloy_contract::Error::TransportError(t) => classify(t, &self.url, call, None),
            other => ChainError::Rpc {
                url: self.url.clone(),
                what: call.to_string(),
                message: other.to_string(),
            },
        }
    }

    pub async fn balance(&self, address: Address) -> Result<U256> {
        self.provider
            .get_balance(address)
            .await
            .map_err(|e| self.classify("eth_getBalance", e))
    }

    pub async fn block_number(&self) -> Result<u64> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| self.classify("eth_blockNumber", e))
    }

    /// Whether `address` holds contract code.
    pub async fn has_code(&self, address: Address) -> Result<bool> {
        Ok(!self.code(address).await?.is_empty())
    }

    pub(crate) async fn code(&self, address: Address) -> Result<alloy_primitives::Bytes> {
        self.provider
            .get_code_at(address)
            .await
            .map_err(|e| self.classify("eth_getCode", e))
    }

    pub(crate) async fn code_hash(&self, address: Address) -> Result<B256> {
        Ok(keccak256(self.code(address).await?))
    }

    /// Checks that `contracts` are a ModelFactory registry and the splitter that pays by it on
    /// this chain: code at both, the registry's EIP-712 type is ours, the splitter points at the
    /// registry. For a settings page to check on save.
    pub async fn check_contracts(&self, contracts: &ContractAddresses) -> Result<()> {
        for (which, address) in [
            ("registry", contracts.registry),
            ("reward splitter", contracts.splitter),
        ] {
            if !self.has_code(address).await? {
                return Err(ChainError::NoCode {
                    which,
                    address,
                    chain_id: self.chain_id,
                    url: self.url.clone(),
                });
            }
        }
        let not_ours = |which, address| ChainError::NotOurContract {
            which,
            address,
            chain_id: self.chain_id,
        };
        // A call our contract would answer but this one does not: not ours. A node that stops
        // answering stays that error.
        let refused = |which, address, call, e| match self.contract_error(call, e) {
            e @ ChainError::Unreachable { .. } => e,
            _ => not_ours(which, address),
        };
        let registry = AdapterRegistry::new(contracts.registry, self.provider.clone());
        let typehash = registry
            .REGISTRATION_TYPEHASH()
            .call()
            .await
            .map_err(|e| refused("registry", contracts.registry, "REGISTRATION_TYPEHASH", e))?;
        if typehash != keccak256(Registration::eip712_encode_type().as_bytes()) {
            return Err(not_ours("registry", contracts.registry));
        }
        let splitter = RewardSplitter::new(contracts.splitter, self.provider.clone());
        let pays_by = splitter
            .registry()
            .call()
            .await
            .map_err(|e| refused("reward splitter", contracts.splitter, "registry", e))?;
        if pays_by != contracts.registry {
            return Err(ChainError::SplitterRegistryMismatch {
                splitter: contracts.splitter,
                expected: contracts.registry,
                actual: pays_by,
            });
        }
        Ok(())
    }

    /// On the local chain only: raises `address`'s balance to `at_least` wei (with
    /// `anvil_setBalance`) if it holds less, so a new wallet can pay gas there. Returns the
    /// balance after.
    pub async fn fund_local(&self, address: Address, at_least: U256) -> Result<U256> {
        if !self.is_local_chain() {
            return Err(ChainError::NotLocal {
                chain_id: self.chain_id,
            });
        }
        let balance = self.balance(address).await?;
        if balance >= at_least {
            return Ok(balance);
        }
        self.provider
            .raw_request::<_, serde_json::Value>("anvil_setBalance".into(), (address, at_least))
            .await
            .map_err(|e| self.classify("anvil_setBalance", e))?;
        info!(%address, wei = %at_least, "funded on the local chain");
        self.balance(address).await
    }

    /// Estimates gas and fees for `tx` sent by `from` and checks that `from` can pay the most it
    /// may cost. A call the contract would refuse fails here with the contract's reason.
    pub async fn preview(
        &self,
        call: &str,
        from: Address,
        tx: &TransactionRequest,
    ) -> Result<GasPreview> {
        let tx = tx.clone().from(from);
        let value = tx.value.unwrap_or_default();
        let balance = self.balance(from).await?;
        let gas_estimate = match self.provider.estimate_gas(tx).await {
            Ok(gas) => gas,
            Err(e) => {
                return Err(match classify(e, &self.url, call, Some(from)) {
                    ChainError::InsufficientFunds {
                        address, needed, ..
                    } => ChainError::InsufficientFunds {
                        address,
                        balance,
                        needed,
                    },
                    other => other,
                });
            }
        };
        let fees = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| self.classify("fee estimate", e))?;
        let gas_limit =
            gas_estimate.saturating_add(gas_estimate.saturating_mul(GAS_MARGIN_PERCENT) / 100);
        let max_cost = U256::from(gas_limit) * U256::from(fees.max_fee_per_gas) + value;
        let preview = GasPreview {
            gas_estimate,
            gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            max_cost,
            balance,
        };
        if balance < max_cost {
            return Err(ChainError::InsufficientFunds {
                address: from,
                balance,
                needed: Some(max_cost),
            });
        }
        Ok(preview)
    }

    /// Sends `tx` signed by `signer`, waits for its receipt and returns it; a transaction that
    /// fails, on estimate or in its block, comes back as an error with the contract's reason.
    pub async fn send(
        &self,
        call: &str,
        signer: &PrivateKeySigner,
        tx: TransactionRequest,
    ) -> Result<TxOutcome> {
        let from = signer.address();
        let started = Instant::now();
        let preview = self.preview(call, from, &tx).await?;
        let nonce = self
            .provider
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|e| self.classify("eth_getTransactionCount", e))?;
        let tx = tx
            .from(from)
            .with_chain_id(self.chain_id)
            .with_nonce(nonce)
            .with_gas_limit(preview.gas_limit)
            .with_max_fee_per_gas(preview.max_fee_per_gas)
            .with_max_priority_fee_per_gas(preview.max_priority_fee_per_gas);
        let signing = ProviderBuilder::new()
            .disable_recommended_fillers()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_client(self.rpc.clone());
        let pending = match signing.send_transaction(tx.clone()).await {
            Ok(pending) => pending,
            Err(e) => {
                return Err(match classify(e, &self.url, call, Some(from)) {
                    ChainError::InsufficientFunds { address, .. } => {
                        ChainError::InsufficientFunds {
                            address,
                            balance: self.balance(from).await.unwrap_or(preview.balance),
                            needed: Some(preview.max_cost),
                        }
                    }
                    other => other,
                });
            }
        };
        let tx_hash = *pending.tx_hash();
        debug!(call, %tx_hash, nonce, "sent");
        let receipt = self.wait_for_receipt(tx_hash).await?;
        let block_number = receipt.block_number.unwrap_or_default();
        if !receipt.status() {
            return Err(ChainError::FailedOnChain {
                tx_hash,
                block: block_number,
                revert: Box::new(self.replay(tx, block_number).await),
            });
        }
        let outcome = TxOutcome {
            tx_hash,
            block_number,
            gas_used: receipt.gas_used,
            effective_gas_price: receipt.effective_gas_price,
            fee: U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price),
            contract_address: receipt.contract_address,
            logs: receipt.inner.logs().to_vec(),
        };
        info!(
            call,
            %tx_hash,
            block = block_number,
            gas_used = outcome.gas_used,
            ms = started.elapsed().as_millis() as u64,
            "mined"
        );
        Ok(outcome)
    }

    async fn wait_for_receipt(&self, tx_hash: B256) -> Result<TransactionReceipt> {
        let deadline = Instant::now() + self.receipt_timeout;
        loop {
            let receipt = self
                .provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(|e| self.classify("eth_getTransactionReceipt", e))?;
            if let Some(receipt) = receipt {
                return Ok(receipt);
            }
            if Instant::now() >= deadline {
                return Err(ChainError::ReceiptTimeout {
                    tx_hash,
                    seconds: self.receipt_timeout.as_secs(),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Why a mined transaction failed: the same call replayed on the state it ran on.
    async fn replay(&self, tx: TransactionRequest, block: u64) -> Revert {
        let parent = block.saturating_sub(1);
        match self.provider.call(tx).block(parent.into()).await {
            Err(alloy_transport::RpcError::ErrorResp(payload)) => match payload.as_revert_data() {
                Some(data) => Revert::decode(&data),
                None => Revert::NoData(payload.message.to_string()),
            },
            _ => Revert::NoData("it ran out of gas or failed without a reason".into()),
        }
    }
}
