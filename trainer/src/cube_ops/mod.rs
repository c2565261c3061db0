//! Kernels of our own for the GPU backends (CubeCL: wgpu and CUDA): RMSNorm, the MLP's gated
//! activation, causal attention weights, the rotary embedding and LoRA's dropout, each one
//! launch forward and one backward, for training and (all but dropout) for inference; QLoRA's
//! NF4 dequantisation in one launch where burn's operations take nine; and the gradient's
//! gather in one launch per sixteen tensors where burn's `cat` takes one per tensor.
//!
//! At the batch sizes a desktop fine-tune runs, a GPU step waits on kernel launches, not on
//! arithmetic. Composed of burn's operations, RMSNorm is seven launches forward and about ten
//! backward; `silu(g) · u` is eight forward (burn's sigmoid alone is six) and about as many
//! backward; scaling, masking and softmax of the attention scores are seven forward and a dozen
//! backward; the rotary embedding is four each way plus the copies that put the heads first;
//! and dropout sent a float per value over the bus for each adapted projection, where our kernel
//! hashes each value's index with the mask's key and is sent nothing. A 30-layer
//! model runs 61 norms, 30 activations, 30 softmaxes, 60 rotations and 210 masks a step. The
//! kernels compute the same formulas in f32; the tests compare them with burn's composition.

use std::any::Any;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::SequenceArg;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::model::dropout::DropoutKey;
use crate::model::nf4_tensors::Nf4Dequantize;
use crate::model::{DropoutMask, FusedOps, Nf4Tensors};
use crate::train::ConcatOp;

/// The one of `f::<R, F, I, BT, ...>()` for the CubeCL backends compiled in, with burn's
/// element types for each (`Wgpu` and `Cuda`'s defaults), that is of the type asked for.
macro_rules! per_cube_backend {
    ($f:ident $(, $extra:ident)*) => {
        matching(vec![
            #[cfg(feature = "wgpu")]
            $f::<cubecl::wgpu::WgpuRuntime, f32, i32, u32 $(, $extra)*>(),
            #[cfg(feature = "cuda")]
            $f::<cubecl::cuda::CudaRuntime, f32, i32, u8 $(, $extra)*>(),
        ])
    };
}

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
            rope: Some(rope::<R, F, I, BT, C>),
            ..FusedOps::default()
        })
    }
    per_cube_backend!(ops_of, C)
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
            rope: Some(|x, cos, sin| {
                float(rope_forward(
                    contiguous(x),
                    contiguous(cos.clone()),
                    contiguous(sin.clone()),
                ))
            }),
            ..FusedOps::default()
        })
    }
    per_cube_backend!(ops_of)
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

mod kernels;

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

/// An autodiff operation of one tracked input on a CubeCL backend: `forward` gets the input,
/// laid out row-major, and returns the output and what `backward` keeps (dropped when the
/// input is not tracked).
fn one_input_op<R, F, I, BT, C, Op, const D: usize>(
    backward: Op,
    x: Tensor<AdCube<R, F, I, BT, C>, D>,
    forward: impl FnOnce(CubeTensor<R>) -> (CubeTensor<R>, Op::State),
) -> Tensor<AdCube<R, F, I, BT, C>, D>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
    Op: Backward<Cube<R, F, I, BT>, 1>,
{
    let x = x.into_primitive().tensor();
    let nodes = [x.node.clone()];
    let (out, state) = forward(into_contiguous(x.primitive));
    let out = match backward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The backward pass of a [`one_input_op`]: `input_gradient` gets the output's gradient, laid
/// out row-major, and what the forward pass kept; its result is the input's gradient.
fn one_input_backward<R, F, I, BT, S>(
    ops: Ops<S, 1>,
    grads: &mut Gradients,
    input_gradient: impl FnOnce(CubeTensor<R>, S) -> CubeTensor<R>,
) where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let [node] = ops.parents;
    let grad = into_contiguous(grads.consume::<Cube<R, F, I, BT>>(&ops.node));
    let Some(node) = node else { return };
    grads.register::<Cube<R, F, I, BT>>(node.id, input_gradient(grad, ops.state));
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
        one_input_backward::<R, F, I, BT, _>(ops, grads, |grad, (x, weight, eps)| {
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
            d_x
        });
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
    let weight = into_contiguous(weight.clone().inner().into_primitive().tensor());
    one_input_op(RmsNormBackward, x, |input| {
        let out = rms_norm_forward(input.clone(), weight.clone(), eps);
        (out, (input, weight, eps))
    })
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
        one_input_backward::<R, F, I, BT, _>(ops, grads, |grad, (weights, scale)| {
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
            d_scores
        });
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
    one_input_op(CausalSoftmaxBackward, scores, |input| {
        let out = causal_softmax_forward(input, scale, queries, start);
        (out.clone(), (out, scale))
    })
}

fn dropout_forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    key: DropoutKey,
    factor: f32,
) -> CubeTensor<R> {
    let out = empty_like(&x);
    let (count, dim) = elementwise_grid(&out);
    let dtype = out.dtype;
    kernels::dropout_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        x.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        key.words[0],
        key.words[1],
        key.threshold,
        factor,
        dtype.into(),
    );
    out
}

#[derive(Debug)]
struct DropoutBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 1>
    for DropoutBackward
{
    /// The mask's key and the factor.
    type State = (DropoutKey, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        one_input_backward::<R, F, I, BT, _>(ops, grads, |grad, (key, factor)| {
            dropout_forward(grad, key, factor)
        });
    }
}

/// LoRA's first product with dropout on a CubeCL backend: `(x ⊙ m · factor) Aᵀ`. The kernel
/// draws the mask from its key each way, so nothing is drawn on the host or sent to the device,
/// and it applies the factor with it.
pub fn lora_dropout<R, F, I, BT, C>(
    x: Tensor<AdCube<R, F, I, BT, C>, 2>,
    a_t: Tensor<AdCube<R, F, I, BT, C>, 2>,
    mask: DropoutMask,
    factor: f32,
) -> Tensor<AdCube<R, F, I, BT, C>, 2>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    assert_eq!(x.dims(), mask.dims(), "one mask entry per input value");
    let (key, factor) = (mask.key(), factor * mask.scale());
    let dropped = one_input_op(DropoutBackward, x, |input| {
        (dropout_forward(input, key, factor), (key, factor))
    });
    dropped.matmul(a_t)
}

fn rope_forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    cos: CubeTensor<R>,
    sin: CubeTensor<R>,
) -> CubeTensor<R> {
    let shape = x.meta.shape().clone();
    let (n, heads, d) = (shape[0], shape[1], shape[2]);
    let out = empty_device_dtype(
        x.client.clone(),
        x.device.clone(),
        [heads, n, d].into(),
        x.dtype,
    );
    let (count, dim) = elementwise_grid(&out);
    let dtype = out.dtype;
    kernels::rope_forward_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        x.into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtype.into(),
    );
    out
}

#[derive(Debug)]
struct RopeBackward;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Backward<Cube<R, F, I, BT>, 1>
    for RopeBackward
{
    /// The tables.
    type State = (CubeTensor<R>, CubeTensor<R>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        one_input_backward::<R, F, I, BT, _>(ops, grads, |grad, (cos, sin)| {
            let shape = grad.meta.shape().clone();
            let (heads, n, d) = (shape[0], shape[1], shape[2]);
            let d_x = empty_device_dtype(
                grad.client.clone(),
                grad.device.clone(),
                [n, heads, d].into(),
                grad.dtype,
            );
            let (count, dim) = elementwise_grid(&d_x);
            let dtype = d_x.dtype;
            kernels::rope_backward_kernel::launch::<R>(
                &d_x.client,
                count,
                dim,
                grad.into_tensor_arg(),
                cos.into_tensor_arg(),
                sin.into_tensor_arg(),
                d_x.clone().into_tensor_arg(),
                dtype.into(),
            );
            d_x
        });
    }
}

/// The rotary embedding on a CubeCL backend, one kernel each way: `x` `[n, heads, d]` in,
/// rotated and head-major `[heads, n, d]` out, with the tables `cos` and `sin` `[1, n, d]` of
/// [`crate::model::llama::Rope`]. burn's composition takes four operations each way plus the
/// copies that change the layout.
pub fn rope<R, F, I, BT, C>(
    x: Tensor<AdCube<R, F, I, BT, C>, 3>,
    cos: &Tensor<AdCube<R, F, I, BT, C>, 3>,
    sin: &Tensor<AdCube<R, F, I, BT, C>, 3>,
) -> Tensor<AdCube<R, F, I, BT, C>, 3>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
    C: CheckpointStrategy,
{
    let [n, _, d] = x.dims();
    assert_eq!(cos.dims(), [1, n, d], "one table row per position");
    let table = |t: &Tensor<AdCube<R, F, I, BT, C>, 3>| contiguous(t.clone().inner());
    let (cos, sin) = (table(cos), table(sin));
    one_input_op(RopeBackward, x, |input| {
        let out = rope_forward(input, cos.clone(), sin.clone());
        (out, (cos, sin))
    })
}

/// Tensors one [`concat`] launch copies: a grid row each. At most 31 buffers reach a Metal
/// kernel and 4 KiB of arguments a CUDA one; sixteen stays well inside both.
const CONCAT_PARTS: usize = 16;

/// `parts` end to end, in one launch per [`CONCAT_PARTS`] tensors where burn's `cat` takes one
/// per tensor (an adapter on seven projections of a 30-layer model has 420).
fn concat<R, F, I, BT>(parts: Vec<Tensor<Cube<R, F, I, BT>, 1>>) -> Tensor<Cube<R, F, I, BT>, 1>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    if parts.is_empty() {
        return Tensor::cat(parts, 0);
    }
    let parts: Vec<CubeTensor<R>> = parts.into_iter().map(contiguous).collect();
    let total = parts
        .iter()
        .map(|p| p.meta.shape().num_elements())
        .sum::<usize>();
    let like = &parts[0];
    let out = empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        [total].into(),
        like.dtype,
    );
    let threads = 256u32;
    let mut start = 0;
    for chunk in parts.chunks(CONCAT_PARTS) {
        let longest = chunk
            .iter()
            .map(|p| p.meta.shape().num_elements())
            .max()
            .unwrap_or(0);
        // Threads stride over longer parts; a grid dimension holds at most 65 535 cubes.
        let across = longest
            .div_ceil(threads as usize)
            .clamp(1, u16::MAX as usize);
        let mut tensors = SequenceArg::new();
        let mut offsets = SequenceArg::new();
        for part in chunk {
            offsets.push(start);
            start += part.meta.shape().num_elements();
            tensors.push(part.clone().into_tensor_arg());
        }
        kernels::concat_kernel::launch::<R>(
            &out.client,
            CubeCount::Static(across as u32, chunk.len() as u32, 1),
            CubeDim::new_1d(threads),
            tensors,
            offsets,
            out.clone().into_tensor_arg(),
            out.dtype.into(),
        );
    }
    debug_assert_eq!(start, total);
    float(out)
}

/// Our concatenation for `B`, where `B` is one of the CubeCL backends compiled in.
pub fn concat_for<B: Backend>() -> Option<ConcatOp<B>> {
    fn kernel_of<R, F, I, BT>() -> Box<dyn Any>
    where
        R: CubeRuntime,
        F: FloatElement,
        I: IntElement,
        BT: BoolElement,
    {
        Box::new(concat::<R, F, I, BT> as ConcatOp<Cube<R, F, I, BT>>)
    }
    per_cube_backend!(kernel_of)
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
    per_cube_backend!(kernel_of)
}

#[cfg(all(test, feature = "wgpu"))]
mod tests;
