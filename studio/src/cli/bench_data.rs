//! `modelfactory bench data`: curation on a generated Datanet — open and show the first page,
//! filter, sort, full-text search, exact and near-duplicate detection — each timed, and the
//! pull throughput of the hub client on loopback next to curl fetching the same file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use datanet_sync::catalog::{Catalog, Origin};
use datanet_sync::curate;
use datanet_sync::format::{
    Content, Manifest, Row, RowSchema, SCHEMA_VERSION, ShardEntry, sha256_hex,
};
use datanet_sync::hub::client::HubClient;
use datanet_sync::pack::{self, PackOptions};
use datanet_sync::view::{CurationView, RowQuery, SortKey, StatusFilter};
use serde::Serialize;

use super::args::DataBenchArgs;
use super::human_bytes;

#[derive(Debug, Serialize)]
struct Step {
    step: String,
    rows: u64,
    seconds: f64,
    /// What the step produced: matches, groups, MB/s.
    result: String,
    goal: Option<String>,
}

const WORDS: &[&str] = &[
    "model", "data", "train", "adapter", "token", "layer", "loss", "curve", "rank", "alpha",
    "weight", "batch", "shard", "label", "review", "answer", "question", "domain", "expert",
    "clinic", "patient", "contract", "clause", "court", "market", "price", "risk", "report",
    "energy", "grid", "solar", "water", "soil", "crop", "harvest", "river", "city", "bridge",
    "engine", "sensor", "signal", "noise", "filter", "window", "memory", "cache", "thread",
    "kernel", "matrix", "vector", "graph", "node", "edge", "path", "tree", "leaf", "root", "prime",
    "proof", "lemma", "theorem", "basis", "space", "field", "ring", "group", "order",
];

/// A deterministic pseudo-random stream (splitmix64), so that every run measures the same rows.
pub(super) struct Stream(pub(super) u64);

impl Stream {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn sentence(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `n` rows from 50 contributors: about 1% exact copies of an earlier row, 1% near copies
/// (one word changed), 0.1% mentioning an email address.
fn generate(n: usize) -> Vec<Row> {
    let contributors: Vec<String> = (0..50).map(|i| format!("0x{:040x}", i + 1)).collect();
    let mut s = Stream(42);
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    for i in 0..n {
        let who = &contributors[s.below(contributors.len())];
        let roll = s.below(1000);
        let content = if i > 0 && roll < 10 {
            rows[s.below(i)].content.clone()
        } else if i > 0 && roll < 20 {
            match rows[s.below(i)].content.clone() {
                Content::Instruction {
                    instruction,
                    input,
                    output,
                } => {
                    let mut words: Vec<&str> = output.split(' ').collect();
                    let at = s.below(words.len());
                    words[at] = "changed";
                    Content::Instruction {
                        instruction,
                        input,
                        output: words.join(" "),
                    }
                }
                other => other,
            }
        } else {
            let q_len = 6 + s.below(10);
            let a_len = 20 + s.below(60);
            let mut output = s.sentence(a_len);
            if roll == 999 {
                output.push_str(&format!(" write to user{i}@example.org"));
            }
            Content::Instruction {
                instruction: format!("{}?", s.sentence(q_len)),
                input: String::new(),
                output,
            }
        };
        // One second apart, so that a copy is a new contribution even from the same person.
        let at = format!(
            "2026-01-{:02}T{:02}:{:02}:{:02}Z",
            1 + i / 86_400,
            i / 3600 % 24,
            i / 60 % 60,
            i % 60
        );
        rows.push(Row::new(content, who, &at, "CC-BY-4.0"));
    }
    rows
}

fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let t = Instant::now();
    let value = f()?;
    Ok((value, t.elapsed().as_secs_f64()))
}

pub fn run(args: DataBenchArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let n = args.rows;
    let mut steps: Vec<Step> = Vec::new();
    let mut step = |name: &str, rows: u64, seconds: f64, result: String, goal: Option<&str>| {
        eprintln!("{name}: {seconds:.3} s ({result})");
        steps.push(Step {
            step: name.into(),
            rows,
            seconds,
            result,
            goal: goal.map(str::to_string),
        });
    };

    let (rows, secs) = timed(|| Ok(generate(n)))?;
    step("generate rows", n as u64, secs, format!("{n} rows"), None);
    let repo = dir.join("bench").join("generated");
    let _ = std::fs::remove_dir_all(&repo);
    let (manifest, secs) = timed(|| {
        Ok(pack::pack(
            &rows,
            &PackOptions {
                id: "bench/generated".into(),
                name: "generated".into(),
                domain: "benchmark".into(),
                description: "Generated rows for `modelfactory bench data`".into(),
                license: "CC-BY-4.0".into(),
                source: "generated".into(),
                rows_per_shard: n.max(1),
            },
            &repo,
        )?)
    })?;
    drop(rows);
    step(
        "pack (validate, hash, write Parquet)",
        n as u64,
        secs,
        human_bytes(manifest.bytes()),
        None,
    );

    let catalog = Catalog::open(&dir.join("catalog.sqlite"))?;
    catalog.record_datanet(
        &manifest,
        &manifest.contributions_root,
        Origin::Import,
        &repo,
        None,
    )?;
    let id = manifest.id.clone();
    let (page, secs) = timed(|| {
        let view = CurationView::open(&catalog, &id)?;
        Ok(view.page(&RowQuery {
            limit: 100,
            ..RowQuery::default()
        })?)
    })?;
    step(
        "open + first page (100 rows)",
        n as u64,
        secs,
        format!("{} rows shown of {}", page.rows.len(), page.total),
        Some("< 1 s"),
    );
    let view = CurationView::open(&catalog, &id)?;
    let probe = |query: RowQuery| -> anyhow::Result<(String, f64)> {
        let (page, secs) = timed(|| Ok(view.page(&query)?))?;
        Ok((format!("{} match", page.total), secs))
    };
    let who = format!("0x{:040x}", 7);
    for (name, query) in [
        (
            "filter: one contributor",
            RowQuery {
                contributor: Some(who.clone()),
                ..RowQuery::default()
            },
        ),
        (
            "filter: length 200–400 chars, unlabeled",
            RowQuery {
                min_len: Some(200),
                max_len: Some(400),
                status: Some(StatusFilter::Unlabeled),
                ..RowQuery::default()
            },
        ),
        (
            "sort: longest first, page 100",
            RowQuery {
                sort: SortKey::Length,
                desc: true,
                offset: 9_900,
                ..RowQuery::default()
            },
        ),
        (
            "full-text search \"theorem proof\"",
            RowQuery {
                search: Some("theorem proof".into()),
                ..RowQuery::default()
            },
        ),
    ] {
        let (result, secs) = probe(query)?;
        step(name, n as u64, secs, result, None);
    }

    let (texts, secs) = timed(|| Ok(view.texts()?))?;
    step(
        "read all texts",
        n as u64,
        secs,
        format!("{} rows", texts.len()),
        None,
    );
    let (exact, secs) = timed(|| Ok(curate::exact_duplicates(&texts)))?;
    step(
        "exact duplicates",
        n as u64,
        secs,
        format!("{} groups", exact.len()),
        None,
    );
    let (near, secs) = timed(|| Ok(curate::near_duplicates(&texts, 0.8)))?;
    step(
        "near duplicates (MinHash, J ≥ 0.8)",
        n as u64,
        secs,
        format!("{} groups", near.len()),
        Some("< 60 s"),
    );
    drop(texts);

    let (ours, curl_null, curl_file) = pull_throughput(&dir, args.pull_mb)?;
    let mb = args.pull_mb as f64 * 1.048_576;
    step(
        "pull over loopback (hub client, sha256 checked)",
        0,
        ours,
        format!("{:.0} MB/s", mb / ours),
        None,
    );
    for (name, secs) in [
        ("curl to /dev/null, same URL", curl_null),
        ("curl to a file, same URL", curl_file),
    ] {
        let result = secs.map_or("curl not installed".into(), |s| {
            format!("{:.0} MB/s", mb / s)
        });
        step(name, 0, secs.unwrap_or(f64::NAN), result, None);
    }

    if args.json {
        super::print_json(&steps)?;
    } else {
        println!("| step | rows | seconds | result | goal |");
        println!("|---|---:|---:|---|---|");
        for s in &steps {
            println!(
                "| {} | {} | {:.3} | {} | {} |",
                s.step,
                if s.rows == 0 {
                    "-".into()
                } else {
                    s.rows.to_string()
                },
                s.seconds,
                s.result,
                s.goal.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves a repository holding one `mb`-megabyte shard with the hub server, then times our
/// client pulling it (download, then sha256 check) and curl fetching the same URL, to
/// `/dev/null` and to a file.
fn pull_throughput(dir: &Path, mb: usize) -> anyhow::Result<(f64, Option<f64>, Option<f64>)> {
    let root = dir.join("hub");
    let repo = root.join("bench").join("pull");
    std::fs::create_dir_all(repo.join("shards"))?;
    let mut s = Stream(7);
    let mut bytes = vec![0u8; mb << 20];
    for chunk in bytes.chunks_mut(8) {
        let v = s.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let shard = "shards/00000.parquet";
    std::fs::write(repo.join(shard), &bytes)?;
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        id: "bench/pull".into(),
        name: "pull".into(),
        domain: "benchmark".into(),
        description: String::new(),
        license: "CC0-1.0".into(),
        source: "generated".into(),
        row_schema: RowSchema::Instruction,
        shards: vec![ShardEntry {
            path: shard.into(),
            rows: 0,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        }],
        contributors: vec![],
        contributions_root: sha256_hex(&[]),
    };
    drop(bytes);
    std::fs::write(
        repo.join("datanet.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let server_root = root.clone();
    runtime.spawn(async move {
        if let Err(e) = datanet_sync::hub::server::serve(server_root, listener).await {
            tracing::error!("bench hub server: {e}");
        }
    });
    let endpoint = format!("http://{addr}");
    let dest = dir.join("pulled");
    let _ = std::fs::remove_dir_all(&dest);
    let client = HubClient::new(&endpoint, None);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    runtime.block_on(client.pull("bench/pull", None, &dest, &|_| {}, &cancel))?;
    let ours = started.elapsed().as_secs_f64();

    let url = format!("{endpoint}/datasets/bench/pull/resolve/main/{shard}");
    let curl_to = |out: &str| -> anyhow::Result<Option<f64>> {
        let started = Instant::now();
        match std::process::Command::new("curl")
            .args(["-sS", "-o", out, &url])
            .status()
        {
            Ok(status) if status.success() => Ok(Some(started.elapsed().as_secs_f64())),
            Ok(status) => anyhow::bail!("curl {url} failed: {status}"),
            Err(_) => Ok(None),
        }
    };
    let curl_null = curl_to("/dev/null")?;
    let file = dir.join("curl.bin");
    let curl_file = curl_to(&file.to_string_lossy())?;
    let _ = std::fs::remove_file(&file);
    runtime.shutdown_background();
    Ok((ours, curl_null, curl_file))
}
