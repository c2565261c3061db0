//! Packing examples into full-length sequences, and the train/eval split.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::tokenize::check_max_len;
use super::{Example, TokenizedExample};
use crate::error::{Error, Result};

/// Where one example sits in a packed sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedSegment {
    /// The example's id, so tokens can be credited to their source row.
    pub id: String,
    /// Its token positions in the packed sequence.
    pub range: Range<usize>,
}

/// Several examples end to end in one sequence of at most `max_len` tokens.
///
/// Attention is not blocked at example boundaries and positions run on across them: a token
/// may attend to the example before it. That is the common trade-off of packing (more tokens
/// per step); the trainer can build a block-diagonal mask from `segments` later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedSequence {
    /// The examples' tokens, concatenated.
    pub tokens: Vec<u32>,
    /// Their masks, concatenated.
    pub labels_mask: Vec<bool>,
    /// Which example each token range came from, in order.
    pub segments: Vec<PackedSegment>,
}

/// Packs examples into as few sequences of at most `max_len` tokens as it can (best fit,
/// longest first; deterministic). Examples should already be cut to `max_len`
/// ([`super::tokenize_dataset`] does); a longer one gets a sequence of its own, uncut.
pub fn pack(examples: &[TokenizedExample], max_len: usize) -> Result<Vec<PackedSequence>> {
    check_max_len(max_len)?;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].tokens.len()));
    let mut bins: Vec<Vec<usize>> = Vec::new();
    // (room left, bin index): the smallest room that fits is found in O(log n).
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in order {
        let len = examples[i].tokens.len();
        match room.range((len, 0)..).next().copied() {
            Some((left, bin)) => {
                room.remove(&(left, bin));
                bins[bin].push(i);
                room.insert((left - len, bin));
            }
            None => {
                bins.push(vec![i]);
                room.insert((max_len.saturating_sub(len), bins.len() - 1));
            }
        }
    }
    Ok(bins
        .into_iter()
        .map(|members| {
            let mut packed = PackedSequence {
                tokens: Vec::new(),
                labels_mask: Vec::new(),
                segments: Vec::with_capacity(members.len()),
            };
            for i in members {
                let example = &examples[i];
                let start = packed.tokens.len();
                packed.tokens.extend_from_slice(&example.tokens);
                packed.labels_mask.extend_from_slice(&example.labels_mask);
                packed.segments.push(PackedSegment {
                    id: example.id.clone(),
                    range: start..packed.tokens.len(),
                });
            }
            packed
        })
        .collect())
}

/// Things that have an example id, for [`split_train_eval`].
pub trait ExampleId {
    /// The id of the example (see [`Example::id`]).
    fn example_id(&self) -> &str;
}

impl ExampleId for Example {
    fn example_id(&self) -> &str {
        &self.id
    }
}

impl ExampleId for TokenizedExample {
    fn example_id(&self) -> &str {
        &self.id
    }
}

/// Splits examples into (train, eval), each in input order, by example (never within one).
///
/// An example goes to eval when the hash of its id and `seed` ranks among the lowest
/// `round(fraction × n)`: the same ids and seed give the same split whatever the input
/// order. At least one example stays in train; with `fraction > 0` and two or more examples,
/// eval gets at least one; with `fraction == 0` it is empty.
pub fn split_train_eval<T: ExampleId>(
    items: Vec<T>,
    eval_fraction: f64,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>)> {
    if !(0.0..1.0).contains(&eval_fraction) {
        return Err(Error::DataSetting {
            what: format!("eval fraction {eval_fraction} must be at least 0 and below 1"),
        });
    }
    let n = items.len();
    let mut n_eval = (eval_fraction * n as f64).round() as usize;
    if eval_fraction > 0.0 && n >= 2 {
        n_eval = n_eval.max(1);
    }
    n_eval = n_eval.min(n.saturating_sub(1));
    let mut ranked: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (id_hash(item.example_id(), seed), i))
        .collect();
    ranked.sort_unstable();
    let mut in_eval = vec![false; n];
    for &(_, i) in &ranked[..n_eval] {
        in_eval[i] = true;
    }
    let (mut train, mut eval) = (Vec::with_capacity(n - n_eval), Vec::with_capacity(n_eval));
    for (item, eval_item) in items.into_iter().zip(in_eval) {
        if eval_item {
            eval.push(item);
        } else {
            train.push(item);
        }
    }
    Ok((train, eval))
}

/// FNV-1a of the id, mixed with the seed by SplitMix64: fixed across platforms and Rust
/// versions, unlike `DefaultHasher`, so a split can be reproduced later.
fn id_hash(id: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str, len: usize) -> TokenizedExample {
        TokenizedExample {
            id: id.into(),
            tokens: vec![7; len],
            labels_mask: vec![true; len],
        }
    }

    #[test]
    fn best_fit_fills_sequences() {
        let examples = [
            example("a", 6),
            example("b", 4),
            example("c", 3),
            example("d", 7),
        ];
        let packed = pack(&examples, 10).expect("packs");
        let ids: Vec<Vec<&str>> = packed
            .iter()
            .map(|p| p.segments.iter().map(|s| s.id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["d", "c"], vec!["a", "b"]]);
        assert!(packed.iter().all(|p| p.tokens.len() == 10));
    }

    #[test]
    fn tiny_splits_keep_a_train_example() {
        let (train, eval) = split_train_eval(vec![example("a", 1)], 0.5, 1).expect("splits");
        assert_eq!((train.len(), eval.len()), (1, 0));
        let (train, eval) =
            split_train_eval(vec![example("a", 1), example("b", 1)], 0.1, 1).expect("splits");
        assert_eq!((train.len(), eval.len()), (1, 1));
        assert!(split_train_eval(vec![example("a", 1)], 1.0, 1).is_err());
    }
}
