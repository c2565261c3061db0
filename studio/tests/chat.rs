//! Local chat over the HTTP API of `modelfactory serve`, in process, over a real socket on
//! loopback, with a tiny random model (its answers are gibberish, but they stream like real ones).

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use studio::Studio;

struct Running {
    base: String,
    http: reqwest::Client,
    model_id: String,
    gguf: std::path::PathBuf,
    _studio: Studio,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A server on a fresh workspace with the tiny chat model registered.
async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let studio = Studio::open_instance(&dir.path().join("ws"), "test").expect("studio");
    let gguf = common::tiny_chat_gguf(dir.path());
    let added = studio
        .add_model(&gguf.to_string_lossy(), None)
        .expect("add the tiny model");
    let model_id = added.model.expect("a model").id;
    let app = studio::server::router(studio.clone(), None, None);
    let (base, tx) = common::serve_on_loopback(app).await;
    Running {
        base,
        http: reqwest::Client::new(),
        model_id,
        gguf,
        _studio: studio,
        _shutdown: tx,
        _dir: dir,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.base)
    }

    /// Sends a request and returns its status and JSON body (null for an empty one).
    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body)
    }

    async fn create(&self, sampling: Value) -> Value {
        let (status, body) = self
            .call(
                self.http
                    .post(self.url("/conversations"))
                    .json(&json!({ "model_id": self.model_id, "sampling": sampling })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn send(&self, id: &str, content: &str, sampling: Option<Value>) -> reqwest::Response {
        let mut body = json!({ "content": content });
        if let Some(s) = sampling {
            body["sampling"] = s;
        }
        self.http
            .post(self.url(&format!("/conversations/{id}/messages")))
            .json(&body)
            .send()
            .await
            .expect("send")
    }
}

/// Sampling that keeps generating: the tiny model rarely draws its end token at temperature 1.
fn long_answers() -> Value {
    json!({ "temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "seed": 7, "max_new_tokens": 4000 })
}

fn short_answers() -> Value {
    json!({ "temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "seed": 7, "max_new_tokens": 12 })
}

/// Server-sent events as (event, data) pairs, read as they arrive.
struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Self {
            stream: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or None when the stream ends.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let event = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .map(str::to_string);
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Some(event) = event {
                    let value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {event}: not JSON ({e}): {data}"));
                    return Some((event, value));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.stream.next())
                .await
                .expect("the answer stream stalled")?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    }

    /// Every remaining event.
    async fn all(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().expect("token text"))
        .collect()
}

#[tokio::test]
async fn conversations_are_created_listed_renamed_and_deleted() {
    let s = start().await;
    let (status, list) = s.call(s.http.get(s.url("/conversations"))).await;
    assert_eq!((status, list), (200, json!([])));

    let (status, created) = s
        .call(s.http.post(s.url("/conversations")).json(&json!({
            "model_id": s.model_id,
            "system": "You answer in one sentence.",
        })))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["title"], "New conversation");
    assert_eq!(created["model_id"], s.model_id.as_str());
    assert_eq!(created["sampling"]["max_new_tokens"], 512, "{created}");
    assert_eq!(created["messages"][0]["role"], "system");
    assert_eq!(created["messages"][0]["stats"], Value::Null);

    let (_, list) = s.call(s.http.get(s.url("/conversations"))).await;
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["message_count"], 0);

    let (status, renamed) = s
        .call(
            s.http
                .patch(s.url(&format!("/conversations/{id}")))
                .json(&json!({ "title": "Capitals", "sampling": short_answers() })),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["title"], "Capitals");
    assert_eq!(renamed["sampling"], short_answers());
    let (_, got) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(got, renamed);

    let (status, body) = s
        .call(
            s.http
                .patch(s.url(&format!("/conversations/{id}")))
                .json(&json!({ "sampling": { "temperature": -1.0 } })),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("temperature"),
        "{body}"
    );

    let (status, body) = s
        .call(
            s.http
                .post(s.url("/conversations"))
                .json(&json!({ "model_id": "no-such-model" })),
        )
        .await;
    assert_eq!(status, 404);
    assert!(body["hint"].is_string(), "{body}");

    let (status, _) = s
        .call(s.http.delete(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap_or_default().contains(&id),
        "{body}"
    );
    let (status, _) = s
        .call(s.http.delete(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_answer_streams_token_by_token_and_is_kept_with_its_figures() {
    let s = start().await;
    // The backend in Settings is the one chat uses.
    let (status, _) = s
        .call(
            s.http.put(s.url("/settings")).json(
                &json!({ "hub_endpoint": "https://huggingface.co", "default_backend": "cpu" }),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let conversation = s.create(short_answers()).await;
    let id = conversation["id"].as_str().expect("id");

    let events = Events::new(s.send(id, "What is the capital of France?", None).await)
        .all()
        .await;
    let (last, done) = events.last().expect("events").clone();
    assert_eq!(last, "done", "{events:?}");
    assert!(
        events[..events.len() - 1].iter().all(|(e, _)| e == "token"),
        "{events:?}"
    );
    assert!(events.len() > 2, "the answer came in one piece: {events:?}");
    assert!(
        events
            .iter()
            .all(|(e, d)| e != "token" || d["conversation_id"] == id)
    );
    let text = streamed_text(&events);
    assert_eq!(done["message"]["content"], text.as_str());
    assert_eq!(done["message"]["role"], "assistant");
    assert_eq!(done["message"]["seq"], 2);
    let stats = &done["stats"];
    assert_eq!(done["message"]["stats"], *stats);
    assert_eq!(stats["model_id"], s.model_id.as_str());
    assert_eq!(stats["backend"], "cpu");
    assert!(
        stats["generated_tokens"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    assert!(stats["prompt_tokens"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(stats["decode_tokens_per_s"].as_f64().is_some(), "{stats}");
    assert!(
        ["end_of_turn", "max_tokens"].contains(&stats["stop_reason"].as_str().unwrap_or("")),
        "{stats}"
    );

    // Stored: the question, the answer with its figures, and a title from the question.
    let (_, stored) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    let messages = stored["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{stored}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "What is the capital of France?");
    assert_eq!(messages[1], done["message"]);
    assert_eq!(stored["title"], "What is the capital of France?");

    // The next question follows on in the same conversation; the model stays loaded.
    let events = Events::new(s.send(id, "And of Italy?", Some(short_answers())).await)
        .all()
        .await;
    let (last, done) = events.last().expect("events").clone();
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["message"]["seq"], 4);
    assert!(
        done["stats"]["prompt_tokens"].as_u64() > stats["prompt_tokens"].as_u64(),
        "the second prompt holds the first exchange: {} then {}",
        stats,
        done["stats"]
    );
    let (_, list) = s.call(s.http.get(s.url("/conversations"))).await;
    assert_eq!(list[0]["message_count"], 4);
}

#[tokio::test]
async fn bad_questions_answer_4xx_before_any_stream_and_store_nothing() {
    let s = start().await;
    let conversation = s.create(short_answers()).await;
    let id = conversation["id"].as_str().expect("id");

    let r = s.send(id, "   ", None).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("empty"),
        "{body}"
    );

    let r = s
        .send(id, "hi", Some(json!({ "top_p": 1.5, "max_new_tokens": 4 })))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("top_p"),
        "{body}"
    );

    let r = s.send("no-such-conversation", "hi", None).await;
    assert_eq!(r.status(), 404);

    // A conversation whose model was removed from the workspace.
    let (status, _) = s
        .call(s.http.delete(s.url(&format!("/models/{}", s.model_id))))
        .await;
    assert_eq!(status, 204);
    let r = s.send(id, "hi", None).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&s.model_id),
        "{body}"
    );

    let (_, stored) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(stored["messages"], json!([]), "{stored}");
}

#[tokio::test]
async fn a_model_that_cannot_load_says_why_and_the_question_is_taken_back() {
    let s = start().await;
    let conversation = s.create(short_answers()).await;
    let id = conversation["id"].as_str().expect("id");
    std::fs::write(&s.gguf, b"this is not a model file at all, just text").expect("overwrite");

    let events = Events::new(s.send(id, "hello?", None).await).all().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (event, error) = &events[0];
    assert_eq!(event, "error");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot load the model") && message.contains(&s.model_id),
        "{message}"
    );
    // trainer's own explanation, naming the file
    assert!(message.contains("GGUF"), "{message}");
    assert!(message.contains(&s.gguf.display().to_string()), "{message}");
    assert!(error["hint"].is_string(), "{error}");

    let (_, stored) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(stored["messages"], json!([]), "{stored}");
}

#[tokio::test]
async fn stop_ends_the_answer_which_is_kept_as_far_as_it_got() {
    let s = start().await;
    let conversation = s.create(long_answers()).await;
    let id = conversation["id"].as_str().expect("id");
    let stop_url = s.url(&format!("/conversations/{id}/stop"));

    let (status, idle) = s.call(s.http.post(&stop_url)).await;
    assert_eq!((status, idle), (200, json!({ "stopped": false })));

    let mut events = Events::new(s.send(id, "Tell me a long, slow story.", None).await);
    let (first, _) = events.next().await.expect("a first event");
    assert_eq!(first, "token");
    let (status, stopped) = s.call(s.http.post(&stop_url)).await;
    assert_eq!((status, stopped), (200, json!({ "stopped": true })));
    let mut rest = vec![(first, Value::Null)];
    rest.extend(events.all().await);
    let (last, done) = rest.last().expect("events").clone();
    assert_eq!(last, "done", "{rest:?}");
    assert_eq!(done["stats"]["stop_reason"], "cancelled", "{done}");
    assert!(
        done["stats"]["generated_tokens"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 4000,
        "{done}"
    );

    let (_, stored) = s
        .call(s.http.get(s.url(&format!("/conversations/{id}"))))
        .await;
    assert_eq!(stored["messages"][1], done["message"], "{stored}");
    assert_eq!(
        stored["messages"][1]["stats"]["stop_reason"], "cancelled",
        "a stopped answer is marked as such"
    );
    let (_, again) = s.call(s.http.post(&stop_url)).await;
    assert_eq!(again, json!({ "stopped": false }));
    let (status, _) = s.call(s.http.post(s.url("/conversations/nope/stop"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_answer() {
    let s = start().await;
    let conversation = s.create(long_answers()).await;
    let id = conversation["id"].as_str().expect("id");
    let mut events = Events::new(s.send(id, "Tell me a long, slow story.", None).await);
    assert_eq!(events.next().await.expect("an event").0, "token");
    drop(events);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stored) = s
            .call(s.http.get(s.url(&format!("/conversations/{id}"))))
            .await;
        if let Some(answer) = stored["messages"].get(1) {
            assert_eq!(answer["stats"]["stop_reason"], "cancelled", "{answer}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answer did not stop: {stored}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_answer_at_a_time() {
    let s = start().await;
    let first = s.create(long_answers()).await;
    let first = first["id"].as_str().expect("id");
    let second = s.create(short_answers()).await;
    let second = second["id"].as_str().expect("id");

    let mut events = Events::new(s.send(first, "Tell me a long, slow story.", None).await);
    assert_eq!(events.next().await.expect("an event").0, "token");

    // The same conversation: refused before it starts.
    let r = s.send(first, "And another?", None).await;
    assert_eq!(r.status(), 409);
    // Another conversation: the model is busy.
    let other = Events::new(s.send(second, "Hello?", None).await)
        .all()
        .await;
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0].0, "error");
    assert!(
        other[0].1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("another conversation"),
        "{other:?}"
    );

    let (_, stopped) = s
        .call(s.http.post(s.url(&format!("/conversations/{first}/stop"))))
        .await;
    assert_eq!(stopped, json!({ "stopped": true }));
    let rest = events.all().await;
    assert_eq!(rest.last().map(|(e, _)| e.as_str()), Some("done"));

    // Free again.
    let again = Events::new(s.send(second, "Hello?", None).await)
        .all()
        .await;
    assert_eq!(
        again.last().map(|(e, _)| e.as_str()),
        Some("done"),
        "{again:?}"
    );
}
