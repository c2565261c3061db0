//! Rows → a Datanet repository folder (`shards/*.parquet`, `datanet.json`, `README.md`), and
//! the check that such a folder is what its `datanet.json` says.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::{
    Content, ContributorEntry, MANIFEST_FILE, Manifest, Row, RowSchema, SCHEMA_VERSION, ShardEntry,
    is_safe_relative_path, merkle_root,
};
use crate::shard::{read_rows, write_atomically, write_shard};

/// The folder inside a repository that holds the shards.
pub const SHARDS_DIR: &str = "shards";
/// The hub card written beside `datanet.json`.
pub const README_FILE: &str = "README.md";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOptions {
    /// The hub repository id, `owner/name`.
    pub id: String,
    pub name: String,
    pub domain: String,
    pub description: String,
    /// SPDX licence identifier of the Datanet as a whole.
    pub license: String,
    /// Where the content came from.
    pub source: String,
    pub rows_per_shard: usize,
}

/// Writes `rows`, in order, as a Datanet repository in `out_dir` and returns its manifest.
/// Every row must be valid and no contribution may appear twice. Shards left in `out_dir` by
/// an earlier, larger pack are removed.
pub fn pack(rows: &[Row], opts: &PackOptions, out_dir: &Path) -> Result<Manifest> {
    let parts: Vec<&str> = opts.id.split('/').collect();
    if parts.len() != 2 || !is_safe_relative_path(&opts.id) {
        return Err(Error::Invalid(format!(
            "the Datanet id {:?} is not owner/name",
            opts.id
        )));
    }
    if opts.rows_per_shard == 0 {
        return Err(Error::Invalid("rows per shard must be at least 1".into()));
    }
    if rows.is_empty() {
        return Err(Error::Empty(opts.id.clone()));
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        row.validate().map_err(|e| {
            Error::BadRow(format!(
                "row {} ({}): {}",
                i + 1,
                row.contribution_id,
                bare(e)
            ))
        })?;
        if let Some(first) = seen.insert(&row.contribution_id, i) {
            return Err(Error::BadRow(format!(
                "contribution {} appears twice (rows {} and {})",
                row.contribution_id,
                first + 1,
                i + 1
            )));
        }
    }

    let shards_dir = out_dir.join(SHARDS_DIR);
    std::fs::create_dir_all(&shards_dir).map_err(Error::io("creating", &shards_dir))?;
    let mut shards = Vec::new();
    let mut written = HashSet::new();
    for (i, chunk) in rows.chunks(opts.rows_per_shard).enumerate() {
        let name = format!("{i:05}.parquet");
        let path = shards_dir.join(&name);
        write_shard(chunk, &path)?;
        let (bytes, sha256) = file_sha256(&path)?;
        shards.push(ShardEntry {
            path: format!("{SHARDS_DIR}/{name}"),
            rows: chunk.len() as u64,
            bytes,
            sha256,
        });
        written.insert(name);
    }
    remove_stale_shards(&shards_dir, &written)?;

    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        id: opts.id.clone(),
        name: opts.name.clone(),
        domain: opts.domain.clone(),
        description: opts.description.clone(),
        license: opts.license.clone(),
        source: opts.source.clone(),
        row_schema: if rows
            .iter()
            .all(|r| matches!(r.content, Content::Instruction { .. }))
        {
            RowSchema::Instruction
        } else {
            RowSchema::Messages
        },
        shards,
        contributors: contributors(rows),
        contributions_root: merkle_root(rows.iter().map(|r| r.contribution_id.as_str()))?,
    };
    let manifest_path = out_dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| Error::BadFile {
        path: manifest_path.clone(),
        message: format!("cannot serialise the manifest: {e}"),
    })?;
    write_atomically(&manifest_path, |out| {
        out.write_all(json.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(Error::io("writing", &manifest_path))
    })?;
    let readme_path = out_dir.join(README_FILE);
    let readme = hub_card(&manifest);
    write_atomically(&readme_path, |out| {
        out.write_all(readme.as_bytes())
            .map_err(Error::io("writing", &readme_path))
    })?;
    tracing::info!(
        id = %manifest.id,
        rows = rows.len(),
        shards = manifest.shards.len(),
        dir = %out_dir.display(),
        "packed Datanet"
    );
    Ok(manifest)
}

/// Re-reads `dir/datanet.json` and checks every shard's size and sha256, every row's id, the
/// contributor counts and the Merkle root over the ids.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&manifest_path).map_err(Error::io("reading", &manifest_path))?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    // Not sized from the manifest: its counts are what is being checked.
    let mut rows = Vec::new();
    for shard in &manifest.shards {
        let path = dir.join(&shard.path);
        let bad = |message: String| Error::BadFile {
            path: path.clone(),
            message,
        };
        let (bytes, sha256) = file_sha256(&path)?;
        if bytes != shard.bytes {
            return Err(bad(format!(
                "{bytes} bytes, but {MANIFEST_FILE} says {}",
                shard.bytes
            )));
        }
        if sha256 != shard.sha256 {
            return Err(Error::HashMismatch {
                path,
                expected: shard.sha256.clone(),
                actual: sha256,
            });
        }
        let shard_rows = read_rows(&path)?;
        if shard_rows.len() as u64 != shard.rows {
            return Err(bad(format!(
                "{} rows, but {MANIFEST_FILE} says {}",
                shard_rows.len(),
                shard.rows
            )));
        }
        for (i, row) in shard_rows.iter().enumerate() {
            row.validate()
                .map_err(|e| bad(format!("row {}: {}", i + 1, bare(e))))?;
        }
        rows.extend(shard_rows);
    }
    let bad_manifest = |message: String| Error::BadFile {
        path: manifest_path.clone(),
        message,
    };
    let root = merkle_root(rows.iter().map(|r| r.contribution_id.as_str()))?;
    if root != manifest.contributions_root {
        return Err(bad_manifest(format!(
            "contributions_root is {}, but the shards' rows give {root}",
            manifest.contributions_root
        )));
    }
    let counted = contributors(&rows);
    if counted != manifest.contributors {
        return Err(bad_manifest(format!(
            "the contributors list does not match the rows (the rows give {})",
            counted
                .iter()
                .map(|c| format!("{}: {}", c.address, c.rows))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    tracing::debug!(dir = %dir.display(), rows = rows.len(), "verified Datanet");
    Ok(manifest)
}

/// Size and sha256 (hex) of a file, read in pieces.
pub fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(Error::io("reading", path))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Rows per contributor (addresses lowercased, as in the ids), most rows first, then by address.
fn contributors(rows: &[Row]) -> Vec<ContributorEntry> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for row in rows {
        *counts.entry(row.contributor.to_lowercase()).or_default() += 1;
    }
    let mut list: Vec<ContributorEntry> = counts
        .into_iter()
        .map(|(address, rows)| ContributorEntry { address, rows })
        .collect();
    list.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.address.cmp(&b.address)));
    list
}

/// The message of a row error without the "invalid row:" prefix, for nesting in another one.
fn bare(e: Error) -> String {
    match e {
        Error::BadRow(message) => message,
        other => other.to_string(),
    }
}

fn remove_stale_shards(shards_dir: &Path, keep: &HashSet<String>) -> Result<()> {
    let entries = std::fs::read_dir(shards_dir).map_err(Error::io("listing", shards_dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", shards_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_shard = name.len() == "00000.parquet".len()
            && name.ends_with(".parquet")
            && name[..5].bytes().all(|b| b.is_ascii_digit());
        if is_shard && !keep.contains(&name) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing a shard from an earlier pack");
            std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
        }
    }
    Ok(())
}

/// A double-quoted YAML scalar (JSON strings are valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Text for a Markdown table cell: no line breaks, pipes escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The hub card: YAML front matter the hub indexes (licence, tags, name, where the Parquet
/// files are) and a short description with the contributors.
fn hub_card(m: &Manifest) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "---");
    let _ = writeln!(s, "license: {}", yaml_string(&m.license.to_lowercase()));
    let _ = writeln!(s, "pretty_name: {}", yaml_string(&m.name));
    let _ = writeln!(s, "tags:");
    let _ = writeln!(s, "- {}", crate::format::DATANET_TAG);
    if !m.domain.is_empty() {
        let _ = writeln!(s, "- {}", yaml_string(&m.domain));
    }
    let _ = writeln!(s, "configs:");
    let _ = writeln!(s, "- config_name: default");
    let _ = writeln!(s, "  data_files: \"{SHARDS_DIR}/*.parquet\"");
    let _ = writeln!(s, "---");
    let _ = writeln!(s);
    let _ = writeln!(s, "# {}", m.name);
    let _ = writeln!(s);
    if !m.description.is_empty() {
        let _ = writeln!(s, "{}", m.description.trim());
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "- Datanet: `{}`", m.id);
    if !m.domain.is_empty() {
        let _ = writeln!(s, "- Domain: {}", m.domain);
    }
    let _ = writeln!(s, "- Licence: {}", m.license);
    if !m.source.is_empty() {
        let _ = writeln!(s, "- Source: {}", m.source.trim());
    }
    let _ = writeln!(
        s,
        "- Rows: {} in {} shard{}",
        m.rows(),
        m.shards.len(),
        if m.shards.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "- Contributions root: `{}`", m.contributions_root);
    let _ = writeln!(s);
    let _ = writeln!(s, "## Contributors");
    let _ = writeln!(s);
    let _ = writeln!(s, "| address | rows |");
    let _ = writeln!(s, "|---|---:|");
    for c in &m.contributors {
        let _ = writeln!(s, "| `{}` | {} |", cell(&c.address), c.rows);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Message;

    const ALICE: &str = "0x1111111111111111111111111111111111111111";
    const BOB: &str = "0x2222222222222222222222222222222222222222";

    fn options(rows_per_shard: usize) -> PackOptions {
        PackOptions {
            id: "acme/recipes".into(),
            name: "Recipes: home cooking".into(),
            domain: "cooking".into(),
            description: "Questions and answers about home cooking.".into(),
            license: "CC-BY-4.0".into(),
            source: "Written by the contributors.".into(),
            rows_per_shard,
        }
    }

    fn rows() -> Vec<Row> {
        (0..7)
            .map(|i| {
                let who = if i % 3 == 0 { BOB } else { ALICE };
                Row::new(
                    Content::Instruction {
                        instruction: format!("How long do I boil egg {i}?"),
                        input: String::new(),
                        output: format!("{} minutes.", 5 + i),
                    },
                    who,
                    "2026-02-01T00:00:00Z",
                    "CC-BY-4.0",
                )
            })
            .collect()
    }

    #[test]
    fn pack_then_verify() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rows = rows();
        let manifest = pack(&rows, &options(3), dir.path()).expect("packs");
        assert_eq!(manifest.rows(), 7);
        let paths: Vec<&str> = manifest.shards.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "shards/00000.parquet",
                "shards/00001.parquet",
                "shards/00002.parquet"
            ]
        );
        assert_eq!(
            manifest.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(
            manifest.contributors,
            vec![
                ContributorEntry {
                    address: ALICE.into(),
                    rows: 4
                },
                ContributorEntry {
                    address: BOB.into(),
                    rows: 3
                },
            ]
        );
        assert_eq!(manifest.row_schema, RowSchema::Instruction);
        assert_eq!(
            manifest.contributions_root,
            merkle_root(rows.iter().map(|r| r.contribution_id.as_str())).expect("root")
        );
        let on_disk: Manifest = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).expect("manifest written"),
        )
        .expect("parses");
        assert_eq!(on_disk, manifest);
        let readme = std::fs::read_to_string(dir.path().join(README_FILE)).expect("card");
        assert!(
            readme.starts_with("---\nlicense: \"cc-by-4.0\"\n"),
            "{readme}"
        );
        assert!(readme.contains("- datanet\n- \"cooking\"\n"), "{readme}");
        assert!(
            readme.contains("pretty_name: \"Recipes: home cooking\""),
            "{readme}"
        );
        assert!(readme.contains(&format!("| `{ALICE}` | 4 |")), "{readme}");

        assert_eq!(verify(dir.path()).expect("verifies"), manifest);

        // Re-packing fewer rows into the same folder drops the shard it no longer needs.
        let manifest = pack(&rows[..4], &options(3), dir.path()).expect("packs again");
        assert_eq!(manifest.shards.len(), 2);
        assert!(!dir.path().join("shards/00002.parquet").exists());
        verify(dir.path()).expect("verifies");
    }

    #[test]
    fn a_flipped_byte_is_a_hash_mismatch() {
        let dir = tempfile::tempdir().expect("temp dir");
        pack(&rows(), &options(4), dir.path()).expect("packs");
        let shard = dir.path().join("shards/00001.parquet");
        let mut bytes = std::fs::read(&shard).expect("reads");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&shard, &bytes).expect("writes");
        match verify(dir.path()) {
            Err(Error::HashMismatch { path, .. }) => assert_eq!(path, shard),
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_consistent_but_forged_manifest_is_caught() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut manifest = pack(&rows(), &options(10), dir.path()).expect("packs");
        manifest.contributors[1].rows += 1;
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&manifest).expect("serialises"),
        )
        .expect("writes");
        let err = verify(dir.path()).expect_err("contributors forged");
        assert!(err.to_string().contains("contributors"), "{err}");

        manifest.contributors[1].rows -= 1;
        manifest.contributions_root = crate::format::sha256_hex(b"forged");
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&manifest).expect("serialises"),
        )
        .expect("writes");
        let err = verify(dir.path()).expect_err("root forged");
        assert!(err.to_string().contains("contributions_root"), "{err}");
    }

    #[test]
    fn invalid_rows_duplicates_and_empty_sets_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rows = rows();
        rows.push(rows[2].clone());
        let err = pack(&rows, &options(3), dir.path()).expect_err("duplicate");
        assert!(
            err.to_string().contains("appears twice (rows 3 and 8)"),
            "{err}"
        );

        rows.pop();
        rows[1].content = Content::Instruction {
            instruction: "changed".into(),
            input: String::new(),
            output: "after hashing".into(),
        };
        let err = pack(&rows, &options(3), dir.path()).expect_err("tampered");
        assert!(err.to_string().contains("row 2"), "{err}");

        assert!(matches!(
            pack(&[], &options(3), dir.path()),
            Err(Error::Empty(_))
        ));
        let mut bad_id = options(3);
        bad_id.id = "../escape".into();
        assert!(pack(&rows[..1], &bad_id, dir.path()).is_err());
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }

    #[test]
    fn mixed_rows_make_a_messages_datanet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rows = rows();
        rows.push(Row::new(
            Content::Messages {
                messages: vec![
                    Message {
                        role: "user".into(),
                        content: "Hi".into(),
                    },
                    Message {
                        role: "assistant".into(),
                        content: "Hello".into(),
                    },
                ],
            },
            ALICE,
            "2026-02-01T00:00:00Z",
            "MIT",
        ));
        let manifest = pack(&rows, &options(100), dir.path()).expect("packs");
        assert_eq!(manifest.row_schema, RowSchema::Messages);
        assert_eq!(verify(dir.path()).expect("verifies").rows(), 8);
    }
}
