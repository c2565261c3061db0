//! The HTTP API of `modelfactory serve`, in process, over a real socket on loopback.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use studio::{JobState, Studio};

struct Running {
    base: String,
    studio: Studio,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>, ui_dir: Option<std::path::PathBuf>) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let studio = Studio::open_instance(&dir.path().join("ws"), "test").expect("studio");
    let app = studio::server::router(studio.clone(), token.map(str::to_string), ui_dir);
    let (base, tx) = common::serve_on_loopback(app).await;
    Running {
        base,
        studio,
        _shutdown: tx,
        _dir: dir,
    }
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("request sent");
    response.json().await.expect("a JSON body")
}

async fn text_of(url: String) -> String {
    let response = reqwest::get(url).await.expect("request sent");
    response.text().await.expect("a text body")
}

#[tokio::test]
async fn models_are_added_listed_and_removed_over_http() {
    let s = start(None, None).await;
    let (gguf, expected) = common::tiny_gguf(s._dir.path());
    let http = reqwest::Client::new();

    let list: Value = json_of(http.get(format!("{}/api/models", s.base))).await;
    assert_eq!(list, json!([]));

    let added: Value = json_of(
        http.post(format!("{}/api/models", s.base))
            .json(&json!({ "source": gguf })),
    )
    .await;
    assert_eq!(added["job"], Value::Null);
    assert_eq!(added["model"]["parameters"], expected.parameters);
    let id = added["model"]["id"].as_str().expect("id").to_string();

    let list: Value = json_of(http.get(format!("{}/api/models", s.base))).await;
    assert_eq!(list[0]["id"], id.as_str());

    let r = http
        .delete(format!("{}/api/models/{id}", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = http
        .delete(format!("{}/api/models/{id}", s.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].as_str().unwrap_or_default().contains(&id));
}

#[tokio::test]
async fn bad_input_answers_400_with_a_hint() {
    let s = start(None, None).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/models", s.base))
        .json(&json!({ "source": "not a path and not a repo" }))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(body["hint"].is_string(), "{body}");
    let r = reqwest::get(format!("{}/api/nope", s.base))
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn settings_round_trip_and_invalid_ones_are_refused() {
    let s = start(None, None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/settings", s.base);
    let put: Value = json_of(
        http.put(&url)
            .json(&json!({ "hub_endpoint": "http://127.0.0.1:9999", "default_backend": "cpu" })),
    )
    .await;
    assert_eq!(put["default_backend"], "cpu");
    let got: Value = json_of(http.get(&url)).await;
    assert_eq!(got, put);
    let r = http
        .put(&url)
        .json(&json!({ "hub_endpoint": "nonsense", "default_backend": "cpu" }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_token_guards_the_api() {
    let s = start(Some("s3cret"), None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/models", s.base);
    assert_eq!(http.get(&url).send().await.expect("get").status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    assert_eq!(
        http.get(&url)
            .bearer_auth("s3cret")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}?token=s3cret"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
}

#[tokio::test]
async fn job_progress_streams_as_server_sent_events_and_is_replayable() {
    let s = start(None, None).await;
    let response = reqwest::get(format!("{}/api/events", s.base))
        .await
        .expect("sse");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let job = s
        .studio
        .jobs()
        .spawn("test", "three steps", |ctx| {
            for i in 1..=3 {
                ctx.progress(
                    i as f64 / 3.0,
                    &format!("step {i}"),
                    &[("tokens_per_s", 100.0 * i as f64)],
                );
            }
            Ok(())
        })
        .expect("spawn");

    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.last().is_some_and(|e| e["state"] == "succeeded") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive in time")
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.lines().any(|l| l == "event: job") {
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                seen.push(serde_json::from_str(&data).expect("event JSON"));
            }
        }
    }
    let messages: Vec<&str> = seen
        .iter()
        .filter(|e| e["job_id"] == job.id.as_str())
        .filter_map(|e| e["message"].as_str())
        .collect();
    // Subscribed before the job was created, the stream saw every event.
    assert_eq!(
        messages,
        ["queued", "started", "step 1", "step 2", "step 3", "done"]
    );

    let stored: Value =
        json_of(reqwest::Client::new().get(format!("{}/api/jobs/{}/events", s.base, job.id))).await;
    let stored = stored.as_array().expect("array");
    assert_eq!(
        stored, &seen,
        "the stored events replay exactly what was streamed"
    );
    assert_eq!(
        s.studio.jobs().get(&job.id).expect("job").state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn the_built_ui_is_served_with_a_fallback_for_client_routes() {
    let ui = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ui.path().join("index.html"),
        "<!doctype html><title>studio shell</title>",
    )
    .expect("write");
    std::fs::write(ui.path().join("app.js"), "console.log(1)").expect("write");
    let s = start(None, Some(ui.path().to_path_buf())).await;
    let root = text_of(format!("{}/", s.base)).await;
    assert!(root.contains("studio shell"));
    let js = text_of(format!("{}/app.js", s.base)).await;
    assert_eq!(js, "console.log(1)");
    let deep = text_of(format!("{}/models/anything", s.base)).await;
    assert!(deep.contains("studio shell"));
}

#[tokio::test]
async fn without_a_built_ui_the_page_says_how_to_build_it() {
    let s = start(None, None).await;
    let page = text_of(format!("{}/", s.base)).await;
    assert!(page.contains("not built"), "{page}");
}

/// Polls a job until it ends, failing after `limit`.
async fn wait_for_job(client: &reqwest::Client, base: &str, job: &str, limit: Duration) -> Value {
    let started = std::time::Instant::now();
    loop {
        let info = json_of(client.get(format!("{base}/api/jobs/{job}"))).await;
        if matches!(
            info["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "interrupted")
        ) {
            return info;
        }
        assert!(started.elapsed() < limit, "job {job} still running: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tiny run trained through the API; the attribution routes start jobs, report nothing
/// before they finish, and then the rows of a file without contributors credited to the file.
#[tokio::test]
async fn attribution_is_computed_as_a_job_and_served_per_run() {
    let s = start(None, None).await;
    let client = reqwest::Client::new();
    let gguf = common::tiny_chat_gguf(s._dir.path());
    let data = s._dir.path().join("answers.jsonl");
    let rows: String = (0..8)
        .map(|i| format!("{{\"instruction\": \"question {i}\", \"output\": \"answer {i}\"}}\n"))
        .collect();
    std::fs::write(&data, rows).expect("write the dataset");
    let added = json_of(
        client
            .post(format!("{}/api/models", s.base))
            .json(&json!({ "source": gguf })),
    )
    .await;
    let model = added["model"]["id"]
        .as_str()
        .expect("a model id")
        .to_owned();
    let mut config = serde_json::to_value(trainer::train::TrainConfig {
        max_steps: Some(2),
        max_length: 64,
        eval_fraction: 0.25,
        ..trainer::train::TrainConfig::default()
    })
    .expect("config");
    config["backend"] = "cpu".into();
    let created = json_of(client.post(format!("{}/api/runs", s.base)).json(&json!({
        "model_id": model,
        "dataset": data,
        "config": config,
    })))
    .await;
    let run = created["id"].as_str().expect("a run id").to_owned();
    let job = created["job_id"].as_str().expect("a train job").to_owned();
    let trained = wait_for_job(&client, &s.base, &job, Duration::from_secs(300)).await;
    assert_eq!(trained["state"], "succeeded", "{trained}");

    let url = format!("{}/api/runs/{run}/attribution", s.base);
    let before = json_of(client.get(&url)).await;
    assert_eq!(before["run_id"], run.as_str());
    assert!(
        before["report"].is_null() && before["accuracy"].is_null(),
        "{before}"
    );

    let started = json_of(client.post(&url).json(&json!({}))).await;
    assert_eq!(started["kind"], "attribution", "{started}");
    let job = started["id"].as_str().expect("a job id").to_owned();
    let done = wait_for_job(&client, &s.base, &job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let after = json_of(client.get(&url)).await;
    let report = &after["report"];
    assert_eq!(report["method"], "datainf", "{after}");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(report["train_rows"].as_u64(), Some(rows.len() as u64));
    assert!(rows.iter().all(|r| {
        r["contributor"] == "file:answers.jsonl"
            && r["preview"]
                .as_str()
                .is_some_and(|p| p.starts_with("user: question"))
    }));
    assert_eq!(
        report["contributors"][0]["contributor"], "file:answers.jsonl",
        "{report}"
    );

    // Unknown runs and malformed requests are refused before any job starts.
    let missing = client
        .post(format!("{}/api/runs/nope/attribution", s.base))
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let malformed = client
        .post(format!("{url}/accuracy"))
        .json(&json!({ "subsets": "many" }))
        .send()
        .await
        .expect("sent");
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );
}
