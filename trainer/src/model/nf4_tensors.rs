//! QLoRA's NF4 weights kept on a GPU and dequantised there.
//!
//! On the CPU our fused kernels multiply [`Nf4Matrix`] in host memory. On a GPU that would send
//! a dequantised f32 copy of every projection over the bus twice a step; instead the packed
//! codes travel once, as integer tensors, and each product dequantises its weight on the device:
//! in one kernel of ours on the GPU backends (`cube_ops`), else with nine of burn's element-wise
//! operations (two unpacks of a shift and a mask each, two table lookups, three scalings). The stored bytes are the host format's: half a byte per weight, one absmax
//! code per block of 64 (padded to whole groups, under 256 bytes) and one f32 scale per 256
//! blocks.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, FloatDType, Int, Tensor, TensorData};

use super::llama::dense_product;

use crate::quant::Nf4Matrix;
use crate::quant::nf4::{ABSMAX_BLOCK, BLOCK, NF4_CODE, dynamic_map};

/// An [`Nf4Matrix`] as tensors on a backend's device.
#[derive(Debug, Clone)]
pub struct Nf4Tensors<B: Backend> {
    rows: usize,
    cols: usize,
    /// Eight 4-bit codes per 32-bit word, the first element in the highest nibble; padded
    /// with zero codes to whole blocks.
    codes: Tensor<B, 1, Int>,
    /// Four 8-bit dynamic-map indices per word, one per block of 64, padded with zero codes
    /// to whole groups of 256 blocks so each group's scale applies by broadcasting.
    absmax_codes: Tensor<B, 1, Int>,
    /// One scale per 256 blocks.
    absmax_scales: Tensor<B, 1>,
    offset: f32,
    /// Multiply in bf16 (the dequantised weight and a copy of the input), else f32.
    bf16: bool,
    /// The 16 NF4 values.
    code_book: Tensor<B, 1>,
    /// The 256 values of the absmax quantisation's dynamic map.
    dynamic: Tensor<B, 1>,
    /// `[1, 8]`: the shift of each 4-bit field of a code word.
    code_shifts: Tensor<B, 2, Int>,
    /// `[1, 4]`: the shift of each 8-bit field of an absmax word.
    absmax_shifts: Tensor<B, 2, Int>,
    /// One kernel that dequantises, on the GPU backends; else burn's operations.
    kernel: Option<Nf4Dequantize<B>>,
}

/// Dequantises [`Nf4Tensors`] in one kernel, `[rows, cols]`.
pub type Nf4Dequantize<B> = fn(&Nf4Tensors<B>) -> Tensor<B, 2>;

/// What a dequantising kernel reads, borrowed from [`Nf4Tensors`].
pub(crate) struct Nf4Parts<'a, B: Backend> {
    pub rows: usize,
    pub cols: usize,
    pub codes: &'a Tensor<B, 1, Int>,
    pub absmax_codes: &'a Tensor<B, 1, Int>,
    pub absmax_scales: &'a Tensor<B, 1>,
    pub offset: f32,
    pub code_book: &'a Tensor<B, 1>,
    pub dynamic: &'a Tensor<B, 1>,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use crate::cube_ops::nf4_dequantize_for as device_kernel;

/// Without a GPU backend compiled in, no backend has the dequantising kernel.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn device_kernel<B: Backend>() -> Option<Nf4Dequantize<B>> {
    None
}

/// Packs `bytes` into big-endian 32-bit words (zero-padded to `words` words), as `i32`.
fn pack_words(bytes: &[u8], words: usize) -> Vec<i32> {
    let mut padded = bytes.to_vec();
    padded.resize(words * 4, 0);
    padded
        .chunks_exact(4)
        .map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// The shift of each `bits`-wide field of a 32-bit word, highest field first, `[1, 32 / bits]`.
fn field_shifts<B: Backend>(bits: u32, device: &B::Device) -> Tensor<B, 2, Int> {
    let shifts: Vec<i32> = (1..=32 / bits).map(|j| (32 - bits * j) as i32).collect();
    let n = shifts.len();
    Tensor::from_data(TensorData::new(shifts, [1, n]), device)
}

/// The fields of each word, highest first, as one flat tensor: every word shifted by every
/// field's `shifts` at once, then masked to `bits`.
fn unpack<B: Backend>(
    words: Tensor<B, 1, Int>,
    shifts: &Tensor<B, 2, Int>,
    bits: u32,
) -> Tensor<B, 1, Int> {
    let [n] = words.dims();
    let [_, per_word] = shifts.dims();
    let mask = ((1u32 << bits) - 1) as i32;
    // The arithmetic shift drags the sign bit along; the mask drops it again.
    words
        .unsqueeze_dim::<2>(1)
        .bitwise_right_shift(shifts.clone())
        .bitwise_and_scalar(mask.elem())
        .reshape([n * per_word])
}

impl<B: Backend> Nf4Tensors<B> {
    /// Copies `matrix` to `device`; its products run in bf16 when `bf16` is set.
    pub fn upload(matrix: &Nf4Matrix, bf16: bool, device: &B::Device) -> Self {
        let len = matrix.rows() * matrix.cols();
        let blocks = len.div_ceil(BLOCK);
        let code_words = blocks * BLOCK / 8;
        let absmax_words = matrix.absmax_scales().len() * ABSMAX_BLOCK / 4;
        let ints = |values: Vec<i32>| {
            let n = values.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n]), device)
        };
        let floats = |values: Vec<f32>| {
            let n = values.len();
            Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device)
        };
        Nf4Tensors {
            rows: matrix.rows(),
            cols: matrix.cols(),
            codes: ints(pack_words(matrix.packed_codes(), code_words)),
            absmax_codes: ints(pack_words(matrix.absmax_codes(), absmax_words)),
            absmax_scales: floats(matrix.absmax_scales().to_vec()),
            offset: matrix.absmax_offset(),
            bf16,
            code_book: floats(NF4_CODE.to_vec()),
            dynamic: floats(dynamic_map().to_vec()),
            code_shifts: field_shifts(4, device),
            absmax_shifts: field_shifts(8, device),
            kernel: device_kernel::<B>(),
        }
    }

    /// The tensors a dequantising kernel reads.
    pub(crate) fn parts(&self) -> Nf4Parts<'_, B> {
        Nf4Parts {
            rows: self.rows,
            cols: self.cols,
            codes: &self.codes,
            absmax_codes: &self.absmax_codes,
            absmax_scales: &self.absmax_scales,
            offset: self.offset,
            code_book: &self.code_book,
            dynamic: &self.dynamic,
        }
    }

    /// The f32 weight, `[rows, cols]`: `NF4[q] · (DYN[qa] · scale + offset)` per element, the
    /// same arithmetic as [`Nf4Matrix::dequantize`].
    pub fn dequantize(&self) -> Tensor<B, 2> {
        if let Some(kernel) = self.kernel {
            return kernel(self);
        }
        let len = self.rows * self.cols;
        let blocks = len.div_ceil(BLOCK);
        let [groups] = self.absmax_scales.dims();
        let values = self
            .code_book
            .clone()
            .select(0, unpack(self.codes.clone(), &self.code_shifts, 4))
            .reshape([blocks, BLOCK]);
        let qa = unpack(self.absmax_codes.clone(), &self.absmax_shifts, 8);
        let absmax = (self
            .dynamic
            .clone()
            .select(0, qa)
            .reshape([groups, ABSMAX_BLOCK])
            * self.absmax_scales.clone().unsqueeze_dim::<2>(1))
        .add_scalar(self.offset)
        .reshape([groups * ABSMAX_BLOCK])
        .narrow(0, 0, blocks);
        (values * absmax.unsqueeze_dim::<2>(1))
            .reshape([blocks * BLOCK])
            .narrow(0, 0, len)
            .reshape([self.rows, self.cols])
    }

    /// The weight in the precision its products run in.
    fn operand(&self) -> Tensor<B, 2> {
        let w = self.dequantize();
        if self.bf16 {
            w.cast(FloatDType::BF16)
        } else {
            w
        }
    }

    /// `x Wᵀ`, `[n, rows]` for `x` `[n, cols]` (the forward product).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        dense_product(x, self.operand().transpose())
    }

    /// `g W`, `[n, cols]` for `g` `[n, rows]` (the input gradient of the forward product).
    pub fn backward(&self, g: Tensor<B, 2>) -> Tensor<B, 2> {
        dense_product(g, self.operand())
    }

    /// Bytes held on the device, counted as [`Nf4Matrix::bytes`] counts them, the absmax
    /// codes' padding included (the shared tables and shifts aside).
    pub fn bytes(&self) -> usize {
        4 * (self.codes.dims()[0] + self.absmax_codes.dims()[0] + self.absmax_scales.dims()[0])
            + std::mem::size_of::<f32>()
    }
}

impl<B: AutodiffBackend> Nf4Tensors<B> {
    /// The same tensors on the backend without autodiff, for a hand-written backward pass.
    pub fn inner(&self) -> Nf4Tensors<B::InnerBackend> {
        Nf4Tensors {
            rows: self.rows,
            cols: self.cols,
            codes: self.codes.clone().inner(),
            absmax_codes: self.absmax_codes.clone().inner(),
            absmax_scales: self.absmax_scales.clone().inner(),
            offset: self.offset,
            bf16: self.bf16,
            code_book: self.code_book.clone().inner(),
            dynamic: self.dynamic.clone().inner(),
            code_shifts: self.code_shifts.clone().inner(),
            absmax_shifts: self.absmax_shifts.clone().inner(),
            kernel: device_kernel::<B::InnerBackend>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::Flex;

    use super::*;
    use crate::generate::Rng;

    fn random_matrix(rows: usize, cols: usize, seed: u64) -> Nf4Matrix {
        let mut rng = Rng::new(seed);
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| {
                // Blocks of very different magnitudes, so the absmax codes span the map.
                let scale = 10f32.powi((i / BLOCK % 7) as i32 - 4);
                (rng.next_f64() as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Nf4Matrix::quantize(rows, cols, &data).expect("finite values quantise")
    }

    /// Shapes whose element counts end mid-block, mid-word and mid-group, and one spanning
    /// several groups of 256 blocks.
    #[test]
    fn dequantises_exactly_as_the_host_does() {
        dequantises_exactly_on::<Flex>(&Default::default());
    }

    /// The GPU path's one kernel, on wgpu (Mesa's lavapipe where there is no GPU).
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_gpu_kernel_dequantises_exactly_as_the_host_does() {
        use burn::backend::wgpu::{Wgpu, WgpuDevice};
        assert!(device_kernel::<Wgpu>().is_some(), "wgpu has the kernel");
        dequantises_exactly_on::<Wgpu>(&WgpuDevice::default());
    }

    fn dequantises_exactly_on<B: Backend>(device: &B::Device) {
        for (rows, cols, seed) in [
            (1, 1, 1),
            (3, 100, 2),
            (7, 64, 3),
            (130, 257, 4),
            (96, 576, 5),
        ] {
            let matrix = random_matrix(rows, cols, seed);
            let tensors = Nf4Tensors::<B>::upload(&matrix, false, device);
            let got: Vec<f32> = tensors
                .dequantize()
                .into_data()
                .into_vec()
                .expect("f32 values");
            let want = matrix.dequantize();
            assert_eq!(got.len(), want.len(), "{rows}×{cols}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{rows}×{cols}: element {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn holds_the_bytes_of_the_host_format() {
        let matrix = random_matrix(96, 576, 6);
        let tensors = Nf4Tensors::<Flex>::upload(&matrix, false, &Default::default());
        // Whole blocks and code words here, so only the absmax codes' padding to whole
        // groups differs: 864 blocks padded to 1 024.
        assert_eq!(tensors.bytes(), matrix.bytes() + (1024 - 864));
    }
}
