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
//! Three passes over the training rows compute it: norms and `v·g` (for `λ` and the weights of
//! `w`), then `w`, then the scores. The gradients are computed once, in the first pass, and
//! kept for the other two: in memory when they fit the budget, else as bf16 in a scratch file
//! (half the bytes; the norms and `v·g` come from the exact f32 values). Without a scratch
//! folder, or when the disk fills, each pass computes them again.

pub mod accuracy;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::backends::{BackendKind, on_backend};
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

/// Each layer's damping as a fraction of its mean squared gradient norm (DataInf's choice).
pub const DAMPING: f64 = 0.1;

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
    /// Times each training row's gradient was computed: 1 when they were kept (in memory or
    /// on disk), else 3.
    pub passes: usize,
}

/// Where [`datainf`] keeps the training rows' gradients between its passes.
#[derive(Debug, Clone, Copy)]
pub struct GradientStore<'a> {
    /// Bytes of f32 gradients kept in memory.
    pub memory_bytes: usize,
    /// A folder for a bf16 scratch file when they do not fit in memory; `None`: compute them
    /// again in each pass.
    pub spill_dir: Option<&'a Path>,
}

impl GradientStore<'_> {
    /// Everything in memory.
    pub const MEMORY: GradientStore<'static> = GradientStore {
        memory_bytes: usize::MAX,
        spill_dir: None,
    };
    /// Nothing kept: every pass computes the gradients again.
    pub const RECOMPUTE: GradientStore<'static> = GradientStore {
        memory_bytes: 0,
        spill_dir: None,
    };
}

/// Gradients kept after the first pass.
enum Kept {
    Memory(Vec<LayerGradients>),
    /// Row after row of bf16 values, each row `row_values` long.
    Disk {
        file: std::io::BufWriter<std::fs::File>,
        row_values: usize,
    },
    /// None: compute again.
    Nothing,
}

impl Kept {
    fn push(&mut self, g: &LayerGradients) {
        match self {
            Kept::Memory(rows) => rows.push(g.clone()),
            Kept::Disk { file, .. } => {
                let bytes: Vec<u8> = g
                    .iter()
                    .flatten()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect();
                if let Err(e) = std::io::Write::write_all(file, &bytes) {
                    // A full disk costs time, not the result: compute again instead.
                    tracing::warn!("gradients no longer fit on disk ({e}); computing them again");
                    *self = Kept::Nothing;
                }
            }
            Kept::Nothing => {}
        }
    }

    /// Row `i`, shaped like `like`, or `None` when it must be computed again.
    fn get(&mut self, i: usize, like: &LayerGradients) -> Result<Option<LayerGradients>> {
        use std::io::{Read, Seek, SeekFrom};
        match self {
            Kept::Memory(rows) => Ok(rows.get(i).cloned()),
            Kept::Disk { file, row_values } => {
                let io = |e: std::io::Error| Error::Training {
                    what: format!("reading gradients back from the scratch file: {e}"),
                };
                let bytes = *row_values * 2;
                let f = file.get_mut();
                f.seek(SeekFrom::Start((i * bytes) as u64)).map_err(io)?;
                let mut raw = vec![0u8; bytes];
                f.read_exact(&mut raw).map_err(io)?;
                let mut values = raw
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32());
                Ok(Some(
                    like.iter()
                        .map(|l| values.by_ref().take(l.len()).collect())
                        .collect(),
                ))
            }
            Kept::Nothing => Ok(None),
        }
    }

    /// Makes everything written readable.
    fn finish_writing(&mut self) {
        if let Kept::Disk { file, .. } = self
            && let Err(e) = std::io::Write::flush(file)
        {
            tracing::warn!("gradients no longer fit on disk ({e}); computing them again");
            *self = Kept::Nothing;
        }
    }

    fn computes_again(&self) -> bool {
        matches!(self, Kept::Nothing)
    }
}

/// DataInf scores of `n` training rows whose gradients `gradient(i)` computes, against the
/// evaluation rows' mean gradient `eval_mean`, keeping the gradients between passes as `store`
/// allows. `progress(done, total)` follows the gradient computations; a `false` from it stops
/// with [`Error::Cancelled`].
pub fn datainf(
    n: usize,
    eval_mean: &LayerGradients,
    gradient: &mut dyn FnMut(usize) -> Result<LayerGradients>,
    store: GradientStore<'_>,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<DataInf> {
    if n == 0 {
        return Err(Error::Training {
            what: "no training row to attribute".into(),
        });
    }
    let layers = eval_mean.len();
    let parameters: usize = eval_mean.iter().map(Vec::len).sum();
    // The scratch file has no name: it is deleted however this call ends.
    let mut kept = if n.saturating_mul(parameters).saturating_mul(4) <= store.memory_bytes {
        Kept::Memory(Vec::with_capacity(n))
    } else if let Some(dir) = store.spill_dir {
        match tempfile::tempfile_in(dir) {
            Ok(f) => Kept::Disk {
                file: std::io::BufWriter::with_capacity(1 << 20, f),
                row_values: parameters,
            },
            Err(e) => {
                tracing::warn!(
                    "no scratch file in {} ({e}); computing gradients again in each pass",
                    dir.display()
                );
                Kept::Nothing
            }
        }
    } else {
        Kept::Nothing
    };
    let mut total = if kept.computes_again() { 3 * n } else { n };
    let mut done = 0;
    let mut next = |i: usize, first: bool, kept: &mut Kept| -> Result<LayerGradients> {
        if !progress(done, total) {
            return Err(Error::Cancelled);
        }
        if !first && let Some(g) = kept.get(i, eval_mean)? {
            return Ok(g);
        }
        let g = gradient(i)?;
        done += 1;
        if g.len() != layers || g.iter().zip(eval_mean).any(|(a, b)| a.len() != b.len()) {
            return Err(Error::Training {
                what: format!("row {i}'s gradient has another shape than the evaluation's"),
            });
        }
        if first {
            kept.push(&g);
            if kept.computes_again() {
                total = 3 * n;
            }
        }
        Ok(g)
    };

    // Pass 1: per row and layer, ‖g‖² and v·g.
    let mut norms = vec![vec![0.0f64; layers]; n];
    let mut along = vec![vec![0.0f64; layers]; n];
    for i in 0..n {
        let g = next(i, true, &mut kept)?;
        for l in 0..layers {
            norms[i][l] = dot(&g[l], &g[l]);
            along[i][l] = dot(&eval_mean[l], &g[l]);
        }
    }
    let lambda: Vec<f64> = (0..layers)
        .map(|l| {
            (DAMPING * norms.iter().map(|r| r[l]).sum::<f64>() / n as f64).max(f64::MIN_POSITIVE)
        })
        .collect();

    kept.finish_writing();
    let passes = if kept.computes_again() { 3 } else { 1 };

    // Pass 2: w_l = (1/n) Σ_i (v_l·g_il / (λ_l + ‖g_il‖²)) g_il.
    let mut w: Vec<Vec<f64>> = eval_mean.iter().map(|l| vec![0.0; l.len()]).collect();
    for i in 0..n {
        let g = next(i, false, &mut kept)?;
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
        let g = next(k, false, &mut kept)?;
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
    /// Where gradients wait between DataInf's passes.
    pub store: GradientStore<'a>,
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
    on_backend!(job.backend, B => attribute_on::<B>(job, &opened, progress))
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
        job.store,
        progress,
    )
}
