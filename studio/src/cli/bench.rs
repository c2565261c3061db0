//! `modelfactory bench generate`: prompt-processing and decode speed of our runtime next to
//! llama.cpp's on the same GGUF file and thread count, in one run.
//!
//! `modelfactory bench train`: LoRA and QLoRA training speed and peak memory on each backend,
//! next to PyTorch + PEFT on the same model and thread count. Each configuration runs in a
//! child process of its own, so each peak memory is its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use studio::Studio;
use trainer::bench::{
    BenchRow, BenchSettings, TrainBenchRow, TrainBenchSettings, bench_llama_cpp, bench_ours,
    bench_train,
};
use trainer::train::Method;

use super::args::{AttributionBenchArgs, BenchCommand, GenerateBenchArgs, TrainBenchArgs};
use super::human_bytes;

pub fn run(home: &Path, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Generate(args) => generate(home, args),
        BenchCommand::Train(args) => train(home, args),
        BenchCommand::Data(args) => super::bench_data::run(args),
        BenchCommand::Citations(args) => super::bench_citations::run(args),
        BenchCommand::Attribution(args) => attribution(home, args),
    }
}

/// Gradients per second, and what they make of a 1 000-row run: DataInf computes each row's
/// gradient once and keeps it for its other two passes, in memory within its 1 GiB budget,
/// else as bf16 in a scratch file (whose reading back is not counted here).
fn attribution(home: &Path, args: AttributionBenchArgs) -> anyhow::Result<ExitCode> {
    const RUN_ROWS: usize = 1_000;
    const BUDGET: usize = 1 << 30;
    let path = model_path(home, &args.model)?;
    let threads = threads_or_all(args.threads);
    let backends = backends_or_usable(&args.backend);
    let mut rows = Vec::new();
    for backend in backends {
        let row = trainer::bench::bench_gradients(
            &path, backend, args.seq, args.rank, args.rows, threads,
        )
        .with_context(|| format!("per-example gradients on {backend}"))?;
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "model {}: rows of {} tokens, rank {} on q,k,v,o,gate,up,down, {threads} threads",
        path.display(),
        args.seq,
        args.rank
    );
    println!(
        "{:<8} {:>10} {:>12} {:>12} {:>22} {:>26}",
        "backend",
        "rows/s",
        "parameters",
        "peak memory",
        "gradients kept in",
        "attributing 1 000 rows"
    );
    for r in rows {
        let kept = if RUN_ROWS * r.parameters * 4 <= BUDGET {
            "memory".to_string()
        } else {
            format!(
                "disk, bf16, {}",
                human_bytes((RUN_ROWS * r.parameters * 2) as u64)
            )
        };
        println!(
            "{:<8} {:>10.2} {:>12} {:>12} {:>22} {:>25.0}s",
            r.backend.name(),
            r.rows_per_s,
            r.parameters,
            human_bytes(r.peak_rss_bytes),
            kept,
            RUN_ROWS as f64 / r.rows_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The PyTorch + PEFT side of `bench train`.
const PEFT_SCRIPT: &str = include_str!("../../../trainer/tests/scripts/peft_reference.py");

fn train(home: &Path, args: TrainBenchArgs) -> anyhow::Result<ExitCode> {
    let path = model_path(home, &args.model)?;
    let threads = threads_or_all(args.threads);
    let methods: Vec<Method> = match args.method {
        Some(m) => vec![m.into()],
        None => vec![Method::Lora, Method::Qlora],
    };
    let backends = backends_or_usable(&args.backend);
    if args.single {
        let settings = TrainBenchSettings {
            method: methods[0],
            precision: args
                .precision
                .first()
                .copied()
                .map_or(trainer::train::Precision::Auto, Into::into),
            seq_len: args.seq,
            rank: args.rank,
            dropout: args.dropout,
            steps: args.steps,
            threads,
            backend: backends
                .first()
                .copied()
                .unwrap_or(trainer::BackendKind::Cpu),
        };
        let row = bench_train(&path, &settings).context("benchmarking training")?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "model {}: sequence {}, rank {} on q,k,v,o,gate,up,down, dropout {}, {threads} threads, {} timed steps",
        path.display(),
        args.seq,
        args.rank,
        args.dropout,
        args.steps
    );
    let exe = std::env::current_exe().context("finding this program")?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let (methods, precisions) = (&methods, &args.precision);
    let runs = backends.iter().flat_map(|&backend| {
        precisions.iter().flat_map(move |&precision| {
            methods
                .iter()
                .map(move |&method| (backend, precision, method))
        })
    });
    for (backend, precision, method) in runs {
        {
            let watch = DeviceMemoryWatch::start(backend);
            let output = std::process::Command::new(&exe)
                .args(["bench", "train", "--single"])
                .arg("--model")
                .arg(&path)
                .args(["--seq", &args.seq.to_string()])
                .args(["--rank", &args.rank.to_string()])
                .args(["--dropout", &args.dropout.to_string()])
                .args(["--steps", &args.steps.to_string()])
                .args(["--threads", &threads.to_string()])
                .args(["--backend", backend.name()])
                .args(["--method", &method.to_string()])
                .args([
                    "--precision",
                    &trainer::train::Precision::from(precision).to_string(),
                ])
                .output()
                .context("starting a benchmark process")?;
            let peak_device_bytes = watch.and_then(DeviceMemoryWatch::stop);
            let stdout = String::from_utf8_lossy(&output.stdout);
            match serde_json::from_str::<TrainBenchRow>(stdout.lines().last().unwrap_or("")) {
                Ok(row) if output.status.success() => rows.push(TrainBenchRow {
                    peak_device_bytes,
                    ..row
                }),
                _ => notes.push(format!(
                    "{method} on {backend}: failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )),
            }
        }
    }
    // PyTorch + PEFT on the same device: in f32 as we compute, and on a GPU also with the base
    // in bf16, the precision people fine-tune in there.
    let python = args.reference_python.clone().unwrap_or_else(default_python);
    let references: &[(trainer::BackendKind, &str)] =
        if backends.contains(&trainer::BackendKind::Cuda) {
            &[
                (trainer::BackendKind::Cuda, "float32"),
                (trainer::BackendKind::Cuda, "bfloat16"),
            ]
        } else {
            &[(trainer::BackendKind::Cpu, "float32")]
        };
    for &(backend, dtype) in references {
        let watch = DeviceMemoryWatch::start(backend);
        let result = bench_peft(&python, &path, &args, threads, backend, dtype);
        let peak_device_bytes = watch.and_then(DeviceMemoryWatch::stop);
        match result {
            Ok(Some(row)) => rows.push(TrainBenchRow {
                peak_device_bytes,
                ..row
            }),
            Ok(None) => {
                notes.push(format!(
                    "PyTorch + PEFT: not measured, {} has no torch/peft (scripts/reference \
                     installs them)",
                    python.display()
                ));
                break;
            }
            Err(message) => {
                notes.push(format!("PyTorch + PEFT ({dtype}): not measured: {message}"))
            }
        }
    }
    let flops_per_token = trainer::runtime::OpenedModel::open(&path)
        .map(|m| trainer::bench::lora_training_flops_per_token(&m.config, args.seq, args.rank))
        .ok();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_train_table(&rows, flops_per_token, args.peak_tflops);
    }
    for note in notes {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Peak device memory in use while a benchmark process runs, read from outside it with
/// `nvidia-smi` every 50 ms: the same measure for our processes and PyTorch's, CUDA context
/// and allocator caches included, which a process's own counters would each count differently.
struct DeviceMemoryWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
    baseline: u64,
}

impl DeviceMemoryWatch {
    /// Starts watching for a CUDA run; `None` for other backends or without `nvidia-smi`.
    fn start(backend: trainer::BackendKind) -> Option<Self> {
        if backend != trainer::BackendKind::Cuda {
            return None;
        }
        let baseline = nvidia_memory_used()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = baseline;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(nvidia_memory_used().unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        });
        Some(DeviceMemoryWatch {
            stop,
            sampler,
            baseline,
        })
    }

    /// The peak above what was in use when the watch started.
    fn stop(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self.sampler.join().ok()?;
        Some(peak.saturating_sub(self.baseline))
    }
}

/// Device memory in use on the first GPU, in bytes.
fn nvidia_memory_used() -> Option<u64> {
    let output = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib * 1024 * 1024)
}

/// PEFT LoRA training (same sequence, rank and targets) with `python` on `backend` (CPU or
/// CUDA) with the base in `dtype`; `Ok(None)` when `python` lacks the modules.
fn bench_peft(
    python: &Path,
    model: &Path,
    args: &TrainBenchArgs,
    threads: usize,
    backend: trainer::BackendKind,
    dtype: &str,
) -> std::result::Result<Option<TrainBenchRow>, String> {
    let has_modules = std::process::Command::new(python)
        .args(["-c", "import torch, transformers, peft"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !has_modules.status.success() {
        return Ok(None);
    }
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(PEFT_SCRIPT)
        .args(["bench-train", "--model"])
        .arg(model)
        .args(["--seq", &args.seq.to_string()])
        .args(["--rank", &args.rank.to_string()])
        .args(["--dropout", &args.dropout.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--device", backend.name(), "--dtype", dtype])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the PEFT benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("unreadable PEFT benchmark output {line:?}: {e}"))?;
    let number = |key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let precision = if dtype == "bfloat16" { "bf16" } else { "f32" };
    Ok(Some(TrainBenchRow {
        engine: format!("PyTorch + PEFT lora ({precision}, {backend})"),
        tokens_per_s: number("tokens_per_second"),
        forward_share: f64::NAN,
        backward_share: f64::NAN,
        update_share: f64::NAN,
        base_weight_bytes: 0,
        trainable_parameters: number("trainable_parameters") as usize,
        peak_rss_bytes: (number("peak_rss_mib") * 1024.0 * 1024.0) as u64,
        peak_device_bytes: None,
    }))
}

/// The table; with the model FLOPs of a token, also the achieved TFLOP/s and, given the
/// device's peak, the model FLOPs utilisation.
fn print_train_table(rows: &[TrainBenchRow], flops_per_token: Option<f64>, peak: Option<f64>) {
    println!(
        "{:<34} {:>9} {:>12} {:>12} {:>12} {:>22} {:>12} {:>8} {:>6}",
        "engine",
        "tok/s",
        "peak memory",
        "GPU memory",
        "base weights",
        "forward/backward/update",
        "trainable",
        "TFLOP/s",
        "MFU"
    );
    for r in rows {
        let shares = if r.forward_share.is_nan() {
            "-".to_owned()
        } else {
            format!(
                "{:.0}% / {:.0}% / {:.0}%",
                100.0 * r.forward_share,
                100.0 * r.backward_share,
                100.0 * r.update_share
            )
        };
        let tflops = flops_per_token.map(|f| f * r.tokens_per_s / 1e12);
        println!(
            "{:<34} {:>9.1} {:>12} {:>12} {:>12} {:>22} {:>12} {:>8} {:>6}",
            r.engine,
            r.tokens_per_s,
            human_bytes(r.peak_rss_bytes),
            r.peak_device_bytes.map_or("-".into(), human_bytes),
            if r.base_weight_bytes > 0 {
                human_bytes(r.base_weight_bytes)
            } else {
                "-".into()
            },
            shares,
            r.trainable_parameters,
            tflops.map_or("-".into(), |t| format!("{t:.2}")),
            match (tflops, peak) {
                (Some(t), Some(p)) => format!("{:.1}%", 100.0 * t / p),
                _ => "-".into(),
            }
        );
    }
    if let Some(f) = flops_per_token {
        println!(
            "model FLOPs per trained token: {:.3} GFLOP (frozen weights forward and input \
             gradients, attention, LoRA)",
            f / 1e9
        );
    }
}

fn generate(home: &Path, args: GenerateBenchArgs) -> anyhow::Result<ExitCode> {
    let path = model_path(home, &args.model)?;
    let threads = threads_or_all(args.threads);
    let settings = BenchSettings {
        prompt_tokens: args.prompt_tokens,
        generated_tokens: args.tokens,
        threads,
        repeats: args.repeats,
        backend: args.backend.unwrap_or(trainer::BackendKind::Cpu),
    };
    eprintln!(
        "model {}: {} prompt tokens, {} decoded tokens, {threads} threads, best of {}",
        path.display(),
        settings.prompt_tokens,
        settings.generated_tokens,
        settings.repeats
    );
    let mut rows = vec![bench_ours(&path, &settings).context("benchmarking our runtime")?];
    let mut note = None;
    if settings.backend == trainer::BackendKind::Cpu {
        let python = args.reference_python.clone().unwrap_or_else(default_python);
        match bench_llama_cpp(&python, &path, &settings) {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => {
                note = Some(format!(
                    "llama.cpp: not measured, {} has no llama_cpp module (scripts/reference \
                     installs it)",
                    python.display()
                ))
            }
            Err(message) => note = Some(format!("llama.cpp: not measured: {message}")),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[BenchRow]) {
    println!(
        "{:<44} {:>14} {:>14} {:>12}",
        "engine", "prefill tok/s", "decode tok/s", "peak memory"
    );
    for r in rows {
        println!(
            "{:<44} {:>14.1} {:>14.1} {:>12}",
            r.engine,
            r.prefill_tokens_per_s,
            r.decode_tokens_per_s,
            human_bytes(r.peak_rss_bytes)
        );
    }
    if let [ours, reference, ..] = rows {
        println!(
            "{:<44} {:>13.0}% {:>13.0}%",
            "ours / llama.cpp",
            100.0 * ours.prefill_tokens_per_s / reference.prefill_tokens_per_s,
            100.0 * ours.decode_tokens_per_s / reference.decode_tokens_per_s
        );
    }
}

/// A path is used as it is; anything else is a model id of the workspace.
/// `threads`, else every core.
fn threads_or_all(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    })
}

/// The backends asked for, else every usable one compiled in.
fn backends_or_usable(asked: &[trainer::BackendKind]) -> Vec<trainer::BackendKind> {
    if !asked.is_empty() {
        return asked.to_vec();
    }
    trainer::probe_backends()
        .into_iter()
        // Software emulations (wgpu on lavapipe) are a hundred times slower: only on request.
        .filter(|b| b.usable && !b.software)
        .map(|b| b.name)
        .collect()
}

fn model_path(home: &Path, model: &str) -> anyhow::Result<PathBuf> {
    let given = Path::new(model);
    if given.exists() {
        return Ok(given.to_path_buf());
    }
    let studio = Studio::open(home)?;
    Ok(PathBuf::from(studio.find_model(model)?.path))
}

/// `$MODELFACTORY_REFERENCE_PYTHON`, else the environment `scripts/reference` creates.
fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MODELFACTORY_REFERENCE_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("MODELFACTORY_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|c| c.join("modelfactory")))
        .unwrap_or_else(|| PathBuf::from(".cache/modelfactory"));
    cache.join("reference/venv/bin/python")
}
