//! Reading the headers of `.safetensors` files, one file or a sharded folder.
//!
//! A safetensors file is an 8-byte little-endian header length `N`, `N` bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}}`, offsets
//! relative to the end of the header), then the data. Only the header is read here; a loader maps
//! the file and slices [`SafetensorsHeader::data_range`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, FileKind, Result};

/// The largest JSON header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file checkpoint name.
pub const SINGLE_FILE: &str = "model.safetensors";

/// A safetensors element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs, non_camel_case_types)]
#[non_exhaustive]
pub enum Dtype {
    BOOL,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
    C64,
    F4,
    F6_E2M3,
    F6_E3M2,
}

impl Dtype {
    /// Every known dtype.
    pub const ALL: &'static [Dtype] = &[
        Dtype::BOOL,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8_E5M2,
        Dtype::F8_E4M3,
        Dtype::F8_E8M0,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
        Dtype::C64,
        Dtype::F4,
        Dtype::F6_E2M3,
        Dtype::F6_E3M2,
    ];

    /// The name used in headers, e.g. "BF16".
    pub fn name(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::F8_E8M0 => "F8_E8M0",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::C64 => "C64",
            Dtype::F4 => "F4",
            Dtype::F6_E2M3 => "F6_E2M3",
            Dtype::F6_E3M2 => "F6_E3M2",
        }
    }

    /// The dtype with this header name.
    pub fn from_name(name: &str) -> Option<Self> {
        Dtype::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Bits per element.
    pub fn bits(self) -> u64 {
        match self {
            Dtype::F4 => 4,
            Dtype::F6_E2M3 | Dtype::F6_E3M2 => 6,
            Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3
            | Dtype::F8_E8M0 => 8,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 16,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 32,
            Dtype::F64 | Dtype::I64 | Dtype::U64 | Dtype::C64 => 64,
        }
    }

    /// Bytes taken by `elements` elements; `None` when they do not fill whole bytes.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let bits = elements.checked_mul(self.bits())?;
        bits.is_multiple_of(8).then_some(bits / 8)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsTensor {
    /// The tensor's name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first (PyTorch order).
    pub shape: Vec<u64>,
    /// Number of elements.
    pub elements: u64,
    /// `[begin, end)` of the data, relative to the end of the header.
    pub data_offsets: (u64, u64),
}

/// The parsed header of one `.safetensors` file.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetensorsHeader {
    /// The file.
    pub path: PathBuf,
    /// Size of the file.
    pub file_size: u64,
    /// Offset of the data section (8 + header length).
    pub data_start: u64,
    /// Tensors in data order.
    pub tensors: Vec<SafetensorsTensor>,
    /// The free-form `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl SafetensorsHeader {
    /// Reads and validates the header of a `.safetensors` file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::io("open the file", path, e))?;
        let file_size = file
            .metadata()
            .map_err(|e| Error::io("read the size of the file", path, e))?
            .len();
        let truncated = |what: &str, offset: u64, needed: u64| Error::Truncated {
            kind: FileKind::Safetensors,
            what: what.to_owned(),
            offset,
            needed,
            file_size,
            path: path.to_path_buf(),
        };
        if file_size < 8 {
            return Err(truncated("header length", 0, 8));
        }
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(|e| Error::io("read the file", path, e))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_LEN {
            return Err(Error::Malformed {
                kind: FileKind::Safetensors,
                what: "header length".into(),
                offset: 0,
                problem: format!("{header_len} bytes is more than the limit of {MAX_HEADER_LEN}"),
                path: path.to_path_buf(),
            });
        }
        if 8 + header_len > file_size {
            return Err(truncated(
                &format!("JSON header of {header_len} bytes"),
                8,
                header_len,
            ));
        }
        let mut json = vec![0u8; header_len as usize];
        file.read_exact(&mut json)
            .map_err(|e| Error::io("read the file", path, e))?;
        Self::parse(path, &json, file_size)
    }

    /// Validates a header's JSON bytes against a file of `file_size` bytes.
    fn parse(path: &Path, json: &[u8], file_size: u64) -> Result<Self> {
        let data_start = 8 + json.len() as u64;
        let malformed = |what: String, problem: String| Error::Malformed {
            kind: FileKind::Safetensors,
            what,
            offset: 8,
            problem,
            path: path.to_path_buf(),
        };
        let entries: HashMap<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| Error::Json {
                kind: FileKind::Safetensors,
                message: e.to_string(),
                path: path.to_path_buf(),
            })?;
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            if name == "__metadata__" {
                metadata = serde_json::from_value(value).map_err(|e| {
                    malformed(
                        "`__metadata__`".into(),
                        format!("not a map of strings ({e})"),
                    )
                })?;
                continue;
            }
            let raw: RawTensor = serde_json::from_value(value).map_err(|e| {
                malformed(format!("header entry of tensor `{name}`"), e.to_string())
            })?;
            let dtype = Dtype::from_name(&raw.dtype).ok_or_else(|| Error::UnknownDtype {
                dtype: raw.dtype.clone(),
                tensor: name.clone(),
                path: path.to_path_buf(),
            })?;
            let elements = raw
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    malformed(
                        format!("tensor `{name}`"),
                        format!("shape {:?} overflows", raw.shape),
                    )
                })?;
            let size = dtype.bytes_for(elements).ok_or_else(|| {
                malformed(
                    format!("tensor `{name}`"),
                    format!("{elements} {dtype} elements do not fill whole bytes"),
                )
            })?;
            let (begin, end) = raw.data_offsets;
            if end < begin || end - begin != size {
                return Err(malformed(
                    format!("data_offsets of tensor `{name}`"),
                    format!(
                        "[{begin}, {end}] does not span the {size} bytes of shape {:?} in {dtype}",
                        raw.shape
                    ),
                ));
            }
            if data_start.saturating_add(end) > file_size {
                return Err(Error::Truncated {
                    kind: FileKind::Safetensors,
                    what: format!("data of tensor `{name}`"),
                    offset: data_start.saturating_add(begin),
                    needed: size,
                    file_size,
                    path: path.to_path_buf(),
                });
            }
            tensors.push(SafetensorsTensor {
                name,
                dtype,
                shape: raw.shape,
                elements,
                data_offsets: (begin, end),
            });
        }
        tensors.sort_by(|a, b| (a.data_offsets, &a.name).cmp(&(b.data_offsets, &b.name)));
        for pair in tensors.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            // Empty tensors take no bytes and may share an offset.
            if next.data_offsets.0 < prev.data_offsets.1
                && next.data_offsets.0 != next.data_offsets.1
            {
                return Err(malformed(
                    format!("data of tensor `{}`", next.name),
                    format!("it overlaps the data of tensor `{}`", prev.name),
                ));
            }
        }
        Ok(SafetensorsHeader {
            path: path.to_path_buf(),
            file_size,
            data_start,
            tensors,
            metadata,
        })
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&SafetensorsTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Absolute byte range of a tensor's data in the file.
    pub fn data_range(&self, tensor: &SafetensorsTensor) -> std::ops::Range<u64> {
        self.data_start + tensor.data_offsets.0..self.data_start + tensor.data_offsets.1
    }
}

#[derive(Deserialize)]
struct IndexJson {
    weight_map: BTreeMap<String, String>,
}

/// The weight files of a checkpoint folder: the shards named by `model.safetensors.index.json`
/// when there is one, else `model.safetensors` when it exists, else every `*.safetensors` file
/// (sorted by name). An empty list when there are none.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let (files, _) = read_index(&index)?;
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list the folder", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the folder", dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "safetensors") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a shard index: the shard files in name order, and which shard holds each tensor.
fn read_index(index: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("read the file", index, e))?;
    let parsed: IndexJson = serde_json::from_str(&text).map_err(|e| Error::Json {
        kind: FileKind::SafetensorsIndex,
        message: e.to_string(),
        path: index.to_path_buf(),
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<&String> = parsed
        .weight_map
        .values()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    shards.sort();
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        // A shard is a plain file name next to the index, never a path elsewhere.
        let plain = Path::new(shard)
            .file_name()
            .is_some_and(|n| n == shard.as_str());
        if !plain || shard == ".." {
            return Err(Error::Malformed {
                kind: FileKind::SafetensorsIndex,
                what: "weight_map".into(),
                offset: 0,
                problem: format!("shard {shard:?} is not a file name in the index's folder"),
                path: index.to_path_buf(),
            });
        }
        files.push(dir.join(shard));
    }
    Ok((files, parsed.weight_map))
}

/// Reads the headers of every weight file of a checkpoint folder (see [`weight_files`]),
/// checking that an index agrees with its shards and that no tensor appears twice.
pub fn read_folder(dir: &Path) -> Result<Vec<SafetensorsHeader>> {
    let index_path = dir.join(INDEX_FILE);
    let (files, weight_map) = if index_path.is_file() {
        let (files, map) = read_index(&index_path)?;
        (files, Some(map))
    } else {
        (weight_files(dir)?, None)
    };
    if files.is_empty() {
        return Err(Error::NotAModel {
            reason: "the folder has no .safetensors weight files".into(),
            path: dir.to_path_buf(),
        });
    }
    let headers = files
        .iter()
        .map(SafetensorsHeader::read)
        .collect::<Result<Vec<_>>>()?;
    let mut owner: HashMap<&str, &Path> = HashMap::new();
    for header in &headers {
        for t in &header.tensors {
            if let Some(first) = owner.insert(&t.name, &header.path) {
                return Err(Error::Malformed {
                    kind: FileKind::Safetensors,
                    what: format!("tensor `{}`", t.name),
                    offset: 0,
                    problem: format!("it is also in {}", first.display()),
                    path: header.path.clone(),
                });
            }
        }
    }
    if let Some(map) = weight_map {
        for (tensor, shard) in &map {
            let holder = owner.get(tensor.as_str());
            if holder
                .and_then(|p| p.file_name())
                .is_none_or(|n| n != shard.as_str())
            {
                return Err(Error::Malformed {
                    kind: FileKind::SafetensorsIndex,
                    what: format!("tensor `{tensor}`"),
                    offset: 0,
                    problem: match holder {
                        Some(p) => format!(
                            "the index places it in {shard}, but it is in {}",
                            p.display()
                        ),
                        None => format!("the index places it in {shard}, which does not hold it"),
                    },
                    path: index_path,
                });
            }
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_table() {
        for &d in Dtype::ALL {
            assert_eq!(Dtype::from_name(d.name()), Some(d));
        }
        assert_eq!(Dtype::from_name("F128"), None);
        assert_eq!(Dtype::BF16.bytes_for(3), Some(6));
        assert_eq!(Dtype::F4.bytes_for(3), None);
        assert_eq!(Dtype::F4.bytes_for(4), Some(2));
    }

    #[test]
    fn header_validation() {
        let p = Path::new("w.safetensors");
        let ok = br#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                      "__metadata__": {"format": "pt"}}"#;
        let h = SafetensorsHeader::parse(p, ok, 8 + ok.len() as u64 + 16).expect("valid");
        assert_eq!(h.tensors[0].elements, 4);
        assert_eq!(h.metadata["format"], "pt");
        assert_eq!(
            h.data_range(&h.tensors[0]),
            8 + ok.len() as u64..8 + ok.len() as u64 + 16
        );

        let short = SafetensorsHeader::parse(p, ok, 8 + ok.len() as u64 + 15);
        assert!(
            matches!(
                short,
                Err(Error::Truncated {
                    kind: FileKind::Safetensors,
                    ..
                })
            ),
            "{short:?}"
        );

        let wrong_span = br#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}"#;
        assert!(matches!(
            SafetensorsHeader::parse(p, wrong_span, 1000),
            Err(Error::Malformed { .. })
        ));

        let overlap = br#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                          "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}"#;
        let err = SafetensorsHeader::parse(p, overlap, 1000).expect_err("overlap");
        assert!(err.to_string().contains("overlaps"), "{err}");
    }
}
