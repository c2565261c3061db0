//! NF4 with double-quantised scales: the storage of QLoRA's frozen base weights (Dettmers et
//! al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs"), laid out and rounded as
//! bitsandbytes does (`quantize_4bit(..., quant_type="nf4", blocksize=64,
//! compress_statistics=True)`), so its checkpoints can be loaded and ours checked against it.
//!
//! The weight is quantised over its flattened, row-major elements (blocks may cross rows):
//!
//! 1. Blocks of [`BLOCK`] = 64 elements (the last may be shorter). Each block's absmax `a`
//!    scales it to `[-1, 1]` (`x · (1/a)`, the reciprocal rounded to f32 first, as
//!    bitsandbytes' kernels do); each value becomes the index of the nearest [`NF4_CODE`]
//!    entry, decided by the thresholds of bitsandbytes' `dQuantizeNF4` tree (`x > threshold`:
//!    ties go to the lower code). An all-zero block gets code 7 (0.0), so it stays exactly 0
//!    whatever its stored absmax. Two codes per byte, the first element in the high nibble;
//!    an odd total gets a padding nibble 7.
//! 2. Double quantisation: `offset` = the mean of the block absmax values; `absmax - offset` is
//!    quantised in blocks of [`ABSMAX_BLOCK`] = 256 to 8 bits with bitsandbytes' signed
//!    **dynamic map** ([`dynamic_map`], `create_dynamic_map(signed=True)`), the nearest entry
//!    after scaling by the block's own absmax, which is kept as an f32 second-level scale.
//!
//! Dequantisation is `NF4_CODE[q] · (DYN[qa] · scale2 + offset)` in f32, bit for bit what
//! bitsandbytes computes from the same parts (tested against its output:
//! trainer/tests/golden/quant/nf4_*.bin, made by trainer/tests/scripts/nf4_golden.py).
//!
//! Our quantiser differs from bitsandbytes' CPU path (0.50) only next to midpoints: its NF4
//! path compares with torch's f32 midpoints, four of which are one ulp from the tree's
//! thresholds that its CUDA kernel (and we) use; its 8-bit quantiser looks codes up in a
//! 65536-entry table, so a value within `2/65535` of a midpoint of the dynamic map may get the
//! farther entry, where we take the nearest, as its CUDA kernel does. Its offset is torch's f32
//! mean, ours the f64 mean rounded to f32 (they may differ in the last bit).
//!
//! Memory: `0.5 + 1/64 + 4/(64·256)` bytes per weight (4.127 bits), the figure QLoRA reports.
//! [`Nf4Matrix::matmul_t`] (forward) and [`Nf4Matrix::matmul`] (input gradient) decode a few
//! rows at a time and never hold the f32 weight.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::Simd;
use crate::{Error, Result};

/// Elements per NF4 block (one absmax each).
pub const BLOCK: usize = 64;

/// Block absmax values per second-level block (one f32 scale each).
pub const ABSMAX_BLOCK: usize = 256;

/// The NF4 code book, exactly as bitsandbytes hard-codes it (its `create_normal_map(0.9677083,
/// use_extra_value=True)`): 8 positive and 7 negative quantiles of N(0, 1) and an exact zero,
/// normalised to `[-1, 1]`. The test `code_book_is_the_normal_quantiles` recomputes it.
#[allow(clippy::excessive_precision)] // bitsandbytes' digits, kept as written
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// The code of 0.0 (an all-zero block, the padding nibble).
const ZERO_CODE: u8 = 7;

/// The thresholds of bitsandbytes' `dQuantizeNF4` decision tree, as written in its kernels:
/// the midpoints between neighbouring codes, computed in f64 and rounded to f32 by the C
/// compiler. A value goes to the higher code when it is `>` the threshold, so ties go to the
/// lower code. Where the exact midpoint falls between two f32 values, a threshold may be one
/// ulp from torch's f32 midpoint (which bitsandbytes' pure-torch CPU path compares with);
/// only an input exactly between the two can get another code there.
#[allow(clippy::excessive_precision)] // bitsandbytes' digits, kept as written
const NF4_THRESHOLDS: [f32; 15] = [
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
];

/// The f32 midpoints of neighbouring entries of a sorted code (`M = N - 1`).
const fn midpoints<const N: usize, const M: usize>(code: &[f32; N]) -> [f32; M] {
    const { assert!(M + 1 == N) };
    let mut mid = [0.0; M];
    let mut i = 0;
    while i < M {
        mid[i] = (code[i] + code[i + 1]) / 2.0;
        i += 1;
    }
    mid
}

/// The index of the code nearest to `x`, ties to the lower one: the number of thresholds
/// (midpoints) below `x`.
fn nearest(midpoints: &[f32], x: f32) -> u8 {
    // At most 255 midpoints, so the index fits.
    midpoints.partition_point(|&m| m < x) as u8
}

/// `x / a` as bitsandbytes computes it, `x · (1/a)`, falling back to the division where the
/// reciprocal overflows (a subnormal `a`).
fn scaler(a: f32) -> impl Fn(f32) -> f32 {
    let inv = 1.0 / a;
    move |x| if inv.is_finite() { x * inv } else { x / a }
}

struct DynamicMap {
    code: [f32; 256],
    midpoints: [f32; 255],
}

fn dynamic() -> &'static DynamicMap {
    static MAP: OnceLock<DynamicMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let code = build_dynamic_map();
        DynamicMap {
            code,
            midpoints: midpoints(&code),
        }
    })
}

/// bitsandbytes' signed dynamic 8-bit map (`create_dynamic_map(signed=True,
/// max_exponent_bits=7, total_bits=8)`, from Dettmers 2016, "8-Bit Approximations for
/// Parallelism in Deep Learning"), which quantises the centred absmax values: for each decade
/// `10^-6 .. 10^0`, `2^i` values (the midpoints of `linspace(0.1, 1, 2^i + 1)` times the
/// decade) and their negatives, plus 0 and 1; sorted.
pub fn dynamic_map() -> &'static [f32; 256] {
    &dynamic().code
}

/// Computes [`dynamic_map`] with torch's f32 arithmetic (its CPU `linspace` fuses
/// `start + step·i` into one FMA), so it matches bitsandbytes bit for bit.
fn build_dynamic_map() -> [f32; 256] {
    const DECADES: [f32; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data = Vec::with_capacity(256);
    for (i, &decade) in DECADES.iter().enumerate() {
        let bounds = linspace_f32(0.1, 1.0, (1 << i) + 1);
        let means: Vec<f32> = bounds.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        data.extend(means.iter().map(|&m| decade * m));
        data.extend(means.iter().map(|&m| -decade * m));
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    let mut code = [0.0; 256];
    code.copy_from_slice(&data);
    code
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the first half counts
/// up from `start`, the second down from `end`, each value one fused multiply-add.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    (0..steps)
        .map(|i| {
            if i < steps / 2 {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// A `rows × cols` f32 weight (PyTorch's `[out_features, in_features]`, row-major) in NF4 with
/// double-quantised absmax: QLoRA's frozen base weight. See the module documentation for the
/// format; [`Nf4Matrix::matmul_t`] and [`Nf4Matrix::matmul`] are the forward and backward
/// products, decoding a few rows at a time.
#[derive(Clone, PartialEq)]
pub struct Nf4Matrix {
    rows: usize,
    cols: usize,
    /// Two NF4 codes per byte, the first element in the high nibble.
    codes: Vec<u8>,
    /// One dynamic-map index per block of 64.
    absmax_codes: Vec<u8>,
    /// One scale per 256 blocks.
    absmax_scales: Vec<f32>,
    /// Mean of the block absmax values, subtracted before their quantisation.
    offset: f32,
}

impl std::fmt::Debug for Nf4Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nf4Matrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes())
            .field("offset", &self.offset)
            .finish()
    }
}

/// The sizes of the stored parts for `len` elements: code bytes, blocks, second-level blocks.
fn part_lengths(len: usize) -> (usize, usize, usize) {
    let blocks = len.div_ceil(BLOCK);
    (len.div_ceil(2), blocks, blocks.div_ceil(ABSMAX_BLOCK))
}

fn nf4_error(rows: usize, cols: usize, problem: String) -> Error {
    Error::Nf4 {
        rows,
        cols,
        problem,
    }
}

fn element_count(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| nf4_error(rows, cols, "too many elements to address".into()))
}

impl Nf4Matrix {
    /// Quantises `data`, a `rows × cols` row-major f32 matrix.
    ///
    /// Fails when `data` does not hold `rows × cols` values or one of them is NaN or infinite
    /// (it would make its block's absmax meaningless).
    pub fn quantize(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        let len = element_count(rows, cols)?;
        if data.len() != len {
            return Err(nf4_error(
                rows,
                cols,
                format!("{} values given, {len} expected", data.len()),
            ));
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(nf4_error(
                rows,
                cols,
                format!(
                    "value {} (row {}, column {}) is {}",
                    i,
                    i / cols,
                    i % cols,
                    data[i]
                ),
            ));
        }
        let (code_bytes, blocks, _) = part_lengths(len);

        let mut codes = vec![0u8; code_bytes];
        let mut absmax = vec![0.0f32; blocks];
        codes
            .par_chunks_mut(BLOCK / 2)
            .zip(data.par_chunks(BLOCK))
            .zip(absmax.par_iter_mut())
            .for_each(|((packed, block), a)| *a = quantize_block(block, packed));

        let (absmax_codes, absmax_scales, offset) = quantize_absmax(&absmax);
        Ok(Nf4Matrix {
            rows,
            cols,
            codes,
            absmax_codes,
            absmax_scales,
            offset,
        })
    }

    /// A matrix from stored parts, such as a bitsandbytes `Params4bit` with
    /// `compress_statistics=True` (its packed weight, `absmax`, `state2.absmax` and `offset`;
    /// with blocksize 64, the NF4 code book and the dynamic map, which are not stored here).
    ///
    /// Fails when a part has the wrong length for `rows × cols` or a scale is not finite.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        codes: Vec<u8>,
        absmax_codes: Vec<u8>,
        absmax_scales: Vec<f32>,
        offset: f32,
    ) -> Result<Self> {
        let len = element_count(rows, cols)?;
        let (code_bytes, blocks, groups) = part_lengths(len);
        for (what, got, expected) in [
            ("packed code bytes", codes.len(), code_bytes),
            ("absmax codes", absmax_codes.len(), blocks),
            ("second-level scales", absmax_scales.len(), groups),
        ] {
            if got != expected {
                return Err(nf4_error(
                    rows,
                    cols,
                    format!("{got} {what}, {expected} expected"),
                ));
            }
        }
        if !offset.is_finite() || absmax_scales.iter().any(|s| !s.is_finite()) {
            return Err(nf4_error(rows, cols, "a scale is not finite".into()));
        }
        Ok(Nf4Matrix {
            rows,
            cols,
            codes,
            absmax_codes,
            absmax_scales,
            offset,
        })
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of quantised data held: codes, absmax codes, second-level scales and the offset;
    /// about `0.5 + 1/64 + 4/(64·256)` per weight.
    pub fn bytes(&self) -> usize {
        self.codes.len()
            + self.absmax_codes.len()
            + std::mem::size_of_val(self.absmax_scales.as_slice())
            + std::mem::size_of::<f32>()
    }

    /// The packed NF4 codes: element `2k` in the high nibble of byte `k`, `2k + 1` in the low.
    pub fn packed_codes(&self) -> &[u8] {
        &self.codes
    }

    /// The dynamic-map index of each block's centred absmax.
    pub fn absmax_codes(&self) -> &[u8] {
        &self.absmax_codes
    }

    /// The second-level scale of each 256 blocks.
    pub fn absmax_scales(&self) -> &[f32] {
        &self.absmax_scales
    }

    /// The mean absmax subtracted before quantising the absmax values.
    pub fn absmax_offset(&self) -> f32 {
        self.offset
    }

    /// The dequantised absmax of each block: the scale its codes are multiplied by.
    pub fn block_absmax(&self) -> Vec<f32> {
        (0..self.absmax_codes.len())
            .map(|b| self.absmax(b))
            .collect()
    }

    /// All elements as f32, row after row.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        const CHUNK: usize = BLOCK * ABSMAX_BLOCK;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| self.decode_range(i * CHUNK, chunk));
        out
    }

    /// Decodes rows `start .. start + count` into `out` (`count × cols` values), for streaming
    /// a few rows at a time.
    ///
    /// # Panics
    ///
    /// When the rows run past the matrix or `out.len() != count × cols`.
    pub fn dequantize_rows(&self, start: usize, count: usize, out: &mut [f32]) {
        assert!(
            start.checked_add(count).is_some_and(|end| end <= self.rows),
            "rows {start}..{start}+{count} of a matrix of {} rows",
            self.rows
        );
        assert_eq!(out.len(), count * self.cols, "dequantize_rows: out length");
        self.decode_range(start * self.cols, out);
    }

    /// `out = x · Wᵀ`, the forward product: `x` is `n × cols` (row after row), `out` is
    /// `n × rows`. Runs on rayon's pool; each task decodes a chunk of weight rows and
    /// multiplies them with register-blocked tiles (AVX2 + FMA where the processor has them).
    ///
    /// # Panics
    ///
    /// When `x.len() != n × cols` or `out.len() != n × rows`.
    pub fn matmul_t(&self, x: &[f32], n: usize, out: &mut [f32]) {
        self.matmul_t_with(x, n, out, Simd::detect());
    }

    /// [`Nf4Matrix::matmul_t`] with the given instruction set ([`Simd::Avx2`] falls back to
    /// [`Simd::Scalar`] where unavailable). For tests and benchmarks.
    ///
    /// # Panics
    ///
    /// As [`Nf4Matrix::matmul_t`].
    pub fn matmul_t_with(&self, x: &[f32], n: usize, out: &mut [f32], simd: Simd) {
        assert_eq!(x.len(), n * self.cols, "matmul_t: x is not n × cols");
        assert_eq!(out.len(), n * self.rows, "matmul_t: out is not n × rows");
        matmul_t_impl(self, x, n, out, Tasks::new(simd));
    }

    /// `out = g · W`, the backward product for the input gradient (`grad_x = grad_y · W`): `g`
    /// is `n × rows`, `out` is `n × cols`. Runs on rayon's pool over strips of columns; each
    /// strip decodes its part of the weight a few rows at a time.
    ///
    /// # Panics
    ///
    /// When `g.len() != n × rows` or `out.len() != n × cols`.
    pub fn matmul(&self, g: &[f32], n: usize, out: &mut [f32]) {
        self.matmul_with(g, n, out, Simd::detect());
    }

    /// [`Nf4Matrix::matmul`] with the given instruction set. For tests and benchmarks.
    ///
    /// # Panics
    ///
    /// As [`Nf4Matrix::matmul`].
    pub fn matmul_with(&self, g: &[f32], n: usize, out: &mut [f32], simd: Simd) {
        assert_eq!(g.len(), n * self.rows, "matmul: g is not n × rows");
        assert_eq!(out.len(), n * self.cols, "matmul: out is not n × cols");
        matmul_impl(self, g, n, out, Tasks::new(simd));
    }

    /// The dequantised absmax of block `b`, in bitsandbytes' order of operations.
    fn absmax(&self, b: usize) -> f32 {
        dynamic().code[usize::from(self.absmax_codes[b])] * self.absmax_scales[b / ABSMAX_BLOCK]
            + self.offset
    }

    /// Decodes the elements `start .. start + out.len()` of the flattened matrix.
    fn decode_range(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        let mut e = start;
        let mut rest = out;
        while e < end {
            let b = e / BLOCK;
            let stop = ((b + 1) * BLOCK).min(end);
            let a = self.absmax(b);
            let table = NF4_CODE.map(|c| c * a);
            let (dst, tail) = rest.split_at_mut(stop - e);
            decode_nibbles(&self.codes, e, &table, dst);
            rest = tail;
            e = stop;
        }
    }
}

/// Quantises one block of at most 64 values into `packed` (half as many bytes, rounded up);
/// returns its absmax.
fn quantize_block(block: &[f32], packed: &mut [u8]) -> f32 {
    let a = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if a == 0.0 {
        packed.fill(ZERO_CODE << 4 | ZERO_CODE);
        return a;
    }
    let scale = scaler(a);
    // The same count as `nearest`, branch-free over the 15 thresholds.
    let code = |x: f32| {
        let x = scale(x);
        NF4_THRESHOLDS.iter().map(|&t| u8::from(t < x)).sum::<u8>()
    };
    for (byte, pair) in packed.iter_mut().zip(block.chunks(2)) {
        let lo = pair.get(1).map_or(ZERO_CODE, |&x| code(x));
        *byte = code(pair[0]) << 4 | lo;
    }
    a
}

/// Double quantisation of the block absmax values: (codes, second-level scales, offset).
fn quantize_absmax(absmax: &[f32]) -> (Vec<u8>, Vec<f32>, f32) {
    let offset = if absmax.is_empty() {
        0.0
    } else {
        (absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / absmax.len() as f64) as f32
    };
    let map = dynamic();
    let mut codes = Vec::with_capacity(absmax.len());
    let mut scales = Vec::with_capacity(absmax.len().div_ceil(ABSMAX_BLOCK));
    for group in absmax.chunks(ABSMAX_BLOCK) {
        let centred: Vec<f32> = group.iter().map(|&a| a - offset).collect();
        let m = centred.iter().fold(0.0f32, |m, c| m.max(c.abs()));
        scales.push(m);
        if m == 0.0 {
            // Every absmax equals the offset (one block, say): code 0, as bitsandbytes writes;
            // it dequantises to 0·0 + offset, exactly.
            codes.extend(std::iter::repeat_n(0u8, group.len()));
            continue;
        }
        let scale = scaler(m);
        codes.extend(centred.iter().map(|&c| nearest(&map.midpoints, scale(c))));
    }
    (codes, scales, offset)
}

/// Decodes the codes of elements `start .. start + dst.len()` (all in one block, whose codes
/// times its absmax are `table`).
fn decode_nibbles(codes: &[u8], start: usize, table: &[f32; 16], dst: &mut [f32]) {
    let (dst, e) = if start % 2 == 1 && !dst.is_empty() {
        let (first, rest) = dst.split_at_mut(1);
        first[0] = table[usize::from(codes[start / 2] & 15)];
        (rest, start + 1)
    } else {
        (dst, start)
    };
    let pairs = dst.len() / 2;
    let (whole, last) = dst.split_at_mut(pairs * 2);
    for (pair, &byte) in whole.chunks_exact_mut(2).zip(&codes[e / 2..e / 2 + pairs]) {
        pair[0] = table[usize::from(byte >> 4)];
        pair[1] = table[usize::from(byte & 15)];
    }
    if let Some(x) = last.first_mut() {
        *x = table[usize::from(codes[e / 2 + pairs] >> 4)];
    }
}

// ---------------------------------------------------------------------------------------------
// Products. Each rayon task decodes a slice of the weight into a small buffer and multiplies
// it by tiles, `C += A · B`: `MR` rows of A (runs of `kc` values) times `kc` rows of B (`NR`
// contiguous values each), accumulated in registers. `matmul_t`: A = decoded weight rows,
// B = the inputs packed in transposed panels of `NR` rows. `matmul`: A = rows of `g`, B = a
// strip of decoded weight columns. The task functions are compiled twice: portable (baseline
// SSE2), and in `mod fma` with AVX2 + FMA, whose tile is written in intrinsics.

/// Rows of A per tile.
const MR: usize = 4;
/// Columns of B per tile (two AVX2 registers).
const NR: usize = 16;
/// Weight rows each `matmul_t` task decodes at once.
const T_ROWS: usize = 32;
/// Columns per `matmul` strip (a multiple of `NR`).
const STRIP: usize = 64;
/// Weight rows each `matmul` strip decodes at once.
const STRIP_ROWS: usize = 256;
/// Below this many input rows `matmul_t` takes plain dot products instead of tiles (which
/// would pad the inputs to `NR` rows).
const DOT_MAX_N: usize = 4;

/// `c[i·ldc + j] += Σ_k a[i·lda + k] · b[k·ldb + j]` for `i < mr ≤ MR`, `j < nr ≤ NR`,
/// `k < kc`. Rows `mr..MR` of A are not read (the last row is repeated and its results
/// dropped); B must hold `NR` readable values in each of its `kc` rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<const FMA: bool>(
    kc: usize,
    a: &[f32],
    lda: usize,
    mr: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    nr: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only set inside the `fma` task functions, which run only where the
        // processor has AVX2 and FMA.
        return unsafe { fma::tile(kc, a, lda, mr, b, ldb, c, ldc, nr) };
    }
    tile_portable(kc, a, lda, mr, b, ldb, c, ldc, nr);
}

/// [`tile`] in portable Rust (LLVM vectorises the `NR`-wide loops for the baseline target).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_portable(
    kc: usize,
    a: &[f32],
    lda: usize,
    mr: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    nr: usize,
) {
    let a_rows: [&[f32]; MR] = std::array::from_fn(|i| {
        let r = i.min(mr - 1) * lda;
        &a[r..r + kc]
    });
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..kc {
        let bk: &[f32; NR] = match b[k * ldb..k * ldb + NR].try_into() {
            Ok(row) => row,
            Err(_) => unreachable!("a slice of NR values"),
        };
        for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
            let av = a_row[k];
            for (s, &bv) in acc_row.iter_mut().zip(bk) {
                *s += av * bv;
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate().take(mr) {
        let row = &mut c[i * ldc..i * ldc + nr];
        for (dst, &v) in row.iter_mut().zip(acc_row) {
            *dst += v;
        }
    }
}

/// `Σ a[k]·b[k]` (over the shorter slice) with 16 independent partial sums, which LLVM
/// vectorises (with AVX2 inside the `fma` task functions). Products with a few input rows
/// are bound by decoding the weights, not by this.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; NR];
    let (a_main, a_tail) = a.split_at(a.len() / NR * NR);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(NR).zip(b_main.chunks_exact(NR)) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    let mut sum = 0.0f32;
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    acc.iter().sum::<f32>() + sum
}

/// The weight rows `first .. first + results.len() / n` dotted with each input row:
/// `results[k·n + i]` = input row `i` times weight row `first + k`. For small `n`.
#[inline(always)]
fn dot_task(
    m: &Nf4Matrix,
    x: &[f32],
    n: usize,
    first: usize,
    results: &mut [f32],
    w: &mut Vec<f32>,
) {
    let cols = m.cols;
    let count = results.len() / n;
    w.resize(count * cols, 0.0);
    m.dequantize_rows(first, count, w);
    for (wr, res) in w.chunks_exact(cols).zip(results.chunks_exact_mut(n)) {
        for (xi, v) in x.chunks_exact(cols).zip(res.iter_mut()) {
            *v = dot(wr, xi);
        }
    }
}

/// As [`dot_task`] by tiles, with the inputs packed in panels of `NR` rows (see
/// `matmul_t_impl`); `results[k·n_pad + i]` as in [`dot_task`] with stride `n_pad`.
#[inline(always)]
fn tile_task<const FMA: bool>(
    m: &Nf4Matrix,
    xp: &[f32],
    n: usize,
    n_pad: usize,
    first: usize,
    results: &mut [f32],
    w: &mut Vec<f32>,
) {
    let cols = m.cols;
    let count = results.len() / n_pad;
    w.resize(count * cols, 0.0);
    m.dequantize_rows(first, count, w);
    // One NR-wide panel of inputs (cols × NR values) stays in cache across the rows.
    for j0 in (0..n).step_by(NR) {
        for r0 in (0..count).step_by(MR) {
            tile::<FMA>(
                cols,
                &w[r0 * cols..],
                cols,
                MR.min(count - r0),
                &xp[j0 * cols..],
                NR,
                &mut results[r0 * n_pad + j0..],
                n_pad,
                NR.min(n - j0),
            );
        }
    }
}

/// Columns `c0 .. c0 + STRIP` of `g · W` into `strip` (`n × STRIP`, row-major), decoding the
/// weight `STRIP_ROWS` rows at a time.
#[inline(always)]
fn strip_task<const FMA: bool>(
    m: &Nf4Matrix,
    g: &[f32],
    n: usize,
    c0: usize,
    strip: &mut [f32],
    w: &mut Vec<f32>,
) {
    let (rows, cols) = (m.rows, m.cols);
    let width = STRIP.min(cols - c0);
    for r0 in (0..rows).step_by(STRIP_ROWS) {
        let kc = STRIP_ROWS.min(rows - r0);
        // W[r0.., c0..c0 + width], zero-padded to STRIP columns.
        w.clear();
        w.resize(kc * STRIP, 0.0);
        for (r, wr) in w.chunks_exact_mut(STRIP).enumerate() {
            m.decode_range((r0 + r) * cols + c0, &mut wr[..width]);
        }
        for i0 in (0..n).step_by(MR) {
            for j0 in (0..width).step_by(NR) {
                tile::<FMA>(
                    kc,
                    &g[i0 * rows + r0..],
                    rows,
                    MR.min(n - i0),
                    &w[j0..],
                    STRIP,
                    &mut strip[i0 * STRIP + j0..],
                    STRIP,
                    NR.min(width - j0),
                );
            }
        }
    }
}

/// The task functions compiled for the chosen instruction set: each rayon task calls one, so
/// the whole task runs with AVX2 and FMA enabled (closures do not inherit target features).
#[derive(Clone, Copy)]
struct Tasks {
    fma: bool,
}

impl Tasks {
    fn new(simd: Simd) -> Tasks {
        Tasks {
            fma: cfg!(target_arch = "x86_64") && simd.or_scalar() == Simd::Avx2,
        }
    }

    fn dot(
        self,
        m: &Nf4Matrix,
        x: &[f32],
        n: usize,
        first: usize,
        r: &mut [f32],
        w: &mut Vec<f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: `fma` is only set when the processor has AVX2 and FMA (`Tasks::new`).
            return unsafe { fma::dot_task(m, x, n, first, r, w) };
        }
        dot_task(m, x, n, first, r, w);
    }

    #[allow(clippy::too_many_arguments)]
    fn tile(
        self,
        m: &Nf4Matrix,
        xp: &[f32],
        n: usize,
        n_pad: usize,
        first: usize,
        r: &mut [f32],
        w: &mut Vec<f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: as in `Tasks::dot`.
            return unsafe { fma::tile_task(m, xp, n, n_pad, first, r, w) };
        }
        tile_task::<false>(m, xp, n, n_pad, first, r, w);
    }

    fn strip(self, m: &Nf4Matrix, g: &[f32], n: usize, c0: usize, s: &mut [f32], w: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: as in `Tasks::dot`.
            return unsafe { fma::strip_task(m, g, n, c0, s, w) };
        }
        strip_task::<false>(m, g, n, c0, s, w);
    }
}

fn matmul_t_impl(m: &Nf4Matrix, x: &[f32], n: usize, out: &mut [f32], tasks: Tasks) {
    let (rows, cols) = (m.rows, m.cols);
    if n == 0 || rows == 0 {
        return;
    }
    if n < DOT_MAX_N {
        // by_row[r·n + i] = input row i times weight row r.
        let mut by_row = vec![0.0f32; rows * n];
        by_row
            .par_chunks_mut(T_ROWS * n)
            .enumerate()
            .for_each_init(Vec::new, |w, (t, results)| {
                tasks.dot(m, x, n, t * T_ROWS, results, w)
            });
        transpose_into(&by_row, rows, n, n, out);
        return;
    }
    // The inputs in panels of NR rows, each transposed (cols × NR, zero-padded past n) so a
    // tile reads it front to back: xp[(p·cols + k)·NR + j] = x[(p·NR + j)·cols + k].
    let n_pad = n.div_ceil(NR) * NR;
    let mut xp = vec![0.0f32; cols * n_pad];
    for (i, xi) in x.chunks_exact(cols).enumerate() {
        let panel = &mut xp[i / NR * cols * NR..];
        for (k, &v) in xi.iter().enumerate() {
            panel[k * NR + i % NR] = v;
        }
    }
    let mut by_row = vec![0.0f32; rows * n_pad];
    by_row
        .par_chunks_mut(T_ROWS * n_pad)
        .enumerate()
        .for_each_init(Vec::new, |w, (t, results)| {
            tasks.tile(m, &xp, n, n_pad, t * T_ROWS, results, w)
        });
    transpose_into(&by_row, rows, n, n_pad, out);
}

/// `out[i·rows + r] = by_row[r·stride + i]` for `i < n`, by tiles so both sides stay in cache.
pub(crate) fn transpose_into(
    by_row: &[f32],
    rows: usize,
    n: usize,
    stride: usize,
    out: &mut [f32],
) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for i0 in (0..n).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for i in i0..(i0 + TILE).min(n) {
                    out[i * rows + r] = by_row[r * stride + i];
                }
            }
        }
    }
}

fn matmul_impl(m: &Nf4Matrix, g: &[f32], n: usize, out: &mut [f32], tasks: Tasks) {
    let cols = m.cols;
    if n == 0 || cols == 0 {
        return;
    }
    // strips[s][i·STRIP + j] = out[i·cols + s·STRIP + j]: each task owns one strip of columns.
    let mut strips = vec![0.0f32; cols.div_ceil(STRIP) * n * STRIP];
    strips
        .par_chunks_mut(n * STRIP)
        .enumerate()
        .for_each_init(Vec::new, |w, (s, strip)| {
            tasks.strip(m, g, n, s * STRIP, strip, w)
        });
    for (s, strip) in strips.chunks_exact(n * STRIP).enumerate() {
        let c0 = s * STRIP;
        let width = STRIP.min(cols - c0);
        for (i, src) in strip.chunks_exact(STRIP).enumerate() {
            out[i * cols + c0..i * cols + c0 + width].copy_from_slice(&src[..width]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    //! The task functions compiled with AVX2 and FMA, and the tile and dot kernels in AVX2
    //! intrinsics (LLVM does not reliably vectorise the portable tile inside every caller).

    use std::arch::x86_64::*;

    use super::{MR, NR, Nf4Matrix};

    /// [`super::tile`] with AVX2: `MR × NR` accumulators in `2·MR` registers, one FMA per
    /// register and k.
    ///
    /// # Safety
    ///
    /// The processor must support AVX2 and FMA.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn tile(
        kc: usize,
        a: &[f32],
        lda: usize,
        mr: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
        nr: usize,
    ) {
        assert!((1..=MR).contains(&mr) && nr <= NR);
        if kc == 0 {
            return;
        }
        let starts: [usize; MR] = std::array::from_fn(|i| i.min(mr - 1) * lda);
        // The bounds of every load below.
        assert!(starts[MR - 1] + kc <= a.len(), "tile: A too short");
        assert!((kc - 1) * ldb + NR <= b.len(), "tile: B too short");
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for k in 0..kc {
            // SAFETY: k·ldb + NR ≤ b.len() and start + k < a.len() by the asserts above.
            unsafe {
                let bp = b.as_ptr().add(k * ldb);
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for (acc_row, &start) in acc.iter_mut().zip(&starts) {
                    let av = _mm256_broadcast_ss(&*a.as_ptr().add(start + k));
                    acc_row[0] = _mm256_fmadd_ps(av, b0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(av, b1, acc_row[1]);
                }
            }
        }
        for (i, acc_row) in acc.iter().enumerate().take(mr) {
            let mut sums = [0.0f32; NR];
            // SAFETY: `sums` holds 16 values.
            unsafe {
                _mm256_storeu_ps(sums.as_mut_ptr(), acc_row[0]);
                _mm256_storeu_ps(sums.as_mut_ptr().add(8), acc_row[1]);
            }
            for (dst, &v) in c[i * ldc..i * ldc + nr].iter_mut().zip(&sums) {
                *dst += v;
            }
        }
    }

    /// # Safety
    ///
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_task(
        m: &Nf4Matrix,
        x: &[f32],
        n: usize,
        first: usize,
        results: &mut [f32],
        w: &mut Vec<f32>,
    ) {
        super::dot_task(m, x, n, first, results, w);
    }

    /// # Safety
    ///
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_task(
        m: &Nf4Matrix,
        xp: &[f32],
        n: usize,
        n_pad: usize,
        first: usize,
        results: &mut [f32],
        w: &mut Vec<f32>,
    ) {
        super::tile_task::<true>(m, xp, n, n_pad, first, results, w);
    }

    /// # Safety
    ///
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn strip_task(
        m: &Nf4Matrix,
        g: &[f32],
        n: usize,
        c0: usize,
        strip: &mut [f32],
        w: &mut Vec<f32>,
    ) {
        super::strip_task::<true>(m, g, n, c0, strip, w);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// torch's f32 midpoints of the code book (bitsandbytes' pure-torch CPU quantiser).
    const F32_MIDPOINTS: [f32; 15] = midpoints(&NF4_CODE);

    /// erf by its Taylor series: accurate to a few 1e-16 for |z| ≤ 2, enough for the quantiles
    /// NF4 uses (|x| < 1.9, z = x/√2 < 1.4).
    fn erf(z: f64) -> f64 {
        let mut term = z; // (-1)^n z^(2n+1) / n!
        let mut sum = z;
        for n in 1..60 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// The standard normal quantile function, by bisection on Φ to f64 resolution.
    fn normal_ppf(p: f64) -> f64 {
        let phi = |x: f64| 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
        let (mut lo, mut hi) = (-2.0f64, 2.0f64);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid == lo || mid == hi {
                break;
            }
            if phi(mid) < p { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn code_book_is_the_normal_quantiles() {
        // QLoRA: the 2^k quantiles of N(0, 1) between offsets δ and 1-δ with
        // 1-δ = 1 - (1/32 + 1/30)/2 = 0.9677083, 8 positive ones (asymmetric, so that 0 is
        // exact) and 7 negative ones, normalised by the largest.
        let offset = 0.967_708_3f32;
        assert!((f64::from(offset) - (1.0 - 0.5 * (1.0 / 32.0 + 1.0 / 30.0))).abs() < 1e-7);

        // bitsandbytes' create_normal_map: the probabilities from an f32 torch.linspace, the
        // quantiles in f64 (scipy), then f32 values divided by their maximum in f32. Redone
        // step for step, it reproduces the hard-coded table bit for bit.
        let pos: Vec<f32> = linspace_f32(offset, 0.5, 9)[..8]
            .iter()
            .map(|&p| normal_ppf(f64::from(p)) as f32)
            .collect();
        let neg: Vec<f32> = linspace_f32(offset, 0.5, 8)[..7]
            .iter()
            .map(|&p| -(normal_ppf(f64::from(p)) as f32))
            .collect();
        let mut v: Vec<f32> = pos.iter().chain(&neg).copied().chain([0.0]).collect();
        v.sort_by(f32::total_cmp);
        let max = v[15];
        let table: Vec<f32> = v.iter().map(|&x| x / max).collect();
        for (i, (&got, &want)) in table.iter().zip(&NF4_CODE).enumerate() {
            assert_eq!(got.to_bits(), want.to_bits(), "code {i}: {got} vs {want}");
        }

        // The construction in exact arithmetic (f64 probabilities, no f32 rounding) agrees
        // within 2e-7: bitsandbytes' f32 probabilities move the values by up to 1.1e-7.
        let quantile = |k: usize, parts: usize| {
            let p = f64::from(offset) + (0.5 - f64::from(offset)) * k as f64 / parts as f64;
            normal_ppf(p)
        };
        let top = quantile(0, 8);
        let mut exact: Vec<f64> = (0..8)
            .map(|k| quantile(k, 8) / top)
            .chain((0..7).map(|k| -quantile(k, 7) / top))
            .chain([0.0])
            .collect();
        exact.sort_by(f64::total_cmp);
        for (i, (&e, &c)) in exact.iter().zip(&NF4_CODE).enumerate() {
            assert!(
                (e - f64::from(c)).abs() < 2e-7,
                "code {i}: exact {e} vs {c}"
            );
        }
    }

    #[test]
    fn thresholds_are_the_midpoints() {
        // Each threshold is the exact midpoint of its codes (at most 25 significant bits, so
        // an f64 holds it) rounded to f32: within half an ulp of it, and at most one ulp from
        // torch's f32 midpoint.
        let mut differ = Vec::new();
        for (i, (&t, &m)) in NF4_THRESHOLDS.iter().zip(&F32_MIDPOINTS).enumerate() {
            let exact = (f64::from(NF4_CODE[i]) + f64::from(NF4_CODE[i + 1])) / 2.0;
            let half_ulp = f64::from(t.abs().next_up() - t.abs()) / 2.0;
            assert!((f64::from(t) - exact).abs() <= half_ulp, "threshold {i}");
            assert!(t.to_bits().abs_diff(m.to_bits()) <= 1, "threshold {i}");
            if t != m {
                differ.push(i);
            }
        }
        eprintln!("thresholds one ulp from torch's f32 midpoints: {differ:?}");
    }

    #[test]
    fn dynamic_map_shape() {
        let map = dynamic_map();
        assert!(map.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(map[127], 0.0);
        assert_eq!(map[255], 1.0);
        assert_eq!(map[0], -0.992_968_74);
        // Negatives mirror the positives (1.0 has no mirror: -1 maps to the nearest, 0.99297).
        for i in 0..127 {
            assert_eq!(map[i], -map[254 - i], "entry {i}");
        }
        // Seven decades of 1, 2, 4, .. 64 positive values: the smallest is 10^-6 times the
        // midpoint of 0.1 and 1, the largest below 1 is the mean of the last two of 65 points.
        assert!((map[128] - 5.5e-7).abs() < 1e-12);
        assert!((map[254] - 0.992_968_75).abs() < 1e-7);
        assert_eq!(map.iter().filter(|&&v| v > 0.1 && v < 1.0).count(), 64);
    }

    #[test]
    fn ties_go_to_the_lower_code_and_the_first_element_to_the_high_nibble() {
        // absmax 1, so each value is its own scaled value and the midpoints are exact ties.
        let mut data = vec![1.0f32, -1.0];
        data.extend(NF4_THRESHOLDS);
        let m = Nf4Matrix::quantize(1, data.len(), &data).expect("quantize");
        let codes = unpack(&m);
        assert_eq!(m.packed_codes()[0], 0xF0);
        for i in 0..15 {
            assert_eq!(codes[2 + i], i as u8, "midpoint {i} goes to the lower code");
            let above = NF4_THRESHOLDS[i].next_up();
            let q = nearest(&NF4_THRESHOLDS, above);
            assert_eq!(q, i as u8 + 1, "just above midpoint {i}");
        }
        // 17 values: the last byte's low nibble is the padding code (0.0).
        assert_eq!(m.packed_codes().len(), 9);
        assert_eq!(m.packed_codes()[8] & 15, ZERO_CODE);
    }

    fn unpack(m: &Nf4Matrix) -> Vec<u8> {
        m.packed_codes()
            .iter()
            .flat_map(|&b| [b >> 4, b & 15])
            .take(m.rows() * m.cols())
            .collect()
    }

    /// Test data: a sum of three hashes per element, as in nf4_golden.py, with per-block
    /// magnitudes and a few special blocks.
    fn golden_value(i: usize, salt: u32) -> f32 {
        fn fmix(i: u32, salt: u32) -> u32 {
            let mut h = i.wrapping_mul(0x9E37_79B1) ^ salt;
            h ^= h >> 16;
            h = h.wrapping_mul(0x85EB_CA6B);
            h ^= h >> 13;
            h = h.wrapping_mul(0xC2B2_AE35);
            h ^ (h >> 16)
        }
        const SHIFTS: [i32; 7] = [21, 24, 27, 22, 29, 20, 23];
        let (block, k) = (i / 64, i % 64);
        match (block % 16, k) {
            (5, _) => return 0.0,
            (9, _) => return 0.375,
            (13, _) => {
                let table: Vec<f32> = NF4_CODE
                    .iter()
                    .chain(&F32_MIDPOINTS)
                    .chain(&NF4_THRESHOLDS)
                    .copied()
                    .chain(F32_MIDPOINTS.iter().map(|m| -m))
                    .chain([1.0])
                    .collect();
                return table[k % table.len()];
            }
            (11, 7) => return 1000.0,
            (3, 0) => return -3.5,
            _ => {}
        }
        let s: i64 = (0..3)
            .map(|j| i64::from(fmix(i as u32, salt.wrapping_add(j)) >> 10))
            .sum::<i64>()
            - 3 * (1 << 21);
        s as f32 * 2f32.powi(-SHIFTS[block % SHIFTS.len()])
    }

    fn test_matrix(rows: usize, cols: usize, salt: u32) -> Vec<f32> {
        (0..rows * cols).map(|i| golden_value(i, salt)).collect()
    }

    /// Half the widest gap between neighbouring entries of a sorted code.
    fn half_widest_gap(code: &[f32]) -> f32 {
        code.windows(2).map(|w| w[1] - w[0]).fold(0.0, f32::max) / 2.0
    }

    #[test]
    fn round_trip_within_half_the_widest_code_gap() {
        // With the exact absmax a, |x/a - code| ≤ G/2 (G = widest gap, between -1 and
        // -0.696: G/2 = 0.1519), so |x - code·a| ≤ a·G/2; the stored absmax a' differs from a
        // by the double quantisation's error, which moves the value by |code|·|a' - a| ≤
        // |a' - a|. A few f32 roundings add at most a few ulps of a.
        let g2 = half_widest_gap(&NF4_CODE);
        assert!((g2 - 0.151_903_6).abs() < 1e-6);
        for (rows, cols, salt) in [
            (37, 71, 1),
            (300, 71, 2),
            (64, 64, 3),
            (1, 1, 4),
            (5, 13, 5),
        ] {
            let x = test_matrix(rows, cols, salt);
            let m = Nf4Matrix::quantize(rows, cols, &x).expect("quantize");
            let y = m.dequantize();
            let stored = m.block_absmax();
            let codes = unpack(&m);
            for (b, (block, out)) in x.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
                let a = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (k, (&v, &w)) in block.iter().zip(out).enumerate() {
                    let bound = a * g2 + (stored[b] - a).abs() + 4.0 * f32::EPSILON * a.max(1e-30);
                    assert!(
                        (v - w).abs() <= bound,
                        "{rows}x{cols} block {b} element {k}: {v} -> {w}, bound {bound}"
                    );
                    // And the code is the nearest one to v/a.
                    if a > 0.0 {
                        let s = v * (1.0 / a);
                        let q = codes[b * BLOCK + k];
                        // (up to an ulp: a threshold may be an ulp off the exact midpoint)
                        let d = (s - NF4_CODE[usize::from(q)]).abs();
                        assert!(
                            NF4_CODE.iter().all(|c| d <= (s - c).abs() + 1e-7),
                            "nearest: {v} / {a} = {s} -> code {q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn double_quantised_absmax_within_the_map_resolution() {
        // Each centred absmax c = a - offset is stored as DYN[q]·m (m = its group's max |c|),
        // the nearest map entry to c/m: |a' - a| ≤ m·D/2 with D the widest gap of the map
        // (0.0140625, in the top decade), plus an ulp of the offset for the final addition.
        let d2 = half_widest_gap(dynamic_map());
        assert!((d2 - 0.007_031_25).abs() < 1e-6);
        let x = test_matrix(700, 71, 9); // 777 blocks: groups of 256, 256, 256, 9
        let m = Nf4Matrix::quantize(700, 71, &x).expect("quantize");
        assert_eq!(m.absmax_scales().len(), 4);
        let stored = m.block_absmax();
        let offset = m.absmax_offset();
        let mean = x
            .chunks(BLOCK)
            .map(|b| f64::from(b.iter().fold(0.0f32, |m, v| m.max(v.abs()))))
            .sum::<f64>()
            / stored.len() as f64;
        assert!((f64::from(offset) - mean).abs() <= mean * 1e-7);
        for (b, (block, &a2)) in x.chunks(BLOCK).zip(&stored).enumerate() {
            let a = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = m.absmax_scales()[b / ABSMAX_BLOCK];
            let bound = scale * d2 * (1.0 + 1e-6) + 2.0 * f32::EPSILON * offset.abs().max(a);
            assert!(
                (a2 - a).abs() <= bound,
                "block {b}: {a} stored as {a2}, bound {bound}"
            );
            // The chosen entry is the nearest.
            let s = (a - offset) * (1.0 / scale);
            let q = usize::from(m.absmax_codes()[b]);
            let dist = (s - dynamic_map()[q]).abs();
            assert!(
                dynamic_map().iter().all(|c| dist <= (s - c).abs()),
                "block {b}"
            );
        }
    }

    #[test]
    fn zero_blocks_stay_zero() {
        // All zeros: every code is 0.0, the absmax offset and scale are 0.
        let m = Nf4Matrix::quantize(3, 50, &[0.0; 150]).expect("quantize");
        assert!(m.packed_codes().iter().all(|&b| b == 0x77));
        assert!(m.dequantize().iter().all(|&v| v.to_bits() == 0));
        assert_eq!(m.absmax_offset(), 0.0);
        assert_eq!(m.absmax_scales(), &[0.0]);
        // A zero block among others: its stored absmax is not 0 (double quantisation), but its
        // values are code 7 = 0.0 times it, exactly 0.
        let mut x = test_matrix(4, 64, 11);
        x[64..128].fill(0.0);
        let m = Nf4Matrix::quantize(4, 64, &x).expect("quantize");
        assert!(m.block_absmax()[1] != 0.0);
        let y = m.dequantize();
        assert!(y[64..128].iter().all(|&v| v == 0.0));
        assert!(m.packed_codes()[32..64].iter().all(|&b| b == 0x77));
    }

    #[test]
    fn odd_sizes() {
        for (rows, cols) in [
            (1, 1),
            (1, 63),
            (1, 65),
            (3, 7),
            (65, 1),
            (129, 127),
            (257, 64),
        ] {
            let x = test_matrix(rows, cols, 21);
            let len = rows * cols;
            let m = Nf4Matrix::quantize(rows, cols, &x).expect("quantize");
            assert_eq!(m.packed_codes().len(), len.div_ceil(2));
            assert_eq!(m.absmax_codes().len(), len.div_ceil(64));
            assert_eq!(m.absmax_scales().len(), len.div_ceil(64).div_ceil(256));
            assert_eq!(
                m.bytes(),
                len.div_ceil(2) + len.div_ceil(64) + 4 * len.div_ceil(64 * 256) + 4
            );
            let all = m.dequantize();
            assert_eq!(all.len(), len);
            // Streaming any run of rows gives the same values.
            for (start, count) in [
                (0, rows),
                (rows / 2, rows - rows / 2),
                (rows - 1, 1),
                (0, 0),
            ] {
                let mut out = vec![f32::NAN; count * cols];
                m.dequantize_rows(start, count, &mut out);
                assert_eq!(
                    out,
                    all[start * cols..(start + count) * cols],
                    "{rows}x{cols}"
                );
            }
            // Stored parts rebuild the same matrix.
            let again = Nf4Matrix::from_parts(
                rows,
                cols,
                m.packed_codes().to_vec(),
                m.absmax_codes().to_vec(),
                m.absmax_scales().to_vec(),
                m.absmax_offset(),
            )
            .expect("from_parts");
            assert_eq!(again, m);
        }
        let empty = Nf4Matrix::quantize(0, 5, &[]).expect("empty");
        assert!(empty.dequantize().is_empty());
        let mut out = [];
        empty.matmul_t(&[0.0; 15], 3, &mut out);
    }

    #[test]
    fn bytes_per_weight_is_qlora_s() {
        let (rows, cols) = (1024, 1024);
        let m = Nf4Matrix::quantize(rows, cols, &test_matrix(rows, cols, 5)).expect("quantize");
        let per_weight = m.bytes() as f64 / (rows * cols) as f64;
        let qlora = 0.5 + 1.0 / 64.0 + 4.0 / (64.0 * 256.0);
        assert!((per_weight - qlora).abs() < 1e-5, "{per_weight} vs {qlora}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let err = Nf4Matrix::quantize(2, 3, &[0.0; 5]).expect_err("short");
        assert!(
            matches!(
                err,
                Error::Nf4 {
                    rows: 2,
                    cols: 3,
                    ..
                }
            ),
            "{err}"
        );
        let mut x = vec![1.0f32; 6];
        x[4] = f32::NAN;
        let err = Nf4Matrix::quantize(2, 3, &x).expect_err("NaN");
        assert!(err.to_string().contains("row 1, column 1"), "{err}");
        x[4] = f32::INFINITY;
        assert!(Nf4Matrix::quantize(2, 3, &x).is_err());
        assert!(Nf4Matrix::quantize(usize::MAX, 2, &[]).is_err());
        assert!(Nf4Matrix::from_parts(2, 3, vec![0; 3], vec![0; 2], vec![1.0], 0.0).is_err());
        assert!(Nf4Matrix::from_parts(2, 3, vec![0; 3], vec![0; 1], vec![1.0], f32::NAN).is_err());
        assert!(Nf4Matrix::from_parts(2, 3, vec![0; 3], vec![0; 1], vec![1.0], 0.5).is_ok());
    }

    /// Dequantise, then multiply in f64: `out[i][r] = Σ_k x[i][k]·w[r][k]`, with the scale
    /// `Σ |x·w|` that bounds f32 rounding.
    fn reference_t(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0); n * rows];
        for i in 0..n {
            for r in 0..rows {
                let (mut s, mut a) = (0.0f64, 0.0f64);
                for k in 0..cols {
                    let t = f64::from(x[i * cols + k]) * f64::from(w[r * cols + k]);
                    s += t;
                    a += t.abs();
                }
                out[i * rows + r] = (s, a);
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[(f64, f64)], what: &str) {
        assert_eq!(got.len(), want.len());
        for (j, (&g, &(s, a))) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(g) - s).abs() <= 1e-4 * a.max(1e-30),
                "{what} element {j}: {g} vs {s} (scale {a})"
            );
        }
    }

    fn simds() -> Vec<Simd> {
        [Simd::Scalar, Simd::Avx2]
            .into_iter()
            .filter(|s| s.is_available())
            .collect()
    }

    #[test]
    fn products_match_dequantise_then_multiply() {
        // Relative to Σ|x·w| (the scale of f32 rounding in a dot product), within 1e-4.
        for (rows, cols, n) in [
            (37, 71, 1),
            (37, 71, 3),
            (37, 71, 5),
            (64, 64, 16),
            (100, 130, 33),
            (300, 71, 20),
            (16, 1, 4),
            (1, 300, 17),
            (33, 257, 2),
        ] {
            let wx = test_matrix(rows, cols, 31);
            let m = Nf4Matrix::quantize(rows, cols, &wx).expect("quantize");
            let w = m.dequantize();
            let x: Vec<f32> = (0..n * cols).map(|i| golden_value(i, 77) * 0.3).collect();
            let g: Vec<f32> = (0..n * rows).map(|i| golden_value(i, 78)).collect();
            let want_t = reference_t(&w, rows, cols, &x, n);
            // g · W = (Wᵀ gᵀ)ᵀ: the reference with W transposed.
            let mut wt = vec![0.0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    wt[c * rows + r] = w[r * cols + c];
                }
            }
            let want = reference_t(&wt, cols, rows, &g, n);
            for simd in simds() {
                let what = format!("{rows}x{cols}, n={n}, {simd:?}");
                let mut out = vec![f32::NAN; n * rows];
                m.matmul_t_with(&x, n, &mut out, simd);
                assert_close(&out, &want_t, &format!("matmul_t {what}"));
                let mut out = vec![f32::NAN; n * cols];
                m.matmul_with(&g, n, &mut out, simd);
                assert_close(&out, &want, &format!("matmul {what}"));
            }
        }
    }

    // ---- Golden values from bitsandbytes (trainer/tests/scripts/nf4_golden.py). ----

    fn golden_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/quant")
            .join(name)
    }

    struct Reader(Vec<u8>, usize);

    impl Reader {
        fn open(name: &str) -> Reader {
            let path = golden_path(name);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("read {} (see nf4_golden.py): {e}", path.display()));
            Reader(bytes, 0)
        }
        fn take(&mut self, n: usize) -> &[u8] {
            let s = &self.0[self.1..self.1 + n];
            self.1 += n;
            s
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
        }
        fn f32(&mut self) -> f32 {
            f32::from_bits(self.u32())
        }
        fn f32s(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f32()).collect()
        }
        fn u8_array(&mut self) -> Vec<u8> {
            let n = self.u32() as usize;
            self.take(n).to_vec()
        }
        fn f32_array(&mut self) -> Vec<f32> {
            let n = self.u32() as usize;
            self.f32s(n)
        }
    }

    #[test]
    fn maps_match_bitsandbytes() {
        let mut r = Reader::open("nf4_maps.bin");
        assert_eq!(r.take(4), b"NF4M");
        let nf4 = r.f32s(16);
        let dynamic = r.f32s(256);
        for (i, (a, b)) in nf4.iter().zip(&NF4_CODE).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "NF4 code {i}");
        }
        for (i, (a, b)) in dynamic.iter().zip(dynamic_map()).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "dynamic map entry {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn matches_bitsandbytes() {
        // bitsandbytes' CPU 8-bit quantiser rounds through a 65536-entry table: a value
        // within one table step (2/65535) of a midpoint may get the farther entry.
        const LUT_STEP: f32 = 2.0 / 65535.0;
        for name in ["nf4_small.bin", "nf4_large.bin"] {
            let mut r = Reader::open(name);
            assert_eq!(r.take(4), b"NF4G");
            assert_eq!(r.u32(), 1, "version");
            let (rows, cols) = (r.u32() as usize, r.u32() as usize);
            let salt = r.u32();
            let has_values = r.u32() == 1;
            let offset = r.f32();
            let codes = r.u8_array();
            let absmax_codes = r.u8_array();
            let scales = r.f32_array();
            let absmax = r.f32_array();
            let input = r.f32_array();
            let values = r.f32_array();

            let x = test_matrix(rows, cols, salt);
            if has_values {
                let same = x
                    .iter()
                    .zip(&input)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same && x.len() == input.len(), "{name}: regenerated input");
            }

            // Our dequantisation of bitsandbytes' parts is bit for bit its own.
            let theirs = Nf4Matrix::from_parts(
                rows,
                cols,
                codes.clone(),
                absmax_codes.clone(),
                scales.clone(),
                offset,
            )
            .expect("bitsandbytes parts");
            let theirs_absmax = theirs.block_absmax();
            for (b, (p, q)) in theirs_absmax.iter().zip(&absmax).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "{name}: dequantised absmax {b}");
            }
            if has_values {
                let y = theirs.dequantize();
                for (i, (p, q)) in y.iter().zip(&values).enumerate() {
                    assert_eq!(p.to_bits(), q.to_bits(), "{name}: dequantised value {i}");
                }
            }

            // Our quantisation: the same NF4 codes, the same scales; the offset (torch's f32
            // mean vs our f64 one) within an ulp or two.
            let m = Nf4Matrix::quantize(rows, cols, &x).expect("quantize");
            assert_eq!(m.packed_codes().len(), codes.len());
            // NF4 codes: equal, except for an input on or between the two versions of a
            // midpoint, one ulp apart: the tree's threshold (ours) and torch's f32 midpoint
            // (bitsandbytes' CPU path). The test data puts inputs exactly there.
            let theirs_codes = unpack(&theirs);
            let mut nf4_differing = 0;
            for (i, (&q, &t)) in unpack(&m).iter().zip(&theirs_codes).enumerate() {
                if q == t {
                    continue;
                }
                nf4_differing += 1;
                let b = i / BLOCK;
                let a = x[b * BLOCK..((b + 1) * BLOCK).min(x.len())]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()));
                let s = x[i] * (1.0 / a);
                let lower = usize::from(q.min(t));
                let (t0, t1) = (NF4_THRESHOLDS[lower], F32_MIDPOINTS[lower]);
                assert!(
                    q.abs_diff(t) == 1 && t0 != t1 && t0.min(t1) <= s && s <= t0.max(t1),
                    "{name}: element {i} ({s}): code {q}, bitsandbytes {t}"
                );
            }
            assert!((m.absmax_offset() - offset).abs() <= 2.0 * f32::EPSILON * offset.abs());
            for (a, b) in m.absmax_scales().iter().zip(&scales) {
                assert!((a - b).abs() <= 1e-6 * b.abs(), "{name}: scale {a} vs {b}");
            }
            // Absmax codes: equal, except next to a midpoint (bitsandbytes' table).
            let ours_absmax = m.block_absmax();
            let mut differing = 0;
            for (b, (&q, &theirs_q)) in m.absmax_codes().iter().zip(&absmax_codes).enumerate() {
                let scale = m.absmax_scales()[b / ABSMAX_BLOCK];
                let tolerance = 1e-6 * (m.absmax_offset().abs() + scale);
                if q == theirs_q {
                    let d = (ours_absmax[b] - absmax[b]).abs();
                    assert!(d <= tolerance, "{name}: absmax {b} differs by {d}");
                    continue;
                }
                differing += 1;
                let a = x[b * BLOCK..((b + 1) * BLOCK).min(x.len())]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()));
                let v = (a - m.absmax_offset()) * (1.0 / scale);
                let lower = usize::from(q.min(theirs_q));
                assert_eq!(q.abs_diff(theirs_q), 1, "{name}: block {b} neighbours");
                let mid = dynamic().midpoints[lower];
                assert!(
                    (v - mid).abs() <= LUT_STEP,
                    "{name}: block {b}: {v} is {} from the midpoint",
                    (v - mid).abs()
                );
            }
            assert!(differing <= 2, "{name}: {differing} absmax codes differ");
            eprintln!(
                "{name}: {nf4_differing} NF4 code(s) and {differing} absmax code(s) differ from \
                 bitsandbytes' CPU path"
            );

            // Our dequantised values equal bitsandbytes' wherever the codes agree (up to the
            // offset's last bit).
            if has_values {
                let y = m.dequantize();
                let ours_codes = unpack(&m);
                for (i, (p, q)) in y.iter().zip(&values).enumerate() {
                    let b = i / BLOCK;
                    if m.absmax_codes()[b] != absmax_codes[b] || ours_codes[i] != theirs_codes[i] {
                        continue;
                    }
                    let scale = m.absmax_scales()[b / ABSMAX_BLOCK];
                    let tolerance = 1e-6 * (m.absmax_offset().abs() + scale);
                    assert!((p - q).abs() <= tolerance, "{name}: value {i}: {p} vs {q}");
                }
            }
        }
    }
}
