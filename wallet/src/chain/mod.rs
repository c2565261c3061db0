//! On chain: the adapter registry and the reward splitter, on the local chain or any EVM chain
//! reached over JSON-RPC.
//!
//! - [`local`]: anvil on 127.0.0.1 (chain id 31337), its state kept in a folder across restarts.
//! - [`deploy`]: the registry, then the splitter, from the artifacts in `assets/contracts/`;
//!   the record in `deployment.json`, reused while the contracts are still there.
//! - [`ChainClient`]: connect with a chain id check, balances, code checks for configured
//!   addresses, funding on the local chain, and transactions whose failures say why.
//! - [`registry`]: build, sign (EIP-712) and register an adapter; read records back.
//! - [`rewards`]: pay into an adapter, what each contributor is owed, withdrawals.
//! - [`contracts`]: the `sol!` bindings generated from the artifacts.

mod client;
pub mod contracts;
pub mod deploy;
mod error;
pub mod local;
pub mod registry;
pub mod rewards;
mod transport;

pub use client::{ChainClient, ContractAddresses, GasPreview, TxOutcome};
pub use contracts::Registration;
pub use deploy::{DEPLOYMENT_FILE, Deployment, deploy, ensure_deployed};
pub use error::{ChainError, Revert};
pub use local::{LocalChain, LocalChainOptions};
pub use registry::{NewRegistration, Registry};
pub use rewards::{Rewards, Withdrawal};

/// The local chain's id (anvil's and Hardhat's default).
pub const LOCAL_CHAIN_ID: u64 = 31337;

/// Shares are in basis points and sum to exactly this.
pub const TOTAL_SHARES: u16 = 10_000;

/// The mnemonic of anvil's (and Hardhat's) funded development accounts: public, for the local
/// chain and tests only, never for real funds.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

pub type Result<T, E = ChainError> = std::result::Result<T, E>;
