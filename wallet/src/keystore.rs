//! Encrypted keys on disk: one Web3 Secret Storage (version 3) file per account, the format geth,
//! Foundry's `cast wallet`, MetaMask's import and Python's eth-account read and write.
//!
//! A [`Keystore`] is a directory of such files, named as geth names them
//! (`UTC--<time>--<address>`), readable by their owner only. Keys are created at random or
//! imported from a private key or a BIP-39 mnemonic, encrypted with a key derived from the
//! passphrase by scrypt, and decrypted only for as long as a signer is needed. Listing accounts
//! needs no passphrase: the files carry their address in clear, as geth's do.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::coins_bip39::{English, Wordlist};
use alloy_signer_local::{MnemonicBuilder, PrivateKeySigner};
use chrono::{DateTime, NaiveDateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Account names live beside the keys, in a dot file that geth's directory scan skips.
const NAMES_FILE: &str = ".modelfactory-names.json";

/// Upper bounds for parameters read from a file, so a crafted file cannot ask for terabytes of
/// memory or hours of work. Generous: geth's standard scrypt setting uses 256 MiB.
const MAX_SCRYPT_MEMORY: u64 = 2 << 30;
const MAX_SCRYPT_LOG_N: u8 = 24;
const MAX_PBKDF2_ROUNDS: u32 = 1 << 24;

/// How hard the passphrase is stretched for new files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KdfStrength {
    /// geth's "standard" scrypt setting, n = 2^18, r = 8, p = 1 (256 MiB, about a second).
    #[default]
    Standard,
    /// geth's "light" setting, n = 2^12, r = 8, p = 6: for tests, where thousands of
    /// derivations would otherwise take minutes. Not for keys that hold anything of value.
    Light,
}

impl KdfStrength {
    /// `(log2 n, r, p)`.
    fn scrypt(self) -> (u8, u32, u32) {
        match self {
            KdfStrength::Standard => (18, 8, 1),
            KdfStrength::Light => (12, 8, 6),
        }
    }
}

/// What went wrong with a key or a keystore file. Never carries key material or passphrases.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a keystore file, or is damaged (truncated, edited, wrong lengths).
    #[error("{} is not a valid keystore file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A well-formed file in a variant this build does not read (cipher, KDF, version).
    #[error("{} uses an unsupported keystore format: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// The MAC over the ciphertext does not match: the passphrase is wrong (or the ciphertext
    /// was changed).
    #[error("wrong passphrase for account {account} (the keystore file's MAC check failed)")]
    WrongPassphrase { account: String },
    /// The key decrypted, but to another address than the file states.
    #[error("{} says it holds {stated} but its key belongs to {actual}", path.display())]
    AddressMismatch {
        path: PathBuf,
        stated: Address,
        actual: Address,
    },
    #[error("no account {address} in the keystore at {}", dir.display())]
    NotFound { address: Address, dir: PathBuf },
    #[error("account {address} is already in the keystore ({})", path.display())]
    AlreadyExists { address: Address, path: PathBuf },
    #[error("not a valid private key: {0}")]
    InvalidPrivateKey(&'static str),
    #[error("not a valid BIP-39 mnemonic: {0}")]
    InvalidMnemonic(String),
    #[error("{0}")]
    Passphrase(String),
    #[error("could not get random bytes from the operating system: {0}")]
    Random(String),
    /// A fault of this crate (parameters it chose itself were refused).
    #[error("internal keystore error: {0}")]
    Internal(String),
}

type Result<T, E = KeystoreError> = std::result::Result<T, E>;

/// One account in a keystore, as listed without its passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: Address,
    /// The name given when it was created or imported, if any.
    pub name: Option<String>,
    /// When the file was written, from geth's file name (`None` for files named otherwise).
    pub created: Option<DateTime<Utc>>,
    pub path: PathBuf,
}

/// A directory of keystore files.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
    strength: KdfStrength,
}

impl Keystore {
    /// Opens the directory, creating it when missing. Its permissions are set to owner-only
    /// (0700) on unix: the files are encrypted, but their addresses and names are not.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Keystore> {
        let dir = dir.into();
        let io = |source| KeystoreError::Io {
            path: dir.clone(),
            source,
        };
        if !dir.is_dir() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&dir).map_err(io)?;
            tracing::info!(dir = %dir.display(), "created keystore directory");
        }
        restrict_permissions(&dir, 0o700).map_err(io)?;
        Ok(Keystore {
            dir,
            strength: KdfStrength::Standard,
        })
    }

    /// Sets how new files are encrypted (existing files keep their own parameters).
    pub fn with_kdf(mut self, strength: KdfStrength) -> Keystore {
        self.strength = strength;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new random key and stores it.
    pub fn create(&self, passphrase: &SecretString, name: Option<&str>) -> Result<Account> {
        let signer = random_signer()?;
        self.store(&signer, passphrase, name)
    }

    /// Imports a private key given as 64 hex digits, with or without `0x`.
    pub fn import_private_key(
        &self,
        key_hex: &SecretString,
        passphrase: &SecretString,
        name: Option<&str>,
    ) -> Result<Account> {
        let signer = signer_from_hex(key_hex)?;
        self.store(&signer, passphrase, name)
    }

    /// Imports the key at `m/44'/60'/0'/0/{index}` of an English BIP-39 mnemonic (no BIP-39
    /// password), the path MetaMask, Ledger Live and Foundry use for account `index`.
    pub fn import_mnemonic(
        &self,
        phrase: &SecretString,
        index: u32,
        passphrase: &SecretString,
        name: Option<&str>,
    ) -> Result<Account> {
        let signer = signer_from_mnemonic(phrase, index)?;
        self.store(&signer, passphrase, name)
    }

    /// Encrypts and writes a signer's key as a new file.
    pub fn store(
        &self,
        signer: &PrivateKeySigner,
        passphrase: &SecretString,
        name: Option<&str>,
    ) -> Result<Account> {
        if passphrase.expose_secret().is_empty() {
            return Err(KeystoreError::Passphrase(
                "an empty passphrase would leave the key unprotected; choose one".into(),
            ));
        }
        let address = signer.address();
        if let Some(existing) = self.find(address)? {
            return Err(KeystoreError::AlreadyExists {
                address,
                path: existing.path,
            });
        }
        let json = encrypt_key(signer, passphrase, self.strength)?;
        let created = Utc::now();
        let file_name = format!(
            "UTC--{}--{}",
            created.format("%Y-%m-%dT%H-%M-%S%.9fZ"),
            hex::encode(address)
        );
        let path = self.dir.join(&file_name);
        write_private(&self.dir, &path, json.as_bytes())?;
        if let Some(name) = name {
            self.set_name(address, Some(name))?;
        }
        tracing::info!(%address, file = %file_name, "stored key");
        Ok(Account {
            address,
            name: name.map(str::to_string),
            created: Some(created),
            path,
        })
    }

    /// Every account whose file can be read, oldest first. Files that are not keystore files
    /// are skipped with a warning, as geth does, so one stray file does not hide the others.
    pub fn list(&self) -> Result<Vec<Account>> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        let names = self.names()?;
        let mut accounts = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // geth skips dot files, editor backups and folders too.
            if file_name.starts_with('.') || file_name.ends_with('~') || path.is_dir() {
                continue;
            }
            match stated_address(&path) {
                Ok(address) => accounts.push(Account {
                    address,
                    name: names.get(&address).cloned(),
                    created: created_from_file_name(&file_name),
                    path,
                }),
                Err(err) => tracing::warn!("skipping {}: {err}", path.display()),
            }
        }
        accounts.sort_by(|a, b| (a.created, &a.path).cmp(&(b.created, &b.path)));
        Ok(accounts)
    }

    /// The account with this address, if the keystore has it.
    pub fn find(&self, address: Address) -> Result<Option<Account>> {
        Ok(self.list()?.into_iter().find(|a| a.address == address))
    }

    /// Decrypts an account's key. The signer holds the key until it is dropped, when it is
    /// zeroised.
    pub fn unlock(&self, address: Address, passphrase: &SecretString) -> Result<PrivateKeySigner> {
        let account = self.find(address)?.ok_or_else(|| KeystoreError::NotFound {
            address,
            dir: self.dir.clone(),
        })?;
        let signer = unlock_file(&account.path, passphrase)?;
        tracing::info!(%address, "unlocked account");
        Ok(signer)
    }

    /// Names an account (or removes its name with `None`).
    pub fn set_name(&self, address: Address, name: Option<&str>) -> Result<()> {
        let mut names = self.names()?;
        match name {
            Some(name) => names.insert(address, name.to_string()),
            None => names.remove(&address),
        };
        let json = serde_json::to_vec_pretty(&names).map_err(|e| KeystoreError::Corrupt {
            path: self.dir.join(NAMES_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.dir, &self.dir.join(NAMES_FILE), &json)
    }

    fn names(&self) -> Result<BTreeMap<Address, String>> {
        let path = self.dir.join(NAMES_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt {
                path,
                reason: format!("the account names are not readable JSON: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(KeystoreError::Io { path, source }),
        }
    }
}

/// Decrypts one keystore file, wherever it is.
pub fn unlock_file(path: &Path, passphrase: &SecretString) -> Result<PrivateKeySigner> {
    let bytes = fs::read(path).map_err(|source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decrypt_key(&bytes, passphrase, path)
}

/// A new random key, from the operating system's generator.
pub fn random_signer() -> Result<PrivateKeySigner> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    // A random 32-byte string is a valid secp256k1 key but for odds of about 2^-128; retry then.
    loop {
        getrandom::fill(bytes.as_mut()).map_err(|e| KeystoreError::Random(e.to_string()))?;
        if let Ok(signer) = PrivateKeySigner::from_slice(bytes.as_ref()) {
            return Ok(signer);
        }
    }
}

/// A signer from 64 hex digits (an optional `0x`, surrounding whitespace ignored).
pub fn signer_from_hex(key_hex: &SecretString) -> Result<PrivateKeySigner> {
    let text = key_hex.expose_secret().trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.len() != 64 {
        return Err(KeystoreError::InvalidPrivateKey(
            "expected 64 hex digits (32 bytes)",
        ));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    // The decoder's own error names the offending character; ours does not.
    hex::decode_to_slice(digits, bytes.as_mut())
        .map_err(|_| KeystoreError::InvalidPrivateKey("not hexadecimal"))?;
    PrivateKeySigner::from_slice(bytes.as_ref()).map_err(|_| {
        KeystoreError::InvalidPrivateKey("zero or not below the secp256k1 group order")
    })
}

/// The signer at `m/44'/60'/0'/0/{index}` of an English BIP-39 mnemonic.
pub fn signer_from_mnemonic(phrase: &SecretString, index: u32) -> Result<PrivateKeySigner> {
    // Normalise spacing; the words themselves are not echoed in any error.
    let words: Vec<&str> = phrase.expose_secret().split_whitespace().collect();
    if ![12, 15, 18, 21, 24].contains(&words.len()) {
        return Err(KeystoreError::InvalidMnemonic(format!(
            "{} words (a mnemonic has 12, 15, 18, 21 or 24)",
            words.len()
        )));
    }
    if let Some(position) = words.iter().position(|w| English::get_index(w).is_err()) {
        return Err(KeystoreError::InvalidMnemonic(format!(
            "word {} is not in the BIP-39 English word list",
            position + 1
        )));
    }
    let normalised = Zeroizing::new(words.join(" "));
    MnemonicBuilder::<English>::default()
        .phrase(normalised.as_str())
        .index(index)
        .and_then(|builder| builder.build())
        .map_err(|_| {
            KeystoreError::InvalidMnemonic("the checksum does not match (a word is wrong)".into())
        })
}

/// Encrypts a key as a Web3 Secret Storage v3 document (scrypt, AES-128-CTR).
pub fn encrypt_key(
    signer: &PrivateKeySigner,
    passphrase: &SecretString,
    strength: KdfStrength,
) -> Result<String> {
    let (log_n, r, p) = strength.scrypt();
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| KeystoreError::Random(e.to_string()))?;
    getrandom::fill(&mut iv).map_err(|e| KeystoreError::Random(e.to_string()))?;

    let params = scrypt::Params::new(log_n, r, p)
        .map_err(|_| KeystoreError::Internal("invalid scrypt parameters".into()))?;
    let mut derived = Zeroizing::new([0u8; 32]);
    let started = Instant::now();
    scrypt::scrypt(
        passphrase.expose_secret().as_bytes(),
        &salt,
        &params,
        derived.as_mut(),
    )
    .map_err(|_| KeystoreError::Internal("invalid scrypt output length".into()))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "scrypt key derivation"
    );

    let mut key = signer.to_bytes();
    let mut ciphertext = key.0;
    key.0.zeroize();
    let mut cipher = Aes128Ctr::new(derived[..16].into(), &iv.into());
    cipher.apply_keystream(&mut ciphertext);
    let mac = mac(&derived[16..32], &ciphertext);

    let file = KeyFile {
        address: Some(hex::encode(signer.address())),
        crypto: CryptoSection {
            cipher: "aes-128-ctr".into(),
            cipherparams: CipherParams {
                iv: hex::encode(iv),
            },
            ciphertext: hex::encode(ciphertext),
            kdf: "scrypt".into(),
            kdfparams: serde_json::json!({
                "dklen": 32,
                "n": 1u64 << log_n,
                "p": p,
                "r": r,
                "salt": hex::encode(salt),
            }),
            mac: hex::encode(mac),
        },
        id: uuid::Uuid::new_v4().to_string(),
        version: 3,
    };
    serde_json::to_string(&file).map_err(|e| KeystoreError::Internal(e.to_string()))
}

/// Decrypts a Web3 Secret Storage v3 document; `origin` names it in errors.
pub fn decrypt_key(
    json: &[u8],
    passphrase: &SecretString,
    origin: &Path,
) -> Result<PrivateKeySigner> {
    let corrupt = |reason: String| KeystoreError::Corrupt {
        path: origin.to_path_buf(),
        reason,
    };
    let unsupported = |reason: String| KeystoreError::Unsupported {
        path: origin.to_path_buf(),
        reason,
    };
    let file: KeyFile = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    if file.version != 3 {
        return Err(unsupported(format!(
            "version {} (only version 3 is read)",
            file.version
        )));
    }
    let stated = file
        .address
        .as_deref()
        .map(|a| {
            a.parse::<Address>()
                .map_err(|_| corrupt(format!("the address {a:?} is not an address")))
        })
        .transpose()?;
    let crypto = &file.crypto;
    if crypto.cipher != "aes-128-ctr" {
        return Err(unsupported(format!(
            "cipher {:?} (only aes-128-ctr)",
            crypto.cipher
        )));
    }
    let iv: [u8; 16] = decode_hex(&crypto.cipherparams.iv, "cipherparams.iv", origin)?
        .try_into()
        .map_err(|_| corrupt("cipherparams.iv is not 16 bytes".into()))?;
    let ciphertext: [u8; 32] = decode_hex(&crypto.ciphertext, "ciphertext", origin)?
        .try_into()
        .map_err(|_| corrupt("ciphertext is not 32 bytes (a secp256k1 key)".into()))?;
    let expected_mac: [u8; 32] = decode_hex(&crypto.mac, "mac", origin)?
        .try_into()
        .map_err(|_| corrupt("mac is not 32 bytes".into()))?;

    let derived = derive_key(crypto, passphrase, origin)?;
    let actual_mac = mac(&derived[16..32], &ciphertext);
    if !bool::from(actual_mac.as_slice().ct_eq(expected_mac.as_slice())) {
        let account = match stated {
            Some(address) => format!("{address} ({})", origin.display()),
            None => origin.display().to_string(),
        };
        return Err(KeystoreError::WrongPassphrase { account });
    }

    let mut key = Zeroizing::new(ciphertext);
    let mut cipher = Aes128Ctr::new(derived[..16].into(), &iv.into());
    cipher.apply_keystream(key.as_mut());
    let signer = PrivateKeySigner::from_slice(key.as_ref())
        .map_err(|_| corrupt("the decrypted key is not a valid secp256k1 key".into()))?;
    if let Some(stated) = stated
        && stated != signer.address()
    {
        return Err(KeystoreError::AddressMismatch {
            path: origin.to_path_buf(),
            stated,
            actual: signer.address(),
        });
    }
    Ok(signer)
}

/// The KDF named in the file, with its parameters checked before any work is done.
fn derive_key(
    crypto: &CryptoSection,
    passphrase: &SecretString,
    origin: &Path,
) -> Result<Zeroizing<Vec<u8>>> {
    let corrupt = |reason: String| KeystoreError::Corrupt {
        path: origin.to_path_buf(),
        reason,
    };
    let unsupported = |reason: String| KeystoreError::Unsupported {
        path: origin.to_path_buf(),
        reason,
    };
    let params = &crypto.kdfparams;
    let number = |key: &str| -> Result<u64> {
        params
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| corrupt(format!("kdfparams.{key} is missing or not a whole number")))
    };
    let salt_hex = params
        .get("salt")
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("kdfparams.salt is missing".into()))?;
    let salt = decode_hex(salt_hex, "kdfparams.salt", origin)?;
    let dklen = number("dklen")?;
    // The spec asks for at least 32 bytes: 16 for the cipher, 16 for the MAC.
    if !(32..=64).contains(&dklen) {
        return Err(corrupt(format!("kdfparams.dklen {dklen} is not 32 to 64")));
    }
    let mut derived = Zeroizing::new(vec![0u8; dklen as usize]);
    let password = passphrase.expose_secret().as_bytes();
    let started = Instant::now();
    match crypto.kdf.as_str() {
        "scrypt" => {
            let n = number("n")?;
            let r = number("r")?;
            let p = number("p")?;
            if n < 2 || !n.is_power_of_two() {
                return Err(corrupt(format!("kdfparams.n {n} is not a power of two")));
            }
            let log_n = n.trailing_zeros() as u8;
            let memory = 128u64.saturating_mul(r).saturating_mul(n);
            if log_n > MAX_SCRYPT_LOG_N || memory > MAX_SCRYPT_MEMORY || p > 64 {
                return Err(unsupported(format!(
                    "scrypt parameters n={n}, r={r}, p={p} ask for more work than this build allows"
                )));
            }
            let (r, p) = (
                u32::try_from(r).map_err(|_| corrupt("kdfparams.r is too large".into()))?,
                u32::try_from(p).map_err(|_| corrupt("kdfparams.p is too large".into()))?,
            );
            let params = scrypt::Params::new(log_n, r, p)
                .map_err(|_| corrupt(format!("invalid scrypt parameters n={n}, r={r}, p={p}")))?;
            scrypt::scrypt(password, &salt, &params, &mut derived)
                .map_err(|_| corrupt("invalid scrypt output length".into()))?;
        }
        "pbkdf2" => {
            let prf = params.get("prf").and_then(Value::as_str).unwrap_or("");
            if prf != "hmac-sha256" {
                return Err(unsupported(format!(
                    "PBKDF2 with {prf:?} (only hmac-sha256)"
                )));
            }
            let c = number("c")?;
            if c == 0 || c > u64::from(MAX_PBKDF2_ROUNDS) {
                return Err(unsupported(format!(
                    "PBKDF2 with {c} rounds (1 to {MAX_PBKDF2_ROUNDS} are read)"
                )));
            }
            pbkdf2::pbkdf2_hmac::<pbkdf2::sha2::Sha256>(password, &salt, c as u32, &mut derived);
        }
        other => {
            return Err(unsupported(format!(
                "key derivation {other:?} (scrypt or pbkdf2)"
            )));
        }
    }
    tracing::debug!(
        kdf = %crypto.kdf,
        elapsed_ms = started.elapsed().as_millis(),
        "key derivation"
    );
    Ok(derived)
}

/// keccak256(derived[16..32] ‖ ciphertext), as the spec defines the MAC.
fn mac(mac_key: &[u8], ciphertext: &[u8]) -> B256 {
    let mut body = Zeroizing::new(Vec::with_capacity(mac_key.len() + ciphertext.len()));
    body.extend_from_slice(mac_key);
    body.extend_from_slice(ciphertext);
    keccak256(body.as_slice())
}

fn decode_hex(text: &str, field: &str, origin: &Path) -> Result<Vec<u8>> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(digits).map_err(|_| KeystoreError::Corrupt {
        path: origin.to_path_buf(),
        reason: format!("{field} is not hexadecimal"),
    })
}

/// The address a file states, read without decrypting anything.
fn stated_address(path: &Path) -> Result<Address> {
    let bytes = fs::read(path).map_err(|source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| KeystoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let address = file
        .address
        .ok_or_else(|| corrupt("no address field (open it with its passphrase instead)".into()))?;
    address
        .parse()
        .map_err(|_| corrupt(format!("the address {address:?} is not an address")))
}

/// geth's `UTC--2024-05-20T10-06-03.843712000Z--<address>`.
fn created_from_file_name(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix("UTC--")?.split("--").next()?;
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S%.fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Writes a file readable by its owner only, complete or not at all (a temporary file renamed
/// into place), so a crash never leaves half a key.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        restrict_permissions(&temp, 0o600)?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// The file's layout. `kdfparams` stays a JSON value: its fields depend on `kdf`.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    // Some older wallets wrote `Crypto`.
    #[serde(alias = "Crypto")]
    crypto: CryptoSection,
    id: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct CryptoSection {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: Value,
    mac: String,
}

#[derive(Serialize, Deserialize)]
struct CipherParams {
    iv: String,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("address", &self.address)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geth_file_names_give_the_creation_time() {
        let t = created_from_file_name(
            "UTC--2016-05-20T10-06-03.843712000Z--008aeeda4d805471df9b2a5b0f38a0c3bcba786b",
        )
        .expect("parses");
        assert_eq!(t.to_rfc3339(), "2016-05-20T10:06:03.843712+00:00");
        assert_eq!(created_from_file_name("key.json"), None);
    }

    #[test]
    fn private_key_errors_do_not_echo_the_input() {
        let secret = "zz28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
        let err = signer_from_hex(&SecretString::from(secret)).expect_err("not hex");
        assert!(!err.to_string().contains("zz"));
        assert!(signer_from_hex(&SecretString::from("0x1234")).is_err());
        let zero = "0".repeat(64);
        assert!(signer_from_hex(&SecretString::from(zero)).is_err());
    }

    #[test]
    fn mnemonic_errors_name_positions_not_words() {
        let bad = "test test test test test test test test test test test junkyard";
        let err = signer_from_mnemonic(&SecretString::from(bad), 0).expect_err("unknown word");
        let text = err.to_string();
        assert!(text.contains("word 12"), "{text}");
        assert!(!text.contains("junkyard"), "{text}");
        let checksum = "test test test test test test test test test test test test";
        assert!(signer_from_mnemonic(&SecretString::from(checksum), 0).is_err());
        assert!(signer_from_mnemonic(&SecretString::from("test test"), 0).is_err());
    }
}
