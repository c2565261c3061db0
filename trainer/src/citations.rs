//! Citations for generated text: the longest spans an answer shares with the rows that trained
//! the adapter, ranked by rarity and traced to those rows (infini-gram style).
//!
//! The index is a suffix array over the token ids of every training row, each row followed by
//! a separator that no token equals, so no match crosses a row boundary. For every position of
//! an answer the longest match is found by narrowing a range of the suffix array one token at
//! a time (two binary searches per token); maximal matches of at least `min_tokens` become
//! citations. A span found few times in the training data is more telling than a common
//! phrase, so citations are ranked by how often the span occurs, then by length.
//!
//! On disk: a small JSON header (format version, the tokenizer's fingerprint, the rows), then
//! the tokens and the suffix array as little-endian `u32`s. An index made with another tokenizer
//! is refused: its ids would mean other words.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The index's file in a run's folder.
pub const CITATION_INDEX_FILE: &str = "citations.idx";

/// Ends every row in the token stream; no tokenizer has this many tokens.
const SEPARATOR: u32 = u32::MAX;
const MAGIC: &[u8; 8] = b"MFCITES\0";
const FORMAT_VERSION: u32 = 1;
/// Rows named per citation at most; the count of all occurrences is kept.
const MAX_ROWS_PER_CITATION: usize = 8;

/// A training row as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedRow {
    /// The row's contribution id.
    pub id: String,
    pub contributor: Option<String>,
    /// Where its tokens start in the stream.
    start: u64,
    len: u64,
}

/// One span of an answer found in training rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// Token range in the answer.
    pub start: usize,
    pub len: usize,
    /// How many times the span occurs in the training rows.
    pub occurrences: u64,
    /// The rows it occurs in (at most a few), each with the token offset in the row.
    pub rows: Vec<RowHit>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowHit {
    pub id: String,
    pub contributor: Option<String>,
    pub offset: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    tokenizer: String,
    tokens: u64,
    rows: Vec<IndexedRow>,
}

/// The suffix-array index of one run's training rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CitationIndex {
    tokenizer: String,
    tokens: Vec<u32>,
    suffixes: Vec<u32>,
    rows: Vec<IndexedRow>,
}

impl CitationIndex {
    /// Indexes `rows` (contribution id, contributor, token ids) tokenized by the tokenizer
    /// whose fingerprint is `tokenizer`.
    pub fn build<'a>(
        tokenizer: &str,
        rows: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a [u32])>,
    ) -> Result<Self> {
        let mut tokens = Vec::new();
        let mut indexed = Vec::new();
        for (id, contributor, row) in rows {
            if row.contains(&SEPARATOR) {
                return Err(citation_error(format!(
                    "row {id} holds token id {SEPARATOR}, which no tokenizer uses"
                )));
            }
            indexed.push(IndexedRow {
                id: id.to_owned(),
                contributor: contributor.map(str::to_owned),
                start: tokens.len() as u64,
                len: row.len() as u64,
            });
            tokens.extend_from_slice(row);
            tokens.push(SEPARATOR);
        }
        if tokens.len() >= u32::MAX as usize {
            return Err(citation_error(format!(
                "{} tokens are more than one index holds (4 billion)",
                tokens.len()
            )));
        }
        let suffixes = suffix_array(&tokens);
        Ok(CitationIndex {
            tokenizer: tokenizer.to_owned(),
            tokens,
            suffixes,
            rows: indexed,
        })
    }

    /// Tokens indexed, separators included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[IndexedRow] {
        &self.rows
    }

    /// The tokens of row `i`.
    pub fn row_tokens(&self, i: usize) -> Option<&[u32]> {
        let row = self.rows.get(i)?;
        self.tokens
            .get(row.start as usize..(row.start + row.len) as usize)
    }

    /// How many times `pattern` occurs in the training rows.
    pub fn count(&self, pattern: &[u32]) -> u64 {
        let (matched, range) = self.longest_prefix(pattern);
        if pattern.is_empty() || matched < pattern.len() {
            return 0;
        }
        range.len() as u64
    }

    /// The longest prefix of `text` that occurs in the rows: its length and suffix range.
    fn longest_prefix(&self, text: &[u32]) -> (usize, std::ops::Range<usize>) {
        let (mut lo, mut hi) = (0, self.suffixes.len());
        let mut matched = 0;
        for (depth, &token) in text.iter().enumerate() {
            if token == SEPARATOR {
                break;
            }
            let at = |i: usize| {
                self.tokens
                    .get(self.suffixes[i] as usize + depth)
                    .copied()
                    .unwrap_or(SEPARATOR)
            };
            let first = lo + partition(hi - lo, |k| at(lo + k) < token);
            let end = first + partition(hi - first, |k| at(first + k) <= token);
            if first == end {
                break;
            }
            (lo, hi) = (first, end);
            matched = depth + 1;
        }
        (matched, lo..hi)
    }

    /// The maximal spans of `answer` of at least `min_tokens` tokens found in the rows, rarest
    /// first (then longest, then earliest).
    pub fn cite(&self, answer: &[u32], min_tokens: usize) -> Vec<Citation> {
        let min_tokens = min_tokens.max(1);
        let mut citations = Vec::new();
        let mut covered_to = 0;
        for start in 0..answer.len() {
            let (len, range) = self.longest_prefix(&answer[start..]);
            // A span inside one already cited adds nothing.
            if len < min_tokens || start + len <= covered_to {
                continue;
            }
            covered_to = start + len;
            let rows = self.suffixes[range.clone()]
                .iter()
                .take(MAX_ROWS_PER_CITATION)
                .filter_map(|&at| self.row_at(u64::from(at)))
                .collect();
            citations.push(Citation {
                start,
                len,
                occurrences: range.len() as u64,
                rows,
            });
        }
        citations.sort_by(|a, b| {
            a.occurrences
                .cmp(&b.occurrences)
                .then(b.len.cmp(&a.len))
                .then(a.start.cmp(&b.start))
        });
        citations
    }

    fn row_at(&self, position: u64) -> Option<RowHit> {
        let i = self.rows.partition_point(|r| r.start <= position);
        let row = self.rows.get(i.checked_sub(1)?)?;
        (position < row.start + row.len).then(|| RowHit {
            id: row.id.clone(),
            contributor: row.contributor.clone(),
            offset: position - row.start,
        })
    }

    fn header(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&Header {
            version: FORMAT_VERSION,
            tokenizer: self.tokenizer.clone(),
            tokens: self.tokens.len() as u64,
            rows: self.rows.clone(),
        })
        .map_err(|e| citation_error(format!("cannot encode the index header: {e}")))
    }

    /// Writes the index to `path` (through a temporary file, renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = self.header()?;
        let tmp = path.with_extension("part");
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            out.write_all(MAGIC)?;
            out.write_all(&(header.len() as u64).to_le_bytes())?;
            out.write_all(&header)?;
            for value in self.tokens.iter().chain(&self.suffixes) {
                out.write_all(&value.to_le_bytes())?;
            }
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)?
                .sync_all()
        };
        write().map_err(|e| Error::io("write the citation index", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("write the citation index", path, e))
    }

    /// Reads an index written by [`save`](Self::save), refusing one made with a tokenizer other
    /// than `tokenizer`.
    pub fn open(path: &Path, tokenizer: &str) -> Result<Self> {
        let bad = |what: String| Error::Malformed {
            kind: crate::error::FileKind::CitationIndex,
            what,
            offset: 0,
            problem: "the file is damaged or not a citation index".into(),
            path: path.to_path_buf(),
        };
        let mut file = std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| Error::io("open the citation index", path, e))?,
        );
        let mut read = |buf: &mut [u8], what: &str| {
            file.read_exact(buf)
                .map_err(|e| bad(format!("{what} ({e})")))
        };
        let mut magic = [0u8; 8];
        read(&mut magic, "the magic bytes")?;
        if &magic != MAGIC {
            return Err(bad("no citation-index magic".into()));
        }
        let mut len = [0u8; 8];
        read(&mut len, "the header length")?;
        let header_len = u64::from_le_bytes(len);
        if header_len > 1 << 32 {
            return Err(bad(format!("a header of {header_len} bytes")));
        }
        let mut header = vec![0u8; header_len as usize];
        read(&mut header, "the header")?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("an unreadable header ({e})")))?;
        if header.version != FORMAT_VERSION {
            return Err(citation_error(format!(
                "{}: citation index format {} is not supported (this build reads {FORMAT_VERSION}); build the index again",
                path.display(),
                header.version
            )));
        }
        if header.tokenizer != tokenizer {
            return Err(citation_error(format!(
                "{}: the index was built with another tokenizer ({}), not this model's ({tokenizer}); its token ids would cite the wrong words",
                path.display(),
                header.tokenizer
            )));
        }
        let count = usize::try_from(header.tokens)
            .ok()
            .filter(|&n| n < u32::MAX as usize)
            .ok_or_else(|| bad(format!("{} tokens", header.tokens)))?;
        let expected = std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| Error::io("open the citation index", path, e))?;
        let wanted = 16 + header_len + 8 * count as u64;
        if expected != wanted {
            return Err(bad(format!(
                "{expected} bytes where the header promises {wanted} (a cut-off write?)"
            )));
        }
        let mut values = |n: usize, what: &str| -> Result<Vec<u32>> {
            let mut bytes = vec![0u8; n * 4];
            read(&mut bytes, what)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let tokens = values(count, "the tokens")?;
        let suffixes = values(count, "the suffix array")?;
        if suffixes.iter().any(|&s| s as usize >= count)
            || header.rows.iter().any(|r| r.start + r.len > count as u64)
        {
            return Err(bad("positions beyond the token stream".into()));
        }
        Ok(CitationIndex {
            tokenizer: header.tokenizer,
            tokens,
            suffixes,
            rows: header.rows,
        })
    }

    /// Bytes the index takes on disk.
    pub fn file_bytes(&self) -> Result<u64> {
        Ok(16 + self.header()?.len() as u64 + 8 * self.tokens.len() as u64)
    }
}

fn citation_error(what: String) -> Error {
    Error::Citations { what }
}

/// The first `k` in `0..n` for which `before(k)` is false, `before` being true then false.
fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The suffix array of `text` by prefix doubling: suffixes sorted by their first 2^k tokens,
/// ranks refined until every rank is distinct. O(n log² n), which builds an index of a million
/// tokens in well under a second.
fn suffix_array(text: &[u32]) -> Vec<u32> {
    let n = text.len();
    let mut suffixes: Vec<u32> = (0..n as u32).collect();
    if n == 0 {
        return suffixes;
    }
    // Initial ranks: the tokens themselves, compressed to 0..distinct.
    let mut sorted_tokens: Vec<u32> = text.to_vec();
    sorted_tokens.sort_unstable();
    sorted_tokens.dedup();
    let mut rank: Vec<u32> = text
        .iter()
        .map(|t| sorted_tokens.partition_point(|s| s < t) as u32)
        .collect();
    let mut next = vec![0u32; n];
    let mut width = 1usize;
    loop {
        // Key: (rank of the suffix, rank `width` further on, or none past the end).
        let key = |i: u32| {
            let i = i as usize;
            let second = if i + width < n {
                u64::from(rank[i + width]) + 1
            } else {
                0
            };
            (u64::from(rank[i]) << 32) | second
        };
        suffixes.sort_unstable_by_key(|&i| key(i));
        next[suffixes[0] as usize] = 0;
        for w in 1..n {
            let (a, b) = (suffixes[w - 1], suffixes[w]);
            next[b as usize] = next[a as usize] + u32::from(key(a) != key(b));
        }
        std::mem::swap(&mut rank, &mut next);
        if rank[suffixes[n - 1] as usize] as usize == n - 1 || width >= n {
            break;
        }
        width *= 2;
    }
    suffixes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small alphabet, so that repeats are common.
    fn stream(seed: u64, len: usize, alphabet: u32) -> Vec<u32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % u64::from(alphabet)) as u32
            })
            .collect()
    }

    fn naive_count(rows: &[Vec<u32>], pattern: &[u32]) -> u64 {
        rows.iter()
            .map(|row| row.windows(pattern.len()).filter(|w| *w == pattern).count() as u64)
            .sum()
    }

    fn index(rows: &[Vec<u32>]) -> CitationIndex {
        let ids: Vec<String> = (0..rows.len()).map(|i| format!("row-{i}")).collect();
        CitationIndex::build(
            "tok",
            rows.iter()
                .zip(&ids)
                .map(|(r, id)| (id.as_str(), Some("0xabc"), r.as_slice())),
        )
        .expect("builds")
    }

    #[test]
    fn the_suffix_array_is_sorted() {
        for (seed, alphabet) in [(1, 2), (2, 3), (3, 50), (4, 1)] {
            let text = stream(seed, 700, alphabet);
            let sa = suffix_array(&text);
            let mut naive: Vec<u32> = (0..text.len() as u32).collect();
            naive.sort_by(|&a, &b| text[a as usize..].cmp(&text[b as usize..]));
            assert_eq!(sa, naive, "seed {seed}, alphabet {alphabet}");
        }
        assert!(suffix_array(&[]).is_empty());
    }

    #[test]
    fn counts_agree_with_a_naive_search_on_random_streams() {
        for seed in 0..5 {
            let rows: Vec<Vec<u32>> = (0..20)
                .map(|i| stream(seed * 100 + i, 30 + (i as usize * 7) % 40, 4))
                .collect();
            let idx = index(&rows);
            let probes = stream(seed + 77, 400, 4);
            for len in 1..6 {
                for pattern in probes.windows(len).step_by(13) {
                    assert_eq!(
                        idx.count(pattern),
                        naive_count(&rows, pattern),
                        "seed {seed}, pattern {pattern:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn longest_matches_agree_with_a_naive_search() {
        let rows: Vec<Vec<u32>> = (0..15).map(|i| stream(i + 9, 50, 3)).collect();
        let idx = index(&rows);
        let answer = stream(1234, 120, 3);
        for start in 0..answer.len() {
            let (len, range) = idx.longest_prefix(&answer[start..]);
            let naive = (0..=answer.len() - start)
                .rev()
                .find(|&l| l == 0 || naive_count(&rows, &answer[start..start + l]) > 0)
                .unwrap_or(0);
            assert_eq!(len, naive, "at {start}");
            if len > 0 {
                assert_eq!(
                    range.len() as u64,
                    naive_count(&rows, &answer[start..start + len])
                );
            }
        }
    }

    #[test]
    fn a_verbatim_repeat_cites_its_row_and_nothing_crosses_rows() {
        let rows: Vec<Vec<u32>> = (0..30).map(|i| stream(i + 500, 40, 1000)).collect();
        let idx = index(&rows);
        // An answer that repeats 25 tokens of row 17, between tokens found nowhere.
        let mut answer = vec![5000, 5001, 5002];
        answer.extend_from_slice(&rows[17][10..35]);
        answer.extend_from_slice(&[5003, 5004]);
        let cites = idx.cite(&answer, 8);
        assert_eq!(cites.len(), 1, "{cites:?}");
        assert_eq!((cites[0].start, cites[0].len), (3, 25));
        assert_eq!(cites[0].occurrences, 1);
        assert_eq!(cites[0].rows[0].id, "row-17");
        assert_eq!(cites[0].rows[0].offset, 10);
        assert_eq!(cites[0].rows[0].contributor.as_deref(), Some("0xabc"));
        // The end of one row followed by the start of the next is not a span of either.
        let mut straddle = rows[3][30..].to_vec();
        straddle.extend_from_slice(&rows[4][..10]);
        let cites = idx.cite(&straddle, 12);
        assert!(cites.is_empty(), "{cites:?}");
    }

    #[test]
    fn rarer_spans_rank_first() {
        let common: Vec<u32> = (100..110).collect();
        let rare: Vec<u32> = (200..210).collect();
        let mut rows: Vec<Vec<u32>> = (0..5).map(|i| [common.clone(), vec![i]].concat()).collect();
        rows.push([vec![900], rare.clone()].concat());
        let idx = index(&rows);
        let answer = [common.clone(), vec![7777], rare.clone()].concat();
        let cites = idx.cite(&answer, 5);
        assert_eq!(cites.len(), 2);
        assert_eq!(cites[0].start, 11, "the rare span first");
        assert_eq!(cites[0].occurrences, 1);
        assert_eq!(cites[1].occurrences, 5);
    }

    #[test]
    fn saved_and_opened_it_is_the_same_index_and_damage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("citations.idx");
        let rows: Vec<Vec<u32>> = (0..10).map(|i| stream(i, 60, 300)).collect();
        let idx = index(&rows);
        idx.save(&path).expect("saves");
        assert_eq!(
            std::fs::metadata(&path).expect("file").len(),
            idx.file_bytes().expect("size")
        );
        assert_eq!(CitationIndex::open(&path, "tok").expect("opens"), idx);

        let other = CitationIndex::open(&path, "another-tokenizer").expect_err("other tokenizer");
        assert!(other.to_string().contains("another tokenizer"), "{other}");

        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 7]).expect("truncate");
        let cut = CitationIndex::open(&path, "tok").expect_err("truncated");
        assert!(cut.to_string().contains("cut-off"), "{cut}");

        std::fs::write(&path, b"not an index at all").expect("garbage");
        assert!(CitationIndex::open(&path, "tok").is_err());
    }
}
