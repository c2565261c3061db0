//! `modelfactory bench generate`: prompt-processing and decode speed of our runtime next to
//! llama.cpp's on the same GGUF file and thread count, in one run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use studio::Studio;
use trainer::bench::{BenchRow, BenchSettings, bench_llama_cpp, bench_ours};

use super::args::{BenchCommand, GenerateBenchArgs};
use super::human_bytes;

pub fn run(home: &Path, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Generate(args) => generate(home, args),
    }
}

fn generate(home: &Path, args: GenerateBenchArgs) -> anyhow::Result<ExitCode> {
    let path = model_path(home, &args.model)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
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
