//! Kernels of our own for the GPU backends (CubeCL: wgpu and CUDA): RMSNorm, the MLP's gated
//! activation, causal attention weights and LoRA's dropout, each one launch forward and one
//! backward, for training and (the first three) for inference; and QLoRA's NF4 dequantisation
//! in one launch where burn's operations take nine.
//!
//! At the batch sizes a desktop fine-tune runs, a GPU step waits on kernel launches, not on
//! arithmetic. Composed of burn's operations, RMSNorm is seven launches forward and about ten
//! backward; `silu(g) · u` is eight forward (burn's sigmoid alone is six) and about as many
//! backward; scaling, masking and softmax of the attention scores are seven forward and a dozen
//! backward; and dropout sent a float per value over the bus for each adapted projection. A
//! 30-layer model runs 61 norms, 30 activations, 30 softmaxes and 210 masks a step. The
//! kernels compute the same formulas in f32; the tests compare them with burn's composition.

use std::any::Any;
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::model::nf4_tensors::Nf4Dequantize;
use crate::model::{DropoutMask, FusedOps, Nf4Tensors};

/// Our kernels for training on `B`, where `B` is one of the CubeCL backends compiled in
/// (burn's `Wgpu` and `Cuda`, f32 by default), for the decoder to use instead of burn's
/// composition.
pub fn training_ops_for<B: Backend, C: CheckpointStrategy>() -> Option<FusedOps<Autodiff<B, C>>> {
    fn ops_of<R, F, I, BT, C>() -> Box<dyn Any>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
        C: CheckpointStrategy,
    {
        Box::new(FusedOps::<AdCube<R, F, I, BT, C>> {
            swiglu: Some(swiglu::<R, F, I, BT, C>),
            rms_norm: Some(rms_norm::<R, F, I, BT, C>),
            causal_softmax: Some(causal_softmax::<R, F, I, BT, C>),
            lora_dropout: Some(lora_dropout::<R, F, I, BT, C>),
            ..FusedOps::default()
        })
    }
    matching(vec![
        #[cfg(feature = "wgpu")]
        ops_of::<cubecl::wgpu::WgpuRuntime, f32, i32, u32, C>(),
        #[cfg(feature = "cuda")]
        ops_of::<cubecl::cuda::CudaRuntime, f32, i32, u8, C>(),
    ])
}

/// Our kernels for inference (the forward pass only) on `B`, as [`training_ops_for`].
pub fn inference_ops_for<B: Backend>() -> Option<FusedOps<B>> {
    fn ops_of<R, F, I, BT>() -> Box<dyn Any>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
    {
        Box::new(FusedOps::<Cube<R, F, I, BT>> {
            swiglu: Some(|gate, up| float(swiglu_forward(contiguous(gate), contiguous(up)))),
            rms_norm: Some(|x, weight, eps| {
                let weight = into_contiguous(weight.clone().into_primitive().tensor());
                float(rms_norm_forward(contiguous(x), weight, eps))
            }),
            causal_softmax: Some(|scores, scale, queries, start| {
                float(causal_softmax_forward(
                    contiguous(scores),
                    scale,
                    queries,
                    start,
                ))
            }),
            ..FusedOps::default()
        })
    }
    matching(vec![
        #[cfg(feature = "wgpu")]
        ops_of::<cubecl::wgpu::WgpuRuntime, f32, i32, u32>(),
        #[cfg(feature = "cuda")]
        ops_of::<cubecl::cuda::CudaRuntime, f32, i32, u8>(),
    ])
}

/// The values of `t`, laid out row-major.
fn contiguous<R, F, I, BT, const D: usize>(t: Tensor<Cube<R, F, I, BT>, D>) -> CubeTensor<R>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    into_contiguous(t.into_primitive().tensor())
}

/// `t` as a float tensor of its backend.
fn float<R, F, I, BT, const D: usize>(t: CubeTensor<R>) -> Tensor<Cube<R, F, I, BT>, D>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The one of `candidates` that is a `T`. The model and training code is generic over the
/// backend and the kernels exist for CubeCL's only, so the concrete kernels are matched to the
/// backend at run time, by type.
fn matching<T: Any>(candidates: Vec<Box<dyn Any>>) -> Option<T> {
    candidates
        .into_iter()
        .find_map(|found| found.downcast::<T>().ok())
        .map(|found| *found)
}

/// Threads that share one row of a norm: a power of two, as the tree reduction needs.
const ROW_THREADS: usize = 128;

/// The backend the kernels run on.
type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// Its autodiff backend, which training runs on.
type AdCube<R, F, I, BT, C> = Autodiff<Cube<R, F, I, BT>, C>;

/// The kernels, in CubeCL's language (whose `Tensor` and `Int` are not burn's).
mod kernels {
    use cubecl::prelude::*;

    /// `silu(g) · u`, one thread per value.
    #[cube(launch)]
    pub(super) fn swiglu_forward_kernel<F: Float>(
        gate: &Tensor<F>,
        up: &Tensor<F>,
        out: &mut Tensor<F>,
        #[define(F)] _dtype: StorageType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= out.len() {
            terminate!();
        }
        let g = gate[i];
        let s = F::new(1.0) / (F::new(1.0) + F::exp(-g));
        out[i] = g * s * up[i];
    }

    /// `∂L/∂u = dy · silu(g)` and `∂L/∂g = dy · u · σ(g) · (1 + g · (1 − σ(g)))`.
    #[cube(launch)]
    pub(super) fn swiglu_backward_kernel<F: Float>(
        grad: &Tensor<F>,
        gate: &Tensor<F>,
        up: &Tensor<F>,
        d_gate: &mut Tensor<F>,
        d_up: &mut Tensor<F>,
        #[define(F)] _dtype: StorageType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= d_gate.len() {
            terminate!();
        }
        let g = gate[i];
        let dy = grad[i];
        let one = F::new(1.0);
        let s = one / (one + F::exp(-g));
        d_up[i] = dy * g * s;
        d_gate[i] = dy * up[i] * s * (one + g * (one - s));
    }

    /// The sum (or with `max`, the largest) over the cube of each thread's `value`, returned to
    /// every thread.
    #[cube]
    fn cube_reduce<F: Float>(value: F, #[comptime] threads: usize, #[comptime] max: bool) -> F {
        let mut shared = SharedMemory::<F>::new(threads);
        let unit = UNIT_POS_X as usize;
        shared[unit] = value;
        sync_cube();
        // A runtime value: it changes as the loop runs. The cube is `threads` wide.
        let mut stride = CUBE_DIM_X as usize / 2;
        while stride > 0 {
            if unit < stride {
                if max {
                    shared[unit] = F::max(shared[unit], shared[unit + stride]);
                } else {
                    shared[unit] = shared[unit] + shared[unit + stride];
                }
            }
            sync_cube();
            stride /= 2;
        }
        let total = shared[0];
        // Every thread has read the total before a later reduction writes over it.
        sync_cube();
        total
    }

    /// The row a cube works on, where the rows are spread over a two-dimensional grid.
    #[cube]
    fn cube_row() -> usize {
        CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize
    }

    /// `y = x / rms(x) · w` for each row of `x` `[rows, d]`, one cube per row.
    #[cube(launch)]
    pub(super) fn rms_norm_forward_kernel<F: Float>(
        x: &Tensor<F>,
        weight: &Tensor<F>,
        out: &mut Tensor<F>,
        eps: f32,
        #[comptime] threads: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let d = x.shape(1);
        let base = cube_row() * d;
        if base >= x.len() {
            terminate!();
        }
        let unit = UNIT_POS_X as usize;
        let mut squares = F::new(0.0);
        let mut i = unit;
        while i < d {
            let v = x[base + i];
            squares += v * v;
            i += threads;
        }
        let total = cube_reduce::<F>(squares, threads, false);
        let inv = F::inverse_sqrt(total / F::cast_from(d) + F::cast_from(eps));
        let mut i = unit;
        while i < d {
            out[base + i] = x[base + i] * inv * weight[i];
            i += threads;
        }
    }

    /// `∂L/∂x = r · (dy ⊙ w) − x · r³ · Σ(dy ⊙ w ⊙ x) / d` with `r = 1 / rms(x)`, per row. The
    /// weight is frozen (the adapter trains no norm), so it gets no gradient.
    #[cube(launch)]
    pub(super) fn rms_norm_backward_kernel<F: Float>(
        grad: &Tensor<F>,
        x: &Tensor<F>,
        weight: &Tensor<F>,
        d_x: &mut Tensor<F>,
        eps: f32,
        #[comptime] threads: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let d = x.shape(1);
        let base = cube_row() * d;
        if base >= x.len() {
            terminate!();
        }
        let unit = UNIT_POS_X as usize;
        let mut squares = F::new(0.0);
        let mut dot = F::new(0.0);
        let mut i = unit;
        while i < d {
            let v = x[base + i];
            squares += v * v;
            dot += grad[base + i] * weight[i] * v;
            i += threads;
        }
        let squares = cube_reduce::<F>(squares, threads, false);
        let dot = cube_reduce::<F>(dot, threads, false);
        let dims = F::cast_from(d);
        let inv = F::inverse_sqrt(squares / dims + F::cast_from(eps));
        let coefficient = inv * inv * inv * dot / dims;
        let mut i = unit;
        while i < d {
            d_x[base + i] = inv * grad[base + i] * weight[i] - x[base + i] * coefficient;
            i += threads;
        }
    }

    /// The attention weights of each row of `scores` `[.., rows, keys]`: `softmax(scale · s)` over
    /// the keys a causal mask leaves, those at or before the row's position. Rows cycle through
    /// `queries` positions (query heads that share a key head are stacked), and position `t` is
    /// `start + t` in the sequence.
    #[cube(launch)]
    pub(super) fn causal_softmax_forward_kernel<F: Float>(
        scores: &Tensor<F>,
        out: &mut Tensor<F>,
        scale: f32,
        queries: u32,
        start: u32,
        #[comptime] threads: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let keys = scores.shape(scores.rank() - 1);
        let row = cube_row();
        let base = row * keys;
        if base >= scores.len() {
            terminate!();
        }
        let last = row % queries as usize + start as usize;
        let unit = UNIT_POS_X as usize;
        let scale = F::cast_from(scale);
        let mut largest = F::min_value();
        let mut j = unit;
        while j <= last {
            largest = F::max(largest, scores[base + j] * scale);
            j += threads;
        }
        let largest = cube_reduce::<F>(largest, threads, true);
        let mut total = F::new(0.0);
        let mut j = unit;
        while j <= last {
            total += F::exp(scores[base + j] * scale - largest);
            j += threads;
        }
        let inv = F::new(1.0) / cube_reduce::<F>(total, threads, false);
        let mut j = unit;
        while j < keys {
            let mut p = F::new(0.0);
            if j <= last {
                p = F::exp(scores[base + j] * scale - largest) * inv;
            }
            out[base + j] = p;
            j += threads;
        }
    }

    /// `∂L/∂s = scale · p ⊙ (∂L/∂p − Σ ∂L/∂p ⊙ p)` per row, from the weights `p` the forward pass
    /// returned (zero where masked, so masked scores get no gradient).
    #[cube(launch)]
    pub(super) fn causal_softmax_backward_kernel<F: Float>(
        grad: &Tensor<F>,
        weights: &Tensor<F>,
        d_scores: &mut Tensor<F>,
        scale: f32,
        #[comptime] threads: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let keys = weights.shape(weights.rank() - 1);
        let base = cube_row() * keys;
        if base >= weights.len() {
            terminate!();
        }
        let unit = UNIT_POS_X as usize;
        let mut dot = F::new(0.0);
        let mut j = unit;
        while j < keys {
            dot += grad[base + j] * weights[base + j];
            j += threads;
        }
        let dot = cube_reduce::<F>(dot, threads, false);
        let scale = F::cast_from(scale);
        let mut j = unit;
        while j < keys {
            d_scores[base + j] = scale * weights[base + j] * (grad[base + j] - dot);
            j += threads;
        }
    }

    /// `x ⊙ m · factor` for a dropout mask `m` of one bit per value: bit `i % 32` of `bits[i / 32]`.
    #[cube(launch)]
    pub(super) fn dropout_kernel<F: Float, I: Int>(
        x: &Tensor<F>,
        bits: &Tensor<I>,
        out: &mut Tensor<F>,
        factor: f32,
        #[define(F, I)] _dtypes: [StorageType; 2],
    ) {
        let i = ABSOLUTE_POS;
        if i >= out.len() {
            terminate!();
        }
        // An arithmetic shift keeps the sign bit, the `& 1` drops it: bit 31 reads right too.
        let kept = (bits[i / 32] >> I::cast_from((i % 32) as u32)) & I::new(1);
        let mut value = F::new(0.0);
        if kept == I::new(1) {
            value = x[i] * F::cast_from(factor);
        }
        out[i] = value;
    }
    /// `NF4[q] · (DYN[qa] · scale + offset)` for element `i` of an NF4 matrix: `q` the nibble
    /// of `codes` (eight a word, the first highest), `qa` its block's byte of `absmax_codes`
    /// (four a word, one per block of 64), `scale` its group's (one per 256 blocks).
    #[cube(launch)]
    pub(super) fn nf4_dequantize_kernel<F: Float, I: Int>(
        codes: &Tensor<I>,
        absmax_codes: &Tensor<I>,
        absmax_scales: &Tensor<F>,
        code_book: &Tensor<F>,
        dynamic: &Tensor<F>,
        out: &mut Tensor<F>,
        offset: f32,
        #[define(F, I)] _dtypes: [StorageType; 2],
    ) {
        let i = ABSOLUTE_POS;
        if i >= out.len() {
            terminate!();
        }
        let block = i / 64;
        // Arithmetic shifts keep the sign bit; the masks drop it.
        let code_shift = I::cast_from((28 - 4 * (i % 8)) as u32);
        let q = (codes[i / 8] >> code_shift) & I::new(15);
        let absmax_shift = I::cast_from((24 - 8 * (block % 4)) as u32);
        let qa = (absmax_codes[block / 4] >> absmax_shift) & I::new(255);
        let absmax = dynamic[u32::cast_from(qa) as usize] * absmax_scales[block / 256]
            + F::cast_from(offset);
        out[i] = code_book[u32::cast_from(q) as usize] * absmax;
    }
}

/// A new tensor shaped and typed like `like`.
fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>) -> CubeTensor<R> {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        like.meta.shape().clone(),
        like.dtype,
    )
}

fn elementwise_grid<R: CubeRuntime>(like: &CubeTensor<R>) -> (CubeCount, CubeDim) {
    let n = like.meta.shape().num_elements();
    let dim = CubeDim::new(&like.client, n);
    (calculate_cube_count_elemwise(&like.client, n, dim), dim)
}

fn swiglu_forward<R: CubeRuntime>(gate: CubeTensor<R>, up: CubeTensor<R>) -> CubeTensor<R> {
    let out = empty_like(&gate);
    let (count, dim) = elementwise_grid(&out);
    let dtype = out.dtype;
    kernels::swiglu_forward_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        gate.into_tensor_arg(),
        up.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtype.into(),
    );
    out
}

/// A cube of [`ROW_THREADS`] per row of `x`, the last dimension being a row.
fn rows_grid<R: CubeRuntime>(x: &CubeTensor<R>) -> (CubeCount, CubeDim) {
    let shape = x.meta.shape();
    let rows = shape.num_elements() / shape[shape.len() - 1];
    // A grid dimension holds at most 65 535 cubes on some GPUs.
    let across = rows.clamp(1, u16::MAX as usize);
    (
        CubeCount::Static(across as u32, rows.div_ceil(across) as u32, 1),
        CubeDim::new_1d(ROW_THREADS as u32),
    )
}

fn rms_norm_forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    eps: f32,
) -> CubeTensor<R> {
    let out = empty_like(&x);
    let (count, dim) = rows_grid(&x);
    let dtype = out.dtype;
    kernels::rms_norm_forward_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        eps,
        ROW_THREADS,
        dtype.into(),
    );
    out
}

#[derive(Debug)]
struct SwigluBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 2>
    for SwigluBackward
{
    type State = (CubeTensor<R>, CubeTensor<R>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let grad = into_contiguous(grads.consume::<Cube<R, F, I, BT>>(&ops.node));
        let (gate, up) = ops.state;
        let d_gate = empty_like(&gate);
        let d_up = empty_like(&gate);
        let (count, dim) = elementwise_grid(&d_gate);
        let dtype = d_gate.dtype;
        kernels::swiglu_backward_kernel::launch::<R>(
            &d_gate.client,
            count,
            dim,
            grad.into_tensor_arg(),
            gate.into_tensor_arg(),
            up.into_tensor_arg(),
            d_gate.clone().into_tensor_arg(),
            d_up.clone().into_tensor_arg(),
            dtype.into(),
        );
        for (node, value) in [(gate_node, d_gate), (up_node, d_up)] {
            if let Some(node) = node {
                grads.register::<Cube<R, F, I, BT>>(node.id, value);
            }
        }
    }
}

/// `silu(gate) · up` on a CubeCL backend, one kernel each way. Keeps the two inputs for the
/// backward pass, as burn's composition does (it keeps four tensors).
pub fn swiglu<R, F, I, BT, C>(
    gate: Tensor<AdCube<R, F, I, BT, C>, 2>,
    up: Tensor<AdCube<R, F, I, BT, C>, 2>,
) -> Tensor<AdCube<R, F, I, BT, C>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    assert_eq!(
        gate.dims(),
        up.dims(),
        "the gate and up inputs have one shape"
    );
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let nodes = [gate.node.clone(), up.node.clone()];
    let (g, u) = (
        into_contiguous(gate.primitive),
        into_contiguous(up.primitive),
    );
    let out = match SwigluBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = swiglu_forward(g.clone(), u.clone());
            prep.finish((g, u), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(swiglu_forward(g, u)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct RmsNormBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 1>
    for RmsNormBackward
{
    /// The input, the weight and ε.
    type State = (CubeTensor<R>, CubeTensor<R>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = into_contiguous(grads.consume::<Cube<R, F, I, BT>>(&ops.node));
        let Some(node) = node else { return };
        let (x, weight, eps) = ops.state;
        let d_x = empty_like(&x);
        let (count, dim) = rows_grid(&x);
        let dtype = d_x.dtype;
        kernels::rms_norm_backward_kernel::launch::<R>(
            &d_x.client,
            count,
            dim,
            grad.into_tensor_arg(),
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            d_x.clone().into_tensor_arg(),
            eps,
            ROW_THREADS,
            dtype.into(),
        );
        grads.register::<Cube<R, F, I, BT>>(node.id, d_x);
    }
}

/// RMSNorm of each row of `x` `[rows, d]` with a frozen `weight` `[d]` on a CubeCL backend,
/// one kernel each way.
pub fn rms_norm<R, F, I, BT, C>(
    x: Tensor<AdCube<R, F, I, BT, C>, 2>,
    weight: &Tensor<AdCube<R, F, I, BT, C>, 1>,
    eps: f32,
) -> Tensor<AdCube<R, F, I, BT, C>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    let x = x.into_primitive().tensor();
    let weight = into_contiguous(weight.clone().inner().into_primitive().tensor());
    let nodes = [x.node.clone()];
    let input = into_contiguous(x.primitive);
    let out = match RmsNormBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = rms_norm_forward(input.clone(), weight.clone(), eps);
            prep.finish((input, weight, eps), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(rms_norm_forward(input, weight, eps)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn causal_softmax_forward<R: CubeRuntime>(
    scores: CubeTensor<R>,
    scale: f32,
    queries: usize,
    start: usize,
) -> CubeTensor<R> {
    let out = empty_like(&scores);
    let (count, dim) = rows_grid(&scores);
    let dtype = out.dtype;
    kernels::causal_softmax_forward_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        scores.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        scale,
        queries as u32,
        start as u32,
        ROW_THREADS,
        dtype.into(),
    );
    out
}

#[derive(Debug)]
struct CausalSoftmaxBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 1>
    for CausalSoftmaxBackward
{
    /// The weights the forward pass returned, and the scale.
    type State = (CubeTensor<R>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = into_contiguous(grads.consume::<Cube<R, F, I, BT>>(&ops.node));
        let Some(node) = node else { return };
        let (weights, scale) = ops.state;
        let d_scores = empty_like(&weights);
        let (count, dim) = rows_grid(&weights);
        let dtype = d_scores.dtype;
        kernels::causal_softmax_backward_kernel::launch::<R>(
            &d_scores.client,
            count,
            dim,
            grad.into_tensor_arg(),
            weights.into_tensor_arg(),
            d_scores.clone().into_tensor_arg(),
            scale,
            ROW_THREADS,
            dtype.into(),
        );
        grads.register::<Cube<R, F, I, BT>>(node.id, d_scores);
    }
}

/// Causal attention weights `softmax(scale · scores)` on a CubeCL backend, one kernel each
/// way where burn's scaling, mask and softmax are about seven forward and a dozen backward.
/// `scores` is `[.., rows, keys]`, its rows cycling through `queries` positions that start at
/// `start`. Keeps only the weights for the backward pass.
pub fn causal_softmax<R, F, I, BT, C>(
    scores: Tensor<AdCube<R, F, I, BT, C>, 3>,
    scale: f32,
    queries: usize,
    start: usize,
) -> Tensor<AdCube<R, F, I, BT, C>, 3>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    let scores = scores.into_primitive().tensor();
    let nodes = [scores.node.clone()];
    let input = into_contiguous(scores.primitive);
    let out = match CausalSoftmaxBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = causal_softmax_forward(input, scale, queries, start);
            prep.finish((out.clone(), scale), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(causal_softmax_forward(input, scale, queries, start))
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn dropout_forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    bits: CubeTensor<R>,
    factor: f32,
) -> CubeTensor<R> {
    let out = empty_like(&x);
    let (count, dim) = elementwise_grid(&out);
    let dtypes = [out.dtype.into(), bits.dtype.into()];
    kernels::dropout_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        x.into_tensor_arg(),
        bits.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        factor,
        dtypes,
    );
    out
}

#[derive(Debug)]
struct DropoutBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 1>
    for DropoutBackward
{
    /// The mask's words and the factor.
    type State = (CubeTensor<R>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = into_contiguous(grads.consume::<Cube<R, F, I, BT>>(&ops.node));
        let Some(node) = node else { return };
        let (bits, factor) = ops.state;
        grads.register::<Cube<R, F, I, BT>>(node.id, dropout_forward(grad, bits, factor));
    }
}

/// LoRA's first product with dropout on a CubeCL backend: `(x ⊙ m · factor) Aᵀ`, the mask
/// sent to the device as bits (32 times less than as floats) and applied by one kernel each
/// way, the factor with it.
pub fn lora_dropout<R, F, I, BT, C>(
    x: Tensor<AdCube<R, F, I, BT, C>, 2>,
    a_t: Tensor<AdCube<R, F, I, BT, C>, 2>,
    mask: Arc<DropoutMask>,
    factor: f32,
) -> Tensor<AdCube<R, F, I, BT, C>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    assert_eq!(x.dims(), mask.dims(), "one mask bit per input value");
    let words = mask.words32();
    let count = words.len();
    let bits = Tensor::<Cube<R, F, I, BT>, 1, Int>::from_data(
        TensorData::new(words, [count]),
        &x.device(),
    )
    .into_primitive();
    let factor = factor * mask.scale();
    let x = x.into_primitive().tensor();
    let nodes = [x.node.clone()];
    let input = into_contiguous(x.primitive);
    let out = match DropoutBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = dropout_forward(input, bits.clone(), factor);
            prep.finish((bits, factor), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(dropout_forward(input, bits, factor)),
    };
    Tensor::<AdCube<R, F, I, BT, C>, 2>::from_primitive(TensorPrimitive::Float(out)).matmul(a_t)
}

/// [`Nf4Tensors::dequantize`] in one kernel on a CubeCL backend.
fn nf4_dequantize<R, F, I, BT>(
    weight: &Nf4Tensors<Cube<R, F, I, BT>>,
) -> Tensor<Cube<R, F, I, BT>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let parts = weight.parts();
    let ints = |t: &Tensor<Cube<R, F, I, BT>, 1, Int>| into_contiguous(t.clone().into_primitive());
    let floats = |t: &Tensor<Cube<R, F, I, BT>, 1>| contiguous(t.clone());
    let scales = floats(parts.absmax_scales);
    let out = empty_device_dtype(
        scales.client.clone(),
        scales.device.clone(),
        [parts.rows, parts.cols].into(),
        scales.dtype,
    );
    let codes = ints(parts.codes);
    let (count, dim) = elementwise_grid(&out);
    let dtypes = [out.dtype.into(), codes.dtype.into()];
    kernels::nf4_dequantize_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        codes.into_tensor_arg(),
        ints(parts.absmax_codes).into_tensor_arg(),
        scales.into_tensor_arg(),
        floats(parts.code_book).into_tensor_arg(),
        floats(parts.dynamic).into_tensor_arg(),
        out.clone().into_tensor_arg(),
        parts.offset,
        dtypes,
    );
    float(out)
}

/// Our NF4 dequantising kernel for `B`, where `B` is one of the CubeCL backends compiled in.
pub fn nf4_dequantize_for<B: Backend>() -> Option<Nf4Dequantize<B>> {
    fn kernel_of<R, F, I, BT>() -> Box<dyn Any>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
    {
        Box::new(nf4_dequantize::<R, F, I, BT> as Nf4Dequantize<Cube<R, F, I, BT>>)
    }
    matching(vec![
        #[cfg(feature = "wgpu")]
        kernel_of::<cubecl::wgpu::WgpuRuntime, f32, i32, u32>(),
        #[cfg(feature = "cuda")]
        kernel_of::<cubecl::cuda::CudaRuntime, f32, i32, u8>(),
    ])
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::wgpu::{Wgpu, WgpuDevice};
    use burn::tensor::TensorData;

    use super::*;
    use crate::model::llama::rms_norm as burns_rms_norm;
    use crate::train::op_testing::{assert_all_close, max_relative_difference};

    type Ad = Autodiff<Wgpu, NoCheckpointing>;

    /// Values spread over `[-spread, spread]`, different for each `seed`.
    fn spread<const D: usize>(shape: [usize; D], spread: f32, seed: u64) -> Tensor<Ad, D> {
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n as u64)
            .map(|i| {
                let h =
                    (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD6E8_FEB8);
                ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
            })
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &WgpuDevice::default())
    }

    fn host<const D: usize>(t: Tensor<Ad, D>) -> Vec<f32> {
        t.into_data().into_vec::<f32>().expect("f32 values")
    }

    fn kernels() -> FusedOps<Ad> {
        training_ops_for::<Wgpu, NoCheckpointing>().expect("wgpu has our kernels")
    }

    #[test]
    fn rms_norm_kernels_match_burns_composition() {
        let op = kernels().rms_norm.expect("an RMSNorm kernel");
        // Widths below, at and above the threads of a row, and not multiples of them.
        for (rows, d) in [(5, 576), (3, 64), (4, 130), (2, 896)] {
            let weight = spread([d], 1.5, 1);
            let upstream = spread([rows, d], 1.0, 2);
            let run = |ours: bool| {
                let x = spread([rows, d], 3.0, 3).require_grad();
                let y = if ours {
                    op(x.clone(), &weight, 1e-5)
                } else {
                    burns_rms_norm(x.clone(), &weight, 1e-5)
                };
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let dx = x.grad(&grads).expect("x has a gradient");
                vec![host(y), dx.into_data().into_vec::<f32>().expect("f32")]
            };
            assert_all_close(
                &["output", "input gradient"],
                &run(true),
                &run(false),
                max_relative_difference,
                1e-5,
            );
        }
    }

    #[test]
    fn causal_softmax_kernels_match_burns_composition() {
        let op = kernels().causal_softmax.expect("a causal softmax kernel");
        // Two key heads, each shared by three query heads; no cache, a cached prefix, and
        // rows longer than a cube's threads.
        for (n, start) in [(5, 0), (5, 4), (1, 6), (150, 0)] {
            let (kv_heads, group, keys) = (2, 3, start + n);
            let shape = [kv_heads, group * n, keys];
            let upstream = spread(shape, 1.0, 7);
            let mask: Vec<bool> = (0..kv_heads * group * n)
                .flat_map(|row| (0..keys).map(move |j| j > start + row % n))
                .collect();
            let mask = Tensor::<Ad, 3, burn::tensor::Bool>::from_data(
                TensorData::new(mask, shape),
                &WgpuDevice::default(),
            );
            let run = |ours: bool| {
                let scores = spread(shape, 8.0, 8).require_grad();
                let weights = if ours {
                    op(scores.clone(), 0.125, n, start)
                } else {
                    let masked = scores
                        .clone()
                        .mul_scalar(0.125)
                        .mask_fill(mask.clone(), f32::NEG_INFINITY);
                    burn::tensor::activation::softmax(masked, 2)
                };
                let grads = (weights.clone() * upstream.clone()).sum().backward();
                let d = scores.grad(&grads).expect("the scores have a gradient");
                vec![host(weights), d.into_data().into_vec::<f32>().expect("f32")]
            };
            assert_all_close(
                &["weights", "score gradient"],
                &run(true),
                &run(false),
                max_relative_difference,
                1e-5,
            );
        }
    }

    #[test]
    fn lora_dropout_kernels_match_burns_float_mask() {
        let op = kernels().lora_dropout.expect("a LoRA dropout kernel");
        // 3 × 70 values: the mask's last word is partly used.
        let (n, inputs, r) = (3, 70, 4);
        let mask = Arc::new(DropoutMask::draw(
            &crate::generate::Rng::new(9),
            [n, inputs],
            0.7,
        ));
        let upstream = spread([n, r], 1.0, 10);
        let run = |ours: bool| {
            let x = spread([n, inputs], 2.0, 11).require_grad();
            let a = spread([inputs, r], 0.5, 12).require_grad();
            let y = if ours {
                op(x.clone(), a.clone(), mask.clone(), 0.25)
            } else {
                let m = TensorData::new(mask.floats(0.25), [n, inputs]);
                (x.clone() * Tensor::from_data(m, &WgpuDevice::default())).matmul(a.clone())
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let grad = |t: &Tensor<Ad, 2>| {
                let g = t.grad(&grads).expect("a gradient");
                g.into_data().into_vec::<f32>().expect("f32")
            };
            vec![host(y), grad(&x), grad(&a)]
        };
        assert_all_close(
            &["output", "input gradient", "adapter gradient"],
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }

    #[test]
    fn swiglu_kernels_match_burns_composition() {
        let op = kernels().swiglu.expect("a SwiGLU kernel");
        let shape = [7, 1536];
        let upstream = spread(shape, 1.0, 4);
        let run = |ours: bool| {
            // Gates far enough out that σ saturates at both ends.
            let gate = spread(shape, 12.0, 5).require_grad();
            let up = spread(shape, 2.0, 6).require_grad();
            let y = if ours {
                op(gate.clone(), up.clone())
            } else {
                burn::tensor::activation::silu(gate.clone()) * up.clone()
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let grad = |t: &Tensor<Ad, 2>| {
                let g = t.grad(&grads).expect("a gradient");
                g.into_data().into_vec::<f32>().expect("f32")
            };
            vec![grad(&gate), grad(&up), host(y)]
        };
        assert_all_close(
            &["gate gradient", "up gradient", "output"],
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }
}
