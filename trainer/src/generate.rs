//! Choosing the next token from logits, and the generation loop over a [`Decoder`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::backend::Backend;

use crate::error::{Error, Result};
use crate::model::{Decoder, KvCache};
use crate::runtime::{SamplingParams, StopReason};

/// How many recent tokens the repetition penalty looks at (llama.cpp's default).
const PENALTY_WINDOW: usize = 64;

/// A small deterministic generator (SplitMix64): sampling must repeat exactly for a seed, on
/// every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// What each draw adds to the state.
    const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::STEP);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tokens according to [`SamplingParams`].
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// A sampler; without a seed in `params` the clock seeds it.
    pub fn new(params: &SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Self {
            params: params.clone(),
            rng: Rng::new(seed),
        }
    }

    /// The next token given the logits and the tokens so far (prompt and generated).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
            let window = &history[history.len().saturating_sub(PENALTY_WINDOW)..];
            let mut seen: Vec<u32> = window.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if p.top_k > 0 {
            candidates.truncate(p.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f64> = candidates
            .iter()
            .map(|(_, l)| f64::from(l - max).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if p.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, q) in probs.iter().enumerate() {
                cumulative += q;
                if cumulative >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|x| *x /= total);
        }
        let mut r = self.rng.next_f64();
        for (i, q) in probs.iter().enumerate() {
            if r < *q {
                return candidates[i].0;
            }
            r -= q;
        }
        candidates[probs.len() - 1].0
    }
}

/// The index of the largest value (the first on ties, like llama.cpp's greedy sampler).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// What [`generate`] did.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The new tokens, the stop token included when there was one.
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Seconds spent on the prompt (and the first token).
    pub prefill_seconds: f64,
    /// Seconds spent on the tokens after the first.
    pub decode_seconds: f64,
}

/// Runs the prompt, then samples tokens one at a time until a stop token, the limit, a full
/// context or `cancel`. `on_token` sees each token as it is chosen and may stop the loop by
/// returning `false`.
pub fn generate<B: Backend>(
    decoder: &Decoder<B>,
    prompt: &[u32],
    params: &SamplingParams,
    is_stop: &dyn Fn(u32) -> bool,
    cancel: &AtomicBool,
    on_token: &mut dyn FnMut(u32) -> Result<bool>,
) -> Result<Generated> {
    let limit = decoder.config().context_length;
    if prompt.len() >= limit {
        return Err(Error::PromptTooLong {
            tokens: prompt.len(),
            limit,
        });
    }
    let mut sampler = Sampler::new(params);
    let mut cache: KvCache<B> = decoder.new_cache();
    let mut history = prompt.to_vec();
    let mut tokens = Vec::new();
    let started = Instant::now();
    let mut logits = decoder.forward_last(prompt, &mut cache)?;
    let prefill_seconds = started.elapsed().as_secs_f64();
    let decode_started = Instant::now();
    let stop_reason = loop {
        if cancel.load(Ordering::Relaxed) {
            break StopReason::Cancelled;
        }
        if tokens.len() >= params.max_new_tokens {
            break StopReason::MaxTokens;
        }
        let next = sampler.sample(&mut logits, &history);
        tokens.push(next);
        history.push(next);
        if is_stop(next) {
            break StopReason::EndOfTurn;
        }
        if !on_token(next)? {
            break StopReason::Cancelled;
        }
        if cache.len() + 1 > limit {
            break StopReason::ContextFull;
        }
        if tokens.len() >= params.max_new_tokens {
            break StopReason::MaxTokens;
        }
        logits = decoder.forward_last(&[next], &mut cache)?;
    };
    Ok(Generated {
        tokens,
        stop_reason,
        prefill_seconds,
        decode_seconds: decode_started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_its_sequence_and_values_stay_in_the_unit_interval() {
        let drawn = |seed| {
            let mut rng = Rng::new(seed);
            (0..1000).map(|_| rng.next_f64()).collect::<Vec<_>>()
        };
        let first = drawn(42);
        assert_eq!(first, drawn(42));
        assert_ne!(first, drawn(43));
        assert!(first.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
        let mut s = Sampler::new(&SamplingParams::greedy(1));
        assert_eq!(s.sample(&mut [0.1, 0.2, 5.0], &[]), 2);
    }

    #[test]
    fn repetition_penalty_can_change_the_choice() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy(1)
        };
        let mut s = Sampler::new(&params);
        // Token 0 leads, but it was just said: 4/2 = 2 < 3.
        assert_eq!(s.sample(&mut [4.0, 3.0], &[0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_repeat() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: Some(7),
            max_new_tokens: 1,
        };
        let mut s = Sampler::new(&params);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], &[]), 1);
        }
        let sampled = |seed| {
            let mut s = Sampler::new(&SamplingParams {
                top_k: 0,
                seed: Some(seed),
                ..params.clone()
            });
            (0..32)
                .map(|_| s.sample(&mut [0.0, 0.1, 0.2, 0.3], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(sampled(3), sampled(3));
        assert_ne!(sampled(3), sampled(4));
    }

    #[test]
    fn top_p_keeps_the_head_of_the_distribution() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repetition_penalty: 1.0,
            seed: Some(1),
            max_new_tokens: 1,
        };
        let mut s = Sampler::new(&params);
        // p(token 2) ≈ 0.84 ≥ 0.5, so only token 2 survives.
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 3.0], &[]), 2);
        }
    }
}
