//! EIP-191 and EIP-712 against published values: EIP-712's own Mail example (as a JSON
//! document and as `sol!` structs) and the registry contract's golden registration.

use alloy_primitives::{Address, B256, U256, address, keccak256};
use alloy_sol_types::{SolStruct, eip712_domain};
use wallet::PrivateKeySigner;
use wallet::signing;

/// EIP-712's example: the typed data its reference test signs.
const MAIL_JSON: &str = r#"{
  "types": {
    "EIP712Domain": [
      { "name": "name", "type": "string" },
      { "name": "version", "type": "string" },
      { "name": "chainId", "type": "uint256" },
      { "name": "verifyingContract", "type": "address" }
    ],
    "Person": [
      { "name": "name", "type": "string" },
      { "name": "wallet", "type": "address" }
    ],
    "Mail": [
      { "name": "from", "type": "Person" },
      { "name": "to", "type": "Person" },
      { "name": "contents", "type": "string" }
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
    "from": { "name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826" },
    "to": { "name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB" },
    "contents": "Hello, Bob!"
  }
}"#;

const MAIL_DIGEST: &str = "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2";
const MAIL_R: &str = "4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d";
const MAIL_S: &str = "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562";

alloy_sol_types::sol! {
    struct Person {
        string name;
        address wallet;
    }

    struct Mail {
        Person from;
        Person to;
        string contents;
    }

    // The registry contract's signed struct (wallet/contracts/README.md).
    struct Registration {
        bytes32 manifestHash;
        bytes32 adapterHash;
        string baseModel;
        bytes32[] datanetRoots;
        string uri;
        bytes32 parent;
        address publisher;
        address[] contributors;
        uint16[] shares;
    }
}

/// EIP-712's signer: the key keccak256("cow").
fn cow() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(b"cow")).expect("valid key")
}

fn mail() -> (Mail, alloy_sol_types::Eip712Domain) {
    let domain = eip712_domain! {
        name: "Ether Mail",
        version: "1",
        chain_id: 1,
        verifying_contract: address!("CcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"),
    };
    let mail = Mail {
        from: Person {
            name: "Cow".into(),
            wallet: address!("CD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"),
        },
        to: Person {
            name: "Bob".into(),
            wallet: address!("bBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"),
        },
        contents: "Hello, Bob!".into(),
    };
    (mail, domain)
}

fn expected_mail_signature() -> (U256, U256, u8) {
    (
        U256::from_str_radix(MAIL_R, 16).expect("r"),
        U256::from_str_radix(MAIL_S, 16).expect("s"),
        28,
    )
}

#[test]
fn cow_is_the_mail_sender() {
    assert_eq!(
        cow().address(),
        address!("CD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826")
    );
}

#[test]
fn eip712_mail_example_from_json() {
    let typed = signing::typed_data_from_json(MAIL_JSON).expect("parses");
    let digest = signing::typed_data_hash(&typed).expect("hashes");
    assert_eq!(digest.to_string(), MAIL_DIGEST);

    let signature = signing::sign_typed_data(&cow(), &typed).expect("signs");
    let (r, s, v) = expected_mail_signature();
    assert_eq!(signature.r(), r);
    assert_eq!(signature.s(), s);
    assert_eq!(signature.as_bytes()[64], v);
    assert_eq!(
        signing::signature_to_hex(&signature),
        format!("0x{MAIL_R}{MAIL_S}1c")
    );
    assert_eq!(
        signing::recover_typed_data(&typed, &signature).expect("recovers"),
        cow().address()
    );
}

#[test]
fn eip712_mail_example_from_sol_structs() {
    let (mail, domain) = mail();
    assert_eq!(
        Mail::eip712_encode_type(),
        "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
    );
    assert_eq!(
        signing::struct_hash(&mail, &domain).to_string(),
        MAIL_DIGEST
    );
    let signature = signing::sign_struct(&cow(), &mail, &domain).expect("signs");
    let (r, s, v) = expected_mail_signature();
    assert_eq!(
        (signature.r(), signature.s(), signature.as_bytes()[64]),
        (r, s, v)
    );
    assert_eq!(
        signing::recover_struct(&mail, &domain, &signature).expect("recovers"),
        cow().address()
    );
    // Another message does not recover to Cow.
    let mut changed = mail.clone();
    changed.contents = "Hello, Bob?".into();
    assert_ne!(
        signing::recover_struct(&changed, &domain, &signature).expect("recovers"),
        cow().address()
    );
}

#[test]
fn eip191_sign_and_recover() {
    let signer = cow();
    let message = b"Publish adapter smollm2-clinical?";
    let signature = signing::sign_message(&signer, message).expect("signs");
    assert_eq!(
        signing::recover_message(message, &signature).expect("recovers"),
        signer.address()
    );
    assert_ne!(
        signing::recover_message(b"another message", &signature).expect("recovers"),
        signer.address()
    );
    // The EIP-191 version 0x45 prefix, by hand.
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message);
    assert_eq!(signing::message_hash(message), keccak256(&prefixed));
    // Deterministic (RFC 6979): the same message gives the same signature.
    assert_eq!(
        signing::sign_message(&signer, message).expect("signs"),
        signature
    );
}

/// The registry contract's golden file: the same digest and signature from the JSON document
/// and from a `sol!` struct, as forge, the contract and eth-account computed them.
#[test]
fn registry_golden_registration() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contracts/test/golden/eip712.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file");
    let golden: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let field = |name: &str| golden[name].as_str().expect(name).to_string();

    let typed = signing::typed_data_from_json(&text).expect("typed data");
    let digest = signing::typed_data_hash(&typed).expect("hashes");
    assert_eq!(digest.to_string(), field("digest"));

    let key: B256 = field("publisherPrivateKey").parse().expect("key");
    let publisher = PrivateKeySigner::from_bytes(&key).expect("valid key");
    let signature = signing::sign_typed_data(&publisher, &typed).expect("signs");
    assert_eq!(signing::signature_to_hex(&signature), field("signature"));

    let message = &golden["message"];
    let b32 =
        |v: &serde_json::Value| -> B256 { v.as_str().expect("hex").parse().expect("bytes32") };
    let addr =
        |v: &serde_json::Value| -> Address { v.as_str().expect("hex").parse().expect("address") };
    let registration = Registration {
        manifestHash: b32(&message["manifestHash"]),
        adapterHash: b32(&message["adapterHash"]),
        baseModel: message["baseModel"].as_str().expect("string").into(),
        datanetRoots: message["datanetRoots"]
            .as_array()
            .expect("array")
            .iter()
            .map(b32)
            .collect(),
        uri: message["uri"].as_str().expect("string").into(),
        parent: b32(&message["parent"]),
        publisher: addr(&message["publisher"]),
        contributors: message["contributors"]
            .as_array()
            .expect("array")
            .iter()
            .map(addr)
            .collect(),
        shares: message["shares"]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_u64().expect("number") as u16)
            .collect(),
    };
    let domain = eip712_domain! {
        name: "ModelFactory AdapterRegistry",
        version: "1",
        chain_id: 31337,
        verifying_contract: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
    };
    assert_eq!(Registration::eip712_encode_type(), field("typeString"));
    assert_eq!(
        registration.eip712_type_hash().to_string(),
        field("typeHash")
    );
    assert_eq!(domain.separator().to_string(), field("domainSeparator"));
    assert_eq!(
        registration.eip712_hash_struct().to_string(),
        field("structHash")
    );
    assert_eq!(
        signing::struct_hash(&registration, &domain).to_string(),
        field("digest")
    );
    assert_eq!(
        signing::recover_struct(&registration, &domain, &signature).expect("recovers"),
        publisher.address()
    );
}
