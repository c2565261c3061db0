//! Datanets: the community dataset format, pulling and verifying shards from a Hugging
//! Face–compatible hub (and serving one), the local catalog of rows with their labels and
//! edits, curation, and training sets that remember which contribution each row came from.
//!
//! - [`format`]: `datanet.json`, rows, contribution ids and the Merkle root over them.
//! - [`shard`]: reading and writing Parquet shards; lazy polars scans over them.
//! - [`import`]: JSONL (alpaca, sharegpt, chatml), CSV and Parquet files into rows.
//! - [`pack`]: a folder of rows → a Datanet repository (shards + `datanet.json`).
//! - [`curate`]: exact and near duplicates, personal-data flags, length statistics.
//! - [`hub`]: the hub client (search, card, pull with resume and sha256 checks) and the
//!   server behind `modelfactory hub serve`.
//! - [`contribution`]: new and revised rows packaged for a Datanet's maintainers.
//! - [`catalog`]: the local SQLite catalog: pulled Datanets, labels, edits, datasets.
//! - [`sqlite`]: SQLite files opened by several connections at once, and their migrations.
//! - [`view`]: the curation table: shard rows joined with their labels and edits, filtered,
//!   sorted and paged.

pub mod catalog;
pub mod contribution;
pub mod curate;
pub mod error;
pub mod format;
pub mod hub;
pub mod import;
pub mod pack;
pub mod shard;
pub mod sqlite;
pub mod view;

pub use error::{Error, Result};
