//! The hub client: search Datanets, read a Datanet's card, and pull it.
//!
//! Search and repository info are plain JSON requests. Files come through `hf-hub`, which
//! downloads in ranged chunks into a `.sync.part` file and, when a pull is cut off, picks up
//! from the last complete chunk the next time. Every shard is then checked against the size and
//! sha256 that `datanet.json` gives; a mismatch is deleted and fetched once more.
//!
//! A pull of revision `sha` lands in `dest/<owner>--<name>/<sha>/` as plain files (hard links
//! to, or copies of, the hub cache's blobs in `dest/.hub-cache/`), beside a record
//! `dest/<owner>--<name>/<sha>.pull.json` of the files verified so far and, once all are, when
//! the pull completed. [`open_pulled`] reads the newest complete pull without the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hf_hub::api::tokio::{ApiBuilder, ApiError, Progress};
use hf_hub::{Cache, Repo, RepoType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod upload;

pub use upload::{CommitInfo, RemoteFile};

use super::{RepoKind, folder_name, is_safe_revision, is_valid_repo_id};
use crate::error::{Error, Result};
use crate::format::{DATANET_TAG, MANIFEST_FILE, Manifest, ShardEntry};

const README_FILE: &str = "README.md";
/// Where `hf-hub` keeps its cache inside a pull's destination.
pub const CACHE_DIR: &str = ".hub-cache";
/// The bytes `hf-hub` fetches per request. A pull that is cut off resumes from the last
/// complete chunk, so this is also the most a cut can cost.
pub const DEFAULT_CHUNK_SIZE: usize = 8 << 20;
/// How many times a transfer that broke off is resumed within one pull.
pub const DEFAULT_RETRIES: u32 = 2;
/// How often a running download reports progress and looks at the cancel flag.
const TICK: Duration = Duration::from_millis(100);

/// A client for one hub endpoint.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    http: reqwest::Client,
    chunk_size: usize,
    retries: u32,
}

/// One Datanet in search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatanetListing {
    /// `owner/name`.
    pub id: String,
    /// The current revision's commit.
    pub sha: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    /// From the card's `license:` (the hub's `license:<id>` tag).
    pub license: Option<String>,
    /// RFC 3339, as the hub reports it.
    pub last_modified: Option<String>,
}

/// What a Datanet says about itself at one revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatanetCard {
    pub id: String,
    /// The commit the card was read at.
    pub revision: String,
    pub manifest: Manifest,
    pub readme: Option<String>,
}

/// How far a pull has come. `bytes_*` count shard bytes (what `datanet.json` declares), where
/// nearly all the time goes; `files_*` count every file, `datanet.json` and `README.md` too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullProgress {
    /// The file being fetched or checked (path in the repository).
    pub file: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: usize,
    pub files_total: usize,
}

/// A Datanet pulled and verified: its files are under `dir`, laid out as in the repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PulledDatanet {
    pub id: String,
    pub revision: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl PulledDatanet {
    /// The local path of every shard, in `datanet.json`'s order.
    pub fn shard_paths(&self) -> Vec<PathBuf> {
        self.manifest
            .shards
            .iter()
            .map(|s| self.dir.join(&s.path))
            .collect()
    }
}

/// What a failed request was about, so that a 404 can say what does not exist.
enum Subject<'a> {
    Search,
    Repo {
        id: &'a str,
        revision: &'a str,
    },
    File {
        id: &'a str,
        revision: &'a str,
        path: &'a str,
    },
    /// A repository read or written through the upload API (a published adapter).
    Repository {
        kind: RepoKind,
        id: &'a str,
    },
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
}

/// `<sha>.pull.json`: what a pull of one revision has verified, and whether it completed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PullRecord {
    id: String,
    revision: String,
    files: BTreeMap<String, VerifiedFile>,
    /// RFC 3339 (UTC, milliseconds), set once every file is verified.
    completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VerifiedFile {
    size: u64,
    sha256: String,
    /// Modification time (ns since the epoch) when verified: a file whose size and time are
    /// unchanged is not hashed again.
    modified_ns: u64,
}

impl HubClient {
    /// A client for `endpoint` (`https://huggingface.co`, `http://127.0.0.1:8080/hub`, …),
    /// sending `token` as a bearer token when given.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!(
                "modelfactory-datanet-sync/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .unwrap_or_default();
        HubClient {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
            http,
            chunk_size: DEFAULT_CHUNK_SIZE,
            retries: DEFAULT_RETRIES,
        }
    }

    /// Bytes per ranged request when downloading (at least 64 KiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(64 << 10);
        self
    }

    /// How many times one pull resumes a transfer that broke off before giving up.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn hub_error(&self, url: &str, message: impl Into<String>) -> Error {
        Error::Hub {
            endpoint: self.endpoint.clone(),
            url: url.to_string(),
            message: message.into(),
        }
    }

    fn info_url(&self, id: &str, revision: &str) -> String {
        format!(
            "{}/api/datasets/{id}/revision/{}",
            self.endpoint,
            encode(revision, false)
        )
    }

    fn resolve_url(&self, id: &str, revision: &str, path: &str) -> String {
        format!(
            "{}/datasets/{id}/resolve/{}/{}",
            self.endpoint,
            encode(revision, false),
            encode(path, true)
        )
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response> {
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
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

    /// The response if it succeeded, else an error that says what the status means.
    async fn check(
        &self,
        response: reqwest::Response,
        url: &str,
        subject: &Subject<'_>,
    ) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let code = response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let detail = error_detail(&response.text().await.unwrap_or_default());
        let message = if status == reqwest::StatusCode::NOT_FOUND {
            not_found(subject, code.as_deref())
        } else if (status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN)
            && let Subject::Repository { id, .. } = subject
        {
            format!(
                "{status}: writing to {id} was refused (it needs a token with write access){detail}"
            )
        } else if status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            format!(
                "{status}: access refused (a private or gated repository needs a token){detail}"
            )
        } else if status.is_server_error() {
            format!("a server error ({status}){detail}")
        } else {
            format!("{status}{detail}")
        };
        Err(self.hub_error(url, message))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, subject: &Subject<'_>) -> Result<T> {
        let response = self.check(self.send(url).await?, url, subject).await?;
        let html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("html"));
        let body = response.bytes().await.map_err(|e| {
            self.hub_error(url, format!("an answer cut short ({})", error_chain(&e)))
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            let text = snippet(&String::from_utf8_lossy(&body));
            if html || text.starts_with('<') {
                self.hub_error(url, format!("an HTML page where JSON was expected: {text}"))
            } else {
                self.hub_error(
                    url,
                    format!("a body that is not the expected JSON ({e}): {text}"),
                )
            }
        })
    }

    /// A file's text, or `None` when the hub says it does not exist.
    async fn get_text(&self, url: &str, subject: &Subject<'_>) -> Result<Option<String>> {
        let response = self.send(url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND
            && response
                .headers()
                .get("x-error-code")
                .is_some_and(|c| c.as_bytes() == b"EntryNotFound")
        {
            return Ok(None);
        }
        let response = self.check(response, url, subject).await?;
        let body = response.bytes().await.map_err(|e| {
            self.hub_error(url, format!("an answer cut short ({})", error_chain(&e)))
        })?;
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| self.hub_error(url, "a file that is not UTF-8 text"))
    }

    async fn repo_info(&self, id: &str, revision: &str) -> Result<(String, Vec<String>)> {
        check_id(id)?;
        let url = self.info_url(id, revision);
        let info: RepoInfo = self.get_json(&url, &Subject::Repo { id, revision }).await?;
        let sha = info
            .sha
            .ok_or_else(|| self.hub_error(&url, "repository info without a `sha`"))?;
        // The commit names a local folder: it must not be able to name any other.
        if !is_safe_revision(&sha) {
            return Err(self.hub_error(&url, format!("an invalid commit id {sha:?}")));
        }
        let siblings = info.siblings.into_iter().map(|s| s.rfilename).collect();
        Ok((sha, siblings))
    }

    /// Datanets whose id contains `query` (case-insensitive; empty: all), in the hub's order.
    pub async fn search(&self, query: &str) -> Result<Vec<DatanetListing>> {
        let base = format!("{}/api/datasets", self.endpoint);
        let url = reqwest::Url::parse_with_params(
            &base,
            [
                ("search", query.trim()),
                ("filter", DATANET_TAG),
                ("full", "true"),
            ],
        )
        .map_err(|e| self.hub_error(&base, format!("not a valid URL ({e})")))?;
        let url = url.to_string();
        let items: Vec<serde_json::Value> = self.get_json(&url, &Subject::Search).await?;
        let text = |v: &serde_json::Value, key: &str| v.get(key)?.as_str().map(str::to_string);
        let mut out = Vec::new();
        for item in items {
            let Some(id) = text(&item, "id") else {
                continue;
            };
            let tags: Vec<String> = item
                .get("tags")
                .and_then(|t| t.as_array())
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            // A hub that ignores `filter` still returns only Datanets from here.
            if !tags.iter().any(|t| t == DATANET_TAG) {
                continue;
            }
            let license = tags
                .iter()
                .find_map(|t| t.strip_prefix("license:").map(str::to_string))
                .or_else(|| {
                    let license = item.get("cardData")?.get("license")?;
                    license
                        .as_str()
                        .or_else(|| license.as_array()?.first()?.as_str())
                        .map(str::to_string)
                });
            out.push(DatanetListing {
                sha: text(&item, "sha"),
                description: text(&item, "description"),
                last_modified: text(&item, "lastModified"),
                license,
                tags,
                id,
            });
        }
        Ok(out)
    }

    /// The Datanet's `datanet.json` and `README.md` at `revision` (default: `main`).
    pub async fn card(&self, id: &str, revision: Option<&str>) -> Result<DatanetCard> {
        let (sha, siblings) = self.repo_info(id, revision.unwrap_or("main")).await?;
        let url = self.resolve_url(id, &sha, MANIFEST_FILE);
        let subject = Subject::File {
            id,
            revision: &sha,
            path: MANIFEST_FILE,
        };
        let text = self.get_text(&url, &subject).await?.ok_or_else(|| {
            self.hub_error(
                &url,
                format!("404: {id} has no {MANIFEST_FILE}, so it is not a Datanet"),
            )
        })?;
        let manifest = Manifest::parse(&text, Path::new(&url))?;
        if manifest.id != id {
            tracing::warn!(id, manifest_id = %manifest.id, "datanet.json names another repository");
        }
        let readme = if siblings.is_empty() || siblings.iter().any(|s| s == README_FILE) {
            let url = self.resolve_url(id, &sha, README_FILE);
            let subject = Subject::File {
                id,
                revision: &sha,
                path: README_FILE,
            };
            self.get_text(&url, &subject).await?
        } else {
            None
        };
        Ok(DatanetCard {
            id: id.to_string(),
            revision: sha,
            manifest,
            readme,
        })
    }

    /// Pulls the Datanet at `revision` (default: `main`) into `dest` and verifies every shard;
    /// see the module's documentation for the layout. Files verified by an earlier pull are not
    /// fetched again; a download cut off earlier resumes. `cancel` is looked at between files
    /// and while downloading; a cancelled pull keeps what it verified and ends in
    /// [`Error::Cancelled`].
    pub async fn pull(
        &self,
        id: &str,
        revision: Option<&str>,
        dest: &Path,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        cancel: &AtomicBool,
    ) -> Result<PulledDatanet> {
        check_id(id)?;
        check_cancel(cancel)?;
        let (sha, siblings) = self.repo_info(id, revision.unwrap_or("main")).await?;
        let base = dest.join(folder_name(id));
        let dir = base.join(&sha);
        std::fs::create_dir_all(&dir).map_err(Error::io("creating the Datanet folder", &dir))?;
        let record_path = base.join(format!("{sha}.pull.json"));
        let mut record = read_record(&record_path).unwrap_or_default();
        record.id = id.to_string();
        record.revision = sha.clone();
        record.completed_at = None;

        let listed = |path: &str| siblings.is_empty() || siblings.iter().any(|s| s == path);
        if !listed(MANIFEST_FILE) {
            return Err(self.hub_error(
                &self.info_url(id, &sha),
                format!("{id} has no {MANIFEST_FILE}, so it is not a Datanet"),
            ));
        }
        let has_readme = listed(README_FILE);
        let mut pull = Pull {
            client: self,
            id,
            sha: &sha,
            dir: &dir,
            cache: dest.join(CACHE_DIR),
            record_path,
            record,
            cancel,
            progress,
            state: PullProgress {
                file: MANIFEST_FILE.to_string(),
                bytes_done: 0,
                bytes_total: 0,
                files_done: 0,
                files_total: 1 + usize::from(has_readme),
            },
        };
        pull.emit();

        pull.fetch_plain(MANIFEST_FILE).await?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(Error::io("reading datanet.json", &manifest_path))?;
        let manifest = Manifest::parse(&text, &manifest_path)?;
        if manifest.id != id {
            tracing::warn!(id, manifest_id = %manifest.id, "datanet.json names another repository");
        }
        for shard in &manifest.shards {
            if shard.path == MANIFEST_FILE || shard.path == README_FILE {
                return Err(Error::BadFile {
                    path: manifest_path.clone(),
                    message: format!("shard path {:?} is not a shard", shard.path),
                });
            }
            if !listed(&shard.path) {
                return Err(self.hub_error(
                    &self.info_url(id, &sha),
                    format!(
                        "{MANIFEST_FILE} lists {}, which the repository at {sha} does not have",
                        shard.path
                    ),
                ));
            }
        }
        if has_readme {
            pull.fetch_plain(README_FILE).await?;
        }
        pull.state.files_total += manifest.shards.len();
        pull.state.bytes_total = manifest.bytes();
        for shard in &manifest.shards {
            pull.fetch_shard(shard).await?;
        }
        pull.record.completed_at = Some(now_rfc3339());
        pull.save_record()?;
        tracing::info!(id, revision = %sha, shards = manifest.shards.len(), "pulled a Datanet");
        Ok(PulledDatanet {
            id: id.to_string(),
            revision: sha.clone(),
            dir: dir.clone(),
            manifest,
        })
    }
}

/// The newest complete pull of `id` under `dest`, found without the network. A pull whose
/// files went missing is passed over for an older complete one.
pub fn open_pulled(dest: &Path, id: &str) -> Result<PulledDatanet> {
    check_id(id)?;
    let base = dest.join(folder_name(id));
    let entries = match std::fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "the Datanet {id} has not been pulled into {} (pull it first)",
                dest.display()
            )));
        }
        Err(e) => return Err(Error::io("listing pulls", &base)(e)),
    };
    let mut complete = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(".pull.json") {
            continue;
        }
        if let Some(record) = read_record(&path)
            && record.id == id
            && let Some(at) = record.completed_at.clone()
        {
            complete.push((at, record));
        }
    }
    // RFC 3339 in UTC with fixed precision sorts as text.
    complete.sort_by(|a, b| b.0.cmp(&a.0));
    let mut first_error = None;
    for (_, record) in complete {
        match check_pull(&base, &record) {
            Ok(pulled) => return Ok(pulled),
            Err(e) => {
                tracing::warn!(id, revision = %record.revision, error = %e, "a pulled revision is damaged");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        Error::Invalid(format!(
            "no complete pull of the Datanet {id} in {} (pull it again)",
            base.display()
        ))
    }))
}

/// Reads a complete pull's `datanet.json` and checks that every shard is there at its size.
fn check_pull(base: &Path, record: &PullRecord) -> Result<PulledDatanet> {
    if !is_safe_revision(&record.revision) {
        return Err(Error::Invalid(format!(
            "{}: invalid revision {:?}",
            base.display(),
            record.revision
        )));
    }
    let dir = base.join(&record.revision);
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(Error::io("reading datanet.json", &manifest_path))?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    for shard in &manifest.shards {
        let path = dir.join(&shard.path);
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        if size != Some(shard.bytes) {
            return Err(Error::BadFile {
                path,
                message: format!(
                    "missing or changed since it was verified ({} bytes expected); pull the Datanet again",
                    shard.bytes
                ),
            });
        }
    }
    Ok(PulledDatanet {
        id: record.id.clone(),
        revision: record.revision.clone(),
        dir,
        manifest,
    })
}

/// One pull in progress.
struct Pull<'a> {
    client: &'a HubClient,
    id: &'a str,
    sha: &'a str,
    dir: &'a Path,
    cache: PathBuf,
    record_path: PathBuf,
    record: PullRecord,
    cancel: &'a AtomicBool,
    progress: &'a (dyn Fn(PullProgress) + Send + Sync),
    state: PullProgress,
}

/// Why a download failed: worth resuming (the transfer broke off), or not.
enum Failure {
    Retry(Error),
    Stop(Error),
}

impl Pull<'_> {
    fn emit(&self) {
        (self.progress)(self.state.clone());
    }

    fn save_record(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.record)
            .map_err(|e| Error::Invalid(format!("serialising the pull record: {e}")))?;
        let tmp = self.record_path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(Error::io("writing the pull record", &tmp))?;
        std::fs::rename(&tmp, &self.record_path)
            .map_err(Error::io("writing the pull record", &self.record_path))
    }

    fn verified(&mut self, path: &str, size: u64, sha256: String) -> Result<()> {
        let modified_ns = modified_ns(&self.dir.join(path)).unwrap_or(0);
        self.record.files.insert(
            path.to_string(),
            VerifiedFile {
                size,
                sha256,
                modified_ns,
            },
        );
        self.save_record()
    }

    /// Whether `path` is in place as recorded (same size and modification time).
    fn intact(&self, path: &str, expected_sha256: Option<&str>) -> bool {
        let Some(entry) = self.record.files.get(path) else {
            return false;
        };
        if expected_sha256.is_some_and(|sha| sha != entry.sha256) {
            return false;
        }
        let local = self.dir.join(path);
        std::fs::metadata(&local).is_ok_and(|m| m.is_file() && m.len() == entry.size)
            && modified_ns(&local) == Some(entry.modified_ns)
    }

    /// `datanet.json` or `README.md`: immutable at a commit, so trusted as downloaded.
    async fn fetch_plain(&mut self, path: &str) -> Result<()> {
        check_cancel(self.cancel)?;
        self.state.file = path.to_string();
        if !self.intact(path, None) {
            self.emit();
            let fetched = self.download(path, 0).await?;
            let (size, sha256) = hash_file(fetched.blob.clone()).await?;
            install(&fetched.blob, &self.dir.join(path)).await?;
            self.verified(path, size, sha256)?;
        }
        self.state.files_done += 1;
        self.emit();
        Ok(())
    }

    async fn fetch_shard(&mut self, shard: &ShardEntry) -> Result<()> {
        check_cancel(self.cancel)?;
        let path = shard.path.as_str();
        self.state.file = path.to_string();
        self.emit();
        let done_before = self.state.bytes_done;
        let local = self.dir.join(path);
        let mut in_place = self.intact(path, Some(&shard.sha256));
        if !in_place && local.is_file() {
            // Verified before the record was written, or copied in by hand: check it.
            let (size, sha256) = hash_file(local.clone()).await?;
            if size == shard.bytes && sha256 == shard.sha256 {
                self.verified(path, size, sha256)?;
                in_place = true;
            }
        }
        if !in_place {
            // The hub names an LFS file's blob by its sha256: a shard unchanged since an earlier
            // revision was pulled is already in the cache.
            let blob = self
                .cache
                .join(Repo::new(self.id.to_string(), RepoType::Dataset).folder_name())
                .join("blobs")
                .join(&shard.sha256);
            if blob.is_file() {
                let (size, sha256) = hash_file(blob.clone()).await?;
                if size == shard.bytes && sha256 == shard.sha256 {
                    install(&blob, &local).await?;
                    self.verified(path, size, sha256)?;
                    in_place = true;
                }
            }
        }
        if !in_place {
            let url = self.client.resolve_url(self.id, self.sha, path);
            let mut attempt = 0;
            loop {
                let fetched = self.download(path, done_before).await?;
                let (size, sha256) = hash_file(fetched.blob.clone()).await?;
                if size == shard.bytes && sha256 == shard.sha256 {
                    install(&fetched.blob, &local).await?;
                    self.verified(path, size, sha256)?;
                    break;
                }
                tracing::warn!(
                    %url, expected = %shard.sha256, actual = %sha256, size, expected_size = shard.bytes,
                    "a shard does not match datanet.json; deleting it"
                );
                for stale in [&fetched.blob, &fetched.pointer, &local] {
                    match std::fs::remove_file(stale) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("deleting a bad download", stale)(e)),
                    }
                }
                attempt += 1;
                if attempt == 2 {
                    return Err(Error::HashMismatch {
                        path: PathBuf::from(url),
                        expected: shard.sha256.clone(),
                        actual: sha256,
                    });
                }
            }
        }
        self.state.bytes_done = done_before + shard.bytes;
        self.state.files_done += 1;
        self.emit();
        Ok(())
    }

    /// Downloads one file through `hf-hub`, resuming after a broken transfer up to the
    /// client's retry count. `bytes_before` is what earlier shards added to `bytes_done`.
    async fn download(&mut self, path: &str, bytes_before: u64) -> Result<Downloaded> {
        let mut attempt = 0;
        loop {
            check_cancel(self.cancel)?;
            match self.download_once(path, bytes_before).await {
                Ok(done) => return Ok(done),
                Err(Failure::Retry(e)) if attempt < self.client.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "download broke off; resuming");
                    let pause = Duration::from_millis(300 * u64::from(attempt));
                    let until = tokio::time::Instant::now() + pause;
                    while tokio::time::Instant::now() < until {
                        check_cancel(self.cancel)?;
                        tokio::time::sleep(TICK.min(pause)).await;
                    }
                }
                Err(Failure::Retry(e) | Failure::Stop(e)) => return Err(e),
            }
        }
    }

    async fn download_once(
        &mut self,
        path: &str,
        bytes_before: u64,
    ) -> std::result::Result<Downloaded, Failure> {
        let client = self.client;
        let url = client.resolve_url(self.id, self.sha, path);
        let builder = ApiBuilder::from_cache(Cache::new(self.cache.clone()))
            .with_endpoint(client.endpoint.clone())
            .with_token(client.token.clone())
            .with_progress(false)
            .with_chunk_size(Some(client.chunk_size))
            .with_max_files(1);
        let repo =
            Repo::with_revision(self.id.to_string(), RepoType::Dataset, self.sha.to_string());
        let counter = Arc::new(AtomicU64::new(0));
        let (mut done, _stop) = spawn_download(
            builder,
            repo,
            path.to_string(),
            ByteCounter(counter.clone()),
        )
        .map_err(|e| Failure::Stop(Error::Invalid(format!("starting a download thread: {e}"))))?;
        let mut ticker = tokio::time::interval(TICK);
        let is_shard = bytes_before > 0 || self.state.bytes_total > 0;
        loop {
            tokio::select! {
                finished = &mut done => {
                    let pointer = match finished {
                        Ok(Ok(pointer)) => pointer,
                        Ok(Err(e)) => return Err(self.classify(e, &url, path)),
                        Err(_) => return Err(Failure::Stop(client.hub_error(&url, "the download stopped unexpectedly"))),
                    };
                    // The snapshot entry is a link into the cache's blobs.
                    let blob = std::fs::canonicalize(&pointer)
                        .map_err(|e| Failure::Stop(Error::io("reading the hub cache", &pointer)(e)))?;
                    return Ok(Downloaded { pointer, blob });
                }
                _ = ticker.tick() => {
                    if is_shard {
                        self.state.bytes_done = (bytes_before + counter.load(Ordering::Relaxed))
                            .min(self.state.bytes_total.max(bytes_before));
                        self.emit();
                    }
                    if self.cancel.load(Ordering::Relaxed) {
                        return Err(Failure::Stop(Error::Cancelled));
                    }
                }
            }
        }
    }

    fn classify(&self, error: ApiError, url: &str, path: &str) -> Failure {
        let client = self.client;
        let fail = |message: String| client.hub_error(url, message);
        match error {
            ApiError::RequestError(e) => match e.status() {
                Some(s) if s == reqwest::StatusCode::NOT_FOUND => Failure::Stop(fail(format!(
                    "404 Not Found: {path} does not exist in the Datanet {} at revision {}",
                    self.id, self.sha
                ))),
                Some(s) if s.is_server_error() => {
                    Failure::Retry(fail(format!("a server error ({s})")))
                }
                Some(s) => Failure::Stop(fail(s.to_string())),
                None => Failure::Retry(fail(format!(
                    "a transfer that broke off ({})",
                    error_chain(&e)
                ))),
            },
            ApiError::TooManyRetries(e) => {
                Failure::Retry(fail(format!("a transfer that kept failing ({e})")))
            }
            ApiError::MissingHeader(h) | ApiError::InvalidHeader(h) => {
                Failure::Stop(fail(format!(
                    "an answer without a usable {h} header (is this a Hugging Face–compatible hub?)"
                )))
            }
            ApiError::IoError(e) => Failure::Stop(Error::Io {
                what: "writing the download cache",
                path: self.cache.clone(),
                source: e,
            }),
            ApiError::LockAcquisition(lock) => Failure::Stop(Error::Invalid(format!(
                "{}: another pull is downloading this file",
                lock.display()
            ))),
            other => Failure::Stop(fail(other.to_string())),
        }
    }
}

struct Downloaded {
    /// The cache's snapshot entry (a link).
    pointer: PathBuf,
    /// The blob it leads to.
    blob: PathBuf,
}

/// Runs one `hf-hub` download on a thread and runtime of its own, until it ends or the returned
/// sender is dropped. hf-hub spawns a task per chunk and does not stop them when it gives up or
/// is dropped; they end with this runtime. A current-thread runtime also runs them in the
/// order they were spawned, so chunks arrive in order and a cut loses at most the one in flight.
#[allow(clippy::type_complexity)]
fn spawn_download(
    builder: ApiBuilder,
    repo: Repo,
    file: String,
    progress: ByteCounter,
) -> std::io::Result<(
    tokio::sync::oneshot::Receiver<std::result::Result<PathBuf, ApiError>>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("datanet-download".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = done_tx.send(Err(ApiError::IoError(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let download = async {
                    let api = builder.build()?;
                    api.repo(repo).download_with_progress(&file, progress).await
                };
                tokio::select! {
                    result = download => {
                        let _ = done_tx.send(result);
                    }
                    // Sent or dropped: the pull stopped waiting.
                    _ = stop_rx => {}
                }
            });
        })?;
    Ok((done_rx, stop_tx))
}

/// Counts the bytes `hf-hub` reports for the current attempt.
#[derive(Clone)]
struct ByteCounter(Arc<AtomicU64>);

impl Progress for ByteCounter {
    async fn init(&mut self, _size: usize, _filename: &str) {
        self.0.store(0, Ordering::Relaxed);
    }

    async fn update(&mut self, size: usize) {
        self.0.fetch_add(size as u64, Ordering::Relaxed);
    }

    async fn finish(&mut self) {}
}

fn check_id(id: &str) -> Result<()> {
    if is_valid_repo_id(id) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{id:?} is not a Datanet id (owner/name: letters, digits, '-', '_', '.')"
        )))
    }
}

fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

fn not_found(subject: &Subject<'_>, code: Option<&str>) -> String {
    match (subject, code) {
        (Subject::Search, _) => {
            "404 Not Found: no dataset search here (is this a Hugging Face–compatible hub?)".into()
        }
        (Subject::Repo { id, .. } | Subject::File { id, .. }, Some("RepoNotFound")) => {
            format!("404: the Datanet {id} does not exist")
        }
        (
            Subject::Repo { id, revision } | Subject::File { id, revision, .. },
            Some("RevisionNotFound"),
        ) => format!("404: the Datanet {id} has no revision {revision:?}"),
        (Subject::File { id, revision, path }, _) => {
            format!("404: {path} does not exist in the Datanet {id} at revision {revision}")
        }
        (Subject::Repo { id, revision }, _) => {
            format!("404 Not Found: the Datanet {id} or its revision {revision:?} does not exist")
        }
        (Subject::Repository { kind, id }, _) => format!(
            "404: the {} repository {id} does not exist here",
            kind.type_name()
        ),
    }
}

/// `: <the hub's message>` from an error body, JSON or not; empty when there is none.
fn error_detail(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| snippet(body));
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// The start of a body, on one line.
fn snippet(body: &str) -> String {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// Percent-encodes a URL path segment (or a path, keeping its `/` when `keep_slash`).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn modified_ns(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

fn read_record(path: &Path) -> Option<PullRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable pull record");
            None
        }
    }
}

/// Size and sha256 of a file, read off the async threads.
async fn hash_file(path: PathBuf) -> Result<(u64, String)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file =
            std::fs::File::open(&path).map_err(Error::io("opening a download", &path))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(Error::io("reading a download", &path))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hash.update(&buf[..n]);
        }
        Ok((size, hex::encode(hash.finalize())))
    })
    .await
    .map_err(|e| Error::Invalid(format!("hashing a download: {e}")))?
}

/// Puts a verified blob at `target` as a plain file: a hard link, or a copy where links fail.
async fn install(blob: &Path, target: &Path) -> Result<()> {
    let (blob, target) = (blob.to_path_buf(), target.to_path_buf());
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating a folder", parent))?;
        }
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("replacing a pulled file", &target)(e)),
        }
        if std::fs::hard_link(&blob, &target).is_err() {
            std::fs::copy(&blob, &target).map_err(Error::io("copying a pulled file", &target))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Invalid(format!("placing a pulled file: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_paths_readable_and_escapes_the_rest() {
        assert_eq!(encode("shards/00000.parquet", true), "shards/00000.parquet");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b?#", true), "a%20b%3F%23");
    }

    #[test]
    fn error_bodies_become_one_line() {
        assert_eq!(
            error_detail(r#"{"error":"Invalid rev id: x"}"#),
            ": Invalid rev id: x"
        );
        assert_eq!(error_detail(""), "");
        assert_eq!(
            error_detail("<html>\n <b>oops</b>\n</html>"),
            ": <html> <b>oops</b> </html>"
        );
        assert!(snippet(&"x".repeat(500)).ends_with('…'));
    }

    #[test]
    fn the_pull_future_can_run_on_any_runtime_thread() {
        fn is_send<T: Send>(_: &T) {}
        let client = HubClient::new("http://127.0.0.1:9", None);
        let cancel = AtomicBool::new(false);
        let progress = |_: PullProgress| {};
        let pull = client.pull("o/n", None, Path::new("/nonexistent"), &progress, &cancel);
        is_send(&pull);
        let card = client.card("o/n", None);
        is_send(&card);
    }
}
