//! Datanets: the community dataset format, pulling and verifying shards from a Hugging
//! Face–compatible hub, the local catalog of rows, curation and labeling, and training sets
//! that remember which contribution each row came from.
//!
//! Not built yet: this crate holds its place in the workspace so that the dependency
//! direction (`studio` → `datanet-sync`, never the reverse) is fixed from the start. The
//! Datanet issue fills it.
