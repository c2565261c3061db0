//! Where a model's weights come from: a GGUF file or a folder of safetensors shards, both
//! memory-mapped. Tensors are looked up by their Hugging Face names; GGUF names are mapped.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::loading::ggml::GgmlType;
use crate::loading::gguf::GgufFile;
use crate::loading::hf_config::HfConfig;
use crate::loading::safetensors::{Dtype, SafetensorsHeader, read_folder};
use crate::quant::{QuantMatrix, dequantize};

/// One tensor's bytes as stored, with its element type and shape (outermost first, as in
/// PyTorch: a Linear weight is `[out_features, in_features]`).
pub struct RawTensor<'a> {
    /// The name in the file.
    pub name: String,
    /// Element type, as a ggml type (safetensors F32/F16/BF16 map to the same ggml types).
    pub ty: GgmlType,
    /// Shape, outermost first.
    pub shape: Vec<u64>,
    /// The bytes, borrowed from the memory map.
    pub bytes: &'a [u8],
}

/// The weight files of one model.
pub enum WeightFiles {
    /// A GGUF file.
    Gguf(GgufFile),
    /// Safetensors shards of a Hugging Face folder.
    Safetensors {
        /// The folder.
        dir: PathBuf,
        /// Each shard's header and memory map.
        shards: Vec<(SafetensorsHeader, Mmap)>,
        /// Tensor name → (shard, index in the shard's header).
        index: HashMap<String, (usize, usize)>,
    },
}

impl WeightFiles {
    /// Opens a GGUF file.
    pub fn gguf(file: GgufFile) -> Self {
        WeightFiles::Gguf(file)
    }

    /// Opens the safetensors shards of a folder.
    pub fn safetensors(dir: &Path) -> Result<Self> {
        Self::from_headers(dir, read_folder(dir)?)
    }

    /// Opens one safetensors file of any name (an adapter, a checkpoint).
    pub fn safetensors_file(path: &Path) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_headers(dir, vec![SafetensorsHeader::read(path)?])
    }

    fn from_headers(dir: &Path, headers: Vec<SafetensorsHeader>) -> Result<Self> {
        let mut shards = Vec::with_capacity(headers.len());
        let mut index = HashMap::new();
        for header in headers {
            let file = File::open(&header.path)
                .map_err(|e| Error::io("open the file", &header.path, e))?;
            // SAFETY: the map is read-only; a file changed underneath while we read it can
            // give wrong weights but not memory unsafety beyond what reading a file gives.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| Error::io("memory-map the file", &header.path, e))?;
            let shard = shards.len();
            for (i, tensor) in header.tensors.iter().enumerate() {
                index.insert(tensor.name.clone(), (shard, i));
            }
            shards.push((header, map));
        }
        Ok(WeightFiles::Safetensors {
            dir: dir.to_path_buf(),
            shards,
            index,
        })
    }

    /// The names of every tensor (Hugging Face names for safetensors, GGUF names for GGUF).
    pub fn tensor_names(&self) -> Vec<String> {
        match self {
            WeightFiles::Gguf(file) => file.tensors().iter().map(|t| t.name.clone()).collect(),
            WeightFiles::Safetensors { shards, .. } => shards
                .iter()
                .flat_map(|(h, _)| h.tensors.iter().map(|t| t.name.clone()))
                .collect(),
        }
    }

    /// The file or folder, for error messages.
    pub fn path(&self) -> &Path {
        match self {
            WeightFiles::Gguf(file) => file.path(),
            WeightFiles::Safetensors { dir, .. } => dir,
        }
    }

    /// The model's configuration: GGUF metadata, or the folder's `config.json`.
    pub fn config(&self) -> Result<HfConfig> {
        match self {
            WeightFiles::Gguf(file) => HfConfig::from_gguf(file),
            WeightFiles::Safetensors { dir, .. } => HfConfig::read(dir.join("config.json")),
        }
    }

    /// Whether the GGUF convention of llama.cpp applies: Llama-architecture q/k rows are
    /// permuted for its "normal" RoPE, and have to be put back in Hugging Face order.
    pub fn has_permuted_qk(&self) -> Result<bool> {
        Ok(match self {
            WeightFiles::Gguf(file) => matches!(file.architecture()?, "llama" | "mistral"),
            WeightFiles::Safetensors { .. } => false,
        })
    }

    /// The tensor with Hugging Face name `hf_name`, if present.
    pub fn get(&self, hf_name: &str) -> Result<Option<RawTensor<'_>>> {
        match self {
            WeightFiles::Gguf(file) => {
                let name = gguf_name(hf_name);
                let Some(info) = file.tensor(&name) else {
                    return Ok(None);
                };
                let bytes = file.tensor_data(info)?;
                Ok(Some(RawTensor {
                    name,
                    ty: info.ggml_type,
                    shape: info.dims.iter().rev().copied().collect(),
                    bytes,
                }))
            }
            WeightFiles::Safetensors { shards, index, .. } => {
                let Some(&(shard, i)) = index.get(hf_name) else {
                    return Ok(None);
                };
                let (header, map) = &shards[shard];
                let tensor = &header.tensors[i];
                let ty = match tensor.dtype {
                    Dtype::F32 => GgmlType::F32,
                    Dtype::F16 => GgmlType::F16,
                    Dtype::BF16 => GgmlType::BF16,
                    other => {
                        return Err(Error::UnsupportedConfig {
                            what: format!(
                                "tensor `{hf_name}` is {}, expected F32, F16 or BF16",
                                other.name()
                            ),
                            path: header.path.clone(),
                        });
                    }
                };
                let range = header.data_range(tensor);
                let bytes = map
                    .get(range.start as usize..range.end as usize)
                    .ok_or_else(|| Error::Truncated {
                        kind: crate::error::FileKind::Safetensors,
                        what: format!("data of tensor `{hf_name}`"),
                        offset: range.start,
                        needed: range.end - range.start,
                        file_size: header.file_size,
                        path: header.path.clone(),
                    })?;
                Ok(Some(RawTensor {
                    name: hf_name.to_owned(),
                    ty,
                    shape: tensor.shape.clone(),
                    bytes,
                }))
            }
        }
    }

    /// Like [`WeightFiles::get`], but a missing tensor is an error.
    pub fn require(&self, hf_name: &str) -> Result<RawTensor<'_>> {
        self.get(hf_name)?.ok_or_else(|| Error::MissingTensor {
            tensor: match self {
                WeightFiles::Gguf(_) => gguf_name(hf_name),
                WeightFiles::Safetensors { .. } => hf_name.to_owned(),
            },
            path: self.path().to_path_buf(),
        })
    }

    /// A tensor of the expected shape as f32 values.
    pub fn f32s(&self, hf_name: &str, expected: &[u64]) -> Result<Vec<f32>> {
        let raw = self.require(hf_name)?;
        self.check_shape(&raw, expected)?;
        dequantize(
            raw.ty,
            raw.bytes,
            raw.shape.iter().product::<u64>() as usize,
        )
        .map_err(|source| Error::TensorData {
            tensor: raw.name.clone(),
            source,
            path: self.path().to_path_buf(),
        })
    }

    /// A 2-D weight `[rows, cols]` kept in its stored encoding.
    pub fn matrix(&self, hf_name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        let raw = self.require(hf_name)?;
        self.check_shape(&raw, &[rows as u64, cols as u64])?;
        QuantMatrix::new(raw.ty, rows, cols, raw.bytes.to_vec()).map_err(|source| {
            Error::TensorData {
                tensor: raw.name.clone(),
                source,
                path: self.path().to_path_buf(),
            }
        })
    }

    fn check_shape(&self, raw: &RawTensor<'_>, expected: &[u64]) -> Result<()> {
        // GGUF stores 1-D norms as [n] and safetensors as [n]; a trailing 1 is tolerated.
        let squeezed: Vec<u64> = raw.shape.iter().copied().filter(|&d| d != 1).collect();
        let want: Vec<u64> = expected.iter().copied().filter(|&d| d != 1).collect();
        if squeezed != want {
            return Err(Error::TensorShape {
                tensor: raw.name.clone(),
                found: raw.shape.clone(),
                expected: expected.to_vec(),
                path: self.path().to_path_buf(),
            });
        }
        Ok(())
    }
}

/// llama.cpp's name for a Hugging Face tensor name (`convert_hf_to_gguf.py`'s table).
pub fn gguf_name(hf_name: &str) -> String {
    const TOP: &[(&str, &str)] = &[
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    const BLOCK: &[(&str, &str)] = &[
        ("input_layernorm", "attn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    if let Some((_, g)) = TOP.iter().find(|(h, _)| *h == hf_name) {
        return (*g).to_owned();
    }
    if let Some(rest) = hf_name.strip_prefix("model.layers.")
        && let Some((layer, part)) = rest.split_once('.')
        && let Some((module, suffix)) = part.rsplit_once('.')
        && let Some((_, g)) = BLOCK.iter().find(|(h, _)| *h == module)
    {
        return format!("blk.{layer}.{g}.{suffix}");
    }
    hf_name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_proj.bias"),
            "blk.12.attn_q.bias"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight"),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("something.else"), "something.else");
    }
}
