//! Temporary measurement (removed before hand-off).

use std::time::Instant;

use datanet_sync::curate;
use datanet_sync::format::{Content, Row};
use datanet_sync::shard;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
#[ignore]
fn measure() {
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let vocab: Vec<String> = (0..20_000).map(|i| format!("w{i:x}")).collect();
    let mut state = 1u64;
    let t = Instant::now();
    let mut texts: Vec<String> = Vec::with_capacity(n);
    let mut planted_near = 0;
    let mut planted_exact = 0;
    for i in 0..n {
        let r = splitmix(&mut state) % 100;
        if i > 0 && r == 0 {
            // one word changed
            let src = texts[(splitmix(&mut state) as usize) % i].clone();
            let mut words: Vec<&str> = src.split(' ').collect();
            let k = (splitmix(&mut state) as usize) % words.len();
            let w = &vocab[(splitmix(&mut state) as usize) % vocab.len()];
            words[k] = w;
            texts.push(words.join(" "));
            planted_near += 1;
        } else if i > 0 && r == 1 {
            let src = texts[(splitmix(&mut state) as usize) % i].clone();
            texts.push(src.to_uppercase());
            planted_exact += 1;
        } else {
            let len = 30 + (splitmix(&mut state) % 20) as usize;
            let words: Vec<&str> = (0..len)
                .map(|_| vocab[(splitmix(&mut state) as usize) % vocab.len()].as_str())
                .collect();
            texts.push(words.join(" "));
        }
    }
    eprintln!("generated {n} texts in {:?} (near {planted_near}, exact {planted_exact})", t.elapsed());
    let items: Vec<(String, String)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{i:064x}"), t.clone()))
        .collect();

    let t = Instant::now();
    let exact = curate::exact_duplicates(&items);
    eprintln!("exact_duplicates: {:?}, {} groups", t.elapsed(), exact.len());

    let t = Instant::now();
    let near = curate::near_duplicates(&items, 0.8);
    let in_groups: usize = near.iter().map(|g| g.len()).sum();
    eprintln!("near_duplicates(0.8): {:?}, {} groups, {in_groups} ids", t.elapsed(), near.len());

    let t = Instant::now();
    let lengths: Vec<u64> = texts.iter().map(|t| t.chars().count() as u64).collect();
    let stats = curate::length_stats(&lengths, 20);
    eprintln!("length_stats: {:?} (median {})", t.elapsed(), stats.median);

    let t = Instant::now();
    let pii = texts.iter().filter(|t| !curate::personal_data(t).is_empty()).count();
    eprintln!("personal_data over all: {:?} ({pii} flagged)", t.elapsed());

    let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
    let t = Instant::now();
    let eval = curate::split_eval(&ids, 0.05, 7);
    eprintln!("split_eval: {:?} ({})", t.elapsed(), eval.len());
    drop(items);

    let t = Instant::now();
    let rows: Vec<Row> = texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            Row::new(
                Content::Instruction {
                    instruction: format!("Question {i}"),
                    input: String::new(),
                    output: text,
                },
                "0x1111111111111111111111111111111111111111",
                "2026-01-01T00:00:00Z",
                "CC-BY-4.0",
            )
        })
        .collect();
    eprintln!("Row::new x{n}: {:?}", t.elapsed());

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("00000.parquet");
    let t = Instant::now();
    let bytes = shard::write_shard(&rows, &path).expect("writes");
    eprintln!("write_shard: {:?}, {bytes} bytes", t.elapsed());

    let t = Instant::now();
    let page = shard::scan(std::slice::from_ref(&path))
        .expect("scan")
        .slice((n / 2) as i64, 100)
        .collect()
        .expect("collect");
    let page_rows = shard::rows_from_frame(&page).expect("rows");
    eprintln!("scan + middle page of 100: {:?}", t.elapsed());
    assert_eq!(page_rows[..], rows[n / 2..n / 2 + 100]);

    let t = Instant::now();
    let back = shard::read_rows(&path).expect("reads");
    eprintln!("read_rows: {:?}", t.elapsed());
    assert_eq!(back.len(), n);
}
