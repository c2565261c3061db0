//! The one error type of the `trainer` crate.
//!
//! Every variant carries the facts a caller needs to act (the file, the byte offset, the key
//! names) as fields, and its message puts the path last.

use std::path::PathBuf;

/// Shorthand for `Result<T, trainer::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A GGUF model file.
    Gguf,
    /// A `.safetensors` weight file.
    Safetensors,
    /// A `model.safetensors.index.json` shard index.
    SafetensorsIndex,
    /// A Hugging Face `config.json`.
    HfConfig,
    /// A run's citation index.
    CitationIndex,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Gguf => "GGUF",
            FileKind::Safetensors => "safetensors",
            FileKind::SafetensorsIndex => "safetensors index",
            FileKind::HfConfig => "config.json",
            FileKind::CitationIndex => "citation index",
        })
    }
}

/// Errors of the `trainer` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation on a file or folder.
    #[error("cannot {action}: {source}: {}", .path.display())]
    Io {
        /// What was being done, e.g. "open the file" or "list the folder".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file ends before something it declares: it was cut short (or a length field is
    /// corrupt).
    #[error(
        "truncated {kind} file: {what} at byte {offset} needs {needed} bytes, \
         but the file is {file_size} bytes long: {}",
        .path.display()
    )]
    Truncated {
        /// The kind of file.
        kind: FileKind,
        /// What was being read, e.g. "key of metadata entry 3" or "data of tensor `output.weight`".
        what: String,
        /// Byte offset in the file where that item starts.
        offset: u64,
        /// How many bytes the item needs from `offset` on.
        needed: u64,
        /// The size of the file.
        file_size: u64,
        /// The file.
        path: PathBuf,
    },

    /// The file does not start with the GGUF magic bytes.
    #[error(
        "not a GGUF file: it starts with {found:02x?} instead of \"GGUF\": {}",
        .path.display()
    )]
    BadMagic {
        /// The first bytes of the file.
        found: Vec<u8>,
        /// The file.
        path: PathBuf,
    },

    /// A GGUF version this reader does not handle (only little-endian v2 and v3 are).
    #[error("unsupported GGUF version {version} (this reader handles versions 2 and 3){}: {}",
        if *.big_endian { ", and big-endian files are not supported" } else { "" },
        .path.display())]
    UnsupportedVersion {
        /// The version number as read (little-endian).
        version: u32,
        /// Whether the version looks like a big-endian file.
        big_endian: bool,
        /// The file.
        path: PathBuf,
    },

    /// A structural problem in a file other than truncation.
    #[error("malformed {kind} file: {what} at byte {offset}: {problem}: {}", .path.display())]
    Malformed {
        /// The kind of file.
        kind: FileKind,
        /// The item with the problem.
        what: String,
        /// Byte offset of that item in the file (0 when not meaningful).
        offset: u64,
        /// What is wrong with it.
        problem: String,
        /// The file.
        path: PathBuf,
    },

    /// A GGUF tensor uses a ggml type id this reader does not know.
    #[error("tensor `{tensor}` has unknown ggml type id {type_id}: {}", .path.display())]
    UnknownTensorType {
        /// The numeric ggml type id.
        type_id: u32,
        /// The tensor's name.
        tensor: String,
        /// The file.
        path: PathBuf,
    },

    /// A safetensors tensor uses a dtype this reader does not know.
    #[error("tensor `{tensor}` has unknown safetensors dtype \"{dtype}\": {}", .path.display())]
    UnknownDtype {
        /// The dtype as written in the header.
        dtype: String,
        /// The tensor's name.
        tensor: String,
        /// The file.
        path: PathBuf,
    },

    /// Required GGUF metadata keys are absent; all of them are listed.
    #[error("missing GGUF metadata {}: {}", .keys.join(", "), .path.display())]
    MissingMetadata {
        /// Every missing key.
        keys: Vec<String>,
        /// The file.
        path: PathBuf,
    },

    /// A GGUF metadata value has another type than the one asked for.
    #[error("GGUF metadata `{key}` is {found}, expected {expected}: {}", .path.display())]
    MetadataType {
        /// The key.
        key: String,
        /// The type asked for, e.g. "u32" or "array of strings".
        expected: &'static str,
        /// What the file holds, e.g. "string" or "u64 5000000000".
        found: String,
        /// The file.
        path: PathBuf,
    },

    /// A JSON file (config.json, a safetensors header or index) could not be parsed.
    #[error("cannot parse {kind} JSON: {message}: {}", .path.display())]
    Json {
        /// Which JSON.
        kind: FileKind,
        /// serde's message, with line and column.
        message: String,
        /// The file.
        path: PathBuf,
    },

    /// Required `config.json` fields are absent; all of them are listed.
    #[error("config.json lacks {}: {}", .fields.join(", "), .path.display())]
    MissingConfigFields {
        /// Every missing field.
        fields: Vec<String>,
        /// The file.
        path: PathBuf,
    },

    /// The path is not something a model can be read from.
    #[error("not a model: {reason}: {}", .path.display())]
    NotAModel {
        /// Why, and what was expected.
        reason: String,
        /// The path given.
        path: PathBuf,
    },

    /// The model's architecture is not one this runtime implements.
    #[error(
        "unsupported architecture \"{architecture}\" (supported: llama, mistral, qwen2, qwen3): {}",
        .path.display()
    )]
    UnsupportedArchitecture {
        /// The architecture named by the file.
        architecture: String,
        /// The model file or folder.
        path: PathBuf,
    },

    /// The model's configuration asks for something this runtime does not implement.
    #[error("unsupported model setting: {what}: {}", .path.display())]
    UnsupportedConfig {
        /// The setting and its value.
        what: String,
        /// The model file or folder.
        path: PathBuf,
    },

    /// A weight the architecture needs is not in the files.
    #[error("missing tensor `{tensor}`: {}", .path.display())]
    MissingTensor {
        /// The tensor's name in the file's own naming.
        tensor: String,
        /// The model file or folder.
        path: PathBuf,
    },

    /// A weight has a shape other than the configuration implies.
    #[error("tensor `{tensor}` has shape {found:?}, expected {expected:?}: {}", .path.display())]
    TensorShape {
        /// The tensor.
        tensor: String,
        /// Its shape in the file, outermost dimension first.
        found: Vec<u64>,
        /// The shape the configuration implies.
        expected: Vec<u64>,
        /// The model file or folder.
        path: PathBuf,
    },

    /// A weight's element type cannot be decoded.
    #[error("tensor `{tensor}`: {source}: {}", .path.display())]
    TensorData {
        /// The tensor.
        tensor: String,
        /// What is wrong with its data.
        #[source]
        source: crate::quant::DequantError,
        /// The model file or folder.
        path: PathBuf,
    },

    /// The tokenizer could not be built or loaded.
    #[error("tokenizer: {message}: {}", .path.display())]
    Tokenizer {
        /// What went wrong.
        message: String,
        /// The tokenizer file or the model file that carries it.
        path: PathBuf,
    },

    /// The chat template failed to compile or render.
    #[error("chat template: {message}: {}", .path.display())]
    ChatTemplate {
        /// minijinja's explanation, with the line.
        message: String,
        /// Where the template came from.
        path: PathBuf,
    },

    /// The prompt does not fit in the context window.
    #[error(
        "the prompt is {tokens} tokens but the context window is {limit} tokens \
         (shorten the conversation or start a new one)"
    )]
    PromptTooLong {
        /// Tokens in the rendered prompt.
        tokens: usize,
        /// The context window.
        limit: usize,
    },

    /// The backend asked for is not compiled in or not usable here.
    #[error("backend {backend} is not available: {detail}")]
    BackendUnavailable {
        /// The backend.
        backend: crate::BackendKind,
        /// Why.
        detail: String,
    },

    /// A LoRA adapter folder that cannot be used with this model.
    #[error("adapter: {what}: {}", .path.display())]
    Adapter {
        /// What is wrong, naming the file, key or field.
        what: String,
        /// The adapter folder or file.
        path: PathBuf,
    },

    /// A training run that cannot start or go on as configured.
    #[error("training: {what}")]
    Training {
        /// What is wrong and what to change.
        what: String,
    },

    /// A training checkpoint that cannot be read back.
    #[error("checkpoint: {what}: {}", .path.display())]
    Checkpoint {
        /// What is wrong.
        what: String,
        /// The checkpoint folder or file.
        path: PathBuf,
    },

    /// A citation index that cannot be built or used as asked.
    #[error("citations: {what}")]
    Citations {
        /// What is wrong and what to do.
        what: String,
    },

    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,

    /// A training-data file that cannot be read as a whole (unknown extension, columns that fit
    /// no format, not a Parquet file).
    #[error("dataset: {what}: {}", .path.display())]
    Dataset {
        /// What is wrong and what was expected.
        what: String,
        /// The dataset file.
        path: PathBuf,
    },

    /// A training-data file whose reading stopped at a row (a corrupt Parquet page, a CSV
    /// read error); rows before it were fine.
    #[error("dataset: cannot read {unit} {number}: {what}: {}", .path.display())]
    DatasetRow {
        /// The 1-based line or row number.
        number: u64,
        /// What `number` counts.
        unit: crate::data::RowUnit,
        /// What went wrong.
        what: String,
        /// The dataset file.
        path: PathBuf,
    },

    /// A training-data file in which no row can be trained on.
    #[error(
        "dataset has no usable rows ({rows_read} read, format {format}): {}: {}",
        crate::data::summarize_problems(.problems), .path.display()
    )]
    NoUsableRows {
        /// Rows in the file.
        rows_read: usize,
        /// The row format detected, or "unknown".
        format: String,
        /// Why rows were skipped (the first few carry into the message).
        problems: Vec<crate::data::RowProblem>,
        /// The dataset file.
        path: PathBuf,
    },

    /// A data-preparation setting out of range (max length, eval fraction).
    #[error("data setting: {what}")]
    DataSetting {
        /// The setting, its value and the allowed range.
        what: String,
    },

    /// A weight cannot be quantised to NF4, or stored NF4 parts do not fit its shape.
    #[error("NF4 weight of {rows} × {cols}: {problem}")]
    Nf4 {
        /// Rows of the weight.
        rows: usize,
        /// Columns of the weight.
        cols: usize,
        /// What is wrong.
        problem: String,
    },
}

impl Error {
    /// The file or folder the error is about, if it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        let path = match self {
            Error::Io { path, .. }
            | Error::Truncated { path, .. }
            | Error::BadMagic { path, .. }
            | Error::UnsupportedVersion { path, .. }
            | Error::Malformed { path, .. }
            | Error::UnknownTensorType { path, .. }
            | Error::UnknownDtype { path, .. }
            | Error::MissingMetadata { path, .. }
            | Error::MetadataType { path, .. }
            | Error::Json { path, .. }
            | Error::MissingConfigFields { path, .. }
            | Error::NotAModel { path, .. }
            | Error::UnsupportedArchitecture { path, .. }
            | Error::UnsupportedConfig { path, .. }
            | Error::MissingTensor { path, .. }
            | Error::TensorShape { path, .. }
            | Error::TensorData { path, .. }
            | Error::Tokenizer { path, .. }
            | Error::ChatTemplate { path, .. }
            | Error::Adapter { path, .. }
            | Error::Checkpoint { path, .. }
            | Error::Dataset { path, .. }
            | Error::DatasetRow { path, .. }
            | Error::NoUsableRows { path, .. } => path,
            Error::PromptTooLong { .. }
            | Error::BackendUnavailable { .. }
            | Error::Training { .. }
            | Error::Citations { .. }
            | Error::Cancelled
            | Error::DataSetting { .. }
            | Error::Nf4 { .. } => return None,
        };
        Some(path)
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
