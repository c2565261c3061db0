//! The hub client against our hub server over loopback: search, card, pull with verification,
//! resume and offline use; the server's API shapes, ranges and path checks; `hf-hub`'s own
//! client against the server; and hubs that answer 404, 500 or nonsense.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use datanet_sync::Error;
use datanet_sync::format::{
    ContributorEntry, MANIFEST_FILE, Manifest, RowSchema, SCHEMA_VERSION, ShardEntry, sha256_hex,
};
use datanet_sync::hub::{
    HubClient, HubServer, PullProgress, git_blob_oid, open_pulled, serve_with_shutdown,
};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const ALICE: &str = "0x1111111111111111111111111111111111111111";

/// Bytes that differ from shard to shard and do not compress to nothing.
fn shard_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a Datanet repository `<root>/<id>/` by hand: shards of arbitrary bytes, a
/// `datanet.json` with their real sizes and hashes, and a card with `tags`.
fn write_repo(root: &Path, id: &str, tags: &[&str], shards: &[(&str, Vec<u8>)]) -> Manifest {
    let dir = root.join(id);
    std::fs::create_dir_all(dir.join("shards")).expect("repo folder");
    let mut entries = Vec::new();
    for (path, bytes) in shards {
        std::fs::write(dir.join(path), bytes).expect("write shard");
        entries.push(ShardEntry {
            path: path.to_string(),
            rows: 10,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
    }
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        id: id.to_string(),
        name: id.rsplit('/').next().unwrap_or(id).to_string(),
        domain: "medicine".into(),
        description: format!("Questions and answers in {id}"),
        license: "cc-by-4.0".into(),
        source: "written for this test".into(),
        row_schema: RowSchema::Instruction,
        contributors: vec![ContributorEntry {
            address: ALICE.into(),
            rows: 10 * shards.len() as u64,
        }],
        contributions_root: sha256_hex(b""),
        shards: entries,
    };
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest).expect("manifest json"),
    )
    .expect("write datanet.json");
    let tag_lines: String = tags.iter().map(|t| format!("- {t}\n")).collect();
    std::fs::write(
        dir.join("README.md"),
        format!("---\nlicense: cc-by-4.0\ntags:\n{tag_lines}---\n# {id}\n\nA card for {id}.\n"),
    )
    .expect("write README.md");
    manifest
}

/// A server on 127.0.0.1:0 that stops (closing its connections) when dropped.
struct TestServer {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Our `serve_with_shutdown` over `root`.
    async fn hub(root: &Path) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let root = root.to_path_buf();
        let task = tokio::spawn(async move {
            serve_with_shutdown(root, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("hub serves");
        });
        TestServer {
            url,
            stop: Some(stop),
            task,
        }
    }

    /// Any router (the hub wrapped in a test middleware, or a broken hub).
    async fn router(app: Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("test server serves");
        });
        TestServer {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task ends");
    }
}

/// What the test middleware saw: every resolve request's path and `Range`.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, Option<String>)>>,
}

impl Seen {
    fn resolves(&self, suffix: &str) -> Vec<Option<String>> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p.contains("/resolve/") && p.ends_with(suffix))
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn count(&self) -> usize {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p.contains("/resolve/"))
            .count()
    }
}

fn recording(root: &Path, seen: Arc<Seen>) -> Router {
    HubServer::new(root)
        .router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let seen = seen.clone();
            async move {
                let range = request
                    .headers()
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                seen.requests
                    .lock()
                    .expect("lock")
                    .push((request.uri().path().to_string(), range));
                next.run(request).await
            }
        }))
}

fn no_progress(_: PullProgress) {}

#[tokio::test]
async fn search_card_pull_and_offline_use() {
    let root = tempfile::tempdir().expect("root");
    let dest = tempfile::tempdir().expect("dest");
    let shards = [
        ("shards/00000.parquet", shard_bytes(1, 300_000)),
        ("shards/00001.parquet", shard_bytes(2, 120_000)),
    ];
    let manifest = write_repo(
        root.path(),
        "alice/clinic-qa",
        &["datanet", "medical"],
        &shards,
    );
    write_repo(
        root.path(),
        "carol/legal-qa",
        &["datanet"],
        &[("shards/00000.parquet", shard_bytes(3, 1000))],
    );
    // A dataset that is not a Datanet: same files, no tag.
    write_repo(
        root.path(),
        "bob/clinic-notes",
        &["medical"],
        &[("shards/00000.parquet", shard_bytes(4, 1000))],
    );

    let seen = Arc::new(Seen::default());
    let server = TestServer::router(recording(root.path(), seen.clone())).await;
    let client = HubClient::new(&server.url, None);

    let all = client.search("").await.expect("search all");
    let ids: Vec<&str> = all.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["alice/clinic-qa", "carol/legal-qa"]);
    let clinic = client.search("CLINIC").await.expect("search clinic");
    assert_eq!(clinic.len(), 1, "{clinic:?}");
    let listing = &clinic[0];
    assert_eq!(listing.id, "alice/clinic-qa");
    assert_eq!(listing.license.as_deref(), Some("cc-by-4.0"));
    assert!(listing.tags.contains(&"medical".to_string()));
    assert_eq!(
        listing.description.as_deref(),
        Some("A card for alice/clinic-qa.")
    );
    let sha = listing.sha.clone().expect("listing has a sha");
    assert_eq!(sha.len(), 40);
    assert!(
        listing
            .last_modified
            .as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    );
    assert!(
        client
            .search("nothing-like-this")
            .await
            .expect("search")
            .is_empty()
    );

    let card = client.card("alice/clinic-qa", None).await.expect("card");
    assert_eq!(card.manifest, manifest);
    assert_eq!(card.revision, sha);
    assert!(
        card.readme
            .as_deref()
            .is_some_and(|r| r.contains("A card for alice/clinic-qa"))
    );
    let pinned = client
        .card("alice/clinic-qa", Some(&sha))
        .await
        .expect("card at sha");
    assert_eq!(pinned.revision, sha);

    let events = Mutex::new(Vec::new());
    let record = |p: PullProgress| events.lock().expect("lock").push(p);
    let cancel = AtomicBool::new(false);
    let pulled = client
        .pull("alice/clinic-qa", None, dest.path(), &record, &cancel)
        .await
        .expect("pull");
    assert_eq!(pulled.revision, sha);
    assert_eq!(pulled.manifest, manifest);
    assert_eq!(pulled.dir, dest.path().join("alice--clinic-qa").join(&sha));
    for (path, bytes) in &shards {
        let local = pulled.dir.join(path);
        assert!(
            !std::fs::symlink_metadata(&local)
                .expect("pulled")
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            &std::fs::read(&local).expect("read pulled"),
            bytes,
            "{path}"
        );
    }
    assert!(pulled.dir.join("README.md").is_file());
    let events = events.into_inner().expect("events");
    let last = events.last().expect("progress was reported");
    assert_eq!((last.files_done, last.files_total), (4, 4));
    assert_eq!(last.bytes_done, manifest.bytes());
    assert_eq!(last.bytes_total, manifest.bytes());
    assert!(
        events
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done),
        "progress never goes back"
    );

    // Pulled again: nothing is downloaded, only the revision is looked up.
    let before = seen.count();
    let again = client
        .pull("alice/clinic-qa", None, dest.path(), &no_progress, &cancel)
        .await
        .expect("second pull");
    assert_eq!(again, pulled);
    assert_eq!(seen.count(), before, "a second pull fetched files again");

    // A new revision (the card changed): the unchanged shards come from the cache.
    let parquet_before = seen.resolves(".parquet").len();
    let card_path = root.path().join("alice/clinic-qa/README.md");
    let card_text = std::fs::read_to_string(&card_path).expect("card");
    std::fs::write(&card_path, card_text.replace("A card for", "The card of")).expect("edit card");
    let newer = client
        .pull("alice/clinic-qa", None, dest.path(), &no_progress, &cancel)
        .await
        .expect("pull the new revision");
    assert_ne!(newer.revision, pulled.revision);
    assert_eq!(
        seen.resolves(".parquet").len(),
        parquet_before,
        "unchanged shards were fetched again"
    );
    assert_eq!(
        std::fs::read(newer.dir.join(shards[0].0)).expect("read"),
        shards[0].1
    );
    assert!(
        std::fs::read_to_string(newer.dir.join("README.md"))
            .expect("readme")
            .contains("The card of")
    );

    server.stop().await;
    let offline = open_pulled(dest.path(), "alice/clinic-qa").expect("open without the hub");
    assert_eq!(offline, newer, "the newest complete pull");
    std::fs::remove_file(newer.dir.join(shards[1].0)).expect("damage the newest pull");
    let offline = open_pulled(dest.path(), "alice/clinic-qa").expect("fall back to an older pull");
    assert_eq!(offline, pulled);
    assert_eq!(
        offline.shard_paths()[1],
        pulled.dir.join("shards/00001.parquet")
    );
    let err = client
        .pull("alice/clinic-qa", None, dest.path(), &no_progress, &cancel)
        .await
        .expect_err("the hub is gone");
    let text = err.to_string();
    assert!(
        matches!(err, Error::Hub { .. })
            && text.contains(&client.endpoint().to_string())
            && text.contains("could not be reached"),
        "{text}"
    );
    let never = open_pulled(dest.path(), "carol/legal-qa").expect_err("never pulled");
    assert!(never.to_string().contains("has not been pulled"), "{never}");

    // A pulled shard that went missing makes the pull unusable offline, and says which file.
    std::fs::remove_file(pulled.dir.join("shards/00001.parquet")).expect("remove");
    let damaged = open_pulled(dest.path(), "alice/clinic-qa").expect_err("a shard is gone");
    assert!(damaged.to_string().contains("00001.parquet"), "{damaged}");
}

#[tokio::test]
async fn a_cancelled_pull_keeps_what_it_verified() {
    let root = tempfile::tempdir().expect("root");
    let dest = tempfile::tempdir().expect("dest");
    let shards = [
        ("shards/00000.parquet", shard_bytes(5, 50_000)),
        ("shards/00001.parquet", shard_bytes(6, 50_000)),
    ];
    write_repo(root.path(), "alice/set", &["datanet"], &shards);
    let seen = Arc::new(Seen::default());
    let server = TestServer::router(recording(root.path(), seen.clone())).await;
    let client = HubClient::new(&server.url, None);
    let cancel = AtomicBool::new(false);
    // Cancel as soon as the first shard is verified.
    let stop_after_first = |p: PullProgress| {
        if p.files_done == 3 {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let err = client
        .pull("alice/set", None, dest.path(), &stop_after_first, &cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(
        open_pulled(dest.path(), "alice/set").is_err(),
        "an incomplete pull is not offered"
    );
    assert_eq!(seen.resolves("00001.parquet").len(), 0);
    let first = seen.resolves("00000.parquet").len();
    assert!(first > 0);

    cancel.store(false, Ordering::Relaxed);
    let pulled = client
        .pull("alice/set", None, dest.path(), &no_progress, &cancel)
        .await
        .expect("pull after cancelling");
    assert_eq!(
        seen.resolves("00000.parquet").len(),
        first,
        "the verified shard was fetched again"
    );
    assert_eq!(
        std::fs::read(pulled.dir.join("shards/00001.parquet")).expect("read"),
        shards[1].1
    );
    server.stop().await;
}

/// Replaces the body of the first full download of `suffix` with other bytes.
fn corrupting(root: &Path, suffix: &'static str, times: usize, seen: Arc<Seen>) -> Router {
    let left = Arc::new(AtomicUsize::new(times));
    recording(root, seen).layer(middleware::from_fn(move |request: Request, next: Next| {
        let left = left.clone();
        async move {
            let path = request.uri().path().to_string();
            let probe = request
                .headers()
                .get("range")
                .is_some_and(|r| r == "bytes=0-0");
            let response = next.run(request).await;
            if !path.ends_with(suffix) || probe || left.load(Ordering::SeqCst) == 0 {
                return response;
            }
            left.fetch_sub(1, Ordering::SeqCst);
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
            let flipped: Vec<u8> = bytes.iter().map(|b| b ^ 0x5a).collect();
            Response::from_parts(parts, Body::from(flipped))
        }
    }))
}

#[tokio::test]
async fn a_corrupted_download_is_fetched_again() {
    let root = tempfile::tempdir().expect("root");
    let dest = tempfile::tempdir().expect("dest");
    let shards = [
        ("shards/00000.parquet", shard_bytes(7, 40_000)),
        ("shards/00001.parquet", shard_bytes(8, 40_000)),
    ];
    write_repo(root.path(), "alice/flaky", &["datanet"], &shards);
    let seen = Arc::new(Seen::default());
    let server =
        TestServer::router(corrupting(root.path(), "00001.parquet", 1, seen.clone())).await;
    let client = HubClient::new(&server.url, None);
    let pulled = client
        .pull(
            "alice/flaky",
            None,
            dest.path(),
            &no_progress,
            &AtomicBool::new(false),
        )
        .await
        .expect("the second fetch is good");
    assert_eq!(
        std::fs::read(pulled.dir.join("shards/00001.parquet")).expect("read"),
        shards[1].1
    );
    // Probe and body, twice.
    assert_eq!(
        seen.resolves("00001.parquet").len(),
        4,
        "{:?}",
        seen.resolves("00001.parquet")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_shard_that_never_matches_is_a_hash_mismatch() {
    let root = tempfile::tempdir().expect("root");
    let dest = tempfile::tempdir().expect("dest");
    let good = shard_bytes(9, 30_000);
    write_repo(
        root.path(),
        "alice/tampered",
        &["datanet"],
        &[
            ("shards/00000.parquet", good.clone()),
            ("shards/00001.parquet", shard_bytes(10, 30_000)),
        ],
    );
    // The hub's copy of the second shard changed after datanet.json was written.
    let tampered = shard_bytes(11, 30_000);
    std::fs::write(
        root.path().join("alice/tampered/shards/00001.parquet"),
        &tampered,
    )
    .expect("tamper");
    let seen = Arc::new(Seen::default());
    let server = TestServer::router(recording(root.path(), seen.clone())).await;
    let client = HubClient::new(&server.url, None);
    let err = client
        .pull(
            "alice/tampered",
            None,
            dest.path(),
            &no_progress,
            &AtomicBool::new(false),
        )
        .await
        .expect_err("hash mismatch");
    match &err {
        Error::HashMismatch { path, actual, .. } => {
            assert!(
                path.to_string_lossy().ends_with("shards/00001.parquet"),
                "{err}"
            );
            assert!(path.to_string_lossy().starts_with(&server.url), "{err}");
            assert_eq!(actual, &sha256_hex(&tampered));
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    assert_eq!(
        seen.resolves("00001.parquet").len(),
        4,
        "fetched exactly twice"
    );
    let sha = client
        .card("alice/tampered", None)
        .await
        .expect("card")
        .revision;
    let dir = dest.path().join("alice--tampered").join(&sha);
    assert!(
        !dir.join("shards/00001.parquet").exists(),
        "the bad shard is not kept"
    );
    assert_eq!(
        std::fs::read(dir.join("shards/00000.parquet")).expect("good shard kept"),
        good
    );
    server.stop().await;
}

/// Cuts the connection once the responses for `suffix` have carried `limit` bytes in all, the
/// first time only.
fn cutting(root: &Path, suffix: &'static str, limit: usize, seen: Arc<Seen>) -> Router {
    let sent = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    recording(root, seen).layer(middleware::from_fn(move |request: Request, next: Next| {
        let (sent, cut) = (sent.clone(), cut.clone());
        async move {
            let path = request.uri().path().to_string();
            let response = next.run(request).await;
            if !path.ends_with(suffix) || cut.load(Ordering::SeqCst) {
                return response;
            }
            let (parts, body) = response.into_parts();
            let stream = body.into_data_stream().flat_map(move |chunk| {
                let items: Vec<Result<Bytes, std::io::Error>> = match chunk {
                    Err(e) => vec![Err(std::io::Error::other(e.to_string()))],
                    Ok(bytes) if cut.load(Ordering::SeqCst) => {
                        drop(bytes);
                        vec![Err(std::io::Error::other("cut"))]
                    }
                    Ok(bytes) => {
                        let before = sent.fetch_add(bytes.len(), Ordering::SeqCst);
                        if before + bytes.len() <= limit {
                            vec![Ok(bytes)]
                        } else {
                            cut.store(true, Ordering::SeqCst);
                            vec![
                                Ok(bytes.slice(..limit.saturating_sub(before))),
                                Err(std::io::Error::other("connection cut by the test")),
                            ]
                        }
                    }
                };
                futures_util::stream::iter(items)
            });
            Response::from_parts(parts, Body::from_stream(stream)).into_response()
        }
    }))
}

fn range_start(range: &str) -> u64 {
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .expect("a bytes=a-b range")
}

#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let root = tempfile::tempdir().expect("root");
    let dest = tempfile::tempdir().expect("dest");
    let big = shard_bytes(12, 4 << 20);
    write_repo(
        root.path(),
        "alice/big",
        &["datanet"],
        &[("shards/00000.parquet", big.clone())],
    );
    let seen = Arc::new(Seen::default());
    let server = TestServer::router(cutting(
        root.path(),
        "00000.parquet",
        (7 << 20) / 2,
        seen.clone(),
    ))
    .await;
    let chunk = 1 << 20;
    let client = HubClient::new(&server.url, None)
        .with_chunk_size(chunk)
        .with_retries(0);
    let cancel = AtomicBool::new(false);
    let err = client
        .pull("alice/big", None, dest.path(), &no_progress, &cancel)
        .await
        .expect_err("the connection was cut");
    let text = err.to_string();
    assert!(
        matches!(err, Error::Hub { .. })
            && text.contains("broke off")
            && text.contains("00000.parquet"),
        "{text}"
    );
    let first_pull = seen.resolves("00000.parquet").len();

    let pulled = client
        .pull("alice/big", None, dest.path(), &no_progress, &cancel)
        .await
        .expect("the second pull resumes");
    assert_eq!(
        std::fs::read(pulled.dir.join("shards/00000.parquet")).expect("read"),
        big
    );
    let ranges: Vec<String> = seen.resolves("00000.parquet")[first_pull..]
        .iter()
        .map(|r| r.clone().expect("ranged requests"))
        .filter(|r| r != "bytes=0-0")
        .collect();
    // Three whole chunks made it before the cut (in the last one, so that no later chunk is
    // in flight); the resumed pull asks only for the rest.
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert_eq!(range_start(&ranges[0]), 3 * chunk as u64, "{ranges:?}");
    server.stop().await;

    // With retries (the default), one pull rides over the same cut.
    let seen = Arc::new(Seen::default());
    let server = TestServer::router(cutting(
        root.path(),
        "00000.parquet",
        (7 << 20) / 2,
        seen.clone(),
    ))
    .await;
    let dest = tempfile::tempdir().expect("dest");
    let client = HubClient::new(&server.url, None).with_chunk_size(chunk);
    let pulled = client
        .pull("alice/big", None, dest.path(), &no_progress, &cancel)
        .await
        .expect("one pull resumes by itself");
    assert_eq!(
        std::fs::read(pulled.dir.join("shards/00000.parquet")).expect("read"),
        big
    );
    let starts: Vec<u64> = seen
        .resolves("00000.parquet")
        .into_iter()
        .flatten()
        .filter(|r| r != "bytes=0-0")
        .map(|r| range_start(&r))
        .collect();
    let c = chunk as u64;
    assert_eq!(starts, [0, c, 2 * c, 3 * c, 3 * c]);
    server.stop().await;
}

async fn hub_with_one_repo() -> (tempfile::TempDir, TestServer, Vec<u8>) {
    let root = tempfile::tempdir().expect("root");
    let shard = shard_bytes(13, 5000);
    write_repo(
        root.path(),
        "alice/clinic-qa",
        &["datanet"],
        &[("shards/00000.parquet", shard.clone())],
    );
    std::fs::write(root.path().join("secret.txt"), "not for the hub").expect("secret");
    let server = TestServer::hub(root.path()).await;
    (root, server, shard)
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn ranges_head_and_etags() {
    let (root, server, shard) = hub_with_one_repo().await;
    let info: Value = get(
        &format!("{}/api/datasets/alice/clinic-qa", server.url),
        None,
    )
    .await
    .json()
    .await
    .expect("info json");
    let sha = info["sha"].as_str().expect("sha").to_string();
    let url = format!(
        "{}/datasets/alice/clinic-qa/resolve/main/shards/00000.parquet",
        server.url
    );
    let len = shard.len();

    let whole = get(&url, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["x-repo-commit"], sha.as_str());
    assert_eq!(
        whole.headers()["etag"],
        format!("\"{}\"", sha256_hex(&shard)).as_str()
    );
    assert_eq!(whole.headers()["content-length"], len.to_string().as_str());
    assert_eq!(whole.bytes().await.expect("body"), shard);

    let first = get(&url, Some("bytes=0-0")).await;
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-0/{len}").as_str()
    );
    assert_eq!(first.bytes().await.expect("body")[..], shard[..1]);

    let middle = get(&url, Some("bytes=100-199")).await;
    assert_eq!(middle.status(), 206);
    assert_eq!(middle.bytes().await.expect("body")[..], shard[100..200]);

    let suffix = get(&url, Some("bytes=-10")).await;
    assert_eq!(suffix.status(), 206);
    assert_eq!(
        suffix.headers()["content-range"],
        format!("bytes {}-{}/{len}", len - 10, len - 1).as_str()
    );
    assert_eq!(suffix.bytes().await.expect("body")[..], shard[len - 10..]);

    let open_ended = get(&url, Some(&format!("bytes={}-", len - 3))).await;
    assert_eq!(
        open_ended.bytes().await.expect("body")[..],
        shard[len - 3..]
    );
    // Past the end is clamped (hf-hub asks for one byte past it).
    let past = get(&url, Some(&format!("bytes=10-{}", len + 100))).await;
    assert_eq!(past.status(), 206);
    assert_eq!(past.bytes().await.expect("body")[..], shard[10..]);

    let beyond = get(&url, Some(&format!("bytes={len}-"))).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );

    let backwards = get(&url, Some("bytes=9-2")).await;
    assert_eq!(backwards.status(), 200, "an invalid range is ignored");

    let head = reqwest::Client::new()
        .head(&url)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert_eq!(head.headers()["x-repo-commit"], sha.as_str());
    assert_eq!(
        head.headers()["etag"],
        format!("\"{}\"", sha256_hex(&shard)).as_str()
    );
    assert!(head.bytes().await.expect("head body").is_empty());

    // A plain file's ETag is its git blob id, the same at `main` and at the commit.
    let readme = std::fs::read(root.path().join("alice/clinic-qa/README.md")).expect("readme");
    let at_sha = get(
        &format!(
            "{}/datasets/alice/clinic-qa/resolve/{sha}/README.md",
            server.url
        ),
        None,
    )
    .await;
    assert_eq!(at_sha.status(), 200);
    assert_eq!(
        at_sha.headers()["etag"],
        format!("\"{}\"", git_blob_oid(&readme)).as_str()
    );
    assert_eq!(at_sha.bytes().await.expect("body"), readme);
    server.stop().await;
}

#[tokio::test]
async fn api_shapes_match_the_hub() {
    let (root, server, shard) = hub_with_one_repo().await;
    write_repo(
        root.path(),
        "bob/other",
        &["medical"],
        &[("shards/00000.parquet", shard_bytes(14, 100))],
    );
    let base = &server.url;

    let json = |url: String| async move {
        let response = get(&url, None).await;
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-error-code")
            .map(|c| c.to_str().expect("ascii").to_string());
        (
            status,
            code,
            response.json::<Value>().await.expect("json body"),
        )
    };

    let (status, _, info) = json(format!("{base}/api/datasets/alice/clinic-qa")).await;
    assert_eq!(status, 200);
    assert_eq!(info["id"], "alice/clinic-qa");
    assert_eq!(info["author"], "alice");
    assert_eq!(info["private"], false);
    assert_eq!(info["cardData"]["license"], "cc-by-4.0");
    let tags = info["tags"].as_array().expect("tags");
    assert!(
        tags.contains(&"datanet".into()) && tags.contains(&"license:cc-by-4.0".into()),
        "{tags:?}"
    );
    let siblings: Vec<&str> = info["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| s["rfilename"].as_str().expect("rfilename"))
        .collect();
    assert_eq!(
        siblings,
        ["README.md", "datanet.json", "shards/00000.parquet"]
    );
    let sha = info["sha"].as_str().expect("sha").to_string();
    // hf-hub reads repo info with its own types.
    let typed: hf_hub::api::RepoInfo =
        serde_json::from_value(info.clone()).expect("hf-hub's RepoInfo");
    assert_eq!(typed.sha, sha);

    let (_, _, at_sha) = json(format!(
        "{base}/api/datasets/alice/clinic-qa/revision/{sha}"
    ))
    .await;
    assert_eq!(at_sha["sha"], sha.as_str());
    let (status, code, body) =
        json(format!("{base}/api/datasets/alice/clinic-qa/revision/v9")).await;
    assert_eq!((status, code.as_deref()), (404, Some("RevisionNotFound")));
    assert!(body["error"].as_str().is_some_and(|e| e.contains("v9")));
    let (status, code, _) = json(format!("{base}/api/datasets/alice/nothing")).await;
    assert_eq!((status, code.as_deref()), (404, Some("RepoNotFound")));

    let (_, _, blobs) = json(format!("{base}/api/datasets/alice/clinic-qa?blobs=true")).await;
    let parquet = &blobs["siblings"][2];
    assert_eq!(parquet["lfs"]["sha256"], sha256_hex(&shard).as_str());
    assert_eq!(parquet["size"], shard.len());

    let (status, _, tree) = json(format!("{base}/api/datasets/alice/clinic-qa/tree/main")).await;
    assert_eq!(status, 200);
    let kinds: Vec<(String, String)> = tree
        .as_array()
        .expect("tree")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").into(),
                e["path"].as_str().expect("path").into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("file".to_string(), "README.md".to_string()),
            ("file".into(), "datanet.json".into()),
            ("directory".into(), "shards".into())
        ]
    );
    let readme = &tree[0];
    let readme_bytes =
        std::fs::read(root.path().join("alice/clinic-qa/README.md")).expect("readme");
    assert_eq!(readme["oid"], git_blob_oid(&readme_bytes).as_str());
    assert_eq!(readme["size"], readme_bytes.len());
    assert!(readme.get("lfs").is_none());

    let (_, _, recursive) = json(format!(
        "{base}/api/datasets/alice/clinic-qa/tree/{sha}?recursive=true"
    ))
    .await;
    let file = recursive
        .as_array()
        .expect("tree")
        .iter()
        .find(|e| e["path"] == "shards/00000.parquet")
        .expect("the shard is listed");
    assert_eq!(file["type"], "file");
    assert_eq!(file["lfs"]["oid"], sha256_hex(&shard).as_str());
    assert_eq!(file["lfs"]["size"], shard.len());
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        sha256_hex(&shard),
        shard.len()
    );
    assert_eq!(file["lfs"]["pointerSize"], pointer.len());
    assert_eq!(file["oid"], git_blob_oid(pointer.as_bytes()).as_str());

    let (_, _, sub) = json(format!(
        "{base}/api/datasets/alice/clinic-qa/tree/main/shards"
    ))
    .await;
    assert_eq!(sub.as_array().expect("tree").len(), 1);
    let (status, code, _) = json(format!(
        "{base}/api/datasets/alice/clinic-qa/tree/main/nope"
    ))
    .await;
    assert_eq!((status, code.as_deref()), (404, Some("EntryNotFound")));

    let (_, _, listed) = json(format!("{base}/api/datasets?filter=datanet&full=true")).await;
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "alice/clinic-qa");
    assert!(listed[0]["siblings"].is_array());
    let (_, _, medical) = json(format!(
        "{base}/api/datasets?filter=medical&filter=license:cc-by-4.0"
    ))
    .await;
    assert_eq!(medical.as_array().expect("list").len(), 1);
    let (_, _, limited) = json(format!("{base}/api/datasets?limit=1")).await;
    assert_eq!(limited.as_array().expect("list").len(), 1);
    let (_, _, by_author) = json(format!("{base}/api/datasets?author=bob")).await;
    assert_eq!(by_author[0]["id"], "bob/other");

    // The revision follows the content.
    std::fs::write(root.path().join("alice/clinic-qa/extra.txt"), "x").expect("write");
    let (_, _, changed) = json(format!("{base}/api/datasets/alice/clinic-qa")).await;
    assert_ne!(changed["sha"], sha.as_str());
    let (status, _, _) = json(format!(
        "{base}/api/datasets/alice/clinic-qa/revision/{sha}"
    ))
    .await;
    assert_eq!(status, 404, "the old revision is gone");
    server.stop().await;
}

/// Sends one raw request (no client normalises the path) and returns the response text.
async fn raw_request(base: &str, path: &str) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn paths_outside_the_root_are_refused() {
    let (root, server, _) = hub_with_one_repo().await;
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("private.txt"), "not for the hub either").expect("write");
    let repo = root.path().join("alice/clinic-qa");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path().join("private.txt"), repo.join("leak.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(root.path().join("secret.txt"), repo.join("inside.txt"))
            .expect("symlink");
    }
    let base = &server.url;
    for path in [
        "/datasets/alice/clinic-qa/resolve/main/../../../secret.txt",
        "/datasets/alice/clinic-qa/resolve/main/..%2F..%2F..%2Fsecret.txt",
        "/datasets/alice/clinic-qa/resolve/main/%2E%2E/%2E%2E/%2E%2E/secret.txt",
        "/datasets/alice/clinic-qa/resolve/main/%2Fetc%2Fpasswd",
        "/datasets/alice/clinic-qa/resolve/main/shards/..%5C..%5Csecret.txt",
        "/datasets/../alice/resolve/main/secret.txt",
        "/datasets/alice/..%2F..%2F/resolve/main/secret.txt",
        "/api/datasets/alice/clinic-qa/tree/main/..%2F..",
        "/datasets/alice/clinic-qa/resolve/main/leak.txt",
    ] {
        let response = raw_request(base, path).await;
        let status = response.split(' ').nth(1).unwrap_or("");
        assert!(matches!(status, "400" | "404"), "{path}: {response}");
        assert!(
            !response.contains("not for the hub"),
            "{path} leaked: {response}"
        );
    }
    let siblings = get(&format!("{base}/api/datasets/alice/clinic-qa"), None)
        .await
        .text()
        .await
        .expect("info");
    assert!(
        !siblings.contains("leak.txt"),
        "a link out of the root is listed: {siblings}"
    );
    #[cfg(unix)]
    {
        // A link that stays inside the root is an ordinary file.
        let inside = get(
            &format!("{base}/datasets/alice/clinic-qa/resolve/main/inside.txt"),
            None,
        )
        .await;
        assert_eq!(inside.status(), 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn hf_hub_downloads_from_our_server() {
    let (root, server, shard) = hub_with_one_repo().await;
    std::fs::write(root.path().join("alice/clinic-qa/empty.txt"), "").expect("empty file");
    let cache = tempfile::tempdir().expect("cache");
    let api = hf_hub::api::tokio::ApiBuilder::new()
        .with_endpoint(server.url.clone())
        .with_cache_dir(cache.path().to_path_buf())
        .with_progress(false)
        .with_token(None)
        .build()
        .expect("api");
    let repo = api.dataset("alice/clinic-qa".to_string());
    let info = repo.info().await.expect("hf-hub reads repo info");
    assert!(
        info.siblings
            .iter()
            .any(|s| s.rfilename == "shards/00000.parquet")
    );
    let path = repo
        .download("shards/00000.parquet")
        .await
        .expect("hf-hub downloads");
    assert_eq!(std::fs::read(&path).expect("read"), shard);
    let manifest = repo
        .download(MANIFEST_FILE)
        .await
        .expect("hf-hub downloads datanet.json");
    Manifest::parse(
        &std::fs::read_to_string(&manifest).expect("read"),
        &manifest,
    )
    .expect("a manifest");
    let empty = repo
        .download("empty.txt")
        .await
        .expect("hf-hub downloads an empty file");
    assert_eq!(std::fs::read(&empty).expect("read").len(), 0);
    // At a pinned commit, as our client asks.
    let pinned = api.repo(hf_hub::Repo::with_revision(
        "alice/clinic-qa".into(),
        hf_hub::RepoType::Dataset,
        info.sha.clone(),
    ));
    let again = pinned
        .download("shards/00000.parquet")
        .await
        .expect("download at the commit");
    assert!(again.to_string_lossy().contains(&info.sha));
    let missing = repo
        .download("shards/99999.parquet")
        .await
        .expect_err("no such file");
    assert!(missing.to_string().contains("404"), "{missing}");
    server.stop().await;
}

/// A hub that answers everything with `status`, `content_type` and `body`.
fn broken_hub(status: u16, content_type: &'static str, body: &'static str) -> Router {
    Router::new().fallback(move || async move {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("response")
    })
}

#[tokio::test]
async fn bad_hubs_give_clear_errors() {
    let dest = tempfile::tempdir().expect("dest");
    let cancel = AtomicBool::new(false);
    let cases = [
        (
            broken_hub(500, "text/plain", "upstream exploded"),
            "server error (500 Internal Server Error): upstream exploded",
        ),
        (
            broken_hub(502, "application/json", r#"{"error":"bad gateway"}"#),
            "server error (502 Bad Gateway): bad gateway",
        ),
        (
            broken_hub(
                200,
                "text/html",
                "<html><body>Welcome to nginx!</body></html>",
            ),
            "an HTML page where JSON was expected: <html><body>Welcome to nginx!",
        ),
        (
            broken_hub(200, "application/json", "{\"sha\": 42"),
            "not the expected JSON",
        ),
        (
            broken_hub(404, "text/plain", "Not Found"),
            "404 Not Found: the Datanet alice/x or its revision \"main\" does not exist",
        ),
    ];
    for (app, expected) in cases {
        let server = TestServer::router(app).await;
        let client = HubClient::new(&format!("{}/", server.url), None);
        let card = client
            .card("alice/x", None)
            .await
            .expect_err("a broken hub");
        let pull = client
            .pull("alice/x", None, dest.path(), &no_progress, &cancel)
            .await
            .expect_err("a broken hub");
        for err in [card, pull] {
            let text = err.to_string();
            assert!(matches!(err, Error::Hub { .. }), "{text}");
            assert!(text.contains(expected), "expected {expected:?} in {text}");
            assert!(
                text.contains(&format!(
                    "{}/api/datasets/alice/x/revision/main",
                    server.url
                )),
                "{text}"
            );
        }
        let search = client.search("x").await;
        if expected.starts_with("404") {
            let text = search.expect_err("no search").to_string();
            assert!(text.contains("no dataset search here"), "{text}");
        } else {
            assert!(search.is_err(), "search on a broken hub");
        }
        server.stop().await;
    }

    // Our own hub's 404s say what does not exist.
    let (_root, server, _) = hub_with_one_repo().await;
    let client = HubClient::new(&server.url, None);
    let missing = client
        .card("alice/nothing", None)
        .await
        .expect_err("no such Datanet");
    assert!(
        missing
            .to_string()
            .contains("the Datanet alice/nothing does not exist"),
        "{missing}"
    );
    let no_rev = client
        .card("alice/clinic-qa", Some("v2"))
        .await
        .expect_err("no such revision");
    assert!(
        no_rev.to_string().contains("has no revision \"v2\""),
        "{no_rev}"
    );
    let bad_id = client.card("../etc", None).await.expect_err("not an id");
    assert!(matches!(bad_id, Error::Invalid(_)), "{bad_id}");
    server.stop().await;
}
