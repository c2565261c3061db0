//! The Llama-family decoder: its configuration, where its weights come from, and the burn
//! implementation.

pub mod config;
pub mod llama;
pub mod nf4_tensors;
pub mod weights;

pub use config::{Architecture, DecoderConfig, RopeScaling};
pub use llama::{
    AttentionOp, AttentionShape, CrossEntropyOp, Decoder, FusedOps, KvCache, Linear, LoraTensors,
    Nf4Matmul, Nf4Weight, RopeTables, WeightMode, nf4_matmul_host,
};
pub use nf4_tensors::Nf4Tensors;
pub use weights::{RawTensor, WeightFiles, gguf_name};
