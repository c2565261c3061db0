//! A `tokenizers::Tokenizer` built from a GGUF file's own vocabulary.
//!
//! The file carries the tokens, their types, the BPE merges (byte-level vocabularies) or the
//! scores (SentencePiece vocabularies), and the name of the pre-tokenizer llama.cpp uses. We
//! write the equivalent `tokenizer.json` document and let `tokenizers` parse it, so the result
//! is the same kind of object as a Hugging Face tokenizer and behaves like one.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::loading::gguf::GgufFile;

/// llama.cpp's token types (`enum llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama 3's pre-tokenizer regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: like Llama 3 but one digit per piece.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds the tokenizer of a GGUF file.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<tokenizers::Tokenizer> {
    let fail = |message: String| Error::Tokenizer {
        message,
        path: file.path().to_path_buf(),
    };
    let model = file
        .opt_str("tokenizer.ggml.model")?
        .ok_or_else(|| fail("the file has no `tokenizer.ggml.model`".into()))?;
    let tokens = file.str_array("tokenizer.ggml.tokens")?;
    let types = match file.opt_array("tokenizer.ggml.token_type")? {
        Some(_) => file.i32_array("tokenizer.ggml.token_type")?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(fail(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let doc = match model {
        "gpt2" => {
            let merges = file.str_array("tokenizer.ggml.merges")?;
            let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
            byte_level_document(&tokens, &types, &merges, pre)
        }
        "llama" => {
            let scores = match file.opt_array("tokenizer.ggml.scores")? {
                Some(_) => file.f32_array("tokenizer.ggml.scores")?,
                None => (0..tokens.len()).map(|i| -(i as f32)).collect(),
            };
            let add_space_prefix = file
                .opt_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let unk = file.opt_u32("tokenizer.ggml.unknown_token_id")?;
            sentencepiece_document(&tokens, &types, &scores, add_space_prefix, unk)
        }
        other => {
            return Err(fail(format!(
                "tokenizer model \"{other}\" is not supported (supported: gpt2, llama)"
            )));
        }
    };
    let text = serde_json::to_vec(&doc).map_err(|e| fail(e.to_string()))?;
    tokenizers::Tokenizer::from_bytes(text).map_err(|e| fail(e.to_string()))
}

/// Tokens of type CONTROL or USER_DEFINED are matched in the text before the model runs, as
/// llama.cpp does when it parses special tokens.
fn added_tokens(tokens: &[&str], types: &[i32]) -> Vec<Value> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| matches!(**ty, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
        .map(|(id, (content, ty))| {
            json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": *ty == TOKEN_TYPE_CONTROL,
            })
        })
        .collect()
}

fn vocab_map(tokens: &[&str]) -> serde_json::Map<String, Value> {
    // A later duplicate must not shadow the id llama.cpp would use (the first).
    let mut vocab = serde_json::Map::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.entry(token.to_string()).or_insert(json!(id));
    }
    vocab
}

fn byte_level_document(tokens: &[&str], types: &[i32], merges: &[&str], pre: &str) -> Value {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    let split = |pattern: &str| {
        json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
               "invert": false})
    };
    let (pre_tokenizer, ignore_merges) = match pre {
        "llama3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "pixtral" => (
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
            true,
        ),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => (
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
            false,
        ),
        "smollm" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "default" | "gpt2" | "gpt-2" => (byte_level(true), false),
        other => {
            tracing::warn!(
                pre = other,
                "unknown GGUF pre-tokenizer; using GPT-2's, token ids may differ from llama.cpp's"
            );
            (byte_level(true), false)
        }
    };
    json!({
        "version": "1.0",
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab_map(tokens), "merges": merges,
        },
    })
}

/// A SentencePiece BPE vocabulary (Llama 2, Mistral) as a BPE model with byte fallback. The
/// merges are recovered from the scores the way `transformers` converts such vocabularies:
/// every split of a token into two tokens is a merge, ranked by the whole token's score.
fn sentencepiece_document(
    tokens: &[&str],
    types: &[i32],
    scores: &[f32],
    add_space_prefix: bool,
    unk: Option<u32>,
) -> Value {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                let score = scores.get(id).copied().unwrap_or(f32::MIN);
                merges.push((score, l, r, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<Value> = merges.iter().map(|m| json!([m.3, m.4])).collect();
    let unk_token = unk.and_then(|id| tokens.get(id as usize)).copied();
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({
        "version": "1.0",
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk_token,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab_map(tokens), "merges": merges,
        },
    })
}
