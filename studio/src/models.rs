//! The models of a workspace: registered from a local file or folder, or pulled from a hub.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use trainer::{ModelFormat, ModelInfo};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::jobs::{JobContext, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Ready,
    Missing,
    Unreadable,
}

/// One model as the front ends list it (see docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub id: String,
    pub name: String,
    pub source: String,
    pub path: String,
    pub format: ModelFormat,
    pub architecture: String,
    pub parameters: u64,
    pub quantization: String,
    pub context_length: Option<u64>,
    pub file_size: u64,
    pub layers: Option<u64>,
    pub hidden_size: Option<u64>,
    pub attention_heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub vocab_size: Option<u64>,
    /// The hub repository the model comes from, when known (`owner/name`).
    pub hub_id: Option<String>,
    pub added_at: String,
    pub status: ModelStatus,
    pub problem: Option<String>,
}

impl ModelSummary {
    fn new(
        id: String,
        name: String,
        source: String,
        path: String,
        info: &ModelInfo,
        added_at: String,
    ) -> Self {
        Self {
            id,
            name,
            source,
            path,
            format: info.format,
            architecture: info.architecture.clone(),
            parameters: info.parameters,
            quantization: info.quantization.clone(),
            context_length: info.context_length,
            file_size: info.file_size,
            layers: info.layers,
            hidden_size: info.hidden_size,
            attention_heads: info.attention_heads,
            kv_heads: info.kv_heads,
            vocab_size: info.vocab_size,
            hub_id: info.hub_id.clone(),
            added_at,
            status: ModelStatus::Ready,
            problem: None,
        }
    }
}

/// A hub repo id looks like `owner/name`, with no path-like parts.
/// How a model is named to other tools (PEFT's `base_model_name_or_path`, the lineage
/// manifest): its hub repository when it came from one or its files say which, else the path
/// it was added from.
pub fn portable_id(model: &ModelSummary) -> String {
    if looks_like_repo_id(&model.source) {
        return model.source.clone();
    }
    model.hub_id.clone().unwrap_or_else(|| model.source.clone())
}

pub fn looks_like_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(owner) && ok(name) && !s.starts_with('.')
}

/// A readable, stable id: "SmolLM2 135M Instruct" -> "smollm2-135m-instruct".
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "model".into() } else { out }
}

/// The display name: the file's own name for it, else the file or folder name.
fn display_name(path: &Path, info: &ModelInfo) -> String {
    if let Some(name) = info
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return name.to_string();
    }
    let stem = match info.format {
        ModelFormat::Gguf => path.file_stem(),
        ModelFormat::Safetensors => path.file_name(),
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The columns a model is read with, in the order of [`ModelRow`].
const MODEL_COLUMNS: &str = "id, name, source, path, info_json, added_at";

/// id, name, source, path, info_json, added_at.
type ModelRow = (String, String, String, String, String, String);

fn model_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub struct Models {
    db: Db,
}

impl Models {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Registers a model file or folder already on disk. Registering the same path again
    /// refreshes its metadata and keeps its id.
    pub fn register_path(
        &self,
        path: &Path,
        source: &str,
        name: Option<&str>,
    ) -> Result<ModelSummary> {
        let path = std::fs::canonicalize(path).map_err(|source_err| Error::Io {
            what: format!("reading {}", path.display()),
            source: source_err,
        })?;
        // A config.json inside a folder means the folder.
        let path = if path.file_name().is_some_and(|n| n == "config.json") {
            path.parent().map(Path::to_path_buf).unwrap_or(path)
        } else {
            path
        };
        let info = trainer::inspect_model(&path)?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| display_name(&path, &info));
        let path_text = path.to_string_lossy().into_owned();
        let info_json = serde_json::to_string(&info).map_err(|e| Error::Io {
            what: "serialising model metadata".into(),
            source: std::io::Error::other(e),
        })?;
        let conn = self.db.lock();
        let existing: Option<(String, String)> = conn
            .query_row(
                "SELECT id, added_at FROM models WHERE path = ?1",
                params![path_text],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, added_at) = match existing {
            Some(found) => found,
            None => {
                let base = slug(&name);
                let mut id = base.clone();
                let mut n = 2;
                while conn
                    .query_row(
                        "SELECT 1 FROM models WHERE id = ?1",
                        params![id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some()
                {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                (id, now())
            }
        };
        conn.execute(
            "INSERT INTO models (id, name, source, path, info_json, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET name = ?2, source = ?3, path = ?4, info_json = ?5",
            params![id, name, source, path_text, info_json, added_at],
        )?;
        tracing::info!(%id, path = %path.display(), "registered a model");
        Ok(ModelSummary::new(
            id,
            name,
            source.to_string(),
            path_text,
            &info,
            added_at,
        ))
    }

    /// Every registered model, each checked again against its files.
    pub fn list(&self) -> Result<Vec<ModelSummary>> {
        let rows: Vec<ModelRow> = {
            let conn = self.db.lock();
            let mut stmt = conn.prepare(&format!(
                "SELECT {MODEL_COLUMNS} FROM models ORDER BY added_at, id"
            ))?;
            stmt.query_map([], model_row)?
                .collect::<rusqlite::Result<_>>()?
        };
        Ok(rows
            .into_iter()
            .map(|(id, name, source, path, info_json, added_at)| {
                self.check(id, name, source, path, &info_json, added_at)
            })
            .collect())
    }

    /// One registered model, checked against its files like the list.
    /// Records the hub repository a model's files came from, when they do not say it
    /// themselves (a GGUF converted elsewhere): adapters trained on it name it as their base.
    pub fn set_hub_id(&self, id: &str, hub_id: &str) -> Result<ModelSummary> {
        if !looks_like_repo_id(hub_id) {
            return Err(Error::InvalidInput {
                field: "hub_id".into(),
                message: format!("{hub_id:?} is not a hub repository id (owner/name)"),
            });
        }
        {
            let conn = self.db.lock();
            let info_json: String = conn
                .query_row(
                    "SELECT info_json FROM models WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::ModelNotFound(id.to_string()))?;
            let mut info: serde_json::Value =
                serde_json::from_str(&info_json).map_err(|e| Error::Io {
                    what: format!("reading the stored metadata of model {id}"),
                    source: std::io::Error::other(e),
                })?;
            info["hub_id"] = hub_id.into();
            conn.execute(
                "UPDATE models SET info_json = ?2 WHERE id = ?1",
                params![id, info.to_string()],
            )?;
        }
        self.find(id)
    }

    pub fn find(&self, id: &str) -> Result<ModelSummary> {
        let row: Option<ModelRow> = self
            .db
            .lock()
            .query_row(
                &format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = ?1"),
                params![id],
                model_row,
            )
            .optional()?;
        let (id, name, source, path, info_json, added_at) =
            row.ok_or_else(|| Error::ModelNotFound(id.to_string()))?;
        Ok(self.check(id, name, source, path, &info_json, added_at))
    }

    /// Forgets a model. Its files stay where they are.
    pub fn remove(&self, id: &str) -> Result<()> {
        let n = self
            .db
            .lock()
            .execute("DELETE FROM models WHERE id = ?1", params![id])?;
        if n == 0 {
            return Err(Error::ModelNotFound(id.to_string()));
        }
        Ok(())
    }

    /// The stored metadata, with the status the files have now. A file whose size changed is
    /// read again, so a truncated download shows as unreadable with the reason.
    fn check(
        &self,
        id: String,
        name: String,
        source: String,
        path: String,
        info_json: &str,
        added_at: String,
    ) -> ModelSummary {
        let stored: Option<ModelInfo> = serde_json::from_str(info_json).ok();
        let on_disk = PathBuf::from(&path);
        let mut summary = match &stored {
            Some(info) => ModelSummary::new(id, name, source, path, info, added_at),
            None => ModelSummary {
                id,
                name,
                source,
                path,
                format: ModelFormat::Gguf,
                architecture: String::new(),
                parameters: 0,
                quantization: String::new(),
                context_length: None,
                file_size: 0,
                layers: None,
                hidden_size: None,
                attention_heads: None,
                kv_heads: None,
                vocab_size: None,
                hub_id: None,
                added_at,
                status: ModelStatus::Unreadable,
                problem: Some("the catalog entry is damaged; add the model again".into()),
            },
        };
        let Some(info) = stored else { return summary };
        let missing: Vec<&PathBuf> = info.files.iter().filter(|f| !f.exists()).collect();
        if !on_disk.exists() || !missing.is_empty() {
            summary.status = ModelStatus::Missing;
            let what = missing
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| on_disk.display().to_string());
            summary.problem = Some(format!("file not found: {what}"));
            return summary;
        }
        let size_now: u64 = info
            .files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if size_now != info.file_size {
            match trainer::inspect_model(&on_disk) {
                Ok(fresh) => {
                    let problem = format!(
                        "the files changed since the model was added ({} bytes, was {}); add it again to refresh",
                        size_now, info.file_size
                    );
                    summary = ModelSummary::new(
                        summary.id,
                        summary.name,
                        summary.source,
                        summary.path,
                        &fresh,
                        summary.added_at,
                    );
                    summary.problem = Some(problem);
                }
                Err(e) => {
                    summary.status = ModelStatus::Unreadable;
                    summary.problem = Some(e.to_string());
                }
            }
        }
        summary
    }
}

/// Files pulled for a safetensors model repo: its config, tokenizer, chat template and weights.
fn wanted_from_repo(file: &str) -> bool {
    matches!(
        file,
        "config.json"
            | "generation_config.json"
            | "tokenizer.json"
            | "tokenizer_config.json"
            | "special_tokens_map.json"
            | "model.safetensors.index.json"
    ) || (file.ends_with(".safetensors") && !file.contains('/'))
}

/// Pulls a model repo into `dest` through the Hugging Face Hub API (any compatible endpoint),
/// reporting bytes as they arrive. Files already complete are not fetched again.
pub fn pull_repo(ctx: &JobContext, repo: &str, endpoint: &str, dest: &Path) -> Result<PathBuf> {
    use hf_hub::api::tokio::{ApiBuilder, Progress};

    let fail = |message: String| Error::Download {
        repo: repo.to_string(),
        endpoint: endpoint.to_string(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;

    #[derive(Clone)]
    struct Reporter {
        ctx: JobContext,
        file: String,
        size: usize,
        done: usize,
        started: std::time::Instant,
        // Fraction of the whole pull this file spans.
        span: (f64, f64),
    }
    impl Progress for Reporter {
        async fn init(&mut self, size: usize, filename: &str) {
            self.size = size;
            self.file = filename.to_string();
            self.started = std::time::Instant::now();
        }
        async fn update(&mut self, size: usize) {
            self.done += size;
            let f = if self.size == 0 {
                1.0
            } else {
                self.done as f64 / self.size as f64
            };
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            self.ctx.progress(
                self.span.0 + f * (self.span.1 - self.span.0),
                &format!("downloading {}", self.file),
                &[
                    ("bytes", self.done as f64),
                    ("bytes_per_s", self.done as f64 / secs),
                ],
            );
        }
        async fn finish(&mut self) {}
    }

    runtime.block_on(async {
        let api = ApiBuilder::new()
            .with_endpoint(endpoint.trim_end_matches('/').to_string())
            .with_cache_dir(dest.join(".hub-cache"))
            .with_progress(false)
            .with_token(std::env::var("HF_TOKEN").ok())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let repo_api = api.model(repo.to_string());
        ctx.progress(0.0, "reading the repo's file list", &[]);
        let info = repo_api.info().await.map_err(|e| fail(e.to_string()))?;
        let files: Vec<String> = info
            .siblings
            .iter()
            .map(|s| s.rfilename.clone())
            .filter(|f| wanted_from_repo(f))
            .collect();
        if !files.iter().any(|f| f.ends_with(".safetensors")) {
            return Err(fail(
                "the repo has no .safetensors weights at its top level (GGUF repos: download the .gguf file and add its path)".into(),
            ));
        }
        let folder = dest.join(repo.replace('/', "--"));
        std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
            what: format!("creating {}", folder.display()),
            source,
        })?;
        let n = files.len() as f64;
        for (i, file) in files.iter().enumerate() {
            ctx.check_cancelled()?;
            let reporter = Reporter {
                ctx: ctx.clone(),
                file: file.clone(),
                size: 0,
                done: 0,
                started: std::time::Instant::now(),
                span: (i as f64 / n, (i + 1) as f64 / n),
            };
            let cached = repo_api
                .download_with_progress(file, reporter)
                .await
                .map_err(|e| fail(format!("{file}: {e}")))?;
            let target = folder.join(file);
            // The hub cache's snapshot entries are relative symlinks into its blobs: link the
            // blob itself (a link to the symlink would dangle), so the model folder holds plain
            // files other tools read.
            let blob = std::fs::canonicalize(&cached).unwrap_or(cached.clone());
            let _ = std::fs::remove_file(&target);
            if std::fs::hard_link(&blob, &target).is_err() {
                std::fs::copy(&blob, &target).map_err(|source| Error::Io {
                    what: format!("copying {} to {}", blob.display(), target.display()),
                    source,
                })?;
            }
        }
        Ok(folder)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_paths_are_told_apart() {
        assert!(looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(looks_like_repo_id("Qwen/Qwen2.5-0.5B"));
        assert!(!looks_like_repo_id("model.gguf"));
        assert!(!looks_like_repo_id("./models/x"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("../x"));
    }

    #[test]
    fn slugs_are_readable() {
        assert_eq!(slug("SmolLM2 135M Instruct"), "smollm2-135m-instruct");
        assert_eq!(
            slug("SmolLM2-135M-Instruct.Q4_1"),
            "smollm2-135m-instruct-q4-1"
        );
        assert_eq!(slug("???"), "model");
    }

    #[test]
    fn repo_files_pulled_are_the_ones_a_model_needs() {
        assert!(wanted_from_repo("model-00001-of-00002.safetensors"));
        assert!(wanted_from_repo("tokenizer.json"));
        assert!(!wanted_from_repo("onnx/model.safetensors"));
        assert!(!wanted_from_repo("pytorch_model.bin"));
        assert!(!wanted_from_repo("README.md"));
    }
}
