//! `modelfactory train` and `modelfactory runs`. Training runs on this thread as a job of the
//! workspace, so the run shows in the studio's Runs list while it trains, and prints one line
//! per event that a script can split on spaces and `=`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;
use studio::{NewRun, Preset, RunState, Studio};
use trainer::lora::{Adapter, MergedDtype, Target, merge_adapter};
use trainer::train::{TrainConfig, TrainEvent};

use super::args::{PresetArg, RunsCommand, TrainArgs, TrainKnobs};
use super::human_bytes;

/// A run file: what `--config` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    model: Option<String>,
    data: Option<PathBuf>,
    name: Option<String>,
    preset: Option<Preset>,
    #[serde(default)]
    config: Option<toml::Value>,
}

pub fn run(home: &Path, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    let run_id = match &args.resume {
        Some(id) => {
            let run = studio.get_run(id)?.run;
            if run.state == RunState::Finished {
                anyhow::bail!(
                    "run {} has finished; start a new run to train more",
                    run.name
                );
            }
            run.id
        }
        None => studio.create_run(&new_run(&args)?)?.id,
    };
    let detail = studio.get_run(&run_id)?;
    println!(
        "run id={} name={}",
        detail.run.id,
        detail.run.name.replace(' ', "_")
    );
    let json = args.json;
    let title = format!("Fine-tune {}", detail.run.name);
    let mut failure: Option<studio::Error> = None;
    studio.jobs().run("train", &title, |ctx| {
        studio.attach_run_job(&run_id, ctx.id())?;
        match studio.train_run(&run_id, ctx, &mut |event| print_event(event, json)) {
            Err(e) if !matches!(e, studio::Error::Cancelled) => {
                // The job records a copy; the original, with its hint, is reported below.
                let copy = studio::Error::JobFailed {
                    job: "train".into(),
                    message: e.to_string(),
                    hint: e.hint(),
                    kind: e.kind(),
                };
                failure = Some(e);
                Err(copy)
            }
            other => other,
        }
    })?;
    let run = studio.get_run(&run_id)?.run;
    println!(
        "done state={} steps={} adapter={}",
        serde_json::to_value(run.state)?.as_str().unwrap_or("?"),
        run.step,
        run.adapter.as_deref().unwrap_or("-")
    );
    std::io::stdout().flush().ok();
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(anyhow::Error::from(e))
            .with_context(|| format!("run {} stopped at step {}", run.name, run.step)),
    }
}

/// The run the flags and the run file describe: the preset, then the file's `[config]`, then
/// the flags.
fn new_run(args: &TrainArgs) -> anyhow::Result<NewRun> {
    let file: RunFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the run file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("reading the run file {}", path.display()))?
        }
        None => RunFile::default(),
    };
    let preset = args
        .preset
        .map(Preset::from)
        .or(file.preset)
        .unwrap_or(Preset::from(PresetArg::Balanced));
    let mut config = preset.config();
    if let Some(table) = file.config {
        // The file's settings over the preset's: merge as JSON objects.
        let mut merged = serde_json::to_value(&config)?;
        let over = serde_json::to_value(table)?;
        merge_json(&mut merged, over);
        config = serde_json::from_value(merged).context("reading [config] of the run file")?;
    }
    apply_knobs(&mut config, &args.knobs)?;
    let model = args
        .model
        .clone()
        .or(file.model)
        .unwrap_or_else(|| "smollm2-135m-instruct".into());
    let data = args
        .data
        .clone()
        .or(file.data)
        .context("no dataset: give --data FILE (or `data` in the run file)")?;
    Ok(NewRun {
        name: args.name.clone().or(file.name),
        model_id: model,
        dataset: data.display().to_string(),
        config,
    })
}

fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (k, v) in over {
                merge_json(base.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (base, over) => *base = over,
    }
}

fn apply_knobs(c: &mut TrainConfig, k: &TrainKnobs) -> anyhow::Result<()> {
    if let Some(m) = k.method {
        c.method = m.into();
    }
    if let Some(r) = k.rank {
        c.lora.rank = r;
    }
    if let Some(a) = k.alpha {
        c.lora.alpha = a;
    }
    if let Some(d) = k.dropout {
        c.lora.dropout = d;
    }
    if k.rslora {
        c.lora.rslora = true;
    }
    if !k.targets.is_empty() {
        c.lora.targets = k
            .targets
            .iter()
            .map(|t| {
                Target::from_name(t).with_context(|| {
                    format!("unknown target {t:?}: choose among q, k, v, o, gate, up, down")
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    let set = |slot: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut c.learning_rate, k.learning_rate);
    set(&mut c.weight_decay, k.weight_decay);
    set(&mut c.max_grad_norm, k.max_grad_norm);
    set(&mut c.eval_fraction, k.eval_fraction);
    set(&mut c.epochs, k.epochs);
    if let Some(s) = k.schedule {
        c.schedule = s.into();
    }
    let set = |slot: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut c.warmup_steps, k.warmup_steps);
    set(&mut c.batch_size, k.batch_size);
    set(&mut c.grad_accum, k.grad_accum);
    set(&mut c.max_length, k.max_length);
    set(&mut c.eval_every, k.eval_every);
    set(&mut c.checkpoint_every, k.checkpoint_every);
    if k.max_steps.is_some() {
        c.max_steps = k.max_steps;
    }
    if let Some(s) = k.seed {
        c.seed = s;
    }
    if k.packing {
        c.packing = true;
    }
    if k.gradient_checkpointing {
        c.gradient_checkpointing = true;
    }
    if k.backend.is_some() {
        c.backend = k.backend;
    }
    if let Some(p) = k.precision {
        c.precision = p.into();
    }
    Ok(())
}

fn print_event(event: &TrainEvent, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
        return;
    }
    match event {
        TrainEvent::Started {
            total_steps,
            start_step,
            trainable_parameters,
            base_weight_bytes,
            backend,
            method,
        } => println!(
            "started method={method} backend={backend} steps={total_steps} start_step={start_step} \
             trainable_parameters={trainable_parameters} base_weight_bytes={base_weight_bytes}"
        ),
        TrainEvent::Step(s) => println!(
            "step={} loss={:.4} lr={:.3e} grad_norm={:.3} tokens_per_s={:.1} eta_s={:.0} memory={}",
            s.step,
            s.loss,
            s.learning_rate,
            s.grad_norm,
            s.tokens_per_s,
            s.eta_s,
            human_bytes(s.peak_memory_bytes).replace(' ', "")
        ),
        TrainEvent::Eval(e) => println!(
            "eval step={} loss={:.4} perplexity={:.2}",
            e.step, e.loss, e.perplexity
        ),
        TrainEvent::Checkpoint { step, path } => {
            println!("checkpoint step={step} path={}", path.display())
        }
    }
    std::io::stdout().flush().ok();
}

pub fn runs(home: &Path, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        RunsCommand::List { json } => {
            let runs = studio.list_runs()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<34} {:<24} {:<6} {:<12} {:>11} {:>9} {:>9}",
                "id", "name", "method", "state", "step", "loss", "eval"
            );
            for r in runs {
                let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
                println!(
                    "{:<34} {:<24} {:<6} {:<12} {:>11} {:>9} {:>9}",
                    r.id,
                    r.name,
                    r.method.to_string(),
                    serde_json::to_value(r.state)?.as_str().unwrap_or("?"),
                    format!(
                        "{}/{}",
                        r.step,
                        r.total_steps.map_or("?".into(), |t| t.to_string())
                    ),
                    fmt(r.last_loss),
                    fmt(r.last_eval_loss)
                );
            }
        }
        RunsCommand::Show { id, json } => {
            let detail = studio.get_run(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
                return Ok(ExitCode::SUCCESS);
            }
            let r = &detail.run;
            println!("run        {} ({})", r.name, r.id);
            println!("model      {}", r.model_id);
            println!("dataset    {}", r.dataset);
            println!(
                "state      {} at step {}",
                serde_json::to_value(r.state)?.as_str().unwrap_or("?"),
                r.step
            );
            if let Some(a) = &r.adapter {
                println!("adapter    {a}");
            }
            if let Some(e) = &r.error {
                println!("error      {e}");
            }
            if let Some(d) = &detail.data {
                println!(
                    "data       {}: {} of {} rows kept, {} train / {} eval examples, {} trained tokens",
                    d.format,
                    d.rows_kept,
                    d.rows_read,
                    d.train_examples,
                    d.eval_examples,
                    d.trained_tokens
                );
            }
            for e in &detail.evals {
                println!(
                    "eval       step {:>5}  loss {:.4}  perplexity {:.2}",
                    e.step, e.loss, e.perplexity
                );
            }
            println!("command    {}", detail.command);
        }
        RunsCommand::Merge { id, out, bf16 } => {
            let detail = studio.get_run(&id)?;
            let adapter_dir = studio.run_adapter(&id)?;
            let adapter = Adapter::load_peft(&adapter_dir)?;
            let model = studio.find_model(&detail.run.model_id)?;
            let dtype = if bf16 {
                MergedDtype::Bf16
            } else {
                MergedDtype::F32
            };
            merge_adapter(
                Path::new(&model.path),
                &adapter,
                &adapter_dir,
                &out,
                dtype,
                &mut |f| eprint!("\rmerging {:>3.0}%", f * 100.0),
            )?;
            eprintln!();
            println!("merged into {}", out.display());
        }
        RunsCommand::Delete { id } => {
            studio.delete_run(&id)?;
            println!("deleted run {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
