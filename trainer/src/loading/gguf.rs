//! A GGUF (v2 and v3, little-endian) reader over a memory map.
//!
//! [`GgufFile::open`] maps the file and parses the header, every metadata entry and every tensor
//! info, checking each length and offset against the file size. Large arrays (the tokenizer's
//! vocabulary, merges and scores) are validated but not decoded: they are read on demand through
//! the typed getters. Tensor data stays in the map ([`GgufFile::tensor_data`]).
//!
//! Layout (ggml's `docs/gguf.md`): magic `GGUF`, version `u32`, tensor count `u64`, metadata
//! count `u64`; the metadata entries (key string, value type `u32`, value); the tensor infos
//! (name, `n_dims: u32`, `dims: [u64]`, ggml type `u32`, offset `u64`); padding to
//! `general.alignment` (default 32); the tensor data. Strings are a `u64` length and bytes.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::ggml::{GgmlType, file_type_name};
use crate::error::{Error, FileKind, Result};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays inside arrays that is accepted.
const MAX_ARRAY_DEPTH: u32 = 3;
/// Smallest possible metadata entry: empty key (8), type (4), one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Well-known metadata keys.
pub mod keys {
    /// Architecture name, e.g. "llama"; prefixes the architecture's own keys.
    pub const ARCHITECTURE: &str = "general.architecture";
    /// Human-readable model name.
    pub const NAME: &str = "general.name";
    /// llama.cpp's `llama_ftype` of the file.
    pub const FILE_TYPE: &str = "general.file_type";
    /// Alignment of the data section.
    pub const ALIGNMENT: &str = "general.alignment";
    /// The tokenizer's vocabulary, an array of strings.
    pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
    /// Number of files of a split model.
    pub const SPLIT_COUNT: &str = "split.count";

    /// `{arch}.context_length`.
    pub fn context_length(arch: &str) -> String {
        format!("{arch}.context_length")
    }
    /// `{arch}.block_count`.
    pub fn block_count(arch: &str) -> String {
        format!("{arch}.block_count")
    }
    /// `{arch}.embedding_length`.
    pub fn embedding_length(arch: &str) -> String {
        format!("{arch}.embedding_length")
    }
    /// `{arch}.feed_forward_length`.
    pub fn feed_forward_length(arch: &str) -> String {
        format!("{arch}.feed_forward_length")
    }
    /// `{arch}.attention.head_count`.
    pub fn head_count(arch: &str) -> String {
        format!("{arch}.attention.head_count")
    }
    /// `{arch}.attention.head_count_kv`.
    pub fn head_count_kv(arch: &str) -> String {
        format!("{arch}.attention.head_count_kv")
    }
    /// `{arch}.vocab_size`.
    pub fn vocab_size(arch: &str) -> String {
        format!("{arch}.vocab_size")
    }
}

/// The type of a metadata value, with its GGUF id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with this GGUF id.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The GGUF id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// A short name, e.g. "u32" or "string".
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    /// Size in bytes of a value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Arrays are kept as a reference into the file; read their elements with
/// the array getters of [`GgufFile`].
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// A string; bytes that are not UTF-8 are replaced with U+FFFD.
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(MetadataArray),
}

/// An array value: its element type and length, and where its elements lie in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataArray {
    element_type: ValueType,
    len: u64,
    /// Offset of the first element.
    start: usize,
    /// Offset just past the last element.
    end: usize,
}

impl MetadataArray {
    /// The type of the elements.
    pub fn element_type(&self) -> ValueType {
        self.element_type
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the elements take in the file.
    pub fn byte_len(&self) -> u64 {
        (self.end - self.start) as u64
    }
}

impl MetadataValue {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetadataValue::U8(_) => ValueType::U8,
            MetadataValue::I8(_) => ValueType::I8,
            MetadataValue::U16(_) => ValueType::U16,
            MetadataValue::I16(_) => ValueType::I16,
            MetadataValue::U32(_) => ValueType::U32,
            MetadataValue::I32(_) => ValueType::I32,
            MetadataValue::F32(_) => ValueType::F32,
            MetadataValue::Bool(_) => ValueType::Bool,
            MetadataValue::String(_) => ValueType::String,
            MetadataValue::U64(_) => ValueType::U64,
            MetadataValue::I64(_) => ValueType::I64,
            MetadataValue::F64(_) => ValueType::F64,
            MetadataValue::Array(_) => ValueType::Array,
        }
    }

    /// Any integer value that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U8(v) => Some(v.into()),
            MetadataValue::U16(v) => Some(v.into()),
            MetadataValue::U32(v) => Some(v.into()),
            MetadataValue::U64(v) => Some(v),
            MetadataValue::I8(v) => u64::try_from(v).ok(),
            MetadataValue::I16(v) => u64::try_from(v).ok(),
            MetadataValue::I32(v) => u64::try_from(v).ok(),
            MetadataValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetadataValue::I8(v) => Some(v.into()),
            MetadataValue::I16(v) => Some(v.into()),
            MetadataValue::I32(v) => Some(v.into()),
            MetadataValue::I64(v) => Some(v),
            MetadataValue::U8(v) => Some(v.into()),
            MetadataValue::U16(v) => Some(v.into()),
            MetadataValue::U32(v) => Some(v.into()),
            MetadataValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any float value, or an integer converted to a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(v) => Some(v),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&MetadataArray> {
        match self {
            MetadataValue::Array(v) => Some(v),
            _ => None,
        }
    }

    /// A short description for error messages, e.g. `u64 5000000000` or `array of 3 string`.
    pub fn describe(&self) -> String {
        match self {
            MetadataValue::String(s) => {
                let short: String = s.chars().take(40).collect();
                if short.len() < s.len() {
                    format!("string {short:?}…")
                } else {
                    format!("string {short:?}")
                }
            }
            MetadataValue::Array(a) => format!("array of {} {}", a.len, a.element_type),
            other => format!("{} {other}", other.value_type()),
        }
    }
}

impl fmt::Display for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataValue::U8(v) => write!(f, "{v}"),
            MetadataValue::I8(v) => write!(f, "{v}"),
            MetadataValue::U16(v) => write!(f, "{v}"),
            MetadataValue::I16(v) => write!(f, "{v}"),
            MetadataValue::U32(v) => write!(f, "{v}"),
            MetadataValue::I32(v) => write!(f, "{v}"),
            MetadataValue::F32(v) => write!(f, "{v}"),
            MetadataValue::Bool(v) => write!(f, "{v}"),
            MetadataValue::String(v) => f.write_str(v),
            MetadataValue::U64(v) => write!(f, "{v}"),
            MetadataValue::I64(v) => write!(f, "{v}"),
            MetadataValue::F64(v) => write!(f, "{v}"),
            MetadataValue::Array(a) => write!(f, "[{} × {}]", a.len, a.element_type),
        }
    }
}

/// One tensor as described in the file's tensor infos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml's dimensions, innermost first (`ne[0]` is the row length).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements.
    pub elements: u64,
    /// Number of bytes of data.
    pub size: u64,
}

/// A parsed GGUF file, backed by a memory map of it.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file, validating every length and offset in it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io("open the file", path, e))?;
        // SAFETY: the map is read-only and private to this value. If another process changes
        // or truncates the file while it is mapped, reads may see the new bytes or fault; that
        // is the accepted risk of memory-mapping model files (as llama.cpp and candle do).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map the file", path, e))?;
        let parsed = parse(path, &map)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version: parsed.version,
            metadata_index: parsed
                .metadata
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect(),
            metadata: parsed.metadata,
            tensor_index: parsed
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: parsed.tensors,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Alignment of the data section and of every tensor's data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset in the file where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &MetadataValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor's data (in its ggml type's block layout).
    pub fn tensor_data(&self, tensor: &GgufTensorInfo) -> Result<&[u8]> {
        let start = self.data_offset.checked_add(tensor.offset);
        let end = start.and_then(|s| s.checked_add(tensor.size));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.file_size() => {
                Ok(&self.map[start as usize..end as usize])
            }
            _ => Err(Error::Truncated {
                kind: FileKind::Gguf,
                what: format!("data of tensor `{}`", tensor.name),
                offset: start.unwrap_or(u64::MAX),
                needed: tensor.size,
                file_size: self.file_size(),
                path: self.path.clone(),
            }),
        }
    }

    /// Checks that every key is present; the error lists all missing ones.
    pub fn require(&self, keys: &[&str]) -> Result<()> {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| self.get(k).is_none())
            .map(|k| (*k).to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingMetadata {
                keys: missing,
                path: self.path.clone(),
            })
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.str(keys::ARCHITECTURE)
    }

    /// `general.file_type` and llama.cpp's name for it, e.g. `(3, Some("Q4_1"))`.
    pub fn file_type(&self) -> Result<Option<(u32, Option<&'static str>)>> {
        Ok(self
            .opt_u32(keys::FILE_TYPE)?
            .map(|ft| (ft, file_type_name(ft))))
    }

    fn missing(&self, key: &str) -> Error {
        Error::MissingMetadata {
            keys: vec![key.to_owned()],
            path: self.path.clone(),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: String) -> Error {
        Error::MetadataType {
            key: key.to_owned(),
            expected,
            found,
            path: self.path.clone(),
        }
    }

    fn typed<'s, T>(
        &'s self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'s MetadataValue) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, expected, v.describe())),
        }
    }

    /// An integer value that fits a `u64` (any integer type), if present.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "an unsigned integer", MetadataValue::as_u64)
    }

    /// An integer value that fits a `u64` (any integer type).
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// An integer value that fits a `u32` (any integer type), if present.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an integer that fits u32", |v| {
            v.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    }

    /// An integer value that fits a `u32` (any integer type).
    pub fn u32(&self, key: &str) -> Result<u32> {
        self.opt_u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// An integer value that fits an `i64` (any integer type), if present.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        self.typed(key, "an integer", MetadataValue::as_i64)
    }

    /// A number as `f32` (f32, f64 or an integer), if present.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|v| v as f32))
    }

    /// A number as `f32` (f32, f64 or an integer).
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.opt_f32(key)?.ok_or_else(|| self.missing(key))
    }

    /// A boolean, if present.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", MetadataValue::as_bool)
    }

    /// A string, if present.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", MetadataValue::as_str)
    }

    /// A string.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An array (its type and length), if present.
    pub fn opt_array(&self, key: &str) -> Result<Option<&MetadataArray>> {
        self.typed(key, "an array", MetadataValue::as_array)
    }

    /// The length of an array, if present.
    pub fn array_len(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.opt_array(key)?.map(MetadataArray::len))
    }

    fn array_of(
        &self,
        key: &str,
        expected: &'static str,
        ok: fn(ValueType) -> bool,
    ) -> Result<&MetadataArray> {
        let value = self.get(key).ok_or_else(|| self.missing(key))?;
        match value.as_array() {
            Some(a) if ok(a.element_type) => Ok(a),
            _ => Err(self.wrong_type(key, expected, value.describe())),
        }
    }

    /// The elements of a fixed-size-type array, decoded one by one.
    fn scalars<'s>(&'s self, array: &MetadataArray) -> impl Iterator<Item = MetadataValue> + 's {
        let size = array.element_type.fixed_size().unwrap_or(1) as usize;
        let ty = array.element_type;
        self.map[array.start..array.end]
            .chunks_exact(size)
            .map(move |b| decode_scalar(ty, b))
    }

    /// An array of strings, as bytes (vocabularies are not always valid UTF-8).
    pub fn str_array_bytes(&self, key: &str) -> Result<Vec<&[u8]>> {
        let array = self.array_of(key, "an array of strings", |t| t == ValueType::String)?;
        let mut cursor = Cursor::new(&self.map, &self.path);
        cursor.pos = array.start;
        let mut out = Vec::with_capacity(array.len as usize);
        for i in 0..array.len {
            out.push(cursor.string(&|| format!("element {i} of metadata array `{key}`"))?);
        }
        Ok(out)
    }

    /// An array of strings; an element that is not UTF-8 is an error naming it.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.str_array_bytes(key)?
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                std::str::from_utf8(bytes).map_err(|e| {
                    self.wrong_type(
                        key,
                        "an array of UTF-8 strings",
                        format!("element {i} is not UTF-8 ({e})"),
                    )
                })
            })
            .collect()
    }

    /// An array of integers that fit `u32`.
    pub fn u32_array(&self, key: &str) -> Result<Vec<u32>> {
        let array = self.array_of(key, "an array of integers", is_integer)?;
        self.scalars(array)
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        self.wrong_type(key, "an array of integers that fit u32", v.describe())
                    })
            })
            .collect()
    }

    /// An array of integers that fit `i32`.
    pub fn i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let array = self.array_of(key, "an array of integers", is_integer)?;
        self.scalars(array)
            .map(|v| {
                v.as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| {
                        self.wrong_type(key, "an array of integers that fit i32", v.describe())
                    })
            })
            .collect()
    }

    /// An array of numbers as `f32`.
    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let array = self.array_of(key, "an array of numbers", |t| {
            is_integer(t) || matches!(t, ValueType::F32 | ValueType::F64)
        })?;
        Ok(self
            .scalars(array)
            .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
            .collect())
    }
}

fn is_integer(t: ValueType) -> bool {
    matches!(
        t,
        ValueType::U8
            | ValueType::I8
            | ValueType::U16
            | ValueType::I16
            | ValueType::U32
            | ValueType::I32
            | ValueType::U64
            | ValueType::I64
    )
}

/// Decodes one fixed-size little-endian value; `bytes` has exactly the type's size.
fn decode_scalar(ty: ValueType, bytes: &[u8]) -> MetadataValue {
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&b[..N]);
        out
    }
    match ty {
        ValueType::U8 => MetadataValue::U8(bytes[0]),
        ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(arr(bytes))),
        ValueType::Bool => MetadataValue::Bool(bytes[0] != 0),
        ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(arr(bytes))),
        ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(arr(bytes))),
        ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(arr(bytes))),
        ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(arr(bytes))),
        ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(arr(bytes))),
        ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(arr(bytes))),
        ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(arr(bytes))),
        ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(arr(bytes))),
        // Not fixed-size; callers never pass these.
        ValueType::String | ValueType::Array => MetadataValue::U8(0),
    }
}

/// A bounds-checked little-endian reader that names what it reads in its errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        Cursor {
            bytes,
            pos: 0,
            path,
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn truncated(&self, what: String, offset: usize, needed: u64) -> Error {
        Error::Truncated {
            kind: FileKind::Gguf,
            what,
            offset: offset as u64,
            needed,
            file_size: self.bytes.len() as u64,
            path: self.path.to_path_buf(),
        }
    }

    fn malformed(&self, what: String, offset: usize, problem: impl Into<String>) -> Error {
        Error::Malformed {
            kind: FileKind::Gguf,
            what,
            offset: offset as u64,
            problem: problem.into(),
            path: self.path.to_path_buf(),
        }
    }

    fn take(&mut self, n: u64, what: What<'_>) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what(), self.pos, n));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn skip(&mut self, n: u64, what: What<'_>) -> Result<()> {
        self.take(n, what).map(|_| ())
    }

    fn fixed<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32> {
        self.fixed(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64> {
        self.fixed(what).map(u64::from_le_bytes)
    }

    /// A string: `u64` length, then that many bytes.
    fn string(&mut self, what: What<'_>) -> Result<&'a [u8]> {
        let len = self.u64(what)?;
        self.take(len, what)
    }
}

#[derive(Debug)]
struct Parsed {
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut c = Cursor::new(bytes, path);

    let head = &bytes[..bytes.len().min(4)];
    if !GGUF_MAGIC.starts_with(head) {
        return Err(Error::BadMagic {
            found: head.to_vec(),
            path: path.to_path_buf(),
        });
    }
    c.skip(4, &|| "magic".into())?;
    let version = c.u32(&|| "version".into())?;
    if !matches!(version, 2 | 3) {
        return Err(Error::UnsupportedVersion {
            version,
            big_endian: matches!(version.swap_bytes(), 1..=3),
            path: path.to_path_buf(),
        });
    }
    let tensor_count = c.u64(&|| "tensor count".into())?;
    let kv_count = c.u64(&|| "metadata count".into())?;

    // Counts must fit in what is left of the file before anything is allocated for them.
    let needed = kv_count.saturating_mul(MIN_KV_BYTES);
    if needed > c.remaining() {
        return Err(c.truncated(format!("{kv_count} metadata entries"), c.pos, needed));
    }
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut seen = HashMap::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key_offset = c.pos;
        let key = c.string(&|| format!("key of metadata entry {i}"))?;
        let key = std::str::from_utf8(key)
            .map_err(|e| {
                c.malformed(
                    format!("key of metadata entry {i}"),
                    key_offset,
                    format!("not UTF-8 ({e})"),
                )
            })?
            .to_owned();
        if seen.insert(key.clone(), i).is_some() {
            return Err(c.malformed(
                format!("metadata key `{key}`"),
                key_offset,
                "the key appears twice",
            ));
        }
        let type_offset = c.pos;
        let type_id = c.u32(&|| format!("value type of metadata `{key}`"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| {
            c.malformed(
                format!("value type of metadata `{key}`"),
                type_offset,
                format!("unknown value type id {type_id}"),
            )
        })?;
        let value = read_value(&mut c, ty, &key, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == keys::ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => {
                return Err(c.malformed(
                    format!("metadata `{}`", keys::ALIGNMENT),
                    0,
                    format!("{} is not a power of two", v.describe()),
                ));
            }
        },
    };

    let needed = tensor_count.saturating_mul(MIN_TENSOR_INFO_BYTES);
    if needed > c.remaining() {
        return Err(c.truncated(format!("{tensor_count} tensor infos"), c.pos, needed));
    }
    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(tensor_count as usize);
    let mut names = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let info_offset = c.pos;
        let name = c.string(&|| format!("name of tensor info {i}"))?;
        let name = std::str::from_utf8(name)
            .map_err(|e| {
                c.malformed(
                    format!("name of tensor info {i}"),
                    info_offset,
                    format!("not UTF-8 ({e})"),
                )
            })?
            .to_owned();
        if names.insert(name.clone(), i).is_some() {
            return Err(c.malformed(
                format!("tensor `{name}`"),
                info_offset,
                "the name appears twice",
            ));
        }
        let dims_offset = c.pos;
        let n_dims = c.u32(&|| format!("dimension count of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(c.malformed(
                format!("dimension count of tensor `{name}`"),
                dims_offset,
                format!("{n_dims} dimensions, ggml allows at most {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| {
                if d > i64::MAX as u64 {
                    None
                } else {
                    acc.checked_mul(d)
                }
            })
            .ok_or_else(|| {
                c.malformed(
                    format!("dimensions of tensor `{name}`"),
                    dims_offset,
                    format!("{dims:?} overflow"),
                )
            })?;
        let type_id = c.u32(&|| format!("type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownTensorType {
            type_id,
            tensor: name.clone(),
            path: path.to_path_buf(),
        })?;
        let row = dims.first().copied().unwrap_or(1);
        let whole_blocks = row.is_multiple_of(ggml_type.block_size());
        let size = whole_blocks
            .then(|| ggml_type.bytes_for(elements))
            .flatten()
            .ok_or_else(|| {
                c.malformed(
                    format!("tensor `{name}`"),
                    info_offset,
                    format!(
                        "its rows of {row} elements are not whole {ggml_type} blocks of {}",
                        ggml_type.block_size()
                    ),
                )
            })?;
        let offset_at = c.pos;
        let offset = c.u64(&|| format!("data offset of tensor `{name}`"))?;
        if !offset.is_multiple_of(alignment) {
            return Err(c.malformed(
                format!("data offset of tensor `{name}`"),
                offset_at,
                format!("{offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            elements,
            size,
        });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_size = bytes.len() as u64;
    let mut ranges = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        match start.and_then(|s| s.checked_add(t.size)) {
            Some(end) if end <= file_size => {
                ranges.push((start.unwrap_or(0), end, t.name.as_str()))
            }
            _ => {
                return Err(Error::Truncated {
                    kind: FileKind::Gguf,
                    what: format!("data of tensor `{}` ({} {:?})", t.name, t.ggml_type, t.dims),
                    offset: start.unwrap_or(u64::MAX),
                    needed: t.size,
                    file_size,
                    path: path.to_path_buf(),
                });
            }
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((_, prev_end, prev), (start, _, name)) = (pair[0], pair[1]);
        if start < prev_end {
            return Err(c.malformed(
                format!("data of tensor `{name}`"),
                start as usize,
                format!("it overlaps the data of tensor `{prev}`"),
            ));
        }
    }

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str, depth: u32) -> Result<MetadataValue> {
    let what = || format!("value of metadata `{key}`");
    if let Some(size) = ty.fixed_size() {
        let bytes = c.take(size, &what)?;
        return Ok(decode_scalar(ty, bytes));
    }
    match ty {
        ValueType::String => {
            let s = c.string(&what)?;
            Ok(MetadataValue::String(
                String::from_utf8_lossy(s).into_owned(),
            ))
        }
        _ => {
            let header_offset = c.pos;
            let elem_id = c.u32(&|| format!("element type of metadata array `{key}`"))?;
            let element_type = ValueType::from_id(elem_id).ok_or_else(|| {
                c.malformed(
                    format!("element type of metadata array `{key}`"),
                    header_offset,
                    format!("unknown value type id {elem_id}"),
                )
            })?;
            let len = c.u64(&|| format!("length of metadata array `{key}`"))?;
            let start = c.pos;
            skip_elements(c, element_type, len, key, depth)?;
            Ok(MetadataValue::Array(MetadataArray {
                element_type,
                len,
                start,
                end: c.pos,
            }))
        }
    }
}

/// Moves past `len` elements of an array, checking each string and nested array.
fn skip_elements(c: &mut Cursor<'_>, ty: ValueType, len: u64, key: &str, depth: u32) -> Result<()> {
    if let Some(size) = ty.fixed_size() {
        let needed = len.saturating_mul(size);
        return c.skip(needed, &|| format!("metadata array `{key}` ({len} × {ty})"));
    }
    match ty {
        ValueType::String => {
            for i in 0..len {
                c.string(&|| format!("element {i} of metadata array `{key}`"))?;
            }
            Ok(())
        }
        _ => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(c.malformed(
                    format!("metadata array `{key}`"),
                    c.pos,
                    format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
                ));
            }
            for _ in 0..len {
                read_value(c, ValueType::Array, key, depth + 1)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_conversions_are_lenient_but_exact() {
        assert_eq!(MetadataValue::I32(5).as_u64(), Some(5));
        assert_eq!(MetadataValue::I32(-5).as_u64(), None);
        assert_eq!(MetadataValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetadataValue::U16(7).as_f64(), Some(7.0));
        assert_eq!(MetadataValue::String("x".into()).as_u64(), None);
        assert_eq!(MetadataValue::F32(1.5).describe(), "f32 1.5");
    }

    #[test]
    fn empty_and_short_inputs() {
        let p = Path::new("x.gguf");
        assert!(matches!(
            parse(p, b""),
            Err(Error::Truncated { offset: 0, .. })
        ));
        assert!(matches!(parse(p, b"GG"), Err(Error::Truncated { .. })));
        assert!(matches!(parse(p, b"GX"), Err(Error::BadMagic { .. })));
        let mut v1 = b"GGUF".to_vec();
        v1.extend(1u32.to_le_bytes());
        assert!(matches!(
            parse(p, &v1),
            Err(Error::UnsupportedVersion {
                version: 1,
                big_endian: false,
                ..
            })
        ));
        let mut be = b"GGUF".to_vec();
        be.extend(3u32.to_be_bytes());
        assert!(matches!(
            parse(p, &be),
            Err(Error::UnsupportedVersion {
                big_endian: true,
                ..
            })
        ));
    }

    #[test]
    fn absurd_counts_are_refused_before_allocating() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        let err = parse(Path::new("x.gguf"), &b);
        assert!(
            matches!(err, Err(Error::Truncated { offset: 24, .. })),
            "{err:?}"
        );
    }
}
