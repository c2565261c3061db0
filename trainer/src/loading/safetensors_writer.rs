//! Writes safetensors files: adapters, checkpoints and, in tests, tiny checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use half::bf16;
use serde_json::json;

use super::safetensors::Dtype;

/// A tensor to write.
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first.
    pub shape: Vec<u64>,
    /// Encoded data.
    pub data: Vec<u8>,
}

impl StTensor {
    /// An F32 tensor.
    pub fn f32(name: &str, shape: &[u64], values: &[f32]) -> Self {
        StTensor {
            name: name.to_owned(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A BF16 tensor (values rounded to bf16).
    pub fn bf16(name: &str, shape: &[u64], values: &[f32]) -> Self {
        StTensor {
            name: name.to_owned(),
            dtype: Dtype::BF16,
            shape: shape.to_vec(),
            data: values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }
}

/// Encodes a safetensors file; tensors are laid out in the given order. The header is padded
/// with spaces to a multiple of 8 bytes, as the `safetensors` crate does.
pub fn safetensors_bytes(tensors: &[StTensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.data.len() as u64;
        header.insert(
            t.name.clone(),
            json!({ "dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    raw_safetensors(
        &json,
        &tensors
            .iter()
            .flat_map(|t| t.data.clone())
            .collect::<Vec<_>>(),
    )
}

/// A file from a header's exact bytes and data, for building broken files.
pub fn raw_safetensors(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

/// Writes a safetensors file.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[StTensor]) -> std::io::Result<()> {
    std::fs::write(path, safetensors_bytes(tensors, &BTreeMap::new()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and then
/// renamed, so a crash or a full disk leaves either the old file or the new one, never half.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
