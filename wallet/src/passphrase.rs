//! Getting a passphrase without a terminal prompt, for scripts and CI: from the
//! `MODELFACTORY_PASSPHRASE` environment variable, or from the first line of a reader
//! (standard input). Prompting on a terminal is the front end's job.

use std::io::BufRead;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::keystore::KeystoreError;

/// The environment variable read by [`from_env`].
pub const PASSPHRASE_ENV: &str = "MODELFACTORY_PASSPHRASE";

/// The passphrase in `MODELFACTORY_PASSPHRASE`, if that is set (and valid Unicode).
pub fn from_env() -> Option<SecretString> {
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .map(|value| SecretString::from(Zeroizing::new(value).as_str()))
}

/// The first line of `reader`, without its line ending. Everything after the first line is
/// left unread, so the rest of standard input stays available.
pub fn from_reader(reader: &mut impl BufRead) -> Result<SecretString, KeystoreError> {
    let mut line = Zeroizing::new(String::new());
    let read = reader
        .read_line(&mut line)
        .map_err(|e| KeystoreError::Passphrase(format!("could not read the passphrase: {e}")))?;
    if read == 0 {
        return Err(KeystoreError::Passphrase(format!(
            "no passphrase: set {PASSPHRASE_ENV} or write it on the first line of standard input"
        )));
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(SecretString::from(trimmed))
}

/// The environment variable when it is set, otherwise the first line of `reader`.
pub fn from_env_or_reader(reader: &mut impl BufRead) -> Result<SecretString, KeystoreError> {
    match from_env() {
        Some(passphrase) => Ok(passphrase),
        None => from_reader(reader),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn reads_only_the_first_line() {
        let mut input = std::io::Cursor::new(b"correct horse battery\r\nnext line\n".to_vec());
        let pass = from_reader(&mut input).expect("a line");
        assert_eq!(pass.expose_secret(), "correct horse battery");
        let mut rest = String::new();
        input.read_line(&mut rest).expect("rest");
        assert_eq!(rest, "next line\n");
    }

    #[test]
    fn keeps_inner_and_trailing_spaces() {
        let mut input = std::io::Cursor::new(b" two  spaces \n".to_vec());
        let pass = from_reader(&mut input).expect("a line");
        assert_eq!(pass.expose_secret(), " two  spaces ");
        let mut last = std::io::Cursor::new(b"no newline".to_vec());
        assert_eq!(
            from_reader(&mut last).expect("a line").expose_secret(),
            "no newline"
        );
    }

    #[test]
    fn empty_input_says_what_to_do() {
        let mut input = std::io::Cursor::new(Vec::new());
        let err = from_reader(&mut input).expect_err("nothing to read");
        assert!(err.to_string().contains(PASSPHRASE_ENV));
    }
}
