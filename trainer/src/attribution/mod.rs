//! Which training rows shaped an adapter, measured through its LoRA parameters.
//!
//! **Per-example gradients** of the LoRA parameters only, one row at a time: each row's
//! gradient (a few MB for the default model) is reduced to what the method needs and dropped,
//! so memory does not grow with the number of rows.
//!
//! **DataInf** (Kwon et al., ICLR 2024) estimates the influence of training row `k` on the
//! evaluation loss,
//!
//! ```text
//! I(k) = −Σ_l v_lᵀ (G_l + λ_l I)⁻¹ g_kl
//! ```
//!
//! where `g_kl` is the gradient of row `k`'s loss in layer `l`'s LoRA parameters, `v_l` the mean
//! gradient of the evaluation rows, `G_l = (1/n) Σ_i g_il g_ilᵀ` and the damping
//! `λ_l = mean_i ‖g_il‖² / 10`. DataInf swaps the inverse of the average for the average of
//! the inverses, each of which has a closed form (Sherman–Morrison):
//!
//! ```text
//! (g gᵀ + λ I)⁻¹ = (I − g gᵀ / (λ + ‖g‖²)) / λ
//! I(k) = −Σ_l (v_l·g_kl − w_l·g_kl) / λ_l,   w_l = (1/n) Σ_i (v_l·g_il / (λ_l + ‖g_il‖²)) g_il
//! ```
//!
//! Three passes over the training rows compute it without keeping their gradients: norms and
//! `v·g` (for `λ` and the weights of `w`), then `w`, then the scores. When every gradient fits
//! in the memory budget they are kept after the first pass instead of computed again.

pub mod accuracy;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::backends::BackendKind;
use crate::error::{Error, Result};
use crate::lora::Adapter;
use crate::model::Decoder;
use crate::runtime::OpenedModel;
use crate::train::{
    BasePlacement, Method, Params, Precision, Sequence, load_frozen_base, sequence_loss,
};

/// One example's gradient, flattened per decoder layer (each pair's `Aᵀ` then `Bᵀ`, in
/// [`Params`] order).
pub type LayerGradients = Vec<Vec<f32>>;

/// The gradient of `sequence`'s mean loss per trained token in the adapter's parameters, and
/// that loss; `None` when the sequence trains no token.
pub fn example_gradient<B: Backend, C: CheckpointStrategy>(
    decoder: &Decoder<Autodiff<B, C>>,
    params: &Params<B>,
    layers: usize,
    scaling: f32,
    sequence: &Sequence,
) -> Result<Option<(f64, LayerGradients)>> {
    let trained = sequence.trained_tokens();
    let (lora, leaves) = params.to_lora::<C>(layers, scaling, true, None);
    let Some(loss) = sequence_loss(decoder, &lora, sequence)? else {
        return Ok(None);
    };
    let loss = loss.div_scalar(trained as f64);
    let value = f64::from(loss.clone().into_scalar().elem::<f32>());
    let grads = loss.backward();
    let mut out: LayerGradients = vec![Vec::new(); layers];
    for (i, leaf) in leaves.iter().enumerate() {
        let layer = params.layout[i / 2].0;
        let g: Vec<f32> = match leaf.grad(&grads) {
            Some(g) => g
                .into_data()
                .convert::<f32>()
                .into_vec()
                .map_err(|e| Error::Training {
                    what: format!("reading a gradient: {e:?}"),
                })?,
            // A leaf the loss does not reach (B = 0 blocks A's gradient) has a zero gradient.
            None => vec![0.0; leaf.shape().num_elements()],
        };
        out[layer].extend_from_slice(&g);
    }
    Ok(Some((value, out)))
}

/// The element-wise mean of gradients, per layer.
pub fn mean_gradient(gradients: &[LayerGradients]) -> Result<LayerGradients> {
    let first = gradients.first().ok_or_else(|| Error::Training {
        what: "the evaluation set has no row with trained tokens".into(),
    })?;
    let mut mean: Vec<Vec<f64>> = first.iter().map(|l| vec![0.0; l.len()]).collect();
    for g in gradients {
        for (m, l) in mean.iter_mut().zip(g) {
            for (a, &b) in m.iter_mut().zip(l) {
                *a += f64::from(b);
            }
        }
    }
    let n = gradients.len() as f64;
    Ok(mean
        .into_iter()
        .map(|l| l.into_iter().map(|x| (x / n) as f32).collect())
        .collect())
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// DataInf's figures for one set of training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInf {
    /// Per training row: how much up-weighting it lowers the evaluation loss (`−I(k)`).
    /// Positive: the row helps; negative: it hurts.
    pub scores: Vec<f64>,
    /// The damping of each layer, `mean ‖g‖² / 10`.
    pub lambda: Vec<f64>,
    /// Passes over the training rows' gradients: 1 when they fitted in the budget, else 3.
    pub passes: usize,
}

/// DataInf scores of `n` training rows whose gradients `gradient(i)` computes, against the
/// evaluation rows' mean gradient `eval_mean`. Gradients are kept between passes while
/// `n × parameters × 4` bytes fit in `budget_bytes`; otherwise each pass computes them again.
/// `progress(done, total)` follows the gradient computations; a `false` from `keep_going`
/// stops with [`Error::Cancelled`].
pub fn datainf(
    n: usize,
    eval_mean: &LayerGradients,
    gradient: &mut dyn FnMut(usize) -> Result<LayerGradients>,
    budget_bytes: usize,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<DataInf> {
    if n == 0 {
        return Err(Error::Training {
            what: "no training row to attribute".into(),
        });
    }
    let layers = eval_mean.len();
    let parameters: usize = eval_mean.iter().map(Vec::len).sum();
    let keep = n.saturating_mul(parameters).saturating_mul(4) <= budget_bytes;
    let passes = if keep { 1 } else { 3 };
    let total = n * passes;
    let mut done = 0;
    let mut kept: Vec<LayerGradients> = Vec::new();
    let mut next = |i: usize, kept: &mut Vec<LayerGradients>| -> Result<LayerGradients> {
        if !progress(done, total) {
            return Err(Error::Cancelled);
        }
        let g = match kept.get(i) {
            Some(g) => g.clone(),
            None => {
                let g = gradient(i)?;
                done += 1;
                if g.len() != layers || g.iter().zip(eval_mean).any(|(a, b)| a.len() != b.len()) {
                    return Err(Error::Training {
                        what: format!("row {i}'s gradient has another shape than the evaluation's"),
                    });
                }
                if keep {
                    kept.push(g.clone());
                }
                g
            }
        };
        Ok(g)
    };

    // Pass 1: per row and layer, ‖g‖² and v·g.
    let mut norms = vec![vec![0.0f64; layers]; n];
    let mut along = vec![vec![0.0f64; layers]; n];
    for i in 0..n {
        let g = next(i, &mut kept)?;
        for l in 0..layers {
            norms[i][l] = dot(&g[l], &g[l]);
            along[i][l] = dot(&eval_mean[l], &g[l]);
        }
    }
    let lambda: Vec<f64> = (0..layers)
        .map(|l| (norms.iter().map(|r| r[l]).sum::<f64>() / n as f64 / 10.0).max(f64::MIN_POSITIVE))
        .collect();

    // Pass 2: w_l = (1/n) Σ_i (v_l·g_il / (λ_l + ‖g_il‖²)) g_il.
    let mut w: Vec<Vec<f64>> = eval_mean.iter().map(|l| vec![0.0; l.len()]).collect();
    for i in 0..n {
        let g = next(i, &mut kept)?;
        for l in 0..layers {
            let c = along[i][l] / (lambda[l] + norms[i][l]) / n as f64;
            for (a, &b) in w[l].iter_mut().zip(&g[l]) {
                *a += c * f64::from(b);
            }
        }
    }

    // Pass 3: −I(k) = Σ_l (v_l·g_kl − w_l·g_kl) / λ_l.
    let mut scores = Vec::with_capacity(n);
    for (k, along_k) in along.iter().enumerate() {
        let g = next(k, &mut kept)?;
        let score: f64 = (0..layers)
            .map(|l| {
                let wg: f64 = w[l]
                    .iter()
                    .zip(&g[l])
                    .map(|(&a, &b)| a * f64::from(b))
                    .sum();
                (along_k[l] - wg) / lambda[l]
            })
            .sum();
        scores.push(score);
    }
    progress(done, total);
    Ok(DataInf {
        scores,
        lambda,
        passes,
    })
}

/// What [`attribute`] needs: the base model, the trained adapter and how it was trained, the
/// training rows one by one and the evaluation rows.
pub struct AttributionJob<'a> {
    /// The base model's file or folder.
    pub model: &'a Path,
    /// The adapter whose training rows are scored.
    pub adapter: &'a Adapter,
    /// LoRA or QLoRA: the frozen base as the run had it.
    pub method: Method,
    /// Where to compute.
    pub backend: BackendKind,
    /// Each training row as a sequence of its own.
    pub train: &'a [Sequence],
    /// The evaluation rows.
    pub eval: &'a [Sequence],
    /// Bytes of gradients kept between passes (else they are computed again).
    pub budget_bytes: usize,
}

/// DataInf scores of `job.train` against `job.eval` on `job.backend`. `progress(done, total)`
/// counts gradients; returning `false` cancels.
pub fn attribute(
    job: &AttributionJob<'_>,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<DataInf> {
    if job.eval.iter().all(|s| s.trained_tokens() == 0) {
        return Err(Error::Training {
            what: "the evaluation set has no row with trained tokens: attribution measures \
                   influence on it"
                .into(),
        });
    }
    let opened = OpenedModel::open(job.model)?;
    match job.backend {
        BackendKind::Cpu => attribute_on::<burn::backend::flex::Flex>(job, &opened, progress),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => attribute_on::<burn::backend::wgpu::Wgpu>(job, &opened, progress),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => attribute_on::<burn::backend::cuda::Cuda>(job, &opened, progress),
        #[allow(unreachable_patterns)]
        other => Err(Error::BackendUnavailable {
            backend: other,
            detail: format!("this build does not include it (rebuild with --features {other})"),
        }),
    }
}

fn attribute_on<B: Backend>(
    job: &AttributionJob<'_>,
    opened: &OpenedModel,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<DataInf> {
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;

    let device = B::Device::default();
    let decoder = load_frozen_base::<B, NoCheckpointing>(
        opened.config.clone(),
        &opened.files,
        job.method,
        BasePlacement::for_backend(job.backend, Precision::F32)?,
        &device,
    )?;
    let params = Params::<B>::upload(job.adapter, &device);
    let layers = opened.config.layers;
    let scaling = job.adapter.config.scaling();
    let gradient = |s: &Sequence| example_gradient(&decoder, &params, layers, scaling, s);
    let mut eval = Vec::new();
    for s in job.eval {
        if let Some((_, g)) = gradient(s)? {
            eval.push(g);
        }
    }
    let v = mean_gradient(&eval)?;
    drop(eval);
    let zeros: LayerGradients = v.iter().map(|l| vec![0.0; l.len()]).collect();
    datainf(
        job.train.len(),
        &v,
        // A row with no trained token has no loss and no gradient: it gets a zero score.
        &mut |i| Ok(gradient(&job.train[i])?.map_or_else(|| zeros.clone(), |(_, g)| g)),
        job.budget_bytes,
        progress,
    )
}

/// Shares in basis points of the positive totals of `scores` (negative ones count as zero:
/// a row that hurt is credited nothing and flagged), rounded by largest remainder so they sum
/// to exactly 10 000 unless every score is at most zero (then all are zero).
pub fn basis_points(scores: &[f64]) -> Vec<u16> {
    const TOTAL: u64 = 10_000;
    let positive: Vec<f64> = scores.iter().map(|&s| s.max(0.0)).collect();
    let sum: f64 = positive.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return vec![0; scores.len()];
    }
    let exact: Vec<f64> = positive.iter().map(|p| p / sum * TOTAL as f64).collect();
    let mut bps: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Largest remainder first; ties to the larger score, then the earlier entry.
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra)
            .then(positive[b].total_cmp(&positive[a]))
            .then(a.cmp(&b))
    });
    let missing = TOTAL.saturating_sub(bps.iter().sum());
    for &i in order.iter().take(missing as usize) {
        bps[i] += 1;
    }
    bps.into_iter().map(|b| b as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_ten_thousand_and_credit_no_harm() {
        let bps = basis_points(&[3.0, 1.0, -2.0, 2.0]);
        assert_eq!(bps.iter().map(|&b| u32::from(b)).sum::<u32>(), 10_000);
        assert_eq!(bps[2], 0);
        assert_eq!(bps, vec![5000, 1667, 0, 3333]);
        assert_eq!(basis_points(&[-1.0, 0.0]), vec![0, 0]);
    }
}
