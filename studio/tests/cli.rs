//! The `modelfactory` binary, run as a user would run it: real processes, a real SQLite file,
//! real sockets on loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{default_gguf, tiny_chat_gguf, tiny_gguf, tiny_safetensors_folder};
use serde_json::Value;

fn modelfactory(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelfactory"));
    c.arg("--home")
        .arg(home)
        .env_remove("MODELFACTORY_HOME")
        .env_remove("HF_ENDPOINT");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the modelfactory binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "command failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

#[test]
fn help_names_every_command() {
    let o = run(Command::new(env!("CARGO_BIN_EXE_modelfactory")).arg("--help"));
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for cmd in ["doctor", "models", "jobs", "chat", "train", "runs", "serve"] {
        assert!(text.contains(cmd), "--help lacks {cmd}:\n{text}");
    }
}

#[test]
fn doctor_finds_a_usable_cpu_backend_and_the_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = json(&run(modelfactory(dir.path()).args(["doctor", "--json"])));
    let cpu = report["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "cpu"))
        .expect("a cpu backend entry");
    assert_eq!(cpu["usable"], true, "{cpu}");
    assert_eq!(report["workspace"], dir.path().display().to_string());
    assert!(dir.path().join("studio.sqlite3").is_file());
}

#[test]
fn a_gguf_model_is_added_listed_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gguf, expected) = tiny_gguf(dir.path());
    let added = json(&run(modelfactory(&dir.path().join("ws"))
        .args(["models", "add"])
        .arg(&gguf)
        .arg("--json")));
    assert_eq!(added["architecture"], "llama");
    assert_eq!(added["parameters"], expected.parameters);
    assert_eq!(added["context_length"], expected.context_length);
    assert_eq!(
        added["file_size"],
        std::fs::metadata(&gguf).expect("stat").len()
    );
    assert_eq!(added["status"], "ready");
    let id = added["id"].as_str().expect("id").to_string();

    let listed = json(&run(
        modelfactory(&dir.path().join("ws")).args(["models", "list", "--json"])
    ));
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["id"], id.as_str());

    // Adding the same file again keeps one entry with the same id.
    let again = json(&run(modelfactory(&dir.path().join("ws"))
        .args(["models", "add"])
        .arg(&gguf)
        .arg("--json")));
    assert_eq!(again["id"], id.as_str());

    let o = run(modelfactory(&dir.path().join("ws")).args(["models", "remove", &id]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(gguf.exists(), "removing a model must not delete its file");
    let listed = json(&run(
        modelfactory(&dir.path().join("ws")).args(["models", "list", "--json"])
    ));
    assert_eq!(listed, Value::Array(vec![]));
}

#[test]
fn a_safetensors_folder_is_read_from_its_config_and_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (folder, expected) = tiny_safetensors_folder(dir.path());
    let added = json(&run(modelfactory(&dir.path().join("ws"))
        .args(["models", "add"])
        .arg(&folder)
        .arg("--json")));
    assert_eq!(added["format"], "safetensors");
    assert_eq!(added["architecture"], "llama");
    assert_eq!(added["parameters"], expected.parameters);
    assert_eq!(added["context_length"], expected.context_length);
}

#[test]
fn a_truncated_gguf_is_refused_by_name_and_nothing_stored_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    let (good, _) = tiny_gguf(dir.path());
    json(&run(modelfactory(&ws)
        .args(["models", "add"])
        .arg(&good)
        .arg("--json")));

    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.path().join("cut-short.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).expect("write");
    let o = run(modelfactory(&ws).args(["models", "add"]).arg(&cut));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cut-short.gguf"),
        "the error must name the file: {err}"
    );
    assert!(err.contains("hint:"), "{err}");

    let listed = json(&run(modelfactory(&ws).args(["models", "list", "--json"])));
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "the good model is still there"
    );
}

#[test]
fn an_unreadable_config_json_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (folder, _) = tiny_safetensors_folder(dir.path());
    std::fs::write(folder.join("config.json"), "{ \"model_type\": \"llama\", ").expect("write");
    let o = run(modelfactory(&dir.path().join("ws"))
        .args(["models", "add"])
        .arg(&folder));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
}

#[test]
fn a_model_whose_file_disappeared_is_listed_as_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    let (gguf, _) = tiny_gguf(dir.path());
    json(&run(modelfactory(&ws)
        .args(["models", "add"])
        .arg(&gguf)
        .arg("--json")));
    std::fs::remove_file(&gguf).expect("remove");
    let listed = json(&run(modelfactory(&ws).args(["models", "list", "--json"])));
    assert_eq!(listed[0]["status"], "missing");
    let problem = listed[0]["problem"].as_str().unwrap_or_default();
    assert!(problem.contains(&gguf.display().to_string()), "{problem}");
}

#[test]
fn a_source_that_is_neither_path_nor_repo_id_gets_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(modelfactory(dir.path()).args(["models", "add", "./no/such/model.gguf"]));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("./no/such/model.gguf") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn a_read_only_workspace_is_reported() {
    // Root ignores permission bits, so use a folder on a file system that refuses writes.
    let ro = if is_root() {
        std::path::PathBuf::from("/sys/modelfactory-workspace")
    } else {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let mut perms = std::fs::metadata(&dir).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
        std::fs::set_permissions(&dir, perms).expect("chmod");
        dir.join("ws")
    };
    let o = run(modelfactory(&ro).args(["models", "list"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("read-only") && err.contains("modelfactory-workspace")
            || err.contains("read-only") && err.contains("ws"),
        "{err}"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

#[test]
fn a_corrupt_catalog_is_reported_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("studio.sqlite3");
    let junk = b"not sqlite at all ".repeat(500);
    std::fs::write(&db, &junk).expect("write");
    let o = run(modelfactory(dir.path()).args(["models", "list"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("studio.sqlite3"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&db).expect("read"), junk);
}

/// A running `modelfactory serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = modelfactory(home)
        .args(["serve", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("ModelFactory studio: ") {
                    break url.to_string();
                }
            }
            _ => panic!("serve exited before printing its address"),
        }
    };
    // Keep reading: with the pipe closed, the server's next line to stdout would fail and end it.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, url }
}

#[test]
fn a_second_instance_on_the_same_workspace_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = serve(dir.path(), &[]);
    let o = run(modelfactory(dir.path()).args(["serve", "--port", "0"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("already using the workspace"), "{err}");
    // Where the first one is, without its token.
    let address = first.url.split('?').next().unwrap_or_default();
    assert!(
        err.contains(address) && !err.contains("token="),
        "the message should say where the first one is: {err}"
    );
    // One-shot commands still work beside the running instance.
    let o = run(modelfactory(dir.path()).args(["models", "list"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_port_in_use_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let o = run(modelfactory(dir.path()).args(["serve", "--port", &port]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("port {port}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn serving_beyond_loopback_prints_a_token_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), &["--host", "0.0.0.0"]);
    assert!(server.url.contains("?token="), "{}", server.url);
}

#[test]
fn a_dead_network_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on: the connection is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = run(modelfactory(dir.path())
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .args(["models", "add", "someone/some-model"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("someone/some-model") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    let jobs = json(&run(
        modelfactory(dir.path()).args(["jobs", "list", "--json"])
    ));
    assert_eq!(jobs[0]["state"], "failed", "{jobs}");
}

#[test]
fn a_pull_killed_midway_shows_as_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A hub that accepts connections and never answers keeps the pull job running.
    let hub = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hub.local_addr().expect("addr").port();
    let _held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in hub.incoming().flatten() {
            open.push(conn);
        }
    });
    let mut pull = modelfactory(dir.path())
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .args(["models", "add", "someone/slow-model"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("pull.err")).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = json(&run(
            modelfactory(dir.path()).args(["jobs", "list", "--json"])
        ));
        if jobs[0]["state"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pull never started: {jobs}; its stderr: {}",
            std::fs::read_to_string(dir.path().join("pull.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pull.kill().expect("kill");
    pull.wait().expect("wait");
    let jobs = json(&run(
        modelfactory(dir.path()).args(["jobs", "list", "--json"])
    ));
    assert_eq!(jobs[0]["state"], "interrupted", "{jobs}");
}

/// Sampling flags that make the tiny random model write a few tokens, the same ones each time.
const FEW_TOKENS: &[&str] = &[
    "--temperature",
    "1",
    "--top-k",
    "0",
    "--seed",
    "7",
    "--max-tokens",
    "12",
];

#[test]
fn chat_streams_one_answer_to_stdout_and_its_speed_to_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = tiny_chat_gguf(dir.path());
    let o = run(modelfactory(&dir.path().join("ws"))
        .args(["chat", "--model"])
        .arg(&gguf)
        .args([
            "--prompt",
            "What is the capital of France?",
            "--backend",
            "cpu",
        ])
        .args(FEW_TOKENS));
    assert!(o.status.success(), "{}", stderr(&o));
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(!answer.trim().is_empty(), "no answer on stdout");
    let err = stderr(&o);
    assert!(err.contains("tokens/s"), "{err}");
    assert!(err.contains("on cpu"), "{err}");
    assert!(
        !answer.contains("tokens/s"),
        "figures belong on stderr: {answer}"
    );

    // By id, once registered; the same seed gives the same answer.
    let added = json(&run(modelfactory(&dir.path().join("ws"))
        .args(["models", "add"])
        .arg(&gguf)
        .arg("--json")));
    let id = added["id"].as_str().expect("id");
    let again = run(modelfactory(&dir.path().join("ws"))
        .args([
            "chat",
            "--model",
            id,
            "--prompt",
            "What is the capital of France?",
        ])
        .args(FEW_TOKENS));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(String::from_utf8_lossy(&again.stdout), answer);
}

#[test]
fn chat_in_the_terminal_keeps_the_conversation_until_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = tiny_chat_gguf(dir.path());
    let mut child = modelfactory(dir.path())
        .args(["chat", "--model"])
        .arg(&gguf)
        .args(["--system", "Be brief."])
        .args(FEW_TOKENS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"Hello there\n\nAnd again?\n/reset\nA fresh start\n/exit\nnever read\n")
            .expect("write");
    }
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("tokens/s (prompt").count(),
        3,
        "three answers: {err}"
    );
    assert!(err.contains("starts over"), "{err}");
    // Each answer's prompt: the first holds one question, the second two turns more, and
    // after /reset the prompt is as short as the first again.
    let prompts: Vec<u64> = err
        .lines()
        .filter_map(|l| l.split("prompt: ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(prompts.len(), 3, "{err}");
    assert!(prompts[1] > prompts[0], "{prompts:?}");
    assert!(prompts[2] < prompts[1], "{prompts:?}");
}

#[test]
fn chat_with_an_unknown_model_says_where_the_ids_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o =
        run(modelfactory(dir.path()).args(["chat", "--model", "no-such-model", "--prompt", "hi"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("no-such-model"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("models list"),
        "{err}"
    );
}

#[test]
fn chat_with_a_file_that_is_not_a_model_passes_on_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("notes.gguf");
    std::fs::write(&bogus, b"just some notes, not weights").expect("write");
    let o = run(modelfactory(dir.path())
        .args(["chat", "--model"])
        .arg(&bogus)
        .args(["--prompt", "hi"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot load the model notes.gguf"), "{err}");
    assert!(
        err.contains("GGUF") && err.contains(&bogus.display().to_string()),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

/// A small alpaca file whose answers use the tiny model's letters.
fn tiny_dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tiny.jsonl");
    let rows: String = (0..6)
        .map(|i| {
            format!(
                "{{\"instruction\": \"question {i}\", \"output\": \"answer number {i} is here\"}}\n"
            )
        })
        .collect();
    std::fs::write(&path, rows).expect("write the dataset");
    path
}

#[test]
fn train_prints_a_line_per_step_and_chat_uses_the_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = tiny_chat_gguf(dir.path());
    let added = json(&run(modelfactory(dir.path())
        .args(["models", "add", "--json"])
        .arg(&gguf)));
    let model = added["id"].as_str().expect("model id").to_owned();
    let data = tiny_dataset(dir.path());
    let o = run(modelfactory(dir.path())
        .args(["train", "--model", &model, "--data"])
        .arg(&data)
        .args([
            "--preset",
            "quick",
            "--max-steps",
            "3",
            "--max-length",
            "64",
        ])
        .args([
            "--eval-every",
            "1",
            "--checkpoint-every",
            "2",
            "--name",
            "tiny run",
        ]));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with("step=")).collect();
    assert_eq!(steps.len(), 3, "{out}");
    for line in &steps {
        let loss: f64 = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("loss="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no loss in {line:?}"));
        assert!(loss.is_finite() && loss > 0.0, "{line}");
    }
    assert!(out.lines().any(|l| l.starts_with("eval step=3 ")), "{out}");
    let done = out
        .lines()
        .find(|l| l.starts_with("done "))
        .expect("a done line");
    assert!(
        done.contains("state=finished") && done.contains("steps=3"),
        "{done}"
    );
    let run_id = out
        .lines()
        .find_map(|l| l.strip_prefix("run id="))
        .and_then(|l| l.split(' ').next())
        .expect("the run id")
        .to_owned();

    let runs = json(&run(
        modelfactory(dir.path()).args(["runs", "list", "--json"])
    ));
    assert_eq!(runs[0]["id"], run_id.as_str());
    assert_eq!(runs[0]["state"], "finished");
    assert_eq!(runs[0]["step"], 3);
    let detail = json(&run(
        modelfactory(dir.path()).args(["runs", "show", &run_id, "--json"])
    ));
    assert_eq!(detail["steps"].as_array().map(Vec::len), Some(3));
    assert!(
        detail["command"]
            .as_str()
            .is_some_and(|c| c.contains("--max-steps 3")),
        "{detail}"
    );

    // The adapter, by run id, in the chat.
    let o = run(modelfactory(dir.path())
        .args(["chat", "--model", &model, "--adapter", &run_id])
        .args(["--prompt", "hi", "--max-tokens", "4", "--temperature", "0"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("with the adapter"), "{}", stderr(&o));

    // Merged into a safetensors folder that chat loads as a model.
    let merged = dir.path().join("merged");
    let o = run(modelfactory(dir.path())
        .args(["runs", "merge", &run_id, "--out"])
        .arg(&merged));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(merged.join("model.safetensors").is_file());
    let o = run(modelfactory(dir.path())
        .args(["chat", "--model"])
        .arg(&merged)
        .args(["--prompt", "hi", "--max-tokens", "4", "--temperature", "0"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn train_refuses_bad_input_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = tiny_chat_gguf(dir.path());
    let added = json(&run(modelfactory(dir.path())
        .args(["models", "add", "--json"])
        .arg(&gguf)));
    let model = added["id"].as_str().expect("model id").to_owned();

    // A dataset with no usable rows: named, with the lines at fault.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"instruction\": \"q\"}\nnot json\n").expect("write");
    let o = run(modelfactory(dir.path())
        .args(["train", "--model", &model, "--data"])
        .arg(&bad));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    // A setting out of range, before anything runs.
    let o = run(modelfactory(dir.path())
        .args(["train", "--model", &model, "--data"])
        .arg(tiny_dataset(dir.path()))
        .args(["--learning-rate", "3"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("learning rate"), "{}", stderr(&o));

    // An adapter folder that is not one.
    let empty = dir.path().join("not-an-adapter");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = run(modelfactory(dir.path())
        .args(["chat", "--model"])
        .arg(&gguf)
        .arg("--adapter")
        .arg(&empty)
        .args(["--prompt", "hi"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("adapter_config.json"), "{}", stderr(&o));
}

#[test]
fn chat_refuses_sampling_settings_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = tiny_chat_gguf(dir.path());
    let o = run(modelfactory(dir.path())
        .args(["chat", "--model"])
        .arg(&gguf)
        .args(["--prompt", "hi", "--top-p", "1.5"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("top_p"), "{}", stderr(&o));
}

#[test]
#[cfg_attr(
    not(feature = "default-model"),
    ignore = "needs the default model: run with --features studio/default-model after scripts/setup"
)]
fn chat_with_the_default_model_knows_the_capital_of_france() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    let added = json(&run(modelfactory(&ws)
        .args(["models", "add"])
        .arg(default_gguf())
        .args(["--name", "SmolLM2-135M-Instruct", "--json"])));
    assert_eq!(added["id"], "smollm2-135m-instruct");
    let o = run(modelfactory(&ws).args([
        "chat",
        "--model",
        "smollm2-135m-instruct",
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "64",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(answer.contains("Paris"), "{answer}");
    assert!(stderr(&o).contains("tokens/s"), "{}", stderr(&o));
}
