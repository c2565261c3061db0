//! The crate's error type. Every variant names what failed and where (a file, a line, a URL),
//! so the studio can show it as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{path}, line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: the file's sha256 is {actual}, but datanet.json says {expected}")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("invalid row: {0}")]
    BadRow(String),
    #[error("the Datanet {0:?} has no rows")]
    Empty(String),
    #[error("the hub at {endpoint} answered {url} with {message}")]
    Hub {
        endpoint: String,
        url: String,
        message: String,
    },
    #[error("no Datanet {0:?} in the local catalog (pull it first)")]
    UnknownDatanet(String),
    #[error("no row {0:?}")]
    UnknownRow(String),
    #[error("no dataset named {0:?}")]
    UnknownDataset(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
    #[error("catalog database {path}: {source}")]
    Catalog {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("catalog query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("shard query failed: {0}")]
    Query(#[from] polars::error::PolarsError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
