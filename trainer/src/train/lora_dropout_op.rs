//! LoRA's first product with dropout on its input, `(x ⊙ m) Aᵀ`, as one autodiff operation:
//! `∂L/∂Aᵀ = (x ⊙ m)ᵀ ∂L/∂y` and `∂L/∂x = (∂L/∂y · A) ⊙ m`.
//!
//! burn would keep, per adapted projection, the mask as an `n × in` tensor of floats and the
//! masked input as another for the backward pass: 0.2 GB of a SmolLM2 step at sequence 256.
//! Here the mask is a key, from which the backward pass draws it again to mask `x`, which the
//! projections of one input (q, k and v; gate and up) share: what is kept is what training
//! without dropout keeps.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::model::DropoutMask;
use crate::model::llama::HostValues;

/// What the backward pass needs: the unmasked input, `Aᵀ` and the mask (tensors share their
/// buffers with the forward pass's, so keeping them copies nothing).
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    x: Tensor<B, 2>,
    a_t: Tensor<B, 2>,
    mask: DropoutMask,
}

#[derive(Debug)]
struct LoraDropoutBackward;

impl<B: Backend> Backward<B, 2> for LoraDropoutBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, a_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
        let Saved { x, a_t, mask } = ops.state;
        if let Some(node) = a_node {
            let da_t = masked(&x, &mask).transpose().matmul(grad.clone());
            grads.register::<B>(node.id, da_t.into_primitive().tensor());
        }
        if let Some(node) = x_node {
            let dx = masked(&grad.matmul(a_t.transpose()), &mask);
            grads.register::<B>(node.id, dx.into_primitive().tensor());
        }
    }
}

/// `t ⊙ m`, kept values scaled by `1 / keep`.
fn masked<B: Backend>(t: &Tensor<B, 2>, mask: &DropoutMask) -> Tensor<B, 2> {
    let mut values = HostValues::of(t.clone());
    mask.apply(values.values_mut());
    values.into_tensor(&t.device())
}

/// `(x ⊙ mask) a_t · factor` for `x` `[n, in]` and `a_t` `[in, r]`; the gradient flows to
/// both. The factor applies at rank width, the narrowest place.
pub fn lora_dropout_autodiff<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    a_t: Tensor<Autodiff<B, C>, 2>,
    mask: DropoutMask,
    factor: f32,
) -> Tensor<Autodiff<B, C>, 2> {
    assert_eq!(x.dims(), mask.dims(), "one mask entry per input value");
    let (x, a_t) = (x.into_primitive().tensor(), a_t.into_primitive().tensor());
    let nodes = [x.node.clone(), a_t.node.clone()];
    let inner = |t| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t));
    let (x, a_t) = (inner(x.primitive), inner(a_t.primitive));
    let y = masked(&x, &mask).matmul(a_t.clone());
    let y = y.into_primitive().tensor();
    let out = match LoraDropoutBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(Saved { x, a_t, mask }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::<Autodiff<B, C>, 2>::from_primitive(TensorPrimitive::Float(out)).mul_scalar(factor)
}

#[cfg(test)]
mod tests {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::flex::Flex;
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::train::op_testing::{assert_all_close, max_abs_difference, values};

    type Ad = Autodiff<Flex, NoCheckpointing>;

    #[test]
    fn equals_burns_product_with_a_float_mask_and_its_gradients() {
        let (n, inputs, r) = (3, 70, 4);
        let device = Default::default();
        let random =
            |dims: [usize; 2]| Tensor::<Flex, 2>::random(dims, Distribution::Default, &device);
        let (x0, a0, w) = (random([n, inputs]), random([inputs, r]), random([n, r]));
        let mask = DropoutMask::new(7, [n, inputs], 0.7);
        let dropped = mask.floats(1.0).iter().filter(|&&m| m == 0.0).count();
        assert!(
            dropped > 20 && dropped < 110,
            "{dropped} of 210 dropped at p = 0.3"
        );
        let run = |fused: bool| {
            let x = Tensor::<Ad, 2>::from_inner(x0.clone()).require_grad();
            let a = Tensor::<Ad, 2>::from_inner(a0.clone()).require_grad();
            let y = if fused {
                lora_dropout_autodiff(x.clone(), a.clone(), mask, 0.5)
            } else {
                let m = TensorData::new(mask.floats(0.5), [n, inputs]);
                (x.clone() * Tensor::from_data(m, &device)).matmul(a.clone())
            };
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            [
                values(y.inner()),
                values(x.grad(&grads).expect("input gradient")),
                values(a.grad(&grads).expect("adapter gradient")),
            ]
        };
        let names = ["output", "input gradient", "adapter gradient"];
        assert_all_close(&names, &run(true), &run(false), max_abs_difference, 1e-5);
    }
}
