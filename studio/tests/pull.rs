//! Pulling a model repo through the Hugging Face Hub API. The real hub is out of reach in
//! tests, so a stand-in (`hub_mock`) answers the three calls the client makes — repo info,
//! the ranged metadata probe, ranged downloads — over a real socket on loopback.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use studio::{JobState, ModelStatus, Studio};

type Files = Arc<BTreeMap<String, Vec<u8>>>;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

async fn repo_info(State(files): State<Files>) -> Response {
    let siblings: Vec<_> = files.keys().map(|f| json!({ "rfilename": f })).collect();
    axum::Json(json!({ "sha": COMMIT, "siblings": siblings })).into_response()
}

async fn resolve(
    State(files): State<Files>,
    UrlPath((_o, _n, _rev, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(data) = files.get(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = data.len();
    let (start, end) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .unwrap_or((0, len.saturating_sub(1)));
    let end = end.min(len.saturating_sub(1));
    (
        StatusCode::PARTIAL_CONTENT,
        [
            ("x-repo-commit", COMMIT.to_string()),
            ("etag", format!("\"{:x}\"", len)),
            ("content-range", format!("bytes {start}-{end}/{len}")),
        ],
        data[start..=end].to_vec(),
    )
        .into_response()
}

async fn hub_mock(files: BTreeMap<String, Vec<u8>>) -> String {
    let app = axum::Router::new()
        .route("/api/models/{owner}/{name}/revision/{rev}", get(repo_info))
        .route("/{owner}/{name}/resolve/{rev}/{*file}", get(resolve))
        .with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn read_folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_repo_is_pulled_with_progress_and_registered_with_hub_mock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (folder, expected) = common::tiny_safetensors_folder(dir.path());
    let mut files = read_folder(&folder);
    files.insert("README.md".into(), b"not pulled".to_vec());
    let endpoint = hub_mock(files).await;

    let studio = Studio::open(&dir.path().join("ws")).expect("studio");
    let mut settings = studio.settings().expect("settings");
    settings.hub_endpoint = endpoint;
    studio.save_settings(&settings).expect("save");

    let started = studio.add_model("someone/tiny-llama", None).expect("add");
    assert!(started.model.is_none());
    let job = started.job.expect("a pull job");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let done = loop {
        let info = studio.jobs().get(&job.id).expect("job");
        if info.state.is_finished() {
            break info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pull did not finish: {info:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let events = studio.jobs().events(&job.id).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message.starts_with("downloading model.safetensors")
                && e.figures.contains_key("bytes")),
        "no download progress among {events:#?}"
    );

    let models = studio.list_models().expect("list");
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(m.source, "someone/tiny-llama");
    assert_eq!(m.status, ModelStatus::Ready);
    assert_eq!(m.parameters, expected.parameters);
    let pulled = Path::new(&m.path);
    assert!(
        pulled.starts_with(dir.path().join("ws").join("models")),
        "{}",
        m.path
    );
    assert_eq!(
        read_folder(&folder)["model.safetensors"],
        std::fs::read(pulled.join("model.safetensors")).expect("pulled weights")
    );
    assert!(
        !pulled.join("README.md").exists(),
        "only the files a model needs are pulled"
    );
}
