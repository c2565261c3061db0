//! Dropout masks for the adapters' inputs, one bit per value, drawn on the host so that a seed
//! gives the same masks on every backend.

use rayon::prelude::*;

use crate::generate::Rng;

/// Values drawn per parallel task: large enough that a task outweighs its scheduling, and a
/// whole number of mask words.
const PART: usize = 1 << 14;

/// Which values of an `[n, in]` input dropout keeps, and the factor kept values get.
#[derive(Debug, Clone)]
pub struct DropoutMask {
    dims: [usize; 2],
    /// Bit `i % 64` of word `i / 64` is set where value `i` (row-major) is kept.
    bits: Vec<u64>,
    /// `1 / keep`, the factor of kept values, so that the expectation is unchanged.
    scale: f32,
}

impl DropoutMask {
    /// Draws a mask keeping each value with probability `keep`: value `i` is kept when the
    /// `i`-th draw of `first` is below `keep`. Threads draw parts of the sequence from their
    /// own offsets, so the mask does not depend on how many there are.
    pub fn draw(first: &Rng, dims: [usize; 2], keep: f32) -> Self {
        let count = dims[0] * dims[1];
        let mut bits = vec![0u64; count.div_ceil(64)];
        bits.par_chunks_mut(PART / 64)
            .enumerate()
            .for_each(|(part, words)| {
                let start = part * PART;
                let mut rng = first.skipped(start as u64);
                for (w, word) in words.iter_mut().enumerate() {
                    let values = (count - (start + w * 64)).min(64);
                    for bit in 0..values {
                        if (rng.next_f64() as f32) < keep {
                            *word |= 1 << bit;
                        }
                    }
                }
            });
        Self {
            dims,
            bits,
            scale: 1.0 / keep,
        }
    }

    /// The shape of the input the mask covers.
    pub fn dims(&self) -> [usize; 2] {
        self.dims
    }

    /// Multiplies `values` (row-major, of [`DropoutMask::dims`]) by the mask in place.
    pub fn apply(&self, values: &mut [f32]) {
        assert_eq!(
            values.len(),
            self.dims[0] * self.dims[1],
            "one value per bit"
        );
        values
            .par_chunks_mut(PART)
            .zip(self.bits.par_chunks(PART / 64))
            .for_each(|(values, words)| {
                for (values, &word) in values.chunks_mut(64).zip(words) {
                    for (bit, v) in values.iter_mut().enumerate() {
                        let kept = (word >> bit) & 1;
                        *v *= kept as f32 * self.scale;
                    }
                }
            });
    }

    /// The factor of kept values, `1 / keep`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The mask as 32-bit words for a device: bit `i % 32` of word `i / 32` is set where value
    /// `i` is kept (the words' bit patterns, as i32).
    pub fn words32(&self) -> Vec<i32> {
        let words = (self.dims[0] * self.dims[1]).div_ceil(32);
        let halves = self.bits.iter().flat_map(|&w| [w as u32, (w >> 32) as u32]);
        halves.take(words).map(|w| w as i32).collect()
    }

    /// The mask as floats times `factor`: `factor / keep` where a value is kept, else 0.
    pub fn floats(&self, factor: f32) -> Vec<f32> {
        let mut values = vec![factor; self.dims[0] * self.dims[1]];
        self.apply(&mut values);
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeps_the_values_whose_draws_fall_below_keep_whatever_the_parts() {
        // Two and a half parts, so several threads draw and the last word is partly used.
        let dims = [5, PART / 2 + 3];
        let first = Rng::new(42);
        let mask = DropoutMask::draw(&first, dims, 0.9);
        let mut rng = first.clone();
        let expected: Vec<f32> = (0..dims[0] * dims[1])
            .map(|_| {
                if (rng.next_f64() as f32) < 0.9 {
                    1.0 / 0.9
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(mask.floats(1.0), expected);
        let kept = expected.iter().filter(|&&m| m > 0.0).count() as f64 / expected.len() as f64;
        assert!((kept - 0.9).abs() < 0.01, "kept {kept} of the values");
    }

    #[test]
    fn the_device_words_hold_the_same_bits() {
        // 3 × 45 values: two 64-bit words, five 32-bit ones, the last partly used.
        let mask = DropoutMask::draw(&Rng::new(3), [3, 45], 0.5);
        let words = mask.words32();
        assert_eq!(words.len(), 5);
        let from_words: Vec<bool> = (0..135)
            .map(|i| (words[i / 32] >> (i % 32)) & 1 == 1)
            .collect();
        let kept: Vec<bool> = mask.floats(1.0).iter().map(|&m| m > 0.0).collect();
        assert_eq!(from_words, kept);
        assert!(
            words.iter().any(|&w| w < 0),
            "some word has its top bit set"
        );
    }
}
