//! The training loop on tiny random models: it learns, it repeats for a seed, a run killed
//! half-way resumes to the same adapter, Cancel keeps the best checkpoint, and bad input
//! fails with errors that say what to do.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use trainer::loading::safetensors::Dtype;
use trainer::lora::{Adapter, LoraConfig};
use trainer::test_support::TinyLlama;
use trainer::train::{
    Method, Outcome, RESULT_ADAPTER, Schedule, Sequence, TrainConfig, TrainEvent, TrainJob,
    TrainResult, train,
};
use trainer::{BackendKind, Error};

use crate::temp_dir;

fn model(dir: &Path) -> PathBuf {
    let spec = TinyLlama {
        dtype: Dtype::F32,
        hidden: 32,
        intermediate: 64,
        ..TinyLlama::default()
    };
    let folder = dir.join("model");
    spec.write(&folder).expect("write the tiny model");
    spec.write_tokenizer(&folder).expect("write its tokenizer");
    folder
}

/// Four fixed "conversations": a prompt part that is not trained and an answer that is.
fn sequences() -> Vec<Sequence> {
    (0..4u32)
        .map(|k| {
            let tokens: Vec<u32> = (0..12).map(|i| (k * 13 + i * 7 + 3) % 60 + 2).collect();
            let trained = (0..12).map(|i| i >= 5).collect();
            Sequence { tokens, trained }
        })
        .collect()
}

fn config() -> TrainConfig {
    TrainConfig {
        method: Method::Lora,
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            ..LoraConfig::default()
        },
        learning_rate: 1e-2,
        weight_decay: 0.0,
        schedule: Schedule::Constant,
        warmup_steps: 0,
        max_steps: Some(40),
        batch_size: 2,
        grad_accum: 1,
        eval_every: 10,
        checkpoint_every: 10,
        backend: Some(BackendKind::Cpu),
        ..TrainConfig::default()
    }
}

fn run(
    model: &Path,
    run_dir: &Path,
    config: TrainConfig,
    data: &[Sequence],
    cancel_at: Option<usize>,
) -> trainer::Result<(TrainResult, Vec<TrainEvent>)> {
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let job = TrainJob {
        model,
        config,
        train: data,
        eval: &data[..2],
        run_dir,
        base_model_name: "tiny".into(),
    };
    let result = train(&job, &cancel, &mut |e| {
        if let (Some(at), TrainEvent::Step(s)) = (cancel_at, &e)
            && s.step == at
        {
            cancel.store(true, Ordering::Relaxed);
        }
        events.push(e);
    })?;
    Ok((result, events))
}

#[test]
fn a_tiny_model_learns_its_training_set() {
    for method in [Method::Lora, Method::Qlora] {
        let dir = temp_dir();
        let model = model(dir.path());
        let data = sequences();
        let config = TrainConfig { method, ..config() };
        let (result, events) =
            run(&model, &dir.path().join("run"), config, &data, None).expect("training runs");
        assert_eq!(result.outcome, Outcome::Finished);
        assert_eq!(result.steps, 40);
        let first = result.history.first().expect("steps").loss;
        let last = result.history.last().expect("steps").loss;
        // Random tokens over a 64-token vocabulary start near ln 64 ≈ 4.2.
        assert!(first > 3.0, "{method}: first loss {first}");
        assert!(
            last < 1.0,
            "{method}: the loss only fell from {first} to {last}"
        );
        assert!(
            matches!(
                events.first(),
                Some(TrainEvent::Started {
                    total_steps: 40,
                    ..
                })
            ),
            "{events:?}"
        );
        // Before the first step, then every 10 steps.
        assert_eq!(
            result.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
            [0, 10, 20, 30, 40]
        );
        assert!(result.evals[4].loss < result.evals[0].loss);
        let adapter = Adapter::load_peft(&dir.path().join("run").join(RESULT_ADAPTER))
            .expect("the result adapter loads");
        assert_eq!(adapter.config.rank, 8);
    }
}

#[test]
fn the_same_seed_gives_the_same_adapter() {
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();
    let config = TrainConfig {
        max_steps: Some(4),
        lora: LoraConfig {
            dropout: 0.1,
            ..config().lora
        },
        ..config()
    };
    let (a, _) = run(&model, &dir.path().join("a"), config.clone(), &data, None).expect("a");
    let (b, _) = run(&model, &dir.path().join("b"), config.clone(), &data, None).expect("b");
    let (c, _) = run(
        &model,
        &dir.path().join("c"),
        TrainConfig { seed: 7, ..config },
        &data,
        None,
    )
    .expect("c");
    let load =
        |r: &TrainResult| Adapter::load_peft(r.adapter.as_ref().expect("adapter")).expect("load");
    assert_eq!(load(&a), load(&b));
    assert_ne!(load(&a), load(&c));
    assert_eq!(
        a.history.iter().map(|s| s.loss).collect::<Vec<_>>(),
        b.history.iter().map(|s| s.loss).collect::<Vec<_>>()
    );
}

#[test]
fn gradient_checkpointing_changes_memory_not_the_result() {
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();
    let config = TrainConfig {
        max_steps: Some(3),
        ..config()
    };
    let (plain, _) = run(
        &model,
        &dir.path().join("plain"),
        config.clone(),
        &data,
        None,
    )
    .expect("plain");
    let (recomputed, _) = run(
        &model,
        &dir.path().join("checkpointed"),
        TrainConfig {
            gradient_checkpointing: true,
            ..config
        },
        &data,
        None,
    )
    .expect("with gradient checkpointing");
    for (a, b) in plain.history.iter().zip(&recomputed.history) {
        assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
    }
    let load =
        |r: &TrainResult| Adapter::load_peft(r.adapter.as_ref().expect("adapter")).expect("load");
    let (a, b) = (load(&plain), load(&recomputed));
    let diff = a
        .pairs()
        .zip(b.pairs())
        .flat_map(|((_, _, x), (_, _, y))| x.b.iter().zip(&y.b).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "adapters differ by {diff}");
}

#[test]
fn a_cancelled_run_resumes_to_the_same_adapter() {
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();
    let config = TrainConfig {
        max_steps: Some(8),
        checkpoint_every: 2,
        eval_every: 0,
        keep_checkpoints: 1,
        ..config()
    };
    let (straight, _) = run(
        &model,
        &dir.path().join("straight"),
        config.clone(),
        &data,
        None,
    )
    .expect("straight");

    let resumed_dir = dir.path().join("resumed");
    let (first, _) = run(&model, &resumed_dir, config.clone(), &data, Some(4)).expect("first part");
    assert_eq!(first.outcome, Outcome::Cancelled);
    assert_eq!(first.steps, 4);
    let (second, events) = run(&model, &resumed_dir, config, &data, None).expect("second part");
    assert!(
        matches!(
            events.first(),
            Some(TrainEvent::Started { start_step: 4, .. })
        ),
        "{events:?}"
    );
    assert_eq!(second.outcome, Outcome::Finished);
    assert_eq!(second.history.len(), 8, "the curve survives the restart");
    let load =
        |r: &TrainResult| Adapter::load_peft(r.adapter.as_ref().expect("adapter")).expect("load");
    let (a, b) = (load(&straight), load(&second));
    let diff = a
        .pairs()
        .zip(b.pairs())
        .flat_map(|((_, _, x), (_, _, y))| {
            x.a.iter()
                .zip(&y.a)
                .chain(x.b.iter().zip(&y.b))
                .map(|(p, q)| (p - q).abs())
        })
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-6, "resumed run differs by {diff}");
    // Only the newest checkpoint is kept.
    let kept = std::fs::read_dir(resumed_dir.join("checkpoints"))
        .expect("checkpoints")
        .count();
    assert_eq!(kept, 1);
}

#[test]
fn cancel_keeps_the_best_checkpoint_as_the_result() {
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();
    let (result, events) = run(
        &model,
        &dir.path().join("run"),
        TrainConfig {
            max_steps: Some(40),
            eval_every: 5,
            checkpoint_every: 5,
            ..config()
        },
        &data,
        Some(12),
    )
    .expect("run");
    assert_eq!(result.outcome, Outcome::Cancelled);
    // The best checkpoint among those written (none is written before the first step).
    let best = result
        .evals
        .iter()
        .filter(|e| e.step > 0)
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .expect("evals");
    assert_eq!(result.adapter_step, Some(best.step));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Checkpoint { step: 10, .. }))
    );
}

#[test]
fn bad_input_fails_clearly_and_keeps_what_was_saved() {
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();

    // Nothing to learn.
    let untrained: Vec<Sequence> = data
        .iter()
        .map(|s| Sequence {
            tokens: s.tokens.clone(),
            trained: vec![false; s.tokens.len()],
        })
        .collect();
    let err = run(&model, &dir.path().join("none"), config(), &untrained, None)
        .expect_err("no trained tokens");
    assert!(matches!(err, Error::Training { .. }), "{err}");
    assert!(err.to_string().contains("no trained tokens"), "{err}");

    // A setting out of range.
    let err = run(
        &model,
        &dir.path().join("lr"),
        TrainConfig {
            learning_rate: 5.0,
            ..config()
        },
        &data,
        None,
    )
    .expect_err("bad learning rate");
    assert!(err.to_string().contains("learning rate"), "{err}");

    // A damaged newest checkpoint: the run resumes from the one before it.
    let run_dir = dir.path().join("damaged");
    let config = TrainConfig {
        max_steps: Some(6),
        checkpoint_every: 2,
        keep_checkpoints: 3,
        eval_every: 0,
        ..config()
    };
    run(&model, &run_dir, config.clone(), &data, Some(4)).expect("first part");
    let newest = run_dir.join("checkpoints").join("step-000004");
    std::fs::write(newest.join("state.json"), b"{ not json").expect("damage");
    let (_, events) = run(&model, &run_dir, config.clone(), &data, None).expect("resumes");
    assert!(
        matches!(
            events.first(),
            Some(TrainEvent::Started { start_step: 2, .. })
        ),
        "{events:?}"
    );

    // Every checkpoint damaged: a clear error, and the files are left for the user.
    for entry in std::fs::read_dir(run_dir.join("checkpoints")).expect("list") {
        let path = entry.expect("entry").path();
        std::fs::write(path.join("state.json"), b"").expect("damage");
    }
    let err = run(&model, &run_dir, config, &data, None).expect_err("nothing readable");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(
        err.to_string().contains("delete the checkpoints folder"),
        "{err}"
    );
    assert!(run_dir.join("checkpoints").join("step-000006").exists());
}

/// The same steps on wgpu as on the CPU: the autodiff graph, the LoRA terms and the optimiser
/// run on the GPU backend (Mesa's software Vulkan where there is no GPU), and QLoRA's NF4
/// weights are dequantised there, against the CPU's host kernels.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_trains_like_the_cpu() {
    let usable = trainer::probe_backends()
        .into_iter()
        .any(|b| b.name == BackendKind::Wgpu && b.usable);
    assert!(
        usable,
        "wgpu is compiled in but not usable here; install a Vulkan driver (Debian: \
         mesa-vulkan-drivers) or run without --features wgpu"
    );
    let dir = temp_dir();
    let model = model(dir.path());
    let data = sequences();
    for method in [Method::Lora, Method::Qlora] {
        let config = TrainConfig {
            method,
            max_steps: Some(3),
            ..config()
        };
        let (cpu, _) = run(
            &model,
            &dir.path().join(format!("cpu-{method}")),
            config.clone(),
            &data,
            None,
        )
        .expect("cpu");
        let (gpu, events) = run(
            &model,
            &dir.path().join(format!("wgpu-{method}")),
            TrainConfig {
                backend: Some(BackendKind::Wgpu),
                ..config
            },
            &data,
            None,
        )
        .expect("wgpu");
        assert!(
            matches!(
                events.first(),
                Some(TrainEvent::Started {
                    backend: BackendKind::Wgpu,
                    ..
                })
            ),
            "{events:?}"
        );
        for (a, b) in cpu.history.iter().zip(&gpu.history) {
            assert!(
                (a.loss - b.loss).abs() < 1e-3,
                "{method}: cpu {} vs wgpu {}",
                a.loss,
                b.loss
            );
        }
    }
}
