//! Running a model for chat: load a GGUF file or a safetensors folder on a backend, render the
//! conversation with the model's chat template, and stream the answer token by token.
//!
//! [`ChatModel`] is what the studio holds; it hides which backend the tensors live on.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backends::{BackendKind, probe_backends};
use crate::error::{Error, Result};
use crate::generate::{Generated, generate};
use crate::inspect::{ModelFormat, inspect_model};
use crate::loading::gguf::GgufFile;
use crate::lora::Adapter;
use crate::model::llama::flex_kv_write;
use crate::model::{Decoder, DecoderConfig, FusedOps, WeightFiles, WeightMode};
use crate::tokenizer::{TextStream, TextTokenizer};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A turn with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy decoding (always the most likely token).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probabilities add up to `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Divide the logits of tokens already in the context by this (1 turns it off).
    pub repetition_penalty: f32,
    /// Seed of the sampler; `None` picks one from the clock.
    pub seed: Option<u64>,
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            repetition_penalty: 1.1,
            seed: None,
            max_new_tokens: 512,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding, no penalty: the deterministic setting tests compare against references.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: Some(0),
            max_new_tokens,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced one of its end-of-turn tokens.
    EndOfTurn,
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The caller set the cancel flag.
    Cancelled,
}

/// What one generation did and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the end-of-turn token included).
    pub generated_tokens: usize,
    /// Prompt processing speed.
    pub prefill_tokens_per_s: f64,
    /// Generation speed, after the first token.
    pub decode_tokens_per_s: f64,
    /// Why it stopped.
    pub stop_reason: StopReason,
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The backend; `None` takes the best one compiled in and usable.
    pub backend: Option<BackendKind>,
    /// On the CPU, expand the weights to f32 and multiply them with burn instead of keeping
    /// them in the file's encoding for our block kernels: four to eight times the memory and
    /// slower, but without rounding the activations to 8 bits. GPU backends always do this.
    pub dense_weights: bool,
}

/// A model's weight files, tokenizer and configuration, opened but not loaded.
pub struct OpenedModel {
    /// The weights, memory-mapped.
    pub files: WeightFiles,
    /// The tokenizer and chat template.
    pub tokenizer: TextTokenizer,
    /// The decoder's shape.
    pub config: DecoderConfig,
}

impl OpenedModel {
    /// Opens the GGUF file or safetensors folder at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let info = inspect_model(path)?;
        let first = info.files.first().map_or(path, PathBuf::as_path);
        let (files, tokenizer) = match info.format {
            ModelFormat::Gguf => {
                let file = GgufFile::open(first)?;
                let tokenizer = TextTokenizer::from_gguf(&file)?;
                (WeightFiles::gguf(file), tokenizer)
            }
            ModelFormat::Safetensors => {
                let dir = if path.is_dir() {
                    path.to_path_buf()
                } else {
                    first.parent().unwrap_or(Path::new(".")).to_path_buf()
                };
                let tokenizer = TextTokenizer::from_folder(&dir)?;
                (WeightFiles::safetensors(&dir)?, tokenizer)
            }
        };
        let config = DecoderConfig::from_hf(&files.config()?, files.path())?;
        Ok(OpenedModel {
            files,
            tokenizer,
            config,
        })
    }
}

/// The decoder on whichever backend was chosen.
enum Engine {
    Cpu(Box<Decoder<burn::backend::flex::Flex>>),
    #[cfg(feature = "wgpu")]
    Wgpu(Box<Decoder<burn::backend::wgpu::Wgpu>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<Decoder<burn::backend::cuda::Cuda>>),
}

/// Calls `$body` with `$d` bound to the engine's decoder, whatever its backend.
macro_rules! with_decoder {
    ($engine:expr, $d:ident => $body:expr) => {
        match $engine {
            Engine::Cpu($d) => $body,
            #[cfg(feature = "wgpu")]
            Engine::Wgpu($d) => $body,
            #[cfg(feature = "cuda")]
            Engine::Cuda($d) => $body,
        }
    };
}

/// A loaded model with its tokenizer and chat template, ready to chat.
pub struct ChatModel {
    engine: Engine,
    tokenizer: TextTokenizer,
    backend: BackendKind,
    path: PathBuf,
}

impl ChatModel {
    /// Loads the model file or folder at `path`; `progress` gets a fraction in 0..=1 and a
    /// message while weights load.
    pub fn load(
        path: &Path,
        options: &LoadOptions,
        progress: &mut dyn FnMut(f32, &str),
    ) -> Result<Self> {
        let OpenedModel {
            files,
            tokenizer,
            config,
        } = OpenedModel::open(path)?;
        let backend = match options.backend {
            Some(kind) => kind,
            None => BackendKind::best_available(&probe_backends()),
        };
        progress(0.0, "loading weights");
        let mut on_layer = |f: f32| progress(f, "loading weights");
        let engine = load_engine(
            backend,
            options.dense_weights,
            config,
            &files,
            &mut on_layer,
        )?;
        progress(1.0, "ready");
        tracing::info!(model = %path.display(), %backend, "model loaded");
        Ok(Self {
            engine,
            tokenizer,
            backend,
            path: path.to_path_buf(),
        })
    }

    /// Applies a LoRA adapter at `scale` (1 is its trained strength) to every later answer,
    /// or removes it with `None`. The base weights stay loaded, so switching is cheap.
    pub fn set_adapter(&mut self, adapter: Option<(&Adapter, f32)>, source: &Path) -> Result<()> {
        if let Some((a, _)) = adapter {
            a.check_fits(self.config(), source)?;
        }
        with_decoder!(&mut self.engine, d => d.set_adapter(adapter));
        Ok(())
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The file or folder the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoder's configuration.
    pub fn config(&self) -> &DecoderConfig {
        with_decoder!(&self.engine, d => d.config())
    }

    /// The context window in tokens.
    pub fn context_length(&self) -> usize {
        self.config().context_length
    }

    /// The tokenizer and chat template.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The logits that follow `tokens`, `[tokens.len(), vocab]` row-major, from a fresh cache.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        with_decoder!(&self.engine, d => {
            let mut cache = d.new_cache();
            d.forward_all(tokens, &mut cache)
        })
    }

    /// Runs `f` with a step function over one fresh KV cache: each call feeds tokens after
    /// those already fed and returns the logits of the last one.
    pub fn with_cache<T>(
        &self,
        f: impl FnOnce(&mut dyn FnMut(&[u32]) -> Result<Vec<f32>>) -> Result<T>,
    ) -> Result<T> {
        with_decoder!(&self.engine, d => {
            let mut cache = d.new_cache();
            let mut step = |tokens: &[u32]| d.forward_last(tokens, &mut cache);
            f(&mut step)
        })
    }

    /// Generates from token ids; `on_token` sees each new token and may return `false` to
    /// stop.
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        cancel: &AtomicBool,
        on_token: &mut dyn FnMut(u32) -> Result<bool>,
    ) -> Result<Generated> {
        let is_stop = |t: u32| self.tokenizer.is_stop(t);
        with_decoder!(&self.engine, d => generate(d, prompt, params, &is_stop, cancel, on_token))
    }

    /// Renders `messages` with the chat template (with the generation prompt), generates the
    /// assistant's answer and passes its text to `on_text` piece by piece as it is decoded.
    /// Setting `cancel` stops it at the next token.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats> {
        let prompt_text = self.tokenizer.render_chat(messages, true)?;
        let prompt = self.tokenizer.encode(&prompt_text)?;
        let mut stream = TextStream::default();
        let tokenizer = &self.tokenizer;
        let generated = self.generate_ids(&prompt, params, cancel, &mut |id| {
            let piece = stream.push(tokenizer, id)?;
            if !piece.is_empty() {
                on_text(&piece);
            }
            Ok(true)
        })?;
        Ok(stats(prompt.len(), &generated))
    }
}

fn stats(prompt_tokens: usize, g: &Generated) -> GenerationStats {
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    GenerationStats {
        prompt_tokens,
        generated_tokens: g.tokens.len(),
        prefill_tokens_per_s: rate(prompt_tokens, g.prefill_seconds),
        decode_tokens_per_s: rate(g.tokens.len().saturating_sub(1), g.decode_seconds),
        stop_reason: g.stop_reason,
    }
}

fn load_engine(
    backend: BackendKind,
    dense_weights: bool,
    config: DecoderConfig,
    files: &WeightFiles,
    progress: &mut dyn FnMut(f32),
) -> Result<Engine> {
    fn load<B: Backend>(
        config: DecoderConfig,
        files: &WeightFiles,
        mode: WeightMode<B>,
        device: &B::Device,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Box<Decoder<B>>> {
        let mut decoder = Decoder::load(config, files, mode, device, progress)?;
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let Some(ops) = crate::cube_ops::inference_ops_for::<B>() {
            decoder.set_fused_ops(ops);
        }
        Ok(Box::new(decoder))
    }
    match backend {
        BackendKind::Cpu => {
            let mut decoder = load(
                config,
                files,
                if dense_weights {
                    WeightMode::Dense
                } else {
                    WeightMode::Host
                },
                &burn::backend::flex::FlexDevice,
                progress,
            )?;
            decoder.set_fused_ops(FusedOps {
                kv_write: Some(flex_kv_write),
                ..decoder.fused_ops()
            });
            Ok(Engine::Cpu(decoder))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Ok(Engine::Wgpu(load(
            config,
            files,
            WeightMode::Dense,
            &burn::backend::wgpu::WgpuDevice::default(),
            progress,
        )?)),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(Engine::Cuda(load(
            config,
            files,
            WeightMode::Dense,
            &burn::backend::cuda::CudaDevice::default(),
            progress,
        )?)),
        #[allow(unreachable_patterns)]
        other => Err(Error::BackendUnavailable {
            backend: other,
            detail: format!("this build does not include it (rebuild with --features {other})"),
        }),
    }
}
