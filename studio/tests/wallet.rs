//! `modelfactory wallet`, run as a user would run it: keys read from standard input or the
//! environment, never from arguments; files owner-only; secrets absent from every output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PASS: &str = "correct horse battery staple";
/// Foundry's and Hardhat's well-known development mnemonic; account 0 is 0xf39F…2266.
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
const DEV_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// keccak256("cow"), the key of EIP-712's own example.
const COW_KEY: &str = "c85ef7d79691fe79573b1a7064c19c1a9819ebdbd1faaab1a8ec92344438aaf4";
const COW_ADDRESS: &str = "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826";

fn modelfactory(home: &Path, passphrase: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelfactory"));
    c.arg("--home")
        .arg(home)
        .env_remove("MODELFACTORY_HOME")
        .env_remove("MODELFACTORY_PASSPHRASE");
    if let Some(p) = passphrase {
        c.env("MODELFACTORY_PASSPHRASE", p);
    }
    c
}

/// Runs with `input` on standard input.
fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the modelfactory binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "command failed: {}", text(o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

#[test]
fn accounts_are_created_imported_listed_and_sign() {
    let home = tempfile::tempdir().expect("tempdir");

    let created = run_with_input(
        modelfactory(home.path(), Some(PASS)).args(["wallet", "new", "--name", "mine"]),
        "",
    );
    assert!(created.status.success(), "{}", text(&created));
    assert!(!text(&created).contains(PASS));

    // The mnemonic on standard input, the passphrase on the next line.
    let imported = run_with_input(
        modelfactory(home.path(), None).args(["wallet", "import", "--mnemonic"]),
        &format!("{DEV_MNEMONIC}\n{PASS}\n"),
    );
    assert!(imported.status.success(), "{}", text(&imported));
    assert!(text(&imported).contains(DEV_ADDRESS), "{}", text(&imported));
    assert!(!text(&imported).contains("junk") && !text(&imported).contains(PASS));

    let list = json(&run_with_input(
        modelfactory(home.path(), None).args(["wallet", "list", "--json"]),
        "",
    ));
    let accounts = list.as_array().expect("an array");
    assert_eq!(accounts.len(), 2, "{list}");
    assert!(accounts.iter().any(|a| a["name"] == "mine"), "{list}");
    assert!(
        accounts.iter().any(|a| a["address"] == DEV_ADDRESS),
        "{list}"
    );

    // Owner-only files that hold neither the passphrase nor the key in clear.
    let dir = home.path().join("keystore");
    for entry in std::fs::read_dir(&dir).expect("keystore dir") {
        let path = entry.expect("entry").path();
        let body = std::fs::read_to_string(&path).expect("read");
        assert!(!body.contains(PASS), "{}", path.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the keystore folder is {mode:o}");
    }

    let signed = json(&run_with_input(
        modelfactory(home.path(), Some(PASS)).args([
            "wallet",
            "sign",
            "--address",
            DEV_ADDRESS,
            "--message",
            "hello",
            "--json",
        ]),
        "",
    ));
    let signature =
        wallet::signing::signature_from_hex(signed["signature"].as_str().expect("a signature"))
            .expect("65 bytes");
    let signer = wallet::signing::recover_message(b"hello", &signature).expect("recovers");
    assert_eq!(signer.to_checksum(None), DEV_ADDRESS);
}

#[test]
fn eip712_mail_example_signs_as_the_eip_says() {
    let home = tempfile::tempdir().expect("tempdir");
    let imported = run_with_input(
        modelfactory(home.path(), Some(PASS)).args(["wallet", "import"]),
        &format!("0x{COW_KEY}\n"),
    );
    assert!(imported.status.success(), "{}", text(&imported));
    assert!(text(&imported).contains(COW_ADDRESS), "{}", text(&imported));
    assert!(!text(&imported).contains(COW_KEY));

    let typed = home.path().join("mail.json");
    std::fs::write(
        &typed,
        serde_json::json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Person": [
                    {"name": "name", "type": "string"},
                    {"name": "wallet", "type": "address"}
                ],
                "Mail": [
                    {"name": "from", "type": "Person"},
                    {"name": "to", "type": "Person"},
                    {"name": "contents", "type": "string"}
                ]
            },
            "primaryType": "Mail",
            "domain": {
                "name": "Ether Mail",
                "version": "1",
                "chainId": 1,
                "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
            },
            "message": {
                "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
                "contents": "Hello, Bob!"
            }
        })
        .to_string(),
    )
    .expect("write typed data");
    let signed = json(&run_with_input(
        modelfactory(home.path(), Some(PASS))
            .args(["wallet", "sign", "--address", COW_ADDRESS, "--typed-data"])
            .arg(&typed)
            .arg("--json"),
        "",
    ));
    assert_eq!(
        signed["digest"],
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    assert_eq!(
        signed["signature"],
        "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d\
         07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562\
         1c"
    );
}

#[test]
fn a_wrong_passphrase_or_a_bad_key_is_a_clear_error_that_leaks_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let imported = run_with_input(
        modelfactory(home.path(), Some(PASS)).args(["wallet", "import"]),
        &format!("{COW_KEY}\n"),
    );
    assert!(imported.status.success(), "{}", text(&imported));

    let wrong = "not the passphrase";
    let refused = run_with_input(
        modelfactory(home.path(), Some(wrong)).args([
            "wallet",
            "sign",
            "--address",
            COW_ADDRESS,
            "--message",
            "hi",
        ]),
        "",
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let out = text(&refused);
    assert!(out.contains("wrong passphrase"), "{out}");
    assert!(out.contains("hint:"), "{out}");
    assert!(
        !out.contains(wrong) && !out.contains(PASS) && !out.contains(COW_KEY),
        "{out}"
    );

    let bad_key = "12345678deadbeef";
    let refused = run_with_input(
        modelfactory(home.path(), Some(PASS)).args(["wallet", "import"]),
        &format!("{bad_key}\n"),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let out = text(&refused);
    assert!(out.contains("not a valid private key"), "{out}");
    assert!(!out.contains(bad_key), "{out}");

    let unknown = run_with_input(
        modelfactory(home.path(), Some(PASS)).args([
            "wallet",
            "sign",
            "--address",
            DEV_ADDRESS,
            "--message",
            "hi",
        ]),
        "",
    );
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(text(&unknown).contains("no account"), "{}", text(&unknown));

    let no_pass = run_with_input(modelfactory(home.path(), None).args(["wallet", "new"]), "");
    assert_eq!(no_pass.status.code(), Some(1), "{}", text(&no_pass));
    assert!(
        text(&no_pass).contains("MODELFACTORY_PASSPHRASE"),
        "{}",
        text(&no_pass)
    );
}
