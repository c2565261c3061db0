//! The Llama-family decoder on burn: RMSNorm, rotary embeddings, grouped-query attention with
//! a KV cache, SwiGLU, with the per-architecture switches of [`DecoderConfig`].
//!
//! Projections are [`Linear`]s of three kinds. On GPU backends they are dense f32 tensors and
//! burn multiplies them. On the CPU they stay in the file's own encoding (Q4_1, Q8_0, BF16 …)
//! and our block kernels multiply them ([`QuantMatrix::matmul_t`]): burn's CPU backend would
//! dequantise the weights to f32 and read four to eight times the bytes for every token. For
//! QLoRA they are NF4 matrices (in host memory for the CPU, as packed tensors on a GPU),
//! dequantised on the fly by an operation the caller supplies (the training code's, which has
//! a backward pass).
//!
//! A [`LoraTensors`] set adds `s · (x Aᵀ) Bᵀ` to the projections it covers: the chat keeps one
//! on the decoder ([`Decoder::set_adapter`]); training passes its trainable one per step.

use std::sync::Arc;

use burn::backend::flex::Flex;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, FloatDType, Int, Tensor, TensorData, TensorPrimitive};

use super::config::DecoderConfig;
use super::dropout::DropoutMask;
use super::nf4_tensors::Nf4Tensors;
use super::weights::WeightFiles;
use crate::error::{Error, Result};
use crate::generate::Rng;
use crate::lora::{Adapter, Target};
use crate::quant::{Nf4Matrix, QuantMatrix};

/// `x Wᵀ` for an NF4 weight `W`: the operation that dequantises it on the fly.
pub type Nf4Matmul<B> = fn(Tensor<B, 2>, &Nf4Weight<B>) -> Tensor<B, 2>;

/// Causal self-attention of a whole sequence, rotary positions included, as one operation where
/// a backend does better than burn's composition of smaller ones (the CPU, while training).
/// Takes the projections as they come, q `[n, heads·d]`, k and v `[n, kv_heads·d]`, and returns
/// `[n, heads·d]`, the output projection's input.
pub type AttentionOp<B> =
    fn(Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>, &AttentionShape) -> Tensor<B, 2>;

/// The summed cross-entropy of logits `[rows, vocabulary]` against one target per row, a
/// tensor of one value.
pub type CrossEntropyOp<B> = fn(Tensor<B, 2>, &[usize]) -> Tensor<B, 1>;

/// LoRA's first product with dropout on its input, `(x ⊙ mask) Aᵀ · factor`, for `x` `[n, in]`
/// and `Aᵀ` `[in, r]`.
pub type LoraDropoutOp<B> = fn(Tensor<B, 2>, Tensor<B, 2>, DropoutMask, f32) -> Tensor<B, 2>;

/// The MLP's gated activation, `silu(gate) · up`, element by element.
pub type SwigluOp<B> = fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>;

/// RMSNorm of each row of `x` `[rows, d]` with a frozen weight `[d]` and ε.
pub type RmsNormOp<B> = fn(Tensor<B, 2>, &Tensor<B, 1>, f32) -> Tensor<B, 2>;

/// Causal attention weights `softmax(scale · scores)` of scores `[.., rows, keys]` whose rows
/// cycle through `queries` positions, the first at position `start` (the keys before it are
/// cached ones); `(scores, scale, queries, start)`.
pub type CausalSoftmaxOp<B> = fn(Tensor<B, 3>, f32, usize, usize) -> Tensor<B, 3>;

/// Writes `rows` `[kv_heads, n, d]` into `cache` `[kv_heads, capacity, d]` at positions
/// `start..start + n` and returns the cache; `(cache, start, rows)`.
pub type KvWriteOp<B> = fn(Tensor<B, 3>, usize, Tensor<B, 3>) -> Tensor<B, 3>;

/// The rotary embedding of `x` `[n, heads, d]` with the tables `cos` and `sin` `[1, n, d]` of
/// [`Rope`], returned head-major, `[heads, n, d]`; `(x, cos, sin)`.
pub type RopeOp<B> = fn(Tensor<B, 3>, &Tensor<B, 3>, &Tensor<B, 3>) -> Tensor<B, 3>;

/// Operations of our own, each computing what a composition of burn's smaller ones does, for
/// a backend where they do better: host operations on the CPU while training, kernels of ours
/// on the GPU backends. Each one left out is burn's composition.
#[derive(Default)]
pub struct FusedOps<B: Backend> {
    /// Attention of a whole sequence.
    pub attention: Option<AttentionOp<B>>,
    /// The training loss.
    pub cross_entropy: Option<CrossEntropyOp<B>>,
    /// The adapters' masked first product.
    pub lora_dropout: Option<LoraDropoutOp<B>>,
    /// The MLP's activation.
    pub swiglu: Option<SwigluOp<B>>,
    /// The norms before attention, the MLP and the output head (and of Qwen3's heads).
    pub rms_norm: Option<RmsNormOp<B>>,
    /// The attention weights, where attention is burn's composition.
    pub causal_softmax: Option<CausalSoftmaxOp<B>>,
    /// The rotary embedding of queries and keys, where attention is burn's composition.
    pub rope: Option<RopeOp<B>>,
    /// New keys and values into the chat's cache, where burn's `slice_assign` would copy it.
    pub kv_write: Option<KvWriteOp<B>>,
}

impl<B: Backend> Clone for FusedOps<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for FusedOps<B> {}

/// What an [`AttentionOp`] needs besides q, k and v.
#[derive(Debug, Clone)]
pub struct AttentionShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads, each shared by `heads / kv_heads` query heads.
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// The factor of the scores, `1 / √head_dim`.
    pub scale: f32,
    /// The rotation angles of positions `0..n`.
    pub rope: Arc<RopeTables>,
}

/// cos and sin of the rotary angles, `[n, head_dim / 2]` row-major: position `t` turns the
/// pair `(x[i], x[i + head_dim / 2])` of every head by angle `t · inv_freq[i]`.
#[derive(Debug)]
pub struct RopeTables {
    /// The cosines.
    pub cos: Vec<f32>,
    /// The sines.
    pub sin: Vec<f32>,
}

/// Where an NF4 weight lives: in host memory for the CPU kernels, or on the device.
#[derive(Debug, Clone)]
pub enum Nf4Weight<B: Backend> {
    /// Multiplied by our CPU kernels.
    Host(Arc<Nf4Matrix>),
    /// Dequantised on the device for each product.
    Device(Nf4Tensors<B>),
}

impl<B: Backend> Nf4Weight<B> {
    /// Bytes of quantised data held.
    pub fn bytes(&self) -> usize {
        match self {
            Nf4Weight::Host(matrix) => matrix.bytes(),
            Nf4Weight::Device(tensors) => tensors.bytes(),
        }
    }
}

/// How projection weights are held.
pub enum WeightMode<B: Backend> {
    /// Dense f32 tensors on the backend's device.
    Dense,
    /// Dense bf16 tensors on the backend's device, multiplied in bf16 (mixed precision: the
    /// activations, norms, attention and any adapter stay f32; only the frozen products and
    /// the output head run on bf16 inputs).
    DenseBf16,
    /// In the file's encoding, in host memory, multiplied by the CPU kernels.
    Host,
    /// NF4 with double-quantised scales (QLoRA), multiplied by the given operation.
    Nf4 {
        /// The product.
        matmul: Nf4Matmul<B>,
        /// Keep the codes on the device (GPU backends) rather than in host memory.
        on_device: bool,
        /// Multiply the dequantised weights in bf16 (codes on the device only) and keep the
        /// output head in bf16.
        bf16: bool,
    },
}

impl<B: Backend> Clone for WeightMode<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for WeightMode<B> {}

/// A projection `y = x Wᵀ + b`.
pub enum Linear<B: Backend> {
    /// `weight` is `[in, out]` (already transposed).
    Dense {
        /// The transposed weight.
        weight: Tensor<B, 2>,
        /// The bias, `[out]`.
        bias: Option<Tensor<B, 1>>,
    },
    /// The `[out, in]` weight in its stored encoding.
    Host {
        /// The weight.
        matrix: Arc<QuantMatrix>,
        /// The bias, `[out]`.
        bias: Option<Tensor<B, 1>>,
    },
    /// The `[out, in]` weight in NF4.
    Nf4 {
        /// The weight.
        weight: Nf4Weight<B>,
        /// The product.
        matmul: Nf4Matmul<B>,
        /// The bias, `[out]`.
        bias: Option<Tensor<B, 1>>,
    },
}

impl<B: Backend> Linear<B> {
    /// `x` is `[tokens, in]`; the result is `[tokens, out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (dense_product(x, weight.clone()), bias),
            Linear::Host { matrix, bias } => (host_matmul(matrix, x), bias),
            Linear::Nf4 {
                weight,
                matmul,
                bias,
            } => (matmul(x, weight), bias),
        };
        match bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }
}

/// `x · w` in `w`'s precision: a bf16 weight multiplies a bf16 copy of `x` (what tensor cores
/// take) and the product returns to f32, where the rest of the model computes.
pub fn dense_product<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if w.dtype() == DType::BF16 {
        x.cast(FloatDType::BF16).matmul(w).cast(FloatDType::F32)
    } else {
        x.matmul(w)
    }
}

fn host_matmul<B: Backend>(matrix: &QuantMatrix, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let device = x.device();
    let input = HostValues::of(x);
    let mut out = vec![0.0f32; n * matrix.rows()];
    matrix.matmul_t(input.values(), n, &mut out);
    Tensor::from_data(TensorData::new(out, [n, matrix.rows()]), &device)
}

/// The token embedding.
enum Embedding<B: Backend> {
    Dense(Tensor<B, 2>),
    Host(Arc<QuantMatrix>),
}

struct Block<B: Backend> {
    attn_norm: Tensor<B, 1>,
    qkv: Qkv<B>,
    o: Linear<B>,
    q_norm: Option<Tensor<B, 1>>,
    k_norm: Option<Tensor<B, 1>>,
    ffn_norm: Tensor<B, 1>,
    mlp: Mlp<B>,
}

/// The query, key and value projections.
enum Qkv<B: Backend> {
    /// Three projections.
    Separate {
        q: Linear<B>,
        k: Linear<B>,
        v: Linear<B>,
    },
    /// The CPU path: the three weights stacked in one matrix, one product per step.
    Host {
        qkv: QuantMatrix,
        biases: [Option<Tensor<B, 1>>; 3],
        widths: [usize; 3],
    },
}

impl<B: Backend> Qkv<B> {
    /// Stacks three host projections of one encoding; anything else stays separate.
    fn new(
        q: Linear<B>,
        k: Linear<B>,
        v: Linear<B>,
    ) -> std::result::Result<Self, crate::quant::DequantError> {
        match (q, k, v) {
            (
                Linear::Host {
                    matrix: mq,
                    bias: bq,
                },
                Linear::Host {
                    matrix: mk,
                    bias: bk,
                },
                Linear::Host {
                    matrix: mv,
                    bias: bv,
                },
            ) if mq.ty() == mk.ty() && mk.ty() == mv.ty() => {
                let mut bytes =
                    Vec::with_capacity(mq.bytes().len() + mk.bytes().len() + mv.bytes().len());
                for m in [&mq, &mk, &mv] {
                    bytes.extend_from_slice(m.bytes());
                }
                let rows = mq.rows() + mk.rows() + mv.rows();
                Ok(Qkv::Host {
                    qkv: QuantMatrix::new(mq.ty(), rows, mq.cols(), bytes)?,
                    biases: [bq, bk, bv],
                    widths: [mq.rows(), mk.rows(), mv.rows()],
                })
            }
            (q, k, v) => Ok(Qkv::Separate { q, k, v }),
        }
    }

    fn forward(&self, h: Tensor<B, 2>, lora: LayerLora<'_, B>) -> [Tensor<B, 2>; 3] {
        let [q, k, v] = match self {
            Qkv::Separate { q, k, v } => [
                q.forward(h.clone()),
                k.forward(h.clone()),
                v.forward(h.clone()),
            ],
            Qkv::Host {
                qkv,
                biases,
                widths,
            } => {
                let all = host_matmul(qkv, h.clone());
                let mut start = 0;
                [0, 1, 2].map(|i| {
                    let part = all.clone().narrow(1, start, widths[i]);
                    start += widths[i];
                    match &biases[i] {
                        Some(b) => part + b.clone().unsqueeze::<2>(),
                        None => part,
                    }
                })
            }
        };
        [
            lora.add(Target::Q, &h, q),
            lora.add(Target::K, &h, k),
            lora.add(Target::V, &h, v),
        ]
    }
}

/// The SwiGLU MLP, `down(silu(gate(h)) · up(h))`.
enum Mlp<B: Backend> {
    /// Three projections and burn's element-wise operations.
    Separate {
        gate: Linear<B>,
        up: Linear<B>,
        down: Linear<B>,
    },
    /// The CPU path: gate and up stacked in one matrix and the whole MLP computed in host
    /// memory, so a decode step crosses into burn once instead of three times per layer.
    Host {
        gate_up: QuantMatrix,
        down: QuantMatrix,
    },
}

impl<B: Backend> Mlp<B> {
    fn forward(
        &self,
        h: Tensor<B, 2>,
        lora: LayerLora<'_, B>,
        swiglu: Option<SwigluOp<B>>,
    ) -> Tensor<B, 2> {
        let gated = |g: Tensor<B, 2>, u| match swiglu {
            Some(op) => op(g, u),
            None => silu(g) * u,
        };
        match self {
            Mlp::Separate { gate, up, down } => {
                let g = lora.add(Target::Gate, &h, gate.forward(h.clone()));
                let u = lora.add(Target::Up, &h, up.forward(h.clone()));
                let act = gated(g, u);
                lora.add(Target::Down, &act, down.forward(act.clone()))
            }
            Mlp::Host { gate_up, down } if lora.covers_mlp() => {
                // The adapter's terms are added in burn between the host products.
                let [n, _] = h.dims();
                let width = gate_up.rows() / 2;
                let gu = host_matmul(gate_up, h.clone());
                let g = lora.add(Target::Gate, &h, gu.clone().narrow(1, 0, width));
                let u = lora.add(Target::Up, &h, gu.narrow(1, width, width));
                let act = gated(g, u);
                let out = host_matmul(down, act.clone());
                debug_assert_eq!(out.dims()[0], n);
                lora.add(Target::Down, &act, out)
            }
            Mlp::Host { gate_up, down } => {
                let [n, _] = h.dims();
                let device = h.device();
                let x = HostValues::of(h);
                let width = gate_up.rows() / 2;
                let mut gu = vec![0.0f32; n * 2 * width];
                gate_up.matmul_t(x.values(), n, &mut gu);
                let mut act = Vec::with_capacity(n * width);
                for row in gu.chunks_exact(2 * width) {
                    let (g, u) = row.split_at(width);
                    act.extend(g.iter().zip(u).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u));
                }
                let mut out = vec![0.0f32; n * down.rows()];
                down.matmul_t(&act, n, &mut out);
                Tensor::from_data(TensorData::new(out, [n, down.rows()]), &device)
            }
        }
    }
}

/// A tensor's values on the host, as f32.
pub(crate) fn to_host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensors convert to f32")
}

/// A tensor's values on the host as f32, read or changed in place and uploaded again as they
/// are. burn's CPU backend hands over a tensor's own buffer when nothing else holds it and
/// takes one back without copying; [`to_host`]'s `Vec` costs a copy there (the buffer's
/// alignment is not a `Vec<f32>`'s), and uploading a `Vec` may cost another.
#[derive(Debug, Clone)]
pub(crate) struct HostValues(TensorData);

impl HostValues {
    pub(crate) fn of<B: Backend, const D: usize>(x: Tensor<B, D>) -> Self {
        let data = x.into_data().convert::<f32>();
        if data.as_slice::<f32>().is_ok() {
            return Self(data);
        }
        // Bytes not aligned for f32: copied once into ones that are.
        let shape = data.shape.clone();
        let values = data
            .into_vec::<f32>()
            .expect("float tensors convert to f32");
        Self(TensorData::new(values, shape))
    }

    pub(crate) fn values(&self) -> &[f32] {
        self.0.as_slice().expect("f32 values, aligned when made")
    }

    pub(crate) fn values_mut(&mut self) -> &mut [f32] {
        self.0
            .as_mut_slice()
            .expect("f32 values, aligned when made")
    }

    /// The values as a tensor of their shape on `device`.
    pub(crate) fn into_tensor<B: Backend, const D: usize>(
        self,
        device: &B::Device,
    ) -> Tensor<B, D> {
        Tensor::from_data(self.0, device)
    }
}

/// Keys and values of the tokens seen so far, per layer: `[kv_heads, tokens, head_dim]`.
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
    len: usize,
}

/// One layer's cached keys and values, `[kv_heads, capacity, head_dim]`, positions
/// `0..len` of the cache filled. Room is made ahead (doubling), so a new token writes its own
/// row in place (on the CPU through [`FusedOps::kv_write`]) instead of the whole cache being
/// copied into a new tensor.
struct LayerKv<B: Backend> {
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
}

impl<B: Backend> LayerKv<B> {
    /// Writes `k` and `v` `[kv_heads, n, head_dim]` at positions `start..start + n` of `slot`,
    /// growing it up to `limit` positions, and returns the keys and values of positions
    /// `0..start + n`.
    fn append(
        slot: &mut Option<Self>,
        start: usize,
        [k, v]: [Tensor<B, 3>; 2],
        limit: usize,
        write: Option<KvWriteOp<B>>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [kv_heads, n, head_dim] = k.dims();
        let end = start + n;
        let mut cached = match slot.take() {
            Some(cached) if cached.keys.dims()[1] >= end => cached,
            old => {
                let capacity = end.next_power_of_two().max(64).min(limit).max(end);
                let device = k.device();
                let empty = || Tensor::empty([kv_heads, capacity, head_dim], &device);
                let mut grown = LayerKv {
                    keys: empty(),
                    values: empty(),
                };
                if let Some(old) = old.filter(|_| start > 0) {
                    let kept = [0..kv_heads, 0..start, 0..head_dim];
                    grown.keys = grown
                        .keys
                        .slice_assign(kept.clone(), old.keys.slice(kept.clone()));
                    grown.values = grown
                        .values
                        .slice_assign(kept.clone(), old.values.slice(kept));
                }
                grown
            }
        };
        let (keys, values) = (cached.keys, cached.values);
        (cached.keys, cached.values) = match write {
            Some(write) => (write(keys, start, k), write(values, start, v)),
            None => {
                let new = [0..kv_heads, start..end, 0..head_dim];
                (
                    keys.slice_assign(new.clone(), k),
                    values.slice_assign(new, v),
                )
            }
        };
        let filled = [0..kv_heads, 0..end, 0..head_dim];
        let out = (
            cached.keys.clone().slice(filled.clone()),
            cached.values.clone().slice(filled),
        );
        *slot = Some(cached);
        out
    }
}

impl<B: Backend> KvCache<B> {
    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// [`KvWriteOp`] for burn's CPU backend, in place: its `slice_assign` copies the whole cache
/// for every token (it takes a second reference to the tensor before writing, so its
/// copy-on-write always copies). The cache is the only reference when a token is written, so
/// the buffer is written where it is; a shared or strided one is left to `slice_assign`.
pub fn flex_kv_write(
    cache: Tensor<Flex, 3>,
    start: usize,
    rows: Tensor<Flex, 3>,
) -> Tensor<Flex, 3> {
    let [kv_heads, capacity, d] = cache.dims();
    let [_, n, _] = rows.dims();
    let mut buffer = cache.into_primitive().tensor();
    let whole = buffer.is_unique()
        && buffer.is_contiguous()
        && buffer.layout().start_offset() == 0
        && buffer.dtype() == DType::F32;
    if !whole {
        let cache = Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(buffer));
        return cache.slice_assign([0..kv_heads, start..start + n, 0..d], rows);
    }
    let values = to_host(rows);
    let cells = buffer.storage_mut::<f32>();
    for (head, source) in values.chunks_exact(n * d).enumerate() {
        let at = (head * capacity + start) * d;
        cells[at..at + n * d].copy_from_slice(source);
    }
    Tensor::from_primitive(TensorPrimitive::Float(buffer))
}

/// One projection's adapter on the backend: `(Aᵀ, Bᵀ)`, shapes `[in, r]` and `[r, out]`.
pub type LoraPairTensors<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// LoRA weights on the backend, per layer and [`Target::index`].
pub struct LoraTensors<B: Backend> {
    /// The factor of the update.
    pub scaling: f32,
    /// The pairs.
    pub layers: Vec<[Option<LoraPairTensors<B>>; 7]>,
    /// Dropout on the adapters' input (training only): the probability and the generator of
    /// the masks, drawn on the host so that a seed repeats on every backend.
    pub dropout: Option<(f32, std::sync::Mutex<Rng>)>,
}

impl<B: Backend> LoraTensors<B> {
    /// The next dropout mask for an input of `dims`, if dropout is on: one draw of the
    /// generator keys it.
    fn next_mask(&self, dims: [usize; 2]) -> Option<DropoutMask> {
        let (p, rng) = self.dropout.as_ref()?;
        let key = rng.lock().unwrap_or_else(|e| e.into_inner()).next_u64();
        Some(DropoutMask::new(key, dims, 1.0 - p))
    }

    /// Uploads a host adapter (no dropout: for inference).
    pub fn from_adapter(adapter: &Adapter, scale: f32, device: &B::Device) -> Self {
        let upload = |values: &[f32], rows: usize, cols: usize| {
            Tensor::<B, 2>::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
        };
        LoraTensors {
            scaling: adapter.config.scaling() * scale,
            layers: adapter
                .layers
                .iter()
                .map(|pairs| {
                    pairs.clone().map(|p| {
                        p.map(|p| {
                            let r = p.rank();
                            (
                                upload(&p.a, r, p.inputs).transpose(),
                                upload(&p.b, p.outputs, r).transpose(),
                            )
                        })
                    })
                })
                .collect(),
            dropout: None,
        }
    }

    fn layer(&self, layer: usize, dropout_op: Option<LoraDropoutOp<B>>) -> LayerLora<'_, B> {
        LayerLora {
            set: Some(self),
            layer,
            dropout_op,
        }
    }
}

/// The adapter terms of one decoder layer, if any.
struct LayerLora<'a, B: Backend> {
    set: Option<&'a LoraTensors<B>>,
    layer: usize,
    /// Used instead of burn's operations for masked inputs where set.
    dropout_op: Option<LoraDropoutOp<B>>,
}

impl<B: Backend> Clone for LayerLora<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for LayerLora<'_, B> {}

impl<B: Backend> LayerLora<'_, B> {
    fn none() -> Self {
        LayerLora {
            set: None,
            layer: 0,
            dropout_op: None,
        }
    }

    fn pair(&self, target: Target) -> Option<&LoraPairTensors<B>> {
        self.set?.layers.get(self.layer)?[target.index()].as_ref()
    }

    fn covers_mlp(&self) -> bool {
        [Target::Gate, Target::Up, Target::Down]
            .into_iter()
            .any(|t| self.pair(t).is_some())
    }

    /// `y + s · (dropout(x) Aᵀ) Bᵀ` where `target` has an adapter, else `y`.
    fn add(&self, target: Target, x: &Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let (Some(set), Some((a_t, b_t))) = (self.set, self.pair(target)) else {
            return y;
        };
        // Scaled at rank width, where it is a pass over `n × r` values rather than `n × out`,
        // or on the mask with burn's operations: one operation fewer each way, which on a GPU
        // is a kernel launch.
        let down = match (set.next_mask(x.dims()), self.dropout_op) {
            (Some(mask), Some(op)) => op(x.clone(), a_t.clone(), mask, set.scaling),
            (Some(mask), None) => {
                let mask = TensorData::new(mask.floats(set.scaling), x.dims());
                (x.clone() * Tensor::from_data(mask, &y.device())).matmul(a_t.clone())
            }
            (None, _) => x.clone().matmul(a_t.clone()).mul_scalar(set.scaling),
        };
        y + down.matmul(b_t.clone())
    }
}

/// What attention needs about the positions of a forward pass.
enum Positions<B: Backend> {
    /// For burn's operations: the rotation and, for more than one new token, the causal
    /// mask.
    Tensors {
        rope: Rope<B>,
        mask: Option<Tensor<B, 3, Bool>>,
    },
    /// For an attention operation over a whole sequence.
    Op(AttentionOp<B>, AttentionShape),
}

/// A loaded decoder.
pub struct Decoder<B: Backend> {
    config: DecoderConfig,
    embed: Embedding<B>,
    layers: Vec<Block<B>>,
    norm: Tensor<B, 1>,
    lm_head: Linear<B>,
    inv_freq: Vec<f64>,
    /// The rotary embedding's half-swapping product (see [`Rope`]), the same for every pass.
    rope_swap: Tensor<B, 3>,
    device: B::Device,
    adapter: Option<LoraTensors<B>>,
    /// Used instead of burn's operations where set.
    fused_ops: FusedOps<B>,
}

impl<B: Backend> Decoder<B> {
    /// Loads the weights of `files` on `device`. `progress` gets the fraction of layers done.
    pub fn load(
        config: DecoderConfig,
        files: &WeightFiles,
        mode: WeightMode<B>,
        device: &B::Device,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self> {
        let c = &config;
        let d = c.hidden_size;
        let q_out = c.heads * c.head_dim;
        let kv_out = c.kv_heads * c.head_dim;
        let permuted = files.has_permuted_qk()?;
        let vector = |name: &str, n: usize| -> Result<Tensor<B, 1>> {
            let values = files.f32s(name, &[n as u64])?;
            Ok(Tensor::from_data(TensorData::new(values, [n]), device))
        };
        let bias = |name: &str, n: usize, heads: usize| -> Result<Option<Tensor<B, 1>>> {
            if !c.qkv_bias || files.get(name)?.is_none() {
                return Ok(None);
            }
            let mut values = files.f32s(name, &[n as u64])?;
            if permuted {
                values = permute_values(&values, &unpermute_order(heads, c.head_dim));
            }
            Ok(Some(Tensor::from_data(
                TensorData::new(values, [n]),
                device,
            )))
        };
        // `heads` > 0 marks a q/k projection whose rows llama.cpp permuted.
        let linear = |name: &str,
                      rows: usize,
                      cols: usize,
                      heads: usize,
                      bias: Option<Tensor<B, 1>>|
         -> Result<Linear<B>> {
            let mut matrix = files.matrix(name, rows, cols)?;
            if permuted && heads > 0 {
                matrix = matrix.permute_rows(&unpermute_order(heads, c.head_dim));
            }
            to_linear(matrix, bias, mode, device)
        };

        let mlp = |gate_name: &str, up_name: &str, down_name: &str| -> Result<Mlp<B>> {
            let width = c.intermediate_size;
            let gate = files.matrix(gate_name, width, d)?;
            let up = files.matrix(up_name, width, d)?;
            let down = files.matrix(down_name, d, width)?;
            if matches!(mode, WeightMode::Host) && gate.ty() == up.ty() {
                let mut bytes = Vec::with_capacity(gate.bytes().len() * 2);
                bytes.extend_from_slice(gate.bytes());
                bytes.extend_from_slice(up.bytes());
                let gate_up =
                    QuantMatrix::new(gate.ty(), 2 * width, d, bytes).map_err(|source| {
                        Error::TensorData {
                            tensor: format!("{gate_name} + {up_name}"),
                            source,
                            path: files.path().to_path_buf(),
                        }
                    })?;
                return Ok(Mlp::Host { gate_up, down });
            }
            let wrap = |matrix: QuantMatrix| to_linear(matrix, None, mode, device);
            Ok(Mlp::Separate {
                gate: wrap(gate)?,
                up: wrap(up)?,
                down: wrap(down)?,
            })
        };

        let embed_matrix = Arc::new(files.matrix("model.embed_tokens.weight", c.vocab_size, d)?);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            let head_norm = |s: &str| -> Result<Option<Tensor<B, 1>>> {
                if c.qk_norm {
                    Ok(Some(vector(&p(s), c.head_dim)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Block {
                attn_norm: vector(&p("input_layernorm.weight"), d)?,
                qkv: Qkv::new(
                    linear(
                        &p("self_attn.q_proj.weight"),
                        q_out,
                        d,
                        c.heads,
                        bias(&p("self_attn.q_proj.bias"), q_out, c.heads)?,
                    )?,
                    linear(
                        &p("self_attn.k_proj.weight"),
                        kv_out,
                        d,
                        c.kv_heads,
                        bias(&p("self_attn.k_proj.bias"), kv_out, c.kv_heads)?,
                    )?,
                    linear(
                        &p("self_attn.v_proj.weight"),
                        kv_out,
                        d,
                        0,
                        bias(&p("self_attn.v_proj.bias"), kv_out, 0)?,
                    )?,
                )
                .map_err(|source| Error::TensorData {
                    tensor: p("self_attn.{q,k,v}_proj.weight"),
                    source,
                    path: files.path().to_path_buf(),
                })?,
                o: linear(&p("self_attn.o_proj.weight"), d, q_out, 0, None)?,
                q_norm: head_norm("self_attn.q_norm.weight")?,
                k_norm: head_norm("self_attn.k_norm.weight")?,
                ffn_norm: vector(&p("post_attention_layernorm.weight"), d)?,
                mlp: mlp(
                    &p("mlp.gate_proj.weight"),
                    &p("mlp.up_proj.weight"),
                    &p("mlp.down_proj.weight"),
                )?,
            });
            progress((i + 1) as f32 / c.layers as f32);
        }
        let lm_head = match files.get("lm_head.weight")? {
            Some(_) if !c.tie_word_embeddings => {
                linear("lm_head.weight", c.vocab_size, d, 0, None)?
            }
            // The output head stays dense under QLoRA, as in the paper: it is not a LoRA
            // target and quantising it costs the most accuracy.
            _ => match mode {
                WeightMode::Host => Linear::Host {
                    matrix: embed_matrix.clone(),
                    bias: None,
                },
                WeightMode::Dense | WeightMode::Nf4 { bf16: false, .. } => Linear::Dense {
                    weight: dense(&embed_matrix, device).transpose(),
                    bias: None,
                },
                WeightMode::DenseBf16 | WeightMode::Nf4 { bf16: true, .. } => Linear::Dense {
                    weight: dense(&embed_matrix, device)
                        .transpose()
                        .cast(FloatDType::BF16),
                    bias: None,
                },
            },
        };
        let embed = match mode {
            WeightMode::Host => Embedding::Host(embed_matrix),
            WeightMode::Dense | WeightMode::DenseBf16 | WeightMode::Nf4 { .. } => {
                Embedding::Dense(dense(&embed_matrix, device))
            }
        };
        Ok(Self {
            inv_freq: config.rope_inv_freq(),
            rope_swap: half_swap(config.head_dim, device),
            norm: vector("model.norm.weight", d)?,
            config,
            embed,
            layers,
            lm_head,
            device: device.clone(),
            adapter: None,
            fused_ops: FusedOps::default(),
        })
    }

    /// Applies `adapter` scaled by `scale` (1 is the trained strength) to every later
    /// forward pass, replacing any adapter applied before; `None` removes it. The base weights
    /// are untouched, so switching adapters does not reload the model.
    pub fn set_adapter(&mut self, adapter: Option<(&Adapter, f32)>) {
        self.adapter = adapter.map(|(a, scale)| LoraTensors::from_adapter(a, scale, &self.device));
    }

    /// Computes what `ops` sets with them instead of burn's operations.
    pub fn set_fused_ops(&mut self, ops: FusedOps<B>) {
        self.fused_ops = ops;
    }

    /// The operations [`Decoder::set_fused_ops`] set.
    pub fn fused_ops(&self) -> FusedOps<B> {
        self.fused_ops
    }

    /// RMSNorm of each row of `x` with `weight`, by the fused operation where one is set.
    fn rms_norm(&self, x: Tensor<B, 2>, weight: &Tensor<B, 1>) -> Tensor<B, 2> {
        let eps = self.config.rms_norm_eps;
        match self.fused_ops.rms_norm {
            Some(op) => op(x, weight, eps),
            None => rms_norm(x, weight, eps),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Logits `[rows.len(), vocab]` at positions `rows` of a whole sequence run with `lora`
    /// (training: no cache, nothing leaves the device). Only those rows go through the output
    /// head, the largest product of a small model.
    pub fn forward_train_rows(
        &self,
        tokens: &[u32],
        lora: &LoraTensors<B>,
        rows: &[usize],
    ) -> Result<Tensor<B, 2>> {
        let hidden = self.forward_hidden(tokens, None, Some(lora))?;
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows.len()]), &self.device);
        let normed = self.rms_norm(hidden.select(0, ids), &self.norm);
        Ok(self.lm_head.forward(normed))
    }

    /// The last layer's hidden states of `tokens` with `lora`, normalised as the output head
    /// sees them, averaged over the positions: a sequence's representation.
    pub fn mean_hidden(&self, tokens: &[u32], lora: &LoraTensors<B>) -> Result<Tensor<B, 1>> {
        let hidden = self.forward_hidden(tokens, None, Some(lora))?;
        let normed = self.rms_norm(hidden, &self.norm);
        Ok(normed.mean_dim(0).squeeze_dim::<1>(0))
    }

    /// Bytes the projection weights (the ones LoRA targets) hold: what QLoRA shrinks.
    pub fn projection_bytes(&self) -> u64 {
        let linear = |l: &Linear<B>| -> u64 {
            match l {
                Linear::Dense { weight, .. } => {
                    (weight.shape().num_elements() * weight.dtype().size()) as u64
                }
                Linear::Host { matrix, .. } => matrix.bytes().len() as u64,
                Linear::Nf4 { weight, .. } => weight.bytes() as u64,
            }
        };
        self.layers
            .iter()
            .map(|b| {
                let qkv = match &b.qkv {
                    Qkv::Separate { q, k, v } => linear(q) + linear(k) + linear(v),
                    Qkv::Host { qkv, .. } => qkv.bytes().len() as u64,
                };
                let mlp = match &b.mlp {
                    Mlp::Separate { gate, up, down } => linear(gate) + linear(up) + linear(down),
                    Mlp::Host { gate_up, down } => {
                        (gate_up.bytes().len() + down.bytes().len()) as u64
                    }
                };
                qkv + linear(&b.o) + mlp
            })
            .sum()
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// An empty cache.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache {
            layers: (0..self.config.layers).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Runs `tokens` after those already in `cache` and returns the logits of the last one.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache<B>) -> Result<Vec<f32>> {
        let hidden = self.forward_hidden(tokens, Some(cache), self.adapter.as_ref())?;
        let [n, _] = hidden.dims();
        Ok(self.logits(hidden.narrow(0, n - 1, 1)))
    }

    /// Runs `tokens` after those already in `cache` and returns the logits of every one,
    /// `[tokens, vocab]` row-major.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache<B>) -> Result<Vec<f32>> {
        let hidden = self.forward_hidden(tokens, Some(cache), self.adapter.as_ref())?;
        Ok(self.logits(hidden))
    }

    /// The output head on final hidden states `[n, d]`: `[n, vocab]` logits, row-major.
    fn logits(&self, hidden: Tensor<B, 2>) -> Vec<f32> {
        let normed = self.rms_norm(hidden, &self.norm);
        to_host(self.lm_head.forward(normed))
    }

    /// The last layer's hidden states of `tokens` after those in `cache`; with no cache, of a
    /// whole sequence whose keys and values are kept nowhere (training), which lets the
    /// attention operation, where set, do the work.
    fn forward_hidden(
        &self,
        tokens: &[u32],
        mut cache: Option<&mut KvCache<B>>,
        lora: Option<&LoraTensors<B>>,
    ) -> Result<Tensor<B, 2>> {
        let c = &self.config;
        let n = tokens.len();
        let start = cache.as_ref().map_or(0, |cache| cache.len);
        if n == 0 {
            return Err(Error::PromptTooLong {
                tokens: 0,
                limit: c.context_length,
            });
        }
        if start + n > c.context_length {
            return Err(Error::PromptTooLong {
                tokens: start + n,
                limit: c.context_length,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::UnsupportedConfig {
                what: format!(
                    "token id {bad} is outside the vocabulary of {}",
                    c.vocab_size
                ),
                path: "<input>".into(),
            });
        }
        let mut x = self.embed(tokens);
        let rope = self.rope_tables(start, n);
        let positions = match (self.fused_ops.attention, &cache) {
            (Some(attention), None) => Positions::Op(
                attention,
                AttentionShape {
                    heads: c.heads,
                    kv_heads: c.kv_heads,
                    head_dim: c.head_dim,
                    scale: (c.head_dim as f64).sqrt().recip() as f32,
                    rope: Arc::new(rope),
                },
            ),
            _ => Positions::Tensors {
                rope: Rope::new(&rope, n, &self.rope_swap),
                // The fused weights mask as they go.
                mask: (n > 1 && self.fused_ops.causal_softmax.is_none())
                    .then(|| self.causal_mask(start, n)),
            },
        };
        for (layer, block) in self.layers.iter().enumerate() {
            let lora = lora.map_or(LayerLora::none(), |l| {
                l.layer(layer, self.fused_ops.lora_dropout)
            });
            let h = self.rms_norm(x.clone(), &block.attn_norm);
            let kv = cache
                .as_deref_mut()
                .map(|cache| (&mut cache.layers[layer], cache.len));
            let attn = self.attention(block, h, &positions, kv, lora);
            x = x + attn;
            let h = self.rms_norm(x.clone(), &block.ffn_norm);
            let ffn = block.mlp.forward(h, lora, self.fused_ops.swiglu);
            x = x + ffn;
        }
        if let Some(cache) = cache {
            cache.len += n;
        }
        Ok(x)
    }

    fn embed(&self, tokens: &[u32]) -> Tensor<B, 2> {
        match &self.embed {
            Embedding::Dense(table) => {
                let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
                let ids = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(ids, [tokens.len()]),
                    &self.device,
                );
                table.clone().select(0, ids)
            }
            Embedding::Host(matrix) => {
                let d = matrix.cols();
                let mut values = Vec::with_capacity(tokens.len() * d);
                for &t in tokens {
                    values.extend(matrix.row(t as usize));
                }
                Tensor::from_data(TensorData::new(values, [tokens.len(), d]), &self.device)
            }
        }
    }

    /// cos and sin of the rotation angles for positions `start..start + n`.
    fn rope_tables(&self, start: usize, n: usize) -> RopeTables {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for pos in start..start + n {
            for f in &self.inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTables { cos, sin }
    }

    /// True where query row (group member, token t) must not see key s: `s > start + t`.
    fn causal_mask(&self, start: usize, n: usize) -> Tensor<B, 3, Bool> {
        let c = &self.config;
        let group = c.heads / c.kv_heads;
        let keys = start + n;
        let mut mask = Vec::with_capacity(c.kv_heads * group * n * keys);
        for _ in 0..c.kv_heads * group {
            for t in 0..n {
                mask.extend((0..keys).map(|s| s > start + t));
            }
        }
        Tensor::from_data(
            TensorData::new(mask, [c.kv_heads, group * n, keys]),
            &self.device,
        )
    }

    fn attention(
        &self,
        block: &Block<B>,
        h: Tensor<B, 2>,
        positions: &Positions<B>,
        cache: Option<(&mut Option<LayerKv<B>>, usize)>,
        lora: LayerLora<'_, B>,
    ) -> Tensor<B, 2> {
        let c = &self.config;
        let [n, _] = h.dims();
        let (hd, heads, kv_heads) = (c.head_dim, c.heads, c.kv_heads);
        let group = heads / kv_heads;
        let [q, k, v] = block.qkv.forward(h, lora);
        // Qwen3's norms of each head's query and key, on `[n, heads, d]`.
        let norm_heads = |x: Tensor<B, 2>, heads: usize, w: &Option<Tensor<B, 1>>| match w {
            Some(w) => self
                .rms_norm(x.reshape([n * heads, hd]), w)
                .reshape([n, heads, hd]),
            None => x.reshape([n, heads, hd]),
        };
        let q = norm_heads(q, heads, &block.q_norm);
        let k = norm_heads(k, kv_heads, &block.k_norm);
        let (rope, mask) = match positions {
            Positions::Op(op, shape) => {
                let out = op(
                    q.reshape([n, heads * hd]),
                    k.reshape([n, kv_heads * hd]),
                    v,
                    shape,
                );
                return lora.add(Target::O, &out, block.o.forward(out.clone()));
            }
            Positions::Tensors { rope, mask } => (rope, mask),
        };
        let q = rope.apply(q, self.fused_ops.rope);
        let k = rope.apply(k, self.fused_ops.rope);
        let v = v.reshape([n, kv_heads, hd]).swap_dims(0, 1);

        let (k, v) = match cache {
            Some((slot, start)) => LayerKv::append(
                slot,
                start,
                [k, v],
                c.context_length,
                self.fused_ops.kv_write,
            ),
            None => (k, v),
        };
        // Query heads that share a key/value head are stacked as extra rows, so the keys and
        // values are used as they are instead of being repeated per query head.
        let q = q.reshape([kv_heads, group * n, hd]);
        let scale = (hd as f64).sqrt().recip();
        let scores = q.matmul(k.swap_dims(1, 2));
        let weights = match self.fused_ops.causal_softmax {
            Some(op) => {
                let keys = scores.dims()[2];
                op(scores, scale as f32, n, keys - n)
            }
            None => {
                let mut scores = scores.mul_scalar(scale);
                if let Some(mask) = mask {
                    scores = scores.mask_fill(mask.clone(), f32::NEG_INFINITY);
                }
                softmax(scores, 2)
            }
        };
        let out = weights.matmul(v);
        let out = out
            .reshape([heads, n, hd])
            .swap_dims(0, 1)
            .reshape([n, heads * hd]);
        lora.add(Target::O, &out, block.o.forward(out.clone()))
    }
}

/// RMSNorm of each row, composed of burn's operations.
pub(crate) fn rms_norm<B: Backend>(
    x: Tensor<B, 2>,
    weight: &Tensor<B, 1>,
    eps: f32,
) -> Tensor<B, 2> {
    let mean_square = (x.clone() * x.clone()).mean_dim(1);
    x * (mean_square + eps).sqrt().recip() * weight.clone().unsqueeze::<2>()
}

/// The rotary embedding for burn's operations, in the Hugging Face "rotate_half" layout:
/// `x ⊙ cos + (x S) ⊙ sin`, where `S` swaps the two halves of each head and the tables hold
/// each angle twice, `sin` negated in its first half. That is four operations forward and
/// four backward where cutting the halves out and joining them took a dozen more, each a
/// kernel launch on a GPU; `x S` only moves values, so the result is the same to the bit.
pub(crate) struct Rope<B: Backend> {
    /// `[1, n, head_dim]`.
    cos: Tensor<B, 3>,
    /// `[1, n, head_dim]`, the first half negated.
    sin: Tensor<B, 3>,
    /// `[1, head_dim, head_dim]`: `(x S)[j] = x[(j + half) mod head_dim]`.
    swap: Tensor<B, 3>,
}

impl<B: Backend> Rope<B> {
    /// The rotation of positions `0..n` of `tables`, with the product [`half_swap`] gives.
    pub(crate) fn new(tables: &RopeTables, n: usize, swap: &Tensor<B, 3>) -> Self {
        let [_, head_dim, _] = swap.dims();
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(n * head_dim);
        let mut sin = Vec::with_capacity(n * head_dim);
        for (c, s) in tables
            .cos
            .chunks_exact(half)
            .zip(tables.sin.chunks_exact(half))
        {
            cos.extend_from_slice(c);
            cos.extend_from_slice(c);
            sin.extend(s.iter().map(|x| -x));
            sin.extend_from_slice(s);
        }
        let device = swap.device();
        let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, n, head_dim]), &device);
        Rope {
            cos: table(cos),
            sin: table(sin),
            swap: swap.clone(),
        }
    }

    /// Rotates `x` `[n, heads, head_dim]`, returned head-major `[heads, n, head_dim]`, with
    /// `op` where given.
    pub(crate) fn apply(&self, x: Tensor<B, 3>, op: Option<RopeOp<B>>) -> Tensor<B, 3> {
        if let Some(op) = op {
            return op(x, &self.cos, &self.sin);
        }
        let x = x.swap_dims(0, 1);
        x.clone() * self.cos.clone() + x.matmul(self.swap.clone()) * self.sin.clone()
    }
}

/// `S` of [`Rope`], `[1, head_dim, head_dim]`: `(x S)[j] = x[(j + head_dim / 2) mod head_dim]`.
pub(crate) fn half_swap<B: Backend>(head_dim: usize, device: &B::Device) -> Tensor<B, 3> {
    let mut swap = vec![0.0f32; head_dim * head_dim];
    for j in 0..head_dim {
        swap[((j + head_dim / 2) % head_dim) * head_dim + j] = 1.0;
    }
    Tensor::from_data(TensorData::new(swap, [1, head_dim, head_dim]), device)
}

/// A projection from a stored `[out, in]` weight, held as `mode` says.
fn to_linear<B: Backend>(
    matrix: QuantMatrix,
    bias: Option<Tensor<B, 1>>,
    mode: WeightMode<B>,
    device: &B::Device,
) -> Result<Linear<B>> {
    Ok(match mode {
        WeightMode::Host => Linear::Host {
            matrix: Arc::new(matrix),
            bias,
        },
        WeightMode::Dense => Linear::Dense {
            weight: dense(&matrix, device).transpose(),
            bias,
        },
        WeightMode::DenseBf16 => Linear::Dense {
            weight: dense(&matrix, device).transpose().cast(FloatDType::BF16),
            bias,
        },
        WeightMode::Nf4 {
            matmul,
            on_device,
            bf16,
        } => {
            let nf4 = Nf4Matrix::quantize(matrix.rows(), matrix.cols(), &matrix.dequantize())?;
            Linear::Nf4 {
                weight: if on_device {
                    Nf4Weight::Device(Nf4Tensors::upload(&nf4, bf16, device))
                } else {
                    Nf4Weight::Host(Arc::new(nf4))
                },
                matmul,
                bias,
            }
        }
    })
}

/// From this many rows on, an NF4 product dequantises the weight (a few MB, freed at once) and
/// lets burn's matrix multiply run: its blocked kernel is several times faster than our fused
/// one on many rows, and the fused one wins for decode-sized inputs.
pub const NF4_DENSE_ROWS: usize = 32;

/// The f32 weight of an NF4 matrix on `device`, `[rows, cols]`.
pub fn nf4_dense<B: Backend>(matrix: &Nf4Matrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(matrix.dequantize(), [matrix.rows(), matrix.cols()]),
        device,
    )
}

/// `x Wᵀ` for an NF4 weight, without a backward pass (inference).
pub fn nf4_matmul_host<B: Backend>(x: Tensor<B, 2>, weight: &Nf4Weight<B>) -> Tensor<B, 2> {
    let matrix = match weight {
        Nf4Weight::Host(matrix) => matrix,
        Nf4Weight::Device(tensors) => return tensors.forward(x),
    };
    let [n, _] = x.dims();
    let device = x.device();
    if n >= NF4_DENSE_ROWS {
        return x.matmul(nf4_dense::<B>(matrix, &device).transpose());
    }
    let input = HostValues::of(x);
    let mut out = vec![0.0f32; n * matrix.rows()];
    matrix.matmul_t(input.values(), n, &mut out);
    Tensor::from_data(TensorData::new(out, [n, matrix.rows()]), &device)
}

fn dense<B: Backend>(matrix: &QuantMatrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(matrix.dequantize(), [matrix.rows(), matrix.cols()]),
        device,
    )
}

/// The row order that undoes llama.cpp's q/k permutation: Hugging Face row
/// `h·hd + j·hd/2 + i` is GGUF row `h·hd + 2i + j`.
pub(crate) fn unpermute_order(heads: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut order = Vec::with_capacity(heads * head_dim);
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                order.push(h * head_dim + 2 * i + j);
            }
        }
    }
    order
}

pub(crate) fn permute_values(values: &[f32], order: &[usize]) -> Vec<f32> {
    order.iter().map(|&i| values[i]).collect()
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::Flex;
    use burn::tensor::{Tensor, TensorData};

    use super::{Rope, RopeTables, flex_kv_write, half_swap, to_host, unpermute_order};
    use crate::generate::Rng;

    /// The in-place write puts the rows where `slice_assign` does, and a cache someone else
    /// also holds is copied first, not changed under them.
    #[test]
    fn flex_kv_write_matches_slice_assign() {
        let device = Default::default();
        let (kv, capacity, d, start, n) = (3, 8, 4, 5, 2);
        let numbered = |shape: [usize; 3], from: f32| {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| from + i as f32).collect();
            Tensor::<Flex, 3>::from_data(TensorData::new(values, shape), &device)
        };
        let rows = numbered([kv, n, d], 1000.0);
        let expected = to_host(
            numbered([kv, capacity, d], 0.0)
                .slice_assign([0..kv, start..start + n, 0..d], rows.clone()),
        );
        let alone = flex_kv_write(numbered([kv, capacity, d], 0.0), start, rows.clone());
        assert_eq!(to_host(alone), expected);
        let shared = numbered([kv, capacity, d], 0.0);
        let other = shared.clone();
        let written = flex_kv_write(shared, start, rows);
        assert_eq!(to_host(written), expected);
        assert_eq!(to_host(other), to_host(numbered([kv, capacity, d], 0.0)));
    }

    /// The rotation through the swap product gives Hugging Face's `rotate_half` to the bit:
    /// `(x1 cos − x2 sin, x2 cos + x1 sin)` per head and position.
    #[test]
    fn rope_is_rotate_half_to_the_bit() {
        let (heads, n, hd) = (3, 5, 8);
        let half = hd / 2;
        let mut rng = Rng::new(7);
        let mut draw = |count: usize| -> Vec<f32> {
            (0..count)
                .map(|_| rng.next_f64() as f32 * 4.0 - 2.0)
                .collect()
        };
        let tables = RopeTables {
            cos: draw(n * half),
            sin: draw(n * half),
        };
        let x = draw(heads * n * hd);
        let device = Default::default();
        let rope = Rope::<Flex>::new(&tables, n, &half_swap(hd, &device));
        let input =
            Tensor::<Flex, 3>::from_data(TensorData::new(x.clone(), [heads, n, hd]), &device);
        let got: Vec<f32> = rope
            .apply(input.swap_dims(0, 1), None)
            .into_data()
            .into_vec()
            .expect("f32");
        for h in 0..heads {
            for t in 0..n {
                let row = &x[(h * n + t) * hd..][..hd];
                for i in 0..half {
                    let (c, s) = (tables.cos[t * half + i], tables.sin[t * half + i]);
                    let at = (h * n + t) * hd;
                    assert_eq!(
                        got[at + i],
                        row[i] * c - row[i + half] * s,
                        "({h}, {t}, {i})"
                    );
                    assert_eq!(
                        got[at + half + i],
                        row[i + half] * c + row[i] * s,
                        "({h}, {t}, {})",
                        half + i
                    );
                }
            }
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, half, …).swapaxes(1, 2): GGUF row (h, i, j) holds
        // Hugging Face row (h, j, i).
        let (heads, hd) = (2, 8);
        let hf: Vec<usize> = (0..heads * hd).collect();
        let mut gguf = vec![0; hf.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    gguf[h * hd + 2 * i + j] = hf[h * hd + j * hd / 2 + i];
                }
            }
        }
        let back: Vec<usize> = unpermute_order(heads, hd)
            .iter()
            .map(|&r| gguf[r])
            .collect();
        assert_eq!(back, hf);
    }
}
