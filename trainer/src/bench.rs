//! The generation benchmark behind `modelfactory bench generate`: prompt processing and decode
//! speed of our runtime, and of llama.cpp on the same file and thread count when
//! `llama-cpp-python` is installed, measured in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backends::BackendKind;
use crate::error::{Error, Result};
use crate::generate::argmax;
use crate::runtime::{ChatModel, LoadOptions};

/// The llama.cpp side, run by the Python interpreter given.
const LLAMA_CPP_SCRIPT: &str = include_str!("../tests/scripts/llama_cpp_bench.py");

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens decoded after it.
    pub generated_tokens: usize,
    /// CPU threads.
    pub threads: usize,
    /// Runs per engine; the best is kept.
    pub repeats: usize,
    /// The backend of our runtime.
    pub backend: BackendKind,
}

/// One engine's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// Which engine, and on what.
    pub engine: String,
    /// Prompt processing speed.
    pub prefill_tokens_per_s: f64,
    /// Decode speed, one token per step.
    pub decode_tokens_per_s: f64,
    /// Peak resident memory of the process, in bytes.
    pub peak_rss_bytes: u64,
}

/// The prompt both engines run: fixed ids spread over the vocabulary.
pub fn bench_prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((1000 + 7 * i) % vocab) as u32).collect()
}

/// Times our runtime on `model` with greedy decoding.
pub fn bench_ours(model: &Path, settings: &BenchSettings) -> Result<BenchRow> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
        .map_err(|e| Error::BackendUnavailable {
            backend: settings.backend,
            detail: format!("cannot start {} threads: {e}", settings.threads),
        })?;
    pool.install(|| {
        let options = LoadOptions {
            backend: Some(settings.backend),
            ..LoadOptions::default()
        };
        let model = ChatModel::load(model, &options, &mut |_, _| {})?;
        let prompt = bench_prompt(settings.prompt_tokens, model.config().vocab_size);
        let (mut best_prefill, mut best_decode) = (0.0f64, 0.0f64);
        for _ in 0..settings.repeats.max(1) {
            let (prefill, decode) = time_once(&model, &prompt, settings.generated_tokens)?;
            best_prefill = best_prefill.max(prefill);
            best_decode = best_decode.max(decode);
        }
        Ok(BenchRow {
            engine: format!("modelfactory ({})", settings.backend),
            prefill_tokens_per_s: best_prefill,
            decode_tokens_per_s: best_decode,
            peak_rss_bytes: peak_rss_bytes(),
        })
    })
}

/// Prefill and decode tokens/s of one run: the prompt in one pass, then `generated` greedy
/// tokens one at a time (the loop [`crate::generate::generate`] runs, without sampling
/// overhead or stop tokens).
fn time_once(model: &ChatModel, prompt: &[u32], generated: usize) -> Result<(f64, f64)> {
    model.with_cache(|step| {
        let start = Instant::now();
        let mut logits = step(prompt)?;
        let prefill = prompt.len() as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..generated {
            let next = argmax(&logits);
            logits = step(&[next])?;
        }
        let decode = generated as f64 / start.elapsed().as_secs_f64();
        Ok((prefill, decode))
    })
}

/// Runs the llama.cpp side with `python`; `Ok(None)` when that interpreter has no
/// `llama_cpp` module.
pub fn bench_llama_cpp(
    python: &Path,
    model: &Path,
    settings: &BenchSettings,
) -> std::result::Result<Option<BenchRow>, String> {
    let has_module = Command::new(python)
        .args(["-c", "import llama_cpp"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !has_module.status.success() {
        return Ok(None);
    }
    let output = Command::new(python)
        .arg("-c")
        .arg(LLAMA_CPP_SCRIPT)
        .arg(model)
        .arg(settings.threads.to_string())
        .arg(settings.prompt_tokens.to_string())
        .arg(settings.generated_tokens.to_string())
        .arg(settings.repeats.max(1).to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the llama.cpp benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map(Some)
        .map_err(|e| format!("unreadable llama.cpp benchmark output {line:?}: {e}"))
}

/// Peak resident memory of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
