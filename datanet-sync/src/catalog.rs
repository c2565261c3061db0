//! The local catalog, one SQLite file: which Datanets are here (pulled from a hub or imported
//! from a file) at which revision, and everything the user did to their rows — labels, edits
//! and duplicate marks — plus the training datasets built from them.
//!
//! Shard data never enters the catalog: it stays in the Parquet files. Labels and edits are
//! keyed by contribution id, which is content-addressed, so they survive pulling a newer
//! revision of the same Datanet. An edit is a new version; the contributor's original stays in
//! the shard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Content, Manifest};
use crate::sqlite::{self, MigrateError};

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE datanets (
    id TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    origin TEXT NOT NULL,
    dir TEXT NOT NULL,
    manifest TEXT NOT NULL,
    pulled_at TEXT NOT NULL
);
CREATE TABLE revisions (
    datanet_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    dir TEXT NOT NULL,
    endpoint TEXT,
    pulled_at TEXT NOT NULL,
    PRIMARY KEY (datanet_id, revision)
);
CREATE TABLE shards (
    datanet_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    path TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    PRIMARY KEY (datanet_id, revision, path)
);
CREATE TABLE labels (
    datanet_id TEXT NOT NULL,
    contribution_id TEXT NOT NULL,
    status TEXT,
    rating INTEGER,
    tags TEXT NOT NULL DEFAULT '[]',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (datanet_id, contribution_id)
);
CREATE TABLE edits (
    datanet_id TEXT NOT NULL,
    contribution_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content TEXT NOT NULL,
    edited_at TEXT NOT NULL,
    PRIMARY KEY (datanet_id, contribution_id, version)
);
CREATE TABLE duplicates (
    datanet_id TEXT NOT NULL,
    contribution_id TEXT NOT NULL,
    duplicate_of TEXT NOT NULL,
    PRIMARY KEY (datanet_id, contribution_id)
);
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    path TEXT NOT NULL,
    summary TEXT NOT NULL
);
"#];

/// Where a local Datanet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Hub,
    Import,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Hub => "hub",
            Origin::Import => "import",
        }
    }
}

/// A Datanet present on this machine, at the revision the user works on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatanetRecord {
    pub id: String,
    pub revision: String,
    pub origin: Origin,
    /// The folder holding `datanet.json` and `shards/`.
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub pulled_at: String,
}

impl DatanetRecord {
    /// The shard files, in manifest order.
    pub fn shard_paths(&self) -> Vec<PathBuf> {
        self.manifest
            .shards
            .iter()
            .map(|s| self.dir.join(&s.path))
            .collect()
    }
}

/// What the user decided about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelStatus {
    Accepted,
    Rejected,
}

impl LabelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelStatus::Accepted => "accepted",
            LabelStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<LabelStatus> {
        match s {
            "accepted" => Some(LabelStatus::Accepted),
            "rejected" => Some(LabelStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub status: Option<LabelStatus>,
    pub rating: Option<u8>,
    pub tags: Vec<String>,
}

/// A change to a label: a field left out stays as it was; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelUpdate {
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<LabelStatus>>,
    #[serde(default, deserialize_with = "present")]
    pub rating: Option<Option<u8>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Tells a field given as `null` (clear it) from one left out (keep it).
fn present<'de, T, D>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A row's latest edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub version: u32,
    pub content: Content,
}

/// A training dataset as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub name: String,
    pub rows: u64,
    pub eval_rows: u64,
    pub contributors: u64,
    pub created_at: String,
    /// The JSONL file the trainer reads; every line names its contribution and contributor.
    pub path: PathBuf,
    pub sources: Vec<DatasetSourceSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSourceSummary {
    /// A Datanet id, or a file path for rows imported from a file.
    pub datanet: String,
    pub revision: String,
    pub rows: u64,
}

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` and brings its schema up to date. A
    /// catalog written by a newer build is refused rather than altered.
    pub fn open(path: &Path) -> Result<Catalog> {
        let fail = |source| Error::Catalog {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(Error::io("creating the catalog's folder", parent))?;
        }
        let mut conn = Connection::open(path).map_err(fail)?;
        sqlite::share(&conn).map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(fail)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| match e {
            MigrateError::TooNew { .. } => {
                Error::Invalid(format!("the catalog {}: {e}", path.display()))
            }
            MigrateError::Sqlite(source) => fail(source),
        })?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a Datanet at a revision (pulled and verified, or imported) and makes that
    /// revision the current one.
    pub fn record_datanet(
        &self,
        manifest: &Manifest,
        revision: &str,
        origin: Origin,
        dir: &Path,
        endpoint: Option<&str>,
    ) -> Result<DatanetRecord> {
        let at = now();
        let manifest_json = serde_json::to_string(manifest)
            .map_err(|e| Error::Invalid(format!("serialising the manifest: {e}")))?;
        let dir_text = dir.to_string_lossy().to_string();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO datanets (id, revision, origin, dir, manifest, pulled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET revision = ?2, origin = ?3, dir = ?4, manifest = ?5, pulled_at = ?6",
            params![manifest.id, revision, origin.as_str(), dir_text, manifest_json, at],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO revisions (datanet_id, revision, dir, endpoint, pulled_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![manifest.id, revision, dir_text, endpoint, at],
        )?;
        for shard in &manifest.shards {
            tx.execute(
                "INSERT OR REPLACE INTO shards (datanet_id, revision, path, rows, bytes, sha256, verified_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    manifest.id,
                    revision,
                    shard.path,
                    shard.rows as i64,
                    shard.bytes as i64,
                    shard.sha256,
                    at
                ],
            )?;
        }
        tx.commit()?;
        self.datanet(&manifest.id)
    }

    fn datanet_from_row(
        row: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(String, String, String, String, String, String)> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    fn datanet_record(
        &self,
        (id, revision, origin, dir, manifest, pulled_at): (
            String,
            String,
            String,
            String,
            String,
            String,
        ),
    ) -> Result<DatanetRecord> {
        let manifest = Manifest::parse(&manifest, &self.path)?;
        Ok(DatanetRecord {
            id,
            revision,
            origin: if origin == "hub" {
                Origin::Hub
            } else {
                Origin::Import
            },
            dir: PathBuf::from(dir),
            manifest,
            pulled_at,
        })
    }

    pub fn datanets(&self) -> Result<Vec<DatanetRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, revision, origin, dir, manifest, pulled_at FROM datanets ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], Self::datanet_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| self.datanet_record(r)).collect()
    }

    pub fn datanet(&self, id: &str) -> Result<DatanetRecord> {
        let row = self
            .conn
            .query_row(
                "SELECT id, revision, origin, dir, manifest, pulled_at FROM datanets WHERE id = ?1",
                [id],
                Self::datanet_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::UnknownDatanet(id.to_string()))?;
        self.datanet_record(row)
    }

    /// Changes a row's label and returns it as stored.
    pub fn label(
        &self,
        datanet: &str,
        contribution_id: &str,
        update: &LabelUpdate,
    ) -> Result<Label> {
        let mut label = self
            .labels_of(datanet, Some(contribution_id))?
            .remove(contribution_id)
            .unwrap_or_default();
        if let Some(status) = update.status {
            label.status = status;
        }
        if let Some(rating) = update.rating {
            if let Some(r) = rating
                && !(1..=5).contains(&r)
            {
                return Err(Error::Invalid(format!("a rating is 1 to 5, not {r}")));
            }
            label.rating = rating;
        }
        if let Some(tags) = &update.tags {
            let mut tags: Vec<String> = tags
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if let Some(bad) = tags.iter().find(|t| t.contains('|')) {
                return Err(Error::Invalid(format!("a tag cannot contain '|': {bad:?}")));
            }
            tags.sort();
            tags.dedup();
            label.tags = tags;
        }
        let tags = serde_json::to_string(&label.tags)
            .map_err(|e| Error::Invalid(format!("serialising tags: {e}")))?;
        self.conn.execute(
            "INSERT INTO labels (datanet_id, contribution_id, status, rating, tags, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(datanet_id, contribution_id) DO UPDATE SET status = ?3, rating = ?4, tags = ?5, updated_at = ?6",
            params![
                datanet,
                contribution_id,
                label.status.map(LabelStatus::as_str),
                label.rating,
                tags,
                now()
            ],
        )?;
        Ok(label)
    }

    /// Sets one status on many rows in one transaction (rejecting duplicates).
    pub fn set_status_many(
        &self,
        datanet: &str,
        ids: &[String],
        status: LabelStatus,
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO labels (datanet_id, contribution_id, status, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(datanet_id, contribution_id) DO UPDATE SET status = ?3, updated_at = ?4",
            )?;
            let at = now();
            for id in ids {
                stmt.execute(params![datanet, id, status.as_str(), at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every label of a Datanet (or of one row), by contribution id.
    pub fn labels(&self, datanet: &str) -> Result<HashMap<String, Label>> {
        self.labels_of(datanet, None)
    }

    fn labels_of(&self, datanet: &str, only: Option<&str>) -> Result<HashMap<String, Label>> {
        let mut stmt = self.conn.prepare(
            "SELECT contribution_id, status, rating, tags FROM labels
             WHERE datanet_id = ?1 AND (?2 IS NULL OR contribution_id = ?2)",
        )?;
        let rows = stmt.query_map(params![datanet, only], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<u8>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, status, rating, tags) = row?;
            out.insert(
                id,
                Label {
                    status: status.as_deref().and_then(LabelStatus::parse),
                    rating,
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                },
            );
        }
        Ok(out)
    }

    /// Stores a new version of a row's content; the original stays in its shard. Returns the
    /// version number (1 for the first edit).
    pub fn edit(&self, datanet: &str, contribution_id: &str, content: &Content) -> Result<u32> {
        content.validate()?;
        let json = serde_json::to_string(content)
            .map_err(|e| Error::Invalid(format!("serialising the edit: {e}")))?;
        let tx = self.conn.unchecked_transaction()?;
        let version: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM edits WHERE datanet_id = ?1 AND contribution_id = ?2",
            params![datanet, contribution_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO edits (datanet_id, contribution_id, version, content, edited_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![datanet, contribution_id, version, json, now()],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Each edited row's latest version.
    pub fn edits(&self, datanet: &str) -> Result<HashMap<String, Edit>> {
        let mut stmt = self.conn.prepare(
            "SELECT e.contribution_id, e.version, e.content FROM edits e
             WHERE e.datanet_id = ?1 AND e.version = (
                SELECT MAX(version) FROM edits WHERE datanet_id = e.datanet_id AND contribution_id = e.contribution_id)",
        )?;
        let rows = stmt.query_map([datanet], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, version, json) = row?;
            let content: Content = serde_json::from_str(&json).map_err(|e| {
                Error::Invalid(format!("the stored edit of {id} is unreadable: {e}"))
            })?;
            out.insert(id, Edit { version, content });
        }
        Ok(out)
    }

    /// Replaces the duplicate marks of a Datanet with the groups of its latest scan: every row
    /// but the first of a group points at the first.
    pub fn set_duplicates(&self, datanet: &str, groups: &[Vec<String>]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM duplicates WHERE datanet_id = ?1", [datanet])?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO duplicates (datanet_id, contribution_id, duplicate_of) VALUES (?1, ?2, ?3)",
            )?;
            for group in groups {
                if let Some((first, rest)) = group.split_first() {
                    for id in rest {
                        stmt.execute(params![datanet, id, first])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn duplicates(&self, datanet: &str) -> Result<HashMap<String, String>> {
        let mut stmt = self.conn.prepare(
            "SELECT contribution_id, duplicate_of FROM duplicates WHERE datanet_id = ?1",
        )?;
        let rows = stmt.query_map([datanet], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
    }

    pub fn save_dataset(&self, summary: &DatasetSummary) -> Result<()> {
        let json = serde_json::to_string(summary)
            .map_err(|e| Error::Invalid(format!("serialising the dataset: {e}")))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO datasets (name, created_at, path, summary) VALUES (?1, ?2, ?3, ?4)",
            params![
                summary.name,
                summary.created_at,
                summary.path.to_string_lossy(),
                json
            ],
        )?;
        Ok(())
    }

    pub fn datasets(&self) -> Result<Vec<DatasetSummary>> {
        let mut stmt = self
            .conn
            .prepare("SELECT summary FROM datasets ORDER BY created_at DESC")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            let json = json?;
            out.push(
                serde_json::from_str(&json)
                    .map_err(|e| Error::Invalid(format!("a stored dataset is unreadable: {e}")))?,
            );
        }
        Ok(out)
    }

    pub fn dataset(&self, name: &str) -> Result<DatasetSummary> {
        self.datasets()?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| Error::UnknownDataset(name.to_string()))
    }

    /// Forgets a dataset; returns its file so the caller can delete it.
    pub fn delete_dataset(&self, name: &str) -> Result<PathBuf> {
        let summary = self.dataset(name)?;
        self.conn
            .execute("DELETE FROM datasets WHERE name = ?1", [name])?;
        Ok(summary.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{RowSchema, SCHEMA_VERSION};

    #[test]
    fn a_new_catalog_opened_by_many_threads_at_once_is_created_once() {
        // The server's handlers open the catalog on threads of their own; the first requests
        // of a new workspace raced to create its tables ("table datanets already exists").
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join(format!("catalog-{round}.sqlite"));
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let opened: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Catalog::open(&path).map(|_| ()).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                for handle in opened {
                    let result = handle.join().expect("the thread ran");
                    assert_eq!(result, Ok(()), "round {round}");
                }
            });
            let catalog = Catalog::open(&path).expect("reopens");
            let version: i64 = catalog
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .expect("version");
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
    }

    fn manifest(id: &str) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            id: id.into(),
            name: "n".into(),
            domain: "d".into(),
            description: String::new(),
            license: "MIT".into(),
            source: String::new(),
            row_schema: RowSchema::Instruction,
            shards: vec![],
            contributors: vec![],
            contributions_root: crate::format::sha256_hex(b""),
        }
    }

    #[test]
    fn labels_edits_and_datanets_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog.sqlite");
        {
            let catalog = Catalog::open(&path).expect("opens");
            catalog
                .record_datanet(
                    &manifest("o/n"),
                    "abc",
                    Origin::Hub,
                    dir.path(),
                    Some("http://x"),
                )
                .expect("records");
            let update: LabelUpdate =
                serde_json::from_str(r#"{"status":"accepted","rating":4,"tags":["b","a","a"]}"#)
                    .expect("parses");
            catalog.label("o/n", "id1", &update).expect("labels");
            let content = Content::Instruction {
                instruction: "q".into(),
                input: String::new(),
                output: "better".into(),
            };
            assert_eq!(catalog.edit("o/n", "id1", &content).expect("edits"), 1);
            assert_eq!(catalog.edit("o/n", "id1", &content).expect("edits"), 2);
        }
        let catalog = Catalog::open(&path).expect("reopens");
        assert_eq!(catalog.datanets().expect("lists").len(), 1);
        let label = &catalog.labels("o/n").expect("labels")["id1"];
        assert_eq!(label.status, Some(LabelStatus::Accepted));
        assert_eq!(label.tags, vec!["a".to_string(), "b".to_string()]);
        // Leaving a field out keeps it; null clears it.
        let update: LabelUpdate = serde_json::from_str(r#"{"rating":null}"#).expect("parses");
        let label = catalog.label("o/n", "id1", &update).expect("relabels");
        assert_eq!(
            (label.status, label.rating),
            (Some(LabelStatus::Accepted), None)
        );
        assert_eq!(catalog.edits("o/n").expect("edits")["id1"].version, 2);
        assert!(matches!(
            catalog.datanet("x/y"),
            Err(Error::UnknownDatanet(_))
        ));
    }

    #[test]
    fn bad_ratings_and_a_newer_schema_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog.sqlite");
        let catalog = Catalog::open(&path).expect("opens");
        let update = LabelUpdate {
            rating: Some(Some(9)),
            ..LabelUpdate::default()
        };
        assert!(catalog.label("o/n", "id", &update).is_err());
        drop(catalog);
        let conn = Connection::open(&path).expect("opens raw");
        conn.pragma_update(None, "user_version", 99).expect("sets");
        drop(conn);
        let err = Catalog::open(&path).err().expect("newer schema refused");
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
