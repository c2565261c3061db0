use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use ::wallet::passphrase;
use ::wallet::{ExposeSecret, SecretString};
use studio::Studio;
use studio::wallet::{KeyImport, WalletAccount};

use super::args::WalletCommand;
use super::print_json;

pub fn run(home: &Path, command: WalletCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    let mut stdin = std::io::stdin().lock();
    match command {
        WalletCommand::New { name } => {
            let pass = new_passphrase(&mut stdin)?;
            let account = studio.create_account(&pass, name.as_deref())?;
            print_account(&account);
        }
        WalletCommand::Import {
            mnemonic,
            index,
            name,
        } => {
            // The secret first, then the passphrase: both may come down one pipe.
            let key = if mnemonic {
                KeyImport::Mnemonic {
                    phrase: read_secret(&mut stdin, "mnemonic: ")?,
                    index,
                }
            } else {
                KeyImport::PrivateKey(read_secret(&mut stdin, "private key: ")?)
            };
            let pass = new_passphrase(&mut stdin)?;
            let account = studio.import_account(&key, &pass, name.as_deref())?;
            print_account(&account);
        }
        WalletCommand::List { json } => {
            let accounts = studio.wallet_accounts()?;
            if json {
                print_json(&accounts)?;
            } else if accounts.is_empty() {
                println!("no accounts yet: `modelfactory wallet new` creates one");
            } else {
                for a in &accounts {
                    print_account(a);
                }
            }
        }
        WalletCommand::Sign {
            address,
            message,
            typed_data,
            json,
        } => {
            let pass = passphrase_once(&mut stdin)?;
            let signed = match (message, typed_data) {
                (Some(m), _) => studio.sign_message(&address, &pass, m.as_bytes())?,
                (None, Some(file)) => {
                    let text =
                        std::fs::read_to_string(&file).map_err(|source| studio::Error::Io {
                            what: format!("cannot read the typed data {}", file.display()),
                            source,
                        })?;
                    studio.sign_typed_data(&address, &pass, &text)?
                }
                (None, None) => {
                    return Err(invalid("sign", "give --message or --typed-data"));
                }
            };
            if json {
                print_json(&signed)?;
            } else {
                println!("signer     {}", signed.address);
                println!("digest     {}", signed.digest);
                println!("signature  {}", signed.signature);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_account(a: &WalletAccount) {
    let created = a
        .created
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    println!(
        "{}  {:<20} {created}",
        a.address,
        a.name.as_deref().unwrap_or("")
    );
}

/// A secret from standard input: typed without echo at a terminal, else the next line.
fn read_secret(stdin: &mut impl BufRead, prompt: &str) -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let typed = rpassword::prompt_password(prompt).map_err(|source| studio::Error::Io {
            what: "cannot read from the terminal".into(),
            source,
        })?;
        return Ok(SecretString::from(typed));
    }
    // Through studio's error, so a missing passphrase is a user mistake (exit 1) with a hint.
    passphrase::from_reader(stdin).map_err(|e| studio::Error::from(e).into())
}

/// The passphrase that unlocks an existing key.
pub(crate) fn passphrase_once(stdin: &mut impl BufRead) -> anyhow::Result<SecretString> {
    match passphrase::from_env() {
        Some(p) => Ok(p),
        None => read_secret(stdin, "passphrase: "),
    }
}

/// The passphrase for a new key file; typed twice at a terminal, so a typo does not lock the
/// key away.
fn new_passphrase(stdin: &mut impl BufRead) -> anyhow::Result<SecretString> {
    if let Some(p) = passphrase::from_env() {
        return Ok(p);
    }
    let first = read_secret(stdin, "new passphrase: ")?;
    if std::io::stdin().is_terminal() {
        let again = read_secret(stdin, "the same again: ")?;
        if first.expose_secret() != again.expose_secret() {
            return Err(invalid(
                "passphrase",
                "the two passphrases differ; nothing was written",
            ));
        }
    }
    Ok(first)
}

fn invalid(field: &str, message: &str) -> anyhow::Error {
    studio::Error::InvalidInput {
        field: field.into(),
        message: message.into(),
    }
    .into()
}
