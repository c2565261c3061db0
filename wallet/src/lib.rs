//! Keys, signing (EIP-191 / EIP-712), the lineage manifest and the on-chain registry client.
//!
//! Not built yet: this crate holds its place in the workspace so that the dependency
//! direction (`studio` → `wallet`, never the reverse) is fixed from the start. The publishing
//! issue fills it.
