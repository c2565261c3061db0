//! Signatures a wallet app shows and contracts check: EIP-191 personal messages
//! (`personal_sign`) and EIP-712 typed data, either as an `eth_signTypedData_v4` JSON document
//! or as a Rust struct declared with `sol!`; and recovering who signed.
//!
//! Signatures are 65 bytes `r ‖ s ‖ v` with v = 27 or 28, the layout OpenZeppelin's `ECDSA`
//! and `SignatureChecker` accept. Recovery refuses a high `s`, as they do, so a signature that
//! passes here also passes on chain.

use alloy_dyn_abi::TypedData;
use alloy_primitives::{Address, B256, Signature, U256, eip191_hash_message};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the typed data is not a valid eth_signTypedData_v4 document: {0}")]
    TypedDataJson(#[from] serde_json::Error),
    #[error("the typed data cannot be encoded: {0}")]
    TypedData(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("not a valid signature: {0}")]
    BadSignature(String),
    /// `s` in the upper half of the curve order: a malleated copy of a valid signature, which
    /// OpenZeppelin's ECDSA refuses.
    #[error("the signature's s value is not in the lower half of the curve order")]
    HighS,
    #[error("the signature does not recover to an address: {0}")]
    Recover(String),
}

type Result<T, E = SigningError> = std::result::Result<T, E>;

/// n / 2 for secp256k1.
const HALF_ORDER: U256 = U256::from_be_bytes([
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// The EIP-191 (version 0x45) hash of a personal message:
/// keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message).
pub fn message_hash(message: &[u8]) -> B256 {
    eip191_hash_message(message)
}

/// Signs a personal message (EIP-191), as `personal_sign` does.
pub fn sign_message(signer: &PrivateKeySigner, message: &[u8]) -> Result<Signature> {
    signer
        .sign_message_sync(message)
        .map_err(|e| SigningError::Sign(e.to_string()))
}

/// Who signed a personal message.
pub fn recover_message(message: &[u8], signature: &Signature) -> Result<Address> {
    recover_hash(&message_hash(message), signature)
}

/// Parses an `eth_signTypedData_v4` document (`types`, `primaryType`, `domain`, `message`;
/// other keys are ignored).
pub fn typed_data_from_json(json: &str) -> Result<TypedData> {
    Ok(serde_json::from_str(json)?)
}

/// The EIP-712 digest of a typed-data document: keccak256(0x1901 ‖ domainSeparator ‖ hashStruct).
pub fn typed_data_hash(typed_data: &TypedData) -> Result<B256> {
    typed_data
        .eip712_signing_hash()
        .map_err(|e| SigningError::TypedData(e.to_string()))
}

/// Signs a typed-data document.
pub fn sign_typed_data(signer: &PrivateKeySigner, typed_data: &TypedData) -> Result<Signature> {
    sign_hash(signer, &typed_data_hash(typed_data)?)
}

/// Who signed a typed-data document.
pub fn recover_typed_data(typed_data: &TypedData, signature: &Signature) -> Result<Address> {
    recover_hash(&typed_data_hash(typed_data)?, signature)
}

/// The EIP-712 digest of a `sol!` struct in a domain.
pub fn struct_hash<T: SolStruct>(value: &T, domain: &Eip712Domain) -> B256 {
    value.eip712_signing_hash(domain)
}

/// Signs a `sol!` struct in a domain.
pub fn sign_struct<T: SolStruct>(
    signer: &PrivateKeySigner,
    value: &T,
    domain: &Eip712Domain,
) -> Result<Signature> {
    sign_hash(signer, &struct_hash(value, domain))
}

/// Who signed a `sol!` struct in a domain.
pub fn recover_struct<T: SolStruct>(
    value: &T,
    domain: &Eip712Domain,
    signature: &Signature,
) -> Result<Address> {
    recover_hash(&struct_hash(value, domain), signature)
}

/// Signs a 32-byte digest as it is (no prefix).
pub fn sign_hash(signer: &PrivateKeySigner, hash: &B256) -> Result<Signature> {
    signer
        .sign_hash_sync(hash)
        .map_err(|e| SigningError::Sign(e.to_string()))
}

/// Who signed a 32-byte digest. Refuses a high `s`.
pub fn recover_hash(hash: &B256, signature: &Signature) -> Result<Address> {
    if signature.s() > HALF_ORDER {
        return Err(SigningError::HighS);
    }
    signature
        .recover_address_from_prehash(hash)
        .map_err(|e| SigningError::Recover(e.to_string()))
}

/// A signature as 0x and 130 hex digits, `r ‖ s ‖ v` with v = 27 or 28.
pub fn signature_to_hex(signature: &Signature) -> String {
    format!("0x{}", hex::encode(signature.as_bytes()))
}

/// Parses 65 bytes of hex (`0x` optional); v may be 0/1 or 27/28.
pub fn signature_from_hex(text: &str) -> Result<Signature> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes =
        hex::decode(digits).map_err(|_| SigningError::BadSignature("not hexadecimal".into()))?;
    Signature::from_raw(&bytes).map_err(|e| SigningError::BadSignature(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_order_is_n_over_two() {
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .expect("n");
        assert_eq!(HALF_ORDER, n >> 1);
    }

    #[test]
    fn high_s_is_refused() {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).expect("key");
        let sig = sign_message(&signer, b"hello").expect("signs");
        assert_eq!(
            recover_message(b"hello", &sig).expect("recovers"),
            signer.address()
        );
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .expect("n");
        let malleated = Signature::new(sig.r(), n - sig.s(), !sig.v());
        assert!(matches!(
            recover_message(b"hello", &malleated),
            Err(SigningError::HighS)
        ));
    }

    #[test]
    fn hex_round_trip() {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(9)).expect("key");
        let sig = sign_message(&signer, b"x").expect("signs");
        let text = signature_to_hex(&sig);
        assert_eq!(text.len(), 132);
        assert!(text.ends_with("1b") || text.ends_with("1c"));
        assert_eq!(signature_from_hex(&text).expect("parses"), sig);
        assert!(signature_from_hex("0x1234").is_err());
    }
}
