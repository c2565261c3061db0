//! What can go wrong on chain, and the contracts' revert reasons decoded into words.

use std::fmt;
use std::path::PathBuf;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{GenericContractError, SolInterface};
use alloy_transport::{RpcError, TransportError};

use super::contracts::AdapterRegistry::AdapterRegistryErrors;
use super::contracts::RewardSplitter::RewardSplitterErrors;
use crate::signing::SigningError;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(
        "anvil (the local chain) is not installed: looked for {looked}. Run wallet/contracts/check \
         or scripts/setup (they install it from npm), or set MODELFACTORY_ANVIL to its path"
    )]
    AnvilMissing { looked: String },
    #[error("could not start anvil ({path}): {source}")]
    AnvilSpawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anvil exited ({status}) while starting; the end of {log}:\n{tail}")]
    AnvilExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("anvil did not answer within {seconds} s; the end of {log}:\n{tail}")]
    AnvilTimeout {
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a usable RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the chain at {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the chain at {url} has chain id {found}, not the {expected} configured")]
    WrongChain {
        url: String,
        expected: u64,
        found: u64,
    },
    #[error("{what} failed at {url}: {message}")]
    Rpc {
        url: String,
        what: String,
        message: String,
    },
    #[error("no contract at the {which} address {address} on chain {chain_id} ({url})")]
    NoCode {
        which: &'static str,
        address: Address,
        chain_id: u64,
        url: String,
    },
    #[error("the contract at {address} on chain {chain_id} is not a ModelFactory {which}")]
    NotOurContract {
        which: &'static str,
        address: Address,
        chain_id: u64,
    },
    #[error(
        "the reward splitter at {splitter} pays by the registry at {actual}, not by {expected}"
    )]
    SplitterRegistryMismatch {
        splitter: Address,
        expected: Address,
        actual: Address,
    },
    #[error(
        "funding accounts works on the local chain only (chain id 31337); this is chain {chain_id}"
    )]
    NotLocal { chain_id: u64 },
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
    #[error("{call} was refused by the contract: {revert}")]
    Reverted { call: String, revert: Box<Revert> },
    #[error("{}", insufficient_funds(address, balance, needed.as_ref()))]
    InsufficientFunds {
        address: Address,
        balance: U256,
        /// Gas at the maximum fee plus any value sent, when known.
        needed: Option<U256>,
    },
    #[error(
        "the transaction from {address} clashes with another one using the same nonce (another \
         transaction from this account was sent at the same time); try again: {message}"
    )]
    NonceClash { address: Address, message: String },
    #[error("transaction {tx_hash} was sent but no receipt came within {seconds} s")]
    ReceiptTimeout { tx_hash: B256, seconds: u64 },
    #[error("transaction {tx_hash} failed in block {block}: {revert}")]
    FailedOnChain {
        tx_hash: B256,
        block: u64,
        revert: Box<Revert>,
    },
    #[error("the deployment record {path} cannot be used: {reason}")]
    Deployment { path: PathBuf, reason: String },
    #[error(transparent)]
    Signing(#[from] SigningError),
}

fn insufficient_funds(address: &Address, balance: &U256, needed: Option<&U256>) -> String {
    match needed {
        Some(needed) => format!(
            "{address} has too little ETH to pay for this transaction: it holds {balance} wei and \
             needs up to {needed} wei (gas at the current maximum fee, plus any payment)"
        ),
        None => format!(
            "{address} has too little ETH to pay for this transaction: it holds {balance} wei"
        ),
    }
}

/// Why a contract refused a call, decoded from the revert data where the data is one of the
/// registry's or the splitter's custom errors, or a plain `Error(string)` / `Panic(uint256)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    Registry(AdapterRegistryErrors),
    Splitter(RewardSplitterErrors),
    /// `Error(string)` or `Panic(uint256)`, in words.
    Message(String),
    /// Revert data that none of the above decodes.
    Unknown(Bytes),
    /// The node reported a revert without its data.
    NoData(String),
}

impl Revert {
    pub fn decode(data: &[u8]) -> Self {
        if let Ok(e) = AdapterRegistryErrors::abi_decode(data) {
            return Self::Registry(e);
        }
        if let Ok(e) = RewardSplitterErrors::abi_decode(data) {
            return Self::Splitter(e);
        }
        // Only the two standard shapes: alloy's `decode_revert_reason` would also read any
        // bytes that happen to be UTF-8 as a message.
        match GenericContractError::abi_decode(data) {
            Ok(GenericContractError::Revert(r)) => Self::Message(format!("revert: {}", r.reason())),
            Ok(GenericContractError::Panic(p)) => Self::Message(p.to_string()),
            _ => Self::Unknown(Bytes::copy_from_slice(data)),
        }
    }

    /// The custom error's name, e.g. `AlreadyRegistered`, where there is one.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::Registry(e) => Some(registry_error_name(e)),
            Self::Splitter(e) => Some(splitter_error_name(e)),
            _ => None,
        }
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(e) => write!(
                f,
                "{}: {}",
                registry_error_name(e),
                describe_registry_error(e)
            ),
            Self::Splitter(e) => write!(
                f,
                "{}: {}",
                splitter_error_name(e),
                describe_splitter_error(e)
            ),
            Self::Message(m) => write!(f, "{m}"),
            Self::Unknown(data) => write!(f, "reverted with data {data} that is not a known error"),
            Self::NoData(m) => write!(f, "reverted without a reason ({m})"),
        }
    }
}

fn registry_error_name(e: &AdapterRegistryErrors) -> &'static str {
    use AdapterRegistryErrors as E;
    match e {
        E::AlreadyRegistered(_) => "AlreadyRegistered",
        E::ContributorsNotSorted(_) => "ContributorsNotSorted",
        E::DuplicateContributor(_) => "DuplicateContributor",
        E::EmptyBaseModel(_) => "EmptyBaseModel",
        E::EmptyUri(_) => "EmptyUri",
        E::InvalidShortString(_) => "InvalidShortString",
        E::InvalidSignature(_) => "InvalidSignature",
        E::LengthMismatch(_) => "LengthMismatch",
        E::NoContributors(_) => "NoContributors",
        E::NotRegistered(_) => "NotRegistered",
        E::SharesNotTenThousand(_) => "SharesNotTenThousand",
        E::StringTooLong(_) => "StringTooLong",
        E::TooManyContributors(_) => "TooManyContributors",
        E::UnknownParent(_) => "UnknownParent",
        E::ZeroAdapterHash(_) => "ZeroAdapterHash",
        E::ZeroAddressContributor(_) => "ZeroAddressContributor",
        E::ZeroManifestHash(_) => "ZeroManifestHash",
        E::ZeroPublisher(_) => "ZeroPublisher",
        E::ZeroShare(_) => "ZeroShare",
    }
}

fn describe_registry_error(e: &AdapterRegistryErrors) -> String {
    use AdapterRegistryErrors as E;
    match e {
        E::AlreadyRegistered(x) => format!("manifest {} is already registered", x.manifestHash),
        E::ContributorsNotSorted(x) => {
            format!("contributor {} is out of ascending address order", x.index)
        }
        E::DuplicateContributor(x) => format!("contributor {} is listed twice", x.contributor),
        E::EmptyBaseModel(_) => "the base model is empty".into(),
        E::EmptyUri(_) => "the URI is empty".into(),
        E::InvalidShortString(_) | E::StringTooLong(_) => "a domain string is malformed".into(),
        E::InvalidSignature(_) => {
            "the signature is not the publisher's over this registration on this chain and \
             registry"
                .into()
        }
        E::LengthMismatch(x) => format!("{} contributors but {} shares", x.contributors, x.shares),
        E::NoContributors(_) => "there are no contributors".into(),
        E::NotRegistered(x) => format!("manifest {} is not registered", x.manifestHash),
        E::SharesNotTenThousand(x) => {
            format!("the shares sum to {} basis points, not 10000", x.sum)
        }
        E::TooManyContributors(x) => {
            format!("{} contributors, more than the {} allowed", x.count, x.max)
        }
        E::UnknownParent(x) => format!("the parent {} is not registered", x.parent),
        E::ZeroAdapterHash(_) => "the adapter hash is zero".into(),
        E::ZeroAddressContributor(_) => "a contributor is the zero address".into(),
        E::ZeroManifestHash(_) => "the manifest hash is zero".into(),
        E::ZeroPublisher(_) => "the publisher is the zero address".into(),
        E::ZeroShare(x) => format!("contributor {} has a zero share", x.index),
    }
}

fn splitter_error_name(e: &RewardSplitterErrors) -> &'static str {
    use RewardSplitterErrors as E;
    match e {
        E::NothingOwed(_) => "NothingOwed",
        E::ReentrancyGuardReentrantCall(_) => "ReentrancyGuardReentrantCall",
        E::TransferFailed(_) => "TransferFailed",
        E::UnknownAdapter(_) => "UnknownAdapter",
        E::ZeroPayment(_) => "ZeroPayment",
        E::ZeroRecipient(_) => "ZeroRecipient",
        E::ZeroRegistry(_) => "ZeroRegistry",
    }
}

fn describe_splitter_error(e: &RewardSplitterErrors) -> String {
    use RewardSplitterErrors as E;
    match e {
        E::NothingOwed(x) => format!("nothing is owed to {}", x.account),
        E::ReentrancyGuardReentrantCall(_) => "re-entrant call".into(),
        E::TransferFailed(x) => format!("sending {} wei to {} failed", x.amount, x.to),
        E::UnknownAdapter(x) => format!("no adapter is registered as {}", x.manifestHash),
        E::ZeroPayment(_) => "the payment is zero".into(),
        E::ZeroRecipient(_) => "the recipient is the zero address".into(),
        E::ZeroRegistry(_) => "the registry is the zero address".into(),
    }
}

/// What an RPC error means for a call or transaction: a revert with its reason, too little ETH,
/// a nonce clash, an unreachable node, or the node's own message.
pub(crate) fn classify(
    err: TransportError,
    url: &str,
    call: &str,
    sender: Option<Address>,
) -> ChainError {
    match err {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_string();
            let lower = message.to_ascii_lowercase();
            if let Some(data) = payload.as_revert_data() {
                return ChainError::Reverted {
                    call: call.to_string(),
                    revert: Box::new(Revert::decode(&data)),
                };
            }
            if lower.contains("revert") {
                return ChainError::Reverted {
                    call: call.to_string(),
                    revert: Box::new(Revert::NoData(message)),
                };
            }
            if let Some(address) = sender {
                if lower.contains("insufficient funds") || lower.contains("insufficient balance") {
                    return ChainError::InsufficientFunds {
                        address,
                        balance: U256::ZERO,
                        needed: None,
                    };
                }
                if is_nonce_clash(&lower) {
                    return ChainError::NonceClash { address, message };
                }
            }
            ChainError::Rpc {
                url: url.to_string(),
                what: call.to_string(),
                message,
            }
        }
        RpcError::Transport(kind) => ChainError::Unreachable {
            url: url.to_string(),
            reason: kind.to_string(),
        },
        other => ChainError::Rpc {
            url: url.to_string(),
            what: call.to_string(),
            message: other.to_string(),
        },
    }
}

/// The messages geth, anvil, reth and others give when a nonce is already used or pending.
pub(crate) fn is_nonce_clash(lower_message: &str) -> bool {
    [
        "nonce too low",
        "nonce has already been used",
        "already known",
        "replacement transaction underpriced",
        "transaction already imported",
        "nonce already used",
    ]
    .iter()
    .any(|m| lower_message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::contracts::AdapterRegistry;
    use alloy_sol_types::SolError;

    #[test]
    fn decodes_custom_errors_and_strings() {
        let data = AdapterRegistry::AlreadyRegistered {
            manifestHash: B256::repeat_byte(1),
        }
        .abi_encode();
        let revert = Revert::decode(&data);
        assert_eq!(revert.name(), Some("AlreadyRegistered"));
        assert!(
            revert
                .to_string()
                .starts_with("AlreadyRegistered: manifest 0x0101")
        );

        let text = alloy_sol_types::Revert::from("no").abi_encode();
        assert_eq!(Revert::decode(&text), Revert::Message("revert: no".into()));
        assert!(matches!(Revert::decode(&[1, 2, 3]), Revert::Unknown(_)));
    }

    #[test]
    fn nonce_clash_messages() {
        assert!(is_nonce_clash("nonce too low: next nonce 5, tx nonce 4"));
        assert!(is_nonce_clash("already known"));
        assert!(is_nonce_clash("replacement transaction underpriced"));
        assert!(!is_nonce_clash("nonce too high"));
        assert!(!is_nonce_clash("execution reverted"));
    }
}
