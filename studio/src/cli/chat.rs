//! `modelfactory chat`: one answer streamed to stdout with `--prompt`, else a conversation in
//! the terminal. The conversation stays in memory; the studio's Chat screen keeps its own in
//! the workspace.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use studio::chat::{backend_of, load_model, validate_sampling};
use studio::{SamplingParams, StopReason, Studio};
use trainer::lora::Adapter;
use trainer::{BackendKind, ChatMessage, ChatModel, GenerationStats};

use super::args::ChatArgs;

pub fn run(home: &Path, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let sampling = sampling_of(&args);
    validate_sampling(&sampling)?;
    let (label, path, backend) = resolve(home, &args)?;

    let started = Instant::now();
    let mut progress = |_: f32, _: &str| {};
    let mut model = load_model(&label, &path, backend, &mut progress)?;
    let adapter = match &args.adapter {
        Some(given) => {
            let dir = adapter_dir(home, given)?;
            let adapter = Adapter::load_peft(&dir).map_err(studio::Error::Model)?;
            model
                .set_adapter(Some((&adapter, args.adapter_scale)), &dir)
                .map_err(studio::Error::Model)?;
            format!(" with the adapter {}", dir.display())
        }
        None => String::new(),
    };
    eprintln!(
        "[{label}{adapter} on {}, loaded in {:.1} s]",
        model.backend().name(),
        started.elapsed().as_secs_f64()
    );

    let mut history: Vec<ChatMessage> = args
        .system
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| ChatMessage::new("system", s.clone()))
        .collect();

    if let Some(prompt) = &args.prompt {
        let prompt = if prompt == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the prompt from standard input")?;
            text
        } else {
            prompt.clone()
        };
        if prompt.trim().is_empty() {
            return Err(studio::Error::InvalidInput {
                field: "--prompt".into(),
                message: "the prompt is empty".into(),
            }
            .into());
        }
        history.push(ChatMessage::new("user", prompt.trim()));
        let cancel = AtomicBool::new(false);
        answer(&mut model, &history, &sampling, &cancel)?;
        return Ok(ExitCode::SUCCESS);
    }
    repl(&mut model, history, &sampling)?;
    Ok(ExitCode::SUCCESS)
}

/// An adapter folder as given, or the adapter of the run with that id.
fn adapter_dir(home: &Path, given: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(given);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    Ok(Studio::open(home)?.run_adapter(given)?)
}

/// The sampling settings the flags ask for, the defaults for the rest.
fn sampling_of(args: &ChatArgs) -> SamplingParams {
    let d = SamplingParams::default();
    SamplingParams {
        temperature: args.temperature.unwrap_or(d.temperature),
        top_k: args.top_k.unwrap_or(d.top_k),
        top_p: args.top_p.unwrap_or(d.top_p),
        repetition_penalty: args.repeat_penalty.unwrap_or(d.repetition_penalty),
        seed: args.seed.or(d.seed),
        max_new_tokens: args.max_tokens.unwrap_or(d.max_new_tokens),
    }
}

/// A path is loaded as it is; anything else is a model id of the workspace. The backend is
/// `--backend`, else the workspace's setting.
fn resolve(home: &Path, args: &ChatArgs) -> anyhow::Result<(String, PathBuf, Option<BackendKind>)> {
    let given = Path::new(&args.model);
    if given.exists() {
        let label = given
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.model.clone());
        let backend = match args.backend {
            Some(b) => Some(b),
            // The workspace only matters for its backend setting here; do without it.
            None => Studio::open(home)
                .and_then(|s| s.settings())
                .map(|s| backend_of(s.default_backend))
                .unwrap_or(None),
        };
        return Ok((label, given.to_path_buf(), backend));
    }
    let studio = Studio::open(home)?;
    let model = studio.find_model(&args.model)?;
    let backend = match args.backend {
        Some(b) => Some(b),
        None => backend_of(studio.settings()?.default_backend),
    };
    Ok((model.id, PathBuf::from(model.path), backend))
}

/// Streams one answer to stdout, then its figures to stderr. Returns the answer's text.
fn answer(
    model: &mut ChatModel,
    history: &[ChatMessage],
    sampling: &SamplingParams,
    cancel: &AtomicBool,
) -> anyhow::Result<String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut text = String::new();
    let mut write_failed = None;
    let started = Instant::now();
    let result = model.chat(history, sampling, cancel, &mut |piece: &str| {
        text.push_str(piece);
        if write_failed.is_none()
            && let Err(e) = out.write_all(piece.as_bytes()).and_then(|()| out.flush())
        {
            // stdout closed (a pipe into `head`): stop generating for no reader.
            write_failed = Some(e);
            cancel.store(true, Ordering::SeqCst);
        }
    });
    let stats = result.map_err(studio::Error::Generation)?;
    if let Some(e) = write_failed {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(text);
        }
        return Err(e).context("writing the answer to standard output");
    }
    if !text.ends_with('\n') {
        let _ = writeln!(out);
    }
    let _ = out.flush();
    eprintln!("[{}]", describe(&stats, started.elapsed().as_secs_f64()));
    Ok(text)
}

/// "24 tokens, 41.3 tokens/s (prompt: 31 tokens at 420 tokens/s), 0.9 s, end of turn"
fn describe(s: &GenerationStats, seconds: f64) -> String {
    let why = match s.stop_reason {
        StopReason::EndOfTurn => "end of turn",
        StopReason::MaxTokens => "reached --max-tokens",
        StopReason::ContextFull => "the context window is full",
        StopReason::Cancelled => "stopped",
    };
    format!(
        "{} tokens, {:.1} tokens/s (prompt: {} tokens at {:.0} tokens/s), {:.1} s, {why}",
        s.generated_tokens, s.decode_tokens_per_s, s.prompt_tokens, s.prefill_tokens_per_s, seconds
    )
}

const REPL_HELP: &str = "Type a message and press Enter. Ctrl-C stops an answer; /reset starts \
                         over, /exit (or Ctrl-D) leaves.";

/// A conversation on the terminal, kept in memory.
fn repl(
    model: &mut ChatModel,
    mut history: Vec<ChatMessage>,
    sampling: &SamplingParams,
) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let generating = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    if interactive {
        watch_ctrl_c(generating.clone(), cancel.clone());
        eprintln!("{REPL_HELP}");
    }
    let system: Vec<ChatMessage> = history
        .iter()
        .filter(|m| m.role == "system")
        .cloned()
        .collect();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("> ");
            let _ = std::io::stdout().flush();
        }
        let Some(line) = lines.next() else {
            if interactive {
                println!();
            }
            return Ok(());
        };
        let line = line.context("reading standard input")?;
        let message = line.trim();
        match message {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history = system.clone();
                eprintln!("[the conversation starts over]");
                continue;
            }
            "/help" | "/?" => {
                eprintln!("{REPL_HELP}");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", message));
        cancel.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let answered = answer(model, &history, sampling, &cancel);
        generating.store(false, Ordering::SeqCst);
        match answered {
            Ok(text) => history.push(ChatMessage::new("assistant", text)),
            Err(e) => {
                // The question stays unanswered; the conversation goes on without it.
                history.pop();
                let hint = e
                    .downcast_ref::<studio::Error>()
                    .and_then(studio::Error::hint)
                    .map(|h| format!("\nhint: {h}"))
                    .unwrap_or_default();
                eprintln!("error: {e:#}{hint}");
            }
        }
    }
}

/// Ctrl-C stops the answer being generated; at the prompt it leaves.
fn watch_ctrl_c(generating: Arc<AtomicBool>, cancel: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("Ctrl-C will end the program, not just the answer: {e}");
                    return;
                }
            };
            runtime.block_on(async {
                while tokio::signal::ctrl_c().await.is_ok() {
                    if generating.load(Ordering::SeqCst) {
                        cancel.store(true, Ordering::SeqCst);
                    } else {
                        println!();
                        std::process::exit(130);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("Ctrl-C will end the program, not just the answer: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> ChatArgs {
        let cli =
            super::super::args::Cli::parse_from(["modelfactory", "chat"].iter().chain(args.iter()));
        match cli.command {
            super::super::args::Command::Chat(a) => a,
            _ => panic!("not the chat command"),
        }
    }

    #[test]
    fn flags_left_out_take_the_runtime_defaults_named_in_the_help() {
        let d = SamplingParams::default();
        assert_eq!(sampling_of(&parse(&["--model", "m"])), d);
        // The help text spells these out; keep it in step with the runtime.
        assert_eq!(
            (
                d.temperature,
                d.top_k,
                d.top_p,
                d.repetition_penalty,
                d.max_new_tokens
            ),
            (0.7, 40, 0.9, 1.1, 512)
        );
        let s = sampling_of(&parse(&[
            "--model",
            "m",
            "--temperature",
            "0",
            "--top-k",
            "5",
            "--top-p",
            "0.5",
            "--repeat-penalty",
            "1.3",
            "--seed",
            "7",
            "--max-tokens",
            "9",
            "--backend",
            "cpu",
        ]));
        assert_eq!(
            s,
            SamplingParams {
                temperature: 0.0,
                top_k: 5,
                top_p: 0.5,
                repetition_penalty: 1.3,
                seed: Some(7),
                max_new_tokens: 9,
            }
        );
    }
}
