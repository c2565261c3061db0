//! `modelfactory bench citations`: the citation index over a run's training rows — build time,
//! bytes per token on disk, and the time to cite one answer — on a generated token stream the
//! size of a real run's (1M tokens by default, SmolLM2's vocabulary size).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use trainer::citations::CitationIndex;

use super::args::CitationsBenchArgs;
use super::bench_data::Stream;

const VOCAB: u64 = 49_152;
const ANSWER_TOKENS: usize = 200;

#[derive(Debug, Serialize)]
struct Figure {
    step: String,
    value: String,
    goal: Option<String>,
}

/// A token id skewed toward small ids, as word frequencies are (roughly Zipf-like).
fn token(stream: &mut Stream) -> u32 {
    let u = (stream.next() >> 11) as f64 / (1u64 << 53) as f64;
    ((VOCAB as f64).powf(u) - 1.0) as u32
}

pub fn run(args: CitationsBenchArgs) -> anyhow::Result<ExitCode> {
    let mut stream = Stream(7);
    let mut rows: Vec<Vec<u32>> = Vec::new();
    let mut total = 0usize;
    while total < args.tokens {
        let len = 64 + (stream.next() % 384) as usize;
        let row: Vec<u32> = (0..len).map(|_| token(&mut stream)).collect();
        total += len + 1;
        rows.push(row);
    }
    let ids: Vec<String> = (0..rows.len()).map(|i| format!("{i:064x}")).collect();
    let contributor = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    let mut figures = Vec::new();
    let mut add = |step: &str, value: String, goal: Option<&str>| {
        figures.push(Figure {
            step: step.into(),
            value,
            goal: goal.map(str::to_owned),
        })
    };

    let started = Instant::now();
    let index = CitationIndex::build(
        "bench-tokenizer",
        rows.iter()
            .zip(&ids)
            .map(|(r, id)| (id.as_str(), Some(contributor), r.as_slice())),
    )?;
    add(
        "build the index",
        format!(
            "{:.2} s for {} tokens in {} rows",
            started.elapsed().as_secs_f64(),
            index.len(),
            rows.len()
        ),
        None,
    );

    let dir = tempfile::tempdir().context("a temporary folder for the index")?;
    let path = dir.path().join("citations.idx");
    let started = Instant::now();
    index.save(&path)?;
    let saved = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();
    add(
        "save",
        format!(
            "{saved:.2} s, {:.1} MB, {:.2} bytes per token",
            bytes as f64 / 1e6,
            bytes as f64 / index.len() as f64
        ),
        None,
    );
    let started = Instant::now();
    let opened = CitationIndex::open(&path, "bench-tokenizer")?;
    add(
        "open",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
        None,
    );

    // Half the answers repeat a stretch of a training row inside new text; half are new.
    let mut times = Vec::new();
    let mut cited = 0usize;
    for i in 0..args.answers {
        let mut answer: Vec<u32> = (0..ANSWER_TOKENS).map(|_| token(&mut stream)).collect();
        if i % 2 == 0 {
            let row = &rows[(stream.next() % rows.len() as u64) as usize];
            let take = row.len().min(40);
            answer[80..80 + take].copy_from_slice(&row[..take]);
        }
        let started = Instant::now();
        let citations = opened.cite(&answer, 8);
        times.push(started.elapsed().as_secs_f64() * 1e3);
        cited += usize::from(!citations.is_empty());
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let p95 = times
        .get(times.len() * 95 / 100)
        .copied()
        .unwrap_or_default();
    add(
        &format!("cite a {ANSWER_TOKENS}-token answer"),
        format!(
            "mean {mean:.2} ms, p95 {p95:.2} ms over {} answers ({cited} with a citation)",
            times.len()
        ),
        Some("< 50 ms at 1M tokens"),
    );

    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("| step | figure | goal |");
        println!("|---|---|---|");
        for f in &figures {
            println!(
                "| {} | {} | {} |",
                f.step,
                f.value,
                f.goal.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
