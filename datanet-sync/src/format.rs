//! The Datanet format, version 1: `datanet.json` beside Parquet shards of rows, one row per
//! contribution. A contribution's id is the sha256 of its canonical JSON, so anyone can
//! recompute it, and `contributions_root` (a Merkle root over the ids) commits to the whole set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The `datanet.json` schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The file that describes a Datanet, at the root of its repository.
pub const MANIFEST_FILE: &str = "datanet.json";
/// The tag that marks a hub dataset repository as a Datanet.
pub const DATANET_TAG: &str = "datanet";

/// `datanet.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// The hub repository id, `owner/name`.
    pub id: String,
    pub name: String,
    pub domain: String,
    pub description: String,
    /// SPDX licence identifier of the Datanet as a whole; rows may carry their own.
    pub license: String,
    /// Where the content came from, in a sentence or two.
    #[serde(default)]
    pub source: String,
    pub row_schema: RowSchema,
    pub shards: Vec<ShardEntry>,
    pub contributors: Vec<ContributorEntry>,
    /// Merkle root (sha256, hex) over the contribution ids in shard order; see [`merkle_root`].
    pub contributions_root: String,
}

/// What a row's content holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowSchema {
    /// `instruction`, `input`, `output` (alpaca).
    Instruction,
    /// `messages` as a JSON list of `{role, content}` (chatml).
    Messages,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Path inside the repository, `shards/00000.parquet`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributorEntry {
    pub address: String,
    pub rows: u64,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// Parses and checks a `datanet.json`: known schema version, shard paths inside the
    /// repository, hashes that look like sha256.
    pub fn parse(text: &str, origin: &std::path::Path) -> Result<Manifest> {
        let bad = |message: String| Error::BadFile {
            path: origin.to_path_buf(),
            message,
        };
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| bad(format!("not a datanet.json: {e}")))?;
        if manifest.schema_version != SCHEMA_VERSION {
            return Err(bad(format!(
                "schema version {} (this build reads version {SCHEMA_VERSION})",
                manifest.schema_version
            )));
        }
        for shard in &manifest.shards {
            if !is_safe_relative_path(&shard.path) {
                return Err(bad(format!(
                    "shard path {:?} leaves the repository",
                    shard.path
                )));
            }
            if !is_sha256_hex(&shard.sha256) {
                return Err(bad(format!(
                    "shard {} has no valid sha256 ({:?})",
                    shard.path, shard.sha256
                )));
            }
        }
        Ok(manifest)
    }
}

/// A path inside a repository: relative, no `..`, no backslashes or empty parts.
pub fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An Ethereum address, `0x` and 40 hex digits.
pub fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What a contributor wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Instruction {
        instruction: String,
        #[serde(default)]
        input: String,
        output: String,
    },
    Messages {
        messages: Vec<Message>,
    },
}

impl Content {
    /// Checks what training needs: an instruction and an answer, or at least one user and one
    /// assistant turn, none empty.
    pub fn validate(&self) -> Result<()> {
        match self {
            Content::Instruction {
                instruction,
                output,
                ..
            } => {
                if instruction.trim().is_empty() {
                    return Err(Error::BadRow("`instruction` is empty".into()));
                }
                if output.trim().is_empty() {
                    return Err(Error::BadRow("`output` is empty".into()));
                }
            }
            Content::Messages { messages } => {
                if !messages.iter().any(|m| m.role == "assistant") {
                    return Err(Error::BadRow("no assistant turn in `messages`".into()));
                }
                if let Some(m) = messages.iter().find(|m| m.content.trim().is_empty()) {
                    return Err(Error::BadRow(format!("an empty {} turn", m.role)));
                }
            }
        }
        Ok(())
    }

    /// All the text, for search, length and duplicate detection.
    pub fn text(&self) -> String {
        match self {
            Content::Instruction {
                instruction,
                input,
                output,
            } => [instruction.as_str(), input, output]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n"),
            Content::Messages { messages } => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The content as the chat the trainer reads (chatml `messages`).
    pub fn to_messages(&self) -> Vec<Message> {
        match self {
            Content::Instruction {
                instruction,
                input,
                output,
            } => {
                let prompt = if input.is_empty() {
                    instruction.clone()
                } else {
                    format!("{instruction}\n\n{input}")
                };
                vec![
                    Message {
                        role: "user".into(),
                        content: prompt,
                    },
                    Message {
                        role: "assistant".into(),
                        content: output.clone(),
                    },
                ]
            }
            Content::Messages { messages } => messages.clone(),
        }
    }

    fn canonical_fields(&self, out: &mut BTreeMap<&'static str, serde_json::Value>) {
        match self {
            Content::Instruction {
                instruction,
                input,
                output,
            } => {
                out.insert("instruction", instruction.as_str().into());
                out.insert("input", input.as_str().into());
                out.insert("output", output.as_str().into());
            }
            Content::Messages { messages } => {
                let list = messages
                    .iter()
                    .map(|m| {
                        // Keys in sorted order, as everywhere in canonical JSON.
                        serde_json::json!({"content": m.content, "role": m.role})
                    })
                    .collect::<Vec<_>>();
                out.insert("messages", list.into());
            }
        }
    }

    /// sha256 (hex) of the content alone: equal for two contributors who wrote the same thing,
    /// which is what exact-duplicate detection wants.
    pub fn content_hash(&self) -> String {
        let mut fields = BTreeMap::new();
        self.canonical_fields(&mut fields);
        sha256_hex(canonical_json(&fields).as_bytes())
    }
}

/// One row of a shard: a contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub contribution_id: String,
    pub contributor: String,
    /// RFC 3339.
    pub created_at: String,
    pub license: String,
    #[serde(flatten)]
    pub content: Content,
    /// The contributor's signature over the contribution id, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Row {
    /// A new row with its id computed from everything but the signature.
    pub fn new(content: Content, contributor: &str, created_at: &str, license: &str) -> Row {
        let mut row = Row {
            contribution_id: String::new(),
            contributor: contributor.to_string(),
            created_at: created_at.to_string(),
            license: license.to_string(),
            content,
            signature: None,
        };
        row.contribution_id = row.canonical_id();
        row
    }

    /// sha256 (hex) of the row's canonical JSON: its content fields plus `contributor`,
    /// `created_at` and `license`, keys sorted, no spaces, UTF-8 as is. The same text from two
    /// contributors is two contributions, each creditable.
    pub fn canonical_id(&self) -> String {
        let mut fields = BTreeMap::new();
        self.content.canonical_fields(&mut fields);
        fields.insert("contributor", self.contributor.to_lowercase().into());
        fields.insert("created_at", self.created_at.as_str().into());
        fields.insert("license", self.license.as_str().into());
        sha256_hex(canonical_json(&fields).as_bytes())
    }

    /// Checks the id, the contributor's address and the content.
    pub fn validate(&self) -> Result<()> {
        if !is_address(&self.contributor) {
            return Err(Error::BadRow(format!(
                "contributor {:?} is not an 0x address",
                self.contributor
            )));
        }
        self.content.validate()?;
        let expected = self.canonical_id();
        if self.contribution_id != expected {
            return Err(Error::BadRow(format!(
                "contribution_id {} does not match the row's content (expected {expected})",
                self.contribution_id
            )));
        }
        Ok(())
    }
}

/// Compact JSON of a map whose keys (and nested objects' keys) are already sorted: `BTreeMap`
/// and `json!` objects built in key order. Written by hand so that no crate feature elsewhere
/// in the build (serde_json's `preserve_order`) can change the bytes.
fn canonical_json(fields: &BTreeMap<&'static str, serde_json::Value>) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String((*k).to_string()).to_string());
        out.push(':');
        write(v, &mut out);
    }
    out.push('}');
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Merkle root over contribution ids (hex sha256 each), in the order given: leaves are the
/// ids' 32 bytes, a parent is sha256(left ‖ right), an odd last node is carried up unchanged.
/// No rows give the sha256 of nothing.
pub fn merkle_root<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let mut level: Vec<[u8; 32]> = Vec::new();
    for id in ids {
        level.push(id_bytes(id)?);
    }
    if level.is_empty() {
        return Ok(sha256_hex(&[]));
    }
    while level.len() > 1 {
        level = level.chunks(2).map(parent_of).collect();
    }
    Ok(hex::encode(level[0]))
}

/// One step of a Merkle proof: the sibling hash, and whether it sits on the left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    /// sha256, hex.
    pub sibling: String,
    pub left: bool,
}

/// The proof that `ids[index]` is under [`merkle_root`]`(ids)`: the siblings from the leaf up.
/// A node carried up alone adds no step.
pub fn merkle_proof<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    index: usize,
) -> Result<Vec<ProofStep>> {
    let mut level: Vec<[u8; 32]> = Vec::new();
    for id in ids {
        level.push(id_bytes(id)?);
    }
    if index >= level.len() {
        return Err(Error::BadRow(format!(
            "no leaf {index} among {} contribution ids",
            level.len()
        )));
    }
    let mut at = index;
    let mut proof = Vec::new();
    while level.len() > 1 {
        let sibling = at ^ 1;
        if sibling < level.len() {
            proof.push(ProofStep {
                sibling: hex::encode(level[sibling]),
                left: sibling < at,
            });
        }
        level = level.chunks(2).map(parent_of).collect();
        at /= 2;
    }
    Ok(proof)
}

/// Whether `proof` leads from the contribution id `leaf` to `root`.
pub fn verify_merkle_proof(leaf: &str, proof: &[ProofStep], root: &str) -> Result<bool> {
    let mut node = id_bytes(leaf)?;
    for step in proof {
        let sibling = id_bytes(&step.sibling)?;
        node = if step.left {
            parent_of(&[sibling, node])
        } else {
            parent_of(&[node, sibling])
        };
    }
    Ok(hex::encode(node) == root)
}

fn id_bytes(id: &str) -> Result<[u8; 32]> {
    hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::BadRow(format!("contribution id {id:?} is not a sha256")))
}

/// sha256(left ‖ right) for a pair; a lone node is carried up unchanged.
fn parent_of(pair: &[[u8; 32]]) -> [u8; 32] {
    match pair {
        [a, b] => {
            let mut h = Sha256::new();
            h.update(a);
            h.update(b);
            h.finalize().into()
        }
        [a] => *a,
        _ => unreachable!("chunks(2) yields one or two"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alpaca(q: &str, a: &str) -> Content {
        Content::Instruction {
            instruction: q.into(),
            input: String::new(),
            output: a.into(),
        }
    }

    const ALICE: &str = "0x1111111111111111111111111111111111111111";
    const BOB: &str = "0x2222222222222222222222222222222222222222";

    #[test]
    fn canonical_id_is_the_sha256_of_sorted_compact_json() {
        let row = Row::new(
            alpaca("Größe?", "42"),
            ALICE,
            "2026-01-01T00:00:00Z",
            "CC0-1.0",
        );
        let text = format!(
            r#"{{"contributor":"{ALICE}","created_at":"2026-01-01T00:00:00Z","input":"","instruction":"Größe?","license":"CC0-1.0","output":"42"}}"#
        );
        assert_eq!(row.contribution_id, sha256_hex(text.as_bytes()));
        row.validate().expect("a fresh row is valid");
    }

    #[test]
    fn same_text_from_two_contributors_is_two_contributions_with_one_content_hash() {
        let a = Row::new(alpaca("q", "a"), ALICE, "t", "MIT");
        let b = Row::new(alpaca("q", "a"), BOB, "t", "MIT");
        assert_ne!(a.contribution_id, b.contribution_id);
        assert_eq!(a.content.content_hash(), b.content.content_hash());
    }

    #[test]
    fn a_tampered_row_fails_validation() {
        let mut row = Row::new(alpaca("q", "a"), ALICE, "t", "MIT");
        row.content = alpaca("q", "b");
        let err = row.validate().expect_err("content changed after hashing");
        assert!(err.to_string().contains("does not match"), "{err}");
        let mut row = Row::new(alpaca("q", "a"), "alice", "t", "MIT");
        row.contribution_id = row.canonical_id();
        assert!(row.validate().is_err());
    }

    #[test]
    fn rows_round_trip_through_json_in_both_shapes() {
        let chat = Content::Messages {
            messages: vec![
                Message {
                    role: "user".into(),
                    content: "hi".into(),
                },
                Message {
                    role: "assistant".into(),
                    content: "hello".into(),
                },
            ],
        };
        for content in [alpaca("q", "a"), chat] {
            let row = Row::new(content, ALICE, "t", "MIT");
            let json = serde_json::to_string(&row).expect("serialises");
            let back: Row = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, row);
        }
    }

    #[test]
    fn merkle_root_pairs_and_carries_the_odd_leaf() {
        let ids: Vec<String> = (0..3u8).map(|i| sha256_hex(&[i])).collect();
        let leaf = |i: usize| hex::decode(&ids[i]).expect("hex");
        let h01 = Sha256::digest([leaf(0), leaf(1)].concat());
        let root = Sha256::digest([h01.to_vec(), leaf(2)].concat());
        assert_eq!(
            merkle_root(ids.iter().map(String::as_str)).expect("valid ids"),
            hex::encode(root)
        );
        assert_eq!(merkle_root([ids[0].as_str()]).expect("one id"), ids[0]);
        assert!(merkle_root(["nothex"]).is_err());
    }

    #[test]
    fn manifest_parse_rejects_paths_outside_the_repository() {
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            id: "o/n".into(),
            name: "n".into(),
            domain: "d".into(),
            description: String::new(),
            license: "MIT".into(),
            source: String::new(),
            row_schema: RowSchema::Instruction,
            shards: vec![ShardEntry {
                path: "../etc/passwd".into(),
                rows: 1,
                bytes: 1,
                sha256: sha256_hex(b""),
            }],
            contributors: vec![],
            contributions_root: sha256_hex(b""),
        };
        let text = serde_json::to_string(&manifest).expect("serialises");
        let err = Manifest::parse(&text, std::path::Path::new("datanet.json"))
            .expect_err("escaping path");
        assert!(err.to_string().contains("leaves the repository"), "{err}");
    }

    #[test]
    fn merkle_proofs_lead_every_leaf_to_the_root_and_nothing_else() {
        let ids: Vec<String> = (0..7u8).map(|i| sha256_hex(&[i])).collect();
        for n in 1..=ids.len() {
            let some = &ids[..n];
            let root = merkle_root(some.iter().map(String::as_str)).expect("root");
            for (i, id) in some.iter().enumerate() {
                let proof = merkle_proof(some.iter().map(String::as_str), i).expect("proof");
                assert!(
                    verify_merkle_proof(id, &proof, &root).expect("verify"),
                    "leaf {i} of {n}"
                );
                let other = sha256_hex(b"not a leaf");
                assert!(!verify_merkle_proof(&other, &proof, &root).expect("verify"));
            }
        }
        assert!(merkle_proof(ids.iter().map(String::as_str), 7).is_err());
    }
}
