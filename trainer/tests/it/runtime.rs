//! The model runtime on tiny random models: both file formats agree, generation obeys its
//! limits, and bad files fail with errors that name them.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use trainer::loading::safetensors::Dtype;
use trainer::test_support::{TinyFamily, TinyLlama};
use trainer::{
    BackendKind, ChatMessage, ChatModel, Error, LoadOptions, SamplingParams, StopReason,
};

use crate::temp_dir;

fn cpu() -> LoadOptions {
    LoadOptions {
        backend: Some(BackendKind::Cpu),
        ..LoadOptions::default()
    }
}

fn load(path: &Path) -> ChatModel {
    ChatModel::load(path, &cpu(), &mut |_, _| {}).expect("the tiny model loads")
}

/// A tiny model written both as a Hugging Face folder and, converted, as a GGUF file.
fn tiny_pair(spec: &TinyLlama, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let folder = dir.join("hf");
    spec.write(&folder).expect("write safetensors");
    spec.write_tokenizer(&folder).expect("write tokenizer");
    let gguf = dir.join("tiny.gguf");
    spec.to_gguf().write(&gguf).expect("write gguf");
    (folder, gguf)
}

/// Loading the default tiny folder after `edit` changed its `config.json`: the error.
fn load_with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Error {
    let dir = temp_dir();
    let spec = TinyLlama::default();
    let folder = dir.path().join("hf");
    spec.write(&folder).expect("write");
    spec.write_tokenizer(&folder).expect("tokenizer");
    let mut config = spec.config_json();
    edit(&mut config);
    std::fs::write(folder.join("config.json"), config.to_string()).expect("config");
    ChatModel::load(&folder, &cpu(), &mut |_, _| {})
        .err()
        .expect("the edited configuration is refused")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const PROMPT: [u32; 7] = [0, 5, 9, 2, 33, 17, 60];

#[test]
fn safetensors_and_gguf_give_the_same_logits() {
    for spec in [
        TinyLlama::default(),
        TinyLlama {
            tie_embeddings: false,
            heads: 4,
            kv_heads: 4,
            shards: 2,
            ..TinyLlama::default()
        },
        TinyLlama {
            dtype: Dtype::BF16,
            ..TinyLlama::default()
        },
        TinyLlama {
            family: TinyFamily::Qwen2,
            ..TinyLlama::default()
        },
        TinyLlama {
            family: TinyFamily::Qwen3,
            tie_embeddings: false,
            ..TinyLlama::default()
        },
    ] {
        let dir = temp_dir();
        let (folder, gguf) = tiny_pair(&spec, dir.path());
        let a = load(&folder).logits(&PROMPT).expect("logits");
        let b = load(&gguf).logits(&PROMPT).expect("logits");
        assert_eq!(a.len(), PROMPT.len() * spec.vocab as usize);
        assert!(a.iter().all(|x| x.is_finite()));
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-5, "{spec:?}: logits differ by {diff}");
    }
}

#[test]
fn the_kv_cache_gives_the_same_logits_as_a_full_pass() {
    let dir = temp_dir();
    let (folder, _) = tiny_pair(&TinyLlama::default(), dir.path());
    let model = load(&folder);
    let vocab = model.config().vocab_size;
    let full = model.logits(&PROMPT).expect("full pass");
    // Greedy generation feeds tokens one at a time through the cache; its first token must
    // be the argmax of the full pass's last row.
    let last = &full[(PROMPT.len() - 1) * vocab..];
    let expected = trainer::generate::argmax(last);
    let out = model
        .generate_ids(
            &PROMPT,
            &SamplingParams::greedy(4),
            &AtomicBool::new(false),
            &mut |_| Ok(true),
        )
        .expect("generate");
    assert_eq!(out.tokens[0], expected);
    // Token by token through the cache equals one pass over the whole sequence.
    let mut sequence = PROMPT.to_vec();
    sequence.extend(&out.tokens[..out.tokens.len().min(3)]);
    let whole = model.logits(&sequence).expect("whole");
    let n = sequence.len();
    let last_whole = &whole[(n - 1) * vocab..];
    let expected_next = trainer::generate::argmax(last_whole);
    if out.tokens.len() > 3 {
        assert_eq!(out.tokens[3], expected_next);
    }
}

/// Fed in pieces through the cache, which grows past its first room (64 positions) and on to
/// the end of the context, the logits equal those of one pass over the whole sequence.
#[test]
fn the_kv_cache_grows_without_changing_the_logits() {
    let dir = temp_dir();
    let (folder, _) = tiny_pair(&TinyLlama::default(), dir.path());
    let model = load(&folder);
    let vocab = model.config().vocab_size;
    let n = model.context_length();
    let tokens: Vec<u32> = (0..n).map(|i| (i * 7 % vocab) as u32).collect();
    let full = model.logits(&tokens).expect("full pass");
    let pieces = [1, 62, 1, 1, 7, n - 72];
    assert_eq!(pieces.iter().sum::<usize>(), n);
    let worst = model
        .with_cache(|step| {
            let (mut fed, mut worst) = (0, 0.0f32);
            for len in pieces {
                let last = step(&tokens[fed..fed + len])?;
                fed += len;
                worst = worst.max(max_abs_diff(&last, &full[(fed - 1) * vocab..fed * vocab]));
            }
            Ok(worst)
        })
        .expect("passes through the cache");
    assert!(worst < 1e-4, "the cached logits differ by {worst}");
}

#[test]
fn generation_stops_at_the_limit_and_on_cancel() {
    let dir = temp_dir();
    let (_, gguf) = tiny_pair(&TinyLlama::default(), dir.path());
    let model = load(&gguf);
    let not_stop = |t: u32| !model.tokenizer().is_stop(t);
    let out = model
        .generate_ids(
            &PROMPT,
            &SamplingParams::greedy(5),
            &AtomicBool::new(false),
            &mut |_| Ok(true),
        )
        .expect("generate");
    assert!(out.tokens.len() <= 5);
    if out.tokens.iter().all(|&t| not_stop(t)) {
        assert_eq!(out.stop_reason, StopReason::MaxTokens);
    }
    let cancelled = model
        .generate_ids(
            &PROMPT,
            &SamplingParams::greedy(50),
            &AtomicBool::new(true),
            &mut |_| Ok(true),
        )
        .expect("generate");
    assert_eq!(cancelled.stop_reason, StopReason::Cancelled);
    assert!(cancelled.tokens.is_empty());
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let dir = temp_dir();
    let spec = TinyLlama {
        context: 16,
        ..TinyLlama::default()
    };
    let (folder, _) = tiny_pair(&spec, dir.path());
    let mut model = load(&folder);
    let long = vec![5u32; 40];
    let err = model
        .generate_ids(
            &long,
            &SamplingParams::greedy(1),
            &AtomicBool::new(false),
            &mut |_| Ok(true),
        )
        .expect_err("too long");
    assert!(
        matches!(
            err,
            Error::PromptTooLong {
                tokens: 40,
                limit: 16
            }
        ),
        "{err}"
    );
    let text = "abcdef".repeat(10);
    let err = model
        .chat(
            &[ChatMessage::new("user", text)],
            &SamplingParams::greedy(1),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect_err("too long");
    assert!(
        err.to_string().contains("context window is 16 tokens"),
        "{err}"
    );
}

#[test]
fn chat_streams_text_and_reports_speed() {
    let dir = temp_dir();
    let (_, gguf) = tiny_pair(&TinyLlama::default(), dir.path());
    let mut model = load(&gguf);
    let mut streamed = String::new();
    let stats = model
        .chat(
            &[ChatMessage::new("user", "hello")],
            &SamplingParams::greedy(8),
            &AtomicBool::new(false),
            &mut |piece| streamed.push_str(piece),
        )
        .expect("chat");
    assert!(stats.prompt_tokens > 2);
    assert!(stats.generated_tokens >= 1);
    assert!(stats.prefill_tokens_per_s > 0.0);
    if stats.stop_reason != StopReason::EndOfTurn {
        assert!(!streamed.is_empty(), "no text streamed: {stats:?}");
    }
}

#[test]
fn missing_tokenizer_names_the_file() {
    let dir = temp_dir();
    let folder = dir.path().join("hf");
    TinyLlama::default().write(&folder).expect("write");
    let err = ChatModel::load(&folder, &cpu(), &mut |_, _| {})
        .err()
        .expect("no tokenizer");
    assert!(matches!(err, Error::Tokenizer { .. }), "{err}");
    assert!(err.to_string().ends_with("tokenizer.json"), "{err}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    // Claim a wider MLP than the weights have.
    let err = load_with_config(|config| config["intermediate_size"] = serde_json::json!(48));
    let message = err.to_string();
    assert!(matches!(err, Error::TensorShape { .. }), "{message}");
    assert!(
        message.contains("model.layers.0.mlp.gate_proj.weight"),
        "{message}"
    );
    assert!(
        message.contains("[32, 16]") && message.contains("[48, 16]"),
        "{message}"
    );
}

#[test]
fn an_unknown_architecture_is_named() {
    let err = load_with_config(|config| {
        config["model_type"] = serde_json::json!("gpt_neox");
        config["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
    });
    assert!(
        err.to_string()
            .contains("unsupported architecture \"gpt_neox\""),
        "{err}"
    );
}

#[test]
fn a_truncated_gguf_is_an_error_not_a_panic() {
    let dir = temp_dir();
    let (_, gguf) = tiny_pair(&TinyLlama::default(), dir.path());
    let bytes = std::fs::read(&gguf).expect("read");
    for cut in [bytes.len() - 1, bytes.len() / 2, bytes.len() / 5, 30] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let err = ChatModel::load(&path, &cpu(), &mut |_, _| {})
            .err()
            .expect("truncated");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "cut at {cut}: {err}"
        );
    }
}

/// The GPU code path (dense f32 weights multiplied by burn) against the CPU one (our block
/// kernels) on one prompt. Runs with `--features wgpu`; on a machine without a GPU, wgpu runs
/// on Mesa's lavapipe software Vulkan driver.
#[cfg(feature = "wgpu")]
#[test]
fn cpu_and_wgpu_give_the_same_logits() {
    let status = trainer::backends::probe_backend(
        BackendKind::Wgpu,
        trainer::backends::DEFAULT_PROBE_TIMEOUT,
    );
    assert!(
        status.usable,
        "wgpu is compiled in but not usable here ({}); install a Vulkan driver \
         (Debian: mesa-vulkan-drivers)",
        status.detail
    );
    let dir = temp_dir();
    let spec = TinyLlama {
        hidden: 32,
        intermediate: 64,
        ..TinyLlama::default()
    };
    let (folder, gguf) = tiny_pair(&spec, dir.path());
    let wgpu = LoadOptions {
        backend: Some(BackendKind::Wgpu),
        ..LoadOptions::default()
    };
    for path in [&folder, &gguf] {
        let on_cpu = load(path).logits(&PROMPT).expect("cpu logits");
        let on_wgpu = ChatModel::load(path, &wgpu, &mut |_, _| {})
            .expect("loads on wgpu")
            .logits(&PROMPT)
            .expect("wgpu logits");
        let diff = max_abs_diff(&on_cpu, &on_wgpu);
        assert!(
            diff < 1e-4,
            "{}: cpu and wgpu differ by {diff}",
            path.display()
        );
    }
}

/// Both CPU paths, block kernels and dense burn matmuls, on F32 weights: the kernels do not
/// round F32 inputs, so they must agree to float precision.
#[test]
fn dense_and_block_kernel_paths_agree() {
    let dir = temp_dir();
    let (folder, _) = tiny_pair(&TinyLlama::default(), dir.path());
    let dense = LoadOptions {
        backend: Some(BackendKind::Cpu),
        dense_weights: true,
    };
    let a = load(&folder).logits(&PROMPT).expect("kernels");
    let b = ChatModel::load(&folder, &dense, &mut |_, _| {})
        .expect("dense")
        .logits(&PROMPT)
        .expect("dense logits");
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "the two CPU paths differ by {diff}");
}

/// Found by fuzzing: a corrupt header that claims an enormous width must be refused before
/// it sizes an allocation.
#[test]
fn absurd_sizes_in_the_configuration_are_refused() {
    let err = load_with_config(|config| config["hidden_size"] = serde_json::json!(1u64 << 40));
    assert!(
        err.to_string().contains("hidden_size = 1099511627776"),
        "{err}"
    );
}
