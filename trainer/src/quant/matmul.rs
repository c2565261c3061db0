//! `x · Wᵀ` over block-quantised weights: the CPU kernels behind [`QuantMatrix::matmul_t`].

use rayon::prelude::*;

use super::QuantMatrix;
use super::dequant::decode;
use crate::loading::ggml::GgmlType;

/// Weight rows per rayon work item. rayon groups items into jobs adaptively, so this is only
/// the finest split: small enough that a 576-row projection still spreads evenly over the
/// threads at one input row, large enough that per-item overhead stays negligible.
pub const ROWS_PER_TASK: usize = 16;

/// Below this many multiply-adds (`rows × cols × n`) a product runs on the calling thread:
/// handing it to the pool would cost more than it saves (measured: a 192 × 576 Q4_1 product,
/// about 7 µs, was no faster on two threads).
const SEQUENTIAL_WORK: usize = 1 << 17;

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

/// How a type's rows are multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// 32-element weight blocks against 8-bit input blocks of 32 (llama.cpp's Q8_0 / Q8_1).
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    /// 256-element super-blocks against 8-bit input blocks of 256 (llama.cpp's Q8_K).
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    /// Rows decoded to f32 and dotted with the f32 input.
    Float,
}

impl Kernel {
    pub(crate) fn of(ty: GgmlType) -> Kernel {
        match ty {
            GgmlType::Q8_0 => Kernel::Q8_0,
            GgmlType::Q4_0 => Kernel::Q4_0,
            GgmlType::Q4_1 => Kernel::Q4_1,
            GgmlType::Q5_0 => Kernel::Q5_0,
            GgmlType::Q5_1 => Kernel::Q5_1,
            GgmlType::Q2_K => Kernel::Q2K,
            GgmlType::Q3_K => Kernel::Q3K,
            GgmlType::Q4_K => Kernel::Q4K,
            GgmlType::Q5_K => Kernel::Q5K,
            GgmlType::Q6_K => Kernel::Q6K,
            _ => Kernel::Float,
        }
    }

    /// Elements per scale of the 8-bit input, or `None` where the input stays f32.
    pub(crate) fn input_block(self) -> Option<usize> {
        match self {
            Kernel::Q8_0 | Kernel::Q4_0 | Kernel::Q4_1 | Kernel::Q5_0 | Kernel::Q5_1 => Some(32),
            Kernel::Q2K | Kernel::Q3K | Kernel::Q4K | Kernel::Q5K | Kernel::Q6K => Some(256),
            Kernel::Float => None,
        }
    }
}

/// Input rows rounded to 8 bits in blocks of 32 or 256 elements: element `j` of block `b` is
/// `qs[j / 32 + b·block/32][j % 32] · d[b]`; `s[b] = d[b] · Σ q` over the block (used by the
/// types with a minimum, Q4_1 and Q5_1); for 256-element blocks, `sums[b]` are the sums of `q`
/// over each 16 elements (used by Q2_K, Q4_K and Q5_K for their minimums).
struct Q8Input {
    block: usize,
    qs: Vec<[i8; 32]>,
    d: Vec<f32>,
    s: Vec<f32>,
    sums: Vec<[i16; 16]>,
}

/// One input row of a [`Q8Input`].
#[derive(Clone, Copy)]
struct Q8Row<'a> {
    qs: &'a [[i8; 32]],
    d: &'a [f32],
    s: &'a [f32],
    sums: &'a [[i16; 16]],
}

impl Q8Input {
    /// Quantises `x` in blocks of `block` (32 or 256) elements; a last shorter block is
    /// quantised on its own.
    fn new(x: &[f32], block: usize, simd: Simd) -> Self {
        let blocks = x.len().div_ceil(block);
        let mut input = Q8Input {
            block,
            qs: vec![[0; 32]; x.len().div_ceil(32)],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sums: if block == 256 {
                vec![[0; 16]; blocks]
            } else {
                Vec::new()
            },
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

    /// Input row `i` of rows of `cols` elements (a multiple of the block size).
    fn row(&self, i: usize, cols: usize) -> Q8Row<'_> {
        let (b32, bk) = (cols / 32, cols / self.block);
        Q8Row {
            qs: &self.qs[i * b32..(i + 1) * b32],
            d: &self.d[i * bk..(i + 1) * bk],
            s: &self.s[i * bk..(i + 1) * bk],
            sums: if self.sums.is_empty() {
                &[]
            } else {
                &self.sums[i * bk..(i + 1) * bk]
            },
        }
    }

    /// The values the kernels multiply with, as f32 (`len` of them).
    fn values(&self, len: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(len);
        for (k, q) in self.qs.iter().enumerate() {
            let d = self.d[k * 32 / self.block];
            let take = (len - out.len()).min(32);
            out.extend(q[..take].iter().map(|&q| f32::from(q) * d));
        }
        out
    }
}

/// [`quantize_q8`] compiled for AVX2 (`round` becomes a few vector instructions instead of a
/// call per element).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_avx2(x: &[f32], input: &mut Q8Input) {
    quantize_q8(x, input);
}

/// ggml's `quantize_row_q8_1_ref` with f32 scale and sum, over blocks of `input.block`:
/// `d = max|x| / 127`, `q = round(x / d)` (half away from zero), a zero block when `d = 0`.
#[inline(always)]
fn quantize_q8(x: &[f32], input: &mut Q8Input) {
    let per_block = input.block / 32;
    for (b, xb) in x.chunks(input.block).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        let qs = &mut input.qs[b * per_block..];
        for (x, q) in xb.chunks(32).zip(qs.iter_mut()) {
            for (q, &v) in q.iter_mut().zip(x) {
                *q = (v * id).round() as i8;
                sum = sum.wrapping_add(i32::from(*q));
            }
        }
        input.d[b] = d;
        input.s[b] = d * sum as f32;
        if let Some(sums) = input.sums.get_mut(b) {
            for (k, s) in sums.iter_mut().enumerate() {
                let q = &input.qs[b * per_block + k / 2][(k % 2) * 16..][..16];
                *s = q.iter().fold(0i16, |a, &q| a.wrapping_add(i16::from(q)));
            }
        }
    }
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
    let kernel = Kernel::of(m.ty());
    match kernel.input_block() {
        Some(block) => {
            let input = Q8Input::new(x, block, simd);
            let x_rows: Vec<Q8Row<'_>> = (0..n).map(|i| input.row(i, cols)).collect();
            let row_bytes = m.row_bytes();
            row_tiles(rows, cols, n, out, |first, tile, _| {
                let count = tile.len() / n;
                let w = &m.bytes()[first * row_bytes..(first + count) * row_bytes];
                for (i, &x) in x_rows.iter().enumerate() {
                    dot_rows(kernel, simd, w, row_bytes, x, &mut tile[i..], n);
                }
            });
        }
        None => {
            let ty = m.ty();
            row_tiles(rows, cols, n, out, |first, tile, row| {
                for (k, results) in tile.chunks_exact_mut(n).enumerate() {
                    let w = m.row_data(first + k);
                    #[cfg(target_arch = "x86_64")]
                    if simd == Simd::Avx2 {
                        for (r, x) in results.iter_mut().zip(x.chunks_exact(cols)) {
                            // SAFETY: `Simd::Avx2` is only used after `avx2_available()`
                            // returned true.
                            *r = unsafe { avx2::dot_float(ty, w, x) };
                        }
                        continue;
                    }
                    row.resize(cols, 0.0);
                    decode(ty, w, row, simd);
                    for (r, x) in results.iter_mut().zip(x.chunks_exact(cols)) {
                        *r = super::dot_f32(row, x);
                    }
                }
            });
        }
    }
}

/// `x` (rows of `cols`) as the kernels of `ty` multiply it: rounded to 8 bits per block for
/// the integer kernels, unchanged for the others.
pub(super) fn rounded_input(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    match Kernel::of(ty).input_block() {
        Some(block) => Q8Input::new(x, block, Simd::detect()).values(x.len()),
        None => x.to_vec(),
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

/// Consecutive weight rows `w` (of `row_bytes` each, whole blocks of `kernel`'s type) times
/// one quantised input row: row `k`'s product goes to `out[k · stride]`.
fn dot_rows(
    kernel: Kernel,
    simd: Simd,
    w: &[u8],
    row_bytes: usize,
    x: Q8Row<'_>,
    out: &mut [f32],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx2 {
        // SAFETY: `Simd::Avx2` is only used after `avx2_available()` returned true.
        unsafe { avx2::dot_rows(kernel, w, row_bytes, x, out, stride) };
        return;
    }
    let _ = simd;
    let dot: fn(&[u8], Q8Row<'_>) -> f32 = match kernel {
        Kernel::Q8_0 => scalar::dot_q8_0,
        Kernel::Q4_0 => scalar::dot_q4_0,
        Kernel::Q4_1 => scalar::dot_q4_1,
        Kernel::Q5_0 => scalar::dot_q5_0,
        Kernel::Q5_1 => scalar::dot_q5_1,
        Kernel::Q2K => scalar::dot_q2_k,
        Kernel::Q3K => scalar::dot_q3_k,
        Kernel::Q4K => scalar::dot_q4_k,
        Kernel::Q5K => scalar::dot_q5_k,
        Kernel::Q6K => scalar::dot_q6_k,
        Kernel::Float => return,
    };
    each_row(w, row_bytes, out, stride, |r| dot(r, x));
}

/// `out[k · stride] = dot(row k of w)`.
#[inline(always)]
fn each_row(
    w: &[u8],
    row_bytes: usize,
    out: &mut [f32],
    stride: usize,
    dot: impl Fn(&[u8]) -> f32,
) {
    for (r, o) in w
        .chunks_exact(row_bytes)
        .zip(out.iter_mut().step_by(stride))
    {
        *o = dot(r);
    }
}

/// The first `A` bytes of `s` as an array, and the rest. Used on fixed-size blocks, where the
/// length check is resolved at compile time.
#[inline(always)]
fn split<const A: usize>(s: &[u8]) -> (&[u8; A], &[u8]) {
    match s.split_first_chunk::<A>() {
        Some(parts) => parts,
        None => panic!("a block is shorter than its layout"),
    }
}

/// Portable kernels: weight blocks unpacked to small integers, exact integer dot products
/// with the input blocks, one f32 multiply-add per block.
///
/// Sums use wrapping adds: they cannot overflow (at most 256 products of 63 · 127, times a
/// 6-bit scale), and checked adds, which builds with debug assertions keep, would stop the
/// loops vectorising.
mod scalar {
    use super::{Q8Row, split};
    use crate::quant::dequant::{f16_at, scale_min_k4, scale_q3_k};

    #[inline(always)]
    fn f16(lo: u8, hi: u8) -> f32 {
        f16_at(&[lo, hi], 0)
    }

    /// `Σ w·q` over one block of 32.
    #[inline(always)]
    fn idot(w: &[i8; 32], q: &[i8; 32]) -> i32 {
        w.iter().zip(q).fold(0i32, |s, (&a, &b)| {
            s.wrapping_add(i32::from(a) * i32::from(b))
        })
    }

    /// Low nibbles, then high nibbles, each plus `offset` (-8, -16, or 0 for the types with a
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

    pub(super) fn dot_q8_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<34>().0.iter().zip(x.qs).zip(x.d) {
            let [d0, d1, qw @ ..] = b;
            let qw = qw.map(|v| v as i8);
            sum += f16(*d0, *d1) * dx * idot(&qw, q) as f32;
        }
        sum
    }

    pub(super) fn dot_q4_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<18>().0.iter().zip(x.qs).zip(x.d) {
            let [d0, d1, qw @ ..] = b;
            sum += f16(*d0, *d1) * dx * idot(&unpack(qw, 0, -8), q) as f32;
        }
        sum
    }

    pub(super) fn dot_q4_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<20>().0.iter().zip(x.qs).zip(x.d).zip(x.s);
        for (((b, q), &dx), &sx) in blocks {
            let [d0, d1, m0, m1, qw @ ..] = b;
            let dot = idot(&unpack(qw, 0, 0), q);
            sum += f16(*d0, *d1) * dx * dot as f32 + f16(*m0, *m1) * sx;
        }
        sum
    }

    pub(super) fn dot_q5_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        for ((b, q), &dx) in w.as_chunks::<22>().0.iter().zip(x.qs).zip(x.d) {
            let [d0, d1, h0, h1, h2, h3, qw @ ..] = b;
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            sum += f16(*d0, *d1) * dx * idot(&unpack(qw, qh, -16), q) as f32;
        }
        sum
    }

    pub(super) fn dot_q5_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<24>().0.iter().zip(x.qs).zip(x.d).zip(x.s);
        for (((b, q), &dx), &sx) in blocks {
            let [d0, d1, m0, m1, h0, h1, h2, h3, qw @ ..] = b;
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            let dot = idot(&unpack(qw, qh, 0), q);
            sum += f16(*d0, *d1) * dx * dot as f32 + f16(*m0, *m1) * sx;
        }
        sum
    }

    /// Q2_K: `Σ_G d·sc_G·(Σ q·qx)·dx − dmin·m_G·(Σ qx)·dx` over the sixteen groups of 16,
    /// `q` the 2-bit values.
    pub(super) fn dot_q2_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<84>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for (((b, q), &dx), sums) in blocks.zip(x.d).zip(x.sums) {
            let (scales, rest) = split::<16>(b);
            let (qs, d) = split::<64>(rest);
            let (mut dots, mut mins) = (0i32, 0i32);
            for (c, q) in q.iter().enumerate() {
                let (h, j) = (c / 4, c % 4);
                for s in 0..2 {
                    let g = 8 * h + 2 * j + s;
                    let packed = &qs[32 * h + 16 * s..][..16];
                    let dot = packed.iter().zip(&q[16 * s..]).fold(0i32, |a, (&p, &q)| {
                        a.wrapping_add(i32::from((p >> (2 * j)) & 3) * i32::from(q))
                    });
                    dots = dots.wrapping_add(i32::from(scales[g] & 0x0f) * dot);
                    mins = mins.wrapping_add(i32::from(scales[g] >> 4) * i32::from(sums[g]));
                }
            }
            sum += f16(d[0], d[1]) * dx * dots as f32 - f16(d[2], d[3]) * dx * mins as f32;
        }
        sum
    }

    /// Q3_K: `Σ_G d·sc_G·(Σ q·qx)·dx` over the sixteen groups of 16, `q` the 2-bit values
    /// minus 4 where the `hmask` bit is clear.
    pub(super) fn dot_q3_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<110>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for ((b, q), &dx) in blocks.zip(x.d) {
            let (hmask, rest) = split::<32>(b);
            let (qs, rest) = split::<64>(rest);
            let (scales, d) = split::<12>(rest);
            let mut dots = 0i32;
            for (c, q) in q.iter().enumerate() {
                let (h, j) = (c / 4, c % 4);
                let bit = 1u8 << (4 * h + j);
                for s in 0..2 {
                    let g = 8 * h + 2 * j + s;
                    let packed = &qs[32 * h + 16 * s..][..16];
                    let hm = &hmask[16 * s..][..16];
                    let dot =
                        packed
                            .iter()
                            .zip(hm)
                            .zip(&q[16 * s..])
                            .fold(0i32, |a, ((&p, &hm), &q)| {
                                let v = i32::from((p >> (2 * j)) & 3)
                                    - if hm & bit != 0 { 0 } else { 4 };
                                a.wrapping_add(v * i32::from(q))
                            });
                    dots = dots.wrapping_add(i32::from(scale_q3_k(g, scales)) * dot);
                }
            }
            sum += f16(d[0], d[1]) * dx * dots as f32;
        }
        sum
    }

    /// Q4_K and Q5_K: `Σ_g d·sc_g·(Σ q·qx)·dx − dmin·m_g·(Σ qx)·dx` over the eight groups of
    /// 32, where `q` is the nibble (plus the fifth bit from `qh` for Q5_K).
    #[inline(always)]
    fn dot_k<const B: usize>(w: &[u8], x: Q8Row<'_>, fifth_bits: bool) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<B>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for (((b, q), &dx), sums) in blocks.zip(x.d).zip(x.sums) {
            let ([d0, d1, m0, m1], rest) = split::<4>(b);
            let (scales, rest) = split::<12>(rest);
            let (qh, qw) = if fifth_bits {
                split::<32>(rest)
            } else {
                (&[0u8; 32], rest)
            };
            let (mut dots, mut mins) = (0i32, 0i32);
            for (g, q) in q.iter().enumerate() {
                let (sc, m) = scale_min_k4(g, scales);
                let shift = 4 * (g % 2);
                let packed = &qw[32 * (g / 2)..][..32];
                let dot = packed
                    .iter()
                    .zip(qh)
                    .zip(q)
                    .fold(0i32, |s, ((&p, &h), &q)| {
                        let v = ((p >> shift) & 0x0f) | (((h >> g) & 1) << 4);
                        s.wrapping_add(i32::from(v) * i32::from(q))
                    });
                dots = dots.wrapping_add(i32::from(sc) * dot);
                let qsum = i32::from(sums[2 * g]) + i32::from(sums[2 * g + 1]);
                mins = mins.wrapping_add(i32::from(m) * qsum);
            }
            sum += f16(*d0, *d1) * dx * dots as f32 - f16(*m0, *m1) * dx * mins as f32;
        }
        sum
    }

    pub(super) fn dot_q4_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        dot_k::<144>(w, x, false)
    }

    pub(super) fn dot_q5_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        dot_k::<176>(w, x, true)
    }

    /// Q6_K: `Σ_G d·sc_G·(Σ (q − 32)·qx)·dx` over the sixteen groups of 16.
    pub(super) fn dot_q6_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut sum = 0.0f32;
        let blocks = w.as_chunks::<210>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for ((b, q), &dx) in blocks.zip(x.d) {
            let (ql, rest) = split::<128>(b);
            let (qh, rest) = split::<64>(rest);
            let (sc, d) = split::<16>(rest);
            let mut dots = 0i32;
            for h in 0..2 {
                for k in 0..4 {
                    let low = &ql[64 * h + 32 * (k % 2)..][..32];
                    let high = &qh[32 * h..][..32];
                    let (lshift, hshift) = (4 * (k / 2), 2 * k);
                    let q = &q[4 * h + k];
                    for half in 0..2 {
                        let range = 16 * half..16 * half + 16;
                        let dot = low[range.clone()]
                            .iter()
                            .zip(&high[range.clone()])
                            .zip(&q[range])
                            .fold(0i32, |s, ((&l, &hb), &q)| {
                                let v = ((l >> lshift) & 0x0f) | (((hb >> hshift) & 3) << 4);
                                s.wrapping_add((i32::from(v) - 32) * i32::from(q))
                            });
                        let scale = i32::from(sc[8 * h + 2 * k + half] as i8);
                        dots = dots.wrapping_add(scale * dot);
                    }
                }
            }
            sum += f16(d[0], d[1]) * dx * dots as f32;
        }
        sum
    }
}

/// AVX2 kernels, after llama.cpp's `ggml_vec_dot_*` for AVX2 (ggml-cpu/arch/x86/quants.c):
/// 32 weights unpacked to a 256-bit register of bytes, `maddubs`/`madd` to eight i32 sums
/// (weighted by the sub-block scales for the K-quants), converted and multiplied by the two
/// block scales with an FMA.
///
/// Loads are `transmute`s of byte arrays rather than `_mm256_loadu_si256` and friends: those
/// are `ptr::copy_nonoverlapping`, whose precondition checks stay in builds with debug
/// assertions (the dev profile builds this crate at opt-level 3 with them on) and made these
/// loops several times slower. A transmute by value compiles to a plain unaligned load.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Kernel, Q8Row, Simd, each_row, split};
    use crate::loading::ggml::GgmlType;
    use crate::quant::dequant::{decode, scale_q3_k, scales_mins_k4};

    /// See [`super::dot_rows`]; the row kernels are inlined into the loop over rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_rows(
        kernel: Kernel,
        w: &[u8],
        row_bytes: usize,
        x: Q8Row<'_>,
        out: &mut [f32],
        stride: usize,
    ) {
        match kernel {
            Kernel::Q8_0 => each_row(w, row_bytes, out, stride, |r| dot_q8_0(r, x)),
            Kernel::Q4_0 => each_row(w, row_bytes, out, stride, |r| dot_q4_0(r, x)),
            Kernel::Q4_1 => each_row(w, row_bytes, out, stride, |r| dot_q4_1(r, x)),
            Kernel::Q5_0 => each_row(w, row_bytes, out, stride, |r| dot_q5_0(r, x)),
            Kernel::Q5_1 => each_row(w, row_bytes, out, stride, |r| dot_q5_1(r, x)),
            Kernel::Q2K => each_row(w, row_bytes, out, stride, |r| dot_q2_k(r, x)),
            Kernel::Q3K => each_row(w, row_bytes, out, stride, |r| dot_q3_k(r, x)),
            Kernel::Q4K => each_row(w, row_bytes, out, stride, |r| dot_q4_k(r, x)),
            Kernel::Q5K => each_row(w, row_bytes, out, stride, |r| dot_q5_k(r, x)),
            Kernel::Q6K => each_row(w, row_bytes, out, stride, |r| dot_q6_k(r, x)),
            Kernel::Float => {}
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

    /// `Σ scale · product` over the 32-element blocks of a row, where `block(b, q, dx, sx,
    /// mins)` gives a block's broadcast scale and its eight partial integer sums as f32 (and may
    /// add to `mins`, lane 1 of which is added to the result).
    ///
    /// Even and odd blocks go to separate accumulators: with one, every block waited for the
    /// previous block's FMA (four cycles), which bounded short rows.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn sum_blocks<const B: usize>(
        w: &[u8],
        x: Q8Row<'_>,
        block: impl Fn(&[u8; B], &[i8; 32], f32, f32, &mut __m128) -> (__m256, __m256),
    ) -> f32 {
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut mins0, mut mins1) = (_mm_setzero_ps(), _mm_setzero_ps());
        let mut blocks = w.as_chunks::<B>().0.iter().zip(x.qs).zip(x.d).zip(x.s);
        while let Some((((b, q), &dx), &sx)) = blocks.next() {
            let (scale, product) = block(b, q, dx, sx, &mut mins0);
            acc0 = _mm256_fmadd_ps(scale, product, acc0);
            let Some((((b, q), &dx), &sx)) = blocks.next() else {
                break;
            };
            let (scale, product) = block(b, q, dx, sx, &mut mins1);
            acc1 = _mm256_fmadd_ps(scale, product, acc1);
        }
        hsum(_mm256_add_ps(acc0, acc1)) + lane1(_mm_add_ps(mins0, mins1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q8_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        sum_blocks::<34>(w, x, |b, q, dx, _, _| {
            let [d0, d1, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            (scale, mul_sum_i8(load_u8(qw), load_i8(q)))
        })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q4_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let eight = _mm256_set1_epi8(8);
        sum_blocks::<18>(w, x, |b, q, dx, _, _| {
            let [d0, d1, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            let v = _mm256_sub_epi8(nibbles(qw), eight);
            (scale, mul_sum_i8(v, load_i8(q)))
        })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q4_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        sum_blocks::<20>(w, x, |b, q, dx, sx, mins| {
            let [d0, d1, m0, m1, qw @ ..] = b;
            let scale = scale_and_min([*d0, *d1, *m0, *m1], dx, sx, mins);
            (scale, mul_sum_u8_i8(nibbles(qw), load_i8(q)))
        })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q5_0(w: &[u8], x: Q8Row<'_>) -> f32 {
        let high_when_clear = _mm256_set1_epi8(0xf0u8 as i8);
        sum_blocks::<22>(w, x, |b, q, dx, _, _| {
            let [d0, d1, h0, h1, h2, h3, qw @ ..] = b;
            let scale = _mm256_set1_ps(f16(*d0, *d1) * dx);
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            // (nibble | bit << 4) - 16 as a signed byte: nibble | 0xf0 where the bit is clear.
            let high = _mm256_andnot_si256(bit_bytes(qh), high_when_clear);
            let v = _mm256_or_si256(nibbles(qw), high);
            (scale, mul_sum_i8(v, load_i8(q)))
        })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q5_1(w: &[u8], x: Q8Row<'_>) -> f32 {
        let fifth_bit = _mm256_set1_epi8(0x10);
        sum_blocks::<24>(w, x, |b, q, dx, sx, mins| {
            let [d0, d1, m0, m1, h0, h1, h2, h3, qw @ ..] = b;
            let scale = scale_and_min([*d0, *d1, *m0, *m1], dx, sx, mins);
            let qh = u32::from_le_bytes([*h0, *h1, *h2, *h3]);
            let high = _mm256_and_si256(bit_bytes(qh), fifth_bit);
            let v = _mm256_or_si256(nibbles(qw), high);
            (scale, mul_sum_u8_i8(v, load_i8(q)))
        })
    }

    /// For a block with f16 scale and minimum `dm` (4 bytes) and an input block with scale
    /// `dx`: the broadcast product scale `d·dx`, and `m·mx` added to lane 1 of `mins`, where
    /// `mx` is what multiplies the minimum (`dx · Σq` for Q4_1 and Q5_1, `dx` times the
    /// scaled sums for the K-quants).
    ///
    /// Both halves are converted in one `vcvtph2ps` from a 32-bit load, and the minimum is
    /// summed in a vector: with a scalar `f32` sum, LLVM used the sum's register as the
    /// don't-care source of the 16-bit insert feeding the next conversion, which chained every
    /// block to the previous one (about twice slower).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale_and_min(dm: [u8; 4], dx: f32, mx: f32, mins: &mut __m128) -> __m256 {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(dm)));
        let products = _mm_mul_ps(dm, _mm_setr_ps(dx, mx, 0.0, 0.0));
        *mins = _mm_add_ps(*mins, products);
        _mm256_broadcastss_ps(products)
    }

    /// Lane 1 of `v`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lane1(v: __m128) -> f32 {
        _mm_cvtss_f32(_mm_movehdup_ps(v))
    }

    /// Per-group scales of the two 16-element halves of a 32-byte product, as i16 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn half_scales(first: i16, second: i16) -> __m256i {
        _mm256_set_m128i(_mm_set1_epi16(second), _mm_set1_epi16(first))
    }

    /// The four 2-bit fields of each byte of `bits`, lowest first.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn crumbs(bits: __m256i) -> [__m256i; 4] {
        let m3 = _mm256_set1_epi8(3);
        [
            _mm256_and_si256(bits, m3),
            _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m3),
            _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m3),
            _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m3),
        ]
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q2_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut mins_total = _mm_setzero_ps();
        let blocks = w.as_chunks::<84>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for (((b, q), &dx), sums) in blocks.zip(x.d).zip(x.sums) {
            let (scales, rest) = split::<16>(b);
            let (qs, rest) = split::<64>(rest);
            let (d, _) = split::<4>(rest);
            let mut dots = _mm256_setzero_si256();
            for (h, packed) in qs.as_chunks::<32>().0.iter().enumerate() {
                for (j, v) in crumbs(load_u8(packed)).into_iter().enumerate() {
                    let g = 8 * h + 2 * j;
                    let pairs = _mm256_maddubs_epi16(v, load_i8(&q[4 * h + j]));
                    let sc =
                        half_scales(i16::from(scales[g] & 0x0f), i16::from(scales[g + 1] & 0x0f));
                    dots = _mm256_add_epi32(dots, _mm256_madd_epi16(sc, pairs));
                }
            }
            let mins = scales
                .iter()
                .zip(sums)
                .fold(0i32, |a, (&sc, &s)| a + i32::from(sc >> 4) * i32::from(s));
            let scale = scale_and_min(*d, dx, dx * mins as f32, &mut mins_total);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dots), acc);
        }
        hsum(acc) - lane1(mins_total)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q3_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let four = _mm256_set1_epi8(4);
        let blocks = w.as_chunks::<110>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for ((b, q), &dx) in blocks.zip(x.d) {
            let (hmask, rest) = split::<32>(b);
            let (qs, rest) = split::<64>(rest);
            let (scales, d) = split::<12>(rest);
            let hm = load_u8(hmask);
            let mut dots = _mm256_setzero_si256();
            for (h, packed) in qs.as_chunks::<32>().0.iter().enumerate() {
                for (j, low) in crumbs(load_u8(packed)).into_iter().enumerate() {
                    let g = 8 * h + 2 * j;
                    let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                    // v = low + 4 where the bit is set; the value is v - 4.
                    let v = _mm256_or_si256(low, _mm256_and_si256(set, four));
                    let qx = load_i8(&q[4 * h + j]);
                    let pairs = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(v, qx),
                        _mm256_maddubs_epi16(four, qx),
                    );
                    let sc = half_scales(
                        i16::from(scale_q3_k(g, scales)),
                        i16::from(scale_q3_k(g + 1, scales)),
                    );
                    dots = _mm256_add_epi32(dots, _mm256_madd_epi16(sc, pairs));
                }
            }
            let scale = _mm256_set1_ps(f16(d[0], d[1]) * dx);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dots), acc);
        }
        hsum(acc)
    }

    /// `scale · (Σ pairs of v·q)` as eight i32: `v` unsigned bytes, `q` signed.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scaled_dot(v: __m256i, q: &[i8; 32], scale: u8) -> __m256i {
        let pairs = _mm256_maddubs_epi16(v, load_i8(q));
        _mm256_madd_epi16(_mm256_set1_epi16(i16::from(scale)), pairs)
    }

    /// Bit `g` of `qh`: the fifth bits of group `g` of a Q5_K block.
    const FIFTH_BITS: [u8; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

    /// Q4_K and Q5_K (with `FIFTH` the fifth bits from `qh`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_k<const B: usize, const FIFTH: bool>(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut mins_total = _mm_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        let sixteen = _mm256_set1_epi8(16);
        let blocks = w.as_chunks::<B>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for (((b, q), &dx), sums) in blocks.zip(x.d).zip(x.sums) {
            let ([d0, d1, m0, m1], rest) = split::<4>(b);
            let (scales, rest) = split::<12>(rest);
            let (qh, qw) = if FIFTH {
                let (qh, qw) = split::<32>(rest);
                (load_u8(qh), qw)
            } else {
                (_mm256_setzero_si256(), rest)
            };
            let (sc, mn) = scales_mins_k4(scales);
            let (qw, _) = split::<128>(qw);
            let qw = qw.as_chunks::<32>().0;
            let mut dots = _mm256_setzero_si256();
            for j in 0..4 {
                let bits = load_u8(&qw[j]);
                let mut lo = _mm256_and_si256(bits, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if FIFTH {
                    let bit_lo = _mm256_set1_epi8(FIFTH_BITS[2 * j] as i8);
                    let bit_hi = _mm256_set1_epi8(FIFTH_BITS[2 * j + 1] as i8);
                    let set_lo = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit_lo), bit_lo);
                    let set_hi = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit_hi), bit_hi);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(set_lo, sixteen));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(set_hi, sixteen));
                }
                let lo = scaled_dot(lo, &q[2 * j], sc[2 * j]);
                let hi = scaled_dot(hi, &q[2 * j + 1], sc[2 * j + 1]);
                dots = _mm256_add_epi32(dots, _mm256_add_epi32(lo, hi));
            }
            let mut mins = 0i32;
            for (g, &m) in mn.iter().enumerate() {
                let qsum = i32::from(sums[2 * g]) + i32::from(sums[2 * g + 1]);
                mins = mins.wrapping_add(i32::from(m) * qsum);
            }
            let scale = scale_and_min([*d0, *d1, *m0, *m1], dx, dx * mins as f32, &mut mins_total);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dots), acc);
        }
        hsum(acc) - lane1(mins_total)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q4_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        dot_k::<144, false>(w, x)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q5_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        dot_k::<176, true>(w, x)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_q6_k(w: &[u8], x: Q8Row<'_>) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        let m32 = _mm256_set1_epi8(32);
        let blocks = w.as_chunks::<210>().0.iter().zip(x.qs.as_chunks::<8>().0);
        for ((b, q), &dx) in blocks.zip(x.d) {
            let (ql, rest) = split::<128>(b);
            let (qh, rest) = split::<64>(rest);
            let (sc, d) = split::<16>(rest);
            let (ql, qh) = (ql.as_chunks::<32>().0, qh.as_chunks::<32>().0);
            let mut dots = _mm256_setzero_si256();
            for h in 0..2 {
                let bits1 = load_u8(&ql[2 * h]);
                let bits2 = load_u8(&ql[2 * h + 1]);
                let hb = load_u8(&qh[h]);
                let high = |mask: u8| _mm256_and_si256(hb, _mm256_set1_epi8(mask as i8));
                let values = [
                    _mm256_or_si256(
                        _mm256_and_si256(bits1, m4),
                        _mm256_slli_epi16::<4>(high(0x03)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(bits2, m4),
                        _mm256_slli_epi16::<2>(high(0x0c)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bits1), m4),
                        high(0x30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bits2), m4),
                        _mm256_srli_epi16::<2>(high(0xc0)),
                    ),
                ];
                for (k, v) in values.into_iter().enumerate() {
                    let qx = load_i8(&q[4 * h + k]);
                    // Σ (v − 32)·q in pairs: v·q − 32·q, both within i16.
                    let pairs = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(v, qx),
                        _mm256_maddubs_epi16(m32, qx),
                    );
                    let scale = half_scales(
                        i16::from(sc[8 * h + 2 * k] as i8),
                        i16::from(sc[8 * h + 2 * k + 1] as i8),
                    );
                    dots = _mm256_add_epi32(dots, _mm256_madd_epi16(scale, pairs));
                }
            }
            let scale = _mm256_set1_ps(f16(d[0], d[1]) * dx);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dots), acc);
        }
        hsum(acc)
    }

    /// One F32, F16 or BF16 weight row (`w`, its bytes) dotted with `x`, converting 32
    /// elements at a time into four 8-lane FMA accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_float(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
        let (xc, xt) = x.as_chunks::<32>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let tail = match ty {
            GgmlType::F32 => {
                let (wc, wt) = w.as_chunks::<128>();
                for (wb, xb) in wc.iter().zip(xc) {
                    // SAFETY: 128 bytes are 32 floats, four `__m256`; any bits are valid.
                    let wv = unsafe { std::mem::transmute::<[u8; 128], [__m256; 4]>(*wb) };
                    acc = fmadd4(wv, xb, acc);
                }
                wt
            }
            GgmlType::F16 | GgmlType::BF16 => {
                let (wc, wt) = w.as_chunks::<64>();
                for (wb, xb) in wc.iter().zip(xc) {
                    // SAFETY: 64 bytes are 32 16-bit values, four `__m128i`; any bits are
                    // valid.
                    let halves = unsafe { std::mem::transmute::<[u8; 64], [__m128i; 4]>(*wb) };
                    let wv = if ty == GgmlType::F16 {
                        halves.map(|h| _mm256_cvtph_ps(h))
                    } else {
                        halves.map(|h| {
                            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                        })
                    };
                    acc = fmadd4(wv, xb, acc);
                }
                wt
            }
            _ => return 0.0,
        };
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum(sum);
        // The last elements (fewer than 32), decoded one by one.
        let mut rest = [0.0f32; 32];
        let rest = &mut rest[..xt.len()];
        decode(ty, tail, rest, Simd::Scalar);
        for (a, b) in rest.iter().zip(xt) {
            sum += a * b;
        }
        sum
    }

    /// `acc[k] += w[k] · x[8k .. 8k+8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn fmadd4(w: [__m256; 4], x: &[f32; 32], acc: [__m256; 4]) -> [__m256; 4] {
        // SAFETY: `[f32; 32]` and `[__m256; 4]` have the same size; any bits are valid.
        let x = unsafe { std::mem::transmute::<[f32; 32], [__m256; 4]>(*x) };
        [
            _mm256_fmadd_ps(w[0], x[0], acc[0]),
            _mm256_fmadd_ps(w[1], x[1], acc[1]),
            _mm256_fmadd_ps(w[2], x[2], acc[2]),
            _mm256_fmadd_ps(w[3], x[3], acc[3]),
        ]
    }
}
