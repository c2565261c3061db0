//! `x · Wᵀ` over block-quantised weights: the CPU kernels behind [`QuantMatrix::matmul_t`].

use rayon::prelude::*;

use super::QuantMatrix;
use super::dequant::{decode, f16_at};
use crate::loading::ggml::GgmlType;

/// Weight rows per rayon work item. rayon groups items into jobs adaptively, so this is only
/// the finest split: small enough that a 192-row projection still spreads over the threads at
/// one input row, large enough that per-item overhead stays negligible.
pub const ROWS_PER_TASK: usize = 16;

/// Below this many multiply-adds (`rows × cols × n`) a product runs on the calling thread:
/// handing it to the pool would cost more than it saves.
const SEQUENTIAL_WORK: usize = 1 << 16;

/// Which instructions the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Simd {
    /// Portable Rust (auto-vectorised for the build's baseline target, SSE2 on x86-64).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C intrinsics, chosen at run time.
    Avx2,
}

impl Simd {
    /// The best set this processor supports.
    pub fn detect() -> Simd {
        if Simd::Avx2.is_available() {
            Simd::Avx2
        } else {
            Simd::Scalar
        }
    }

    /// Whether this processor can run this set.
    pub fn is_available(self) -> bool {
        match self {
            Simd::Scalar => true,
            Simd::Avx2 => avx2_available(),
        }
    }

    /// This set if available, else [`Simd::Scalar`].
    pub(crate) fn or_scalar(self) -> Simd {
        if self.is_available() {
            self
        } else {
            Simd::Scalar
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

/// The types multiplied in integer arithmetic against 8-bit input blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntKernel {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
}

/// The integer kernel of a type, if it has one.
pub(crate) fn int_kernel(ty: GgmlType) -> Option<IntKernel> {
    Some(match ty {
        GgmlType::Q8_0 => IntKernel::Q8_0,
        GgmlType::Q4_0 => IntKernel::Q4_0,
        GgmlType::Q4_1 => IntKernel::Q4_1,
        GgmlType::Q5_0 => IntKernel::Q5_0,
        GgmlType::Q5_1 => IntKernel::Q5_1,
        _ => return None,
    })
}

/// Input rows rounded to 8 bits in blocks of 32 (llama.cpp's `block_q8_1`, with f32 fields):
/// element `j` of block `b` is `qs[b][j] · d[b]`, and `s[b] = d[b] · Σ qs[b]` (used by the
/// types with a minimum, Q4_1 and Q5_1).
struct Q8Input {
    qs: Vec<[i8; 32]>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl Q8Input {
    /// Quantises `x`, whose length is a multiple of 32.
    fn new(x: &[f32], simd: Simd) -> Self {
        let blocks = x.len().div_ceil(32);
        let mut input = Q8Input {
            qs: vec![[0; 32]; blocks],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
        };
        #[cfg(target_arch = "x86_64")]
        if simd == Simd::Avx2 {
            // SAFETY: `Simd::Avx2` is only used after `avx2_available()` returned true.
            unsafe { quantize_q8_avx2(x, &mut input) };
            return input;
        }
        let _ = simd;
        quantize_q8(x, &mut input);
        input
    }
}

/// [`quantize_q8`] compiled for AVX2 (`round` becomes a few vector instructions instead of a
/// call per element).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_avx2(x: &[f32], input: &mut Q8Input) {
    quantize_q8(x, input);
}

#[inline(always)]
fn quantize_q8(x: &[f32], input: &mut Q8Input) {
    let blocks = x
        .chunks(32)
        .zip(&mut input.qs)
        .zip(&mut input.d)
        .zip(&mut input.s);
    for (((x, q), d), s) in blocks {
        (*d, *s) = quantize_block(x, q);
    }
}

/// ggml's `quantize_row_q8_1_ref` with f32 scale and sum: `d = max|x| / 127`,
/// `q = round(x / d)` (half away from zero), a zero block when `d = 0`.
#[inline(always)]
fn quantize_block(x: &[f32], q: &mut [i8; 32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
        sum = sum.wrapping_add(i32::from(*q));
    }
    (d, d * sum as f32)
}

/// `x` as the integer kernels see it: rounded to 8 bits in blocks of 32 elements (a last
/// shorter block is rounded on its own), then expanded back to f32.
///
/// [`QuantMatrix::matmul_t`] on a matrix whose [`QuantMatrix::quantizes_input`] is true
/// computes, up to f32 summation order, the exact product of the dequantised weights with
/// `q8_activations` of each input row (`cols` is a multiple of 32 for those types, so the
/// blocks of a row never straddle rows).
pub fn q8_activations(x: &[f32]) -> Vec<f32> {
    let input = Q8Input::new(x, Simd::detect());
    let mut out = Vec::with_capacity(x.len());
    for ((x, q), &d) in x.chunks(32).zip(&input.qs).zip(&input.d) {
        out.extend(q[..x.len()].iter().map(|&q| f32::from(q) * d));
    }
    out
}

/// `out = x · Wᵀ`, `simd` already checked as available.
pub(super) fn matmul_t(m: &QuantMatrix, x: &[f32], n: usize, out: &mut [f32], simd: Simd) {
    let (rows, cols) = (m.rows(), m.cols());
    assert_eq!(
        Some(x.len()),
        n.checked_mul(cols),
        "matmul_t: input of {} values for {n} rows of {cols}",
        x.len()
    );
    assert_eq!(
        Some(out.len()),
        n.checked_mul(rows),
        "matmul_t: output of {} values for {n} rows of {rows}",
        out.len()
    );
    if out.is_empty() {
        return;
    }
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    match int_kernel(m.ty()) {
        Some(kernel) => {
            let input = Q8Input::new(x, simd);
            let nb = cols / 32;
            row_tiles(rows, cols, n, out, |first, tile, _| {
                for (k, results) in tile.chunks_exact_mut(n).enumerate() {
                    let w = m.row_data(first + k);
                    for (i, r) in results.iter_mut().enumerate() {
                        let blocks = i * nb..(i + 1) * nb;
                        *r = dot_int(
                            kernel,
                            simd,
                            w,
                            &input.qs[blocks.clone()],
                            &input.d[blocks.clone()],
                            &input.s[blocks],
                        );
                    }
                }
            });
        }
        None => {
            let ty = m.ty();
            row_tiles(rows, cols, n, out, |first, tile, row| {
                row.resize(cols, 0.0);
                for (k, results) in tile.chunks_exact_mut(n).enumerate() {
                    decode(ty, m.row_data(first + k), row, simd);
                    for (r, x) in results.iter_mut().zip(x.chunks_exact(cols)) {
                        *r = dot_f32(simd, row, x);
                    }
                }
            });
        }
    }
}

/// Runs `tile(first_row, results, scratch)` over chunks of weight rows, in parallel when the
/// product is large enough, and gathers the results into `out` (`n × rows`). `results` is
/// laid out weight row by weight row: `results[k·n + i]` is input row `i` times weight row
/// `first_row + k`. `scratch` is a buffer reused by the items of one rayon job.
fn row_tiles<F>(rows: usize, cols: usize, n: usize, out: &mut [f32], tile: F)
where
    F: Fn(usize, &mut [f32], &mut Vec<f32>) + Sync,
{
    let parallel = rows.saturating_mul(cols).saturating_mul(n) >= SEQUENTIAL_WORK;
    let run = |results: &mut [f32]| {
        if parallel {
            results
                .par_chunks_mut(ROWS_PER_TASK * n)
                .enumerate()
                .for_each_init(Vec::new, |scratch, (c, r)| {
                    tile(c * ROWS_PER_TASK, r, scratch)
                });
        } else {
            tile(0, results, &mut Vec::new());
        }
    };
    if n == 1 {
        run(out);
        return;
    }
    let mut by_row = vec![0.0f32; rows * n];
    run(&mut by_row);
    // out[i·rows + r] = by_row[r·n + i], by tiles of rows so both sides stay in cache.
    for (c, chunk) in by_row.chunks(ROWS_PER_TASK * n).enumerate() {
        let first = c * ROWS_PER_TASK;
        for (k, results) in chunk.chunks_exact(n).enumerate() {
            for (i, &v) in results.iter().enumerate() {
                out[i * rows + first + k] = v;
            }
        }
    }
}

/// One weight row (whole blocks of `kernel`'s type) times one quantised input row.
#[inline]
fn dot_int(kernel: IntKernel, simd: Simd, w: &[u8], qs: &[[i8; 32]], d: &[f32], s: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx2 {
        // SAFETY: `Simd::Avx2` is only used after `avx2_available()` returned true.
        return unsafe { avx2::dot_int(kernel, w, qs, d, s) };
    }
    let _ = simd;
    match kernel {
        IntKernel::Q8_0 => scalar::dot_q8_0(w, qs, d),
        IntKernel::Q4_0 => scalar::dot_q4_0(w, qs, d),
        IntKernel::Q4_1 => scalar::dot_q4_1(w, qs, d, s),
        IntKernel::Q5_0 => scalar::dot_q5_0(w, qs, d),
        IntKernel::Q5_1 => scalar::dot_q5_1(w, qs, d, s),
    }
}

/// `Σ a·b` over equally long slices.
#[inline]
fn dot_f32(simd: Simd, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx2 {
        // SAFETY: `Simd::Avx2` is only used after `avx2_available()` returned true.
        return unsafe { avx2::dot_f32(a, b) };
    }
    let _ = simd;
    scalar::dot_f32(a, b)
}

/// Portable kernels: each weight block unpacked to 32 small integers, an exact integer dot
/// product with the input block, one f32 multiply-add per block.
///
/// Sums use wrapping adds: they cannot overflow (32 products of at most 128 · 127), and
/// checked adds, which builds with debug assertions keep, would stop the loops vectorising.
mod scalar {
    use super::f16_at;

    /// `Σ w·q` over one block.
    #[inline(always)]
    fn idot(w: &[i8; 32], q: &[i8; 32]) -> i32 {
        w.iter().zip(q).fold(0i32, |s, (&a, &b)| {
            s.wrapping_add(i32::from(a) * i32::from(b))
        })
    }

    /// Low nibbles, then high nibbles, each plus `offset` (-8, or 0 for the types with a
    /// minimum), with the fifth bits `high` (bit `e` for element `e`) where the type has them.
    #[inline(always)]
    fn unpack(qs: &[u8; 16], high: u32, offset: i8) -> [i8; 32] {
        let mut w = [0i8; 32];
        for (j, &q) in qs.iter().enumerate() {
            let h0 = ((high >> j) & 1) as u8;
            let h1 = ((high >> (j + 16)) & 1) as u8;
            w[j] = ((q & 0x0f) | (h0 << 4)) as i8 + offset;
            w[j + 16] = ((q >> 4) | (h1 << 4)) as i8 + offset;
        }
        w
    }

    pub(super) fn dot_q8_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<34>().0.iter().zip(qs).zip(d) {
            let [d0, d1, qw @ ..] = b;
            let qw = qw.map(|v| v as i8);
            sum += f16_at(&[*d0, *d1], 0) * dx * idot(&qw, q) as f32;
        }
        sum
    }

    pub(super) fn dot_q4_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<18>().0.iter().zip(qs).zip(d) {
            let [d0, d1, qw @ ..] = b;
            sum += f16_at(&[*d0, *d1], 0) * dx * idot(&unpack(qw, 0, -8), q) as f32;
        }
        sum
    }

    pub(super) fn dot_q4_1(w: &[u8], qs: &[[i8; 32]], d: &[f32], s: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        for (((b, q), &dx), &sx) in w.as_chunks::<20>().0.iter().zip(qs).zip(d).zip(s) {
            let [d0, d1, m0, m1, qw @ ..] = b;
            let (dw, m) = (f16_at(&[*d0, *d1], 0), f16_at(&[*m0, *m1], 0));
            sum += dw * dx * idot(&unpack(qw, 0, 0), q) as f32 + m * sx;
        }
        sum
    }

    pub(super) fn dot_q5_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<22>().0.iter().zip(qs).zip(d) {
            let [d0, d1, h0, h1, h2, h3, qw @ ..] = b;
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            sum += f16_at(&[*d0, *d1], 0) * dx * idot(&unpack(qw, qh, -16), q) as f32;
        }
        sum
    }

    pub(super) fn dot_q5_1(w: &[u8], qs: &[[i8; 32]], d: &[f32], s: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        for (((b, q), &dx), &sx) in w.as_chunks::<24>().0.iter().zip(qs).zip(d).zip(s) {
            let [d0, d1, m0, m1, h0, h1, h2, h3, qw @ ..] = b;
            let (dw, m) = (f16_at(&[*d0, *d1], 0), f16_at(&[*m0, *m1], 0));
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            sum += dw * dx * idot(&unpack(qw, qh, 0), q) as f32 + m * sx;
        }
        sum
    }

    /// Sixteen independent partial sums, so the loop vectorises.
    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let (ac, at) = a.as_chunks::<16>();
        let (bc, bt) = b.as_chunks::<16>();
        let mut acc = [0.0f32; 16];
        for (x, y) in ac.iter().zip(bc) {
            for k in 0..16 {
                acc[k] += x[k] * y[k];
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in at.iter().zip(bt) {
            sum += x * y;
        }
        sum
    }
}

/// AVX2 kernels, after llama.cpp's `ggml_vec_dot_*` for AVX2 (ggml-cpu/arch/x86/quants.c):
/// 32 weights unpacked to a 256-bit register of bytes, `maddubs`/`madd` to eight i32 sums,
/// converted and multiplied by the two scales with an FMA.
///
/// Loads are `transmute`s of byte arrays rather than `_mm256_loadu_si256` and friends: those
/// are `ptr::copy_nonoverlapping`, whose precondition checks stay in builds with debug
/// assertions (the dev profile builds this crate at opt-level 3 with them on) and made these
/// loops several times slower. A transmute by value compiles to a plain unaligned load.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::IntKernel;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_int(
        kernel: IntKernel,
        w: &[u8],
        qs: &[[i8; 32]],
        d: &[f32],
        s: &[f32],
    ) -> f32 {
        match kernel {
            IntKernel::Q8_0 => dot_q8_0(w, qs, d),
            IntKernel::Q4_0 => dot_q4_0(w, qs, d),
            IntKernel::Q4_1 => dot_q4_1(w, qs, d, s),
            IntKernel::Q5_0 => dot_q5_0(w, qs, d),
            IntKernel::Q5_1 => dot_q5_1(w, qs, d, s),
        }
    }

    /// The little-endian f16 `[lo, hi]` as f32, with F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16(lo: u8, hi: u8) -> f32 {
        let bits = i32::from(u16::from_le_bytes([lo, hi]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }

    /// 32 signed bytes as a vector.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_i8(bytes: &[i8; 32]) -> __m256i {
        // SAFETY: `[i8; 32]` and `__m256i` have the same size and every bit pattern is valid.
        unsafe { std::mem::transmute::<[i8; 32], __m256i>(*bytes) }
    }

    /// 32 unsigned bytes as a vector.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_u8(bytes: &[u8; 32]) -> __m256i {
        // SAFETY: `[u8; 32]` and `__m256i` have the same size and every bit pattern is valid.
        unsafe { std::mem::transmute::<[u8; 32], __m256i>(*bytes) }
    }

    /// 16 bytes of packed nibbles to 32 bytes 0..16: low nibbles in the low half (elements
    /// 0..16), high nibbles in the high half (elements 16..32).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn nibbles(packed: &[u8; 16]) -> __m256i {
        // SAFETY: `[u8; 16]` and `__m128i` have the same size and every bit pattern is valid.
        let low = unsafe { std::mem::transmute::<[u8; 16], __m128i>(*packed) };
        let high = _mm_srli_epi16(low, 4);
        _mm256_and_si256(_mm256_set_m128i(high, low), _mm256_set1_epi8(0x0f))
    }

    /// Byte `e` is 0xff where bit `e` of `bits` is set, else 0.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn bit_bytes(bits: u32) -> __m256i {
        let shuffle = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuffle);
        let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1))
    }

    /// Unsigned × signed bytes, summed in pairs and then fours: eight i32 as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_u8_i8(x: __m256i, y: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(x, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Signed × signed bytes (|y| ≤ 127, so no pair sum saturates), as [`mul_sum_u8_i8`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
        mul_sum_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q8_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for ((b, q), &dx) in w.as_chunks::<34>().0.iter().zip(qs).zip(d) {
            let [d0, d1, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            acc = _mm256_fmadd_ps(scale, mul_sum_i8(load_u8(qw), load_i8(q)), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q4_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let eight = _mm256_set1_epi8(8);
        for ((b, q), &dx) in w.as_chunks::<18>().0.iter().zip(qs).zip(d) {
            let [d0, d1, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            let x = _mm256_sub_epi8(nibbles(qw), eight);
            acc = _mm256_fmadd_ps(scale, mul_sum_i8(x, load_i8(q)), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q4_1(w: &[u8], qs: &[[i8; 32]], d: &[f32], s: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        for (((b, q), &dx), &sx) in w.as_chunks::<20>().0.iter().zip(qs).zip(d).zip(s) {
            let [d0, d1, m0, m1, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            mins += f16(*m0, *m1) * sx;
            acc = _mm256_fmadd_ps(scale, mul_sum_u8_i8(nibbles(qw), load_i8(q)), acc);
        }
        hsum(acc) + mins
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q5_0(w: &[u8], qs: &[[i8; 32]], d: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let high_when_clear = _mm256_set1_epi8(0xf0u8 as i8);
        for ((b, q), &dx) in w.as_chunks::<22>().0.iter().zip(qs).zip(d) {
            let [d0, d1, h0, h1, h2, h3, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            // (nibble | bit << 4) - 16 as a signed byte: nibble | 0xf0 where the bit is clear.
            let high = _mm256_andnot_si256(bit_bytes(qh), high_when_clear);
            let x = _mm256_or_si256(nibbles(qw), high);
            acc = _mm256_fmadd_ps(scale, mul_sum_i8(x, load_i8(q)), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q5_1(w: &[u8], qs: &[[i8; 32]], d: &[f32], s: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        let fifth_bit = _mm256_set1_epi8(0x10);
        for (((b, q), &dx), &sx) in w.as_chunks::<24>().0.iter().zip(qs).zip(d).zip(s) {
            let [d0, d1, m0, m1, h0, h1, h2, h3, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            mins += f16(*m0, *m1) * sx;
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            let high = _mm256_and_si256(bit_bytes(qh), fifth_bit);
            let x = _mm256_or_si256(nibbles(qw), high);
            acc = _mm256_fmadd_ps(scale, mul_sum_u8_i8(x, load_i8(q)), acc);
        }
        hsum(acc) + mins
    }

    /// `Σ a·b` with four 8-lane FMA accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let (ac, at) = a.as_chunks::<32>();
        let (bc, bt) = b.as_chunks::<32>();
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut acc2, mut acc3) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in ac.iter().zip(bc) {
            // SAFETY: `[f32; 32]` and `[__m256; 4]` have the same size and every bit pattern
            // of either is valid for the other.
            let (x, y) = unsafe {
                (
                    std::mem::transmute::<[f32; 32], [__m256; 4]>(*x),
                    std::mem::transmute::<[f32; 32], [__m256; 4]>(*y),
                )
            };
            acc0 = _mm256_fmadd_ps(x[0], y[0], acc0);
            acc1 = _mm256_fmadd_ps(x[1], y[1], acc1);
            acc2 = _mm256_fmadd_ps(x[2], y[2], acc2);
            acc3 = _mm256_fmadd_ps(x[3], y[3], acc3);
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        let mut sum = hsum(sum);
        for (x, y) in at.iter().zip(bt) {
            sum += x * y;
        }
        sum
    }
}
