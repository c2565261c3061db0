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

/// A tiny random Llama for chat, with a vocabulary and a chat template: large enough that the
/// end-of-sequence token is rarely drawn, with a context long enough for answers that run
/// until they are stopped.
pub fn tiny_chat_gguf(dir: &Path) -> PathBuf {
    let spec = TinyLlama {
        vocab: 1024,
        hidden: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate: 128,
        context: 4096,
        ..TinyLlama::default()
    };
    let path = dir.join("tiny-chat.gguf");
    spec.to_gguf().write(&path).expect("write tiny chat gguf");
    path
}

/// Serves `app` on a free loopback port until the returned sender is dropped; returns the
/// base URL.
pub async fn serve_on_loopback(app: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = studio::server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(studio::server::serve(listener, app, async {
        let _ = rx.await;
    }));
    (base, tx)
}

/// The default model where `scripts/setup` puts it: `$MODELFACTORY_DEFAULT_GGUF`, else
/// `$MODELFACTORY_CACHE` (`~/.cache/modelfactory`)`/default-model/`.
pub fn default_gguf() -> PathBuf {
    let path = match std::env::var_os("MODELFACTORY_DEFAULT_GGUF") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("MODELFACTORY_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/modelfactory"))
            })
            .expect("HOME or MODELFACTORY_CACHE is set")
            .join("default-model/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    assert!(
        path.is_file(),
        "the default model is not at {}. Run scripts/setup, or point MODELFACTORY_DEFAULT_GGUF at \
         SmolLM2-135M-Instruct.Q4_1.gguf",
        path.display()
    );
    path
}
