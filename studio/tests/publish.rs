//! Publishing end to end, as a user runs it: rows from two contributors become a Datanet and a
//! dataset, a tiny run trains on it, `publish` signs the lineage manifest, uploads it to the
//! workspace hub and registers it on the local chain (anvil), `verify` passes on the folder
//! and on the hub repository and fails on tampered copies naming what changed, and a payment
//! is split among the contributors, one of whom withdraws it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use studio::Studio;
use studio::datanets::NewDataset;

const PASS: &str = "publisher passphrase";
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// The development mnemonic's accounts 1 and 2: contributors whose keys the test holds.
const ALICE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const BOB: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const REPO: &str = "expert/answers-adapter";

fn modelfactory(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelfactory"));
    c.arg("--home")
        .arg(home)
        .env_remove("MODELFACTORY_HOME")
        .env_remove("MODELFACTORY_PUBLISH_HUB")
        .env("MODELFACTORY_PASSPHRASE", PASS);
    c
}

fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the modelfactory binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn run(cmd: &mut Command) -> Output {
    run_with_input(cmd, "")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "command failed: {}", text(o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

/// Twelve rows, eight by Alice and four by Bob, in the letters the tiny model knows.
fn contributed_rows(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("contributed.jsonl");
    let rows: String = (0..12)
        .map(|i| {
            let who = if i % 3 == 2 { BOB } else { ALICE };
            format!(
                "{{\"instruction\": \"question {i}\", \"output\": \"answer number {i} is here\", \"contributor\": \"{who}\", \"license\": \"cc-by-4.0\"}}\n"
            )
        })
        .collect();
    std::fs::write(&path, rows).expect("write the rows");
    path
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// `publish RUN` by `publisher` to the test's repository, with `extra` flags.
/// Publishes with row shares, whose split the payment checks below know in advance; shares by
/// influence are checked on the preview.
fn publish(home: &Path, run_id: &str, publisher: &str, extra: &[&str]) -> Output {
    run(modelfactory(home)
        .args(["publish", run_id, "--address", publisher, "--repo", REPO])
        .args(["--attribution", "row-share"])
        .args(extra))
}

/// A method's LDS in an accuracy report.
fn accuracy_of(report: &Value, method: &str) -> Value {
    report["methods"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["method"] == method))
        .map(|m| m["lds"].clone())
        .unwrap_or(Value::Null)
}

fn verify_fails(home: &Path, folder: &Path, naming: &str) {
    let o = run(modelfactory(home).arg("verify").arg(folder));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(naming),
        "expected {naming:?} in:\n{}",
        text(&o)
    );
}

#[test]
fn a_run_is_published_verified_tampered_with_and_paid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");

    // Data with lineage: a Datanet of the rows, a dataset of it.
    let dataset_path = {
        let studio = Studio::open(&home).expect("workspace");
        studio
            .import_datanet(
                &contributed_rows(dir.path()).display().to_string(),
                "answers",
            )
            .expect("imports the rows as a Datanet");
        studio
            .create_dataset(&NewDataset {
                name: "answers".into(),
                sources: vec![studio::datanets::DatasetSource {
                    datanet: "local/answers".into(),
                    statuses: vec![],
                    search: None,
                    tag: None,
                }],
                files: vec![],
                eval_fraction: 0.25,
                seed: 1,
            })
            .expect("builds the dataset")
            .path
    };

    // A tiny run on it.
    let gguf = common::tiny_chat_gguf(dir.path());
    let model = json(&run(modelfactory(&home)
        .args(["models", "add", "--json", "--hub-id", "example/tiny-chat"])
        .arg(&gguf)))["id"]
        .as_str()
        .expect("model id")
        .to_owned();
    let trained = run(modelfactory(&home)
        .args(["train", "--model", &model, "--data"])
        .arg(&dataset_path)
        .args([
            "--preset",
            "quick",
            "--max-steps",
            "2",
            "--max-length",
            "64",
        ])
        .args(["--eval-fraction", "0.25", "--name", "answers"]));
    let out = String::from_utf8_lossy(&trained.stdout).into_owned();
    assert!(trained.status.success(), "{}", text(&trained));
    let run_id = out
        .lines()
        .find_map(|l| l.strip_prefix("run id="))
        .and_then(|l| l.split(' ').next())
        .expect("the run id")
        .to_owned();

    let created = run(modelfactory(&home).args(["wallet", "new", "--name", "publisher"]));
    assert!(created.status.success(), "{}", text(&created));
    let accounts = json(&run(modelfactory(&home).args(["wallet", "list", "--json"])));
    let publisher = accounts[0]["address"]
        .as_str()
        .expect("the new account")
        .to_owned();

    // Shares by influence asked for before any attribution: refused, saying how to compute it.
    let early = run(modelfactory(&home).args([
        "publish",
        &run_id,
        "--address",
        &publisher,
        "--attribution",
        "datainf",
        "--dry-run",
    ]));
    assert!(!early.status.success(), "{}", text(&early));
    assert!(
        text(&early).contains(&format!("modelfactory attribution compute {run_id}")),
        "{}",
        text(&early)
    );

    // Attribution: every training row scored against the run's evaluation rows, contributors
    // ranked with shares of 10 000 (none when every total hurt), and `show` reads it back.
    let computed = run(modelfactory(&home).args(["attribution", "compute", &run_id, "--json"]));
    assert!(computed.status.success(), "{}", text(&computed));
    let report = json(&computed);
    assert_eq!(report["method"], "datainf");
    let rows = report["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{report}");
    assert_eq!(report["train_rows"].as_u64(), Some(rows.len() as u64));
    let contributors = report["contributors"].as_array().expect("contributors");
    let bps: u64 = contributors.iter().filter_map(|c| c["bps"].as_u64()).sum();
    let helped = contributors
        .iter()
        .any(|c| c["score"].as_f64().is_some_and(|s| s > 0.0));
    assert_eq!(bps, if helped { 10_000 } else { 0 }, "{report}");
    for c in contributors {
        let who = c["contributor"].as_str().unwrap_or_default();
        assert!(
            [ALICE, BOB].iter().any(|a| who.eq_ignore_ascii_case(a)),
            "rows are credited to their Datanet contributors: {c}"
        );
    }
    let shown = json(&run(modelfactory(&home).args([
        "attribution",
        "show",
        &run_id,
        "--json",
    ])));
    assert_eq!(shown, report);
    let measured =
        run(modelfactory(&home).args(["attribution", "eval", &run_id, "--steps", "10", "--json"]));
    assert!(measured.status.success(), "{}", text(&measured));
    let accuracy_report = json(&measured);
    let accuracy = &accuracy_report;
    let methods: Vec<&str> = accuracy["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(methods, ["datainf", "tracin", "similarity"], "{accuracy}");
    assert_eq!(accuracy["subsets"], 20);
    for m in accuracy["methods"].as_array().expect("methods") {
        let lds = m["lds"].as_f64().expect("an LDS");
        assert!((-1.0..=1.0).contains(&lds), "{m}");
    }

    // By default the shares are the attribution's: the same basis points for
    // the contributors it credits, nothing for harmful ones, and the scores in the manifest.
    let by_influence = run(modelfactory(&home).args([
        "publish",
        &run_id,
        "--address",
        &publisher,
        "--dry-run",
        "--json",
    ]));
    assert!(by_influence.status.success(), "{}", text(&by_influence));
    let by_influence = json(&by_influence);
    let attribution = &by_influence["manifest"]["attribution"];
    if helped {
        assert_eq!(by_influence["attribution_method"], "datainf");
        assert_eq!(attribution["method"], "datainf");
        assert_eq!(by_influence["manifest"]["version"], 2);
        for c in contributors {
            let who = c["contributor"].as_str().unwrap_or_default();
            let share = by_influence["shares"]
                .as_array()
                .expect("shares")
                .iter()
                .find(|s| s[0].as_str().is_some_and(|a| a.eq_ignore_ascii_case(who)))
                .and_then(|s| s[1].as_i64())
                .unwrap_or(0);
            // Both round the same way, so the basis points are the report's exactly.
            assert_eq!(share, c["bps"].as_i64().unwrap_or(-1), "{who}");
            let scored = attribution["influence"]["scores"]
                .as_array()
                .expect("scores")
                .iter()
                .find(|s| {
                    s["contributor"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(who))
                })
                .expect("every trained contributor is scored");
            assert_eq!(scored["score"], c["score"]);
            let harmful = by_influence["harmful"]
                .as_array()
                .expect("harmful")
                .iter()
                .any(|h| h.as_str().is_some_and(|a| a.eq_ignore_ascii_case(who)));
            assert_eq!(harmful, c["harmful"] == true, "{by_influence}");
        }
        let accuracy = &attribution["influence"]["accuracy"];
        assert_eq!(accuracy["subsets"], 20, "{attribution}");
        assert_eq!(accuracy["lds"], accuracy_of(&accuracy_report, "datainf"));
    } else {
        // No one's rows lowered the loss: nothing to share by influence, so rows decide.
        assert_eq!(by_influence["attribution_method"], "row-share");
        assert!(attribution["influence"].is_null(), "{attribution}");
    }
    let asked = run(modelfactory(&home).args([
        "publish",
        &run_id,
        "--address",
        &publisher,
        "--attribution",
        "by-vibes",
        "--dry-run",
    ]));
    assert_eq!(asked.status.code(), Some(2), "{}", text(&asked));

    // The preview: what is signed, what is sent, the gas.
    let preview = json(&publish(
        &home,
        &run_id,
        &publisher,
        &["--dry-run", "--json"],
    ));
    let manifest_hash = preview["manifest_hash"].as_str().expect("hash").to_owned();
    assert_eq!(preview["manifest"]["publisher"], publisher.to_lowercase());
    assert_eq!(preview["manifest"]["attribution"]["method"], "row-share");
    // The base is named by its repository, not by a path on this machine, in the manifest
    // and in the adapter's own config (what PEFT loads the base from).
    assert_eq!(
        preview["manifest"]["base_model"]["repo"],
        "example/tiny-chat"
    );
    assert_eq!(
        preview["manifest"]["adapter"]["config"]["base_model_name_or_path"],
        "example/tiny-chat"
    );
    let shares = preview["shares"].as_array().expect("shares");
    assert_eq!(shares.len(), 2, "{preview}");
    let total: u64 = shares.iter().map(|s| s[1].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 10_000);
    let files: Vec<&str> = preview["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "citations.idx",
        "lineage-manifest.json",
        "README.md",
    ] {
        assert!(files.contains(&f), "{files:?}");
    }
    assert!(
        preview["gas_estimate"].as_u64().unwrap_or(0) > 100_000,
        "{preview}"
    );

    // A hub that does not answer: the manifest is signed and kept, nothing is registered,
    // and the error says where it stopped.
    let o = publish(&home, &run_id, &publisher, &["--hub", "http://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("127.0.0.1:9"), "{}", text(&o));
    let pending = json(&publish(
        &home,
        &run_id,
        &publisher,
        &["--dry-run", "--json"],
    ));
    assert_eq!(pending["publication"]["state"], "signed", "{pending}");
    assert!(pending["publication"]["tx_hash"].is_null());

    // Resumed on the workspace hub, then again: the second finds it done and sends nothing.
    let published = json(&publish(&home, &run_id, &publisher, &["--json"]));
    assert_eq!(published["state"], "registered", "{published}");
    assert_eq!(published["manifest_hash"], manifest_hash.as_str());
    let tx = published["tx_hash"]
        .as_str()
        .expect("a transaction")
        .to_owned();
    let again = json(&publish(&home, &run_id, &publisher, &["--json"]));
    assert_eq!(again["tx_hash"], tx.as_str(), "not registered twice");

    // Verify the folder and the hub repository.
    let folder = Path::new(published["folder"].as_str().expect("folder")).to_path_buf();

    // The run indexed its training rows, by contribution id and contributor, with the model's
    // tokenizer: a training row repeated verbatim cites that row.
    let tokenizer = trainer::tokenizer::TextTokenizer::from_gguf(
        &trainer::GgufFile::open(&gguf).expect("the tiny model opens"),
    )
    .expect("its tokenizer");
    let index = trainer::citations::CitationIndex::open(
        &folder
            .parent()
            .expect("the run folder")
            .join(trainer::citations::CITATION_INDEX_FILE),
        &tokenizer.fingerprint(),
    )
    .expect("the run's citation index opens with its model's tokenizer");
    assert!(!index.rows().is_empty());
    let row = &index.rows()[0];
    assert!(
        [ALICE, BOB].iter().any(|a| row
            .contributor
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(a))),
        "{row:?}"
    );
    let cites = index.cite(index.row_tokens(0).expect("tokens"), 8);
    assert!(
        cites.iter().any(|c| c.rows.iter().any(|r| r.id == row.id)),
        "{cites:?}"
    );
    let report = json(&run(modelfactory(&home)
        .arg("verify")
        .arg(&folder)
        .arg("--json")));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["manifest_hash"], manifest_hash.as_str());
    let report = json(&run(modelfactory(&home).args(["verify", REPO, "--json"])));
    assert_eq!(report["ok"], true, "{report}");

    // A contribution is proved part of its Datanet; a made-up one is not.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("lineage-manifest.json")).expect("manifest"),
    )
    .expect("json");
    let some_id = manifest["contributions"][0]["contribution_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let proved = run(modelfactory(&home)
        .arg("verify")
        .arg(&folder)
        .args(["--contribution", &some_id]));
    assert!(proved.status.success(), "{}", text(&proved));
    let made_up = "ab".repeat(32);
    let o = run(modelfactory(&home)
        .arg("verify")
        .arg(&folder)
        .args(["--contribution", &made_up]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("not listed in the manifest"),
        "{}",
        text(&o)
    );

    // One changed byte anywhere fails, naming what changed.
    let weights = dir.path().join("tampered-weights");
    copy_dir(&folder, &weights);
    let path = weights.join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    verify_fails(&home, &weights, "adapter_model.safetensors");

    let metric = dir.path().join("tampered-manifest");
    copy_dir(&folder, &metric);
    let path = metric.join("lineage-manifest.json");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    m["license"] = Value::String("mit".into());
    std::fs::write(&path, serde_json::to_string_pretty(&m).expect("json")).expect("write");
    verify_fails(&home, &metric, "signature");

    let signature = dir.path().join("tampered-signature");
    copy_dir(&folder, &signature);
    let path = signature.join("lineage-manifest.json");
    let text_before = std::fs::read_to_string(&path).expect("read");
    let sig = manifest["signature"].as_str().expect("signed");
    let mut forged = sig.to_string();
    let flip = if &forged[10..11] == "1" { "2" } else { "1" };
    forged.replace_range(10..11, flip);
    assert_ne!(forged, sig);
    std::fs::write(&path, text_before.replace(sig, &forged)).expect("write");
    verify_fails(&home, &signature, "signature");

    // A payment is split by the shares and withdrawn by a contributor.
    let paid = json(&run(modelfactory(&home).args([
        "rewards", "pay", &run_id, "--amount", "1eth", "--from", &publisher, "--json",
    ])));
    let split: Vec<(String, u128)> = paid["split"]
        .as_array()
        .expect("split")
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap_or_default().to_owned(),
                s[1].as_str().and_then(|w| w.parse().ok()).unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        split.iter().map(|(_, w)| w).sum::<u128>(),
        1_000_000_000_000_000_000,
        "the split is exact"
    );
    let alice_share = split
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(ALICE))
        .map(|(_, w)| *w)
        .expect("Alice is paid");
    assert!(split.iter().any(|(a, _)| a.eq_ignore_ascii_case(BOB)));

    let owed = json(&run(
        modelfactory(&home).args(["rewards", "balance", ALICE, "--json"])
    ));
    assert_eq!(owed["owed_wei"], alice_share.to_string().as_str());
    let imported = run_with_input(
        modelfactory(&home).args(["wallet", "import", "--mnemonic", "--index", "1"]),
        &format!("{DEV_MNEMONIC}\n"),
    );
    assert!(imported.status.success(), "{}", text(&imported));
    let withdrawn = json(&run(
        modelfactory(&home).args(["rewards", "withdraw", ALICE, "--json"])
    ));
    assert_eq!(withdrawn["amount_wei"], alice_share.to_string().as_str());
    let after = json(&run(
        modelfactory(&home).args(["rewards", "balance", ALICE, "--json"])
    ));
    assert_eq!(after["owed_wei"], "0");
    let o = run(modelfactory(&home).args(["rewards", "withdraw", ALICE]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("nothing"), "{}", text(&o));
}
