//! The benchmarks behind `modelfactory bench generate` (prompt processing and decode speed of
//! our runtime, and of llama.cpp on the same file and thread count when `llama-cpp-python` is
//! installed, measured in the same run) and `modelfactory bench train` (LoRA and QLoRA steps).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backends::{BackendKind, on_backend};
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

/// What `modelfactory bench train` measures.
#[derive(Debug, Clone)]
pub struct TrainBenchSettings {
    /// LoRA or QLoRA.
    pub method: crate::train::Method,
    /// Tokens per sequence (all trained).
    pub seq_len: usize,
    /// LoRA rank (on all seven projections, alpha = 2·rank).
    pub rank: usize,
    /// LoRA dropout.
    pub dropout: f32,
    /// Timed optimiser steps, after one warm-up step.
    pub steps: usize,
    /// CPU threads.
    pub threads: usize,
    /// The backend.
    pub backend: BackendKind,
    /// The precision of the frozen base's products.
    pub precision: crate::train::Precision,
}

/// One training configuration's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainBenchRow {
    /// Which engine, method and backend.
    pub engine: String,
    /// Training tokens per second (forward, backward and update).
    pub tokens_per_s: f64,
    /// Share of a step in the forward pass.
    pub forward_share: f64,
    /// Share of a step in the backward pass.
    pub backward_share: f64,
    /// Share of a step in clipping and the optimiser update.
    pub update_share: f64,
    /// Bytes of the frozen projection weights.
    pub base_weight_bytes: u64,
    /// Trainable numbers.
    pub trainable_parameters: usize,
    /// Peak resident memory of the process, in bytes.
    pub peak_rss_bytes: u64,
    /// Peak device memory while it ran, context included (GPU backends; filled in by the
    /// caller, which watches the device from outside the process).
    #[serde(default)]
    pub peak_device_bytes: Option<u64>,
}

/// Model FLOPs of one trained token of LoRA on `config` (sequence `seq`, rank `rank` on all
/// seven projections), the numerator of model FLOPs utilisation. The frozen projections and
/// the output head cost 2 FLOPs per weight forward and 2 backward (input gradients only: they
/// get no weight gradients); attention scores and their weighted sum 4·seq·(query width)
/// forward and twice that backward, counted over the whole sequence as PaLM's formula does;
/// each LoRA pair 2·r·(in + out) forward and twice that backward (input and weight gradients).
pub fn lora_training_flops_per_token(
    config: &crate::model::DecoderConfig,
    seq: usize,
    rank: usize,
) -> f64 {
    let d = config.hidden_size as f64;
    let q = (config.heads * config.head_dim) as f64;
    let kv = (config.kv_heads * config.head_dim) as f64;
    let ffn = config.intermediate_size as f64;
    let layers = config.layers as f64;
    // (in, out) of q, k, v, o, gate, up, down.
    let projections = [
        (d, q),
        (d, kv),
        (d, kv),
        (q, d),
        (d, ffn),
        (d, ffn),
        (ffn, d),
    ];
    let weights: f64 =
        projections.iter().map(|(i, o)| i * o).sum::<f64>() * layers + config.vocab_size as f64 * d;
    let lora: f64 = projections.iter().map(|(i, o)| i + o).sum::<f64>() * layers * rank as f64;
    let attention = 12.0 * layers * seq as f64 * q;
    4.0 * weights + attention + 6.0 * lora
}

/// Times LoRA or QLoRA training steps of `model` on one fixed sequence. Run one
/// configuration per process: the peak memory is the process's.
pub fn bench_train(model: &Path, settings: &TrainBenchSettings) -> Result<TrainBenchRow> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
        .map_err(|e| Error::BackendUnavailable {
            backend: settings.backend,
            detail: format!("cannot start {} threads: {e}", settings.threads),
        })?;
    pool.install(|| {
        on_backend!(settings.backend, B => train_steps::<B>(model, settings, &Default::default()))
    })
}

fn train_steps<B: burn::tensor::backend::Backend>(
    model: &Path,
    settings: &TrainBenchSettings,
    device: &B::Device,
) -> Result<TrainBenchRow> {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;

    use crate::lora::{Adapter, LoraConfig};
    use crate::runtime::OpenedModel;
    use crate::train::optim::{AdamW, AdamWSettings, clip_global_norm};
    use crate::train::{Params, Sequence, load_frozen_base, sequence_loss};

    let opened = OpenedModel::open(model)?;
    let layers = opened.config.layers;
    let placement = crate::train::BasePlacement::for_backend(settings.backend, settings.precision)?;
    let decoder = load_frozen_base::<B, NoCheckpointing>(
        opened.config.clone(),
        &opened.files,
        settings.method,
        placement,
        device,
    )?;
    let lora = LoraConfig {
        rank: settings.rank,
        alpha: 2.0 * settings.rank as f32,
        dropout: settings.dropout,
        ..LoraConfig::default()
    };
    let scaling = lora.scaling();
    let adapter = Adapter::init(lora, &opened.config, "bench", 1)?;
    let mut params = Params::<B>::upload(&adapter, device);
    let mut optimizer = AdamW::new(AdamWSettings::default(), &params.flat);
    let tokens = bench_prompt(settings.seq_len, opened.config.vocab_size);
    let sequence = Sequence {
        trained: vec![true; tokens.len()],
        tokens,
    };
    let (mut forward, mut backward, mut update) = (0.0f64, 0.0f64, 0.0f64);
    for step in 0..=settings.steps {
        let t0 = Instant::now();
        // Dropout masks drawn as a training run draws them.
        let dropout = (settings.dropout, crate::generate::Rng::new(step as u64));
        let (lora, leaves) =
            params.to_lora::<NoCheckpointing>(layers, scaling, true, Some(dropout));
        let loss = sequence_loss(&decoder, &lora, &sequence)?.ok_or_else(|| Error::Training {
            what: "the benchmark sequence has no trained tokens".into(),
        })?;
        // Reading the loss waits for the forward pass on asynchronous backends.
        let _ = loss.clone().into_scalar();
        let t1 = Instant::now();
        let grad = params.gradient(&leaves, &loss.backward());
        let t2 = Instant::now();
        let (grad, _) = clip_global_norm(grad, 1.0);
        optimizer.update(&mut params.flat, grad, 2e-4);
        // Read one value so the update is finished before the clock stops.
        let _ = params.flat.clone().slice(0..1).into_scalar();
        let t3 = Instant::now();
        if step > 0 {
            forward += (t1 - t0).as_secs_f64();
            backward += (t2 - t1).as_secs_f64();
            update += (t3 - t2).as_secs_f64();
        }
    }
    let total = (forward + backward + update).max(1e-9);
    Ok(TrainBenchRow {
        engine: format!(
            "modelfactory {} ({}, {})",
            settings.method,
            if placement.bf16 { "bf16" } else { "f32" },
            settings.backend
        ),
        tokens_per_s: (settings.steps.max(1) * settings.seq_len) as f64 / total,
        forward_share: forward / total,
        backward_share: backward / total,
        update_share: update / total,
        base_weight_bytes: decoder.projection_bytes(),
        trainable_parameters: adapter.parameters(),
        peak_rss_bytes: peak_rss_bytes(),
        peak_device_bytes: None,
    })
}

/// What `modelfactory bench attribution` measures of per-example gradients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientBenchRow {
    /// The backend.
    pub backend: BackendKind,
    /// Per-example gradients per second.
    pub rows_per_s: f64,
    /// Tokens per row (all trained).
    pub seq_len: usize,
    /// Numbers in one gradient (the LoRA parameters).
    pub parameters: usize,
    /// Peak resident memory of the process, in bytes.
    pub peak_rss_bytes: u64,
}

/// Times per-example gradients of a rank-`rank` LoRA adapter on all seven projections of
/// `model` (LoRA, f32), one row of `seq_len` tokens at a time, as attribution computes them.
pub fn bench_gradients(
    model: &Path,
    backend: BackendKind,
    seq_len: usize,
    rank: usize,
    rows: usize,
    threads: usize,
) -> Result<GradientBenchRow> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::BackendUnavailable {
            backend,
            detail: format!("cannot start {threads} threads: {e}"),
        })?;
    pool.install(
        || on_backend!(backend, B => gradients_on::<B>(model, backend, seq_len, rank, rows)),
    )
}

fn gradients_on<B: burn::tensor::backend::Backend>(
    model: &Path,
    backend: BackendKind,
    seq_len: usize,
    rank: usize,
    rows: usize,
) -> Result<GradientBenchRow> {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;

    use crate::attribution::example_gradient;
    use crate::lora::{Adapter, LoraConfig};
    use crate::runtime::OpenedModel;
    use crate::train::{BasePlacement, Params, Precision, Sequence, load_frozen_base};

    let device = B::Device::default();
    let opened = OpenedModel::open(model)?;
    let decoder = load_frozen_base::<B, NoCheckpointing>(
        opened.config.clone(),
        &opened.files,
        crate::train::Method::Lora,
        BasePlacement::for_backend(backend, Precision::F32)?,
        &device,
    )?;
    let mut adapter = Adapter::init(
        LoraConfig {
            rank,
            alpha: 2.0 * rank as f32,
            dropout: 0.0,
            ..LoraConfig::default()
        },
        &opened.config,
        "bench",
        1,
    )?;
    // A trained adapter's B is not zero; with B = 0, A would get no gradient at all.
    for layer in &mut adapter.layers {
        for pair in layer.iter_mut().flatten() {
            for (i, b) in pair.b.iter_mut().enumerate() {
                *b = ((i % 7) as f32 - 3.0) * 1e-3;
            }
        }
    }
    let params = Params::<B>::upload(&adapter, &device);
    let layers = opened.config.layers;
    let scaling = adapter.config.scaling();
    let row = |k: usize| {
        let tokens: Vec<u32> = bench_prompt(seq_len + k, opened.config.vocab_size)
            .into_iter()
            .skip(k)
            .collect();
        Sequence {
            trained: vec![true; tokens.len()],
            tokens,
        }
    };
    // One row first: kernels, allocations.
    example_gradient(&decoder, &params, layers, scaling, &row(0))?;
    let start = Instant::now();
    for k in 1..=rows.max(1) {
        example_gradient(&decoder, &params, layers, scaling, &row(k))?;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    Ok(GradientBenchRow {
        backend,
        rows_per_s: rows.max(1) as f64 / seconds,
        seq_len,
        parameters: adapter.parameters(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
