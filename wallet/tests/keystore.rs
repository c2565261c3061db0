//! Keystore files: the Web3 Secret Storage specification's test vectors, round trips, errors
//! that name the account or the file, owner-only permissions, BIP-39 import, and secrets kept
//! out of Debug output, errors and logs.

use std::path::Path;
use std::sync::{Arc, Mutex};

use wallet::keystore::{self, KdfStrength, Keystore, KeystoreError};
use wallet::{Address, ExposeSecret, SecretString};

const SPEC_PASSWORD: &str = "testpassword";
const SPEC_SECRET: &str = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";

/// The specification's PBKDF2-SHA-256 vector.
const SPEC_PBKDF2: &str = r#"{
  "crypto": {
    "cipher": "aes-128-ctr",
    "cipherparams": { "iv": "6087dab2f9fdbbfaddc31a909735c1e6" },
    "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
    "kdf": "pbkdf2",
    "kdfparams": {
      "c": 262144,
      "dklen": 32,
      "prf": "hmac-sha256",
      "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"
    },
    "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"
  },
  "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
  "version": 3
}"#;

/// The specification's scrypt vector, as the Ethereum wiki and go-ethereum's
/// `accounts/keystore/testdata/v3_test_vector.json` give it (n = 2^18, r = 1, p = 8). The copy on
/// today's ethereum.org page (iv 740770fc..., r = 8, p = 1) does not verify: its MAC matches
/// neither r/p order, so it is not used.
const SPEC_SCRYPT: &str = r#"{
  "crypto": {
    "cipher": "aes-128-ctr",
    "cipherparams": { "iv": "83dbcc02d8ccb40e466191a123791e0e" },
    "ciphertext": "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
    "kdf": "scrypt",
    "kdfparams": {
      "dklen": 32,
      "n": 262144,
      "r": 1,
      "p": 8,
      "salt": "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"
    },
    "mac": "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"
  },
  "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
  "version": 3
}"#;

/// The well-known development mnemonic (Hardhat's and anvil's default accounts).
const TEST_MNEMONIC: &str = "test test test test test test test test test test test junk";

fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

fn light(dir: &Path) -> Keystore {
    Keystore::open(dir)
        .expect("keystore opens")
        .with_kdf(KdfStrength::Light)
}

#[test]
fn spec_vector_pbkdf2() {
    let signer = keystore::decrypt_key(
        SPEC_PBKDF2.as_bytes(),
        &secret(SPEC_PASSWORD),
        Path::new("pbkdf2.json"),
    )
    .expect("decrypts");
    assert_eq!(hex::encode(signer.to_bytes()), SPEC_SECRET);
    // The specification's details give the address of that key.
    assert_eq!(
        signer.address(),
        "0x008aeeda4d805471df9b2a5b0f38a0c3bcba786b"
            .parse::<Address>()
            .expect("address")
    );
}

#[test]
fn spec_vector_scrypt() {
    let signer = keystore::decrypt_key(
        SPEC_SCRYPT.as_bytes(),
        &secret(SPEC_PASSWORD),
        Path::new("scrypt.json"),
    )
    .expect("decrypts");
    assert_eq!(hex::encode(signer.to_bytes()), SPEC_SECRET);
}

#[test]
fn spec_vector_with_a_wrong_password_fails_the_mac_check() {
    let err = keystore::decrypt_key(
        SPEC_PBKDF2.as_bytes(),
        &secret("testpassworD"),
        Path::new("/keys/pbkdf2.json"),
    )
    .expect_err("wrong password");
    assert!(
        matches!(err, KeystoreError::WrongPassphrase { .. }),
        "{err:?}"
    );
    // No address in that file, so the error names the file.
    assert!(err.to_string().contains("/keys/pbkdf2.json"), "{err}");
    assert!(err.to_string().contains("MAC"), "{err}");
}

#[test]
fn create_list_unlock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(&dir.path().join("keystore"));
    let pass = secret("correct horse battery staple");
    let account = store.create(&pass, Some("publisher")).expect("creates");
    let second = store.create(&pass, None).expect("creates");

    let listed = store.list().expect("lists");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].address, account.address);
    assert_eq!(listed[0].name.as_deref(), Some("publisher"));
    assert_eq!(listed[1].address, second.address);
    assert_eq!(listed[1].name, None);
    assert!(listed[0].created.is_some());

    // geth's file name: UTC--<time>--<address in lower-case hex>.
    let file_name = account
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    assert!(file_name.starts_with("UTC--"), "{file_name}");
    assert!(
        file_name.ends_with(&format!("--{}", hex::encode(account.address))),
        "{file_name}"
    );

    let signer = store.unlock(account.address, &pass).expect("unlocks");
    assert_eq!(signer.address(), account.address);

    store
        .set_name(second.address, Some("spare"))
        .expect("names");
    assert_eq!(
        store.find(second.address).expect("lists").map(|a| a.name),
        Some(Some("spare".to_string()))
    );
}

#[test]
fn light_files_say_so_and_standard_files_use_geths_standard_scrypt() {
    let signer = keystore::random_signer().expect("random key");
    let pass = secret("pw");
    for (strength, n, p) in [
        (KdfStrength::Light, 4096, 6),
        (KdfStrength::Standard, 262_144, 1),
    ] {
        let json = keystore::encrypt_key(&signer, &pass, strength).expect("encrypts");
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(value["version"], 3);
        assert_eq!(value["crypto"]["cipher"], "aes-128-ctr");
        assert_eq!(value["crypto"]["kdf"], "scrypt");
        assert_eq!(value["crypto"]["kdfparams"]["n"], n);
        assert_eq!(value["crypto"]["kdfparams"]["r"], 8);
        assert_eq!(value["crypto"]["kdfparams"]["p"], p);
        assert_eq!(value["crypto"]["kdfparams"]["dklen"], 32);
        assert_eq!(value["address"], hex::encode(signer.address()));
        let back = keystore::decrypt_key(json.as_bytes(), &pass, Path::new("x")).expect("opens");
        assert_eq!(back.address(), signer.address());
    }
}

#[test]
fn wrong_passphrase_names_the_account() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(dir.path());
    let account = store
        .create(&secret("right passphrase"), None)
        .expect("creates");
    let err = store
        .unlock(account.address, &secret("wrong passphrase"))
        .expect_err("wrong passphrase");
    assert!(
        matches!(err, KeystoreError::WrongPassphrase { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&account.address.to_string()), "{text}");
    assert!(text.contains("wrong passphrase for account"), "{text}");
}

#[test]
fn corrupted_and_truncated_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(dir.path());
    let pass = secret("pw");
    let account = store.create(&pass, None).expect("creates");
    let original = std::fs::read_to_string(&account.path).expect("reads");

    // Truncated: not JSON any more.
    std::fs::write(&account.path, &original[..original.len() / 2]).expect("writes");
    let err = keystore::unlock_file(&account.path, &pass).expect_err("truncated");
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&account.path.display().to_string()),
        "{err}"
    );
    // Listing skips it instead of failing.
    assert!(store.list().expect("lists").is_empty());

    // A damaged field: the ciphertext cut short.
    let mut value: serde_json::Value = serde_json::from_str(&original).expect("JSON");
    value["crypto"]["ciphertext"] = "abcd".into();
    std::fs::write(&account.path, value.to_string()).expect("writes");
    let err = keystore::unlock_file(&account.path, &pass).expect_err("short ciphertext");
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("ciphertext"), "{err}");

    // A flipped ciphertext byte fails the MAC check.
    let mut value: serde_json::Value = serde_json::from_str(&original).expect("JSON");
    let ct = value["crypto"]["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_string();
    let flipped = format!("{}{}", if &ct[..1] == "0" { "1" } else { "0" }, &ct[1..]);
    value["crypto"]["ciphertext"] = flipped.into();
    std::fs::write(&account.path, value.to_string()).expect("writes");
    let err = keystore::unlock_file(&account.path, &pass).expect_err("tampered");
    assert!(
        matches!(err, KeystoreError::WrongPassphrase { .. }),
        "{err:?}"
    );

    // Absurd scrypt parameters are refused before any work.
    let mut value: serde_json::Value = serde_json::from_str(&original).expect("JSON");
    value["crypto"]["kdfparams"]["n"] = (1u64 << 40).into();
    std::fs::write(&account.path, value.to_string()).expect("writes");
    let err = keystore::unlock_file(&account.path, &pass).expect_err("too costly");
    assert!(matches!(err, KeystoreError::Unsupported { .. }), "{err:?}");
}

#[test]
fn a_file_whose_address_lies_is_refused() {
    let signer = keystore::random_signer().expect("key");
    let pass = secret("pw");
    let json = keystore::encrypt_key(&signer, &pass, KdfStrength::Light).expect("encrypts");
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    value["address"] = "0000000000000000000000000000000000000001".into();
    let err = keystore::decrypt_key(value.to_string().as_bytes(), &pass, Path::new("lie.json"))
        .expect_err("mismatch");
    assert!(
        matches!(err, KeystoreError::AddressMismatch { .. }),
        "{err:?}"
    );
}

#[cfg(unix)]
#[test]
fn files_and_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keys");
    std::fs::create_dir(&path).expect("mkdir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let store = light(&path);
    let account = store.create(&secret("pw"), Some("me")).expect("creates");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&account.path), 0o600);
    assert_eq!(mode(&path.join(".modelfactory-names.json")), 0o600);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&path)
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn import_private_key_and_refuse_duplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(dir.path());
    let pass = secret("pw");
    let account = store
        .import_private_key(&secret(&format!("0x{SPEC_SECRET}\n")), &pass, Some("spec"))
        .expect("imports");
    assert_eq!(
        account.address,
        "0x008aeeda4d805471df9b2a5b0f38a0c3bcba786b"
            .parse::<Address>()
            .expect("address")
    );
    let err = store
        .import_private_key(&secret(SPEC_SECRET), &pass, None)
        .expect_err("already there");
    assert!(
        matches!(err, KeystoreError::AlreadyExists { .. }),
        "{err:?}"
    );
    let signer = store.unlock(account.address, &pass).expect("unlocks");
    assert_eq!(hex::encode(signer.to_bytes()), SPEC_SECRET);

    let err = store
        .import_private_key(&secret("0x1234"), &pass, None)
        .expect_err("too short");
    assert!(matches!(err, KeystoreError::InvalidPrivateKey(_)));
    let err = store
        .create(&secret(""), None)
        .expect_err("empty passphrase");
    assert!(matches!(err, KeystoreError::Passphrase(_)));
}

#[test]
fn bip39_test_mnemonic_gives_the_known_accounts() {
    let phrase = secret(TEST_MNEMONIC);
    let first = keystore::signer_from_mnemonic(&phrase, 0).expect("derives");
    assert_eq!(
        first.address().to_string(),
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    );
    assert_eq!(
        hex::encode(first.to_bytes()),
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    );
    let second = keystore::signer_from_mnemonic(&phrase, 1).expect("derives");
    assert_eq!(
        second.address().to_string(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(dir.path());
    // Extra spaces and a line break, as a pasted phrase may have.
    let pasted = secret(&format!("  {}\n", TEST_MNEMONIC.replace(' ', "  ")));
    let account = store
        .import_mnemonic(&pasted, 2, &secret("pw"), Some("third"))
        .expect("imports");
    assert_eq!(
        account.address.to_string(),
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    );
}

/// Collects what the crate logs, to check that secrets never reach a log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let passphrase_text = "Tr0ub4dor&3-passphrase";
    let pass = secret(passphrase_text);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = light(dir.path());
    let account = store
        .import_private_key(&secret(SPEC_SECRET), &pass, Some("spec"))
        .expect("imports");
    let signer = store.unlock(account.address, &pass).expect("unlocks");
    let mnemonic_signer =
        keystore::signer_from_mnemonic(&secret(TEST_MNEMONIC), 0).expect("derives");

    let mut shown = vec![
        format!("{store:?}"),
        format!("{account:?}"),
        format!("{signer:?}"),
        format!("{mnemonic_signer:?}"),
        format!("{pass:?}"),
    ];
    let errors = [
        store
            .unlock(account.address, &secret("not it"))
            .expect_err("wrong"),
        store
            .import_private_key(&secret(&format!("{SPEC_SECRET}00")), &pass, None)
            .expect_err("too long"),
        store
            .import_private_key(&secret(&SPEC_SECRET.replace('a', "g")), &pass, None)
            .expect_err("not hex"),
        store
            .import_private_key(&secret(SPEC_SECRET), &pass, None)
            .expect_err("duplicate"),
        keystore::signer_from_mnemonic(&secret(&TEST_MNEMONIC.replace("junk", "junkk")), 0)
            .expect_err("bad word"),
    ];
    for err in &errors {
        shown.push(format!("{err}"));
        shown.push(format!("{err:?}"));
    }
    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
    assert!(logs.contains("unlocked account"), "logging works: {logs}");
    shown.push(logs);

    let key_bytes = hex::encode(signer.to_bytes());
    let anvil_key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    for text in &shown {
        let lower = text.to_lowercase();
        assert!(!lower.contains(SPEC_SECRET), "key in: {text}");
        assert!(!lower.contains(&key_bytes), "key in: {text}");
        assert!(!lower.contains(anvil_key), "key in: {text}");
        assert!(!text.contains(passphrase_text), "passphrase in: {text}");
        assert!(!text.contains("junkk"), "mnemonic word in: {text}");
        assert!(!text.contains("test test"), "mnemonic in: {text}");
    }
    assert_eq!(pass.expose_secret(), passphrase_text);
}

#[test]
fn passphrase_from_environment_or_reader() {
    // Only this test touches the variable.
    let mut input = std::io::Cursor::new(b"from stdin\n".to_vec());
    // SAFETY: no other thread of this test binary reads or writes MODELFACTORY_PASSPHRASE.
    unsafe { std::env::remove_var(wallet::passphrase::PASSPHRASE_ENV) };
    assert!(wallet::passphrase::from_env().is_none());
    let pass = wallet::passphrase::from_env_or_reader(&mut input).expect("reads");
    assert_eq!(pass.expose_secret(), "from stdin");
    // SAFETY: as above.
    unsafe { std::env::set_var(wallet::passphrase::PASSPHRASE_ENV, "from env") };
    let mut unread = std::io::Cursor::new(b"ignored\n".to_vec());
    let pass = wallet::passphrase::from_env_or_reader(&mut unread).expect("env");
    assert_eq!(pass.expose_secret(), "from env");
    assert_eq!(unread.position(), 0);
    // SAFETY: as above.
    unsafe { std::env::remove_var(wallet::passphrase::PASSPHRASE_ENV) };
}
