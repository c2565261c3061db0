//! The Llama-family decoder: its configuration, where its weights come from, and the burn
//! implementation.

pub mod config;
pub mod dropout;
pub mod llama;
pub mod nf4_tensors;
pub mod weights;

pub use config::{Architecture, DecoderConfig, RopeScaling};
pub use dropout::DropoutMask;
pub use llama::{
    AttentionOp, AttentionShape, CausalSoftmaxOp, CrossEntropyOp, Decoder, FusedOps, KvCache,
    KvWriteOp, Linear, LoraDropoutOp, LoraTensors, Nf4Matmul, Nf4Weight, RmsNormOp, RopeOp,
    RopeTables, SwigluOp, WeightMode, nf4_matmul_host,
};
pub use nf4_tensors::Nf4Tensors;
pub use weights::{RawTensor, WeightFiles, gguf_name};
