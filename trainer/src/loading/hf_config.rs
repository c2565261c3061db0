//! A tolerant serde mirror of a Hugging Face `config.json` for the Llama family (Llama 2/3,
//! Mistral, Qwen2/2.5, Qwen3, SmolLM, DeepSeek-R1 distills).
//!
//! Every field is optional or has the transformers default, and unknown fields are kept in
//! [`HfConfig::extra`], so any decoder's config reads. [`HfConfig::check_complete`] then lists
//! every field a model needs that is absent, in one error.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::gguf::{self, GgufFile};
use crate::error::{Error, FileKind, Result};

/// A token id, or a list of them (`eos_token_id` is a list in Llama 3 configs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `rope_scaling` (and transformers 5's `rope_parameters`): the scaling kind and its
/// parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// "linear", "dynamic", "yarn", "llama3", "longrope", "default" …
    #[serde(default, alias = "type", skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    /// Scaling factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Llama 3: low frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    /// Llama 3: high frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    /// Llama 3 / YaRN: the context length the model was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<u64>,
    /// transformers 5 keeps `rope_theta` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Any other parameter.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// transformers' default `rope_theta`.
pub const DEFAULT_ROPE_THETA: f64 = 10_000.0;
/// transformers' default `rms_norm_eps` for Llama.
pub const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;

/// The fields of `config.json` that the Llama-family decoder uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    /// e.g. "llama", "mistral", "qwen2", "qwen3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// e.g. `["LlamaForCausalLM"]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub architectures: Vec<String>,
    /// Model width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u64>,
    /// MLP width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<u64>,
    /// Number of decoder blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_hidden_layers: Option<u64>,
    /// Query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<u64>,
    /// Key/value heads; absent means as many as the query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<u64>,
    /// Per-head width; absent means `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u64>,
    /// Vocabulary size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u64>,
    /// Context length the model supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<u64>,
    /// RoPE base; see [`HfConfig::rope_theta`] for the resolved value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RMSNorm epsilon; see [`HfConfig::rms_norm_eps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f64>,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tie_word_embeddings: bool,
    /// Weight dtype, e.g. "bfloat16" (transformers < 4.56).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Weight dtype (transformers ≥ 4.56 writes `dtype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// RoPE scaling, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers 5's RoPE settings (theta and scaling together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeScaling>,
    /// Beginning-of-sequence token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<TokenIds>,
    /// Whether q/k/v/o projections have biases (Qwen2 has q/k/v biases without this flag).
    #[serde(default, deserialize_with = "null_as_default")]
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mlp_bias: bool,
    /// Activation, "silu" for the whole family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    /// Mistral / Qwen sliding-window size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<u64>,
    /// Qwen: whether the sliding window is used at all.
    #[serde(default, deserialize_with = "null_as_default")]
    pub use_sliding_window: bool,
    /// Every other field, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl HfConfig {
    /// Reads and parses a `config.json`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read the file", path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses the text of a `config.json`; `path` is used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Json {
            kind: FileKind::HfConfig,
            message: e.to_string(),
            path: path.to_path_buf(),
        })
    }

    /// `model_type`, or else the first entry of `architectures`.
    pub fn architecture(&self) -> Option<&str> {
        self.model_type
            .as_deref()
            .or_else(|| self.architectures.first().map(String::as_str))
    }

    /// Key/value heads: `num_key_value_heads`, defaulting to the query heads.
    pub fn kv_heads(&self) -> Option<u64> {
        self.num_key_value_heads.or(self.num_attention_heads)
    }

    /// Per-head width: `head_dim`, defaulting to `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> Option<u64> {
        self.head_dim
            .or_else(|| match (self.hidden_size, self.num_attention_heads) {
                (Some(h), Some(n)) if n > 0 => Some(h / n),
                _ => None,
            })
    }

    /// RoPE base: `rope_theta`, or `rope_parameters.rope_theta`, or 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(DEFAULT_ROPE_THETA)
    }

    /// RMSNorm epsilon, defaulting to 1e-6.
    pub fn rms_norm_eps(&self) -> f64 {
        self.rms_norm_eps.unwrap_or(DEFAULT_RMS_NORM_EPS)
    }

    /// The weight dtype as written (`dtype` or `torch_dtype`).
    pub fn weight_dtype(&self) -> Option<&str> {
        self.dtype.as_deref().or(self.torch_dtype.as_deref())
    }

    /// RoPE scaling from `rope_scaling` or `rope_parameters`, unless it is the default kind.
    pub fn rope_scaling(&self) -> Option<&RopeScaling> {
        self.rope_scaling
            .as_ref()
            .or(self.rope_parameters.as_ref())
            .filter(|r| r.rope_type.as_deref().is_some_and(|t| t != "default"))
    }

    /// Checks that every field a decoder needs is present; the error lists all missing ones.
    pub fn check_complete(&self, path: &Path) -> Result<()> {
        let fields: [(&str, bool); 6] = [
            ("hidden_size", self.hidden_size.is_some()),
            ("intermediate_size", self.intermediate_size.is_some()),
            ("num_hidden_layers", self.num_hidden_layers.is_some()),
            ("num_attention_heads", self.num_attention_heads.is_some()),
            ("vocab_size", self.vocab_size.is_some()),
            ("model_type", self.architecture().is_some()),
        ];
        let missing: Vec<String> = fields
            .iter()
            .filter(|(_, present)| !present)
            .map(|(name, _)| (*name).to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingConfigFields {
                fields: missing,
                path: path.to_path_buf(),
            })
        }
    }
}

impl HfConfig {
    /// The same facts from a GGUF file's metadata (llama.cpp's keys), so one decoder config
    /// serves both formats. Fails listing every missing key the decoder needs.
    ///
    /// `tie_word_embeddings` is true when the file has no `output.weight` tensor; `head_dim`
    /// comes from `{arch}.attention.key_length` when present.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?.to_owned();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let required = [
            key("embedding_length"),
            key("feed_forward_length"),
            key("block_count"),
            key("attention.head_count"),
        ];
        file.require(&required.iter().map(String::as_str).collect::<Vec<_>>())?;
        let vocab_size = match file.opt_u64(&key("vocab_size"))? {
            Some(v) => Some(v),
            None => file.array_len(gguf::keys::TOKENIZER_TOKENS)?,
        };
        let Some(vocab_size) = vocab_size else {
            return Err(Error::MissingMetadata {
                keys: vec![key("vocab_size"), gguf::keys::TOKENIZER_TOKENS.to_owned()],
                path: file.path().to_path_buf(),
            });
        };
        let token = |name: &str| -> Result<Option<TokenIds>> {
            Ok(file
                .opt_u32(&format!("tokenizer.ggml.{name}_token_id"))?
                .map(TokenIds::One))
        };
        let rope_scaling = match file.opt_str(&key("rope.scaling.type"))? {
            Some(kind) if kind != "none" => Some(RopeScaling {
                rope_type: Some(kind.to_owned()),
                factor: file.opt_f32(&key("rope.scaling.factor"))?.map(f64::from),
                original_max_position_embeddings: file
                    .opt_u64(&key("rope.scaling.original_context_length"))?,
                ..RopeScaling::default()
            }),
            _ => None,
        };
        Ok(HfConfig {
            model_type: Some(arch.clone()),
            hidden_size: file.opt_u64(&key("embedding_length"))?,
            intermediate_size: file.opt_u64(&key("feed_forward_length"))?,
            num_hidden_layers: file.opt_u64(&key("block_count"))?,
            num_attention_heads: file.opt_u64(&key("attention.head_count"))?,
            num_key_value_heads: file.opt_u64(&key("attention.head_count_kv"))?,
            head_dim: file.opt_u64(&key("attention.key_length"))?,
            vocab_size: Some(vocab_size),
            max_position_embeddings: file.opt_u64(&key("context_length"))?,
            rope_theta: file.opt_f32(&key("rope.freq_base"))?.map(f64::from),
            rms_norm_eps: file
                .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
                .map(f64::from),
            tie_word_embeddings: file.tensor("output.weight").is_none(),
            rope_scaling,
            bos_token_id: token("bos")?,
            eos_token_id: token("eos")?,
            pad_token_id: token("padding")?,
            attention_bias: file.tensor("blk.0.attn_q.bias").is_some(),
            hidden_act: Some("silu".to_owned()),
            sliding_window: file.opt_u64(&key("attention.sliding_window"))?,
            ..HfConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
      "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
      "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 9,
      "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
      "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
      "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
      "use_cache": true, "vocab_size": 49152
    }"#;

    #[test]
    fn reads_smollm2_config() {
        let c = HfConfig::from_json(SMOLLM2, Path::new("config.json")).expect("parses");
        assert_eq!(c.architecture(), Some("llama"));
        assert_eq!(c.hidden_size, Some(576));
        assert_eq!(c.kv_heads(), Some(3));
        assert_eq!(c.head_dim(), Some(64));
        assert_eq!(c.rope_theta(), 100_000.0);
        assert_eq!(c.rms_norm_eps(), 1e-5);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_id, Some(TokenIds::One(2)));
        assert_eq!(c.weight_dtype(), Some("bfloat16"));
        assert!(c.rope_scaling().is_none());
        assert!(c.extra.contains_key("pretraining_tp"));
        c.check_complete(Path::new("config.json"))
            .expect("complete");
    }

    #[test]
    fn llama3_lists_and_scaling_and_defaults() {
        let text = r#"{"model_type": "llama", "num_attention_heads": 32, "hidden_size": 2048,
            "eos_token_id": [128001, 128008, 128009], "tie_word_embeddings": null,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
              "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#;
        let c = HfConfig::from_json(text, Path::new("c.json")).expect("parses");
        assert_eq!(
            c.eos_token_id.as_ref().map(TokenIds::to_vec),
            Some(vec![128001, 128008, 128009])
        );
        assert_eq!(c.kv_heads(), Some(32));
        assert_eq!(c.rope_theta(), DEFAULT_ROPE_THETA);
        assert!(!c.tie_word_embeddings);
        let scaling = c.rope_scaling().expect("llama3 scaling");
        assert_eq!(scaling.factor, Some(32.0));
        assert_eq!(scaling.original_max_position_embeddings, Some(8192));
    }

    #[test]
    fn missing_fields_are_listed_together() {
        let c = HfConfig::from_json(
            r#"{"model_type": "qwen2", "hidden_size": 8}"#,
            Path::new("m/config.json"),
        )
        .expect("parses");
        let err = c
            .check_complete(Path::new("m/config.json"))
            .expect_err("incomplete");
        match &err {
            Error::MissingConfigFields { fields, .. } => assert_eq!(
                fields,
                &[
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "vocab_size"
                ]
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().ends_with("m/config.json"), "{err}");
    }

    #[test]
    fn from_gguf_maps_llama_cpp_keys() {
        use crate::loading::gguf_writer::{TinyGguf, tiny_llama_gguf};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        tiny_llama_gguf(&TinyGguf::default())
            .write(&path)
            .expect("write");
        let file = GgufFile::open(&path).expect("open");
        let c = HfConfig::from_gguf(&file).expect("maps");
        assert_eq!(c.architecture(), Some("llama"));
        assert_eq!(
            (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
            (Some(32), Some(64), Some(2))
        );
        assert_eq!(
            (c.num_attention_heads, c.kv_heads(), c.head_dim()),
            (Some(4), Some(2), Some(8))
        );
        assert_eq!(
            (c.vocab_size, c.max_position_embeddings),
            (Some(48), Some(256))
        );
        assert_eq!(c.rope_theta(), 10000.0);
        assert!((c.rms_norm_eps() - 1e-5).abs() < 1e-9);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_id, Some(TokenIds::One(1)));
        c.check_complete(&path).expect("complete");

        let bare = dir.path().join("bare.gguf");
        crate::loading::gguf_writer::GgufWriter::new()
            .meta_str("general.architecture", "qwen2")
            .meta_u32("qwen2.block_count", 2)
            .write(&bare)
            .expect("write");
        let err =
            HfConfig::from_gguf(&GgufFile::open(&bare).expect("open")).expect_err("incomplete");
        match err {
            Error::MissingMetadata { keys, .. } => assert_eq!(
                keys,
                [
                    "qwen2.embedding_length",
                    "qwen2.feed_forward_length",
                    "qwen2.attention.head_count"
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_json_names_the_file_and_position() {
        let err = HfConfig::from_json("{\"hidden_size\": 5,,}", Path::new("x/config.json"))
            .expect_err("bad json");
        let text = err.to_string();
        assert!(matches!(
            err,
            Error::Json {
                kind: FileKind::HfConfig,
                ..
            }
        ));
        assert!(text.contains("line 1 column"), "{text}");
        assert!(text.ends_with("x/config.json"), "{text}");
    }
}
