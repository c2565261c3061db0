//! SQLite files that several connections (threads of the server, processes) may open at the
//! same moment, even while the file is new: the Datanet catalog and the studio's workspace
//! database.

use std::ops::Range;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// How long a connection waits for another's write to finish before reporting the file busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("written by a newer ModelFactory (schema {found}, this build knows up to {known})")]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Makes `conn` wait for other connections' locks and puts the file in WAL mode, so readers
/// and a writer do not block each other. A file that is not a database fails here, before
/// anything is written to it.
pub fn share(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching a new file to WAL needs it to itself, and SQLite answers "busy" at once rather
    // than waiting for the busy timeout, so connections opening a new file together retry.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// The schema's version: how many migrations have run (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Runs the `migrations` the file has not had yet and returns the versions it moved through.
/// Each migration commits with its version bump, so a crash never leaves half of one; each
/// takes the write lock before reading the version, so connections opening a new file together
/// migrate it once. A file from a newer build is refused, not altered.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<Range<i64>, MigrateError> {
    let known = migrations.len() as i64;
    let first = schema_version(conn)?;
    if first > known {
        return Err(MigrateError::TooNew {
            found: first,
            known,
        });
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = schema_version(&tx)?;
        if found > known {
            return Err(MigrateError::TooNew { found, known });
        }
        if found == known {
            return Ok(first..known);
        }
        tx.execute_batch(migrations[found as usize])?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: &[&str] = &[
        "CREATE TABLE a (x INTEGER);",
        "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);",
    ];

    #[test]
    fn connections_opening_a_new_file_together_migrate_it_once() {
        // Separate connections lock like separate processes. Many rounds: the race is narrow.
        let dir = tempfile::tempdir().expect("temp dir");
        for round in 0..20 {
            let path = dir.path().join(format!("race-{round}.sqlite"));
            let barrier = std::sync::Barrier::new(6);
            let applied: Vec<Range<i64>> = std::thread::scope(|scope| {
                let openers: Vec<_> = (0..6)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let mut conn = Connection::open(&path)?;
                            share(&conn)?;
                            migrate(&mut conn, MIGRATIONS)
                        })
                    })
                    .collect();
                openers
                    .into_iter()
                    .map(|h| h.join().expect("the thread ran"))
                    .collect::<Result<_, MigrateError>>()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            });
            assert!(
                applied.iter().all(|r| r.end == 2),
                "round {round}: {applied:?}"
            );
            let conn = Connection::open(&path).expect("reopens");
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
                .expect("count");
            assert_eq!(rows, 1, "round {round}: the second migration ran once");
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .expect("mode");
            assert_eq!(mode, "wal");
        }
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("new.sqlite")).expect("opens");
        conn.pragma_update(None, "user_version", 7).expect("sets");
        let err = migrate(&mut conn, MIGRATIONS).expect_err("refused");
        assert!(
            matches!(err, MigrateError::TooNew { found: 7, known: 2 }),
            "{err}"
        );
        assert_eq!(schema_version(&conn).expect("version"), 7);
    }
}
