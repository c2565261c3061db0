//! Reading model files: GGUF, safetensors and Hugging Face `config.json`.
//!
//! Loading code lives here, apart from the model definitions; so will the per-architecture
//! tensor-name remap tables.

pub mod ggml;
pub mod gguf;
pub mod hf_config;
pub mod safetensors;
pub mod safetensors_writer;

#[cfg(any(test, feature = "test-support"))]
pub mod gguf_writer;
#[cfg(any(test, feature = "test-support"))]
pub mod tiny_llama;
