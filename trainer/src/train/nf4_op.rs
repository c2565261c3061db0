//! The QLoRA base projection as an autodiff operation: `y = x Wᵀ` with `W` in NF4.
//!
//! Written by hand because burn would keep a dequantised copy of every weight alive from the
//! forward pass to the backward pass; this operation keeps only the NF4 matrix and
//! dequantises it again for `∂L/∂x = ∂L/∂y · W`. `W` is frozen, so it gets no gradient.

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::model::llama::{HostValues, NF4_DENSE_ROWS, nf4_dense};
use crate::model::{Nf4Tensors, Nf4Weight, nf4_matmul_host};
use crate::quant::Nf4Matrix;

#[derive(Debug)]
struct Nf4Backward;

/// What the backward pass keeps of the weight: the NF4 codes, never a dequantised copy.
#[derive(Debug, Clone)]
enum Nf4State<B: Backend> {
    Host(Arc<Nf4Matrix>),
    Device(Nf4Tensors<B>),
}

impl<B: Backend> Backward<B, 1> for Nf4Backward {
    type State = Nf4State<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
            let grad_x = match &ops.state {
                Nf4State::Device(tensors) => tensors.backward(grad),
                Nf4State::Host(matrix) => host_backward(grad, matrix),
            };
            grads.register::<B>(node.id, grad_x.into_primitive().tensor());
        }
    }
}

/// `∂L/∂x = ∂L/∂y · W` with `W` in host memory.
fn host_backward<B: Backend>(grad: Tensor<B, 2>, matrix: &Nf4Matrix) -> Tensor<B, 2> {
    let [n, _] = grad.dims();
    let device = grad.device();
    if n >= NF4_DENSE_ROWS {
        return grad.matmul(nf4_dense::<B>(matrix, &device));
    }
    let g = HostValues::of(grad);
    let mut out = vec![0.0f32; n * matrix.cols()];
    matrix.matmul(g.values(), n, &mut out);
    Tensor::<B, 2>::from_data(TensorData::new(out, [n, matrix.cols()]), &device)
}

/// `x Wᵀ` for a frozen NF4 `W` on an autodiff backend: the gradient flows to `x` only.
pub fn nf4_matmul_autodiff<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    weight: &Nf4Weight<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 2> {
    let state = match weight {
        Nf4Weight::Host(matrix) => Nf4State::Host(matrix.clone()),
        Nf4Weight::Device(tensors) => Nf4State::Device(tensors.inner()),
    };
    let x = x.into_primitive().tensor();
    let forward = |primitive, state: &Nf4State<B>| {
        let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(primitive));
        let y = match state {
            Nf4State::Host(matrix) => nf4_matmul_host::<B>(x, &Nf4Weight::Host(matrix.clone())),
            Nf4State::Device(tensors) => tensors.forward(x),
        };
        y.into_primitive().tensor()
    };
    let out = match Nf4Backward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.primitive, &state);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, &state)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
