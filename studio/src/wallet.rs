//! The user's wallet in the studio: accounts in the workspace's keystore (Web3 Secret Storage
//! files, readable by the owner only), created or imported, and signatures made with a
//! passphrase given for each use. Nothing here keeps a passphrase or a key after the call.

use std::str::FromStr;

use ::wallet::signing;
use ::wallet::{Account, Address, Keystore, SecretString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Studio;
use crate::error::{Error, Result};

/// An account as front ends list it: never its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletAccount {
    /// Checksummed (EIP-55).
    pub address: String,
    pub name: Option<String>,
    pub created: Option<DateTime<Utc>>,
}

impl From<Account> for WalletAccount {
    fn from(a: Account) -> Self {
        Self {
            address: a.address.to_checksum(None),
            name: a.name,
            created: a.created,
        }
    }
}

/// A key to import. The secret stays wrapped until the keystore encrypts it.
pub enum KeyImport {
    /// 64 hex digits, with or without `0x`.
    PrivateKey(SecretString),
    /// An English BIP-39 mnemonic and the account index on `m/44'/60'/0'/0/i`.
    Mnemonic { phrase: SecretString, index: u32 },
}

/// A key import as the API and the desktop app receive it: a private key or a mnemonic, and
/// the passphrase that will encrypt it. No `Debug`: it holds secrets.
#[derive(Deserialize)]
pub struct ImportRequest {
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub mnemonic: Option<String>,
    /// The mnemonic's account index.
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub name: Option<String>,
    pub passphrase: String,
}

/// A signature and what it signed, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedDigest {
    pub address: String,
    /// The 32-byte hash that was signed (EIP-191 or EIP-712), as 0x-hex.
    pub digest: String,
    /// 65 bytes `r ‖ s ‖ v` as 0x-hex, v being 27 or 28.
    pub signature: String,
}

/// Parses a 0x-address a user typed.
pub fn parse_address(text: &str) -> Result<Address> {
    Address::from_str(text.trim()).map_err(|e| Error::InvalidInput {
        field: "address".into(),
        message: format!("{text:?} is not an Ethereum address: {e}"),
    })
}

impl Studio {
    /// Imports what an [`ImportRequest`] carries, its secrets wrapped at once.
    pub fn import_account_request(&self, request: ImportRequest) -> Result<WalletAccount> {
        let passphrase = SecretString::from(request.passphrase);
        let key = match (request.private_key, request.mnemonic) {
            (Some(k), None) => KeyImport::PrivateKey(SecretString::from(k)),
            (None, Some(m)) => KeyImport::Mnemonic {
                phrase: SecretString::from(m),
                index: request.index,
            },
            _ => {
                return Err(Error::InvalidInput {
                    field: "key".into(),
                    message: "give either private_key or mnemonic".into(),
                });
            }
        };
        self.import_account(&key, &passphrase, request.name.as_deref())
    }

    /// The workspace's keystore, created (owner-only) on first use.
    pub fn keystore(&self) -> Result<Keystore> {
        Ok(Keystore::open(self.workspace().keystore_dir())?)
    }

    pub fn wallet_accounts(&self) -> Result<Vec<WalletAccount>> {
        Ok(self
            .keystore()?
            .list()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Creates a new random key, encrypted with `passphrase`.
    pub fn create_account(
        &self,
        passphrase: &SecretString,
        name: Option<&str>,
    ) -> Result<WalletAccount> {
        let account = self.keystore()?.create(passphrase, name)?;
        tracing::info!(address = %account.address, "created an account");
        Ok(account.into())
    }

    /// Imports a private key or a mnemonic's account, encrypted with `passphrase`.
    pub fn import_account(
        &self,
        key: &KeyImport,
        passphrase: &SecretString,
        name: Option<&str>,
    ) -> Result<WalletAccount> {
        let keystore = self.keystore()?;
        let account = match key {
            KeyImport::PrivateKey(hex) => keystore.import_private_key(hex, passphrase, name)?,
            KeyImport::Mnemonic { phrase, index } => {
                keystore.import_mnemonic(phrase, *index, passphrase, name)?
            }
        };
        tracing::info!(address = %account.address, "imported an account");
        Ok(account.into())
    }

    /// Signs a personal message (EIP-191) with an account.
    pub fn sign_message(
        &self,
        address: &str,
        passphrase: &SecretString,
        message: &[u8],
    ) -> Result<SignedDigest> {
        let address = parse_address(address)?;
        let signer = self.keystore()?.unlock(address, passphrase)?;
        let signature = signing::sign_message(&signer, message)?;
        Ok(SignedDigest {
            address: address.to_checksum(None),
            digest: signing::message_hash(message).to_string(),
            signature: signing::signature_to_hex(&signature),
        })
    }

    /// Signs an `eth_signTypedData_v4` document (EIP-712) with an account.
    pub fn sign_typed_data(
        &self,
        address: &str,
        passphrase: &SecretString,
        typed_data_json: &str,
    ) -> Result<SignedDigest> {
        let address = parse_address(address)?;
        let typed_data = signing::typed_data_from_json(typed_data_json)?;
        let digest = signing::typed_data_hash(&typed_data)?;
        let signer = self.keystore()?.unlock(address, passphrase)?;
        let signature = signing::sign_typed_data(&signer, &typed_data)?;
        Ok(SignedDigest {
            address: address.to_checksum(None),
            digest: digest.to_string(),
            signature: signing::signature_to_hex(&signature),
        })
    }
}
