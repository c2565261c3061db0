//! A small GGUF writer for tests: metadata of every type, F32 / F16 / Q8_0 tensors, and raw
//! tensors of any type (to build broken files on purpose).
//!
//! Only compiled for tests and with the `test-support` feature. The file ends right after the
//! last tensor's data (no trailing padding), so every shorter prefix of it is a truncated file.

use std::path::Path;

use half::f16;

use super::ggml::GgmlType;
use super::gguf::{DEFAULT_ALIGNMENT, ValueType};

/// An owned metadata value to write.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Elements of one type; `element_type` is used when the array is empty.
    Array {
        element_type: ValueType,
        values: Vec<GgufValue>,
    },
}

impl GgufValue {
    /// The value's GGUF type.
    pub fn value_type(&self) -> ValueType {
        match self {
            GgufValue::U8(_) => ValueType::U8,
            GgufValue::I8(_) => ValueType::I8,
            GgufValue::U16(_) => ValueType::U16,
            GgufValue::I16(_) => ValueType::I16,
            GgufValue::U32(_) => ValueType::U32,
            GgufValue::I32(_) => ValueType::I32,
            GgufValue::F32(_) => ValueType::F32,
            GgufValue::Bool(_) => ValueType::Bool,
            GgufValue::String(_) => ValueType::String,
            GgufValue::U64(_) => ValueType::U64,
            GgufValue::I64(_) => ValueType::I64,
            GgufValue::F64(_) => ValueType::F64,
            GgufValue::Array { .. } => ValueType::Array,
        }
    }

    /// An array of strings.
    pub fn strings<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        GgufValue::Array {
            element_type: ValueType::String,
            values: values
                .into_iter()
                .map(|s| GgufValue::String(s.into()))
                .collect(),
        }
    }

    /// An array of `u32`.
    pub fn u32s(values: impl IntoIterator<Item = u32>) -> Self {
        GgufValue::Array {
            element_type: ValueType::U32,
            values: values.into_iter().map(GgufValue::U32).collect(),
        }
    }

    /// An array of `i32`.
    pub fn i32s(values: impl IntoIterator<Item = i32>) -> Self {
        GgufValue::Array {
            element_type: ValueType::I32,
            values: values.into_iter().map(GgufValue::I32).collect(),
        }
    }

    /// An array of `f32`.
    pub fn f32s(values: impl IntoIterator<Item = f32>) -> Self {
        GgufValue::Array {
            element_type: ValueType::F32,
            values: values.into_iter().map(GgufValue::F32).collect(),
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            GgufValue::U8(v) => out.push(*v),
            GgufValue::I8(v) => out.extend(v.to_le_bytes()),
            GgufValue::U16(v) => out.extend(v.to_le_bytes()),
            GgufValue::I16(v) => out.extend(v.to_le_bytes()),
            GgufValue::U32(v) => out.extend(v.to_le_bytes()),
            GgufValue::I32(v) => out.extend(v.to_le_bytes()),
            GgufValue::F32(v) => out.extend(v.to_le_bytes()),
            GgufValue::Bool(v) => out.push(u8::from(*v)),
            GgufValue::String(s) => write_string(out, s.as_bytes()),
            GgufValue::U64(v) => out.extend(v.to_le_bytes()),
            GgufValue::I64(v) => out.extend(v.to_le_bytes()),
            GgufValue::F64(v) => out.extend(v.to_le_bytes()),
            GgufValue::Array {
                element_type,
                values,
            } => {
                out.extend(element_type.id().to_le_bytes());
                out.extend((values.len() as u64).to_le_bytes());
                // Nested arrays carry their own element type and length in their payload.
                for v in values {
                    v.write_payload(out);
                }
            }
        }
    }
}

fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend(bytes);
}

/// A tensor to write: `dims` in ggml order (innermost first) and its encoded bytes.
#[derive(Debug, Clone)]
pub struct GgufTensorSpec {
    /// Tensor name.
    pub name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<u64>,
    /// Numeric ggml type id (any number, so unknown types can be written).
    pub type_id: u32,
    /// Encoded data.
    pub data: Vec<u8>,
}

/// Builds a GGUF file in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorSpec>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file with the default alignment.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version written in the header.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Sets the alignment and writes it as `general.alignment` (u32).
    pub fn alignment(mut self, alignment: u32) -> Self {
        self.alignment = alignment.into();
        self.metadata
            .retain(|(k, _)| k != super::gguf::keys::ALIGNMENT);
        self.metadata.push((
            super::gguf::keys::ALIGNMENT.to_owned(),
            GgufValue::U32(alignment),
        ));
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: &str, value: GgufValue) -> Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Adds a string metadata entry.
    pub fn meta_str(self, key: &str, value: &str) -> Self {
        self.meta(key, GgufValue::String(value.to_owned()))
    }

    /// Adds a `u32` metadata entry.
    pub fn meta_u32(self, key: &str, value: u32) -> Self {
        self.meta(key, GgufValue::U32(value))
    }

    /// Adds a tensor with raw bytes and any type id.
    pub fn raw_tensor(mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> Self {
        self.tensors.push(GgufTensorSpec {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id,
            data,
        });
        self
    }

    /// Adds an F32 tensor.
    pub fn f32_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_tensor(name, dims, GgmlType::F32.id(), data)
    }

    /// Adds an F16 tensor (values rounded to f16).
    pub fn f16_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        self.raw_tensor(name, dims, GgmlType::F16.id(), data)
    }

    /// Adds a Q8_0 tensor: per block of 32, an f16 scale `d = max|x| / 127` and 32 `i8`
    /// values `round(x / d)`. `values.len()` must be a multiple of 32.
    pub fn q8_0_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = quantize_q8_0(values);
        self.raw_tensor(name, dims, GgmlType::Q8_0.id(), data)
    }

    /// The encoded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key.as_bytes());
            out.extend(value.value_type().id().to_le_bytes());
            value.write_payload(&mut out);
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64);
        }
        for (t, offset) in self.tensors.iter().zip(&offsets) {
            write_string(&mut out, t.name.as_bytes());
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        let data_start = align(out.len() as u64);
        out.resize(data_start as usize, 0);
        for (t, offset) in self.tensors.iter().zip(&offsets) {
            out.resize((data_start + offset) as usize, 0);
            out.extend(&t.data);
        }
        out
    }

    /// Writes the file.
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

/// Quantises to Q8_0 blocks (ggml's reference `quantize_row_q8_0`).
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(f16::from_f32(d).to_le_bytes());
        for v in block {
            out.push((v * id).round() as i8 as u8);
        }
    }
    out
}

/// Deterministic pseudo-random values in [-1, 1) for test weights.
pub fn test_values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The shape of a tiny Llama-architecture GGUF built by [`tiny_llama_gguf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyGguf {
    /// Vocabulary size.
    pub vocab: u64,
    /// Hidden size (a multiple of 32 so that Q8_0 fits).
    pub hidden: u64,
    /// Number of blocks.
    pub layers: u64,
    /// Attention heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Feed-forward size (a multiple of 32).
    pub ffn: u64,
    /// Context length.
    pub context: u64,
}

impl Default for TinyGguf {
    fn default() -> Self {
        TinyGguf {
            vocab: 48,
            hidden: 32,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 64,
            context: 256,
        }
    }
}

impl TinyGguf {
    /// Number of weights [`tiny_llama_gguf`] writes (tied embeddings, no output matrix).
    pub fn parameters(&self) -> u64 {
        let head_dim = self.hidden / self.heads;
        let kv = self.kv_heads * head_dim;
        let per_layer = self.hidden * self.hidden * 2
            + self.hidden * kv * 2
            + self.hidden * self.ffn * 3
            + self.hidden * 2;
        self.vocab * self.hidden + self.layers * per_layer + self.hidden
    }
}

/// A valid Llama GGUF: llama.cpp's keys and tensor names, the token embedding in Q8_0, the
/// attention matrices in F16 and the rest in F32, a vocabulary, merges and scores, and
/// `general.file_type` 7 (Q8_0).
pub fn tiny_llama_gguf(spec: &TinyGguf) -> GgufWriter {
    let arch = "llama";
    let h = spec.hidden;
    let kv = spec.kv_heads * (spec.hidden / spec.heads);
    let mut w = GgufWriter::new()
        .meta_str("general.architecture", arch)
        .meta_str("general.name", "Tiny Llama")
        .meta_u32("general.file_type", 7)
        .meta_u32("general.quantization_version", 2)
        .meta_u32(&format!("{arch}.context_length"), spec.context as u32)
        .meta_u32(&format!("{arch}.embedding_length"), h as u32)
        .meta_u32(&format!("{arch}.block_count"), spec.layers as u32)
        .meta_u32(&format!("{arch}.feed_forward_length"), spec.ffn as u32)
        .meta_u32(&format!("{arch}.attention.head_count"), spec.heads as u32)
        .meta_u32(
            &format!("{arch}.attention.head_count_kv"),
            spec.kv_heads as u32,
        )
        .meta(&format!("{arch}.rope.freq_base"), GgufValue::F32(10000.0))
        .meta(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            GgufValue::F32(1e-5),
        )
        .meta_str("tokenizer.ggml.model", "gpt2")
        .meta(
            "tokenizer.ggml.tokens",
            GgufValue::strings((0..spec.vocab).map(|i| format!("tok{i}"))),
        )
        .meta(
            "tokenizer.ggml.token_type",
            GgufValue::i32s((0..spec.vocab).map(|i| if i < 2 { 3 } else { 1 })),
        )
        .meta(
            "tokenizer.ggml.scores",
            GgufValue::f32s((0..spec.vocab).map(|i| -(i as f32))),
        )
        .meta("tokenizer.ggml.merges", GgufValue::strings(["t o", "to k"]))
        .meta_u32("tokenizer.ggml.bos_token_id", 0)
        .meta_u32("tokenizer.ggml.eos_token_id", 1)
        .meta("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
    let mut seed = 0;
    let mut values = |n: u64| {
        seed += 1;
        test_values(seed, n as usize)
    };
    w = w.q8_0_tensor(
        "token_embd.weight",
        &[h, spec.vocab],
        &values(h * spec.vocab),
    );
    for i in 0..spec.layers {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        w = w
            .f32_tensor(&name("attn_norm"), &[h], &values(h))
            .f16_tensor(&name("attn_q"), &[h, h], &values(h * h))
            .f16_tensor(&name("attn_k"), &[h, kv], &values(h * kv))
            .f16_tensor(&name("attn_v"), &[h, kv], &values(h * kv))
            .f16_tensor(&name("attn_output"), &[h, h], &values(h * h))
            .f32_tensor(&name("ffn_norm"), &[h], &values(h))
            .q8_0_tensor(&name("ffn_gate"), &[h, spec.ffn], &values(h * spec.ffn))
            .q8_0_tensor(&name("ffn_up"), &[h, spec.ffn], &values(h * spec.ffn))
            .q8_0_tensor(&name("ffn_down"), &[spec.ffn, h], &values(h * spec.ffn));
    }
    w.f32_tensor("output_norm.weight", &[h], &values(h))
}
