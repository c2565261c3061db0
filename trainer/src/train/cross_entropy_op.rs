//! The training loss as one autodiff operation computed on the host: the summed cross-entropy
//! `Σ_r (log Σ_j e^{z_rj} − z_r,target_r)` of a sequence's logits, with its backward pass
//! `∂L/∂z_rj = g · (softmax(z_r)_j − [j = target_r])` written out.
//!
//! burn computes it as a log-softmax (a maximum, a subtraction, an exponential, a sum, a
//! logarithm and another subtraction) and a gather, and its backward as as many steps again:
//! each a pass over `rows × vocabulary` values (50 MB for 256 rows of SmolLM2's 49 152) and a
//! fresh allocation of that size. Here the forward pass reads the logits once and keeps one
//! number per row; the backward pass writes the gradient in one pass.

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::model::llama::{HostValues, to_host};
use crate::quant::{Simd, exp_f32};

/// What the backward pass needs: the logits, each row's `log Σ e^z`, and the targets.
#[derive(Debug, Clone)]
struct Saved {
    logits: HostValues,
    log_sums: Vec<f32>,
    targets: Vec<usize>,
    vocab: usize,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: Backend> Backward<B, 1> for CrossEntropyBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(node) = parent else {
            return;
        };
        let grad = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(grad));
        let device = grad.device();
        let g = to_host(grad)[0];
        // The logits' buffer becomes the gradient's (the state is held only here).
        let s = Arc::try_unwrap(ops.state).unwrap_or_else(|shared| (*shared).clone());
        let simd = Simd::detect();
        let mut dz = s.logits;
        dz.values_mut()
            .par_chunks_mut(s.vocab)
            .zip(&s.log_sums)
            .zip(&s.targets)
            .for_each(|((row, &log_sum), &target)| {
                #[cfg(target_arch = "x86_64")]
                if simd == Simd::Avx2 {
                    // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                    unsafe { row_gradient_avx2(row, log_sum, g) };
                    row[target] -= g;
                    return;
                }
                let _ = simd;
                row_gradient(row, log_sum, g);
                row[target] -= g;
            });
        let dz = dz.into_tensor::<B, 2>(&device);
        grads.register::<B>(node.id, dz.into_primitive().tensor());
    }
}

/// The summed cross-entropy of `logits` `[rows, vocabulary]` against one target per row, a
/// tensor of one value; the gradient flows to the logits.
pub fn cross_entropy_autodiff<B: Backend, C: CheckpointStrategy>(
    logits: Tensor<Autodiff<B, C>, 2>,
    targets: &[usize],
) -> Tensor<Autodiff<B, C>, 1> {
    let [rows, vocab] = logits.dims();
    assert_eq!(rows, targets.len(), "one target per row of logits");
    let device = logits.device();
    let logits = logits.into_primitive().tensor();
    let node = logits.node.clone();
    let values = HostValues::of(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(
        logits.primitive,
    )));
    let simd = Simd::detect();
    let log_sums: Vec<f32> = values
        .values()
        .par_chunks(vocab)
        .map(|row| {
            #[cfg(target_arch = "x86_64")]
            if simd == Simd::Avx2 {
                // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                return unsafe { log_sum_exp_avx2(row) };
            }
            let _ = simd;
            log_sum_exp(row)
        })
        .collect();
    // Summed in f64 in row order: the same total whatever the threads.
    let loss: f64 = values
        .values()
        .chunks(vocab)
        .zip(&log_sums)
        .zip(targets)
        .map(|((row, &log_sum), &target)| f64::from(log_sum - row[target]))
        .sum();
    let out = Tensor::<B, 1>::from_data(TensorData::new(vec![loss as f32], [1]), &device)
        .into_primitive()
        .tensor();
    let out = match CrossEntropyBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            Arc::new(Saved {
                logits: values,
                log_sums,
                targets: targets.to_vec(),
                vocab,
            }),
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`log_sum_exp`] compiled for AVX2, so that its loops run 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log_sum_exp_avx2(row: &[f32]) -> f32 {
    log_sum_exp(row)
}

/// `log Σ e^z` of one row, shifted by its maximum so that no term overflows.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> f32 {
    // Sixteen partial maxima and sums, so the loops vectorise.
    let (chunks, tail) = row.as_chunks::<16>();
    let mut maxima = [f32::NEG_INFINITY; 16];
    for chunk in chunks {
        for k in 0..16 {
            maxima[k] = maxima[k].max(chunk[k]);
        }
    }
    let max = maxima
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut acc = [0.0f32; 16];
    for chunk in chunks {
        for k in 0..16 {
            acc[k] += exp_f32(chunk[k] - max);
        }
    }
    let sum = acc.iter().sum::<f32>() + tail.iter().map(|&z| exp_f32(z - max)).sum::<f32>();
    max + sum.ln()
}

/// [`row_gradient`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_gradient_avx2(row: &mut [f32], log_sum: f32, g: f32) {
    row_gradient(row, log_sum, g);
}

/// `g · softmax(z)` in place of one row of logits `z`.
#[inline(always)]
fn row_gradient(row: &mut [f32], log_sum: f32, g: f32) {
    for z in row.iter_mut() {
        *z = g * exp_f32(*z - log_sum);
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::flex::Flex;
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Distribution, Int};

    use super::*;
    use crate::train::op_testing::{max_abs_difference, values};

    type Ad = Autodiff<Flex, NoCheckpointing>;

    #[test]
    fn equals_burns_log_softmax_loss_and_its_gradient() {
        // 37 classes: the sums' tails past multiples of 8 are exercised. Large logits check
        // that nothing overflows.
        let (rows, vocab) = (5, 37);
        let device = Default::default();
        let logits =
            Tensor::<Flex, 2>::random([rows, vocab], Distribution::Normal(0.0, 30.0), &device);
        let targets = [3usize, 0, 36, 17, 3];
        let run = |fused: bool| {
            let z = Tensor::<Ad, 2>::from_inner(logits.clone()).require_grad();
            let loss = if fused {
                cross_entropy_autodiff(z.clone(), &targets)
            } else {
                let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
                let ids = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &device);
                log_softmax(z.clone(), 1).gather(1, ids).sum().neg()
            };
            // A gradient other than 1 flows in, as when the loss is divided by the tokens.
            let grads = loss.clone().mul_scalar(0.25).backward();
            let loss = loss.into_scalar();
            (loss, values(z.grad(&grads).expect("logit gradient")))
        };
        let ((loss, grad), (want_loss, want_grad)) = (run(true), run(false));
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "loss {loss} against {want_loss}"
        );
        let diff = max_abs_difference(&grad, &want_grad);
        assert!(diff < 1e-6, "gradients differ by {diff}");
    }
}
