//! The hub's upload API, the subset of the real hub's that `huggingface_hub` and our
//! [`HubClient`](crate::hub::HubClient) use to publish:
//!
//! - `POST /api/repos/create` `{type, name, organization}`: a new, empty repository (409 when it
//!   exists, as the hub answers);
//! - `POST /api/validate-yaml`: whether a card's front matter is readable;
//! - `POST /api/{datasets|models}/{owner}/{name}/preupload/{rev}` `{files: [{path, size}]}`:
//!   which files go through LFS (`uploadMode: "lfs"`) and which inline (`"regular"`);
//! - `POST /{datasets/}{owner}/{name}.git/info/lfs/objects/batch`: the Git LFS batch API, which
//!   answers each object not yet stored with a signed upload URL on this server (clients send
//!   LFS bytes without their token, as to a presigned storage URL), where
//!   `PUT …/info/lfs/objects/{oid}?signature=…` stores it once its sha256 checks out;
//! - `POST /api/{datasets|models}/{owner}/{name}/commit/{rev}`: NDJSON lines `header`, `file`
//!   (base64 content), `lfsFile` (an uploaded object) and `deletedFile`.
//!
//! Every route but the card check needs the server's write token as a bearer token (403 when the hub has none,
//! 401 when it is wrong). A commit's files are written to a hidden staging folder in the
//! repository first and renamed into place once all of them arrived, so a commit cut off
//! halfway changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ApiError, ApiResult, RepoKind, Shared, blocking, repo_kind};
use crate::format::is_safe_relative_path;
use crate::hub::{is_lfs, is_valid_id_part};
use subtle::ConstantTimeEq;

/// Where uploaded LFS objects wait for the commit that names them: `<root>/.lfs/objects/<oid>`.
const LFS_DIR: &str = ".lfs";
/// The longest NDJSON line a commit may send (a base64 file of about 48 MiB).
const MAX_COMMIT_LINE: usize = 64 << 20;
const LFS_CONTENT_TYPE: &str = "application/vnd.git-lfs+json";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/repos/create", post(create_repo))
        .route("/api/validate-yaml", post(validate_yaml))
        .route(
            "/api/{kind}/{owner}/{name}/preupload/{rev}",
            post(preupload),
        )
        .route("/api/{kind}/{owner}/{name}/commit/{rev}", post(commit))
        .route(
            "/datasets/{owner}/{name}/info/lfs/objects/batch",
            post(lfs_batch_dataset),
        )
        .route(
            "/{owner}/{name}/info/lfs/objects/batch",
            post(lfs_batch_model),
        )
        .route(
            "/datasets/{owner}/{name}/info/lfs/objects/{oid}",
            put(lfs_put_dataset),
        )
        .route("/{owner}/{name}/info/lfs/objects/{oid}", put(lfs_put_model))
}

impl Shared {
    /// Checks the bearer token of a write request.
    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let Some(expected) = &self.write_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Some("ReadOnly"),
                "This hub is read-only: start it with a write token to accept uploads".into(),
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("InvalidToken"),
                "Invalid credentials: the write token is wrong".into(),
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("MissingToken"),
                "Writing needs the hub's write token as `Authorization: Bearer …`".into(),
            )),
        }
    }

    /// What an upload URL carries instead of a token, as a presigned URL does: it lets its
    /// holder store the one object `oid` (whose bytes are checked against it anyway), and only
    /// someone who knows the write token can make it.
    fn upload_signature(&self, oid: &str) -> Option<String> {
        let token = self.write_token.as_ref()?;
        let mut hash = Sha256::new();
        hash.update(b"modelfactory-lfs-upload\0");
        hash.update(token.as_bytes());
        hash.update([0]);
        hash.update(oid.as_bytes());
        Some(hex::encode(hash.finalize()))
    }

    /// A presigned upload URL's signature, or else the bearer token.
    fn authorize_upload(
        &self,
        headers: &HeaderMap,
        oid: &str,
        signature: Option<&str>,
    ) -> ApiResult<()> {
        match (signature, self.upload_signature(oid)) {
            (Some(given), Some(expected))
                if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) =>
            {
                Ok(())
            }
            _ => self.authorize(headers),
        }
    }

    fn lfs_object(&self, root: &Path, oid: &str) -> PathBuf {
        root.join(LFS_DIR).join("objects").join(oid)
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, Some("BadRequest"), message)
}

fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ApiError + 'a {
    move |e| ApiError::internal(what, format!("{}: {e}", path.display()))
}

/// `http://host/prefix`: this hub's address as the client reached it, for the URLs it answers
/// with. `route_tail` is the part of the request path that the route matched, so whatever the
/// hub is nested under (`/hub`) is kept.
fn external_base(headers: &HeaderMap, uri: &OriginalUri, route_tail: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let path = uri.0.path();
    let prefix = path.strip_suffix(route_tail).unwrap_or("");
    format!("{scheme}://{host}{prefix}")
}

fn is_sha256(oid: &str) -> bool {
    oid.len() == 64
        && oid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A path a commit may write: relative, without `..`, and outside hidden folders (which the hub
/// does not list and where staging happens).
fn check_commit_path(path: &str) -> ApiResult<()> {
    let mut parts = path.split('/').peekable();
    let mut hidden_folder = false;
    while let Some(part) = parts.next() {
        if parts.peek().is_some() && part.starts_with('.') {
            hidden_folder = true;
        }
    }
    if !is_safe_relative_path(path) || hidden_folder {
        return Err(bad_request(format!(
            "Invalid path: {path:?} (paths are relative, without `..` or hidden folders)"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Creating a repository.

#[derive(Deserialize)]
struct CreateRepo {
    name: String,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

async fn create_repo(
    State(shared): State<Arc<Shared>>,
    uri: OriginalUri,
    headers: HeaderMap,
    axum::Json(body): axum::Json<CreateRepo>,
) -> ApiResult<Response> {
    shared.authorize(&headers)?;
    let kind = match body.kind.as_deref().unwrap_or("model") {
        "model" => RepoKind::Model,
        "dataset" => RepoKind::Dataset,
        other => {
            return Err(bad_request(format!(
                "Repositories of type {other:?} are not served here (model or dataset)"
            )));
        }
    };
    let (owner, name) = match (&body.organization, body.name.split_once('/')) {
        (Some(org), None) => (org.clone(), body.name.clone()),
        (None, Some((owner, name))) => (owner.to_string(), name.to_string()),
        (Some(org), Some((owner, name))) if org == owner => (owner.to_string(), name.to_string()),
        _ => {
            return Err(bad_request(
                "Name the repository's owner in `organization` (this hub has no user accounts)"
                    .into(),
            ));
        }
    };
    if !is_valid_id_part(&owner) || !is_valid_id_part(&name) {
        return Err(bad_request(format!(
            "Invalid repository id {owner}/{name}: letters, digits, '-', '_' and '.'"
        )));
    }
    let url = format!(
        "{}/{}{owner}/{name}",
        external_base(&headers, &uri, "/api/repos/create"),
        kind.url_prefix()
    );
    let id = format!("{owner}/{name}");
    let repo = id.clone();
    let created = blocking(move || {
        let root = shared.canonical_root()?;
        let dir = shared.kind_dir(&root, kind).join(&owner).join(&name);
        if dir.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(&dir).map_err(io_error("creating a repository", &dir))?;
        tracing::info!(%repo, kind = kind.type_name(), "created a repository");
        Ok(true)
    })
    .await?;
    let body = json!({ "url": url, "name": id, "id": id });
    if created {
        Ok(axum::Json(body).into_response())
    } else {
        // The hub's 409 carries the repository's URL, which clients read to carry on.
        let message = format!("You already created this {} repo", kind.type_name());
        let mut error = (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": message, "url": url })),
        )
            .into_response();
        error
            .headers_mut()
            .insert("x-error-code", HeaderValue::from_static("RepoExists"));
        Ok(error)
    }
}

// ---------------------------------------------------------------------------------------------
// Checking a card before it is uploaded (`huggingface_hub` asks before committing a README).

#[derive(Deserialize)]
struct CardToCheck {
    content: String,
}

async fn validate_yaml(axum::Json(body): axum::Json<CardToCheck>) -> Response {
    let text = body.content.trim_start_matches('\u{feff}');
    let opens = text.lines().next().is_some_and(|l| l.trim_end() == "---");
    let closes = text.lines().skip(1).any(|l| l.trim_end() == "---");
    if opens && !closes {
        let message = "the YAML front matter opened by `---` is never closed";
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({ "error": message, "errors": [{ "message": message }], "warnings": [] }),
            ),
        )
            .into_response();
    }
    axum::Json(json!({ "errors": [], "warnings": [] })).into_response()
}

// ---------------------------------------------------------------------------------------------
// Which files go through LFS.

#[derive(Deserialize)]
struct Preupload {
    files: Vec<PreuploadFile>,
}

#[derive(Deserialize)]
struct PreuploadFile {
    path: String,
    size: u64,
}

async fn preupload(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name, _rev)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Preupload>,
) -> ApiResult<Response> {
    let kind = repo_kind(&kind)?;
    shared.authorize(&headers)?;
    let snapshot = blocking(move || shared.snapshot(kind, &owner, &name)).await?;
    let mut files = Vec::with_capacity(body.files.len());
    for file in body.files {
        check_commit_path(&file.path)?;
        let lfs = is_lfs(&file.path, file.size);
        // What the file is now, in the form the client compares with (sha256 for LFS, the
        // git blob id otherwise), so that unchanged files are not sent again.
        let oid = snapshot.file(&file.path).filter(|f| f.lfs == lfs).map(|f| {
            if f.lfs {
                f.sha256.clone()
            } else {
                f.oid.clone()
            }
        });
        let mode = if lfs { "lfs" } else { "regular" };
        files.push(
            json!({ "path": file.path, "uploadMode": mode, "shouldIgnore": false, "oid": oid }),
        );
    }
    Ok(axum::Json(json!({ "files": files })).into_response())
}

// ---------------------------------------------------------------------------------------------
// Git LFS: the batch API and the uploads it points to.

#[derive(Deserialize)]
struct Batch {
    operation: String,
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    size: u64,
}

/// `name.git` as the LFS URLs carry it.
fn strip_git(name: &str) -> ApiResult<&str> {
    name.strip_suffix(".git")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, None, "Not Found".into()))
}

async fn lfs_batch_dataset(
    State(shared): State<Arc<Shared>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    uri: OriginalUri,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Batch>,
) -> ApiResult<Response> {
    lfs_batch(shared, RepoKind::Dataset, owner, name, uri, headers, body).await
}

async fn lfs_batch_model(
    State(shared): State<Arc<Shared>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    uri: OriginalUri,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Batch>,
) -> ApiResult<Response> {
    lfs_batch(shared, RepoKind::Model, owner, name, uri, headers, body).await
}

async fn lfs_batch(
    shared: Arc<Shared>,
    kind: RepoKind,
    owner: String,
    name: String,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Batch,
) -> ApiResult<Response> {
    shared.authorize(&headers)?;
    let name = strip_git(&name)?.to_string();
    if body.operation != "upload" {
        return Err(bad_request(format!(
            "LFS operation {:?} is not served here: files download through resolve URLs",
            body.operation
        )));
    }
    // The object URLs sit beside the batch URL.
    let batch_url = external_base(&headers, &uri, "");
    let objects_url = batch_url.trim_end_matches("/batch").to_string();
    let objects = blocking(move || {
        let (root, _) = shared.repo_dir(kind, &owner, &name)?;
        let mut out = Vec::with_capacity(body.objects.len());
        for object in body.objects {
            if !is_sha256(&object.oid) {
                out.push(json!({
                    "oid": object.oid, "size": object.size,
                    "error": { "code": 422, "message": "an oid is a lowercase sha256" },
                }));
                continue;
            }
            let stored = std::fs::metadata(shared.lfs_object(&root, &object.oid))
                .is_ok_and(|m| m.len() == object.size);
            let mut entry =
                json!({ "oid": object.oid, "size": object.size, "authenticated": true });
            if !stored {
                // Clients send the bytes to this URL as they would to storage, without their
                // token: the URL is signed instead.
                let signature = shared.upload_signature(&object.oid).unwrap_or_default();
                let href = format!("{objects_url}/{}?signature={signature}", object.oid);
                entry["actions"] = json!({ "upload": { "href": href } });
            }
            out.push(entry);
        }
        Ok(out)
    })
    .await?;
    let mut response = axum::Json(json!({
        "transfer": "basic",
        "objects": objects,
        "hash_algo": "sha256",
    }))
    .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(LFS_CONTENT_TYPE),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    signature: Option<String>,
}

async fn lfs_put_dataset(
    State(shared): State<Arc<Shared>>,
    UrlPath((owner, name, oid)): UrlPath<(String, String, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    shared.authorize_upload(&headers, &oid, signed.signature.as_deref())?;
    lfs_put(shared, RepoKind::Dataset, owner, name, oid, body).await
}

async fn lfs_put_model(
    State(shared): State<Arc<Shared>>,
    UrlPath((owner, name, oid)): UrlPath<(String, String, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    shared.authorize_upload(&headers, &oid, signed.signature.as_deref())?;
    lfs_put(shared, RepoKind::Model, owner, name, oid, body).await
}

/// Stores one LFS object once its bytes hash to its name.
async fn lfs_put(
    shared: Arc<Shared>,
    kind: RepoKind,
    owner: String,
    name: String,
    oid: String,
    body: Body,
) -> ApiResult<Response> {
    let name = strip_git(&name)?.to_string();
    if !is_sha256(&oid) {
        return Err(bad_request(format!("Invalid LFS oid {oid:?}")));
    }
    let lookup = shared.clone();
    let root = blocking(move || lookup.repo_dir(kind, &owner, &name).map(|(root, _)| root)).await?;
    let target = shared.lfs_object(&root, &oid);
    let tmp_dir = root.join(LFS_DIR).join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(io_error("creating the LFS store", &tmp_dir))?;
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_error("creating the LFS store", parent))?;
    }
    let tmp = tmp_dir.join(format!("{oid}.{}", uuid::Uuid::new_v4().simple()));
    let result = receive_object(&tmp, &oid, body).await;
    match result {
        Ok(()) => {
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(io_error("storing an LFS object", &target))?;
            Ok(StatusCode::OK.into_response())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

async fn receive_object(tmp: &Path, oid: &str, body: Body) -> ApiResult<()> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(io_error("receiving an LFS object", tmp))?;
    let mut hash = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad_request(format!("The upload broke off: {e}")))?;
        hash.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io_error("receiving an LFS object", tmp))?;
    }
    file.sync_all()
        .await
        .map_err(io_error("receiving an LFS object", tmp))?;
    let actual = hex::encode(hash.finalize());
    if actual != oid {
        return Err(bad_request(format!(
            "The uploaded bytes hash to {actual}, not to the object's oid {oid}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commits.

#[derive(Deserialize)]
#[serde(tag = "key", content = "value", rename_all = "camelCase")]
enum CommitLine {
    Header {
        #[serde(default)]
        summary: String,
        #[serde(default, rename = "parentCommit")]
        parent_commit: Option<String>,
    },
    File {
        path: String,
        content: String,
        #[serde(default)]
        encoding: Option<String>,
    },
    LfsFile {
        path: String,
        oid: String,
        size: u64,
        #[serde(default)]
        algo: Option<String>,
    },
    DeletedFile {
        path: String,
    },
}

/// A staging folder removed when dropped, whatever happened.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            tracing::warn!(path = %self.0.display(), error = %e, "could not remove a staging folder");
        }
    }
}

/// What a commit will change, gathered before anything in the repository is touched.
#[derive(Default)]
struct Changes {
    summary: String,
    parent: Option<String>,
    /// Staged files and their paths in the repository.
    writes: Vec<(PathBuf, String)>,
    deletes: Vec<String>,
}

async fn commit(
    State(shared): State<Arc<Shared>>,
    UrlPath((kind, owner, name, rev)): UrlPath<(String, String, String, String)>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let kind = repo_kind(&kind)?;
    shared.authorize(&headers)?;
    if rev != "main" {
        return Err(ApiError::revision_not_found(&rev));
    }
    let lookup = shared.clone();
    let (o, n) = (owner.clone(), name.clone());
    let (root, dir) = blocking(move || lookup.repo_dir(kind, &o, &n)).await?;
    let staging = Staging(dir.join(format!(".staging-{}", uuid::Uuid::new_v4().simple())));
    let changes = receive_commit(&shared, &root, &staging.0, body).await?;

    let summary = changes.summary.clone();
    let committed = shared.clone();
    let (o, n) = (owner.clone(), name.clone());
    let sha = blocking(move || {
        let _one_at_a_time = committed
            .commit_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before = committed.snapshot(kind, &o, &n)?;
        if let Some(parent) = &changes.parent
            && *parent != before.sha
        {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                Some("ParentCommitMismatch"),
                format!(
                    "A commit has happened since {parent}: the repository is at {}",
                    before.sha
                ),
            ));
        }
        for (staged, path) in &changes.writes {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("committing a file", parent))?;
            }
            std::fs::rename(staged, &target).map_err(io_error("committing a file", &target))?;
        }
        for path in &changes.deletes {
            let target = dir.join(path);
            match std::fs::remove_file(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("deleting a file", &target)(e)),
            }
        }
        let after = committed.snapshot(kind, &o, &n)?;
        tracing::info!(repo = %format!("{o}/{n}"), files = changes.writes.len(), deleted = changes.deletes.len(), commit = %after.sha, "committed");
        Ok(after.sha)
    })
    .await?;
    drop(staging);
    let tail = format!("/api/{}/{owner}/{name}/commit/{rev}", kind.api_segment());
    let base = external_base(&headers, &uri, &tail);
    Ok(axum::Json(json!({
        "success": true,
        "commitOid": sha,
        "commitUrl": format!("{base}/{}{owner}/{name}/commit/{sha}", kind.url_prefix()),
        "commitMessage": summary,
        "hookOutput": "",
        "pullRequestUrl": Value::Null,
    }))
    .into_response())
}

/// Reads the NDJSON body line by line, staging each file as it arrives.
async fn receive_commit(
    shared: &Shared,
    root: &Path,
    staging: &Path,
    body: Body,
) -> ApiResult<Changes> {
    tokio::fs::create_dir_all(staging)
        .await
        .map_err(io_error("staging a commit", staging))?;
    let mut changes = Changes::default();
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut line_number = 0usize;
    let mut done = false;
    while !done {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| bad_request(format!("The commit broke off: {e}")))?;
                pending.extend_from_slice(&chunk);
            }
            None => done = true,
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            line_number += 1;
            stage_line(shared, root, staging, &line, line_number, &mut changes).await?;
        }
        if done && !pending.iter().all(u8::is_ascii_whitespace) {
            line_number += 1;
            let line = std::mem::take(&mut pending);
            stage_line(shared, root, staging, &line, line_number, &mut changes).await?;
        }
        if pending.len() > MAX_COMMIT_LINE {
            return Err(bad_request(format!(
                "Commit line {} is longer than {MAX_COMMIT_LINE} bytes: send large files through LFS",
                line_number + 1
            )));
        }
    }
    if line_number == 0 {
        return Err(bad_request(
            "An empty commit body: send NDJSON lines".into(),
        ));
    }
    Ok(changes)
}

async fn stage_line(
    shared: &Shared,
    root: &Path,
    staging: &Path,
    line: &[u8],
    number: usize,
    changes: &mut Changes,
) -> ApiResult<()> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let parsed: CommitLine = serde_json::from_slice(line).map_err(|e| {
        bad_request(format!(
            "Commit line {number} is not a valid operation: {e}"
        ))
    })?;
    let staged_path = |path: &str| {
        staging
            .join(format!("{:06}", changes.writes.len()))
            .join(path)
    };
    match parsed {
        CommitLine::Header {
            summary,
            parent_commit,
        } => {
            changes.summary = summary;
            changes.parent = parent_commit;
        }
        CommitLine::File {
            path,
            content,
            encoding,
        } => {
            check_commit_path(&path)?;
            let bytes = match encoding.as_deref() {
                Some("base64") => base64::engine::general_purpose::STANDARD
                    .decode(content.as_bytes())
                    .map_err(|e| {
                        bad_request(format!("Commit line {number} ({path}): bad base64: {e}"))
                    })?,
                None | Some("utf-8") => content.into_bytes(),
                Some(other) => {
                    return Err(bad_request(format!(
                        "Commit line {number} ({path}): unknown encoding {other:?}"
                    )));
                }
            };
            let staged = staged_path(&path);
            if let Some(parent) = staged.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io_error("staging a commit", parent))?;
            }
            tokio::fs::write(&staged, &bytes)
                .await
                .map_err(io_error("staging a commit", &staged))?;
            changes.writes.push((staged, path));
        }
        CommitLine::LfsFile {
            path,
            oid,
            size,
            algo,
        } => {
            check_commit_path(&path)?;
            if algo.as_deref().is_some_and(|a| a != "sha256") || !is_sha256(&oid) {
                return Err(bad_request(format!(
                    "Commit line {number} ({path}): LFS objects are named by their sha256"
                )));
            }
            let object = shared.lfs_object(root, &oid);
            match tokio::fs::metadata(&object).await {
                Ok(meta) if meta.len() == size => {}
                _ => {
                    return Err(bad_request(format!(
                        "Commit line {number} ({path}): the LFS object {oid} ({size} bytes) was not uploaded"
                    )));
                }
            }
            let staged = staged_path(&path);
            if let Some(parent) = staged.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io_error("staging a commit", parent))?;
            }
            // A link where the file system allows one; the object stays for later commits.
            if tokio::fs::hard_link(&object, &staged).await.is_err() {
                tokio::fs::copy(&object, &staged)
                    .await
                    .map_err(io_error("staging a commit", &staged))?;
            }
            changes.writes.push((staged, path));
        }
        CommitLine::DeletedFile { path } => {
            check_commit_path(&path)?;
            changes.deletes.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_paths_stay_inside_visible_folders() {
        assert!(check_commit_path("adapter_model.safetensors").is_ok());
        assert!(check_commit_path(".gitattributes").is_ok());
        assert!(check_commit_path("sub/dir/file.json").is_ok());
        for bad in [
            "",
            "/abs",
            "../x",
            "a/../b",
            ".staging-1/x",
            "a/.git/config",
            "a\\b",
        ] {
            assert!(check_commit_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
