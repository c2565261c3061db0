//! Tiny Llama-family checkpoint folders (config, safetensors, tokenizer) for tests.
//!
//! Only compiled for tests and with the `test-support` feature.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::bf16;

use serde_json::json;

use super::gguf_writer::test_values;
use super::safetensors::{Dtype, INDEX_FILE, SINGLE_FILE};
use super::safetensors_writer::{StTensor, safetensors_bytes};

/// Which member of the Llama family a tiny checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TinyFamily {
    /// Llama: no biases, q/k rows permuted in GGUF.
    #[default]
    Llama,
    /// Qwen2: biases on q, k and v.
    Qwen2,
    /// Qwen3: RMSNorm on each head's queries and keys.
    Qwen3,
}

impl TinyFamily {
    /// `model_type` / GGUF architecture name.
    pub fn name(self) -> &'static str {
        match self {
            TinyFamily::Llama => "llama",
            TinyFamily::Qwen2 => "qwen2",
            TinyFamily::Qwen3 => "qwen3",
        }
    }
}

/// A tiny random Llama-family checkpoint in Hugging Face layout (config.json + safetensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyLlama {
    /// Llama, Qwen2 or Qwen3.
    pub family: TinyFamily,
    /// Vocabulary size.
    pub vocab: u64,
    /// Hidden size.
    pub hidden: u64,
    /// Decoder blocks.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// MLP width.
    pub intermediate: u64,
    /// `max_position_embeddings`.
    pub context: u64,
    /// Whether `lm_head` is tied to the embedding (then it is not written).
    pub tie_embeddings: bool,
    /// dtype of the matrices (F32 or BF16); norms are always F32.
    pub dtype: Dtype,
    /// Number of shard files (1 writes `model.safetensors`, more write an index too).
    pub shards: usize,
}

impl Default for TinyLlama {
    fn default() -> Self {
        TinyLlama {
            family: TinyFamily::Llama,
            vocab: 64,
            hidden: 16,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 32,
            context: 128,
            tie_embeddings: true,
            dtype: Dtype::F32,
            shards: 1,
        }
    }
}

impl TinyLlama {
    /// Number of weights the checkpoint holds.
    pub fn parameters(&self) -> u64 {
        self.tensors()
            .iter()
            .map(|t| t.shape.iter().product::<u64>())
            .sum()
    }

    /// The `config.json` contents.
    pub fn config_json(&self) -> serde_json::Value {
        let architecture = match self.family {
            TinyFamily::Llama => "LlamaForCausalLM",
            TinyFamily::Qwen2 => "Qwen2ForCausalLM",
            TinyFamily::Qwen3 => "Qwen3ForCausalLM",
        };
        json!({
            "architectures": [architecture],
            "model_type": self.family.name(),
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": self.context,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.tie_embeddings,
            "torch_dtype": if self.dtype == Dtype::BF16 { "bfloat16" } else { "float32" },
            "bos_token_id": 0,
            "eos_token_id": 1,
            "hidden_act": "silu",
        })
    }

    /// The tensors, with Hugging Face names, in a fixed order.
    pub fn tensors(&self) -> Vec<StTensor> {
        let (h, i) = (self.hidden, self.intermediate);
        let kv = self.kv_heads * (self.hidden / self.heads);
        let mut seed = 100;
        let mut matrix = |name: String, rows: u64, cols: u64| {
            seed += 1;
            let values = test_values(seed, (rows * cols) as usize);
            if self.dtype == Dtype::BF16 {
                StTensor::bf16(&name, &[rows, cols], &values)
            } else {
                StTensor::f32(&name, &[rows, cols], &values)
            }
        };
        let norm = |name: String| StTensor::f32(&name, &[h], &vec![1.0; h as usize]);
        let head_dim = self.hidden / self.heads;
        let mut vector_seed = 5000;
        let mut vector = |name: String, n: u64, offset: f32| {
            vector_seed += 1;
            let values: Vec<f32> = test_values(vector_seed, n as usize)
                .iter()
                .map(|v| v * 0.5 + offset)
                .collect();
            StTensor::f32(&name, &[n], &values)
        };
        let mut out = vec![matrix("model.embed_tokens.weight".into(), self.vocab, h)];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            out.push(norm(format!("{p}.input_layernorm.weight")));
            out.push(matrix(format!("{p}.self_attn.q_proj.weight"), h, h));
            out.push(matrix(format!("{p}.self_attn.k_proj.weight"), kv, h));
            out.push(matrix(format!("{p}.self_attn.v_proj.weight"), kv, h));
            out.push(matrix(format!("{p}.self_attn.o_proj.weight"), h, h));
            match self.family {
                TinyFamily::Llama => {}
                TinyFamily::Qwen2 => {
                    out.push(vector(format!("{p}.self_attn.q_proj.bias"), h, 0.0));
                    out.push(vector(format!("{p}.self_attn.k_proj.bias"), kv, 0.0));
                    out.push(vector(format!("{p}.self_attn.v_proj.bias"), kv, 0.0));
                }
                TinyFamily::Qwen3 => {
                    out.push(vector(
                        format!("{p}.self_attn.q_norm.weight"),
                        head_dim,
                        1.0,
                    ));
                    out.push(vector(
                        format!("{p}.self_attn.k_norm.weight"),
                        head_dim,
                        1.0,
                    ));
                }
            }
            out.push(norm(format!("{p}.post_attention_layernorm.weight")));
            out.push(matrix(format!("{p}.mlp.gate_proj.weight"), i, h));
            out.push(matrix(format!("{p}.mlp.up_proj.weight"), i, h));
            out.push(matrix(format!("{p}.mlp.down_proj.weight"), h, i));
        }
        out.push(norm("model.norm.weight".into()));
        if !self.tie_embeddings {
            out.push(matrix("lm_head.weight".into(), self.vocab, h));
        }
        out
    }

    /// Writes `config.json` and the weights into `dir` (created if needed); returns the weight
    /// files written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let config =
            serde_json::to_string_pretty(&self.config_json()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("config.json"), config)?;
        let tensors = self.tensors();
        let metadata = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
        if self.shards <= 1 {
            let path = dir.join(SINGLE_FILE);
            std::fs::write(&path, safetensors_bytes(&tensors, &metadata))?;
            return Ok(vec![path]);
        }
        let per_shard = tensors.len().div_ceil(self.shards);
        let mut files = Vec::new();
        let mut weight_map = BTreeMap::new();
        let mut total_size = 0;
        for (n, chunk) in tensors.chunks(per_shard).enumerate() {
            let name = format!("model-{:05}-of-{:05}.safetensors", n + 1, self.shards);
            for t in chunk {
                weight_map.insert(t.name.clone(), name.clone());
                total_size += t.data.len();
            }
            let path = dir.join(&name);
            std::fs::write(&path, safetensors_bytes(chunk, &metadata))?;
            files.push(path);
        }
        let index = json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
        let index = serde_json::to_string_pretty(&index).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(INDEX_FILE), index)?;
        Ok(files)
    }
}

/// Token texts of the tiny vocabularies: two control tokens, then the ASCII letters and
/// digits, then `tok64`, `tok65`, … for larger vocabularies.
fn tiny_tokens(vocab: u64) -> Vec<String> {
    let chars = ('a'..='z').chain('A'..='Z').chain('0'..='9');
    ["<s>".to_owned(), "</s>".to_owned()]
        .into_iter()
        .chain(chars.map(String::from))
        .chain((64..).map(|i| format!("tok{i}")))
        .take(vocab as usize)
        .collect()
}

impl TinyLlama {
    /// A byte-level BPE `tokenizer.json` over [`TinyLlama::vocab`] tokens, with a ChatML
    /// `tokenizer_config.json`, so the folder loads as a chat model.
    pub fn write_tokenizer(&self, dir: &Path) -> std::io::Result<()> {
        let tokens = tiny_tokens(self.vocab);
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let tokenizer = json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 0, "content": "<s>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true},
                {"id": 1, "content": "</s>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true},
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                        "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": []},
        });
        let config = json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false});
        std::fs::write(
            dir.join("tokenizer.json"),
            serde_json::to_string(&tokenizer).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string(&config).map_err(std::io::Error::other)?,
        )
    }

    /// The same model as a GGUF file, converted the way llama.cpp's `convert_hf_to_gguf.py`
    /// does: its tensor names, q/k rows permuted for its RoPE layout, F32 tensors, and the
    /// vocabulary of [`TinyLlama::write_tokenizer`].
    pub fn to_gguf(&self) -> super::gguf_writer::GgufWriter {
        use super::gguf_writer::{GgufValue, GgufWriter};
        let arch = self.family.name();
        let head_dim = (self.hidden / self.heads) as usize;
        let mut w = GgufWriter::new()
            .meta_str("general.architecture", arch)
            .meta_str("general.name", "Tiny Llama")
            .meta_u32(&format!("{arch}.context_length"), self.context as u32)
            .meta_u32(&format!("{arch}.embedding_length"), self.hidden as u32)
            .meta_u32(&format!("{arch}.block_count"), self.layers as u32)
            .meta_u32(
                &format!("{arch}.feed_forward_length"),
                self.intermediate as u32,
            )
            .meta_u32(&format!("{arch}.attention.head_count"), self.heads as u32)
            .meta_u32(
                &format!("{arch}.attention.head_count_kv"),
                self.kv_heads as u32,
            )
            .meta(&format!("{arch}.rope.freq_base"), GgufValue::F32(10000.0))
            .meta(
                &format!("{arch}.attention.layer_norm_rms_epsilon"),
                GgufValue::F32(1e-5),
            )
            .meta_str("tokenizer.ggml.model", "gpt2")
            .meta_str("tokenizer.ggml.pre", "default")
            .meta(
                "tokenizer.ggml.tokens",
                GgufValue::strings(tiny_tokens(self.vocab)),
            )
            .meta(
                "tokenizer.ggml.token_type",
                GgufValue::i32s((0..self.vocab).map(|i| if i < 2 { 3 } else { 1 })),
            )
            .meta(
                "tokenizer.ggml.merges",
                GgufValue::strings(Vec::<String>::new()),
            )
            .meta_u32("tokenizer.ggml.bos_token_id", 0)
            .meta_u32("tokenizer.ggml.eos_token_id", 1);
        for t in self.tensors() {
            let values: Vec<f32> = match t.dtype {
                Dtype::BF16 => t
                    .data
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => t
                    .data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            };
            let permuted = self.family == TinyFamily::Llama;
            let heads = if !permuted {
                None
            } else if t.name.ends_with("q_proj.weight") {
                Some(self.heads as usize)
            } else if t.name.ends_with("k_proj.weight") {
                Some(self.kv_heads as usize)
            } else {
                None
            };
            let values = match heads {
                Some(heads) => permute_like_llama_cpp(&values, heads, head_dim),
                None => values,
            };
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            w = w.f32_tensor(&crate::model::gguf_name(&t.name), &dims, &values);
        }
        w
    }
}

/// llama.cpp's q/k permutation: GGUF row `h·hd + 2i + j` is Hugging Face row
/// `h·hd + j·hd/2 + i`.
fn permute_like_llama_cpp(values: &[f32], heads: usize, head_dim: usize) -> Vec<f32> {
    let cols = values.len() / (heads * head_dim);
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = h * head_dim + j * half + i;
                let to = h * head_dim + 2 * i + j;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}
