//! Keys, signatures, the signed lineage manifest, and the registry and reward splitter on chain.
//!
//! - [`keystore`]: accounts in a directory of Web3 Secret Storage v3 files (scrypt,
//!   AES-128-CTR; the files geth and other wallets open), created at random or imported from a
//!   private key or a BIP-39 mnemonic; listed without a passphrase; unlocked into an alloy
//!   signer.
//! - [`passphrase`]: a passphrase from `MODELFACTORY_PASSPHRASE` or standard input, for scripts.
//! - [`signing`]: EIP-191 personal messages and EIP-712 typed data (an `eth_signTypedData_v4`
//!   document or a `sol!` struct), and recovering the signer.
//! - [`jcs`]: RFC 8785 canonical JSON, the bytes a manifest is hashed over.
//! - [`manifest`]: the lineage manifest (version 1), its validation, hash, signature, versioned
//!   reader and model card.
//! - [`chain`]: the adapter registry and reward splitter on chain: the local chain (anvil),
//!   deployment, a client for any EVM RPC URL, registering, paying and withdrawing.
//!
//! Secrets stay out of sight: passphrases travel as [`secrecy::SecretString`], decrypted key
//! bytes are zeroised after use, and no error, `Debug` output or log line carries either.

pub mod chain;
pub mod jcs;
pub mod keystore;
pub mod manifest;
pub mod passphrase;
pub mod signing;

pub use alloy_primitives::{Address, B256, Signature, U256};
pub use alloy_signer_local::PrivateKeySigner;
pub use keystore::{Account, KdfStrength, Keystore, KeystoreError};
pub use manifest::{Manifest, ManifestError};
pub use secrecy::{ExposeSecret, SecretString};
pub use signing::SigningError;
