//! Interoperability with an independent implementation, Python's eth-account: it decrypts the
//! keystore files we write, we open the files it writes (scrypt and PBKDF2), and it computes
//! the same EIP-191 and EIP-712 signatures (both sides sign deterministically, RFC 6979).
//!
//! eth-account lives in a virtual environment that `scripts/test` sets up
//! (`install_eth_account` in `scripts/lib.sh`), at `$HOME/.cache/modelfactory/venv-eth` or at
//! `MODELFACTORY_ETH_VENV`. Without it this test fails and says how to set it up.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use wallet::keystore::{self, KdfStrength, Keystore};
use wallet::{SecretString, signing};

const SCRIPT: &str = r#"
import json, sys
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

job = json.load(sys.stdin)
out = {}
with open(job["decrypt"]["path"]) as f:
    out["decrypted"] = "0x" + bytes(Account.decrypt(json.load(f), job["decrypt"]["password"])).hex()
out["encrypted"] = [
    json.dumps(Account.encrypt(e["key"], e["password"], kdf=e["kdf"], iterations=e["iterations"]))
    for e in job["encrypt"]
]
key = job["sign"]["key"]
signed = Account.sign_message(encode_defunct(text=job["sign"]["text"]), key)
out["message_signature"] = "0x" + bytes(signed.signature).hex()
typed = Account.sign_message(encode_typed_data(full_message=job["sign"]["typed"]), key)
out["typed_signature"] = "0x" + bytes(typed.signature).hex()
out["typed_digest"] = "0x" + bytes(typed.message_hash).hex()
json.dump(out, sys.stdout)
"#;

fn eth_python() -> PathBuf {
    let venv = match std::env::var_os("MODELFACTORY_ETH_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/modelfactory/venv-eth"),
    };
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let usable = python.exists()
        && Command::new(&python)
            .args(["-c", "import eth_account"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        usable,
        "Python's eth-account is not installed at {} (the keystore interop test needs it). \
         Set it up with `bash -c 'source scripts/lib.sh && install_eth_account'` from the \
         repository root (scripts/test does this), or point MODELFACTORY_ETH_VENV at a virtual \
         environment that has eth-account.",
        venv.display()
    );
    python
}

fn run_python(job: &Value) -> Value {
    let mut child = Command::new(eth_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("job written");
    let output = child.wait_with_output().expect("python runs");
    assert!(
        output.status.success(),
        "eth-account failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python's answer is JSON")
}

#[test]
fn eth_account_reads_our_files_and_we_read_its_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Keystore::open(dir.path().join("keys"))
        .expect("opens")
        .with_kdf(KdfStrength::Light);
    let ours_pass = "our passphrase";
    let ours = store
        .create(&SecretString::from(ours_pass), Some("ours"))
        .expect("creates");
    let ours_key = format!(
        "0x{}",
        hex::encode(
            store
                .unlock(ours.address, &SecretString::from(ours_pass))
                .expect("unlocks")
                .to_bytes()
        )
    );

    // Theirs: anvil's public test key 1, never holding anything.
    let theirs_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let theirs_pass = "their passphrase";
    let typed = serde_json::from_str::<Value>(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contracts/test/golden/eip712.json"
        ))
        .expect("golden file"),
    )
    .expect("JSON");
    let typed_doc = json!({
        "types": typed["types"],
        "primaryType": typed["primaryType"],
        "domain": typed["domain"],
        "message": typed["message"],
    });
    let text = "Publish adapter smollm2-135m-clinical-lora";
    let answer = run_python(&json!({
        "decrypt": { "path": ours.path, "password": ours_pass },
        "encrypt": [
            { "key": theirs_key, "password": theirs_pass, "kdf": "scrypt", "iterations": 4096 },
            { "key": theirs_key, "password": theirs_pass, "kdf": "pbkdf2", "iterations": 1000 },
        ],
        "sign": { "key": theirs_key, "text": text, "typed": typed_doc },
    }));

    // eth-account decrypted our file to our key.
    assert_eq!(answer["decrypted"], ours_key);

    // We open both of its files, from a keystore directory as well as directly.
    let encrypted = answer["encrypted"].as_array().expect("list");
    assert_eq!(encrypted.len(), 2);
    let theirs_signer = keystore::signer_from_hex(&SecretString::from(theirs_key)).expect("key");
    for (i, file) in encrypted.iter().enumerate() {
        let file = file.as_str().expect("JSON text");
        let signer = keystore::decrypt_key(
            file.as_bytes(),
            &SecretString::from(theirs_pass),
            std::path::Path::new("eth-account.json"),
        )
        .expect("we decrypt eth-account's file");
        assert_eq!(signer.address(), theirs_signer.address(), "file {i}");
        if i == 0 {
            // Dropped into the keystore, it is listed and unlocks like one of ours.
            std::fs::write(store.dir().join("from-eth-account.json"), file).expect("writes");
        }
    }
    let listed = store.list().expect("lists");
    assert!(listed.iter().any(|a| a.address == theirs_signer.address()));
    let unlocked = store
        .unlock(theirs_signer.address(), &SecretString::from(theirs_pass))
        .expect("unlocks eth-account's file");
    assert_eq!(unlocked.address(), theirs_signer.address());
    let wrong = store
        .unlock(theirs_signer.address(), &SecretString::from("nope"))
        .expect_err("wrong passphrase");
    assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");

    // The same EIP-191 signature, byte for byte.
    let ours_sig = signing::sign_message(&theirs_signer, text.as_bytes()).expect("signs");
    assert_eq!(
        signing::signature_to_hex(&ours_sig),
        answer["message_signature"].as_str().expect("hex")
    );

    // The same EIP-712 digest and signature for the registry's golden registration.
    let typed = signing::typed_data_from_json(&typed_doc.to_string()).expect("typed data");
    assert_eq!(
        signing::typed_data_hash(&typed).expect("hash").to_string(),
        answer["typed_digest"].as_str().expect("hex")
    );
    let ours_typed = signing::sign_typed_data(&theirs_signer, &typed).expect("signs");
    assert_eq!(
        signing::signature_to_hex(&ours_typed),
        answer["typed_signature"].as_str().expect("hex")
    );
}
