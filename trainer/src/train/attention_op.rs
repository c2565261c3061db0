//! Causal attention as one autodiff operation computed on the host: `softmax(q kᵀ · scale) v`
//! with its backward pass written out, for training sequences (no cached keys before them).
//!
//! burn records the first product, the scaling, the mask, the steps of the softmax and the
//! second product as separate operations, each a pass over memory that keeps tensors alive for
//! the backward pass; on the CPU those took a quarter of a training step. Here each row of
//! probabilities is computed once, only up to the diagonal, and kept for the backward pass
//! (`n²` floats per query head, about what burn kept for one of its steps).

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::model::llama::to_host;
use crate::quant::{Simd, dot_f32};

/// The sizes of one call: `kv` key/value heads, each shared by `group` query heads, `n`
/// positions of `d` values.
#[derive(Debug, Clone, Copy)]
struct Dims {
    kv: usize,
    group: usize,
    n: usize,
    d: usize,
    scale: f32,
}

/// What the backward pass needs: the inputs and the probabilities, row-major.
#[derive(Debug)]
struct Saved {
    dims: Dims,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
}

impl Saved {
    /// Query head `index` and the key/value head it shares.
    fn head(&self, index: usize) -> Head<'_> {
        let Dims { group, n, d, .. } = self.dims;
        let h = index / group;
        Head {
            dims: self.dims,
            q: &self.q[index * n * d..][..n * d],
            k: &self.k[h * n * d..][..n * d],
            v: &self.v[h * n * d..][..n * d],
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(grad));
        let device = grad.device();
        let [dq, dk, dv] = backward_host(&ops.state, &to_host(grad));
        let Dims {
            kv, group, n, d, ..
        } = ops.state.dims;
        for (node, values, rows) in [(q_node, dq, group * n), (k_node, dk, n), (v_node, dv, n)] {
            if let Some(node) = node {
                let t = Tensor::<B, 3>::from_data(TensorData::new(values, [kv, rows, d]), &device);
                grads.register::<B>(node.id, t.into_primitive().tensor());
            }
        }
    }
}

/// Causal attention of `q` `[kv, group·n, d]` (the query heads sharing a key/value head
/// stacked as rows) over `k` and `v` `[kv, n, d]`: the result has `q`'s shape. Query row
/// `g·n + t` sees keys `0..=t`.
pub fn causal_attention_autodiff<B: Backend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 3>,
    k: Tensor<Autodiff<B, C>, 3>,
    v: Tensor<Autodiff<B, C>, 3>,
    scale: f32,
) -> Tensor<Autodiff<B, C>, 3> {
    let [kv, rows, d] = q.dims();
    let n = k.dims()[1];
    let dims = Dims {
        kv,
        group: rows / n,
        n,
        d,
        scale,
    };
    let device = q.device();
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let inner = |t| to_host(Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(t)));
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    let saved = Saved {
        dims,
        q: inner(q.primitive),
        k: inner(k.primitive),
        v: inner(v.primitive),
        probs: Vec::new(),
    };
    let output = |out: Vec<f32>| {
        Tensor::<B, 3>::from_data(TensorData::new(out, [kv, rows, d]), &device)
            .into_primitive()
            .tensor()
    };
    let out = match AttentionBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, probs) = forward_host(&saved);
            let y = output(out);
            prep.finish(Arc::new(Saved { probs, ..saved }), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(output(forward_host(&saved).0)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The output and the probabilities `[kv·group, n, n]` (zero above the diagonal).
fn forward_host(s: &Saved) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        kv, group, n, d, ..
    } = s.dims;
    let simd = Simd::detect();
    let mut out = vec![0.0f32; kv * group * n * d];
    let mut probs = vec![0.0f32; kv * group * n * n];
    out.par_chunks_mut(n * d)
        .zip(probs.par_chunks_mut(n * n))
        .enumerate()
        .for_each(|(head, (out, probs))| {
            let head = s.head(head);
            #[cfg(target_arch = "x86_64")]
            if simd == Simd::Avx2 {
                // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                unsafe { forward_head_avx2(head, out, probs) };
                return;
            }
            let _ = simd;
            forward_head(head, out, probs);
        });
    (out, probs)
}

/// `∂L/∂q`, `∂L/∂k`, `∂L/∂v` from `∂L/∂out`. Each query head works on copies of its key and
/// value gradients, summed per shared head at the end, so the heads run in parallel.
fn backward_host(s: &Saved, grad: &[f32]) -> [Vec<f32>; 3] {
    let Dims {
        kv, group, n, d, ..
    } = s.dims;
    let simd = Simd::detect();
    let heads = kv * group;
    let mut dq = vec![0.0f32; heads * n * d];
    let mut dk_parts = vec![0.0f32; heads * n * d];
    let mut dv_parts = vec![0.0f32; heads * n * d];
    dq.par_chunks_mut(n * d)
        .zip(dk_parts.par_chunks_mut(n * d))
        .zip(dv_parts.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(index, ((dq, dk), dv))| {
            let head = s.head(index);
            let probs = &s.probs[index * n * n..][..n * n];
            let grad = &grad[index * n * d..][..n * d];
            #[cfg(target_arch = "x86_64")]
            if simd == Simd::Avx2 {
                // SAFETY: `Simd::detect` returned Avx2 only after checking AVX2 and FMA.
                unsafe { backward_head_avx2(head, probs, grad, [dq, dk, dv]) };
                return;
            }
            let _ = simd;
            backward_head(head, probs, grad, [dq, dk, dv]);
        });
    let sum_groups = |parts: Vec<f32>| -> Vec<f32> {
        let mut total = vec![0.0f32; kv * n * d];
        for (h, total) in total.chunks_mut(n * d).enumerate() {
            for part in parts[h * group * n * d..][..group * n * d].chunks(n * d) {
                axpy(1.0, part, total);
            }
        }
        total
    };
    [dq, sum_groups(dk_parts), sum_groups(dv_parts)]
}

/// One query head's rows `[n, d]` and the key and value rows it attends to.
#[derive(Clone, Copy)]
struct Head<'a> {
    dims: Dims,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

/// [`forward_head`] compiled for AVX2, so that its loops run 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_head_avx2(head: Head<'_>, out: &mut [f32], probs: &mut [f32]) {
    forward_head(head, out, probs);
}

#[inline(always)]
fn forward_head(head: Head<'_>, out: &mut [f32], probs: &mut [f32]) {
    let Head { dims, q, k, v } = head;
    let Dims { n, d, scale, .. } = dims;
    for t in 0..n {
        let qt = &q[t * d..][..d];
        let p = &mut probs[t * n..][..=t];
        let mut max = f32::NEG_INFINITY;
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = scale * dot_f32(qt, &k[j * d..][..d]);
            max = max.max(*pj);
        }
        let mut sum = 0.0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let ot = &mut out[t * d..][..d];
        for (j, pj) in p.iter_mut().enumerate() {
            *pj /= sum;
            axpy(*pj, &v[j * d..][..d], ot);
        }
    }
}

/// [`backward_head`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_head_avx2(head: Head<'_>, probs: &[f32], grad: &[f32], out: [&mut [f32]; 3]) {
    backward_head(head, probs, grad, out);
}

/// One query head's `∂L/∂q` and its contributions to `∂L/∂k` and `∂L/∂v`.
#[inline(always)]
fn backward_head(head: Head<'_>, probs: &[f32], grad: &[f32], [dq, dk, dv]: [&mut [f32]; 3]) {
    let Head { dims, q, k, v } = head;
    let Dims { n, d, scale, .. } = dims;
    let mut dp = vec![0.0f32; n];
    for t in 0..n {
        let p = &probs[t * n..][..=t];
        let (got, qt) = (&grad[t * d..][..d], &q[t * d..][..d]);
        // ∂L/∂p_j = got · v_j; the softmax's backward subtracts their p-weighted mean.
        let mut mean = 0.0f32;
        for (j, (dpj, pj)) in dp.iter_mut().zip(p).enumerate() {
            *dpj = dot_f32(got, &v[j * d..][..d]);
            mean += pj * *dpj;
        }
        let dqt = &mut dq[t * d..][..d];
        for (j, (&pj, &dpj)) in p.iter().zip(&dp).enumerate() {
            axpy(pj, got, &mut dv[j * d..][..d]);
            let ds = pj * (dpj - mean) * scale;
            axpy(ds, &k[j * d..][..d], dqt);
            axpy(ds, qt, &mut dk[j * d..][..d]);
        }
    }
}

/// `y += a·x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::flex::Flex;
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Distribution};

    use super::*;

    type Ad = Autodiff<Flex, NoCheckpointing>;

    /// burn's separate operations, as the model computes attention with cached keys.
    fn reference(
        q: Tensor<Ad, 3>,
        k: Tensor<Ad, 3>,
        v: Tensor<Ad, 3>,
        scale: f32,
    ) -> Tensor<Ad, 3> {
        let [kv, rows, _] = q.dims();
        let n = k.dims()[1];
        // Row `g·n + t` of every head sees keys `0..=t`.
        let mask: Vec<bool> = (0..kv * rows)
            .flat_map(|r| (0..n).map(move |s| s > r % n))
            .collect();
        let mask =
            Tensor::<Ad, 3, Bool>::from_data(TensorData::new(mask, [kv, rows, n]), &q.device());
        let scores = q
            .matmul(k.swap_dims(1, 2))
            .mul_scalar(scale)
            .mask_fill(mask, f32::NEG_INFINITY);
        softmax(scores, 2).matmul(v)
    }

    #[test]
    fn equals_burns_attention_and_its_gradients() {
        // Two key/value heads shared by three query heads each; 20 values per head, so the
        // dot products' tails (past multiples of 16) are exercised.
        let (kv, group, n, d) = (2, 3, 7, 20);
        let device = Default::default();
        let random = |rows: usize| {
            Tensor::<Flex, 3>::random([kv, rows, d], Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (random(group * n), random(n), random(n));
        let weights = random(group * n);
        let scale = 0.3;
        let run = |fused: bool| {
            let track = |t: &Tensor<Flex, 3>| Tensor::<Ad, 3>::from_inner(t.clone()).require_grad();
            let (q, k, v) = (track(&q), track(&k), track(&v));
            let out = if fused {
                causal_attention_autodiff(q.clone(), k.clone(), v.clone(), scale)
            } else {
                reference(q.clone(), k.clone(), v.clone(), scale)
            };
            // A loss that weighs every output differently.
            let loss = (out.clone() * Tensor::from_inner(weights.clone())).sum();
            let grads = loss.backward();
            let values = |t: Tensor<Flex, 3>| t.into_data().into_vec::<f32>().expect("f32");
            [
                values(out.inner()),
                values(q.grad(&grads).expect("q gradient")),
                values(k.grad(&grads).expect("k gradient")),
                values(v.grad(&grads).expect("v gradient")),
            ]
        };
        let (fused, burn) = (run(true), run(false));
        for (name, (a, b)) in ["output", "dq", "dk", "dv"]
            .iter()
            .zip(fused.iter().zip(&burn))
        {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "{name} differs by {diff}");
        }
    }
}
