//! The Llama-family decoder on burn: RMSNorm, rotary embeddings, grouped-query attention with
//! a KV cache, SwiGLU, with the per-architecture switches of [`DecoderConfig`].
//!
//! Projections are [`Linear`]s of two kinds. On GPU backends they are dense f32 tensors and
//! burn multiplies them. On the CPU they stay in the file's own encoding (Q4_1, Q8_0, BF16 …)
//! and our block kernels multiply them ([`QuantMatrix::matmul_t`]): burn's CPU backend would
//! dequantise the weights to f32 and read four to eight times the bytes for every token.

use std::sync::Arc;

use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::config::DecoderConfig;
use super::weights::WeightFiles;
use crate::error::{Error, Result};
use crate::quant::QuantMatrix;

/// How projection weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    /// Dense f32 tensors on the backend's device.
    Dense,
    /// In the file's encoding, in host memory, multiplied by the CPU kernels.
    Host,
}

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
}

impl<B: Backend> Linear<B> {
    /// `x` is `[tokens, in]`; the result is `[tokens, out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (x.matmul(weight.clone()), bias),
            Linear::Host { matrix, bias } => (host_matmul(matrix, x), bias),
        };
        match bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }
}

fn host_matmul<B: Backend>(matrix: &QuantMatrix, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let device = x.device();
    let input = to_host(x);
    let mut out = vec![0.0f32; n * matrix.rows()];
    matrix.matmul_t(&input, n, &mut out);
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

    fn forward(&self, h: Tensor<B, 2>) -> [Tensor<B, 2>; 3] {
        match self {
            Qkv::Separate { q, k, v } => [q.forward(h.clone()), k.forward(h.clone()), v.forward(h)],
            Qkv::Host {
                qkv,
                biases,
                widths,
            } => {
                let all = host_matmul(qkv, h);
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
        }
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
    fn forward(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Mlp::Separate { gate, up, down } => {
                down.forward(silu(gate.forward(h.clone())) * up.forward(h))
            }
            Mlp::Host { gate_up, down } => {
                let [n, _] = h.dims();
                let device = h.device();
                let x = to_host(h);
                let width = gate_up.rows() / 2;
                let mut gu = vec![0.0f32; n * 2 * width];
                gate_up.matmul_t(&x, n, &mut gu);
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

fn to_host<B: Backend>(x: Tensor<B, 2>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensors convert to f32")
}

/// Keys and values of the tokens seen so far, per layer: `[kv_heads, tokens, head_dim]`.
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
    len: usize,
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

/// A loaded decoder.
pub struct Decoder<B: Backend> {
    config: DecoderConfig,
    embed: Embedding<B>,
    layers: Vec<Block<B>>,
    norm: Tensor<B, 1>,
    lm_head: Linear<B>,
    inv_freq: Vec<f64>,
    device: B::Device,
}

impl<B: Backend> Decoder<B> {
    /// Loads the weights of `files` on `device`. `progress` gets the fraction of layers done.
    pub fn load(
        config: DecoderConfig,
        files: &WeightFiles,
        mode: WeightMode,
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
            Ok(match mode {
                WeightMode::Host => Linear::Host {
                    matrix: Arc::new(matrix),
                    bias,
                },
                WeightMode::Dense => Linear::Dense {
                    weight: dense(&matrix, device).transpose(),
                    bias,
                },
            })
        };

        let mlp = |gate_name: &str, up_name: &str, down_name: &str| -> Result<Mlp<B>> {
            let width = c.intermediate_size;
            let gate = files.matrix(gate_name, width, d)?;
            let up = files.matrix(up_name, width, d)?;
            let down = files.matrix(down_name, d, width)?;
            if mode == WeightMode::Host && gate.ty() == up.ty() {
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
            let wrap = |matrix: QuantMatrix| match mode {
                WeightMode::Host => Linear::Host {
                    matrix: Arc::new(matrix),
                    bias: None,
                },
                WeightMode::Dense => Linear::Dense {
                    weight: dense(&matrix, device).transpose(),
                    bias: None,
                },
            };
            Ok(Mlp::Separate {
                gate: wrap(gate),
                up: wrap(up),
                down: wrap(down),
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
            _ => match mode {
                WeightMode::Host => Linear::Host {
                    matrix: embed_matrix.clone(),
                    bias: None,
                },
                WeightMode::Dense => Linear::Dense {
                    weight: dense(&embed_matrix, device).transpose(),
                    bias: None,
                },
            },
        };
        let embed = match mode {
            WeightMode::Host => Embedding::Host(embed_matrix),
            WeightMode::Dense => Embedding::Dense(dense(&embed_matrix, device)),
        };
        Ok(Self {
            inv_freq: config.rope_inv_freq(),
            norm: vector("model.norm.weight", d)?,
            config,
            embed,
            layers,
            lm_head,
            device: device.clone(),
        })
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
        let hidden = self.forward_hidden(tokens, cache)?;
        let [n, _] = hidden.dims();
        Ok(self.logits(hidden.narrow(0, n - 1, 1)))
    }

    /// Runs `tokens` after those already in `cache` and returns the logits of every one,
    /// `[tokens, vocab]` row-major.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache<B>) -> Result<Vec<f32>> {
        let hidden = self.forward_hidden(tokens, cache)?;
        Ok(self.logits(hidden))
    }

    /// The output head on final hidden states `[n, d]`: `[n, vocab]` logits, row-major.
    fn logits(&self, hidden: Tensor<B, 2>) -> Vec<f32> {
        let normed = rms_norm(hidden, &self.norm, self.config.rms_norm_eps);
        to_host(self.lm_head.forward(normed))
    }

    fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache<B>) -> Result<Tensor<B, 2>> {
        let c = &self.config;
        let n = tokens.len();
        let start = cache.len;
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
        let (cos, sin) = self.rope_tables(start, n);
        let mask = (n > 1).then(|| self.causal_mask(start, n));
        for (layer, block) in self.layers.iter().enumerate() {
            let h = rms_norm(x.clone(), &block.attn_norm, c.rms_norm_eps);
            let attn = self.attention(block, h, &cos, &sin, mask.clone(), &mut cache.layers[layer]);
            x = x + attn;
            let h = rms_norm(x.clone(), &block.ffn_norm, c.rms_norm_eps);
            let ffn = block.mlp.forward(h);
            x = x + ffn;
        }
        cache.len += n;
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

    /// cos and sin of the rotation angles for positions `start..start + n`: `[1, n, half]`.
    fn rope_tables(&self, start: usize, n: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
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
        let make = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, n, half]), &self.device);
        (make(cos), make(sin))
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
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        mask: Option<Tensor<B, 3, Bool>>,
        cache: &mut Option<(Tensor<B, 3>, Tensor<B, 3>)>,
    ) -> Tensor<B, 2> {
        let c = &self.config;
        let [n, _] = h.dims();
        let (hd, heads, kv_heads) = (c.head_dim, c.heads, c.kv_heads);
        let group = heads / kv_heads;
        let split = |x: Tensor<B, 2>, heads: usize| x.reshape([n, heads, hd]).swap_dims(0, 1);
        let [q, k, v] = block.qkv.forward(h);
        let mut q = split(q, heads);
        let mut k = split(k, kv_heads);
        let v = split(v, kv_heads);
        if let Some(w) = &block.q_norm {
            q = rms_norm(q, w, c.rms_norm_eps);
        }
        if let Some(w) = &block.k_norm {
            k = rms_norm(k, w, c.rms_norm_eps);
        }
        let q = rope(q, cos, sin);
        let k = rope(k, cos, sin);

        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // Query heads that share a key/value head are stacked as extra rows, so the keys and
        // values are used as they are instead of being repeated per query head.
        let q = q.reshape([kv_heads, group * n, hd]);
        let scale = (hd as f64).sqrt().recip();
        let mut scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(scale);
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let out = softmax(scores, 2).matmul(v);
        let out = out
            .reshape([heads, n, hd])
            .swap_dims(0, 1)
            .reshape([n, heads * hd]);
        block.o.forward(out)
    }
}

/// RMSNorm over the last dimension.
fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f32,
) -> Tensor<B, D> {
    let mean_square = (x.clone() * x.clone()).mean_dim(D - 1);
    x * (mean_square + eps).sqrt().recip() * weight.clone().unsqueeze::<D>()
}

/// Rotates the two halves of each head (the Hugging Face "rotate_half" layout).
fn rope<B: Backend>(x: Tensor<B, 3>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> Tensor<B, 3> {
    let [_, _, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().narrow(2, 0, half);
    let x2 = x.narrow(2, half, half);
    Tensor::cat(
        vec![
            x1.clone() * cos.clone() - x2.clone() * sin.clone(),
            x1 * sin.clone() + x2 * cos.clone(),
        ],
        2,
    )
}

fn dense<B: Backend>(matrix: &QuantMatrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(matrix.dequantize(), [matrix.rows(), matrix.cols()]),
        device,
    )
}

/// The row order that undoes llama.cpp's q/k permutation: Hugging Face row
/// `h·hd + j·hd/2 + i` is GGUF row `h·hd + 2i + j`.
fn unpermute_order(heads: usize, head_dim: usize) -> Vec<usize> {
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

fn permute_values(values: &[f32], order: &[usize]) -> Vec<f32> {
    order.iter().map(|&i| values[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::unpermute_order;

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
