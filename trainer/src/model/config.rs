//! The decoder's configuration, resolved from a Hugging Face `config.json` or GGUF metadata
//! (both read into [`HfConfig`]).

use std::path::Path;

use crate::error::{Error, Result};
use crate::loading::hf_config::HfConfig;

/// The members of the Llama family this runtime implements. They share one decoder and differ
/// in a few switches (see [`DecoderConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3.x, SmolLM/SmolLM2, DeepSeek-R1 Llama distills.
    Llama,
    /// Mistral 7B and relatives (a Llama with a sliding window on long contexts).
    Mistral,
    /// Qwen2 / Qwen2.5, DeepSeek-R1 Qwen distills: biases on q, k and v.
    Qwen2,
    /// Qwen3: RMSNorm on each head's queries and keys.
    Qwen3,
}

impl Architecture {
    /// Reads the architecture from `model_type`, or `architectures[0]` when that is missing.
    pub fn from_config(config: &HfConfig, path: &Path) -> Result<Self> {
        let name = config.architecture().unwrap_or("unknown");
        let lowered = name.to_ascii_lowercase();
        let arch = match lowered.as_str() {
            "llama" | "llamaforcausallm" => Architecture::Llama,
            "mistral" | "mistralforcausallm" => Architecture::Mistral,
            "qwen2" | "qwen2forcausallm" => Architecture::Qwen2,
            "qwen3" | "qwen3forcausallm" => Architecture::Qwen3,
            _ => {
                return Err(Error::UnsupportedArchitecture {
                    architecture: name.to_owned(),
                    path: path.to_path_buf(),
                });
            }
        };
        Ok(arch)
    }
}

/// How rotary position embeddings turn a position into angles.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (linear interpolation).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        /// How much longer the context is than in pre-training.
        factor: f64,
        /// Wavelengths longer than `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original / high_freq_factor` are left alone.
        high_freq_factor: f64,
        /// The pre-training context length.
        original_context: f64,
    },
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Which member of the family.
    pub architecture: Architecture,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Context window in tokens.
    pub context_length: usize,
    /// Whether the output projection is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q, k and v projections have biases.
    pub qkv_bias: bool,
    /// Whether queries and keys get a per-head RMSNorm (Qwen3).
    pub qk_norm: bool,
}

/// Context length assumed when the configuration gives none.
const FALLBACK_CONTEXT: usize = 2048;

impl DecoderConfig {
    /// Resolves a configuration; `path` names the model in errors.
    pub fn from_hf(config: &HfConfig, path: &Path) -> Result<Self> {
        config.check_complete(path)?;
        let architecture = Architecture::from_config(config, path)?;
        let unsupported = |what: String| Error::UnsupportedConfig {
            what,
            path: path.to_path_buf(),
        };
        let need = |value: Option<u64>| value.unwrap_or_default() as usize;
        let heads = need(config.num_attention_heads);
        let kv_heads = config.kv_heads().unwrap_or(heads as u64) as usize;
        let head_dim = config.head_dim().unwrap_or_default() as usize;
        if heads == 0 || kv_heads == 0 || head_dim == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(unsupported(format!(
                "{heads} query heads, {kv_heads} key/value heads of width {head_dim}"
            )));
        }
        if !head_dim.is_multiple_of(2) {
            return Err(unsupported(format!("odd head width {head_dim}")));
        }
        // Sizes far beyond any real model come from a corrupt file; refuse them before they
        // size an allocation.
        let limits = [
            ("hidden_size", config.hidden_size, 1 << 16),
            ("intermediate_size", config.intermediate_size, 1 << 18),
            ("num_hidden_layers", config.num_hidden_layers, 1 << 10),
            ("num_attention_heads", Some(heads as u64), 1 << 10),
            ("head_dim", Some(head_dim as u64), 1 << 12),
            ("vocab_size", config.vocab_size, 1 << 22),
        ];
        for (name, value, limit) in limits {
            match value {
                Some(v) if v > 0 && v <= limit => {}
                other => {
                    return Err(unsupported(format!(
                        "{name} = {} (expected 1 to {limit})",
                        other.unwrap_or(0)
                    )));
                }
            }
        }
        if let Some(act) = config.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(unsupported(format!("activation {act:?} (only silu)")));
        }
        if config.mlp_bias {
            return Err(unsupported("biases on the MLP projections".to_owned()));
        }
        let rope_scaling = match config.rope_scaling() {
            None => RopeScaling::None,
            Some(s) => match s.rope_type.as_deref().unwrap_or("default") {
                "default" | "none" => RopeScaling::None,
                "linear" => RopeScaling::Linear {
                    factor: s.factor.unwrap_or(1.0),
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: s.factor.unwrap_or(8.0),
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_context: s.original_max_position_embeddings.unwrap_or(8192) as f64,
                },
                other => return Err(unsupported(format!("RoPE scaling {other:?}"))),
            },
        };
        Ok(DecoderConfig {
            architecture,
            vocab_size: need(config.vocab_size),
            hidden_size: need(config.hidden_size),
            intermediate_size: need(config.intermediate_size),
            layers: need(config.num_hidden_layers),
            heads,
            kv_heads,
            head_dim,
            rms_norm_eps: config.rms_norm_eps() as f32,
            rope_theta: config.rope_theta(),
            rope_scaling,
            context_length: config
                .max_position_embeddings
                .map_or(FALLBACK_CONTEXT, |n| n as usize),
            tie_word_embeddings: config.tie_word_embeddings,
            qkv_bias: config.attention_bias || architecture == Architecture::Qwen2,
            qk_norm: architecture == Architecture::Qwen3,
        })
    }

    /// The inverse frequencies of the rotary embedding, one per pair of head dimensions, with
    /// the configured scaling applied.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let freq = 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64);
                match &self.rope_scaling {
                    RopeScaling::None => freq,
                    RopeScaling::Linear { factor } => freq / factor,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_context,
                    } => {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        let low_wavelen = original_context / low_freq_factor;
                        let high_wavelen = original_context / high_freq_factor;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (original_context / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    }
                }
            })
            .collect()
    }
}
