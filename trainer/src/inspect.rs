//! What a model file says about itself: format, architecture, size, quantization and shape,
//! read from the files (GGUF metadata and tensor infos, or config.json and safetensors headers)
//! without loading any weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loading::gguf::{GGUF_MAGIC, GgufFile, keys};
use crate::loading::hf_config::HfConfig;
use crate::loading::safetensors;

/// Architectures the Llama-family decoder runs (GGUF `general.architecture` or config.json
/// `model_type`). SmolLM and the DeepSeek-R1 distills use `llama` and `qwen2`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

/// How a model is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// One GGUF file (or a split GGUF set).
    Gguf,
    /// A Hugging Face folder: config.json and `.safetensors` weights.
    Safetensors,
}

/// Facts about a model, read from its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Storage format.
    pub format: ModelFormat,
    /// The model's own name (GGUF `general.name`); `None` for a safetensors folder.
    pub name: Option<String>,
    /// The hub repository the model comes from (`owner/name`), when its files say: GGUF
    /// `general.source.huggingface.repository` or a hub `general.source.url`; for a folder, a
    /// hub cache path (`models--owner--name/snapshots/…`) or config.json's `_name_or_path`.
    /// (llama.cpp's `general.organization` and `general.basename` are not enough: they often
    /// name a training checkpoint, not a repository.)
    pub hub_id: Option<String>,
    /// GGUF `general.architecture`, or config.json `model_type`.
    pub architecture: String,
    /// Number of weights: the sum of the tensors' element counts.
    pub parameters: u64,
    /// GGUF: llama.cpp's name of `general.file_type` (e.g. "Q4_1", "Q4_K_M"), else the dominant
    /// tensor type; safetensors: the dominant dtype (e.g. "BF16").
    pub quantization: String,
    /// Number of weights per tensor type (ggml type or safetensors dtype name).
    pub tensor_types: BTreeMap<String, u64>,
    /// Context length the model was trained for.
    pub context_length: Option<u64>,
    /// Bytes of all weight files.
    pub file_size: u64,
    /// Decoder blocks.
    pub layers: Option<u64>,
    /// Model width.
    pub hidden_size: Option<u64>,
    /// Query heads.
    pub attention_heads: Option<u64>,
    /// Key/value heads.
    pub kv_heads: Option<u64>,
    /// Vocabulary size.
    pub vocab_size: Option<u64>,
    /// The weight files (the GGUF file or files, or the safetensors shards).
    pub files: Vec<PathBuf>,
}

impl ModelInfo {
    /// Whether the Llama-family decoder can run this architecture (see
    /// [`SUPPORTED_ARCHITECTURES`]).
    pub fn is_supported_architecture(&self) -> bool {
        SUPPORTED_ARCHITECTURES.contains(&self.architecture.as_str())
    }
}

/// Reads what a model's files say about it. `path` is a `.gguf` file (any file starting with
/// the GGUF magic), or a folder holding `config.json` and `.safetensors` weights, or that
/// folder's `config.json` or one of its `.safetensors` files. Any architecture is reported.
pub fn inspect_model(path: &Path) -> Result<ModelInfo> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read the model path", path, e))?;
    if meta.is_dir() {
        return inspect_folder(path);
    }
    if starts_with_gguf_magic(path)? {
        return inspect_gguf(path);
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_gguf_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf_name {
        // Let the reader report the bad magic or truncation.
        return inspect_gguf(path);
    }
    if file_name == "config.json" || path.extension().is_some_and(|e| e == "safetensors") {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return inspect_folder(dir);
    }
    Err(Error::NotAModel {
        reason: "expected a .gguf file, or a folder with config.json and .safetensors weights"
            .into(),
        path: path.to_path_buf(),
    })
}

fn starts_with_gguf_magic(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open the file", path, e))?;
    let mut magic = [0u8; 4];
    let mut read = 0;
    while read < 4 {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read the file", path, e)),
        }
    }
    Ok(read == 4 && magic == GGUF_MAGIC)
}

/// The type with the most weights; ties go to the first name in order.
fn dominant(types: &BTreeMap<String, u64>) -> Option<String> {
    let mut best: Option<(&String, u64)> = None;
    for (name, &count) in types {
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((name, count));
        }
    }
    best.map(|(name, _)| name.clone())
}

/// A count-like key read leniently for display: an integer, or the largest entry of an
/// integer array (per-layer head counts); `None` with a warning when it has another type.
fn lenient_count(file: &GgufFile, key: &str) -> Option<u64> {
    match file.opt_u64(key) {
        Ok(v) => v,
        Err(_) => match file.u32_array(key) {
            Ok(values) => values.into_iter().max().map(u64::from),
            Err(e) => {
                tracing::warn!("ignoring GGUF metadata `{key}`: {e}");
                None
            }
        },
    }
}

/// The other files of a split GGUF (`name-00001-of-00003.gguf`), in order, when `first` is one.
fn split_files(file: &GgufFile) -> Result<Vec<PathBuf>> {
    let path = file.path();
    let count = match file.opt_u64(keys::SPLIT_COUNT) {
        Ok(Some(n)) if n > 1 => n,
        _ => return Ok(vec![path.to_path_buf()]),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let pattern = format!("-of-{count:05}.gguf");
    let prefix = name.strip_suffix(&pattern).and_then(|rest| {
        let (prefix, number) = rest.rsplit_once('-')?;
        (number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit())).then_some(prefix)
    });
    let Some(prefix) = prefix else {
        return Err(Error::NotAModel {
            reason: format!(
                "the file is part {} of a split GGUF of {count} files, but its name does not \
                 follow the `<name>-00001-of-{count:05}.gguf` pattern",
                file.opt_u64("split.no").ok().flatten().map_or(0, |n| n + 1)
            ),
            path: path.to_path_buf(),
        });
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((1..=count)
        .map(|i| dir.join(format!("{prefix}-{i:05}-of-{count:05}.gguf")))
        .collect())
}

fn inspect_gguf(path: &Path) -> Result<ModelInfo> {
    let given = GgufFile::open(path)?;
    let files = split_files(&given)?;
    // Metadata is read from the first file of a split set.
    let parts: Vec<GgufFile> = if files.len() == 1 {
        vec![given]
    } else {
        files.iter().map(GgufFile::open).collect::<Result<_>>()?
    };
    let file = &parts[0];
    let architecture = file.architecture()?.to_owned();
    let name = file.opt_str(keys::NAME)?.map(str::to_owned);
    let hub_id = gguf_hub_id(file);

    let mut parameters = 0u64;
    let mut file_size = 0u64;
    let mut tensor_types = BTreeMap::new();
    let mut token_embd_rows = None;
    for part in &parts {
        file_size += part.file_size();
        for t in part.tensors() {
            parameters += t.elements;
            *tensor_types
                .entry(t.ggml_type.name().to_owned())
                .or_insert(0) += t.elements;
            if t.name == "token_embd.weight" {
                token_embd_rows = t.dims.get(1).copied();
            }
        }
    }

    let quantization = match file.file_type() {
        Ok(Some((_, Some(name)))) => name.to_owned(),
        _ => dominant(&tensor_types).unwrap_or_else(|| "unknown".into()),
    };
    let attention_heads = lenient_count(file, &keys::head_count(&architecture));
    let vocab_size = lenient_count(file, &keys::vocab_size(&architecture))
        .or_else(|| file.array_len(keys::TOKENIZER_TOKENS).ok().flatten())
        .or(token_embd_rows);
    Ok(ModelInfo {
        format: ModelFormat::Gguf,
        name,
        hub_id,
        parameters,
        quantization,
        tensor_types,
        context_length: lenient_count(file, &keys::context_length(&architecture)),
        file_size,
        layers: lenient_count(file, &keys::block_count(&architecture)),
        hidden_size: lenient_count(file, &keys::embedding_length(&architecture)),
        attention_heads,
        kv_heads: lenient_count(file, &keys::head_count_kv(&architecture)).or(attention_heads),
        vocab_size,
        files,
        architecture,
    })
}

/// Whether `id` has the shape of a hub repository id: `owner/name`, each part letters, digits,
/// `-`, `_` and `.`, not starting with `.` or `-`.
pub fn is_hub_id(id: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    matches!(id.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

fn gguf_hub_id(file: &GgufFile) -> Option<String> {
    let text = |key: &str| {
        file.opt_str(key)
            .ok()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(id) = text("general.source.huggingface.repository").filter(|id| is_hub_id(id)) {
        return Some(id);
    }
    if let Some(url) = text("general.source.url")
        && let Some(rest) = url
            .strip_prefix("https://huggingface.co/")
            .or_else(|| url.strip_prefix("https://hf.co/"))
    {
        let id = rest.split('/').take(2).collect::<Vec<_>>().join("/");
        if is_hub_id(&id) {
            return Some(id);
        }
    }
    None
}

fn folder_hub_id(dir: &Path, config_path: &Path) -> Option<String> {
    // The hub cache: `…/models--owner--name/snapshots/<sha>/`.
    let from_cache = || {
        let canonical = std::fs::canonicalize(dir).ok()?;
        let parts: Vec<String> = canonical
            .iter()
            .rev()
            .take(3)
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let [_sha, snapshots, repo] = parts.as_slice() else {
            return None;
        };
        let (owner, name) = repo.strip_prefix("models--")?.split_once("--")?;
        let id = format!("{owner}/{name}");
        (snapshots == "snapshots" && is_hub_id(&id)).then_some(id)
    };
    if let Some(id) = from_cache() {
        return Some(id);
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config_path).ok()?).ok()?;
    config
        .get("_name_or_path")?
        .as_str()
        .filter(|id| is_hub_id(id))
        .map(str::to_owned)
}

fn inspect_folder(dir: &Path) -> Result<ModelInfo> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::NotAModel {
            reason: "the folder has no config.json (expected a Hugging Face checkpoint, \
                     or give a .gguf file)"
                .into(),
            path: dir.to_path_buf(),
        });
    }
    let config = HfConfig::read(&config_path)?;
    let headers = safetensors::read_folder(dir)?;
    let mut parameters = 0u64;
    let mut tensor_types = BTreeMap::new();
    for t in headers.iter().flat_map(|h| &h.tensors) {
        parameters += t.elements;
        *tensor_types.entry(t.dtype.name().to_owned()).or_insert(0) += t.elements;
    }
    Ok(ModelInfo {
        format: ModelFormat::Safetensors,
        name: None,
        hub_id: folder_hub_id(dir, &config_path),
        architecture: config.architecture().unwrap_or("unknown").to_owned(),
        parameters,
        quantization: dominant(&tensor_types).unwrap_or_else(|| "unknown".into()),
        tensor_types,
        context_length: config.max_position_embeddings,
        file_size: headers.iter().map(|h| h.file_size).sum(),
        layers: config.num_hidden_layers,
        hidden_size: config.hidden_size,
        attention_heads: config.num_attention_heads,
        kv_heads: config.kv_heads(),
        vocab_size: config.vocab_size,
        files: headers.into_iter().map(|h| h.path).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_type_by_weight_count() {
        let types = BTreeMap::from([
            ("F32".to_owned(), 10),
            ("Q4_1".to_owned(), 100),
            ("Q8_0".to_owned(), 50),
        ]);
        assert_eq!(dominant(&types).as_deref(), Some("Q4_1"));
        assert_eq!(dominant(&BTreeMap::new()), None);
    }

    #[test]
    fn hub_ids_from_a_folders_cache_path_or_config() {
        let root = tempfile::tempdir().expect("tempdir");
        let cached = root
            .path()
            .join("models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/abc123");
        std::fs::create_dir_all(&cached).expect("mkdir");
        std::fs::write(cached.join("config.json"), "{}").expect("config");
        assert_eq!(
            folder_hub_id(&cached, &cached.join("config.json")).as_deref(),
            Some("HuggingFaceTB/SmolLM2-135M-Instruct")
        );
        let plain = root.path().join("my-model");
        std::fs::create_dir_all(&plain).expect("mkdir");
        std::fs::write(
            plain.join("config.json"),
            r#"{"_name_or_path": "Qwen/Qwen2.5-0.5B"}"#,
        )
        .expect("config");
        assert_eq!(
            folder_hub_id(&plain, &plain.join("config.json")).as_deref(),
            Some("Qwen/Qwen2.5-0.5B")
        );
        std::fs::write(
            plain.join("config.json"),
            r#"{"_name_or_path": "/home/me/ckpt"}"#,
        )
        .expect("config");
        assert_eq!(folder_hub_id(&plain, &plain.join("config.json")), None);
        assert!(is_hub_id("a/b.c_d-e"));
        for bad in ["", "a", "a/b/c", "/abs", "./x", "a/.b", "a/b c"] {
            assert!(!is_hub_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn supported_architectures() {
        let mut info = ModelInfo {
            format: ModelFormat::Gguf,
            name: None,
            hub_id: None,
            architecture: "qwen3".into(),
            parameters: 0,
            quantization: "F32".into(),
            tensor_types: BTreeMap::new(),
            context_length: None,
            file_size: 0,
            layers: None,
            hidden_size: None,
            attention_heads: None,
            kv_heads: None,
            vocab_size: None,
            files: vec![],
        };
        assert!(info.is_supported_architecture());
        info.architecture = "gpt2".into();
        assert!(!info.is_supported_architecture());
        let json = serde_json::to_value(&info).expect("serializes");
        assert_eq!(json["format"], "gguf");
    }
}
