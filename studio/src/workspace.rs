//! The workspace folder: where the catalog database, models, datasets and runs live.
//!
//! `$MODELFACTORY_HOME`, or `<data dir>/modelfactory` (on Linux `~/.local/share/modelfactory`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const HOME_ENV: &str = "MODELFACTORY_HOME";

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The folder named by `MODELFACTORY_HOME`, or the platform's data folder.
    pub fn default_root() -> PathBuf {
        if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(home);
        }
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("modelfactory")
    }

    /// Creates the folder layout if needed and checks that it can be written.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|source| Error::WorkspaceUnusable {
                    path: root.clone(),
                    source,
                })?
                .join(root)
        };
        for dir in [
            root.clone(),
            root.join("models"),
            root.join("datasets"),
            root.join("runs"),
            root.join("jobs"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| classify_io(&dir, source))?;
        }
        // Creating a directory that already exists succeeds on a read-only mount, so probe.
        let probe = root.join(".write-probe");
        match File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(source) => return Err(classify_io(&root, source)),
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database_path(&self) -> PathBuf {
        self.root.join("studio.sqlite3")
    }
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    /// Fine-tuning runs: checkpoints and adapters, one folder per run.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    /// Pulled and imported Datanets, one folder each.
    pub fn datanets_dir(&self) -> PathBuf {
        self.root.join("datanets")
    }
    /// Training datasets built from Datanets: one JSONL file each.
    pub fn datasets_dir(&self) -> PathBuf {
        self.root.join("datasets")
    }
    /// The Datanet catalog: labels, edits and datasets (SQLite).
    pub fn datanet_catalog_path(&self) -> PathBuf {
        self.root.join("datanets.sqlite")
    }
    /// The wallet's encrypted key files (owner-only).
    pub fn keystore_dir(&self) -> PathBuf {
        self.root.join("keystore")
    }

    /// Takes the instance lock that a long-lived front end (the server, the desktop app)
    /// holds for as long as it runs. One-shot CLI commands do not take it: SQLite's WAL mode
    /// lets them share the catalog with a running instance.
    pub fn lock_instance(&self, holder: &str) -> Result<InstanceLock> {
        let path = self.root.join("instance.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| classify_io(&path, source))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                let who = who.trim();
                return Err(Error::WorkspaceBusy {
                    path: self.root.clone(),
                    holder: if who.is_empty() {
                        "unknown process".into()
                    } else {
                        who.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(classify_io(&path, source));
            }
        }
        // Who holds it, for the message the next instance prints.
        let text = format!("{holder}, pid {}", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(
                "could not record the instance holder in {}: {e}",
                path.display()
            );
        }
        Ok(InstanceLock { _file: file })
    }
}

/// Held while an instance runs; the operating system releases it when the process dies.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

fn classify_io(path: &Path, source: std::io::Error) -> Error {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => Error::WorkspaceReadOnly {
            path: path.to_path_buf(),
        },
        _ => Error::WorkspaceUnusable {
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_layout_and_refuses_a_second_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path().join("ws")).expect("open");
        assert!(ws.models_dir().is_dir());
        let _held = ws.lock_instance("test server").expect("first lock");
        let err = ws
            .lock_instance("second")
            .expect_err("second lock must fail");
        match err {
            Error::WorkspaceBusy { holder, .. } => {
                assert!(holder.contains("test server"), "holder was {holder:?}")
            }
            other => panic!("wrong error: {other}"),
        }
    }

    #[test]
    fn lock_is_released_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path()).expect("open");
        drop(ws.lock_instance("a").expect("lock"));
        ws.lock_instance("b").expect("relock after drop");
    }
}
