//! The Llama-family decoder: its configuration, where its weights come from, and the burn
//! implementation.

pub mod config;
pub mod llama;
pub mod weights;

pub use config::{Architecture, DecoderConfig, RopeScaling};
pub use llama::{Decoder, KvCache, Linear, WeightMode};
pub use weights::{RawTensor, WeightFiles, gguf_name};
