//! Integration tests of the `trainer` crate: one binary, one module per area.

mod attribution;
mod backends;
mod data;
mod default_model;
mod gguf;
mod inspect;
mod llama_cpp;
mod lora;
mod peft;
mod quant;
mod runtime;
mod safetensors;
mod tokenizer;
mod train;

use std::path::{Path, PathBuf};

/// A temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary folder")
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path
}

/// Asserts that an error's message ends with the path (paths go last in messages).
pub fn assert_names_path(err: &trainer::Error, path: &Path) {
    let message = err.to_string();
    assert!(
        message.ends_with(&path.display().to_string()),
        "message does not end with {}: {message}",
        path.display()
    );
    assert_eq!(err.path(), Some(path));
}

/// Gives every LoRA B of `adapter` deterministic values in ±`scale`/2 from the seed `x`, so
/// its A matrices get gradients and it changes the logits.
pub fn fill_b(adapter: &mut trainer::lora::Adapter, mut x: f32, scale: f32) {
    for layer in &mut adapter.layers {
        for pair in layer.iter_mut().flatten() {
            for b in &mut pair.b {
                x = (x * 1.7 + 0.3) % 1.0;
                *b = (x - 0.5) * scale;
            }
        }
    }
}
