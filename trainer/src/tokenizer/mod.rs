//! Text to token ids and back, and the chat template, for a GGUF file or a Hugging Face folder.

mod gguf;
pub mod template;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use gguf::tokenizer_from_gguf;
pub use template::{CHATML_TEMPLATE, ChatTemplate};

use crate::error::{Error, Result};
use crate::loading::gguf::GgufFile;
use crate::runtime::ChatMessage;

/// Token texts that end a turn in the families we run; any that the vocabulary has is a stop
/// token, in addition to the model's declared end-of-sequence token.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end▁of▁sentence|>",
    "<end_of_turn>",
    "</s>",
];

/// The byte range of each token in the text it was encoded from.
pub type TokenOffsets = Vec<(usize, usize)>;

/// A model's tokenizer, chat template and stop tokens.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    template: ChatTemplate,
    bos: Option<u32>,
    add_bos: bool,
    stop: BTreeSet<u32>,
}

impl TextTokenizer {
    /// The tokenizer carried in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let inner = tokenizer_from_gguf(file)?;
        let bos = file.opt_u32("tokenizer.ggml.bos_token_id")?;
        let eos = file.opt_u32("tokenizer.ggml.eos_token_id")?;
        let eot = file.opt_u32("tokenizer.ggml.eot_token_id")?;
        let add_bos = file
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false);
        let template = file.opt_str("tokenizer.chat_template")?;
        Self::assemble(
            inner,
            template,
            file.path(),
            bos,
            add_bos,
            eos.into_iter().chain(eot),
        )
    }

    /// `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` of a Hugging
    /// Face model folder.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                message: "the model folder has no tokenizer.json".into(),
                path,
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            message: e.to_string(),
            path: path.clone(),
        })?;
        let config = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let generation = read_json_if_present(&dir.join("generation_config.json"))?;
        let model_config = read_json_if_present(&dir.join("config.json"))?;
        let token_id = |key: &str| -> Option<u32> {
            let text = config.get(key).and_then(token_text)?;
            inner.token_to_id(&text)
        };
        let bos = token_id("bos_token");
        let add_bos = config
            .get("add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut eos: Vec<u32> = token_id("eos_token").into_iter().collect();
        for source in [&generation, &model_config] {
            eos.extend(ids(source.get("eos_token_id")));
        }
        let template = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_owned),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        Self::assemble(
            inner,
            template.as_deref(),
            &dir.join("tokenizer_config.json"),
            bos,
            add_bos,
            eos,
        )
    }

    fn assemble(
        inner: tokenizers::Tokenizer,
        template: Option<&str>,
        source: &Path,
        bos: Option<u32>,
        add_bos: bool,
        eos: impl IntoIterator<Item = u32>,
    ) -> Result<Self> {
        let mut stop: BTreeSet<u32> = eos.into_iter().collect();
        stop.extend(
            END_OF_TURN_TOKENS
                .iter()
                .filter_map(|t| inner.token_to_id(t)),
        );
        let text_of = |id: Option<u32>| id.and_then(|id| inner.id_to_token(id)).unwrap_or_default();
        let bos_text = text_of(bos);
        let eos_text = text_of(stop.iter().next().copied());
        let template = match template {
            Some(source_text) => ChatTemplate::new(source_text, source, &bos_text, &eos_text)?,
            None => {
                tracing::warn!(model = %source.display(), "no chat template; using ChatML");
                ChatTemplate::new(CHATML_TEMPLATE, source, &bos_text, &eos_text)?
            }
        };
        Ok(Self {
            inner,
            template,
            bos,
            add_bos,
            stop,
        })
    }

    /// Token ids of `text`; special tokens written in the text are recognised, and the BOS
    /// token is prepended when the model asks for it and the text does not start with it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer {
                message: e.to_string(),
                path: PathBuf::from("<tokenizer>"),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        if self.add_bos
            && let Some(bos) = self.bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// [`TextTokenizer::encode`] with each token's byte range in `text` (a prepended BOS gets
    /// `0..0`), so training data can map tokens back to the text they came from.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, TokenOffsets)> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer {
                message: e.to_string(),
                path: PathBuf::from("<tokenizer>"),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        let mut offsets = encoding.get_offsets().to_vec();
        if self.add_bos
            && let Some(bos) = self.bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
            offsets.insert(0, (0, 0));
        }
        Ok((ids, offsets))
    }

    /// The text of `ids`; special tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer {
            message: e.to_string(),
            path: PathBuf::from("<tokenizer>"),
        })
    }

    /// The conversation rendered with the model's chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Whether `id` ends the assistant's turn.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }

    /// The stop token ids.
    pub fn stop_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.stop.iter().copied()
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A fingerprint of the vocabulary (every token and its id): token ids mean the same text
    /// exactly when fingerprints agree. FNV-1a: it tells tokenizers apart, it is no seal.
    pub fn fingerprint(&self) -> String {
        let mut vocab: Vec<(String, u32)> = self.inner.get_vocab(true).into_iter().collect();
        vocab.sort_unstable_by_key(|(_, id)| *id);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (token, id) in &vocab {
            for byte in token.as_bytes().iter().chain(&id.to_le_bytes()) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("vocab-{}-{hash:016x}", vocab.len())
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens, BOS policy and
    /// the chat template) into `dir`, so an exported model chats and stops as this one does.
    pub fn save_folder(&self, dir: &Path) -> Result<()> {
        let path = dir.join("tokenizer.json");
        let json = self.inner.to_string(false).map_err(|e| Error::Tokenizer {
            message: e.to_string(),
            path: path.clone(),
        })?;
        crate::loading::safetensors_writer::write_atomically(&path, json.as_bytes())
            .map_err(|e| Error::io("write", &path, e))?;
        let (bos, eos) = self.template.special_tokens();
        let mut config = serde_json::json!({
            "bos_token": bos,
            "eos_token": eos,
            "add_bos_token": self.add_bos,
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        if let Some(template) = self.template.source_text() {
            config["chat_template"] = Value::String(template);
        }
        let path = dir.join("tokenizer_config.json");
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| Error::Tokenizer {
            message: e.to_string(),
            path: path.clone(),
        })?;
        crate::loading::safetensors_writer::write_atomically(&path, &bytes)
            .map_err(|e| Error::io("write", &path, e))
    }
}

fn read_json_if_present(path: &Path) -> Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Tokenizer {
            message: format!("cannot parse JSON: {e}"),
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(Error::io("read the file", path, e)),
    }
}

/// A token written as a string or as an `AddedToken` object with `content`.
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// A token id written as a number or a list of numbers.
fn ids(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// Streams the text of generated tokens: each call returns only the new text, and holds back
/// a trailing incomplete UTF-8 character until the token that completes it arrives.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Adds a token and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text.get(self.emitted..).unwrap_or_default().to_owned();
        self.emitted = text.len();
        Ok(new)
    }
}
