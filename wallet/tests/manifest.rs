//! The lineage manifest: its JSON Schema, our own validation, the versioned reader, the hash
//! and signature, and the model card.

use alloy_primitives::{Address, B256, keccak256};
use serde_json::{Value, json};
use wallet::manifest::{
    self, Adapter, Attribution, BaseModel, Contribution, DatanetUse, FileHash, Influence,
    InfluenceAccuracy, InfluenceScore, Manifest, ManifestError, Run, Training,
};
use wallet::{PrivateKeySigner, jcs};

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/lineage-manifest-v2.schema.json"
);
const SCHEMA_V1_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/lineage-manifest-v1.schema.json"
);

fn sha(label: &str) -> String {
    hex::encode(keccak256(label.as_bytes()))
}

fn file(path: &str, bytes: u64) -> FileHash {
    FileHash {
        path: path.into(),
        sha256: sha(path),
        bytes,
    }
}

/// anvil's public test key 0: never holds anything.
fn publisher() -> PrivateKeySigner {
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        .parse()
        .expect("key")
}

fn contribution(n: u8, contributor: Address, rows_used: u64) -> Contribution {
    Contribution {
        contribution_id: sha(&format!("row {n}")),
        datanet: "alice/clinical-notes".into(),
        contributor,
        content_hash: sha(&format!("content {n}")),
        license: "CC-BY-4.0".into(),
        rows_used,
    }
}

fn sample() -> Manifest {
    let carol: Address = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
        .parse()
        .expect("address");
    let bob: Address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        .parse()
        .expect("address");
    let dave: Address = "0x90f79bf6eb2c4f870365e785982e1f101e93b906"
        .parse()
        .expect("address");
    let contributions = vec![
        contribution(1, bob, 1),
        contribution(2, carol, 1),
        contribution(3, carol, 1),
        contribution(4, dave, 1),
        contribution(5, bob, 0),
        contribution(6, carol, 1),
    ];
    let attribution = Attribution::row_share(&contributions).expect("shares");
    Manifest {
        schema: manifest::SCHEMA.into(),
        version: manifest::VERSION,
        name: "smollm2-135m-clinical-lora".into(),
        license: "Apache-2.0".into(),
        base_model: BaseModel {
            repo: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
            revision: "12fd25f77366fa6b3b4b768ec3050bf629380bac".into(),
            files: vec![file("model.safetensors", 269_060_552)],
        },
        adapter: Adapter {
            files: vec![
                file("adapter_model.safetensors", 19_568_032),
                file("adapter_config.json", 612),
            ],
            config: json!({
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "r": 16,
                "lora_alpha": 32,
                "lora_dropout": 0.05,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                "bias": "none",
                "use_rslora": false
            }),
        },
        training: Training {
            method: "lora".into(),
            backend: "flex".into(),
            code_version: "modelfactory 0.1.0".into(),
            seed: 42,
            hyperparameters: json!({
                "learning_rate": 2e-4,
                "weight_decay": 0.01,
                "schedule": "cosine",
                "warmup_steps": 5,
                "epochs": 1.0,
                "batch_size": 1,
                "grad_accum": 4,
                "max_grad_norm": 1.0,
                "max_length": 512,
                "packing": false,
                "eval_fraction": 0.1,
                "lora": { "rank": 16, "alpha": 32.0, "dropout": 0.05, "rslora": false }
            })
            .as_object()
            .expect("object")
            .clone(),
        },
        metrics: [
            ("eval_loss".to_string(), 1.2345678901234567),
            ("eval_perplexity".to_string(), 3.4370),
        ]
        .into_iter()
        .collect(),
        datanets: vec![DatanetUse {
            id: "alice/clinical-notes".into(),
            revision: "a1b2c3d4".into(),
            shards: vec![file("shards/00000.parquet", 40_960)],
            contributions_root: sha("root"),
        }],
        contributions,
        attribution,
        run: Run {
            id: "0b7e8f2e-4c1a-4d2b-9f3e-2a6b8c9d0e1f".into(),
            started_at: "2025-06-01T09:00:00Z".into(),
            ended_at: "2025-06-01T09:42:13.5Z".into(),
        },
        publisher: Address::ZERO,
        signature: None,
    }
}

fn signed() -> Manifest {
    let mut m = sample();
    m.sign(&publisher()).expect("signs");
    m
}

fn schema_validator() -> jsonschema::Validator {
    validator_of(SCHEMA_PATH)
}

fn validator_of(path: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema file"))
        .expect("schema JSON");
    jsonschema::draft202012::meta::validate(&schema).expect("a valid 2020-12 schema");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn row_shares_of_the_sample() {
    let m = sample();
    // Of 5 rows: carol (lowest address) 3, bob 1, dave 1.
    let bps: Vec<u16> = m.attribution.shares.iter().map(|s| s.bps).collect();
    assert_eq!(bps, [6000, 2000, 2000]);
    m.validate().expect("valid");
}

#[test]
fn a_signed_manifest_matches_the_schema() {
    let validator = schema_validator();
    let value = serde_json::to_value(signed()).expect("JSON");
    let errors = schema_errors(&validator, &value);
    assert!(errors.is_empty(), "{errors:#?}");
    // Unsigned too: the signature is optional.
    let value = serde_json::to_value(sample()).expect("JSON");
    assert!(validator.is_valid(&value));
}

/// One way to break a manifest's JSON.
type Breakage = Box<dyn Fn(&mut Value)>;

#[test]
fn the_schema_refuses_what_it_can_see() {
    let validator = schema_validator();
    let good = serde_json::to_value(signed()).expect("JSON");
    let broken: Vec<(&str, Breakage)> = vec![
        (
            "missing base_model",
            Box::new(|v| drop(v.as_object_mut().expect("obj").remove("base_model"))),
        ),
        ("version 3", Box::new(|v| v["version"] = 3.into())),
        ("unknown member", Box::new(|v| v["extra"] = true.into())),
        (
            "upper-case address",
            Box::new(|v| v["publisher"] = "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266".into()),
        ),
        (
            "short sha256",
            Box::new(|v| v["adapter"]["files"][0]["sha256"] = "abc".into()),
        ),
        (
            "zero share",
            Box::new(|v| v["attribution"]["shares"][0]["bps"] = 0.into()),
        ),
        (
            "influence method",
            Box::new(|v| v["attribution"]["method"] = "influence".into()),
        ),
        (
            "bad time",
            Box::new(|v| v["run"]["ended_at"] = "yesterday".into()),
        ),
        ("empty name", Box::new(|v| v["name"] = "".into())),
        (
            "no contributions",
            Box::new(|v| v["contributions"] = json!([])),
        ),
    ];
    for (what, change) in broken {
        let mut value = good.clone();
        change(&mut value);
        assert!(!validator.is_valid(&value), "the schema accepted: {what}");
    }
}

#[test]
fn validate_refuses_missing_fields_and_bad_sums() {
    let mut m = sample();
    m.base_model.repo = " ".into();
    let err = m.validate().expect_err("empty repo");
    assert!(err.to_string().contains("base_model.repo"), "{err}");

    let mut m = sample();
    m.attribution.shares[0].bps -= 1;
    let err = m.validate().expect_err("9999");
    assert!(
        err.to_string().contains("9999 basis points, not 10000"),
        "{err}"
    );

    let mut m = sample();
    m.attribution.shares[0].bps += 1;
    m.attribution.shares[1].bps -= 1;
    let err = m.validate().expect_err("not the row shares");
    assert!(err.to_string().contains("row shares"), "{err}");

    let mut m = sample();
    m.contributions[0].datanet = "someone/else".into();
    assert!(m.validate().is_err());

    let mut m = sample();
    m.contributions[1].contribution_id = m.contributions[0].contribution_id.clone();
    assert!(m.validate().is_err());

    let mut m = sample();
    m.adapter.files[0].path = "../outside".into();
    assert!(m.validate().is_err());

    let mut m = sample();
    m.run.ended_at = "2025-06-01T08:00:00Z".into();
    assert!(m.validate().is_err());

    let mut m = sample();
    m.training.seed = u64::MAX;
    assert!(m.validate().is_err());

    let mut m = sample();
    m.datanets[0].contributions_root = sha("root").to_uppercase();
    assert!(m.validate().is_err());
}

#[test]
fn reader_refuses_missing_members_unknown_versions_and_other_documents() {
    let good = serde_json::to_value(signed()).expect("JSON");

    let mut missing = good.clone();
    missing.as_object_mut().expect("obj").remove("attribution");
    let err = manifest::read(&missing.to_string()).expect_err("missing");
    assert!(
        err.to_string().contains("missing field `attribution`"),
        "{err}"
    );

    let mut v3 = good.clone();
    v3["version"] = 3.into();
    let err = manifest::read(&v3.to_string()).expect_err("v3");
    assert!(
        matches!(err, ManifestError::UnknownVersion { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("version 3 is not supported"),
        "{err}"
    );

    let mut other = good.clone();
    other["schema"] = "something/else".into();
    assert!(matches!(
        manifest::read(&other.to_string()),
        Err(ManifestError::NotAManifest { .. })
    ));

    let mut extra = good.clone();
    extra["note"] = "unsigned text".into();
    assert!(manifest::read(&extra.to_string()).is_err());

    let mut mixed_case = good.clone();
    mixed_case["publisher"] = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into();
    assert!(manifest::read(&mixed_case.to_string()).is_err());

    assert!(manifest::read("[1, 2]").is_err());
    assert!(manifest::read("{\"schema\": \"modelfactory/lineage-manifest\"").is_err());
}

#[test]
fn hash_is_keccak_of_canonical_json_without_the_signature() {
    let m = signed();
    let mut value = serde_json::to_value(&m).expect("JSON");
    value.as_object_mut().expect("obj").remove("signature");
    let canonical = jcs::value_to_string(&value).expect("canonical");
    assert_eq!(m.canonical_bytes().expect("bytes"), canonical.as_bytes());
    assert_eq!(m.hash().expect("hash"), keccak256(canonical.as_bytes()));
    // Sorted members, no whitespace, numbers as ECMAScript writes them.
    assert!(canonical.starts_with("{\"adapter\":{\"config\":{\"base_model_name_or_path\""));
    assert!(canonical.contains("\"learning_rate\":0.0002,"));
    assert!(canonical.contains("\"epochs\":1,"));
    assert!(!canonical.contains("signature"));
    // Signing does not change the hash; any other change does.
    assert_eq!(
        m.hash().expect("hash"),
        sample_with_publisher().hash().expect("hash")
    );
    let mut changed = m.clone();
    changed.contributions[3].rows_used = 2;
    assert_ne!(changed.hash().expect("hash"), m.hash().expect("hash"));
    let mut changed = m.clone();
    changed.adapter.config["r"] = 8.into();
    assert_ne!(changed.hash().expect("hash"), m.hash().expect("hash"));
}

fn sample_with_publisher() -> Manifest {
    let mut m = sample();
    m.publisher = publisher().address();
    m
}

#[test]
fn read_back_hashes_and_verifies_the_same() {
    let m = signed();
    let text = m.to_json_pretty().expect("JSON");
    let back = manifest::read(&text).expect("reads");
    assert_eq!(back, m);
    assert_eq!(back.hash().expect("hash"), m.hash().expect("hash"));
    assert_eq!(back.verify().expect("verifies"), publisher().address());
    // Compact or reordered text is the same manifest.
    let compact = serde_json::to_string(&serde_json::to_value(&m).expect("JSON")).expect("text");
    assert_eq!(
        manifest::read(&compact)
            .expect("reads")
            .hash()
            .expect("hash"),
        m.hash().expect("hash")
    );
}

#[test]
fn signature_covers_every_field_and_names_the_publisher() {
    let m = signed();
    assert_eq!(m.publisher, publisher().address());
    assert_eq!(m.verify().expect("verifies"), m.publisher);

    let mut tampered = m.clone();
    tampered.metrics.insert("eval_loss".into(), 0.5);
    assert!(matches!(
        tampered.verify(),
        Err(ManifestError::WrongSigner { .. })
    ));

    let mut other_publisher = m.clone();
    other_publisher.publisher = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        .parse()
        .expect("address");
    assert!(other_publisher.verify().is_err());

    let mut unsigned = m.clone();
    unsigned.signature = None;
    assert!(matches!(unsigned.verify(), Err(ManifestError::Unsigned)));

    // The signature is EIP-712 over LineageManifest(bytes32 manifestHash).
    let digest = m.signing_hash().expect("digest");
    let domain = manifest::signing_domain();
    let typed = manifest::LineageManifest {
        manifestHash: m.hash().expect("hash"),
    };
    assert_eq!(wallet::signing::struct_hash(&typed, &domain), digest);
    let signature =
        wallet::signing::signature_from_hex(m.signature.as_deref().expect("signed")).expect("hex");
    assert_eq!(
        wallet::signing::recover_hash(&digest, &signature).expect("recovers"),
        m.publisher
    );
    assert_ne!(digest, B256::ZERO);
}

#[test]
fn an_invalid_manifest_is_not_signed() {
    let mut m = sample();
    m.attribution.shares.pop();
    assert!(m.sign(&publisher()).is_err());
    assert_eq!(m.signature, None);
}

#[test]
fn model_card() {
    let m = signed();
    let card = manifest::card::model_card(&m).expect("card");
    let front = "---\n\
        base_model: \"HuggingFaceTB/SmolLM2-135M-Instruct\"\n\
        base_model_relation: adapter\n\
        datasets:\n\
        - \"alice/clinical-notes\"\n\
        library_name: peft\n\
        license: \"apache-2.0\"\n\
        tags:\n\
        - \"modelfactory\"\n\
        - \"peft\"\n\
        - \"lora\"\n\
        - \"lineage-manifest\"\n\
        ---\n\n";
    assert!(card.starts_with(front), "{card}");
    assert!(card.contains("# smollm2-135m-clinical-lora\n"), "{card}");
    assert!(card.contains("| Contributor | Rows | Share |"), "{card}");
    assert!(
        card.contains("| `0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC` | 3 | 60.00 % |"),
        "{card}"
    );
    assert!(
        card.contains("| `0x70997970C51812dc3A010C7d01b50e0d17dc79C8` | 1 | 20.00 % |"),
        "{card}"
    );
    assert!(
        card.contains("| **3 contributors** | 5 | 100.00 % |"),
        "{card}"
    );
    assert!(card.contains("Method: `row-share`"), "{card}");
    assert!(!card.to_lowercase().contains("influence:"), "{card}");
    assert!(
        card.contains(&m.hash().expect("hash").to_string()),
        "{card}"
    );
    assert!(
        card.contains(m.signature.as_deref().expect("signed")),
        "{card}"
    );
    assert!(card.contains("| `learning_rate` | `0.0002` |"), "{card}");
    assert!(
        card.contains("A LoRA adapter for [HuggingFaceTB/SmolLM2-135M-Instruct]"),
        "{card}"
    );
    assert!(
        card.contains("| `eval_loss` | 1.2345678901234567 |"),
        "{card}"
    );

    // Markup in names cannot break the table or the front matter.
    let mut odd = sample();
    odd.name = "a | b\n# c".into();
    odd.base_model.repo = "x\"\ny".into();
    let card = manifest::card::model_card(&odd).expect("card");
    assert!(card.contains("base_model: \"x\\\"\\ny\"\n"), "{card}");
    assert!(card.contains("# a \\| b \\# c\n"), "{card}");
}

/// A version-1 manifest as an earlier studio wrote and signed it, kept byte for byte. Later
/// versions of the reader must still read it, hash it to the same `manifestHash` the registry
/// holds, and recover the same publisher: published adapters outlive the code that published
/// them.
const V1_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/lineage-manifest-v1.json"
);

#[test]
fn a_version_1_manifest_written_earlier_is_still_read() {
    let text = std::fs::read_to_string(V1_FIXTURE)
        .unwrap_or_else(|e| panic!("{V1_FIXTURE}: {e} (it is committed and never rewritten)"));
    let m = manifest::read(&text).expect("a version-1 manifest reads");
    assert_eq!(m.version, 1);
    assert_eq!(
        m.verify().expect("its signature verifies"),
        publisher().address()
    );
    // Hashed as the registry recorded it when it was published.
    assert_eq!(
        m.hash().expect("hash").to_string(),
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(V1_FIXTURE.replace(".json", ".hash.json"))
                .expect("the recorded hash")
        )
        .expect("JSON")["manifest_hash"],
    );
    assert_eq!(
        schema_errors(
            &validator_of(SCHEMA_V1_PATH),
            &serde_json::from_str(&text).expect("JSON")
        ),
        Vec::<String>::new()
    );
}

/// The sample with shares by influence: carol helped most, dave a little, bob's rows hurt.
fn datainf_sample() -> Manifest {
    let mut m = sample();
    let mut scores: Vec<InfluenceScore> = m
        .contributions
        .iter()
        .filter(|c| c.rows_used > 0)
        .map(|c| c.contributor)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .zip([1.5, -0.25, 0.5])
        .map(|(contributor, score)| InfluenceScore { contributor, score })
        .collect();
    scores.reverse();
    m.attribution = Attribution::datainf(Influence {
        scores,
        uncredited_score: 0.125,
        train_rows: 5,
        eval_rows: 2,
        damping: 0.1,
        accuracy: Some(InfluenceAccuracy {
            lds: 0.38,
            subsets: 20,
            loco_sign_agreement: 1.0,
        }),
    })
    .expect("influence shares");
    m
}

#[test]
fn datainf_shares_are_signed_checked_and_match_the_schema() {
    let mut m = datainf_sample();
    // Ascending addresses: carol 1.5, bob -0.25 (harmful, nothing), dave 0.5 -> 7500 / 2500.
    let bps: Vec<u16> = m.attribution.shares.iter().map(|s| s.bps).collect();
    assert_eq!(bps, [7500, 2500]);
    m.sign(&publisher()).expect("signs");
    let text = m.to_json_pretty().expect("JSON");
    let read = manifest::read(&text).expect("reads");
    assert_eq!(read.version, 2);
    assert_eq!(read.verify().expect("verifies"), publisher().address());
    assert_eq!(read.hash().expect("hash"), m.hash().expect("hash"));
    let value: Value = serde_json::from_str(&text).expect("JSON");
    let validator = schema_validator();
    assert_eq!(schema_errors(&validator, &value), Vec::<String>::new());

    // The schema wants the scores with the method, and only with it.
    let mut bare = value.clone();
    bare["attribution"]
        .as_object_mut()
        .expect("obj")
        .remove("influence");
    assert!(!validator.is_valid(&bare));
    let mut mixed = value.clone();
    mixed["attribution"]["method"] = "row-share".into();
    assert!(!validator.is_valid(&mixed));

    // A changed score no longer gives the signed shares.
    let mut tampered = read.clone();
    if let Some(i) = tampered.attribution.influence.as_mut() {
        i.scores[2].score = 3.0;
    }
    let err = tampered.verify().expect_err("tampered");
    assert!(err.to_string().contains("influence scores"), "{err}");

    // The model card says how the shares were measured and who was marked harmful.
    let card = manifest::card::model_card(&read).expect("card");
    assert!(card.contains("Method: `datainf`"), "{card}");
    assert!(card.contains("LDS 0.380 over 20 adapters"), "{card}");
    assert!(
        card.contains(
            "| `0x70997970C51812dc3A010C7d01b50e0d17dc79C8` | 1 | -2.5000e-1 | none (harmful) |"
        ),
        "{card}"
    );
    assert!(card.contains("| 75.00 % |"), "{card}");

    // A version-1 manifest cannot carry it.
    let mut old = read;
    old.version = 1;
    let err = old.validate().expect_err("v1");
    assert!(err.to_string().contains("version 2"), "{err}");
}
