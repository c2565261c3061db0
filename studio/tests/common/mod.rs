//! Tiny models for the studio's tests, written by trainer's test-support writers.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use trainer::test_support::{TinyGguf, TinyLlama, tiny_llama_gguf};

pub struct Expected {
    pub parameters: u64,
    pub context_length: u64,
}

/// Weights of a tied-embedding Llama, counted by hand from the architecture, so that a
/// reader that miscounts shapes fails the test.
fn llama_parameters(
    vocab: u64,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
) -> u64 {
    let kv = kv_heads * (hidden / heads);
    let attention = 2 * hidden * hidden + 2 * hidden * kv;
    let mlp = 3 * hidden * ffn;
    let norms = 2 * hidden;
    vocab * hidden + layers * (attention + mlp + norms) + hidden
}

pub fn tiny_gguf(dir: &Path) -> (PathBuf, Expected) {
    let spec = TinyGguf::default();
    let path = dir.join("tiny-llama.gguf");
    tiny_llama_gguf(&spec)
        .write(&path)
        .expect("write tiny gguf");
    let parameters = llama_parameters(
        spec.vocab,
        spec.hidden,
        spec.layers,
        spec.heads,
        spec.kv_heads,
        spec.ffn,
    );
    (
        path,
        Expected {
            parameters,
            context_length: spec.context,
        },
    )
}

pub fn tiny_safetensors_folder(dir: &Path) -> (PathBuf, Expected) {
    let spec = TinyLlama::default();
    let folder = dir.join("tiny-llama-hf");
    spec.write(&folder).expect("write tiny safetensors model");
    assert!(
        spec.tie_embeddings,
        "the hand count below assumes tied embeddings"
    );
    let parameters = llama_parameters(
        spec.vocab,
        spec.hidden,
        spec.layers,
        spec.heads,
        spec.kv_heads,
        spec.intermediate,
    );
    (
        folder,
        Expected {
            parameters,
            context_length: spec.context,
        },
    )
}
