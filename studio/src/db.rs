//! The workspace catalog: one SQLite file in WAL mode, schema versioned by `user_version`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use datanet_sync::sqlite::{self, MigrateError};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Each entry moves the schema one version up. Never edit a released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation's tables.
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE models (
        id        TEXT PRIMARY KEY,
        name      TEXT NOT NULL,
        source    TEXT NOT NULL,
        path      TEXT NOT NULL,
        info_json TEXT NOT NULL,
        added_at  TEXT NOT NULL
    );
    CREATE TABLE datasets (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        path       TEXT NOT NULL,
        info_json  TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        model_id    TEXT,
        dataset_id  TEXT,
        config_json TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE jobs (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        title        TEXT NOT NULL,
        state        TEXT NOT NULL,
        fraction     REAL NOT NULL DEFAULT 0,
        message      TEXT NOT NULL DEFAULT '',
        figures_json TEXT NOT NULL DEFAULT '{}',
        error        TEXT,
        -- set by any process; the process running the job polls it
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE job_events (
        job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq          INTEGER NOT NULL,
        at           TEXT NOT NULL,
        state        TEXT NOT NULL,
        fraction     REAL NOT NULL,
        message      TEXT NOT NULL,
        figures_json TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    "#,
    // 2: local chat. A conversation keeps its model's id even when the model is removed later.
    r#"
    CREATE TABLE conversations (
        id            TEXT PRIMARY KEY,
        -- NULL until the first answer: the title is then taken from the first question
        title         TEXT,
        model_id      TEXT NOT NULL,
        sampling_json TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE TABLE messages (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        role            TEXT NOT NULL,
        content         TEXT NOT NULL,
        -- assistant messages: how the answer was generated and why it stopped
        stats_json      TEXT,
        created_at      TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    );
    "#,
    // 3: fine-tuning runs: where their data and result are, their job, and their curves; a
    // conversation may chat through a run's adapter.
    r#"
    ALTER TABLE runs ADD COLUMN dataset_path TEXT;
    ALTER TABLE runs ADD COLUMN job_id TEXT;
    ALTER TABLE runs ADD COLUMN adapter_path TEXT;
    ALTER TABLE runs ADD COLUMN error TEXT;
    ALTER TABLE runs ADD COLUMN data_json TEXT;
    ALTER TABLE runs ADD COLUMN total_steps INTEGER;
    ALTER TABLE runs ADD COLUMN updated_at TEXT;
    CREATE TABLE run_metrics (
        run_id        TEXT NOT NULL,
        -- 'train' (one optimiser step) or 'eval'
        kind          TEXT NOT NULL,
        step          INTEGER NOT NULL,
        loss          REAL NOT NULL,
        learning_rate REAL,
        grad_norm     REAL,
        tokens_per_s  REAL,
        elapsed_s     REAL,
        eta_s         REAL,
        memory_bytes  INTEGER,
        perplexity    REAL,
        PRIMARY KEY (run_id, kind, step)
    );
    ALTER TABLE conversations ADD COLUMN adapter_run_id TEXT;
    "#,
    // 4: publications of runs: the stage each reached, so a killed publish resumes.
    r#"
    CREATE TABLE publications (
        manifest_hash TEXT PRIMARY KEY,
        run_id        TEXT NOT NULL,
        -- 'signed', 'uploaded' or 'registered'
        state         TEXT NOT NULL,
        -- the whole record as JSON
        body          TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX publications_by_run ON publications (run_id, created_at);
    "#,
];

/// A shared connection. SQLite serialises writers anyway; one connection per process keeps
/// things simple, and the busy timeout lets a CLI command and a running server share a file.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |e: rusqlite::Error| Error::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        sqlite::share(&conn).map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        let db = Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        };
        db.migrate()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(sqlite::schema_version(&self.lock())?)
    }

    fn migrate(&self) -> Result<()> {
        let applied = sqlite::migrate(&mut self.lock(), MIGRATIONS).map_err(|e| match e {
            MigrateError::TooNew { found, known } => Error::DatabaseTooNew {
                path: self.path.clone(),
                found,
                known,
            },
            MigrateError::Sqlite(e) => Error::Database {
                path: self.path.clone(),
                message: e.to_string(),
            },
        })?;
        if !applied.is_empty() {
            tracing::info!(from = applied.start, to = applied.end, path = %self.path.display(), "migrated the workspace database");
        }
        Ok(())
    }

    /// The connection. Callers keep the guard for one statement or one transaction.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.sqlite3");
        let db = Db::open(&path).expect("open");
        assert_eq!(
            db.schema_version().expect("version"),
            MIGRATIONS.len() as i64
        );
        db.lock()
            .execute("INSERT INTO settings VALUES ('k', 'v')", [])
            .expect("insert");
        drop(db);
        let db = Db::open(&path).expect("reopen");
        let v: String = db
            .lock()
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .expect("row survives reopen");
        assert_eq!(v, "v");
        let mode: String = db
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("studio.sqlite3");
        let garbage = b"this is not a database, it is somebody's notes\n".repeat(200);
        std::fs::write(&path, &garbage).expect("write");
        let err = match Db::open(&path) {
            Ok(_) => panic!("garbage opened as a database"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(text.contains("studio.sqlite3"), "{text}");
        assert!(text.contains("not a database"), "{text}");
        assert_eq!(std::fs::read(&path).expect("read back"), garbage);
    }

    #[test]
    fn processes_opening_a_new_catalog_together_migrate_it_once() {
        // Separate connections lock like separate processes. Many rounds: the race is narrow.
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..40 {
            let path = dir.path().join(format!("race-{round}.sqlite3"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        Db::open(&path).map(|db| db.schema_version())
                    })
                })
                .collect();
            for t in openers {
                let version = t.join().expect("thread").expect("open").expect("version");
                assert_eq!(version, MIGRATIONS.len() as i64);
            }
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.sqlite3");
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", 99)
                .expect("set version");
        }
        assert!(matches!(
            Db::open(&path),
            Err(Error::DatabaseTooNew { found: 99, .. })
        ));
    }
}
