//! The gated activation of the MLP, `silu(g) · u` with `silu(g) = g · σ(g)`, as one autodiff
//! operation computed on the host, with its backward pass written out:
//! `∂L/∂u = ∂L/∂y · silu(g)` and `∂L/∂g = ∂L/∂y · u · σ(g) · (1 + g · (1 − σ(g)))`.
//!
//! burn records it as a sigmoid, two products and their backward steps, keeps four
//! `rows × width` tensors per layer for the backward pass (σ(g), g, silu(g) and u) and calls the
//! C library's `expf` once per value. Here one pass computes the output, the backward pass is
//! one pass too, only g and u are kept, and the exponential is ours, 8 lanes wide.

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::model::llama::HostValues;
use crate::quant::{Simd, exp_f32};

/// Values per parallel task: large enough that a task outweighs its scheduling.
const PART: usize = 1 << 14;

/// What the backward pass needs: the two inputs as the forward pass read them.
#[derive(Debug)]
struct Saved {
    gate: HostValues,
    up: HostValues,
    dims: [usize; 2],
}

#[derive(Debug)]
struct SwigluBackward;

impl<B: Backend> Backward<B, 2> for SwigluBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
        let device = grad.device();
        let s = &ops.state;
        // The incoming gradient's buffer becomes the gate's; the up input's is a new one.
        let mut d_gate = HostValues::of(grad);
        let mut d_up = vec![0.0f32; d_gate.values().len()];
        let simd = Simd::detect();
        d_gate
            .values_mut()
            .par_chunks_mut(PART)
            .zip(d_up.par_chunks_mut(PART))
            .zip(
                s.gate
                    .values()
                    .par_chunks(PART)
                    .zip(s.up.values().par_chunks(PART)),
            )
            .for_each(|((dg, du), (g, u))| {
                #[cfg(target_arch = "x86_64")]
                if simd == Simd::Avx2 {
                    // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                    return unsafe { backward_avx2(dg, du, g, u) };
                }
                let _ = simd;
                backward_part(dg, du, g, u);
            });
        if let Some(node) = gate_node {
            let t = d_gate.into_tensor::<B, 2>(&device);
            grads.register::<B>(node.id, t.into_primitive().tensor());
        }
        if let Some(node) = up_node {
            let t = Tensor::<B, 2>::from_data(TensorData::new(d_up, s.dims), &device);
            grads.register::<B>(node.id, t.into_primitive().tensor());
        }
    }
}

/// `silu(gate) · up`, element by element, for two tensors of the same shape.
pub fn swiglu_autodiff<B: Backend, C: CheckpointStrategy>(
    gate: Tensor<Autodiff<B, C>, 2>,
    up: Tensor<Autodiff<B, C>, 2>,
) -> Tensor<Autodiff<B, C>, 2> {
    let dims = gate.dims();
    assert_eq!(dims, up.dims(), "the gate and up inputs have one shape");
    let device = gate.device();
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let host = |t| HostValues::of(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)));
    let nodes = [gate.node.clone(), up.node.clone()];
    let saved = Saved {
        gate: host(gate.primitive),
        up: host(up.primitive),
        dims,
    };
    let forward = |s: &Saved| {
        let mut out = vec![0.0f32; s.gate.values().len()];
        let simd = Simd::detect();
        out.par_chunks_mut(PART)
            .zip(
                s.gate
                    .values()
                    .par_chunks(PART)
                    .zip(s.up.values().par_chunks(PART)),
            )
            .for_each(|(out, (g, u))| {
                #[cfg(target_arch = "x86_64")]
                if simd == Simd::Avx2 {
                    // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                    return unsafe { forward_avx2(out, g, u) };
                }
                let _ = simd;
                forward_part(out, g, u);
            });
        Tensor::<B, 2>::from_data(TensorData::new(out, s.dims), &device)
            .into_primitive()
            .tensor()
    };
    let out = match SwigluBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(&saved);
            prep.finish(Arc::new(saved), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&saved)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `σ(x) = 1 / (1 + e⁻ˣ)`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// [`forward_part`] compiled for AVX2, so that its loop runs 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(out: &mut [f32], gate: &[f32], up: &[f32]) {
    forward_part(out, gate, up);
}

#[inline(always)]
fn forward_part(out: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
}

/// [`backward_part`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32]) {
    backward_part(d_gate, d_up, gate, up);
}

/// `d_gate` holds the incoming gradient and becomes the gate's; `d_up` gets the up input's.
#[inline(always)]
fn backward_part(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32]) {
    for (((dg, du), &g), &u) in d_gate.iter_mut().zip(d_up).zip(gate).zip(up) {
        let s = sigmoid(g);
        let dy = *dg;
        *du = dy * g * s;
        *dg = dy * u * s * (1.0 + g * (1.0 - s));
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::flex::Flex;
    use burn::tensor::Distribution;
    use burn::tensor::activation::silu;

    use super::*;
    use crate::train::op_testing::{assert_all_close, max_relative_difference, values};

    type Ad = Autodiff<Flex, NoCheckpointing>;

    #[test]
    fn equals_burns_silu_product_and_its_gradients() {
        // More values than one parallel part, and a count that is not a multiple of 8, so the
        // parts' and the vector loops' tails are exercised; σ = 6 reaches the sigmoid's flat
        // ends on both sides.
        let dims = [7, PART / 3 + 5];
        let device = Default::default();
        let input = || Tensor::<Flex, 2>::random(dims, Distribution::Normal(0.0, 6.0), &device);
        let (gate, up, weight) = (input(), input(), input());
        let run = |fused: bool| {
            let g = Tensor::<Ad, 2>::from_inner(gate.clone()).require_grad();
            let u = Tensor::<Ad, 2>::from_inner(up.clone()).require_grad();
            let y = if fused {
                swiglu_autodiff(g.clone(), u.clone())
            } else {
                silu(g.clone()) * u.clone()
            };
            // A weighted sum, so each output's gradient differs.
            let grads = (y.clone() * Tensor::from_inner(weight.clone()))
                .sum()
                .backward();
            [
                values(y.inner()),
                values(g.grad(&grads).expect("gate gradient")),
                values(u.grad(&grads).expect("up gradient")),
            ]
        };
        let names = ["output", "gate gradient", "up gradient"];
        assert_all_close(
            &names,
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }
}
