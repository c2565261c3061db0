//! `trainer`: everything about models, on burn.
//!
//! Today: reading model files (GGUF, safetensors, Hugging Face `config.json`), inspecting a
//! model's metadata without loading its weights, and probing the compute backends. The model
//! definitions, generation, LoRA/QLoRA training and adapter export build on these.
//!
//! - [`loading`]: the file readers ([`loading::gguf`], [`loading::safetensors`],
//!   [`loading::hf_config`]) and, with the `test-support` feature, writers of tiny test files.
//! - [`inspect`]: [`inspect_model`] → [`ModelInfo`].
//! - [`backends`]: [`probe_backends`] → [`BackendStatus`] per [`BackendKind`].
//! - [`data`]: dataset files → chat examples → tokens with the assistant-only loss mask.
//! - [`Error`]: the crate's error type.

pub mod attribution;
pub mod backends;
pub mod bench;
pub mod citations;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube_ops;
pub mod data;
mod error;
pub mod generate;
pub mod inspect;
pub mod loading;
pub mod lora;
pub mod model;
pub mod quant;
pub mod runtime;
pub mod tokenizer;
pub mod train;

pub use backends::{BackendKind, BackendStatus, probe_backends};
pub use error::{Error, FileKind, Result};
pub use inspect::{ModelFormat, ModelInfo, inspect_model};
pub use loading::gguf::GgufFile;
pub use loading::hf_config::HfConfig;
pub use runtime::{
    ChatMessage, ChatModel, GenerationStats, LoadOptions, SamplingParams, StopReason,
};

/// Writers of tiny GGUF files and safetensors checkpoints for tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    pub use crate::loading::gguf_writer::{
        GgufTensorSpec, GgufValue, GgufWriter, TinyGguf, quantize_q8_0, test_values,
        tiny_llama_gguf,
    };
    pub use crate::loading::safetensors_writer::{
        StTensor, raw_safetensors, safetensors_bytes, write_safetensors,
    };
    pub use crate::loading::tiny_llama::{TinyFamily, TinyLlama};
}
