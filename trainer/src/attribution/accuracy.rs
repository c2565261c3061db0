//! How far to trust an attribution method, measured by retraining.
//!
//! **Linear datamodeling score** (LDS; Park et al., TRAK, 2023): train the adapter again on
//! random halves of the training rows, measure each one's evaluation loss, and take the
//! Spearman correlation between a method's prediction for the half (the sum of its rows'
//! scores) and the loss it actually reached. 1 would be a perfect ranking, 0 no better than
//! chance. **Leave one contributor out**: train without each contributor's rows; a method
//! agrees when the contributors it credits are the ones whose absence raises the loss.
//!
//! Three methods are measured side by side, all scored so that positive means "lowers the
//! evaluation loss": DataInf ([`super::datainf`]), **TracIn** (the learning rate times the dot
//! product of a row's gradient and the evaluation gradient, summed over checkpoints of the
//! run) and **representation similarity** (the cosine between a row's mean last hidden state
//! and the evaluation rows').
//!
//! Every training here uses one deterministic loop (AdamW, constant learning rate, global
//! clipping at 1, rows drawn by a seeded generator), so the full run and the retrained ones
//! differ only in their rows.

use std::path::Path;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::{GradientStore, LayerGradients, datainf, example_gradient, mean_gradient};
use crate::backends::{BackendKind, on_backend};
use crate::error::{Error, Result};
use crate::generate::Rng;
use crate::lora::Adapter;
use crate::model::Decoder;
use crate::runtime::OpenedModel;
use crate::train::optim::{AdamW, AdamWSettings, clip_global_norm};
use crate::train::{
    BasePlacement, Method, Params, Precision, Sequence, load_frozen_base, sequence_loss,
};

/// What [`measure_accuracy`] retrains and scores.
pub struct AccuracyJob<'a> {
    /// The base model's file or folder.
    pub model: &'a Path,
    /// The adapter every training starts from (a fresh one, as a run starts).
    pub init: &'a Adapter,
    /// LoRA or QLoRA.
    pub method: Method,
    /// Where to compute.
    pub backend: BackendKind,
    /// The training rows, one sequence each.
    pub train: &'a [Sequence],
    /// The contributor of each training row.
    pub groups: &'a [String],
    /// The evaluation rows.
    pub eval: &'a [Sequence],
    /// Optimiser steps of every training (one row a step).
    pub steps: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// Random halves to retrain on (at least 20 for the LDS to mean much).
    pub subsets: usize,
    /// Checkpoints of the full run that TracIn sums over.
    pub checkpoints: usize,
    /// Seeds the halves and the order rows are drawn in.
    pub seed: u64,
}

/// One method's measured accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodAccuracy {
    /// `datainf`, `tracin` or `similarity`.
    pub method: String,
    /// Spearman correlation between predicted and actual evaluation losses of the halves.
    pub lds: f64,
    /// Spearman correlation between contributors' predicted credit and the loss their
    /// absence costs (with at least three contributors).
    pub loco_spearman: Option<f64>,
    /// Share of contributors whose credit has the sign of what their absence costs.
    pub loco_sign_agreement: f64,
    /// The method's score of each training row, at the full run's adapter.
    pub scores: Vec<f64>,
}

/// The measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyReport {
    pub methods: Vec<MethodAccuracy>,
    /// Evaluation loss of the run on every row.
    pub full_eval_loss: f64,
    /// Evaluation loss of each half.
    pub subset_eval_losses: Vec<f64>,
    /// Per contributor: the evaluation loss without its rows minus the full run's.
    pub loco: Vec<(String, f64)>,
    pub subsets: usize,
    pub steps: usize,
    pub seed: u64,
}

/// Retrains `job` on random halves and without each contributor, and measures how well
/// DataInf, TracIn and representation similarity predict the outcome. `progress(done, total)`
/// counts trainings; `false` cancels.
pub fn measure_accuracy(
    job: &AccuracyJob<'_>,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<AccuracyReport> {
    if job.train.len() < 2 || job.groups.len() != job.train.len() {
        return Err(Error::Training {
            what: format!(
                "accuracy needs at least two training rows, each with a contributor ({} rows, \
                 {} contributors given)",
                job.train.len(),
                job.groups.len()
            ),
        });
    }
    if job.eval.iter().all(|s| s.trained_tokens() == 0) || job.steps == 0 || job.subsets < 2 {
        return Err(Error::Training {
            what: "accuracy needs evaluation rows with trained tokens, steps and at least two \
                   subsets"
                .into(),
        });
    }
    let opened = OpenedModel::open(job.model)?;
    on_backend!(job.backend, B => measure_on::<B>(job, &opened, progress))
}

type Ad<B> = Autodiff<B, NoCheckpointing>;

struct Trainer<'a, B: Backend> {
    job: &'a AccuracyJob<'a>,
    decoder: Decoder<Ad<B>>,
    layers: usize,
    scaling: f32,
    device: B::Device,
}

impl<B: Backend> Trainer<'_, B> {
    /// Trains a fresh copy of the initial adapter on `rows` (indices into the training set);
    /// `at_step(step, params)` sees the parameters after each step.
    fn train(
        &self,
        rows: &[usize],
        at_step: &mut dyn FnMut(usize, &Params<B>) -> Result<()>,
    ) -> Result<Params<B>> {
        let mut params = Params::<B>::upload(self.job.init, &self.device);
        let settings = AdamWSettings {
            weight_decay: 0.0,
            ..AdamWSettings::default()
        };
        let mut optimizer = AdamW::new(settings, &params.flat);
        let mut rng = Rng::new(self.job.seed ^ 0x5eed);
        for step in 0..self.job.steps {
            let pick = rows[((rng.next_f64() * rows.len() as f64) as usize).min(rows.len() - 1)];
            let (lora, leaves) =
                params.to_lora::<NoCheckpointing>(self.layers, self.scaling, true, None);
            if let Some(loss) = sequence_loss(&self.decoder, &lora, &self.job.train[pick])? {
                let trained = self.job.train[pick].trained_tokens().max(1) as f64;
                let grad = params.gradient(&leaves, &loss.div_scalar(trained).backward());
                let (grad, _) = clip_global_norm(grad, 1.0);
                optimizer.update(&mut params.flat, grad, self.job.learning_rate);
            }
            at_step(step, &params)?;
        }
        Ok(params)
    }

    /// Mean over the evaluation rows of their mean loss per trained token.
    fn eval_loss(&self, params: &Params<B>) -> Result<f64> {
        let (lora, _) = params.to_lora::<NoCheckpointing>(self.layers, self.scaling, false, None);
        let mut total = 0.0;
        let mut counted = 0usize;
        for s in self.job.eval {
            if let Some(loss) = sequence_loss(&self.decoder, &lora, s)? {
                total += f64::from(loss.into_scalar().elem::<f32>()) / s.trained_tokens() as f64;
                counted += 1;
            }
        }
        Ok(total / counted.max(1) as f64)
    }

    fn gradient(&self, params: &Params<B>, s: &Sequence) -> Result<Option<LayerGradients>> {
        Ok(example_gradient(&self.decoder, params, self.layers, self.scaling, s)?.map(|g| g.1))
    }

    fn eval_gradient(&self, params: &Params<B>) -> Result<LayerGradients> {
        let mut all = Vec::new();
        for s in self.job.eval {
            if let Some(g) = self.gradient(params, s)? {
                all.push(g);
            }
        }
        mean_gradient(&all)
    }
}

fn dot(a: &LayerGradients, b: &LayerGradients) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y))
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

fn measure_on<B: Backend>(
    job: &AccuracyJob<'_>,
    opened: &OpenedModel,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<AccuracyReport> {
    let device = B::Device::default();
    let decoder = load_frozen_base::<B, NoCheckpointing>(
        opened.config.clone(),
        &opened.files,
        job.method,
        BasePlacement::for_backend(job.backend, Precision::F32)?,
        &device,
    )?;
    let t = Trainer {
        job,
        decoder,
        layers: opened.config.layers,
        scaling: job.init.config.scaling(),
        device,
    };
    let n = job.train.len();
    let mut contributors: Vec<String> = job.groups.to_vec();
    contributors.sort();
    contributors.dedup();
    let total = 1 + job.subsets + contributors.len();
    let mut done = 0;
    let mut tick = |done: &mut usize| -> Result<()> {
        *done += 1;
        if progress(*done, total) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    };

    // The full run, with TracIn's sum over its checkpoints.
    let all: Vec<usize> = (0..n).collect();
    let every = (job.steps / job.checkpoints.max(1)).max(1);
    let mut tracin = vec![0.0; n];
    let full = t.train(&all, &mut |step, params| {
        if (step + 1) % every == 0 {
            let v = t.eval_gradient(params)?;
            for (i, s) in job.train.iter().enumerate() {
                if let Some(g) = t.gradient(params, s)? {
                    tracin[i] += job.learning_rate * dot(&g, &v);
                }
            }
        }
        Ok(())
    })?;
    tick(&mut done)?;
    let full_eval_loss = t.eval_loss(&full)?;

    // DataInf and representation similarity at the full run's adapter.
    let v = t.eval_gradient(&full)?;
    let zeros: LayerGradients = v.iter().map(|l| vec![0.0; l.len()]).collect();
    let datainf_scores = datainf(
        n,
        &v,
        &mut |i| {
            Ok(t.gradient(&full, &job.train[i])?
                .unwrap_or_else(|| zeros.clone()))
        },
        GradientStore {
            memory_bytes: 1 << 30,
            spill_dir: None,
        },
        &mut |_, _| true,
    )?
    .scores;
    let (lora, _) = full.to_lora::<NoCheckpointing>(t.layers, t.scaling, false, None);
    let represent = |s: &Sequence| -> Result<Vec<f32>> {
        t.decoder
            .mean_hidden(&s.tokens, &lora)?
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| Error::Training {
                what: format!("reading a hidden state: {e:?}"),
            })
    };
    let mut eval_mean: Vec<f64> = Vec::new();
    for s in job.eval {
        let h = represent(s)?;
        eval_mean.resize(h.len(), 0.0);
        for (m, x) in eval_mean.iter_mut().zip(h) {
            *m += f64::from(x) / job.eval.len() as f64;
        }
    }
    let mut similarity = Vec::with_capacity(n);
    for s in job.train {
        let h: Vec<f64> = represent(s)?.into_iter().map(f64::from).collect();
        similarity.push(cosine(&h, &eval_mean));
    }

    // Random halves.
    let mut rng = Rng::new(job.seed);
    let mut halves = Vec::with_capacity(job.subsets);
    let mut subset_eval_losses = Vec::with_capacity(job.subsets);
    for _ in 0..job.subsets {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = ((rng.next_f64() * (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
        order.truncate(n / 2);
        order.sort_unstable();
        let params = t.train(&order, &mut |_, _| Ok(()))?;
        subset_eval_losses.push(t.eval_loss(&params)?);
        halves.push(order);
        tick(&mut done)?;
    }

    // Leave one contributor out.
    let mut loco = Vec::with_capacity(contributors.len());
    for c in &contributors {
        let kept: Vec<usize> = (0..n).filter(|&i| &job.groups[i] != c).collect();
        let without = if kept.is_empty() {
            t.eval_loss(&Params::<B>::upload(job.init, &t.device))?
        } else {
            t.eval_loss(&t.train(&kept, &mut |_, _| Ok(()))?)?
        };
        loco.push((c.clone(), without - full_eval_loss));
        tick(&mut done)?;
    }

    let lower_is_better: Vec<f64> = subset_eval_losses.iter().map(|l| -l).collect();
    let methods = [
        ("datainf", datainf_scores),
        ("tracin", tracin),
        ("similarity", similarity),
    ]
    .into_iter()
    .map(|(name, scores)| {
        let predicted: Vec<f64> = halves
            .iter()
            .map(|h| h.iter().map(|&i| scores[i]).sum())
            .collect();
        let credit: Vec<f64> = contributors
            .iter()
            .map(|c| {
                (0..n)
                    .filter(|&i| &job.groups[i] == c)
                    .map(|i| scores[i])
                    .sum()
            })
            .collect();
        let cost: Vec<f64> = loco.iter().map(|(_, d)| *d).collect();
        let agree = credit
            .iter()
            .zip(&cost)
            .filter(|(a, b)| (**a > 0.0) == (**b > 0.0))
            .count();
        MethodAccuracy {
            method: name.into(),
            lds: spearman(&predicted, &lower_is_better),
            loco_spearman: (contributors.len() >= 3).then(|| spearman(&credit, &cost)),
            loco_sign_agreement: agree as f64 / contributors.len().max(1) as f64,
            scores,
        }
    })
    .collect();
    Ok(AccuracyReport {
        methods,
        full_eval_loss,
        subset_eval_losses,
        loco,
        subsets: job.subsets,
        steps: job.steps,
        seed: job.seed,
    })
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation; 0 when either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    let denominator = (var(&ra) * var(&rb)).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        cov / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_known_rankings() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties share a rank: ranks (1.5, 1.5, 3) against (1, 2, 3).
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]);
        assert!((r - 0.866_025_403_784_438_6).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
