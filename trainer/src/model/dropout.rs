//! Dropout masks for the adapters' inputs. A mask is a key and a threshold: whether value `i`
//! is kept is a hash of `i` and the key, so the host and every device compute the same mask
//! from a seed, and a GPU draws it inside its dropout kernel with nothing sent to it.

use rayon::prelude::*;

use crate::quant::Simd;

/// Values masked per parallel task: large enough that a task outweighs its scheduling.
const PART: usize = 1 << 14;

/// Bits of a value's hash compared with the threshold: 24, so that the threshold and the
/// keep factor are exact in f32.
const HASH_BITS: u32 = 24;

/// 2²⁴ in f32, exactly.
const FULL: f32 = (1u32 << HASH_BITS) as f32;

/// Which values of an `[n, in]` input dropout keeps, and the factor kept values get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutMask {
    dims: [usize; 2],
    key: DropoutKey,
}

/// What decides a mask's bits: value `i` is kept where `hash(i, words) >> 8 < threshold`.
/// Plain 32-bit words, as a kernel takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutKey {
    /// The key's two halves.
    pub words: [u32; 2],
    /// Out of 2²⁴: `keep · 2²⁴`, rounded.
    pub threshold: u32,
}

impl DropoutKey {
    /// Whether value `i` is kept.
    #[inline(always)]
    pub fn kept(&self, i: u32) -> bool {
        value_hash(i, self.words) >> (32 - HASH_BITS) < self.threshold
    }
}

/// A bijective 32-bit mixer (xor-shift and multiply, twice) with full avalanche: every input
/// bit flips each output bit with probability close to one half.
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// The hash of value `i` under `key`: two rounds, so that masks of different keys are not
/// shuffles of one another. The dropout kernel computes the same.
#[inline(always)]
fn value_hash(i: u32, key: [u32; 2]) -> u32 {
    mix32(mix32(i ^ key[0]) ^ key[1])
}

impl DropoutMask {
    /// The mask of `key` over an input of `dims`, keeping each value with probability `keep`
    /// (in (0, 1]).
    pub fn new(key: u64, dims: [usize; 2], keep: f32) -> Self {
        assert!(
            u32::try_from(dims[0] * dims[1]).is_ok(),
            "a mask indexes its values with 32 bits"
        );
        let threshold = ((keep * FULL).round() as u32).clamp(1, 1 << HASH_BITS);
        Self {
            dims,
            key: DropoutKey {
                words: [key as u32, (key >> 32) as u32],
                threshold,
            },
        }
    }

    /// The shape of the input the mask covers.
    pub fn dims(&self) -> [usize; 2] {
        self.dims
    }

    /// The key and threshold, for a kernel that draws the mask itself.
    pub fn key(&self) -> DropoutKey {
        self.key
    }

    /// Multiplies `values` (row-major, of [`DropoutMask::dims`]) by the mask in place.
    pub fn apply(&self, values: &mut [f32]) {
        assert_eq!(
            values.len(),
            self.dims[0] * self.dims[1],
            "one value per mask entry"
        );
        let (key, scale) = (self.key, self.scale());
        let simd = Simd::detect();
        values
            .par_chunks_mut(PART)
            .enumerate()
            .for_each(|(part, values)| {
                let start = (part * PART) as u32;
                #[cfg(target_arch = "x86_64")]
                if simd == Simd::Avx2 {
                    // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                    return unsafe { apply_avx2(key, scale, start, values) };
                }
                let _ = simd;
                apply_part(key, scale, start, values);
            });
    }

    /// The factor of kept values: `1 / keep` for the keep rate the threshold gives, so that
    /// the expectation is unchanged.
    pub fn scale(&self) -> f32 {
        FULL / self.key.threshold as f32
    }

    /// The mask as floats times `factor`: `factor / keep` where a value is kept, else 0.
    pub fn floats(&self, factor: f32) -> Vec<f32> {
        let mut values = vec![factor; self.dims[0] * self.dims[1]];
        self.apply(&mut values);
        values
    }
}

/// [`apply_part`] compiled for AVX2: the hash's 32-bit products run 8 lanes wide, where the
/// baseline x86-64 target (SSE2) has no such product and the loop stays scalar.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apply_avx2(key: DropoutKey, scale: f32, start: u32, values: &mut [f32]) {
    apply_part(key, scale, start, values);
}

/// Masks `values`, the first of which is value `start` of the input.
#[inline(always)]
fn apply_part(key: DropoutKey, scale: f32, start: u32, values: &mut [f32]) {
    // An index by `wrapping_add`, not a `start..` range: the range's checked step would keep
    // the loop from vectorising in a build with overflow checks.
    for (k, v) in values.iter_mut().enumerate() {
        let kept = key.kept(start.wrapping_add(k as u32));
        *v = if kept { *v * scale } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fraction of `count` values that both masks keep, and that each keeps.
    fn rates(a: &DropoutMask, b: &DropoutMask, count: u32) -> (f64, f64, f64) {
        let (mut both, mut first, mut second) = (0u32, 0u32, 0u32);
        for i in 0..count {
            let (x, y) = (a.key().kept(i), b.key().kept(i));
            first += x as u32;
            second += y as u32;
            both += (x && y) as u32;
        }
        let f = |k: u32| f64::from(k) / f64::from(count);
        (f(both), f(first), f(second))
    }

    #[test]
    fn a_mask_keeps_its_share_and_masks_of_two_keys_are_independent() {
        let count = 1 << 20;
        let dims = [1024, 1024];
        let (a, b) = (
            DropoutMask::new(1, dims, 0.9),
            DropoutMask::new(2, dims, 0.9),
        );
        let (both, first, second) = rates(&a, &b, count);
        // A binomial's standard deviation here is 0.0003: 0.002 is over six of them.
        assert!((first - 0.9).abs() < 0.002, "the first mask kept {first}");
        assert!(
            (second - 0.9).abs() < 0.002,
            "the second mask kept {second}"
        );
        assert!(
            (both - 0.81).abs() < 0.002,
            "both masks kept {both}, where independent masks keep 0.81"
        );
        // Half the values at p = 0.5, and neighbours not tied to each other.
        let half = DropoutMask::new(3, dims, 0.5);
        let kept: Vec<bool> = (0..count).map(|i| half.key().kept(i)).collect();
        let rate = kept.iter().filter(|&&k| k).count() as f64 / f64::from(count);
        let equal_pairs = kept.windows(2).filter(|w| w[0] == w[1]).count() as f64;
        let equal_rate = equal_pairs / f64::from(count - 1);
        assert!((rate - 0.5).abs() < 0.002, "kept {rate} at p = 0.5");
        assert!(
            (equal_rate - 0.5).abs() < 0.002,
            "neighbours agree {equal_rate} of the time"
        );
    }

    #[test]
    fn applying_a_mask_scales_kept_values_and_zeroes_the_rest_whatever_the_parts() {
        // Two and a half parts, so several threads mask.
        let dims = [5, PART / 2 + 3];
        let mask = DropoutMask::new(42, dims, 0.75);
        let values: Vec<f32> = (0..dims[0] * dims[1]).map(|i| i as f32).collect();
        let mut masked = values.clone();
        mask.apply(&mut masked);
        for (i, (&v, &m)) in values.iter().zip(&masked).enumerate() {
            let expected = if mask.key().kept(i as u32) {
                v * mask.scale()
            } else {
                0.0
            };
            assert_eq!(m, expected, "value {i}");
        }
        assert_eq!(mask.scale(), 1.0 / 0.75);
    }

    #[test]
    fn the_mixer_never_maps_two_values_to_one() {
        // A bijection, on the values tried: no two indices share a hash.
        let mut seen: Vec<u32> = (0..1u32 << 20).map(mix32).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1 << 20);
    }
}
