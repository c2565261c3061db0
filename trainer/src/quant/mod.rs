//! Block-quantised weights: decoding GGUF tensor data to f32, and matrix products that read
//! the weights in their stored encoding.
//!
//! - [`dequantize`] / [`dequantize_into`]: a whole tensor's bytes to f32, for F32, F16, BF16,
//!   Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K. The block layouts and the
//!   arithmetic follow ggml's `dequantize_row_*` (ggml-quants.c) operation for operation, so the
//!   values are bit-identical to ggml's; the tests check them bit for bit against gguf-py's
//!   `gguf.quants.dequantize` (trainer/tests/golden/quant).
//! - [`QuantMatrix`]: a `rows × cols` weight (the PyTorch `[out_features, in_features]` Linear
//!   weight, one row of `cols` elements after the other, as ggml stores it) kept in its GGUF
//!   encoding, with [`QuantMatrix::matmul_t`] computing `x · Wᵀ` without materialising `W`:
//!   the CPU decode and prefill path.
//!
//! How [`QuantMatrix::matmul_t`] computes, per type:
//!
//! - Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants: as llama.cpp does, the input rows are
//!   first rounded to 8 bits, with one f32 scale per block of 32 elements (llama.cpp's
//!   Q8_0/Q8_1) or, for the K-quants, of 256 (its Q8_K): `d = max|x| / 127`, `q = round(x / d)`.
//!   Each weight block is then dotted with the matching input block in integer arithmetic and
//!   scaled once. The result is the exact product with the rounded input
//!   ([`QuantMatrix::rounded_input`]) up to f32 summation order; it differs from the product
//!   with the unrounded input by llama.cpp's activation quantisation error: each input
//!   element moves by at most half a step, `max|x| / 254` over its block.
//! - F32, F16 and BF16: the input stays f32. With AVX2 the weights are widened 32 at a time
//!   inside the dot product (F16C for F16); otherwise each weight row is decoded to f32 into a
//!   per-thread buffer and dotted with the input rows.
//!
//! Rows are split among rayon's threads in chunks of [`ROWS_PER_TASK`]. On x86-64 the dot
//! products use AVX2 and FMA when the processor has them (detected at run time, see
//! [`Simd`]); a portable scalar path is used otherwise, and both are tested against each other.

mod dequant;
mod matmul;
pub mod nf4;

use crate::loading::ggml::GgmlType;

pub use dequant::{dequantize, dequantize_into, dequantize_with, is_supported};
pub use matmul::{ROWS_PER_TASK, Simd};
pub use nf4::Nf4Matrix;

/// Why tensor data cannot be decoded.
///
/// The messages name the ggml type and the sizes involved; the caller adds the tensor's name
/// and the file (see [`crate::Error::TensorData`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DequantError {
    /// A type this module cannot decode.
    #[error(
        "ggml type {ty} cannot be decoded (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, \
         Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
    )]
    Unsupported {
        /// The type.
        ty: GgmlType,
    },

    /// The element count is not a whole number of blocks.
    #[error(
        "{n_elements} elements of {ty} are not a whole number of blocks \
         ({ty} stores {block_size} elements per block)"
    )]
    PartialBlock {
        /// The type.
        ty: GgmlType,
        /// The element count asked for.
        n_elements: usize,
        /// Elements per block of the type.
        block_size: usize,
    },

    /// A matrix row is not a whole number of blocks (blocks never cross rows).
    #[error(
        "rows of {cols} elements are not a whole number of {ty} blocks \
         ({ty} stores {block_size} elements per block)"
    )]
    PartialRow {
        /// The type.
        ty: GgmlType,
        /// Elements per row.
        cols: usize,
        /// Elements per block of the type.
        block_size: usize,
    },

    /// The data has another length than the element count implies.
    #[error("{n_elements} elements of {ty} take {expected} bytes, but the data is {got} bytes")]
    ByteLength {
        /// The type.
        ty: GgmlType,
        /// The element count.
        n_elements: usize,
        /// Bytes that many elements take.
        expected: usize,
        /// Bytes given.
        got: usize,
    },

    /// `rows × cols` does not fit in memory's address range.
    #[error("a {rows} × {cols} matrix is too large to address")]
    TooLarge {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
}

/// A `rows × cols` weight matrix kept in its GGUF block encoding.
///
/// Row `r` is the `cols` elements `r·cols .. (r+1)·cols` of the tensor (ggml's order, the
/// PyTorch `[out_features, in_features]` layout); its bytes are
/// `r·row_bytes .. (r+1)·row_bytes` of [`QuantMatrix::bytes`], since `cols` is a whole number of
/// blocks.
#[derive(Clone)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl QuantMatrix {
    /// A matrix over `bytes`, the tensor data of `rows × cols` elements of type `ty`.
    ///
    /// Fails when the type cannot be decoded, `cols` is not a whole number of blocks, or
    /// `bytes` has another length than `rows × cols` elements take.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<Self, DequantError> {
        if !is_supported(ty) {
            return Err(DequantError::Unsupported { ty });
        }
        let (block_size, type_size) = dequant::block_geometry(ty);
        if !cols.is_multiple_of(block_size) {
            return Err(DequantError::PartialRow {
                ty,
                cols,
                block_size,
            });
        }
        let n_elements = rows
            .checked_mul(cols)
            .ok_or(DequantError::TooLarge { rows, cols })?;
        let row_bytes = cols / block_size * type_size;
        let expected = rows
            .checked_mul(row_bytes)
            .ok_or(DequantError::TooLarge { rows, cols })?;
        if bytes.len() != expected {
            return Err(DequantError::ByteLength {
                ty,
                n_elements,
                expected,
                got: bytes.len(),
            });
        }
        Ok(QuantMatrix {
            ty,
            rows,
            cols,
            row_bytes,
            bytes,
        })
    }

    /// An F32 matrix holding `values` (`rows × cols`, row after row).
    ///
    /// # Panics
    ///
    /// When `values.len() != rows × cols`.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Self {
        assert_eq!(
            Some(values.len()),
            rows.checked_mul(cols),
            "QuantMatrix::from_f32: {} values for a {rows} × {cols} matrix",
            values.len()
        );
        QuantMatrix {
            ty: GgmlType::F32,
            rows,
            cols,
            row_bytes: cols * 4,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored tensor data.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Whether [`QuantMatrix::matmul_t`] rounds its input to 8 bits first (see the module
    /// documentation and [`QuantMatrix::rounded_input`]): true for every supported type but
    /// F32, F16 and BF16.
    pub fn quantizes_input(&self) -> bool {
        matmul::Kernel::of(self.ty).input_block().is_some()
    }

    /// `x` (rows of `cols` elements) as [`QuantMatrix::matmul_t`] multiplies it: for the types
    /// where [`QuantMatrix::quantizes_input`] is true, each block of 32 (Q8_0, Q4_0, Q4_1,
    /// Q5_0, Q5_1) or 256 (the K-quants) input elements rounded to `d · round(x / d)` with
    /// `d = max|x| / 127`; `x` unchanged for the others. `matmul_t` computes the exact product
    /// of the dequantised weights with these values, up to f32 summation order.
    ///
    /// # Panics
    ///
    /// When `x.len()` is not a multiple of `cols`.
    pub fn rounded_input(&self, x: &[f32]) -> Vec<f32> {
        assert!(
            x.len().is_multiple_of(self.cols),
            "rounded_input: {} values are not rows of {}",
            x.len(),
            self.cols
        );
        matmul::rounded_input(self.ty, x)
    }

    /// All elements as f32, row after row.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        dequant::decode(self.ty, &self.bytes, &mut out, Simd::detect());
        out
    }

    /// Row `i` as f32.
    ///
    /// # Panics
    ///
    /// When `i >= rows`.
    pub fn row(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.cols];
        self.row_into(i, &mut out);
        out
    }

    /// Decodes row `i` into `out`.
    ///
    /// # Panics
    ///
    /// When `i >= rows` or `out.len() != cols`.
    pub fn row_into(&self, i: usize, out: &mut [f32]) {
        assert!(i < self.rows, "row {i} of a matrix of {} rows", self.rows);
        assert_eq!(out.len(), self.cols, "row buffer length");
        dequant::decode(self.ty, self.row_data(i), out, Simd::detect());
    }

    /// A matrix whose row `k` is this matrix's row `order[k]` (a gather: `order` is usually a
    /// permutation, and the result has `order.len()` rows).
    ///
    /// # Panics
    ///
    /// When an index in `order` is `>= rows`.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let mut bytes = Vec::with_capacity(order.len() * self.row_bytes);
        for &r in order {
            assert!(
                r < self.rows,
                "permute_rows: row {r} of a matrix of {} rows",
                self.rows
            );
            bytes.extend_from_slice(self.row_data(r));
        }
        QuantMatrix {
            ty: self.ty,
            rows: order.len(),
            cols: self.cols,
            row_bytes: self.row_bytes,
            bytes,
        }
    }

    /// `out = x · Wᵀ`: `x` is `n × cols` (row after row), `out` is `n × rows`; `out[i·rows + r]`
    /// is the dot product of input row `i` with weight row `r`.
    ///
    /// Runs on rayon's current thread pool, with AVX2 and FMA when the processor has them. For
    /// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 the input is rounded to 8 bits first, as llama.cpp
    /// does (see the module documentation).
    ///
    /// # Panics
    ///
    /// When `x.len() != n × cols` or `out.len() != n × rows`.
    pub fn matmul_t(&self, x: &[f32], n: usize, out: &mut [f32]) {
        self.matmul_t_with(x, n, out, Simd::detect());
    }

    /// [`QuantMatrix::matmul_t`] with the given instruction set; [`Simd::Avx2`] falls back to
    /// [`Simd::Scalar`] where the processor lacks AVX2, FMA or F16C. For tests and benchmarks.
    ///
    /// # Panics
    ///
    /// As [`QuantMatrix::matmul_t`].
    pub fn matmul_t_with(&self, x: &[f32], n: usize, out: &mut [f32], simd: Simd) {
        matmul::matmul_t(self, x, n, out, simd.or_scalar());
    }

    /// The bytes of row `i`.
    fn row_data(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.row_bytes..(i + 1) * self.row_bytes]
    }
}

/// `eˣ` within 2 ulp of the exact value for `x` up to 88 (beyond, `e⁸⁸`), and at least
/// `e⁻⁸⁷` (below that the result is `e⁻⁸⁷`, not 0; only softmax-like sums use it, where such
/// terms vanish next to the largest, which is 1). Branch-free, so loops over it vectorise where
/// `f32::exp` calls the C library once per value: Cephes' `expf`, `x = n ln 2 + r`,
/// `eˣ = 2ⁿ · p(r)`.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The sum of `x` with sixteen independent partial sums, so the loop vectorises.
#[inline(always)]
pub(crate) fn sum_f32(x: &[f32]) -> f32 {
    let (chunks, tail) = x.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for chunk in chunks {
        for k in 0..16 {
            acc[k] += chunk[k];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `a · b` with sixteen independent partial sums, so the loop vectorises (a single running sum
/// would force the additions into order). Inlined, so it takes the features of its caller.
#[inline(always)]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_within_two_ulp_of_exp() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (ours, exact) = (exp_f32(x), (x as f64).exp());
            let ulp = (exact as f32).to_bits().abs_diff(ours.to_bits());
            assert!(ulp <= 2, "exp({x}): {ours} against {exact} ({ulp} ulp)");
            x += 0.0013;
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NEG_INFINITY) < 1e-37);
    }
}
