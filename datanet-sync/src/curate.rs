//! Curation over many rows: exact and near duplicates, personal-data flags, length statistics
//! and a seeded train/eval split. Everything here is plain data in, plain data out, and runs
//! on all cores through rayon.
//!
//! The innermost loops are written as bare `while` loops over indices: they are as fast as
//! iterator chains when optimised, and several times faster in unoptimised builds, where each
//! iterator adaptor is a function call per element.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use rayon::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Lowercase, whitespace runs collapsed to one space, trimmed: what "the same text" means for
/// exact duplicates.
pub fn normalise(text: &str) -> String {
    // Plain ASCII (the common case) byte by byte; the vertical tab (0x0b) is whitespace to
    // `split_whitespace`, so it is here too.
    if text.is_ascii() {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(bytes.len());
        let (mut i, mut space) = (0, false);
        while i < bytes.len() {
            let b = bytes[i];
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                space = !out.is_empty();
            } else {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.push(char::from(b.to_ascii_lowercase()));
            }
            i += 1;
        }
        return out;
    }
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
    }
    out
}

/// Groups (two or more) of ids whose normalised texts are equal. Ids in a group, and groups by
/// their first id, follow the input order.
pub fn exact_duplicates(items: &[(String, String)]) -> Vec<Vec<String>> {
    let mut keyed: Vec<(u64, usize)> = items
        .par_iter()
        .enumerate()
        .map(|(i, (_, text))| (hash_bytes(normalise(text).as_bytes(), 0), i))
        .collect();
    keyed.par_sort_unstable();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for run in keyed.chunk_by(|a, b| a.0 == b.0) {
        if run.len() < 2 {
            continue;
        }
        // Equal hashes almost always mean equal texts; compare the texts to be sure.
        let mut by_text: Vec<(String, Vec<usize>)> = Vec::new();
        for &(_, i) in run {
            let text = normalise(&items[i].1);
            match by_text.iter_mut().find(|(t, _)| *t == text) {
                Some((_, members)) => members.push(i),
                None => by_text.push((text, vec![i])),
            }
        }
        groups.extend(
            by_text
                .into_iter()
                .map(|(_, members)| members)
                .filter(|m| m.len() >= 2),
        );
    }
    ids_of(items, groups)
}

/// MinHash permutations per text.
const PERMUTATIONS: usize = 128;
/// Texts with fewer words than this are shingled by characters: a handful of words gives too
/// few word 3-grams for one changed word to leave a similarity worth measuring.
const SHORT_TEXT_WORDS: usize = 10;
/// Character shingle length for short texts.
const CHAR_SHINGLE: usize = 5;
/// The chance wanted that a pair exactly at the threshold becomes a candidate; the banding
/// with the most rows per band (fewest false candidates) that reaches it is chosen.
const RECALL_AT_THRESHOLD: f64 = 0.97;
/// Above this many texts in one band bucket, each is compared with the bucket's first and
/// its neighbour instead of with every other (the bucket is then mostly copies of one text).
const ALL_PAIRS_BUCKET: usize = 32;

/// The MinHash permutations, `a·h + b` (mod 2⁶⁴, `a` odd) over a 64-bit shingle hash, keeping
/// the top 32 bits; drawn once from a fixed SplitMix64 stream so signatures are reproducible.
static PERMUTATION_PARAMS: LazyLock<([u64; PERMUTATIONS], [u64; PERMUTATIONS])> =
    LazyLock::new(|| {
        let mut state = 0x5eed_da7a_2e70_0001_u64;
        let mut a = [0u64; PERMUTATIONS];
        let mut b = [0u64; PERMUTATIONS];
        for (a, b) in a.iter_mut().zip(b.iter_mut()) {
            *a = splitmix64(&mut state) | 1;
            *b = splitmix64(&mut state);
        }
        (a, b)
    });

/// Groups (two or more) of ids whose texts are near duplicates: estimated Jaccard similarity
/// of their shingle sets (word 3-grams, or character 5-grams for texts under ten words) of at
/// least `threshold`, joined transitively. Exact duplicates are in them too. Ids in a group,
/// and groups by their first id, follow the input order.
///
/// MinHash with 128 permutations, of which the lowest 16 bits of each minimum are kept (b-bit
/// MinHash: 256 bytes per text); LSH banding picks candidate pairs and each candidate's
/// similarity is estimated from the full signatures. Positions are kept as `u32`, so one call
/// takes at most 4 294 967 295 texts.
pub fn near_duplicates(items: &[(String, String)], threshold: f64) -> Vec<Vec<String>> {
    let threshold = if threshold.is_nan() {
        1.0
    } else {
        threshold.clamp(0.0, 1.0)
    };
    let n = items.len();
    if n < 2 {
        return Vec::new();
    }
    let mut signatures = vec![0u16; n * PERMUTATIONS];
    signatures
        .par_chunks_mut(PERMUTATIONS)
        .zip(items.par_iter())
        .for_each_init(Vec::new, |shingles, (signature, (_, text))| {
            shingle_hashes(text, shingles);
            minhash(shingles, signature);
        });
    let (bands, rows) = banding(threshold);
    tracing::debug!(items = n, bands, rows, threshold, "near-duplicate search");

    let mut sets = UnionFind::new(n);
    let mut keys: Vec<(u64, u32)> = Vec::with_capacity(n);
    let mut candidates: Vec<(u32, u32)> = Vec::new();
    for band in 0..bands {
        let span = band * rows..(band + 1) * rows;
        keys.clear();
        keys.par_extend(
            signatures
                .par_chunks(PERMUTATIONS)
                .enumerate()
                .map(|(i, s)| (hash_u16s(&s[span.clone()], band as u64), i as u32)),
        );
        keys.par_sort_unstable();
        candidates.clear();
        for bucket in keys.chunk_by(|a, b| a.0 == b.0) {
            if bucket.len() < 2 {
                continue;
            }
            let mut propose = |a: u32, b: u32| {
                if sets.find(a as usize) != sets.find(b as usize) {
                    candidates.push((a, b));
                }
            };
            if bucket.len() <= ALL_PAIRS_BUCKET {
                for (k, &(_, a)) in bucket.iter().enumerate() {
                    for &(_, b) in &bucket[k + 1..] {
                        propose(a, b);
                    }
                }
            } else {
                let first = bucket[0].1;
                for pair in bucket.windows(2) {
                    propose(first, pair[1].1);
                    propose(pair[0].1, pair[1].1);
                }
            }
        }
        let similar: Vec<(u32, u32)> = candidates
            .par_iter()
            .copied()
            .filter(|&(a, b)| {
                let sa = &signatures[a as usize * PERMUTATIONS..][..PERMUTATIONS];
                let sb = &signatures[b as usize * PERMUTATIONS..][..PERMUTATIONS];
                estimated_jaccard(sa, sb) >= threshold
            })
            .collect();
        for (a, b) in similar {
            sets.union(a as usize, b as usize);
        }
    }

    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        by_root.entry(sets.find(i)).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = by_root.into_values().filter(|g| g.len() >= 2).collect();
    ids_of(items, groups)
}

/// Bands × rows per band (≤ the permutations) for a similarity threshold: the most rows per
/// band whose chance of making a pair at the threshold a candidate, 1 − (1 − tʳ)ᵇ, is at
/// least [`RECALL_AT_THRESHOLD`].
fn banding(threshold: f64) -> (usize, usize) {
    for rows in (1..=16).rev() {
        let bands = PERMUTATIONS / rows;
        let recall = 1.0 - (1.0 - threshold.powi(rows as i32)).powi(bands as i32);
        if recall >= RECALL_AT_THRESHOLD {
            return (bands, rows);
        }
    }
    (PERMUTATIONS, 1)
}

fn estimated_jaccard(a: &[u16], b: &[u16]) -> f64 {
    let (mut equal, mut i) = (0usize, 0);
    while i < a.len() && i < b.len() {
        equal += usize::from(a[i] == b[i]);
        i += 1;
    }
    equal as f64 / a.len().max(1) as f64
}

/// The 64-bit hashes of a text's shingles into `out`: word 3-grams over its lowercase
/// alphanumeric words, or character 5-grams over those words joined by spaces when the text
/// has fewer than [`SHORT_TEXT_WORDS`] words.
fn shingle_hashes(text: &str, out: &mut Vec<u64>) {
    out.clear();
    let words: Vec<&str>;
    let lower;
    if text.is_ascii() {
        lower = text.to_ascii_lowercase();
        words = ascii_words(&lower);
    } else {
        lower = text.to_lowercase();
        words = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
    }
    if words.len() >= SHORT_TEXT_WORDS {
        let hashes: Vec<u64> = words.iter().map(|w| hash_bytes(w.as_bytes(), 1)).collect();
        out.extend(
            hashes
                .windows(3)
                .map(|w| fmix64(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42))),
        );
    } else if !words.is_empty() {
        let joined = words.join(" ");
        let chars: Vec<(usize, char)> = joined.char_indices().collect();
        if chars.len() <= CHAR_SHINGLE {
            out.push(hash_bytes(joined.as_bytes(), 2));
        } else {
            for start in 0..=chars.len() - CHAR_SHINGLE {
                let from = chars[start].0;
                let to = chars
                    .get(start + CHAR_SHINGLE)
                    .map_or(joined.len(), |(at, _)| *at);
                out.push(hash_bytes(&joined.as_bytes()[from..to], 2));
            }
        }
    }
}

/// The runs of ASCII letters and digits in lowercase ASCII text.
fn ascii_words(lower: &str) -> Vec<&str> {
    let bytes = lower.as_bytes();
    let mut words = Vec::with_capacity(bytes.len() / 5 + 1);
    let (mut i, mut start) = (0, None);
    while i <= bytes.len() {
        let alnum = i < bytes.len() && matches!(bytes[i], b'a'..=b'z' | b'0'..=b'9');
        match (alnum, start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                words.push(&lower[from..i]);
                start = None;
            }
            _ => {}
        }
        i += 1;
    }
    words
}

/// The low 16 bits of each permutation's minimum over the shingles (all ones for no shingles).
fn minhash(shingles: &[u64], signature: &mut [u16]) {
    let (a, b) = &*PERMUTATION_PARAMS;
    let mut minima = [u32::MAX; PERMUTATIONS];
    for &x in shingles {
        // A bare loop: the hottest one here, and it stays tolerable in unoptimised builds,
        // where every iterator adaptor would be a function call.
        let mut i = 0;
        while i < PERMUTATIONS {
            let v = (a[i].wrapping_mul(x).wrapping_add(b[i]) >> 32) as u32;
            if v < minima[i] {
                minima[i] = v;
            }
            i += 1;
        }
    }
    for (s, m) in signature.iter_mut().zip(minima) {
        *s = m as u16;
    }
}

fn ids_of(items: &[(String, String)], mut groups: Vec<Vec<usize>>) -> Vec<Vec<String>> {
    for group in &mut groups {
        group.sort_unstable();
    }
    groups.sort_unstable_by_key(|g| g[0]);
    groups
        .into_iter()
        .map(|g| g.into_iter().map(|i| items[i].0.clone()).collect())
        .collect()
}

struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] as usize != x {
            let grandparent = self.parent[self.parent[x] as usize];
            self.parent[x] = grandparent;
            x = grandparent as usize;
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        let (low, high) = if self.rank[a] < self.rank[b] {
            (a, b)
        } else {
            (b, a)
        };
        self.parent[low] = high as u32;
        if self.rank[low] == self.rank[high] {
            self.rank[high] += 1;
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    fmix64(*state)
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fast, seeded, platform-independent 64-bit hash (not for security: duplicates are
/// confirmed on the texts themselves, and MinHash only needs well-spread values).
fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = fmix64(seed ^ (bytes.len() as u64).wrapping_mul(K));
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes little-endian, zero-padded at the end.
        let mut word = 0u64;
        let mut k = 0;
        while k < 8 && i + k < bytes.len() {
            word |= u64::from(bytes[i + k]) << (8 * k);
            k += 1;
        }
        h = (h ^ word.wrapping_mul(K).rotate_left(31))
            .rotate_left(27)
            .wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        i += 8;
    }
    fmix64(h)
}

fn hash_u16s(values: &[u16], seed: u64) -> u64 {
    let mut h = fmix64(seed.wrapping_add(0x51ed_27a1));
    let mut i = 0;
    while i < values.len() {
        let mut word = 0u64;
        let mut k = 0;
        while k < 4 && i + k < values.len() {
            word |= u64::from(values[i + k]) << (16 * k);
            k += 1;
        }
        h = fmix64(h ^ word);
        i += 4;
    }
    h
}

/// Kinds of personal data a text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
}

/// The e-mail pattern, as a macro so that [`PERSONAL_DATA_PATTERN`] can be built from it.
macro_rules! email_pattern {
    () => {
        r"(?i)[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b"
    };
}

const EMAIL_PATTERN: &str = email_pattern!();

/// One regular expression (Rust `regex` syntax, so polars' `str.contains` takes it) that
/// matches every text [`personal_data`] flags, for filtering inside a query. It is looser on
/// phone numbers (plain runs of 9 or more digits, years in a row, IPv4 addresses, a date and
/// time such as `12.05.2024 14:30` match it), so
/// [`personal_data`] is what says which kinds a text holds.
pub const PERSONAL_DATA_PATTERN: &str = concat!(
    email_pattern!(),
    r"|\+\d(?:[ \t().-]{0,2}\d){7,14}",
    r"|\(?\b\d(?:[ \t().-]{0,2}\d){8,14}\b",
);

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EMAIL_PATTERN).expect("the e-mail pattern is valid"));

/// Something that may be a phone number; [`is_phone`] decides.
static PHONE_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+|\()?\d[\d \t().-]{5,22}\d").expect("the phone pattern is valid")
});

/// The kinds of personal data found in `text` (each once, e-mail first): e-mail addresses,
/// and phone numbers in international `+` form (8–15 digits) or national forms of 9–15 digits
/// written with separators or a leading 0. Years, short numbers, version strings and IPv4
/// addresses are not phone numbers.
pub fn personal_data(text: &str) -> Vec<PiiKind> {
    let mut kinds = Vec::new();
    if EMAIL.is_match(text) {
        kinds.push(PiiKind::Email);
    }
    if PHONE_CANDIDATE
        .find_iter(text)
        .any(|m| is_phone(m.as_str(), &text[..m.start()], &text[m.end()..]))
    {
        kinds.push(PiiKind::Phone);
    }
    kinds
}

fn is_phone(candidate: &str, before: &str, after: &str) -> bool {
    // Part of a longer token (a word, a path, a time, a version, an e-mail) is not a number
    // on its own.
    if let Some(prev) = before.chars().next_back()
        && (prev.is_alphanumeric() || "./:_-@#".contains(prev))
    {
        return false;
    }
    let mut rest = after.chars();
    match rest.next() {
        Some(next) if next.is_alphanumeric() || ":/_@".contains(next) => return false,
        Some('.' | '-' | ',') if rest.next().is_some_and(|c| c.is_ascii_digit()) => return false,
        _ => {}
    }
    // Longer runs of separators are prose between numbers, not one number.
    if candidate
        .split(|c: char| c.is_ascii_digit() || c == '+')
        .any(|run| run.len() > 2)
    {
        return false;
    }
    let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
    let international = candidate.starts_with('+');
    let groups: Vec<&str> = candidate
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let separators: HashSet<char> = candidate
        .chars()
        .filter(|c| !c.is_ascii_digit() && *c != '+')
        .collect();
    if international {
        if !(8..=15).contains(&digits) {
            return false;
        }
    } else {
        if !(9..=15).contains(&digits) {
            return false;
        }
        if separators.is_empty() && !candidate.starts_with('0') {
            return false;
        }
    }
    if separators.len() == 1 && separators.contains(&'.') {
        let ipv4 = groups.len() == 4
            && groups
                .iter()
                .all(|g| g.len() <= 3 && g.parse::<u16>().is_ok_and(|v| v <= 255));
        if ipv4 || groups.iter().any(|g| g.len() == 1) {
            return false;
        }
    }
    let years = groups.len() > 1
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.parse::<u16>().is_ok_and(|y| (1000..3000).contains(&y)));
    !years
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    pub count: u64,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    /// The middle value; the lower of the two middle ones for an even count.
    pub median: u64,
    /// Nearest rank: the smallest length that at least 95 % of the lengths do not exceed.
    pub p95: u64,
    pub histogram: Vec<Bin>,
}

/// Lengths in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bin {
    pub start: u64,
    pub end: u64,
    pub count: u64,
}

/// Statistics of lengths (in characters) with a histogram of at most `bins` equal-width bins
/// from the shortest to the longest. No lengths give zeros and no bins.
pub fn length_stats(lengths: &[u64], bins: usize) -> LengthStats {
    if lengths.is_empty() {
        return LengthStats {
            count: 0,
            min: 0,
            max: 0,
            mean: 0.0,
            median: 0,
            p95: 0,
            histogram: Vec::new(),
        };
    }
    let mut sorted = lengths.to_vec();
    sorted.par_sort_unstable();
    let n = sorted.len();
    let (min, max) = (sorted[0], sorted[n - 1]);
    let sum: u128 = sorted.iter().map(|&l| u128::from(l)).sum();
    let p95_rank = (n * 95).div_ceil(100).max(1);
    let mut histogram = Vec::new();
    if bins > 0 {
        let span = max - min + 1;
        let width = span.div_ceil(bins as u64).max(1);
        let used = span.div_ceil(width);
        let mut counts = vec![0u64; used as usize];
        for &l in &sorted {
            counts[((l - min) / width) as usize] += 1;
        }
        histogram = counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| {
                let start = min + i as u64 * width;
                Bin {
                    start,
                    end: start + width,
                    count,
                }
            })
            .collect();
    }
    LengthStats {
        count: n as u64,
        min,
        max,
        mean: sum as f64 / n as f64,
        median: sorted[(n - 1) / 2],
        p95: sorted[p95_rank - 1],
        histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(texts: &[&str]) -> Vec<(String, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("id{i}"), t.to_string()))
            .collect()
    }

    #[test]
    fn exact_duplicates_ignore_case_and_spacing() {
        let items = items(&[
            "Boil the egg for five minutes.",
            "Something else entirely.",
            "  boil THE egg\tfor five\n minutes. ",
            "Boil the egg for six minutes.",
            "something else entirely.",
            "Boil the egg for five minutes.",
        ]);
        assert_eq!(
            exact_duplicates(&items),
            vec![
                vec!["id0".to_string(), "id2".into(), "id5".into()],
                vec!["id1".to_string(), "id4".into()],
            ]
        );
        assert!(exact_duplicates(&items[..2]).is_empty());
        assert_eq!(normalise("\x0b A\tB\r\n  c "), "a b c");
        assert_eq!(
            normalise(" Ünïcode\u{a0}TEXT\u{2003}here "),
            "ünïcode text here"
        );
    }

    const LONG: &str = "The committee met on Tuesday to review the annual budget, and after a long \
        discussion about maintenance costs for the old library building it agreed to postpone \
        the new roof until next spring";

    #[test]
    fn near_duplicates_find_one_changed_word_and_leave_unrelated_texts() {
        let changed = LONG.replace("Tuesday", "Wednesday");
        let short = "The quick brown fox jumps over the lazy dog";
        let short_changed = "The quick brown fox jumps over the lazy cat";
        let texts = [
            LONG,
            "Photosynthesis converts light energy into chemical energy stored in glucose, \
             releasing oxygen as a by-product in the leaves of green plants every day",
            short,
            changed.as_str(),
            "A completely different sentence about sailing boats on a windy lake in autumn",
            short_changed,
            "Recipe: whisk two eggs with milk, pour into a hot buttered pan and stir gently \
             until softly set, then season with salt and pepper",
            "the COMMITTEE met on tuesday to review the annual budget and after a long \
             discussion about maintenance costs for the old library building it agreed to \
             postpone the new roof until next spring!",
        ];
        let items = items(&texts);
        let groups = near_duplicates(&items, 0.7);
        assert_eq!(
            groups,
            vec![
                vec!["id0".to_string(), "id3".into(), "id7".into()],
                vec!["id2".to_string(), "id5".into()],
            ]
        );
        // At a stricter threshold the changed word is too much for the short pair.
        let strict = near_duplicates(&items, 0.95);
        assert_eq!(strict, vec![vec!["id0".to_string(), "id7".into()]]);
    }

    #[test]
    fn near_duplicates_include_exact_copies_and_empty_input() {
        let items = items(&["same text here", "other", "Same  text here", ""]);
        assert_eq!(
            near_duplicates(&items, 0.8),
            vec![vec!["id0".to_string(), "id2".into()]]
        );
        assert!(near_duplicates(&[], 0.8).is_empty());
    }

    #[test]
    fn near_duplicates_in_a_large_bucket_are_all_joined() {
        let mut texts: Vec<String> = (0..100).map(|_| LONG.to_string()).collect();
        // Texts of unrelated made-up words, long enough for word shingles.
        let mut state = 7;
        texts.extend((0..50).map(|_| {
            (0..12)
                .map(|_| format!("w{:x}", splitmix64(&mut state) % 1_000_000))
                .collect::<Vec<_>>()
                .join(" ")
        }));
        let items: Vec<(String, String)> = texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("{i}"), t))
            .collect();
        let groups = near_duplicates(&items, 0.8);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].len(), 100);
    }

    #[test]
    fn banding_suits_the_threshold() {
        let (b, r) = banding(0.8);
        assert!(b * r <= PERMUTATIONS);
        let recall = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
        assert!(recall(0.8) >= RECALL_AT_THRESHOLD);
        assert!(recall(0.3) < 0.05, "{b}×{r} lets dissimilar pairs through");
    }

    #[test]
    fn personal_data_flags_emails_and_phone_numbers() {
        let cases: &[(&str, &[PiiKind])] = &[
            (
                "write to jane.doe+news@example.co.uk today",
                &[PiiKind::Email],
            ),
            ("Call +44 20 7946 0958 after six.", &[PiiKind::Phone]),
            ("US office: +1 (555) 123-4567", &[PiiKind::Phone]),
            (
                "ring (555) 123-4567 or email bob@example.com",
                &[PiiKind::Email, PiiKind::Phone],
            ),
            ("Mobile 06 12 34 56 78", &[PiiKind::Phone]),
            ("Handy 0171 1234567", &[PiiKind::Phone]),
            ("Tel: 555.123.4567.", &[PiiKind::Phone]),
            ("Festnetz 030123456789", &[PiiKind::Phone]),
            // Negatives.
            ("It happened in 1999 and again in 2024.", &[]),
            ("the years 1999 2000 2001 2002", &[]),
            ("upgrade to version 1.2.3 or 10.0.19041.1234", &[]),
            ("the server is at 192.168.100.200", &[]),
            ("order number 123456789 shipped", &[]),
            ("call 911 or 112", &[]),
            ("pi is 3.14159265358979", &[]),
            ("meet on 12.05.2024 14:30", &[]),
            ("user@localhost is not an address on the internet", &[]),
            ("timestamp 1700000000", &[]),
        ];
        let pattern = Regex::new(PERSONAL_DATA_PATTERN).expect("the query pattern compiles");
        for (text, expected) in cases {
            assert_eq!(personal_data(text), expected.to_vec(), "{text:?}");
            if !expected.is_empty() {
                assert!(pattern.is_match(text), "the query pattern misses {text:?}");
            }
        }
        for text in [
            "in 1999",
            "version 1.2.3",
            "call 911",
            "order 1234567",
            "a@b",
        ] {
            assert!(!pattern.is_match(text), "the query pattern flags {text:?}");
        }
        assert_eq!(
            serde_json::to_string(&[PiiKind::Email, PiiKind::Phone]).expect("serialises"),
            r#"["email","phone"]"#
        );
    }

    #[test]
    fn length_stats_on_a_known_list() {
        let lengths = [10, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let stats = length_stats(&lengths, 5);
        assert_eq!(stats.count, 10);
        assert_eq!((stats.min, stats.max), (1, 10));
        assert!((stats.mean - 5.5).abs() < 1e-12);
        assert_eq!(stats.median, 5);
        assert_eq!(stats.p95, 10);
        assert_eq!(
            stats.histogram,
            (0..5)
                .map(|i| Bin {
                    start: 1 + 2 * i,
                    end: 3 + 2 * i,
                    count: 2
                })
                .collect::<Vec<_>>()
        );
        let many: Vec<u64> = (1..=100).collect();
        let stats = length_stats(&many, 3);
        assert_eq!((stats.median, stats.p95), (50, 95));
        assert_eq!(
            stats.histogram.iter().map(|b| b.count).collect::<Vec<_>>(),
            [34, 34, 32]
        );
        assert_eq!(stats.histogram.iter().map(|b| b.count).sum::<u64>(), 100);

        let one = length_stats(&[7], 10);
        assert_eq!((one.min, one.max, one.median, one.p95), (7, 7, 7, 7));
        assert_eq!(
            one.histogram,
            vec![Bin {
                start: 7,
                end: 8,
                count: 1
            }]
        );

        let none = length_stats(&[], 10);
        assert_eq!(none.count, 0);
        assert!(none.histogram.is_empty());
    }
}
