//! The lineage manifest: what an adapter was trained from and by whom, who gets credited, and
//! the publisher's signature over all of it.
//!
//! A manifest is a JSON document, `"schema": "modelfactory/lineage-manifest"`, `"version": 2`
//! (the JSON Schema is `wallet/schema/lineage-manifest-v2.schema.json`; version 2 adds
//! `datainf` attribution to version 1, which is still read). Its **hash** is
//! keccak256 of its RFC 8785 canonical bytes with the `signature` member left out; that is the
//! `manifestHash` the registry contract records. The publisher signs the hash as EIP-712 typed
//! data ([`LineageManifest`] in [`signing_domain`]), so a wallet shows what is being signed.
//!
//! Field names follow the standards a reader already knows: the Hugging Face model card
//! (`base_model`, `datasets`, `license`), Croissant-style file entries (`path`, `sha256`), the
//! trainer's own names for its knobs. [`card`] writes the same content as a model card.

mod attribution;
pub mod card;

use std::collections::{BTreeMap, HashSet};

use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, eip712_domain};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use attribution::{
    Attribution, AttributionMethod, Influence, InfluenceAccuracy, InfluenceScore, Share, TOTAL_BPS,
    influence_bps,
};

use crate::jcs::{self, CanonicalError};
use crate::signing::{self, SigningError};

/// The `schema` member of every lineage manifest.
pub const SCHEMA: &str = "modelfactory/lineage-manifest";
/// The version this build writes; [`read`] reads it and [`READS`], and refuses others by name.
pub const VERSION: u32 = 2;
/// Every version this build reads. Version 1 knows only `row-share` attribution.
pub const READS: [u32; 2] = [1, 2];
/// The largest integer a JSON number (an IEEE 754 double) holds exactly, 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

alloy_sol_types::sol! {
    /// What a publisher signs (EIP-712): the manifest's hash.
    #[derive(Debug, PartialEq, Eq)]
    struct LineageManifest {
        bytes32 manifestHash;
    }
}

/// The EIP-712 domain of manifest signatures. No chain id or contract: a manifest is a
/// statement about files and people, valid wherever it is registered.
pub fn signing_domain() -> Eip712Domain {
    eip712_domain! {
        name: "ModelFactory Lineage Manifest",
        version: "1",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a readable lineage manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a lineage manifest: `schema` is {found}, expected \"{SCHEMA}\"")]
    NotAManifest { found: String },
    #[error(
        "lineage manifest version {found} is not supported: this build reads versions 1 and \
         {VERSION}; a newer ModelFactory may read it"
    )]
    UnknownVersion { found: String },
    #[error("invalid lineage manifest: {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("the lineage manifest is not signed")]
    Unsigned,
    #[error("the lineage manifest is signed by {signer}, not by its publisher {publisher}")]
    WrongSigner { signer: Address, publisher: Address },
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

type Result<T, E = ManifestError> = std::result::Result<T, E>;

/// A lineage manifest, version 1 or 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`VERSION`] when written by this build; any of [`READS`] when read.
    pub version: u32,
    /// The adapter's name (its repository name when published to a hub).
    pub name: String,
    /// The adapter's licence, an SPDX identifier.
    pub license: String,
    pub base_model: BaseModel,
    pub adapter: Adapter,
    pub training: Training,
    /// Evaluation results by name (`eval_loss`, `eval_perplexity`, ...).
    pub metrics: BTreeMap<String, f64>,
    pub datanets: Vec<DatanetUse>,
    /// Every contribution in the training set.
    pub contributions: Vec<Contribution>,
    pub attribution: Attribution,
    pub run: Run,
    /// Who publishes, and signs.
    #[serde(with = "lower_address")]
    pub publisher: Address,
    /// The publisher's EIP-712 signature over the manifest hash, `0x` and 130 hex digits.
    /// Not part of the hashed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A file and its digest, as Croissant's `FileObject` has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHash {
    /// Inside its repository or adapter folder, `/`-separated.
    pub path: String,
    /// Lower-case hex.
    pub sha256: String,
    pub bytes: u64,
}

/// The model the adapter applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// The hub repository, `owner/name`.
    pub repo: String,
    /// The exact revision (a commit id where the hub gives one).
    pub revision: String,
    /// The weight files.
    pub files: Vec<FileHash>,
}

/// The published adapter (PEFT layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    /// `adapter_model.safetensors`, `adapter_config.json`, ...
    pub files: Vec<FileHash>,
    /// `adapter_config.json` itself, as a JSON object.
    pub config: Value,
}

/// How the adapter was trained: enough to run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// `lora` or `qlora`.
    pub method: String,
    /// The backend that ran it (`flex`, `cuda`, `wgpu`, ...).
    pub backend: String,
    /// The trainer's version (and commit, when built from a checkout).
    pub code_version: String,
    /// Seeds initialisation, data order and dropout.
    pub seed: u64,
    /// Every knob, as the trainer names them (rank, alpha, learning rate, schedule, ...).
    pub hyperparameters: Map<String, Value>,
}

/// A Datanet the training set drew from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatanetUse {
    /// The hub repository, `owner/name`.
    pub id: String,
    pub revision: String,
    /// The shards read, with their digests.
    pub shards: Vec<FileHash>,
    /// The Datanet's Merkle root over its contribution ids (sha256, hex).
    pub contributions_root: String,
}

/// One contribution in the training set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    /// sha256 (hex) of the row's canonical JSON, as the Datanet format defines it.
    pub contribution_id: String,
    /// The Datanet it came from (one of `datanets`).
    pub datanet: String,
    #[serde(with = "lower_address")]
    pub contributor: Address,
    /// sha256 (hex) of the content alone.
    pub content_hash: String,
    /// SPDX identifier the contributor gave.
    pub license: String,
    /// Rows of it in the training set (0 for one held out for evaluation).
    pub rows_used: u64,
}

/// The training run, as OpenLineage would report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub ended_at: String,
}

/// Reads a manifest of any version this build knows, refusing others by name.
pub fn read(text: &str) -> Result<Manifest> {
    let value: Value = serde_json::from_str(text)?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("(document)", "not a JSON object"))?;
    match object.get("schema") {
        Some(Value::String(s)) if s == SCHEMA => {}
        Some(other) => {
            return Err(ManifestError::NotAManifest {
                found: other.to_string(),
            });
        }
        None => return Err(invalid("schema", "missing")),
    }
    match object.get("version") {
        Some(v) if READS.iter().any(|&r| v.as_u64() == Some(u64::from(r))) => {
            Ok(serde_json::from_value::<Manifest>(value)?)
        }
        Some(other) => Err(ManifestError::UnknownVersion {
            found: other.to_string(),
        }),
        None => Err(invalid("version", "missing")),
    }
}

impl Manifest {
    /// The manifest as indented JSON, the form written to `lineage-manifest.json`. Any layout
    /// hashes the same: the hash is over the canonical form.
    pub fn to_json_pretty(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// The RFC 8785 canonical bytes that are hashed: the whole manifest but `signature`.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(self)?;
        if let Value::Object(map) = &mut value {
            map.remove("signature");
        }
        Ok(jcs::value_to_string(&value)?.into_bytes())
    }

    /// keccak256 of [`Manifest::canonical_bytes`]: the registry's `manifestHash`.
    pub fn hash(&self) -> Result<B256> {
        Ok(keccak256(self.canonical_bytes()?))
    }

    /// The EIP-712 digest a publisher signs.
    pub fn signing_hash(&self) -> Result<B256> {
        let message = LineageManifest {
            manifestHash: self.hash()?,
        };
        Ok(signing::struct_hash(&message, &signing_domain()))
    }

    /// Makes `signer` the publisher and signs. Validates first: a signature on an invalid
    /// manifest would be worth nothing.
    pub fn sign(&mut self, signer: &PrivateKeySigner) -> Result<()> {
        self.publisher = signer.address();
        self.signature = None;
        self.validate()?;
        let signature = signing::sign_hash(signer, &self.signing_hash()?)?;
        self.signature = Some(signing::signature_to_hex(&signature));
        tracing::info!(publisher = %self.publisher, hash = %self.hash()?, "signed lineage manifest");
        Ok(())
    }

    /// Validates, then checks that the signature is the publisher's. Returns the publisher.
    pub fn verify(&self) -> Result<Address> {
        self.validate()?;
        let text = self.signature.as_deref().ok_or(ManifestError::Unsigned)?;
        let signature = signing::signature_from_hex(text)?;
        let signer = signing::recover_hash(&self.signing_hash()?, &signature)?;
        if signer != self.publisher {
            return Err(ManifestError::WrongSigner {
                signer,
                publisher: self.publisher,
            });
        }
        Ok(signer)
    }

    /// Checks everything a schema cannot: required text present, digests well formed, paths
    /// inside their folders, references that resolve, times in order, and an attribution
    /// table that sums to 10 000 and matches its method. Does not check the signature
    /// ([`Manifest::verify`] does).
    pub fn validate(&self) -> Result<()> {
        if self.schema != SCHEMA {
            return Err(ManifestError::NotAManifest {
                found: format!("{:?}", self.schema),
            });
        }
        if !READS.contains(&self.version) {
            return Err(ManifestError::UnknownVersion {
                found: self.version.to_string(),
            });
        }
        if self.version == 1 && self.attribution.method != AttributionMethod::RowShare {
            return Err(invalid(
                "attribution.method",
                format!(
                    "{} needs manifest version 2 (version 1 knows only row-share)",
                    self.attribution.method.as_str()
                ),
            ));
        }
        required("name", &self.name)?;
        required("license", &self.license)?;

        required("base_model.repo", &self.base_model.repo)?;
        required("base_model.revision", &self.base_model.revision)?;
        files("base_model.files", &self.base_model.files)?;

        files("adapter.files", &self.adapter.files)?;
        if !self.adapter.config.is_object() {
            return Err(invalid(
                "adapter.config",
                "not a JSON object (adapter_config.json)",
            ));
        }

        required("training.method", &self.training.method)?;
        required("training.backend", &self.training.backend)?;
        required("training.code_version", &self.training.code_version)?;
        if self.training.seed > MAX_SAFE_INTEGER {
            return Err(invalid(
                "training.seed",
                format!(
                    "{} is above 2^53 - 1, which JSON numbers cannot hold exactly",
                    self.training.seed
                ),
            ));
        }

        for (name, value) in &self.metrics {
            if name.trim().is_empty() {
                return Err(invalid("metrics", "a metric without a name"));
            }
            if !value.is_finite() {
                return Err(invalid(format!("metrics.{name}"), "not a finite number"));
            }
        }

        let mut datanet_ids = HashSet::new();
        for (i, d) in self.datanets.iter().enumerate() {
            let field = format!("datanets[{i}]");
            required(&format!("{field}.id"), &d.id)?;
            required(&format!("{field}.revision"), &d.revision)?;
            sha256_hex(
                &format!("{field}.contributions_root"),
                &d.contributions_root,
            )?;
            files(&format!("{field}.shards"), &d.shards)?;
            if !datanet_ids.insert(d.id.as_str()) {
                return Err(invalid(field, format!("{} is listed twice", d.id)));
            }
        }

        if self.contributions.is_empty() {
            return Err(invalid("contributions", "none listed"));
        }
        let mut ids = HashSet::new();
        for (i, c) in self.contributions.iter().enumerate() {
            let field = format!("contributions[{i}]");
            sha256_hex(&format!("{field}.contribution_id"), &c.contribution_id)?;
            sha256_hex(&format!("{field}.content_hash"), &c.content_hash)?;
            required(&format!("{field}.license"), &c.license)?;
            if !datanet_ids.contains(c.datanet.as_str()) {
                return Err(invalid(
                    format!("{field}.datanet"),
                    format!("{:?} is not one of `datanets`", c.datanet),
                ));
            }
            if !ids.insert(c.contribution_id.as_str()) {
                return Err(invalid(
                    format!("{field}.contribution_id"),
                    format!("{} is listed twice", c.contribution_id),
                ));
            }
        }
        self.attribution.validate(&self.contributions)?;

        required("run.id", &self.run.id)?;
        let started = timestamp("run.started_at", &self.run.started_at)?;
        let ended = timestamp("run.ended_at", &self.run.ended_at)?;
        if ended < started {
            return Err(invalid("run.ended_at", "before run.started_at"));
        }

        if let Some(text) = &self.signature {
            signing::signature_from_hex(text).map_err(|e| invalid("signature", e.to_string()))?;
        }
        Ok(())
    }
}

fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(field, "missing (empty)"));
    }
    Ok(())
}

fn sha256_hex(field: &str, value: &str) -> Result<()> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(invalid(
            field,
            format!("{value:?} is not a sha256 in lower-case hex (64 digits)"),
        ));
    }
    Ok(())
}

fn files(field: &str, list: &[FileHash]) -> Result<()> {
    if list.is_empty() {
        return Err(invalid(field, "no files listed"));
    }
    let mut seen = HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let item = format!("{field}[{i}]");
        let safe = !f.path.is_empty()
            && !f.path.starts_with('/')
            && !f.path.contains('\\')
            && f.path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(invalid(
                format!("{item}.path"),
                format!("{:?} is not a relative path inside its folder", f.path),
            ));
        }
        sha256_hex(&format!("{item}.sha256"), &f.sha256)?;
        if !seen.insert(f.path.as_str()) {
            return Err(invalid(item, format!("{} is listed twice", f.path)));
        }
    }
    Ok(())
}

fn timestamp(field: &str, value: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|e| invalid(field, format!("{value:?} is not an RFC 3339 time: {e}")))
}

/// Addresses as `0x` and 40 lower-case hex digits, and only so: the manifest is hashed as
/// read, so one address must have one spelling.
pub(crate) mod lower_address {
    use alloy_primitives::Address;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("0x{}", hex::encode(address)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = text
            .strip_prefix("0x")
            .filter(|d| {
                d.len() == 40
                    && d.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "{text:?} is not an address in lower-case hex (0x and 40 digits)"
                ))
            })?;
        digits.parse().map_err(D::Error::custom)
    }
}
