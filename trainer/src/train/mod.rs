//! LoRA and QLoRA fine-tuning: the loop, its schedule, checkpoints and resume.
//!
//! The base model is the runtime's [`Decoder`] on burn's autodiff backend with frozen weights
//! (dense f32 for LoRA, NF4 for QLoRA); the only tracked tensors are the adapter's `A` and `B`,
//! so only they get gradients and optimiser state. One micro-batch is one sequence; a step
//! accumulates `batch_size × grad_accum` of them, normalised by the step's trained tokens.
//!
//! A run folder holds `checkpoints/step-NNNNNN/` (the adapter in PEFT's layout, the optimiser's
//! moments and `state.json`), each written to a temporary folder and renamed into place, and
//! `adapter/`, the run's result: the best checkpoint's adapter by eval loss, or the last.

mod attention_op;
mod checkpoint;
mod cross_entropy_op;
mod data;
mod lora_dropout_op;
mod nf4_op;
#[cfg(test)]
pub(crate) mod op_testing;
pub mod optim;
mod swiglu_op;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::tensor::ElementConversion;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use attention_op::causal_attention_autodiff;
pub use checkpoint::{CheckpointState, latest_checkpoint};
pub use cross_entropy_op::cross_entropy_autodiff;
pub use data::{PreparedData, prepare_data};
pub use lora_dropout_op::lora_dropout_autodiff;
pub use nf4_op::nf4_matmul_autodiff;
pub use swiglu_op::swiglu_autodiff;

use crate::backends::{BackendKind, on_backend, probe_backends};
use crate::bench::peak_rss_bytes;
use crate::error::{Error, Result};
use crate::generate::Rng;
use crate::lora::{Adapter, LoraConfig, LoraPair, Target};
use crate::model::llama::to_host;
use crate::model::{Decoder, DecoderConfig, FusedOps, LoraTensors, WeightFiles, WeightMode};
use crate::quant::nf4::transpose_into;
use crate::runtime::OpenedModel;
use optim::{AdamW, AdamWSettings, clip_global_norm};

/// LoRA on dense f32 base weights, or QLoRA on NF4 base weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Base weights in f32.
    Lora,
    /// Base weights in NF4 with double-quantised scales, dequantised on the fly.
    #[default]
    Qlora,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Lora => "lora",
            Method::Qlora => "qlora",
        })
    }
}

/// How the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Stays at the peak.
    Constant,
    /// Falls linearly to zero at the last step.
    Linear,
    /// Follows half a cosine down to zero at the last step.
    #[default]
    Cosine,
}

/// Every knob of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// LoRA or QLoRA.
    pub method: Method,
    /// Rank, alpha, dropout, targets.
    pub lora: LoraConfig,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// The schedule after warm-up.
    pub schedule: Schedule,
    /// Optimiser steps of linear warm-up from zero.
    pub warmup_steps: usize,
    /// Passes over the training set (fractions allowed); ignored when `max_steps` is set.
    pub epochs: f64,
    /// A fixed number of optimiser steps.
    pub max_steps: Option<usize>,
    /// Sequences per micro-step group.
    pub batch_size: usize,
    /// Micro-step groups accumulated into one optimiser step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (0 turns clipping off).
    pub max_grad_norm: f64,
    /// Seeds the adapter's initialisation, the data order and dropout.
    pub seed: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept besides the best one.
    pub keep_checkpoints: usize,
    /// Recompute activations in the backward pass instead of keeping them (less memory, more
    /// time).
    pub gradient_checkpointing: bool,
    /// The backend; `None` takes the best one available.
    pub backend: Option<BackendKind>,
    /// Tokens per sequence; longer examples lose their tail.
    pub max_length: usize,
    /// Concatenate short examples into sequences of `max_length` tokens.
    pub packing: bool,
    /// The precision of the frozen base's products.
    pub precision: Precision,
    /// Share of the examples held out for evaluation.
    pub eval_fraction: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: Method::Qlora,
            lora: LoraConfig::default(),
            learning_rate: 2e-4,
            weight_decay: 0.01,
            schedule: Schedule::Cosine,
            warmup_steps: 5,
            epochs: 1.0,
            max_steps: None,
            batch_size: 1,
            grad_accum: 4,
            max_grad_norm: 1.0,
            seed: 42,
            eval_every: 20,
            checkpoint_every: 20,
            keep_checkpoints: 2,
            gradient_checkpointing: false,
            backend: None,
            max_length: 512,
            packing: false,
            precision: Precision::Auto,
            eval_fraction: 0.1,
        }
    }
}

impl TrainConfig {
    /// Checks the numbers before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        let bad = |what: String| Err(Error::Training { what });
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(format!(
                "learning rate {} is outside (0, 1)",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad(format!(
                "weight decay {} is outside [0, 1)",
                self.weight_decay
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch size and gradient accumulation must be at least 1".into());
        }
        if self.max_steps.is_none() && !(self.epochs.is_finite() && self.epochs > 0.0) {
            return bad(format!("epochs {} must be a positive number", self.epochs));
        }
        if self.max_steps == Some(0) {
            return bad("max steps must be at least 1".into());
        }
        if !(8..=1 << 20).contains(&self.max_length) {
            return bad(format!(
                "maximum length {} is outside 8..=1048576 tokens",
                self.max_length
            ));
        }
        if !(0.0..0.9).contains(&self.eval_fraction) {
            return bad(format!(
                "eval fraction {} is outside [0, 0.9)",
                self.eval_fraction
            ));
        }
        Ok(())
    }

    /// Sequences per optimiser step.
    pub fn sequences_per_step(&self) -> usize {
        self.batch_size * self.grad_accum
    }

    /// Optimiser steps for `train_sequences` sequences.
    pub fn total_steps(&self, train_sequences: usize) -> usize {
        if let Some(steps) = self.max_steps {
            return steps;
        }
        let per_epoch = train_sequences.div_ceil(self.sequences_per_step()).max(1);
        ((per_epoch as f64 * self.epochs).ceil() as usize).max(1)
    }

    /// The learning rate of optimiser step `step` (0-based) of `total`. Warm-up starts at
    /// `lr / warmup` rather than at zero, so the first step is not wasted.
    pub fn learning_rate_at(&self, step: usize, total: usize) -> f64 {
        let lr = self.learning_rate;
        if step < self.warmup_steps {
            return lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => lr,
            Schedule::Linear => lr * (1.0 - progress),
            Schedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// One training sequence: its tokens and which of them are predicted (trained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// `trained[i]`: the loss includes predicting `tokens[i]` from the tokens before it.
    pub trained: Vec<bool>,
}

impl Sequence {
    /// Tokens whose prediction is trained (the first token never is: nothing precedes it).
    pub fn trained_tokens(&self) -> usize {
        self.trained.iter().skip(1).filter(|&&t| t).count()
    }
}

/// What a run reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// The model is loaded and the loop begins.
    Started {
        /// Optimiser steps in the run.
        total_steps: usize,
        /// The step it starts at (non-zero when resumed).
        start_step: usize,
        /// Trainable numbers.
        trainable_parameters: usize,
        /// Bytes the frozen projection weights take (NF4 under QLoRA).
        base_weight_bytes: u64,
        /// The backend.
        backend: BackendKind,
        /// LoRA or QLoRA.
        method: Method,
    },
    /// An optimiser step finished.
    Step(StepRecord),
    /// An evaluation finished.
    Eval(EvalRecord),
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: usize,
        /// Its folder.
        path: PathBuf,
    },
}

/// One optimiser step's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based step number.
    pub step: usize,
    /// Mean loss per trained token.
    pub loss: f64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (trained or not) processed per second in this step.
    pub tokens_per_s: f64,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
    /// Peak resident memory of the process so far.
    pub peak_memory_bytes: u64,
}

/// One evaluation's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The step after which it ran.
    pub step: usize,
    /// Mean loss per trained token of the eval set.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step ran.
    Finished,
    /// Cancel was pressed; the best checkpoint so far is the result.
    Cancelled,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    /// Finished or cancelled.
    pub outcome: Outcome,
    /// Steps done.
    pub steps: usize,
    /// The adapter folder (PEFT layout), if any step ran.
    pub adapter: Option<PathBuf>,
    /// The step whose adapter that is.
    pub adapter_step: Option<usize>,
    /// Every step's numbers, resumed runs included.
    pub history: Vec<StepRecord>,
    /// Every evaluation.
    pub evals: Vec<EvalRecord>,
}

/// A training run: the model, the data and where its files go.
pub struct TrainJob<'a> {
    /// A GGUF file or a safetensors folder.
    pub model: &'a Path,
    /// Every knob.
    pub config: TrainConfig,
    /// Training sequences.
    pub train: &'a [Sequence],
    /// Evaluation sequences (may be empty).
    pub eval: &'a [Sequence],
    /// The run's folder: checkpoints and the resulting adapter go there.
    pub run_dir: &'a Path,
    /// What PEFT's `base_model_name_or_path` should say.
    pub base_model_name: String,
}

/// The run folder's result adapter.
pub const RESULT_ADAPTER: &str = "adapter";

/// Runs `job`, resuming from its newest readable checkpoint if there is one. `cancel` stops it
/// at the next sequence; `on_event` sees progress.
pub fn train(
    job: &TrainJob<'_>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainResult> {
    job.config.validate()?;
    if job.train.iter().all(|s| s.trained_tokens() == 0) {
        return Err(Error::Training {
            what: "the training set has no trained tokens (no row has an assistant answer \
                   inside the maximum length)"
                .into(),
        });
    }
    let opened = OpenedModel::open(job.model)?;
    let backend = match job.config.backend {
        Some(kind) => kind,
        None => BackendKind::best_available(&probe_backends()),
    };
    let checkpointing = job.config.gradient_checkpointing;
    on_backend!(backend, B => run_with::<B>(
        job,
        &opened,
        backend,
        checkpointing,
        &Default::default(),
        cancel,
        on_event,
    ))
}

fn run_with<B: Backend>(
    job: &TrainJob<'_>,
    opened: &OpenedModel,
    backend: BackendKind,
    checkpointing: bool,
    device: &B::Device,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainResult> {
    if checkpointing {
        Run::<B, BalancedCheckpointing>::new(job, opened, backend, device)?.run(cancel, on_event)
    } else {
        Run::<B, NoCheckpointing>::new(job, opened, backend, device)?.run(cancel, on_event)
    }
}

/// The precision of the frozen base's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The measured choice for the backend: f32 for now everywhere. bf16 on CUDA becomes the
    /// default once its speed and convergence are measured there.
    #[default]
    Auto,
    /// f32 throughout.
    F32,
    /// Mixed precision: the frozen projections and the output head multiply in bf16; the
    /// adapter, its gradients, the optimiser, norms, attention and the loss stay f32 (as PEFT
    /// keeps its adapter in f32 over a bf16 base).
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Where the frozen base keeps its weights and in what precision it multiplies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasePlacement {
    /// QLoRA's NF4 codes as tensors on the device rather than in host memory for our CPU
    /// kernels. On a GPU the host path would send a dequantised copy of every weight over the
    /// bus twice a step.
    pub nf4_on_device: bool,
    /// Attention, the loss, LoRA's dropout and the MLP's activation as host operations of
    /// ours (the CPU) rather than burn's composition of smaller tensor operations. Without
    /// them, the GPU backends run kernels of ours for the norms and the activation.
    pub host_ops: bool,
    /// Products in bf16.
    pub bf16: bool,
}

impl BasePlacement {
    /// What suits `backend`: NF4 codes on the device and burn's own attention everywhere
    /// but the CPU, and bf16 where `precision` asks for it.
    pub fn for_backend(backend: BackendKind, precision: Precision) -> Result<Self> {
        let bf16 = match precision {
            Precision::Auto | Precision::F32 => false,
            Precision::Bf16 => true,
        };
        if bf16 && backend == BackendKind::Wgpu {
            return Err(Error::Training {
                what: "bf16 needs the CUDA or the CPU backend; wgpu computes in f32".into(),
            });
        }
        Ok(BasePlacement {
            nf4_on_device: backend != BackendKind::Cpu,
            host_ops: backend == BackendKind::Cpu,
            bf16,
        })
    }

    /// The weight mode of `method` under this placement.
    fn weight_mode<B: Backend, C: CheckpointStrategy>(
        self,
        method: Method,
    ) -> WeightMode<Autodiff<B, C>> {
        match method {
            Method::Lora if self.bf16 => WeightMode::DenseBf16,
            Method::Lora => WeightMode::Dense,
            Method::Qlora => WeightMode::Nf4 {
                matmul: nf4_matmul_autodiff::<B, C>,
                on_device: self.nf4_on_device,
                bf16: self.bf16,
            },
        }
    }
}

/// Loads the frozen base for training: dense projections for LoRA, NF4 for QLoRA, placed as
/// `placement` says.
pub fn load_frozen_base<B: Backend, C: CheckpointStrategy>(
    config: DecoderConfig,
    files: &WeightFiles,
    method: Method,
    placement: BasePlacement,
    device: &B::Device,
) -> Result<Decoder<Autodiff<B, C>>> {
    let mode = placement.weight_mode::<B, C>(method);
    let mut decoder = Decoder::load(config, files, mode, device, &mut |_| {})?;
    if placement.host_ops {
        decoder.set_fused_ops(FusedOps {
            attention: Some(causal_attention_autodiff::<B, C>),
            cross_entropy: Some(cross_entropy_autodiff::<B, C>),
            lora_dropout: Some(lora_dropout_autodiff::<B, C>),
            swiglu: Some(swiglu_autodiff::<B, C>),
            ..FusedOps::default()
        });
    } else if let Some(ops) = gpu_kernels::<B, C>() {
        decoder.set_fused_ops(ops);
    }
    Ok(decoder)
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use crate::cube_ops::{concat_for as gpu_concat, training_ops_for as gpu_kernels};

/// Without a GPU backend compiled in, no backend has a concatenation of ours.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn gpu_concat<B: Backend>() -> Option<ConcatOp<B>> {
    None
}

/// Tensors `[len]` end to end, in fewer launches than burn's `cat` (one per tensor).
pub type ConcatOp<B> = fn(Vec<Tensor<B, 1>>) -> Tensor<B, 1>;

/// Without a GPU backend compiled in, no backend has GPU kernels.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn gpu_kernels<B: Backend, C: CheckpointStrategy>() -> Option<FusedOps<Autodiff<B, C>>> {
    None
}

/// An adapter on the autodiff backend and its leaf tensors (whose gradients the update
/// reads), in [`Params`] order.
pub type TrackedLora<B, C> = (LoraTensors<Autodiff<B, C>>, Vec<Tensor<Autodiff<B, C>, 2>>);

/// The trainable tensors of an adapter on the inner backend: `(Aᵀ, Bᵀ)` per pair, in
/// [`Adapter::pairs`] order, held end to end in one flat tensor. Each tensor is a view of it,
/// and the gradient, the clipping and the optimiser work on the whole at once: a few
/// operations per step instead of a few per tensor, which on a GPU are kernel launches.
pub struct Params<B: Backend> {
    /// `(layer, target, rank)` of each pair.
    pub layout: Vec<(usize, Target, usize)>,
    /// `Aᵀ` `[in, r]` and `Bᵀ` `[r, out]` of each pair, in turn, row-major and end to end.
    pub flat: Tensor<B, 1>,
    /// Shape of each tensor, in `flat`'s order.
    shapes: Vec<[usize; 2]>,
    /// Joins the gradients where the backend has a kernel for it.
    concat: Option<ConcatOp<B>>,
}

/// `m` transposed: `[rows, cols]` row-major in, `[cols, rows]` row-major out.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    transpose_into(m, rows, cols, cols, &mut out);
    out
}

impl<B: Backend> Params<B> {
    /// Uploads a host adapter.
    pub fn upload(adapter: &Adapter, device: &B::Device) -> Self {
        let mut layout = Vec::new();
        let mut shapes = Vec::new();
        let mut values = Vec::new();
        for (l, t, p) in adapter.pairs() {
            let r = p.rank();
            layout.push((l, t, r));
            values.extend(transposed(&p.a, r, p.inputs));
            values.extend(transposed(&p.b, p.outputs, r));
            shapes.push([p.inputs, r]);
            shapes.push([r, p.outputs]);
        }
        let len = values.len();
        Params {
            layout,
            flat: Tensor::from_data(TensorData::new(values, [len]), device),
            shapes,
            concat: gpu_concat::<B>(),
        }
    }

    /// The same tensors with the values `flat` (laid out as [`Params::flat`]).
    pub fn with_flat(&self, flat: Tensor<B, 1>) -> Self {
        assert_eq!(flat.dims(), self.flat.dims(), "one value per parameter");
        Params {
            layout: self.layout.clone(),
            flat,
            shapes: self.shapes.clone(),
            concat: self.concat,
        }
    }

    /// The shape of each tensor.
    pub fn shapes(&self) -> &[[usize; 2]] {
        &self.shapes
    }

    /// Where each tensor lies in [`Params::flat`].
    pub fn ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.shapes.iter().scan(0, |start, &[rows, cols]| {
            let range = *start..*start + rows * cols;
            *start = range.end;
            Some(range)
        })
    }

    /// Each tensor, a view of [`Params::flat`].
    pub fn tensors(&self) -> Vec<Tensor<B, 2>> {
        self.ranges()
            .zip(&self.shapes)
            .map(|(range, &shape)| self.flat.clone().slice(range).reshape(shape))
            .collect()
    }

    /// The gradient of the loss behind `grads` in every parameter, laid out as
    /// [`Params::flat`], from the leaves [`Params::to_lora`] returned. A leaf the loss does
    /// not reach (B = 0 blocks A's gradient) has a zero gradient.
    pub fn gradient<C: CheckpointStrategy>(
        &self,
        leaves: &[Tensor<Autodiff<B, C>, 2>],
        grads: &<Autodiff<B, C> as AutodiffBackend>::Gradients,
    ) -> Tensor<B, 1> {
        let device = self.flat.device();
        let parts: Vec<Tensor<B, 1>> = leaves
            .iter()
            .zip(&self.shapes)
            .map(|(leaf, &[rows, cols])| match leaf.grad(grads) {
                Some(g) => g.reshape([rows * cols]),
                None => Tensor::zeros([rows * cols], &device),
            })
            .collect();
        match self.concat {
            Some(concat) => concat(parts),
            None => Tensor::cat(parts, 0),
        }
    }

    /// Downloads into a host adapter.
    pub fn download(&self, config: &LoraConfig, base_model: &str, layers: usize) -> Adapter {
        let values = to_host(self.flat.clone());
        let ranges: Vec<_> = self.ranges().collect();
        let mut out: Vec<[Option<LoraPair>; 7]> = (0..layers).map(|_| Default::default()).collect();
        for (&(l, t, r), pair) in self.layout.iter().zip(ranges.chunks_exact(2)) {
            let (a, b) = (pair[0].clone(), pair[1].clone());
            let inputs = a.len() / r;
            let outputs = b.len() / r;
            out[l][t.index()] = Some(LoraPair {
                a: transposed(&values[a], inputs, r),
                b: transposed(&values[b], r, outputs),
                inputs,
                outputs,
            });
        }
        Adapter {
            config: config.clone(),
            base_model: base_model.to_owned(),
            layers: out,
        }
    }

    /// The tensors on the autodiff backend, tracked when `track` is set (training) and not
    /// otherwise (evaluation), with dropout `p` drawn from `rng` when given.
    pub fn to_lora<C: CheckpointStrategy>(
        &self,
        layers: usize,
        scaling: f32,
        track: bool,
        dropout: Option<(f32, Rng)>,
    ) -> TrackedLora<B, C> {
        let leaves: Vec<Tensor<Autodiff<B, C>, 2>> = self
            .tensors()
            .into_iter()
            .map(|t| {
                let leaf = Tensor::from_inner(t);
                if track { leaf.require_grad() } else { leaf }
            })
            .collect();
        let mut sets: Vec<[Option<_>; 7]> = (0..layers).map(|_| Default::default()).collect();
        for (i, &(l, t, _)) in self.layout.iter().enumerate() {
            sets[l][t.index()] = Some((leaves[2 * i].clone(), leaves[2 * i + 1].clone()));
        }
        let lora = LoraTensors {
            scaling,
            layers: sets,
            dropout: dropout
                .filter(|(p, _)| *p > 0.0)
                .map(|(p, rng)| (p, Mutex::new(rng))),
        };
        (lora, leaves)
    }
}

/// The summed loss of a sequence's trained predictions (a scalar tensor) and how many there
/// are. Only rows that predict a trained token go through the output head.
pub fn sequence_loss<B: Backend>(
    decoder: &Decoder<B>,
    lora: &LoraTensors<B>,
    sequence: &Sequence,
) -> Result<Option<Tensor<B, 1>>> {
    let n = sequence.tokens.len();
    if n < 2 {
        return Ok(None);
    }
    // Row t of the input predicts token t + 1.
    let rows: Vec<usize> = (0..n - 1).filter(|&t| sequence.trained[t + 1]).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let device = decoder.device().clone();
    let logits = decoder.forward_train_rows(&sequence.tokens[..n - 1], lora, &rows)?;
    if let Some(cross_entropy) = decoder.fused_ops().cross_entropy {
        let targets: Vec<usize> = rows
            .iter()
            .map(|&t| sequence.tokens[t + 1] as usize)
            .collect();
        return Ok(Some(cross_entropy(logits, &targets)));
    }
    let targets: Vec<i64> = rows
        .iter()
        .map(|&t| i64::from(sequence.tokens[t + 1]))
        .collect();
    let targets =
        Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [rows.len(), 1]), &device);
    let picked = log_softmax(logits, 1).gather(1, targets);
    Ok(Some(picked.sum().neg()))
}

struct Run<'a, B: Backend, C: CheckpointStrategy> {
    job: &'a TrainJob<'a>,
    decoder: Decoder<Autodiff<B, C>>,
    params: Params<B>,
    optimizer: AdamW<B>,
    backend: BackendKind,
    base_bytes: u64,
    state: CheckpointState,
}

impl<'a, B: Backend, C: CheckpointStrategy> Run<'a, B, C> {
    fn new(
        job: &'a TrainJob<'a>,
        opened: &OpenedModel,
        backend: BackendKind,
        device: &B::Device,
    ) -> Result<Self> {
        let config = &job.config;
        let model = &opened.config;
        let decoder = load_frozen_base::<B, C>(
            model.clone(),
            &opened.files,
            config.method,
            BasePlacement::for_backend(backend, config.precision)?,
            device,
        )?;
        let base_bytes = decoder.projection_bytes();
        let settings = AdamWSettings {
            weight_decay: config.weight_decay,
            ..AdamWSettings::default()
        };
        let checkpoints = job.run_dir.join(checkpoint::CHECKPOINTS);
        let (params, optimizer, state) = match latest_checkpoint(&checkpoints)? {
            Some(found) => {
                tracing::info!(checkpoint = %found.display(), "resuming");
                let (adapter, moments, state) = checkpoint::read(&found, model)?;
                if state.config != *config {
                    return Err(Error::Checkpoint {
                        what: "the run's settings differ from the checkpoint's; start a new run \
                               to change them"
                            .into(),
                        path: found,
                    });
                }
                let params = Params::<B>::upload(&adapter, device);
                let mut optimizer = AdamW::new(settings, &params.flat);
                optimizer.step = state.optimizer_step;
                let [m, v] = moments.into_tensors::<B>(device, params.shapes(), &found)?;
                optimizer.m = m;
                optimizer.v = v;
                (params, optimizer, state)
            }
            None => {
                let adapter = Adapter::init(
                    config.lora.clone(),
                    model,
                    job.base_model_name.clone(),
                    config.seed,
                )?;
                let params = Params::<B>::upload(&adapter, device);
                let optimizer = AdamW::new(settings, &params.flat);
                (params, optimizer, CheckpointState::new(config.clone()))
            }
        };
        Ok(Run {
            job,
            decoder,
            params,
            optimizer,
            backend,
            base_bytes,
            state,
        })
    }

    fn run(
        mut self,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<TrainResult> {
        let config = self.job.config.clone();
        let train = self.job.train;
        let total = config.total_steps(train.len());
        let layers = self.decoder.config().layers;
        let scaling = config.lora.scaling();
        on_event(TrainEvent::Started {
            total_steps: total,
            start_step: self.state.step,
            trainable_parameters: self.params.flat.dims()[0],
            base_weight_bytes: self.base_bytes,
            backend: self.backend,
            method: config.method,
        });
        // The untrained adapter's eval loss: where the curve starts.
        if self.state.step == 0
            && self.state.evals.is_empty()
            && let Some(record) = self.evaluate(cancel)?
        {
            self.state.evals.push(record.clone());
            on_event(TrainEvent::Eval(record));
        }
        let started = Instant::now();
        let first_step = self.state.step;
        let per_step = config.sequences_per_step();
        let mut outcome = Outcome::Finished;
        'steps: while self.state.step < total {
            let step = self.state.step;
            let step_started = Instant::now();
            let picks: Vec<&Sequence> = (0..per_step)
                .map(|k| &train[sequence_at(step * per_step + k, train.len(), config.seed)])
                .collect();
            let step_tokens: usize = picks.iter().map(|s| s.trained_tokens()).sum();
            let mut grad: Option<Tensor<B, 1>> = None;
            // Summed on the device and read once the update is queued: a read in the middle of
            // the step would leave a GPU idle while the backward pass is being queued.
            let mut loss_sum: Option<Tensor<B, 1>> = None;
            let mut seen_tokens = 0usize;
            for (k, sequence) in picks.iter().enumerate() {
                if cancel.load(Ordering::Relaxed) {
                    outcome = Outcome::Cancelled;
                    break 'steps;
                }
                seen_tokens += sequence.tokens.len();
                let rng = Rng::new(mix(config.seed, (step * per_step + k) as u64));
                let (lora, leaves) = self.params.to_lora::<C>(
                    layers,
                    scaling,
                    true,
                    Some((config.lora.dropout, rng)),
                );
                let Some(loss) = sequence_loss(&self.decoder, &lora, sequence)? else {
                    continue;
                };
                let value = loss.clone().inner();
                loss_sum = Some(match loss_sum {
                    None => value,
                    Some(sum) => sum + value,
                });
                let scaled = loss.div_scalar(step_tokens.max(1) as f64);
                let sequence_grad = self.params.gradient(&leaves, &scaled.backward());
                grad = Some(match grad {
                    None => sequence_grad,
                    Some(sum) => sum + sequence_grad,
                });
            }
            let (Some(grad), Some(loss_sum)) = (grad, loss_sum) else {
                self.state.step += 1;
                continue;
            };
            let (grad, grad_norm) = clip_global_norm(grad, config.max_grad_norm);
            if !grad_norm.is_finite() {
                return Err(Error::Training {
                    what: format!(
                        "the gradient became {grad_norm} at step {}; lower the learning rate",
                        step + 1
                    ),
                });
            }
            let lr = config.learning_rate_at(step, total);
            self.optimizer.update(&mut self.params.flat, grad, lr);
            let loss_sum = f64::from(loss_sum.into_scalar().elem::<f32>());
            self.state.step += 1;
            self.state.optimizer_step = self.optimizer.step;
            let elapsed = started.elapsed().as_secs_f64();
            let done_here = (self.state.step - first_step) as f64;
            let record = StepRecord {
                step: self.state.step,
                loss: loss_sum / step_tokens.max(1) as f64,
                learning_rate: lr,
                grad_norm,
                tokens_per_s: seen_tokens as f64 / step_started.elapsed().as_secs_f64().max(1e-9),
                elapsed_s: elapsed,
                eta_s: elapsed / done_here * (total - self.state.step) as f64,
                peak_memory_bytes: peak_rss_bytes(),
            };
            self.state.history.push(record.clone());
            on_event(TrainEvent::Step(record));

            let last = self.state.step == total;
            if due(self.state.step, config.eval_every, last)
                && let Some(record) = self.evaluate(cancel)?
            {
                self.state.evals.push(record.clone());
                on_event(TrainEvent::Eval(record));
            }
            if due(self.state.step, config.checkpoint_every, last) {
                let path = self.save_checkpoint()?;
                on_event(TrainEvent::Checkpoint {
                    step: self.state.step,
                    path,
                });
            }
        }
        if outcome == Outcome::Cancelled {
            tracing::info!(step = self.state.step, "training cancelled");
        }
        let (adapter, adapter_step) = self.publish_result()?;
        Ok(TrainResult {
            outcome,
            steps: self.state.step,
            adapter,
            adapter_step,
            history: self.state.history,
            evals: self.state.evals,
        })
    }

    /// Mean loss per trained token over the eval set, with the adapter as it is now.
    fn evaluate(&self, cancel: &AtomicBool) -> Result<Option<EvalRecord>> {
        let eval = self.job.eval;
        if eval.is_empty() {
            return Ok(None);
        }
        let layers = self.decoder.config().layers;
        let (lora, _) =
            self.params
                .to_lora::<C>(layers, self.job.config.lora.scaling(), false, None);
        let mut sum = 0.0f64;
        let mut tokens = 0usize;
        for sequence in eval {
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(loss) = sequence_loss(&self.decoder, &lora, sequence)? {
                sum += f64::from(loss.into_scalar().elem::<f32>());
                tokens += sequence.trained_tokens();
            }
        }
        if tokens == 0 {
            return Ok(None);
        }
        let loss = sum / tokens as f64;
        Ok(Some(EvalRecord {
            step: self.state.step,
            loss,
            perplexity: loss.exp(),
        }))
    }

    fn adapter(&self) -> Adapter {
        self.params.download(
            &self.job.config.lora,
            &self.job.base_model_name,
            self.decoder.config().layers,
        )
    }

    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let dir = self.job.run_dir.join(checkpoint::CHECKPOINTS);
        let eval_loss = self
            .state
            .evals
            .last()
            .filter(|e| e.step == self.state.step)
            .map(|e| e.loss);
        if let Some(loss) = eval_loss
            && self.state.best.is_none_or(|(_, best)| loss < best)
        {
            self.state.best = Some((self.state.step, loss));
        }
        let path = checkpoint::write(
            &dir,
            &self.state,
            &self.adapter(),
            &self.optimizer,
            &self.params,
        )?;
        checkpoint::prune(
            &dir,
            self.job.config.keep_checkpoints,
            self.state.best.map(|b| b.0),
        )?;
        Ok(path)
    }

    /// Copies the best checkpoint's adapter (or the current one, when no checkpoint or eval
    /// says otherwise) to the run's `adapter/` folder.
    fn publish_result(&mut self) -> Result<(Option<PathBuf>, Option<usize>)> {
        if self.state.step == 0 {
            return Ok((None, None));
        }
        let out = self.job.run_dir.join(RESULT_ADAPTER);
        let dir = self.job.run_dir.join(checkpoint::CHECKPOINTS);
        if let Some((step, _)) = self.state.best {
            let best = checkpoint::step_dir(&dir, step);
            if let Ok(adapter) = Adapter::load_peft(&best) {
                adapter.save_peft(&out)?;
                return Ok((Some(out), Some(step)));
            }
        }
        self.adapter().save_peft(&out)?;
        Ok((Some(out), Some(self.state.step)))
    }
}

/// Whether something done every `every` steps (0: never, except at the end) is due.
fn due(step: usize, every: usize, last: bool) -> bool {
    last || (every > 0 && step.is_multiple_of(every))
}

/// Which sequence the `index`-th micro-step of the run trains on: epochs walk the set in a
/// fresh seeded order each, so a resumed run sees exactly what it would have seen.
fn sequence_at(index: usize, len: usize, seed: u64) -> usize {
    let epoch = index / len;
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = Rng::new(mix(seed, epoch as u64 ^ 0x5EED_0F0D));
    for i in (1..len).rev() {
        let j = (rng.next_f64() * (i + 1) as f64) as usize;
        order.swap(i, j.min(i));
    }
    order[index % len]
}

fn mix(seed: u64, n: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let mut c = TrainConfig {
            learning_rate: 1.0,
            warmup_steps: 2,
            schedule: Schedule::Linear,
            ..TrainConfig::default()
        };
        assert_eq!(c.learning_rate_at(0, 10), 0.5);
        assert_eq!(c.learning_rate_at(1, 10), 1.0);
        assert_eq!(c.learning_rate_at(2, 10), 1.0);
        assert!((c.learning_rate_at(6, 10) - 0.5).abs() < 1e-12);
        c.schedule = Schedule::Cosine;
        assert!((c.learning_rate_at(6, 10) - 0.5).abs() < 1e-12);
        assert!(c.learning_rate_at(9, 10) < 0.05);
        c.schedule = Schedule::Constant;
        assert_eq!(c.learning_rate_at(9, 10), 1.0);
    }

    #[test]
    fn every_epoch_visits_every_sequence_once() {
        for epoch in 0..3 {
            let mut seen: Vec<usize> = (0..7).map(|i| sequence_at(epoch * 7 + i, 7, 1)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..7).collect::<Vec<_>>());
        }
        assert_ne!(
            (0..7).map(|i| sequence_at(i, 7, 1)).collect::<Vec<_>>(),
            (0..7).map(|i| sequence_at(7 + i, 7, 1)).collect::<Vec<_>>(),
            "epochs are shuffled differently"
        );
    }

    #[test]
    fn total_steps_rounds_up() {
        let c = TrainConfig {
            batch_size: 2,
            grad_accum: 2,
            epochs: 1.5,
            ..TrainConfig::default()
        };
        assert_eq!(c.total_steps(10), 5);
        assert_eq!(c.total_steps(0), 2);
    }
}
