//! Publishing to a hub: our client against `hub serve`'s upload API over loopback. A model
//! repository is created, files go up in one commit (LFS objects through the batch API, the
//! rest inline), come back byte for byte, and a bad request (no token, a wrong one, a broken
//! commit, an object that does not hash to its name) changes nothing. The hub's reference
//! client, Python's `huggingface_hub`, publishes to the same server and reads its files back;
//! it lives in a virtual environment that `scripts/test` sets up (`install_hub_client` in
//! `scripts/lib.sh`), at `$HOME/.cache/modelfactory/venv-hub` or `MODELFACTORY_HUB_VENV`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use datanet_sync::hub::{HubClient, HubServer, RepoKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

const TOKEN: &str = "write-token-for-tests";
const REPO: &str = "0xabc/tiny-adapter";

struct Hub {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Hub {
    async fn start(root: &Path, token: Option<&str>) -> Hub {
        let server = HubServer::new(root).with_write_token(token.map(str::to_string));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve_with_shutdown(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("hub serves");
        });
        Hub { url, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("hub stops");
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
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

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An adapter folder: a card, a config and weights (an LFS file by its extension).
fn adapter(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::create_dir_all(dir).expect("adapter folder");
    let files = [
        (
            "README.md",
            b"---\nlibrary_name: peft\n---\n# tiny\n".to_vec(),
        ),
        (
            "adapter_config.json",
            br#"{"r": 8, "lora_alpha": 16}"#.to_vec(),
        ),
        ("adapter_model.safetensors", bytes(7, 300_000)),
    ];
    files
        .iter()
        .map(|(name, content)| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write adapter file");
            (name.to_string(), path)
        })
        .collect()
}

fn repo_dir(root: &Path) -> PathBuf {
    root.join(".models").join(REPO)
}

/// Every entry under `dir` whose name starts with `.staging`.
fn staging_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".staging"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_model_repository_is_created_uploaded_and_read_back() {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let hub = Hub::start(root.path(), Some(TOKEN)).await;
    let client = HubClient::new(&hub.url, Some(TOKEN.into()));
    let files = adapter(local.path());

    client
        .create_repo(RepoKind::Model, REPO)
        .await
        .expect("create");
    // Creating it again is fine: a resumed publish does exactly that.
    client
        .create_repo(RepoKind::Model, REPO)
        .await
        .expect("create again");
    assert!(
        client
            .model_files(REPO, "main")
            .await
            .expect("empty")
            .is_empty(),
        "a new repository is empty"
    );

    let commit = client
        .upload_files(RepoKind::Model, REPO, &files, "Publish adapter")
        .await
        .expect("upload");
    assert_eq!(
        commit.oid,
        client.model_revision(REPO).await.expect("revision"),
        "the commit is what main is at"
    );
    assert!(
        commit
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with(&hub.url) && u.ends_with(&commit.oid)),
        "{:?}",
        commit.url
    );

    let remote = client.model_files(REPO, "main").await.expect("files");
    let names: Vec<&str> = remote.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ]
    );
    for (name, path) in &files {
        let content = std::fs::read(path).expect("read local");
        let file = remote.iter().find(|f| f.path == *name).expect("listed");
        assert_eq!(file.size, content.len() as u64, "{name}");
        assert!(
            file.matches(path, &sha256(&content)).expect("compare"),
            "{name} differs on the hub"
        );
        // And it comes back byte for byte.
        let back = local.path().join("back").join(name);
        client
            .download_model_file(REPO, name, &back)
            .await
            .expect("download");
        assert_eq!(std::fs::read(&back).expect("read back"), content, "{name}");
    }
    let weights = remote
        .iter()
        .find(|f| f.path == "adapter_model.safetensors")
        .expect("weights");
    assert_eq!(
        weights.sha256.as_deref(),
        Some(sha256(&bytes(7, 300_000)).as_str()),
        "weights travel as an LFS object, named by their sha256"
    );
    let readme = remote.iter().find(|f| f.path == "README.md").expect("card");
    assert!(readme.sha256.is_none(), "the card is a plain git file");
    assert!(
        !readme
            .matches(&files[1].1, &sha256(b"anything"))
            .expect("compare"),
        "another file's content does not match"
    );

    // A second commit changes one file; the revision moves, the rest stays.
    std::fs::write(&files[0].1, "# tiny, revised\n").expect("edit card");
    let second = client
        .upload_files(RepoKind::Model, REPO, &files[..1], "Revise the card")
        .await
        .expect("second upload");
    assert_ne!(second.oid, commit.oid);
    assert_eq!(
        std::fs::read_to_string(repo_dir(root.path()).join("README.md")).expect("card on hub"),
        "# tiny, revised\n"
    );
    assert_eq!(
        std::fs::read(repo_dir(root.path()).join("adapter_model.safetensors"))
            .expect("weights on hub"),
        bytes(7, 300_000)
    );
    assert!(staging_left(&repo_dir(root.path())).is_empty());
    // A model repository is no Datanet: it is not listed among them.
    let listed: Value = reqwest::get(format!("{}/api/datasets", hub.url))
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
    hub.stop().await;
}

#[tokio::test]
async fn writing_needs_the_hubs_token() {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let files = adapter(local.path());

    // A hub without a write token is read-only.
    let hub = Hub::start(root.path(), None).await;
    let error = HubClient::new(&hub.url, Some(TOKEN.into()))
        .create_repo(RepoKind::Model, REPO)
        .await
        .expect_err("read-only hub");
    let message = error.to_string();
    assert!(
        message.contains("403") && message.contains("read-only"),
        "{message}"
    );
    hub.stop().await;

    let hub = Hub::start(root.path(), Some(TOKEN)).await;
    for token in [None, Some("wrong".to_string())] {
        let client = HubClient::new(&hub.url, token.clone());
        let error = client
            .create_repo(RepoKind::Model, REPO)
            .await
            .expect_err("no or wrong token");
        let message = error.to_string();
        assert!(
            message.contains("401") && message.contains("write access"),
            "{token:?}: {message}"
        );
    }
    assert!(!repo_dir(root.path()).exists(), "nothing was created");

    // Uploading to a repository that does not exist says so.
    let error = HubClient::new(&hub.url, Some(TOKEN.into()))
        .upload_files(RepoKind::Model, REPO, &files, "x")
        .await
        .expect_err("no such repository");
    assert!(error.to_string().contains("does not exist"), "{error}");
    hub.stop().await;
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn a_broken_commit_or_upload_changes_nothing() {
    let root = tempfile::tempdir().expect("root");
    let hub = Hub::start(root.path(), Some(TOKEN)).await;
    let client = HubClient::new(&hub.url, Some(TOKEN.into()));
    client
        .create_repo(RepoKind::Model, REPO)
        .await
        .expect("create");
    let before = client.model_revision(REPO).await.expect("revision");
    let commit_url = format!("{}/api/models/{REPO}/commit/main", hub.url);
    let line = |v: Value| format!("{v}\n");
    let header = line(json!({"key": "header", "value": {"summary": "x"}}));
    let good_file = line(
        json!({"key": "file", "value": {"path": "a.txt", "encoding": "base64", "content": "aGVsbG8="}}),
    );

    // A good line, then a broken one: the good one is not committed either.
    let body = format!("{header}{good_file}{{\"key\": \"file\", \"value\": ");
    let (status, text) = post(&commit_url, "application/x-ndjson", body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("line 3"), "{text}");
    // Bad base64, a path that leaves the repository, an LFS object never uploaded.
    for (bad, expect) in [
        (
            json!({"key": "file", "value": {"path": "b.txt", "encoding": "base64", "content": "!!"}}),
            "base64",
        ),
        (
            json!({"key": "file", "value": {"path": "../escape.txt", "content": "x"}}),
            "Invalid path",
        ),
        (
            json!({"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": sha256(b"never sent"), "size": 10}}),
            "was not uploaded",
        ),
    ] {
        let (status, text) = post(
            &commit_url,
            "application/x-ndjson",
            format!("{header}{good_file}{}", line(bad)),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(expect), "{text}");
    }
    assert_eq!(client.model_revision(REPO).await.expect("revision"), before);
    assert!(!repo_dir(root.path()).join("a.txt").exists());
    assert!(!root.path().join("escape.txt").exists());
    assert!(staging_left(&repo_dir(root.path())).is_empty());

    // A commit against an older parent is refused.
    let stale = line(
        json!({"key": "header", "value": {"summary": "x", "parentCommit": "0000000000000000000000000000000000000000"}}),
    );
    let (status, text) = post(
        &commit_url,
        "application/x-ndjson",
        format!("{stale}{good_file}"),
    )
    .await;
    assert_eq!(status, 412, "{text}");
    assert!(!repo_dir(root.path()).join("a.txt").exists());

    // An LFS upload whose bytes do not hash to its name is not stored.
    let claimed = sha256(b"what was promised");
    let response = reqwest::Client::new()
        .put(format!("{}/{REPO}.git/info/lfs/objects/{claimed}", hub.url))
        .bearer_auth(TOKEN)
        .body("something else")
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response.text().await.expect("body").contains("hash to"),
        "the error says why"
    );
    assert!(!root.path().join(".lfs/objects").join(&claimed).exists());

    // The well-formed commit goes through.
    let (status, text) = post(
        &commit_url,
        "application/x-ndjson",
        format!("{header}{good_file}"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        std::fs::read_to_string(repo_dir(root.path()).join("a.txt")).expect("committed"),
        "hello"
    );
    hub.stop().await;
}

fn hub_python() -> PathBuf {
    let venv = match std::env::var_os("MODELFACTORY_HUB_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/modelfactory/venv-hub"),
    };
    let python = venv.join("bin").join("python");
    let usable = python.exists()
        && Command::new(&python)
            .args(["-c", "import huggingface_hub"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        usable,
        "Python's huggingface_hub is not installed at {} (the upload interop test needs it). \
         Set it up with `bash -c 'source scripts/lib.sh && install_hub_client'` from the \
         repository root, or run scripts/test, which does.",
        venv.display()
    );
    python
}

#[tokio::test]
async fn huggingface_hub_publishes_to_our_hub_and_reads_it_back() {
    let python = hub_python();
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let files = adapter(&local.path().join("adapter"));
    let hub = Hub::start(root.path(), Some(TOKEN)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/hf_upload.py");
    let cache = local.path().join("hf-cache");
    let (url, folder) = (hub.url.clone(), local.path().join("adapter"));
    // Twice: the second run finds the repository there and every file unchanged.
    let mut commits = Vec::new();
    for _ in 0..2 {
        let (python, script, url, folder, cache) = (
            python.clone(),
            script.clone(),
            url.clone(),
            folder.clone(),
            cache.clone(),
        );
        let output = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .args([url.as_str(), TOKEN, REPO])
                .arg(folder)
                .arg(cache)
                // The hub's newer storage protocol (Xet) is not served here; LFS is.
                .env("HF_HUB_DISABLE_XET", "1")
                .env("HF_HUB_DISABLE_TELEMETRY", "1")
                .env_remove("HF_TOKEN")
                .env_remove("HF_ENDPOINT")
                .output()
                .expect("python runs")
        })
        .await
        .expect("join");
        assert!(
            output.status.success(),
            "huggingface_hub failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(
            output
                .stdout
                .split(|&b| b == b'\n')
                .rfind(|l| !l.is_empty())
                .expect("a JSON line"),
        )
        .expect("JSON");
        assert_eq!(
            answer["files"]["adapter_model.safetensors"],
            sha256(&bytes(7, 300_000)).as_str(),
            "{answer}"
        );
        assert_eq!(answer["files"]["README.md"], Value::Null, "{answer}");
        for (path, (name, original)) in answer["downloaded"]
            .as_array()
            .expect("downloaded")
            .iter()
            .zip(&files)
        {
            let path = path.as_str().expect("a path");
            assert!(path.ends_with(name.as_str()), "{path}");
            assert_eq!(
                std::fs::read(path).expect("downloaded file"),
                std::fs::read(original).expect("original"),
                "{name}"
            );
        }
        commits.push(answer["commit"].as_str().expect("commit").to_owned());
    }
    assert_eq!(
        commits[0], commits[1],
        "nothing changed, so neither did the revision"
    );
    // And our client sees what the reference client wrote.
    let client = HubClient::new(&hub.url, Some(TOKEN.into()));
    assert_eq!(
        client.model_revision(REPO).await.expect("revision"),
        commits[0]
    );
    hub.stop().await;
}
