//! Causal self-attention as one autodiff operation computed on the host, rotary positions
//! included: `softmax(rope(q) rope(k)ᵀ · scale) v` with its backward pass written out, for
//! training sequences (no cached keys before them).
//!
//! burn records the rotations, the moves between the projections' `[n, heads·d]` layout and
//! the heads' `[heads, n, d]`, the first product, the scaling, the mask, the steps of the
//! softmax and the second product as separate operations, each a pass over memory that keeps
//! tensors alive for the backward pass; on the CPU those took a quarter of a training step.
//! Here the rotation and the change of layout happen in the copy the operation makes anyway,
//! each row of probabilities is computed once, only up to the diagonal, and kept for the
//! backward pass (`n²` floats per query head, about what burn kept for one of its steps).

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::model::llama::{AttentionShape, HostValues, RopeTables};
use crate::quant::{Simd, dot_f32, exp_f32, sum_f32};

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

/// What the backward pass needs: the rotated inputs in head-major layout, the rotation, and
/// the probabilities.
#[derive(Debug)]
struct Saved {
    dims: Dims,
    rope: Arc<RopeTables>,
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
        let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
        let device = grad.device();
        let saved = &ops.state;
        let Dims {
            kv, group, n, d, ..
        } = saved.dims;
        let grad = to_heads(HostValues::of(grad).values(), kv * group, n, d, None);
        let [dq, dk, dv] = backward_host(saved, &grad);
        // The rotation's transpose is its inverse: the gradients turn back by the same angles.
        let rope = Some((saved.rope.as_ref(), Turn::Back));
        for (node, values, heads, rope) in [
            (q_node, dq, kv * group, rope),
            (k_node, dk, kv, rope),
            (v_node, dv, kv, None),
        ] {
            if let Some(node) = node {
                let values = to_rows(&values, heads, n, d, rope);
                let t = Tensor::<B, 2>::from_data(TensorData::new(values, [n, heads * d]), &device);
                grads.register::<B>(node.id, t.into_primitive().tensor());
            }
        }
    }
}

/// Causal self-attention of a sequence's projections, q `[n, heads·d]` over k and v
/// `[n, kv_heads·d]`, with q and k turned by the rotary angles of their positions first; the
/// result is `[n, heads·d]`. Position `t` sees positions `0..=t`; query head `h` uses key/value
/// head `h / (heads / kv_heads)`.
pub fn causal_attention_autodiff<B: Backend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 2>,
    k: Tensor<Autodiff<B, C>, 2>,
    v: Tensor<Autodiff<B, C>, 2>,
    shape: &AttentionShape,
) -> Tensor<Autodiff<B, C>, 2> {
    let [n, _] = q.dims();
    let (heads, kv, d) = (shape.heads, shape.kv_heads, shape.head_dim);
    let dims = Dims {
        kv,
        group: heads / kv,
        n,
        d,
        scale: shape.scale,
    };
    let device = q.device();
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let rope = Some((shape.rope.as_ref(), Turn::Forward));
    let inner = |t, heads, rope| {
        let rows = HostValues::of(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)));
        to_heads(rows.values(), heads, n, d, rope)
    };
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    let saved = Saved {
        dims,
        rope: shape.rope.clone(),
        q: inner(q.primitive, heads, rope),
        k: inner(k.primitive, kv, rope),
        v: inner(v.primitive, kv, None),
        probs: Vec::new(),
    };
    let output = |out: Vec<f32>| {
        let rows = to_rows(&out, heads, n, d, None);
        Tensor::<B, 2>::from_data(TensorData::new(rows, [n, heads * d]), &device)
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

/// Which way [`to_heads`] and [`to_rows`] turn each head's pairs of values.
#[derive(Debug, Clone, Copy)]
enum Turn {
    /// By the positions' angles: `(a, b) → (a·cos − b·sin, a·sin + b·cos)`.
    Forward,
    /// Back by the same angles (the transpose, for gradients).
    Back,
}

/// Turns the pair `(a, b)` at one position and frequency.
#[inline(always)]
fn turn(a: f32, b: f32, cos: f32, sin: f32, way: Turn) -> (f32, f32) {
    match way {
        Turn::Forward => (a * cos - b * sin, a * sin + b * cos),
        Turn::Back => (a * cos + b * sin, b * cos - a * sin),
    }
}

/// `[n, heads·d]` rows to `[heads, n, d]`, turning the halves of each head's values as
/// `rope` says (the Hugging Face "rotate_half" layout).
fn to_heads(
    rows: &[f32],
    heads: usize,
    n: usize,
    d: usize,
    rope: Option<(&RopeTables, Turn)>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; heads * n * d];
    out.par_chunks_mut(n * d).enumerate().for_each(|(h, out)| {
        for (t, out) in out.chunks_exact_mut(d).enumerate() {
            let x = &rows[t * heads * d + h * d..][..d];
            move_head(x, out, t, rope);
        }
    });
    out
}

/// `[heads, n, d]` to `[n, heads·d]` rows, turning as `rope` says.
fn to_rows(
    by_head: &[f32],
    heads: usize,
    n: usize,
    d: usize,
    rope: Option<(&RopeTables, Turn)>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * heads * d];
    out.par_chunks_mut(heads * d)
        .enumerate()
        .for_each(|(t, out)| {
            for (h, out) in out.chunks_exact_mut(d).enumerate() {
                let x = &by_head[(h * n + t) * d..][..d];
                move_head(x, out, t, rope);
            }
        });
    out
}

/// One head's `d` values at position `t`, copied into `out` and turned as `rope` says.
#[inline(always)]
fn move_head(x: &[f32], out: &mut [f32], t: usize, rope: Option<(&RopeTables, Turn)>) {
    let Some((tables, way)) = rope else {
        out.copy_from_slice(x);
        return;
    };
    let half = x.len() / 2;
    let (cos, sin) = (
        &tables.cos[t * half..][..half],
        &tables.sin[t * half..][..half],
    );
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for i in 0..half {
        (o1[i], o2[i]) = turn(x1[i], x2[i], cos[i], sin[i], way);
    }
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

/// Rows per block of the products. Row `t` attends to keys `0..=t`, so a block of rows needs
/// the keys up to its last row only: blocks skip most of the products' zeros above the
/// diagonal (10 of 16 blocks computed at n = 256) while each product stays large enough for the
/// matrix kernels.
const BLOCK: usize = 64;

/// A matrix in a slice: `rows × cols`, element `(i, j)` at `i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// Rows of `cols` values, `rs` apart, from the start of `data`.
    fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }

    /// The transpose: the same values read the other way.
    fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = alpha · lhs · rhs`, `dst` row-major `[lhs.rows, rhs.cols]` with rows `dst_rs` apart,
/// by the `gemm` crate's kernels (the ones burn's CPU backend uses), on this thread.
fn product(dst: &mut [f32], dst_rs: usize, lhs: Mat<'_>, rhs: Mat<'_>, alpha: f32) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        lhs.fits() && rhs.fits() && k == rhs.rows,
        "product of mismatched matrices"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "product larger than its destination"
    );
    if k == 0 {
        for row in dst.chunks_mut(dst_rs).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    // SAFETY: the assertions above keep every element gemm reads (in `lhs` and `rhs`) and
    // writes (in `dst`) inside its slice; `dst` is borrowed mutably, so nothing aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The blocks of `0..n`, `BLOCK` at a time.
fn blocks(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n)
        .step_by(BLOCK)
        .map(move |r0| (r0, (r0 + BLOCK).min(n)))
}

/// [`forward_head`] compiled for AVX2, so that its softmax loops run 8 lanes wide (the products
/// choose their kernels themselves).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_head_avx2(head: Head<'_>, out: &mut [f32], probs: &mut [f32]) {
    forward_head(head, out, probs);
}

/// One query head's output `[n, d]` and probabilities `[n, n]` (`probs` starts zeroed and keeps
/// zeros above the diagonal).
#[inline(always)]
fn forward_head(head: Head<'_>, out: &mut [f32], probs: &mut [f32]) {
    let Head { dims, q, k, v } = head;
    let Dims { n, d, scale, .. } = dims;
    for (r0, r1) in blocks(n) {
        let rows = r1 - r0;
        let scores = &mut probs[r0 * n..r1 * n];
        product(
            scores,
            n,
            Mat::rows(&q[r0 * d..], rows, d, d),
            Mat::rows(k, r1, d, d).t(),
            scale,
        );
        softmax_rows(scores, n, r0, r1);
        let p = Mat::rows(&probs[r0 * n..], rows, r1, n);
        product(&mut out[r0 * d..], d, p, Mat::rows(v, r1, d, d), 1.0);
    }
}

/// Rows `r0..r1` of scores (rows `n` apart, keys `0..r1` filled): each row `t` becomes the
/// softmax of its keys `0..=t`, with zeros after.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], n: usize, r0: usize, r1: usize) {
    for (t, row) in (r0..r1).zip(scores.chunks_mut(n)) {
        let (p, after) = row[..r1].split_at_mut(t + 1);
        after.fill(0.0);
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for pj in p.iter_mut() {
            *pj = exp_f32(*pj - max);
        }
        let inv = 1.0 / sum_f32(p);
        for pj in p.iter_mut() {
            *pj *= inv;
        }
    }
}

/// [`backward_head`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_head_avx2(head: Head<'_>, probs: &[f32], grad: &[f32], out: [&mut [f32]; 3]) {
    backward_head(head, probs, grad, out);
}

/// One query head's `∂L/∂q` and its contributions to `∂L/∂k` and `∂L/∂v`:
/// `∂L/∂P = G Vᵀ`, `∂L/∂S = P ⊙ (∂L/∂P − rowsum(P ⊙ ∂L/∂P)) · scale`, then `∂L/∂Q = ∂L/∂S K`,
/// `∂L/∂K = ∂L/∂Sᵀ Q` and `∂L/∂V = Pᵀ G`.
#[inline(always)]
fn backward_head(head: Head<'_>, probs: &[f32], grad: &[f32], [dq, dk, dv]: [&mut [f32]; 3]) {
    let Head { dims, q, k, v } = head;
    let Dims { n, d, scale, .. } = dims;
    // ∂L/∂S, zero above the diagonal as the probabilities are.
    let mut ds = vec![0.0f32; n * n];
    for (r0, r1) in blocks(n) {
        let rows = r1 - r0;
        let block = &mut ds[r0 * n..r1 * n];
        product(
            block,
            n,
            Mat::rows(&grad[r0 * d..], rows, d, d),
            Mat::rows(v, r1, d, d).t(),
            1.0,
        );
        let p = &probs[r0 * n..r1 * n];
        score_gradient_rows(block, p, n, r0, r1, scale);
        let ds = Mat::rows(&ds[r0 * n..], rows, r1, n);
        product(&mut dq[r0 * d..], d, ds, Mat::rows(k, r1, d, d), 1.0);
    }
    // Keys `c0..c1` are attended to by rows `c0..n` only.
    for (c0, c1) in blocks(n) {
        let (cols, rows) = (c1 - c0, n - c0);
        let ds = Mat::rows(&ds[c0 * n + c0..], rows, cols, n).t();
        product(
            &mut dk[c0 * d..],
            d,
            ds,
            Mat::rows(&q[c0 * d..], rows, d, d),
            1.0,
        );
        let p = Mat::rows(&probs[c0 * n + c0..], rows, cols, n).t();
        product(
            &mut dv[c0 * d..],
            d,
            p,
            Mat::rows(&grad[c0 * d..], rows, d, d),
            1.0,
        );
    }
}

/// Rows `r0..r1` of `∂L/∂P` (keys `0..r1` filled) become `∂L/∂S`, zero after the diagonal.
#[inline(always)]
fn score_gradient_rows(dp: &mut [f32], p: &[f32], n: usize, r0: usize, r1: usize, scale: f32) {
    for (t, (dp, p)) in (r0..r1).zip(dp.chunks_mut(n).zip(p.chunks(n))) {
        let (dp, after) = dp[..r1].split_at_mut(t + 1);
        after.fill(0.0);
        let p = &p[..=t];
        let mean = dot_f32(p, dp);
        for (g, &pj) in dp.iter_mut().zip(p) {
            *g = pj * (*g - mean) * scale;
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
    use crate::model::llama::{Rope, half_swap};
    use crate::train::op_testing::{assert_all_close, max_abs_difference, values};

    type Ad = Autodiff<Flex, NoCheckpointing>;

    /// burn's separate operations, as the model computes attention with cached keys.
    fn reference(
        q: Tensor<Ad, 2>,
        k: Tensor<Ad, 2>,
        v: Tensor<Ad, 2>,
        shape: &AttentionShape,
    ) -> Tensor<Ad, 2> {
        let [n, _] = q.dims();
        let (heads, kv, d) = (shape.heads, shape.kv_heads, shape.head_dim);
        let device = q.device();
        let rope = Rope::new(&shape.rope, n, &half_swap(d, &device));
        let split = |x: Tensor<Ad, 2>, heads: usize| x.reshape([n, heads, d]);
        let q = rope
            .apply(split(q, heads), None)
            .reshape([kv, heads / kv * n, d]);
        let k = rope.apply(split(k, kv), None);
        let v = split(v, kv).swap_dims(0, 1);
        // Row `g·n + t` of every key/value head sees keys `0..=t`.
        let rows = heads / kv * n;
        let mask: Vec<bool> = (0..kv * rows)
            .flat_map(|r| (0..n).map(move |s| s > r % n))
            .collect();
        let mask = Tensor::<Ad, 3, Bool>::from_data(TensorData::new(mask, [kv, rows, n]), &device);
        let scores = q
            .matmul(k.swap_dims(1, 2))
            .mul_scalar(shape.scale)
            .mask_fill(mask, f32::NEG_INFINITY);
        softmax(scores, 2)
            .matmul(v)
            .reshape([heads, n, d])
            .swap_dims(0, 1)
            .reshape([n, heads * d])
    }

    #[test]
    fn equals_burns_attention_and_its_gradients() {
        // Two key/value heads shared by three query heads each; 20 values per head, so the
        // dot products' tails (past multiples of 16) are exercised; positions over two and a
        // bit blocks, so the blocked products' last, partial block is too.
        let (kv, heads, n, d) = (2, 6, 2 * BLOCK + 7, 20);
        let device = Default::default();
        let random = |width: usize| {
            Tensor::<Flex, 2>::random([n, width], Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (random(heads * d), random(kv * d), random(kv * d));
        let weights = random(heads * d);
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for t in 0..n {
            for i in 0..d / 2 {
                let angle = t as f64 * 10_000f64.powf(-2.0 * i as f64 / d as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = AttentionShape {
            heads,
            kv_heads: kv,
            head_dim: d,
            scale: 0.3,
            rope: Arc::new(RopeTables { cos, sin }),
        };
        let run = |fused: bool| {
            let track = |t: &Tensor<Flex, 2>| Tensor::<Ad, 2>::from_inner(t.clone()).require_grad();
            let (q, k, v) = (track(&q), track(&k), track(&v));
            let out = if fused {
                causal_attention_autodiff(q.clone(), k.clone(), v.clone(), &shape)
            } else {
                reference(q.clone(), k.clone(), v.clone(), &shape)
            };
            // A loss that weighs every output differently.
            let loss = (out.clone() * Tensor::from_inner(weights.clone())).sum();
            let grads = loss.backward();
            [
                values(out.inner()),
                values(q.grad(&grads).expect("q gradient")),
                values(k.grad(&grads).expect("k gradient")),
                values(v.grad(&grads).expect("v gradient")),
            ]
        };
        let names = ["output", "dq", "dk", "dv"];
        assert_all_close(&names, &run(true), &run(false), max_abs_difference, 1e-5);
    }
}
