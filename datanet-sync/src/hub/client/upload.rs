//! Writing to a hub: create a repository, upload files in one commit, and read a model
//! repository's files back. The protocol is the real hub's (and `hub serve`'s with a write
//! token): `preupload` says which files are LFS objects; those go through the Git LFS batch
//! API (one `PUT`, or the hub's multipart form for large ones) and are committed by their
//! sha256, the rest travel inline in the NDJSON commit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{HubClient, Subject, encode, error_chain, hash_file};
use crate::error::{Error, Result};
use crate::format::is_safe_relative_path;
use crate::hub::{RepoKind, git_blob_oid, is_safe_revision, is_valid_repo_id};

/// How long one upload request may take: LFS objects are large and uplinks slow.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);
/// Bytes of each file sent with `preupload`, as `huggingface_hub` does.
const SAMPLE_BYTES: usize = 512;
const LFS_CONTENT_TYPE: &str = "application/vnd.git-lfs+json";

/// A file in a repository, as its info lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// For LFS files: the sha256 of the content.
    pub sha256: Option<String>,
    /// The git blob id (of the content, or of the LFS pointer).
    pub blob_id: Option<String>,
}

impl RemoteFile {
    /// Whether the local file at `path` has exactly this file's content.
    pub fn matches(&self, path: &Path, sha256: &str) -> std::io::Result<bool> {
        if let Some(remote) = &self.sha256 {
            return Ok(remote == sha256);
        }
        let Some(blob_id) = &self.blob_id else {
            return Ok(false);
        };
        // A plain git file is small (the hub keeps large ones in LFS).
        let content = std::fs::read(path)?;
        Ok(content.len() as u64 == self.size && git_blob_oid(&content) == *blob_id)
    }
}

/// A commit the hub made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    pub oid: String,
    pub url: Option<String>,
}

#[derive(Deserialize)]
struct Info {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<InfoFile>,
}

#[derive(Deserialize)]
struct InfoFile {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<InfoLfs>,
}

#[derive(Deserialize)]
struct InfoLfs {
    sha256: String,
}

/// A local file on its way up.
struct Outgoing {
    path: String,
    local: PathBuf,
    size: u64,
    sha256: String,
    lfs: bool,
}

#[derive(Deserialize)]
struct PreuploadAnswer {
    files: Vec<PreuploadMode>,
}

#[derive(Deserialize)]
struct PreuploadMode {
    path: String,
    #[serde(rename = "uploadMode")]
    upload_mode: String,
    #[serde(default, rename = "shouldIgnore")]
    should_ignore: bool,
}

#[derive(Deserialize)]
struct BatchAnswer {
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    #[serde(default)]
    actions: Option<BatchActions>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct BatchActions {
    #[serde(default)]
    upload: Option<Action>,
    #[serde(default)]
    verify: Option<Action>,
}

#[derive(Deserialize)]
struct Action {
    href: String,
    #[serde(default)]
    header: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct CommitAnswer {
    #[serde(rename = "commitOid")]
    commit_oid: String,
    #[serde(default, rename = "commitUrl")]
    commit_url: Option<String>,
}

fn check_repo_id(kind: RepoKind, id: &str) -> Result<()> {
    if is_valid_repo_id(id) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{id:?} is not a {} repository id (owner/name: letters, digits, '-', '_', '.')",
            kind.type_name()
        )))
    }
}

impl HubClient {
    fn api_url(&self, kind: RepoKind, id: &str) -> String {
        format!("{}/api/{}/{id}", self.endpoint, kind.api_segment())
    }

    /// A request with the token, sent; a network failure becomes an error naming the URL.
    async fn dispatch(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        with_token: bool,
    ) -> Result<reqwest::Response> {
        let request = match (&self.token, with_token) {
            (Some(token), true) => request.bearer_auth(token),
            _ => request,
        };
        request.send().await.map_err(|e| {
            self.hub_error(
                url,
                format!(
                    "no answer: the hub could not be reached ({})",
                    error_chain(&e)
                ),
            )
        })
    }

    async fn json_answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        url: &str,
        subject: &Subject<'_>,
    ) -> Result<T> {
        let response = self.check(response, url, subject).await?;
        let body = response.bytes().await.map_err(|e| {
            self.hub_error(url, format!("an answer cut short ({})", error_chain(&e)))
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            self.hub_error(
                url,
                format!(
                    "a body that is not the expected JSON ({e}): {}",
                    super::snippet(&String::from_utf8_lossy(&body))
                ),
            )
        })
    }

    /// Creates the repository `id` of `kind`; one that exists already is fine.
    pub async fn create_repo(&self, kind: RepoKind, id: &str) -> Result<()> {
        check_repo_id(kind, id)?;
        let url = format!("{}/api/repos/create", self.endpoint);
        let (owner, name) = id.split_once('/').unwrap_or(("", id));
        let body = json!({ "type": kind.type_name(), "name": name, "organization": owner, "private": false });
        let response = self
            .dispatch(self.http.post(&url).json(&body), &url, true)
            .await?;
        if response.status() == reqwest::StatusCode::CONFLICT {
            tracing::debug!(repo = id, "the repository exists already");
            return Ok(());
        }
        self.check(response, &url, &Subject::Repository { kind, id })
            .await?;
        tracing::info!(
            repo = id,
            kind = kind.type_name(),
            "created a repository on the hub"
        );
        Ok(())
    }

    /// The files of a repository at `revision`, and the commit that revision is.
    pub async fn repo_files(
        &self,
        kind: RepoKind,
        id: &str,
        revision: &str,
    ) -> Result<(String, Vec<RemoteFile>)> {
        check_repo_id(kind, id)?;
        let url = format!(
            "{}/revision/{}?blobs=true",
            self.api_url(kind, id),
            encode(revision, false)
        );
        let response = self.dispatch(self.http.get(&url), &url, true).await?;
        let info: Info = self
            .json_answer(response, &url, &Subject::Repository { kind, id })
            .await?;
        let sha = info
            .sha
            .filter(|s| is_safe_revision(s))
            .ok_or_else(|| self.hub_error(&url, "repository info without a valid `sha`"))?;
        let files = info
            .siblings
            .into_iter()
            .map(|f| RemoteFile {
                size: f.size.unwrap_or(0),
                sha256: f.lfs.map(|l| l.sha256),
                blob_id: f.blob_id,
                path: f.rfilename,
            })
            .collect();
        Ok((sha, files))
    }

    /// The files of a model repository at `revision`.
    pub async fn model_files(&self, id: &str, revision: &str) -> Result<Vec<RemoteFile>> {
        Ok(self.repo_files(RepoKind::Model, id, revision).await?.1)
    }

    /// The commit a model repository's `main` is at.
    pub async fn model_revision(&self, id: &str) -> Result<String> {
        Ok(self.repo_files(RepoKind::Model, id, "main").await?.0)
    }

    /// Uploads `files` (path in the repository, local file) to `main` of `id` in one commit.
    pub async fn upload_files(
        &self,
        kind: RepoKind,
        id: &str,
        files: &[(String, PathBuf)],
        summary: &str,
    ) -> Result<CommitInfo> {
        check_repo_id(kind, id)?;
        let subject = Subject::Repository { kind, id };
        let mut outgoing = Vec::with_capacity(files.len());
        for (path, local) in files {
            if !is_safe_relative_path(path) {
                return Err(Error::Invalid(format!(
                    "{path:?} cannot be a path in a repository"
                )));
            }
            let (size, sha256) = hash_file(local.clone()).await?;
            outgoing.push(Outgoing {
                path: path.clone(),
                local: local.clone(),
                size,
                sha256,
                lfs: false,
            });
        }

        // 1. Which files are LFS objects.
        let url = format!("{}/preupload/main", self.api_url(kind, id));
        let mut listed = Vec::with_capacity(outgoing.len());
        for file in &outgoing {
            listed.push(json!({ "path": file.path, "size": file.size, "sample": sample(&file.local).await? }));
        }
        let response = self
            .dispatch(
                self.http.post(&url).json(&json!({ "files": listed })),
                &url,
                true,
            )
            .await?;
        let modes: PreuploadAnswer = self.json_answer(response, &url, &subject).await?;
        let mut ignored = Vec::new();
        for mode in modes.files {
            if let Some(file) = outgoing.iter_mut().find(|f| f.path == mode.path) {
                file.lfs = mode.upload_mode == "lfs";
                if mode.should_ignore {
                    ignored.push(mode.path);
                }
            }
        }
        outgoing.retain(|f| !ignored.contains(&f.path));

        // 2. The LFS objects.
        let lfs: Vec<&Outgoing> = outgoing.iter().filter(|f| f.lfs).collect();
        if !lfs.is_empty() {
            self.upload_lfs(kind, id, &lfs).await?;
        }

        // 3. The commit.
        let engine = base64::engine::general_purpose::STANDARD;
        let mut ndjson = String::new();
        let mut line = |value: Value| {
            ndjson.push_str(&value.to_string());
            ndjson.push('\n');
        };
        line(json!({ "key": "header", "value": { "summary": summary, "description": "" } }));
        for file in &outgoing {
            if file.lfs {
                line(json!({ "key": "lfsFile", "value": {
                    "path": file.path, "algo": "sha256", "oid": file.sha256, "size": file.size,
                }}));
            } else {
                let content = tokio::fs::read(&file.local)
                    .await
                    .map_err(Error::io("reading a file to upload", &file.local))?;
                line(json!({ "key": "file", "value": {
                    "path": file.path, "encoding": "base64", "content": engine.encode(content),
                }}));
            }
        }
        let url = format!("{}/commit/main", self.api_url(kind, id));
        let response = self
            .dispatch(
                self.http
                    .post(&url)
                    .timeout(UPLOAD_TIMEOUT)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(ndjson),
                &url,
                true,
            )
            .await?;
        let answer: CommitAnswer = self.json_answer(response, &url, &subject).await?;
        tracing::info!(repo = id, commit = %answer.commit_oid, files = outgoing.len(), "uploaded");
        Ok(CommitInfo {
            oid: answer.commit_oid,
            url: answer.commit_url,
        })
    }

    async fn upload_lfs(&self, kind: RepoKind, id: &str, files: &[&Outgoing]) -> Result<()> {
        let subject = Subject::Repository { kind, id };
        let url = format!(
            "{}/{}{id}.git/info/lfs/objects/batch",
            self.endpoint,
            kind.url_prefix()
        );
        let objects: Vec<Value> = files
            .iter()
            .map(|f| json!({ "oid": f.sha256, "size": f.size }))
            .collect();
        let body = json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects,
            "hash_algo": "sha256",
            "ref": { "name": "main" },
        });
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, LFS_CONTENT_TYPE)
            .header(reqwest::header::CONTENT_TYPE, LFS_CONTENT_TYPE)
            .body(body.to_string());
        let response = self.dispatch(request, &url, true).await?;
        let answer: BatchAnswer = self.json_answer(response, &url, &subject).await?;
        for object in answer.objects {
            let Some(file) = files.iter().find(|f| f.sha256 == object.oid) else {
                continue;
            };
            if let Some(error) = object.error {
                return Err(self.hub_error(
                    &url,
                    format!("the LFS object of {} was refused: {error}", file.path),
                ));
            }
            let Some(actions) = object.actions else {
                tracing::debug!(path = %file.path, "the hub has this LFS object already");
                continue;
            };
            if let Some(upload) = actions.upload {
                if upload.header.contains_key("chunk_size") {
                    self.upload_multipart(file, &upload, &subject).await?;
                } else {
                    self.upload_whole(file, &upload, &subject).await?;
                }
            }
            if let Some(verify) = actions.verify {
                let request = with_headers(self.http.post(&verify.href), &verify.header)
                    .json(&json!({ "oid": file.sha256, "size": file.size }));
                let response = self.dispatch(request, &verify.href, false).await?;
                self.check(response, &verify.href, &subject).await?;
            }
        }
        Ok(())
    }

    async fn upload_whole(
        &self,
        file: &Outgoing,
        upload: &Action,
        subject: &Subject<'_>,
    ) -> Result<()> {
        let handle = tokio::fs::File::open(&file.local)
            .await
            .map_err(Error::io("reading a file to upload", &file.local))?;
        let request = with_headers(self.http.put(&upload.href), &upload.header)
            .timeout(UPLOAD_TIMEOUT)
            .header(reqwest::header::CONTENT_LENGTH, file.size)
            .body(reqwest::Body::from(handle));
        let response = self.dispatch(request, &upload.href, false).await?;
        self.check(response, &upload.href, subject).await?;
        tracing::debug!(path = %file.path, bytes = file.size, "uploaded an LFS object");
        Ok(())
    }

    /// The hub's multipart form: `header` holds `chunk_size` and one presigned URL per part
    /// (keyed by part number); each part's `ETag` goes into the completion request.
    async fn upload_multipart(
        &self,
        file: &Outgoing,
        upload: &Action,
        subject: &Subject<'_>,
    ) -> Result<()> {
        let chunk_size = upload
            .header
            .get("chunk_size")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                self.hub_error(&upload.href, "a multipart upload without a chunk size")
            })?;
        let mut parts: Vec<(u64, &str)> = upload
            .header
            .iter()
            .filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, v.as_str()?)))
            .collect();
        parts.sort_unstable();
        let mut handle = tokio::fs::File::open(&file.local)
            .await
            .map_err(Error::io("reading a file to upload", &file.local))?;
        let mut etags = Vec::with_capacity(parts.len());
        for (index, (number, part_url)) in parts.iter().enumerate() {
            let offset = index as u64 * chunk_size;
            let length = chunk_size.min(file.size.saturating_sub(offset));
            let mut chunk = vec![0u8; length as usize];
            handle
                .seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(Error::io("reading a file to upload", &file.local))?;
            handle
                .read_exact(&mut chunk)
                .await
                .map_err(Error::io("reading a file to upload", &file.local))?;
            let request = self.http.put(*part_url).timeout(UPLOAD_TIMEOUT).body(chunk);
            let response = self.dispatch(request, part_url, false).await?;
            let response = self.check(response, part_url, subject).await?;
            let etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.hub_error(part_url, "an uploaded part without an ETag"))?
                .to_string();
            etags.push(json!({ "partNumber": number, "etag": etag }));
        }
        let request = self
            .http
            .post(&upload.href)
            .json(&json!({ "oid": file.sha256, "parts": etags }));
        let response = self.dispatch(request, &upload.href, true).await?;
        self.check(response, &upload.href, subject).await?;
        Ok(())
    }

    /// Downloads `path` of model repository `id` (its `main`) to `dest`, whole or not at all.
    pub async fn download_model_file(&self, id: &str, path: &str, dest: &Path) -> Result<()> {
        check_repo_id(RepoKind::Model, id)?;
        if !is_safe_relative_path(path) {
            return Err(Error::Invalid(format!(
                "the hub listed {path:?}, which is not a safe relative path"
            )));
        }
        let url = format!("{}/{id}/resolve/main/{}", self.endpoint, encode(path, true));
        let response = self.dispatch(self.http.get(&url), &url, true).await?;
        let mut response = self
            .check(
                response,
                &url,
                &Subject::File {
                    id,
                    revision: "main",
                    path,
                },
            )
            .await?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(Error::io("creating a folder", parent))?;
        }
        let part = dest.with_extension("part");
        let mut out = tokio::fs::File::create(&part)
            .await
            .map_err(Error::io("writing a download", &part))?;
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                self.hub_error(&url, format!("a download cut short ({})", error_chain(&e)))
            });
            match chunk {
                Ok(Some(bytes)) => out
                    .write_all(&bytes)
                    .await
                    .map_err(Error::io("writing a download", &part))?,
                Ok(None) => break,
                Err(e) => {
                    drop(out);
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(e);
                }
            }
        }
        out.flush()
            .await
            .map_err(Error::io("writing a download", &part))?;
        drop(out);
        tokio::fs::rename(&part, dest)
            .await
            .map_err(Error::io("writing a download", dest))?;
        Ok(())
    }
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &serde_json::Map<String, Value>,
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        if let Some(value) = value.as_str() {
            request = request.header(name.as_str(), value);
        }
    }
    request
}

/// The first bytes of a file, base64, for `preupload`.
async fn sample(path: &Path) -> Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(Error::io("reading a file to upload", path))?;
    let mut buf = vec![0u8; SAMPLE_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read(&mut buf[filled..])
            .await
            .map_err(Error::io("reading a file to upload", path))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}
