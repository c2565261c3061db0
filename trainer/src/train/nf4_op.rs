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

use crate::model::llama::{NF4_DENSE_ROWS, nf4_dense};
use crate::model::nf4_matmul_host;
use crate::quant::Nf4Matrix;

#[derive(Debug)]
struct Nf4Backward;

impl<B: Backend> Backward<B, 1> for Nf4Backward {
    type State = Arc<Nf4Matrix>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
            let [n, _] = grad.dims();
            let device = grad.device();
            if n >= NF4_DENSE_ROWS {
                let grad_x = grad.matmul(nf4_dense::<B>(&ops.state, &device));
                grads.register::<B>(node.id, grad_x.into_primitive().tensor());
                return;
            }
            let g: Vec<f32> = grad
                .into_data()
                .convert::<f32>()
                .into_vec()
                .expect("float tensors convert to f32");
            let matrix = &ops.state;
            let mut out = vec![0.0f32; n * matrix.cols()];
            matrix.matmul(&g, n, &mut out);
            let grad_x =
                Tensor::<B, 2>::from_data(TensorData::new(out, [n, matrix.cols()]), &device);
            grads.register::<B>(node.id, grad_x.into_primitive().tensor());
        }
    }
}

/// `x Wᵀ` for a frozen NF4 `W` on an autodiff backend: the gradient flows to `x` only.
pub fn nf4_matmul_autodiff<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    matrix: &Arc<Nf4Matrix>,
) -> Tensor<Autodiff<B, C>, 2> {
    let x = x.into_primitive().tensor();
    let forward = |primitive| {
        nf4_matmul_host::<B>(
            Tensor::from_primitive(TensorPrimitive::Float(primitive)),
            matrix,
        )
        .into_primitive()
        .tensor()
    };
    let out = match Nf4Backward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(matrix.clone(), forward(x.primitive)),
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
