//! A Hugging Face–compatible hub over a folder: `<root>/<owner>/<name>/…` are dataset
//! repositories and `<root>/.models/<owner>/<name>/…` model repositories, served through the
//! part of the Hub HTTP API that `hf-hub`, `huggingface_hub` and our
//! [`HubClient`](super::HubClient) use:
//!
//! - `GET /api/datasets?search=&filter=&author=&limit=&full=`: the datasets, as the hub lists
//!   them;
//! - `GET /api/{datasets|models}/{owner}/{name}[/revision/{rev}]`: one repository with its
//!   files;
//! - `GET /api/{datasets|models}/{owner}/{name}/tree/{rev}[/{path}][?recursive=true]`: its
//!   file tree;
//! - `GET|HEAD /datasets/{owner}/{name}/resolve/{rev}/{path}` (datasets) and
//!   `/{owner}/{name}/resolve/{rev}/{path}` (models): a file, with `ETag`, `X-Repo-Commit` and
//!   byte ranges;
//! - with a write token, the upload API: see [`write`].
//!
//! A repository has no history here: its one revision is a content hash of its files (their
//! paths and sha256), so it changes exactly when a file does, and `{rev}` is `main` or that
//! hash. Files are hashed once and remembered by (path, modification time, size). Paths are
//! checked before the file system sees them, and symbolic links that lead outside the root are
//! not followed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::Metadata;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

mod write;

use super::{RepoKind, Sha1, git_blob_oid, is_lfs, is_valid_id_part, lfs_pointer};
use crate::error::{Error, Result};
use crate::format::{MANIFEST_FILE, is_safe_relative_path};

/// Bytes per read when sending a file.
const SEND_CHUNK: usize = 1 << 20;
/// Folders deeper than this inside a repository are not listed.
const MAX_DEPTH: usize = 32;
/// The card and `datanet.json` are read for listings only up to this size.
const MAX_METADATA_BYTES: u64 = 4 << 20;
/// Model repositories live under this hidden folder of the root, apart from the Datanets.
pub const MODELS_DIR: &str = ".models";

/// The hub over one root folder. Cheap to clone; clones share the hash cache.
#[derive(Clone)]
pub struct HubServer {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    hashes: Mutex<HashMap<PathBuf, FileHash>>,
    /// The bearer token that the upload API requires; without one the hub is read-only.
    write_token: Option<String>,
    /// Commits to any repository happen one at a time.
    commit_lock: Mutex<()>,
}

#[derive(Clone)]
struct FileHash {
    modified: SystemTime,
    size: u64,
    lfs: bool,
    sha256: String,
    /// The git blob id of the content, or of the LFS pointer for LFS files.
    oid: String,
}

impl HubServer {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubServer {
            shared: Arc::new(Shared {
                root: root.into(),
                hashes: Mutex::new(HashMap::new()),
                write_token: None,
                commit_lock: Mutex::new(()),
            }),
        }
    }

    /// Accepts uploads from clients that present `token` as a bearer token (`None`, or an
    /// empty token: read-only, the default).
    pub fn with_write_token(self, token: Option<String>) -> Self {
        HubServer {
            shared: Arc::new(Shared {
                root: self.shared.root.clone(),
                hashes: Mutex::new(HashMap::new()),
                write_token: token.filter(|t| !t.trim().is_empty()),
                commit_lock: Mutex::new(()),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The hub's routes, to serve alone or to nest under a prefix (`/hub`) in another server.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/datasets", get(list_datasets))
            .route("/api/{kind}/{owner}/{name}", get(repo_info_main))
            .route(
                "/api/{kind}/{owner}/{name}/revision/{rev}",
                get(repo_info_at),
            )
            .route("/api/{kind}/{owner}/{name}/tree/{rev}", get(tree_root))
            .route(
                "/api/{kind}/{owner}/{name}/tree/{rev}/{*path}",
                get(tree_at),
            )
            .route(
                "/datasets/{owner}/{name}/resolve/{rev}/{*path}",
                get(resolve_dataset),
            )
            .route("/{owner}/{name}/resolve/{rev}/{*path}", get(resolve_model))
            .merge(write::routes())
            .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, None, "Not Found".into()) })
            .with_state(self.shared.clone())
    }

    /// Serves until the listener fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and closes
    /// every connection.
    pub async fn serve_with_shutdown(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let root = self.shared.root.clone();
        if let Ok(address) = listener.local_addr() {
            tracing::info!(root = %root.display(), %address, "serving Datanet repositories");
        }
        // Without TCP_NODELAY, each ranged request of a download waits out a delayed ACK
        // (40 ms on Linux) between the response's head and its body.
        let listener = listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::io("serving the hub", root))
    }
}

/// The hub's routes over `root`; see [`HubServer::router`].
pub fn router(root: PathBuf) -> Router {
    HubServer::new(root).router()
}

/// Serves the repositories under `root` on `listener` until it fails.
pub async fn serve(root: PathBuf, listener: tokio::net::TcpListener) -> Result<()> {
    HubServer::new(root).serve(listener).await
}

/// Serves the repositories under `root` on `listener` until `shutdown` completes.
pub async fn serve_with_shutdown(
    root: PathBuf,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    HubServer::new(root)
        .serve_with_shutdown(listener, shutdown)
        .await
}

// ---------------------------------------------------------------------------------------------
// Errors in the real hub's shape: a JSON body `{"error": …}` and the kind in `X-Error-Code`.

struct ApiError {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: Option<&'static str>, message: String) -> Self {
        ApiError {
            status,
            code,
            message,
        }
    }

    fn repo_not_found(kind: RepoKind, owner: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
            format!(
                "Repository not found: {}/{owner}/{name}",
                kind.api_segment()
            ),
        )
    }

    fn unknown_kind(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("Not Found: no repositories of type {segment:?}"),
        )
    }

    fn revision_not_found(rev: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            format!("Invalid rev id: {rev}"),
        )
    }

    fn entry_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            format!("Entry not found: {path}"),
        )
    }

    fn bad_path(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("BadRequest"),
            format!("Invalid path: {path:?} (paths are relative, without `..`)"),
        )
    }

    /// Details stay in the server's log; the client learns only that it was the server.
    fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("Internal error while {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(code) = self.code {
            response
                .headers_mut()
                .insert("x-error-code", HeaderValue::from_static(code));
        }
        response
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

// ---------------------------------------------------------------------------------------------
// Repositories on disk.

struct RepoFile {
    /// Relative to the repository, `/`-separated.
    path: String,
    /// Where the bytes are (a symbolic link's target).
    abs: PathBuf,
    size: u64,
    modified: SystemTime,
    lfs: bool,
    sha256: String,
    oid: String,
}

impl RepoFile {
    /// What `ETag` says: the sha256 for LFS files, the git blob id otherwise (as the hub does).
    fn etag(&self) -> &str {
        if self.lfs { &self.sha256 } else { &self.oid }
    }
}

struct Snapshot {
    owner: String,
    name: String,
    /// Sorted by path.
    files: Vec<RepoFile>,
    sha: String,
    last_modified: SystemTime,
    card_data: Option<Map<String, Value>>,
    description: Option<String>,
}

impl Snapshot {
    fn id(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn file(&self, path: &str) -> Option<&RepoFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    fn check_revision(&self, rev: &str) -> ApiResult<()> {
        if rev == "main" || rev == self.sha {
            Ok(())
        } else {
            Err(ApiError::revision_not_found(rev))
        }
    }

    /// The card's `tags`, then `license:…`, `language:…` and the like, as the hub derives them.
    fn tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        let Some(data) = &self.card_data else {
            return tags;
        };
        let strings = |value: Option<&Value>| -> Vec<String> {
            match value {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        tags.extend(strings(data.get("tags")));
        for key in ["license", "language", "task_categories", "size_categories"] {
            tags.extend(
                strings(data.get(key))
                    .into_iter()
                    .map(|v| format!("{key}:{v}")),
            );
        }
        let mut seen = BTreeSet::new();
        tags.retain(|t| seen.insert(t.clone()));
        tags
    }

    /// The fields the hub's listing and repository info share.
    fn summary(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), self.id().into());
        out.insert("author".into(), self.owner.clone().into());
        out.insert("sha".into(), self.sha.clone().into());
        out.insert("lastModified".into(), timestamp(self.last_modified).into());
        out.insert("private".into(), false.into());
        out.insert("gated".into(), false.into());
        out.insert("disabled".into(), false.into());
        out.insert("downloads".into(), 0.into());
        out.insert("likes".into(), 0.into());
        out.insert("tags".into(), self.tags().into());
        if let Some(description) = &self.description {
            out.insert("description".into(), description.clone().into());
        }
        if let Some(data) = &self.card_data {
            out.insert("cardData".into(), Value::Object(data.clone()));
        }
        out
    }

    fn siblings(&self, blobs: bool) -> Value {
        self.files
            .iter()
            .map(|f| {
                if !blobs {
                    return json!({ "rfilename": f.path });
                }
                let mut entry = json!({ "rfilename": f.path, "blobId": f.oid, "size": f.size });
                if f.lfs {
                    entry["lfs"] = json!({
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": lfs_pointer(&f.sha256, f.size).len(),
                    });
                }
                entry
            })
            .collect()
    }

    fn tree_entry(&self, f: &RepoFile) -> Value {
        let mut entry = json!({ "type": "file", "oid": f.oid, "size": f.size, "path": f.path });
        if f.lfs {
            entry["lfs"] = json!({
                "oid": f.sha256,
                "size": f.size,
                "pointerSize": lfs_pointer(&f.sha256, f.size).len(),
            });
        }
        entry
    }

    /// A folder's id: a hash over what it holds (a stand-in for git's tree id).
    fn directory_entry(&self, dir: &str) -> Value {
        let prefix = format!("{dir}/");
        let mut hash = Sha256::new();
        for f in self.files.iter().filter(|f| f.path.starts_with(&prefix)) {
            hash.update(f.path.as_bytes());
            hash.update([0]);
            hash.update(f.oid.as_bytes());
            hash.update(b"\n");
        }
        let oid = hex::encode(hash.finalize());
        json!({ "type": "directory", "oid": &oid[..40], "size": 0, "path": dir })
    }

    /// The entries of folder `dir` (`""`: the root), or of everything below it.
    fn tree(&self, dir: &str, recursive: bool) -> ApiResult<Vec<Value>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let below: Vec<&RepoFile> = self
            .files
            .iter()
            .filter(|f| f.path.starts_with(&prefix))
            .collect();
        if !dir.is_empty() && below.is_empty() {
            return Err(ApiError::entry_not_found(dir));
        }
        // Sorted by path, folders among files, like the hub's listing.
        let mut entries: BTreeMap<String, Value> = BTreeMap::new();
        for f in below {
            let rest = &f.path[prefix.len()..];
            let mut parts: Vec<&str> = rest.split('/').collect();
            parts.pop();
            let depth = if recursive {
                parts.len()
            } else {
                parts.len().min(1)
            };
            for i in 1..=depth {
                let folder = format!("{prefix}{}", parts[..i].join("/"));
                if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(folder) {
                    let entry = self.directory_entry(slot.key());
                    slot.insert(entry);
                }
            }
            if recursive || parts.is_empty() {
                entries.insert(f.path.clone(), self.tree_entry(f));
            }
        }
        Ok(entries.into_values().collect())
    }
}

fn timestamp(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Shared {
    fn canonical_root(&self) -> ApiResult<PathBuf> {
        std::fs::canonicalize(&self.root).map_err(|e| {
            ApiError::internal(
                "opening the hub's root folder",
                format!("{}: {e}", self.root.display()),
            )
        })
    }

    /// The ids `owner/name` of every repository, sorted.
    fn repo_ids(&self) -> ApiResult<Vec<(String, String)>> {
        let root = self.canonical_root()?;
        let mut ids = Vec::new();
        for owner in read_dir_names(&root)? {
            if !is_valid_id_part(&owner) {
                continue;
            }
            let owner_dir = root.join(&owner);
            if !owner_dir.is_dir() {
                continue;
            }
            for name in read_dir_names(&owner_dir)? {
                if is_valid_id_part(&name) && owner_dir.join(&name).is_dir() {
                    ids.push((owner.clone(), name));
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The folder that holds the repositories of `kind` (not created here).
    fn kind_dir(&self, root: &Path, kind: RepoKind) -> PathBuf {
        match kind {
            RepoKind::Dataset => root.to_path_buf(),
            RepoKind::Model => root.join(MODELS_DIR),
        }
    }

    /// The folder of an existing repository, canonical and inside the root.
    fn repo_dir(&self, kind: RepoKind, owner: &str, name: &str) -> ApiResult<(PathBuf, PathBuf)> {
        if !is_valid_id_part(owner) || !is_valid_id_part(name) {
            return Err(ApiError::repo_not_found(kind, owner, name));
        }
        let root = self.canonical_root()?;
        match std::fs::canonicalize(self.kind_dir(&root, kind).join(owner).join(name)) {
            Ok(dir) if dir.starts_with(&root) && dir.is_dir() => Ok((root, dir)),
            _ => Err(ApiError::repo_not_found(kind, owner, name)),
        }
    }

    /// Reads a repository: its files (hashed), its revision and its card.
    fn snapshot(&self, kind: RepoKind, owner: &str, name: &str) -> ApiResult<Snapshot> {
        let (root, dir) = self.repo_dir(kind, owner, name)?;
        let mut found = Vec::new();
        walk(&dir, "", &root, 0, &mut found)?;
        let mut files = Vec::with_capacity(found.len());
        for (path, abs, meta) in found {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let lfs = is_lfs(&path, meta.len());
            let hash = self.hash(&abs, &meta, lfs).map_err(|e| {
                ApiError::internal("hashing a file", format!("{}: {e}", abs.display()))
            })?;
            files.push(RepoFile {
                path,
                abs,
                size: meta.len(),
                modified,
                lfs,
                sha256: hash.sha256,
                oid: hash.oid,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));

        let mut revision = Sha256::new();
        for f in &files {
            revision.update(f.path.as_bytes());
            revision.update([0]);
            revision.update(f.sha256.as_bytes());
            revision.update(b"\n");
        }
        let sha = hex::encode(revision.finalize())[..40].to_string();
        let last_modified = files
            .iter()
            .map(|f| f.modified)
            .max()
            .or_else(|| std::fs::metadata(&dir).and_then(|m| m.modified()).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);

        let mut snapshot = Snapshot {
            owner: owner.to_string(),
            name: name.to_string(),
            files,
            sha,
            last_modified,
            card_data: None,
            description: None,
        };
        if let Some(readme) = snapshot.file("README.md")
            && let Some(text) = read_small_text(&readme.abs)
        {
            let card = parse_card(&text);
            snapshot.card_data = card.data;
            snapshot.description = card.description;
        }
        if snapshot.description.is_none()
            && let Some(manifest) = snapshot.file(MANIFEST_FILE)
            && let Some(text) = read_small_text(&manifest.abs)
        {
            // A Datanet says what it is in datanet.json even when its card does not.
            snapshot.description = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("description")?.as_str().map(str::to_string))
                .filter(|d| !d.trim().is_empty());
        }
        Ok(snapshot)
    }

    fn hash(&self, abs: &Path, meta: &Metadata, lfs: bool) -> std::io::Result<FileHash> {
        let modified = meta.modified()?;
        let size = meta.len();
        {
            let cache = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = cache.get(abs)
                && h.modified == modified
                && h.size == size
                && h.lfs == lfs
            {
                return Ok(h.clone());
            }
        }
        let mut file = std::fs::File::open(abs)?;
        let mut sha256 = Sha256::new();
        // Git's id of a plain file covers its bytes; an LFS file's covers its pointer.
        let mut sha1 = (!lfs).then(|| {
            let mut s = Sha1::new();
            s.update(format!("blob {size}\0").as_bytes());
            s
        });
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            sha256.update(&buf[..n]);
            if let Some(s) = sha1.as_mut() {
                s.update(&buf[..n]);
            }
        }
        if read != size {
            return Err(std::io::Error::other(
                "the file changed while it was hashed",
            ));
        }
        let sha256 = hex::encode(sha256.finalize());
        let oid = match sha1 {
            Some(s) => hex::encode(s.finish()),
            None => git_blob_oid(lfs_pointer(&sha256, size).as_bytes()),
        };
        let hash = FileHash {
            modified,
            size,
            lfs,
            sha256,
            oid,
        };
        self.hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(abs.to_path_buf(), hash.clone());
        Ok(hash)
    }
}

fn read_dir_names(dir: &Path) -> ApiResult<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ApiError::internal("listing a folder", format!("{}: {e}", dir.display())))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect())
}

/// Collects the files under `dir` as (relative path, where the bytes are, their metadata).
/// Skips `.git` and other hidden folders, names that are not UTF-8 or not safe as URL paths,
/// and symbolic links that leave `root` or lead to folders (which could loop).
fn walk(
    dir: &Path,
    prefix: &str,
    root: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf, Metadata)>,
) -> ApiResult<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ApiError::internal("listing a repository", format!("{}: {e}", dir.display()))
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            ApiError::internal("listing a repository", format!("{}: {e}", dir.display()))
        })?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(path = %path.display(), "skipping a name that is not UTF-8");
            continue;
        };
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if !is_safe_relative_path(&rel) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && depth < MAX_DEPTH {
                walk(&path, &rel, root, depth + 1, out)?;
            }
        } else if kind.is_file() {
            if let Ok(meta) = entry.metadata() {
                out.push((rel, path, meta));
            }
        } else if kind.is_symlink() {
            match std::fs::canonicalize(&path) {
                Ok(target) if target.starts_with(root) && target.is_file() => {
                    if let Ok(meta) = std::fs::metadata(&target) {
                        out.push((rel, target, meta));
                    }
                }
                _ => {
                    tracing::debug!(path = %path.display(), "skipping a link that leaves the root or is not a file");
                }
            }
        }
    }
    Ok(())
}

fn read_small_text(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_METADATA_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

// ---------------------------------------------------------------------------------------------
// The dataset card: YAML front matter (read as far as cards usually go) and the first
// paragraph as a description.

struct Card {
    data: Option<Map<String, Value>>,
    description: Option<String>,
}

fn parse_card(text: &str) -> Card {
    let text = text.trim_start_matches('\u{feff}');
    let mut data = None;
    let mut body = text;
    let mut lines = text.split_inclusive('\n');
    if lines.next().is_some_and(|l| l.trim_end() == "---") {
        let mut offset = text.split_inclusive('\n').next().map_or(0, str::len);
        let start = offset;
        for line in lines {
            if line.trim_end() == "---" {
                data = Some(parse_front_matter(&text[start..offset]));
                body = &text[offset + line.len()..];
                break;
            }
            offset += line.len();
        }
    }
    Card {
        data,
        description: first_paragraph(body),
    }
}

/// Top-level `key: value` pairs, block lists (`- item`) and flow lists (`[a, b]`) of scalars.
/// Keys holding deeper structures (maps, lists of maps) are left out.
fn parse_front_matter(yaml: &str) -> Map<String, Value> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut map = Map::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.trim().is_empty() || line.starts_with([' ', '\t', '-', '#']) {
            continue;
        }
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let key = unquote(key.trim());
        let rest = strip_comment(rest).trim();
        if !rest.is_empty() {
            if let Some(value) = flow_value(rest) {
                map.insert(key, value);
            }
            continue;
        }
        let mut items = Vec::new();
        let mut nested = false;
        while i < lines.len()
            && (lines[i].starts_with([' ', '\t', '-']) || lines[i].trim().is_empty())
        {
            let item = lines[i].trim();
            i += 1;
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            match item.strip_prefix('-') {
                Some(value) if !value.contains(": ") && !value.trim_end().ends_with(':') => {
                    items.push(scalar(strip_comment(value).trim()));
                }
                _ => nested = true,
            }
        }
        if nested {
            tracing::debug!(key, "card metadata too nested for this reader; left out");
        } else if items.is_empty() {
            map.insert(key, Value::Null);
        } else {
            map.insert(key, Value::Array(items));
        }
    }
    map
}

fn strip_comment(value: &str) -> &str {
    let trimmed = value.trim_start();
    if trimmed.starts_with(['"', '\'']) {
        return value;
    }
    match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    }
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        serde_json::from_str::<String>(s).unwrap_or_else(|_| s[1..s.len() - 1].to_string())
    } else if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else {
        s.to_string()
    }
}

fn scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" => Value::Null,
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ if s.starts_with(['"', '\'']) => Value::String(unquote(s)),
        _ => match s.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => Value::String(s.to_string()),
        },
    }
}

/// A scalar or a flow list; `None` for flow maps, which this reader does not model.
fn flow_value(s: &str) -> Option<Value> {
    if s.starts_with('{') {
        return None;
    }
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return Some(scalar(s));
    };
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in inner.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ',') => {
                items.push(scalar(current.trim()));
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        items.push(scalar(current.trim()));
    }
    Some(Value::Array(items))
}

/// The first paragraph of prose in a card's body, up to 500 characters.
fn first_paragraph(body: &str) -> Option<String> {
    let mut paragraph = Vec::new();
    let mut in_code = false;
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_code = !in_code;
            if !paragraph.is_empty() {
                break;
            }
            continue;
        }
        if in_code {
            continue;
        }
        let prose = !(t.is_empty()
            || t.starts_with('#')
            || t.starts_with('<')
            || t.starts_with("![")
            || t.starts_with('|')
            || t.starts_with("---"));
        if prose {
            paragraph.push(t);
        } else if !paragraph.is_empty() {
            break;
        }
    }
    if paragraph.is_empty() {
        return None;
    }
    let text = paragraph.join(" ");
    Some(match text.char_indices().nth(500) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers.

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal("reading the repositories", e))?
}

fn is_true(value: &str) -> bool {
    matches!(value, "true" | "True" | "1")
}

async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let mut search = String::new();
    let mut author = None;
    let mut filters = Vec::new();
    let mut limit = usize::MAX;
    let mut full = false;
    for (key, value) in params {
        match key.as_str() {
            "search" => search = value.to_lowercase(),
            "author" => author = Some(value),
            "filter" => filters.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            "limit" => {
                limit = value.parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        Some("BadRequest"),
                        format!("Invalid limit: {value:?}"),
                    )
                })?
            }
            "full" => full = is_true(&value),
            _ => {}
        }
    }
    let listing = blocking(move || {
        let mut out = Vec::new();
        for (owner, name) in shared.repo_ids()? {
            if out.len() >= limit {
                break;
            }
            let id = format!("{owner}/{name}");
            if !id.to_lowercase().contains(&search) || author.as_ref().is_some_and(|a| *a != owner)
            {
                continue;
            }
            let snapshot = match shared.snapshot(RepoKind::Dataset, &owner, &name) {
                Ok(s) => s,
                // A repository that vanished while listing is simply not listed.
                Err(e) if e.status == StatusCode::NOT_FOUND => continue,
                Err(e) => return Err(e),
            };
            let tags = snapshot.tags();
            if !filters.iter().all(|f| tags.contains(f)) {
                continue;
            }
            let mut entry = snapshot.summary();
            if full {
                entry.insert("siblings".into(), snapshot.siblings(false));
            }
            out.push(Value::Object(entry));
        }
        Ok(out)
    })
    .await?;
    Ok(axum::Json(listing).into_response())
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    #[serde(default)]
    blobs: Option<String>,
}

fn repo_kind(segment: &str) -> ApiResult<RepoKind> {
    RepoKind::from_api_segment(segment).ok_or_else(|| ApiError::unknown_kind(segment))
}

async fn repo_info_main(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name)): UrlPath<(String, String, String)>,
    Query(query): Query<InfoQuery>,
) -> ApiResult<Response> {
    repo_info(shared, repo_kind(&kind)?, owner, name, "main".into(), query).await
}

async fn repo_info_at(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name, rev)): UrlPath<(String, String, String, String)>,
    Query(query): Query<InfoQuery>,
) -> ApiResult<Response> {
    repo_info(shared, repo_kind(&kind)?, owner, name, rev, query).await
}

async fn repo_info(
    shared: Arc<Shared>,
    kind: RepoKind,
    owner: String,
    name: String,
    rev: String,
    query: InfoQuery,
) -> ApiResult<Response> {
    let blobs = query.blobs.as_deref().is_some_and(is_true);
    let info = blocking(move || {
        let snapshot = shared.snapshot(kind, &owner, &name)?;
        snapshot.check_revision(&rev)?;
        let mut info = snapshot.summary();
        info.insert("siblings".into(), snapshot.siblings(blobs));
        if blobs {
            let used: u64 = snapshot.files.iter().map(|f| f.size).sum();
            info.insert("usedStorage".into(), used.into());
        }
        Ok(Value::Object(info))
    })
    .await?;
    Ok(axum::Json(info).into_response())
}

#[derive(serde::Deserialize)]
struct TreeQuery {
    #[serde(default)]
    recursive: Option<String>,
}

async fn tree_root(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name, rev)): UrlPath<(String, String, String, String)>,
    Query(query): Query<TreeQuery>,
) -> ApiResult<Response> {
    let kind = repo_kind(&kind)?;
    tree(shared, kind, owner, name, rev, String::new(), query).await
}

async fn tree_at(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name, rev, path)): UrlPath<(String, String, String, String, String)>,
    Query(query): Query<TreeQuery>,
) -> ApiResult<Response> {
    let kind = repo_kind(&kind)?;
    tree(shared, kind, owner, name, rev, path, query).await
}

async fn tree(
    shared: Arc<Shared>,
    kind: RepoKind,
    owner: String,
    name: String,
    rev: String,
    path: String,
    query: TreeQuery,
) -> ApiResult<Response> {
    let path = path.trim_end_matches('/').to_string();
    if !path.is_empty() && !is_safe_relative_path(&path) {
        return Err(ApiError::bad_path(&path));
    }
    let recursive = query.recursive.as_deref().is_some_and(is_true);
    let entries = blocking(move || {
        let snapshot = shared.snapshot(kind, &owner, &name)?;
        snapshot.check_revision(&rev)?;
        snapshot.tree(&path, recursive)
    })
    .await?;
    Ok(axum::Json(entries).into_response())
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable range (absent, another unit, several ranges, malformed): the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if len == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Part(len.saturating_sub(n), len - 1),
            Err(_) => RangeRequest::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return RangeRequest::Whole,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    // An end past the file means "to the end" (hf-hub asks for one byte past it).
    RangeRequest::Part(start, end.min(len - 1))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("jsonl") => "application/jsonl",
        _ => "application/octet-stream",
    }
}

async fn resolve_dataset(
    State(shared): State<Arc<Shared>>,
    UrlPath(at): UrlPath<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    resolve(shared, RepoKind::Dataset, at, method, headers).await
}

async fn resolve_model(
    State(shared): State<Arc<Shared>>,
    UrlPath(at): UrlPath<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    resolve(shared, RepoKind::Model, at, method, headers).await
}

async fn resolve(
    shared: Arc<Shared>,
    kind: RepoKind,
    (owner, name, rev, path): (String, String, String, String),
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !is_safe_relative_path(&path) {
        tracing::debug!(path, "refused a path outside the repository");
        return Err(ApiError::bad_path(&path));
    }
    let wanted = path.clone();
    let (sha, file) = blocking(move || {
        let mut snapshot = shared.snapshot(kind, &owner, &name)?;
        snapshot.check_revision(&rev)?;
        let at = snapshot
            .files
            .binary_search_by(|f| f.path.as_str().cmp(&wanted))
            .map_err(|_| ApiError::entry_not_found(&wanted))?;
        Ok((snapshot.sha, snapshot.files.swap_remove(at)))
    })
    .await?;

    let len = file.size;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let mut out = HeaderMap::new();
    let quoted = |s: &str| HeaderValue::from_str(&format!("\"{s}\""));
    let value = |s: &str| HeaderValue::from_str(s);
    let header_error = |e| ApiError::internal("writing response headers", e);
    out.insert(header::ETAG, quoted(file.etag()).map_err(header_error)?);
    out.insert(
        HeaderName::from_static("x-repo-commit"),
        value(&sha).map_err(header_error)?,
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file.path)),
    );
    if file.lfs {
        out.insert(
            HeaderName::from_static("x-linked-etag"),
            quoted(&file.sha256).map_err(header_error)?,
        );
        out.insert(
            HeaderName::from_static("x-linked-size"),
            HeaderValue::from(len),
        );
    }

    let (status, start, count) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, len),
        RangeRequest::Part(start, end) => {
            out.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{len}")).map_err(header_error)?,
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        // No byte of an empty file can be asked for, yet hf-hub learns every file's size from
        // the `Content-Range` of a one-byte probe: answer it with the whole (empty) file.
        RangeRequest::Unsatisfiable if len == 0 => {
            out.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes */0"));
            (StatusCode::OK, 0, 0)
        }
        RangeRequest::Unsatisfiable => {
            let mut error = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Some("RangeNotSatisfiable"),
                format!("Range not satisfiable for {} ({len} bytes)", file.path),
            )
            .into_response();
            error.headers_mut().insert(
                header::CONTENT_RANGE,
                value(&format!("bytes */{len}")).map_err(header_error)?,
            );
            return Ok(error);
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));

    let body = if method == Method::HEAD || count == 0 {
        Body::empty()
    } else {
        let mut handle = tokio::fs::File::open(&file.abs).await.map_err(|e| {
            ApiError::internal("opening a file", format!("{}: {e}", file.abs.display()))
        })?;
        if start > 0 {
            handle
                .seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| {
                    ApiError::internal("reading a file", format!("{}: {e}", file.abs.display()))
                })?;
        }
        file_body(handle, count)
    };
    Ok((status, out, body).into_response())
}

/// `count` bytes from `file`'s current position, read as they are sent.
fn file_body(file: tokio::fs::File, count: u64) -> Body {
    let stream = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(SEND_CHUNK as u64) as usize];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was sent",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DATANET_TAG;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 10), Part(0, 0));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Part(2, 9));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), Part(2, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Whole);
    }

    #[test]
    fn cards_give_tags_and_a_description() {
        let card = parse_card(
            "---\nlicense: cc-by-4.0\ntags:\n- datanet\n- medical # a comment\npretty_name: \"Clinic Q&A\"\nlanguage: [en, 'de']\nconfigs:\n- config_name: default\n  data_files: shards/*.parquet\nsize_categories:\n  - n<1K\nrows: 42\n---\n# Clinic\n\n![logo](x.png)\n\nQuestions and answers\nfrom a clinic.\n\nMore text.\n",
        );
        let data = card.data.expect("front matter");
        assert_eq!(data["license"], "cc-by-4.0");
        assert_eq!(data["tags"], json!(["datanet", "medical"]));
        assert_eq!(data["pretty_name"], "Clinic Q&A");
        assert_eq!(data["language"], json!(["en", "de"]));
        assert_eq!(data["rows"], 42);
        assert!(!data.contains_key("configs"), "nested maps are left out");
        assert_eq!(
            card.description.as_deref(),
            Some("Questions and answers from a clinic.")
        );
        let snapshot = Snapshot {
            owner: "o".into(),
            name: "n".into(),
            files: vec![],
            sha: String::new(),
            last_modified: SystemTime::UNIX_EPOCH,
            card_data: Some(data),
            description: None,
        };
        assert_eq!(
            snapshot.tags(),
            [
                "datanet",
                "medical",
                "license:cc-by-4.0",
                "language:en",
                "language:de",
                "size_categories:n<1K"
            ]
        );
        assert!(snapshot.tags().contains(&DATANET_TAG.to_string()));

        let plain = parse_card("Just text.\n");
        assert!(plain.data.is_none());
        assert_eq!(plain.description.as_deref(), Some("Just text."));
        // An unterminated front matter is no front matter.
        assert!(parse_card("---\ntags: [a]\n").data.is_none());
    }
}
