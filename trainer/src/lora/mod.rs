//! LoRA adapters: their configuration, their weights in host memory, and the Hugging Face PEFT
//! layout they are saved in (`adapter_model.safetensors` + `adapter_config.json`), so that PEFT,
//! vLLM and llama.cpp's converter load what the studio trains.
//!
//! A projection `y = x Wᵀ` with an adapter becomes `y = x Wᵀ + s · (x Aᵀ) Bᵀ`, with `A` of
//! shape `[r, in]`, `B` of shape `[out, r]` and `s = alpha / r` (or `alpha / √r` for rsLoRA).

mod merge;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generate::Rng;
use crate::loading::safetensors_writer::{StTensor, safetensors_bytes, write_atomically};
use crate::model::{DecoderConfig, WeightFiles};

pub use merge::{MergedDtype, merge_adapter};

/// The file PEFT keeps adapter weights in.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The file PEFT keeps the adapter's configuration in.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// A projection LoRA can wrap, by its PEFT / Hugging Face module name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// `self_attn.q_proj`
    #[serde(rename = "q_proj")]
    Q,
    /// `self_attn.k_proj`
    #[serde(rename = "k_proj")]
    K,
    /// `self_attn.v_proj`
    #[serde(rename = "v_proj")]
    V,
    /// `self_attn.o_proj`
    #[serde(rename = "o_proj")]
    O,
    /// `mlp.gate_proj`
    #[serde(rename = "gate_proj")]
    Gate,
    /// `mlp.up_proj`
    #[serde(rename = "up_proj")]
    Up,
    /// `mlp.down_proj`
    #[serde(rename = "down_proj")]
    Down,
}

impl Target {
    /// Every target, in the order of the decoder block.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The module's name, as PEFT's `target_modules` lists it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The target named `name` (`q_proj`, … or the short `q`, `gate`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Target::ALL
            .into_iter()
            .find(|t| t.name() == name || t.name().trim_end_matches("_proj") == name)
    }

    /// Where the module sits in a decoder block.
    pub fn module_path(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        }
    }

    /// Position in [`Target::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// `(in_features, out_features)` of this projection in a model of `config`.
    pub fn shape(self, config: &DecoderConfig) -> (usize, usize) {
        let d = config.hidden_size;
        let q = config.heads * config.head_dim;
        let kv = config.kv_heads * config.head_dim;
        let ff = config.intermediate_size;
        match self {
            Target::Q => (d, q),
            Target::K | Target::V => (d, kv),
            Target::O => (q, d),
            Target::Gate | Target::Up => (d, ff),
            Target::Down => (ff, d),
        }
    }
}

/// The shape of an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// The rank `r`.
    pub rank: usize,
    /// `alpha`; the update is scaled by `alpha / r` (or `alpha / √r` with rsLoRA).
    pub alpha: f32,
    /// Dropout on the adapter's input while training.
    pub dropout: f32,
    /// rsLoRA's rank-stabilised scaling, `alpha / √r` (Kalajdzievski, 2023).
    pub rslora: bool,
    /// The projections that get an adapter.
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            rslora: false,
            targets: Target::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// The factor the update `(x Aᵀ) Bᵀ` is multiplied by.
    pub fn scaling(&self) -> f32 {
        if self.rslora {
            self.alpha / (self.rank as f32).sqrt()
        } else {
            self.alpha / self.rank as f32
        }
    }

    /// Checks the numbers before anything is allocated.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Training { what });
        if self.rank == 0 || self.rank > 4096 {
            return bad(format!("LoRA rank {} is outside 1..=4096", self.rank));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!(
                "LoRA alpha {} must be a positive number",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("LoRA dropout {} is outside [0, 1)", self.dropout));
        }
        if self.targets.is_empty() {
            return bad(
                "no target modules: choose at least one of q, k, v, o, gate, up, down".into(),
            );
        }
        Ok(())
    }
}

/// One projection's adapter in host memory, in PEFT's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// `A`, `[rank, in]` row-major.
    pub a: Vec<f32>,
    /// `B`, `[out, rank]` row-major.
    pub b: Vec<f32>,
    /// `in_features`.
    pub inputs: usize,
    /// `out_features`.
    pub outputs: usize,
}

impl LoraPair {
    /// PEFT's initialisation: `A` Kaiming-uniform with `a = √5` (so uniform in
    /// `±1/√in`), `B` zero, which makes a new adapter change nothing.
    pub fn init(rank: usize, inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        LoraPair {
            a: (0..rank * inputs)
                .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * bound)
                .collect(),
            b: vec![0.0; outputs * rank],
            inputs,
            outputs,
        }
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.a.len() / self.inputs.max(1)
    }

    /// `ΔW = s · B A`, `[out, in]` row-major: what merging adds to the base weight.
    pub fn delta(&self, scaling: f32) -> Vec<f32> {
        let r = self.rank();
        let mut w = vec![0.0f32; self.outputs * self.inputs];
        for (o, row) in w.chunks_exact_mut(self.inputs).enumerate() {
            for k in 0..r {
                let coeff = scaling * self.b[o * r + k];
                if coeff == 0.0 {
                    continue;
                }
                let a = &self.a[k * self.inputs..(k + 1) * self.inputs];
                for (w, &a) in row.iter_mut().zip(a) {
                    *w += coeff * a;
                }
            }
        }
        w
    }
}

/// A whole adapter: its configuration and one [`LoraPair`] per (layer, target).
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// Rank, alpha, dropout, targets.
    pub config: LoraConfig,
    /// What PEFT records as `base_model_name_or_path`.
    pub base_model: String,
    /// Per decoder layer, per [`Target::index`].
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

impl Adapter {
    /// A fresh adapter for a model of `model`'s shape, initialised as PEFT does.
    pub fn init(
        config: LoraConfig,
        model: &DecoderConfig,
        base_model: impl Into<String>,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let layers = (0..model.layers)
            .map(|_| {
                let mut pairs: [Option<LoraPair>; 7] = Default::default();
                for &t in &config.targets {
                    let (i, o) = t.shape(model);
                    pairs[t.index()] = Some(LoraPair::init(config.rank, i, o, &mut rng));
                }
                pairs
            })
            .collect();
        Ok(Adapter {
            config,
            base_model: base_model.into(),
            layers,
        })
    }

    /// Trainable numbers.
    pub fn parameters(&self) -> usize {
        self.pairs().map(|(_, _, p)| p.a.len() + p.b.len()).sum()
    }

    /// Every pair with its layer and target.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Target, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(l, pairs)| {
            Target::ALL
                .into_iter()
                .filter_map(move |t| pairs[t.index()].as_ref().map(|p| (l, t, p)))
        })
    }

    /// PEFT's key for a pair's `A` or `B` weight.
    pub fn peft_key(layer: usize, target: Target, which: char) -> String {
        format!(
            "base_model.model.model.layers.{layer}.{}.{}.lora_{which}.weight",
            target.module_path(),
            target.name()
        )
    }

    /// Checks that the adapter fits a model of `model`'s shape.
    pub fn check_fits(&self, model: &DecoderConfig, path: &Path) -> Result<()> {
        if self.layers.len() != model.layers {
            return Err(Error::Adapter {
                what: format!(
                    "the adapter has {} layers but the model has {}",
                    self.layers.len(),
                    model.layers
                ),
                path: path.to_path_buf(),
            });
        }
        for (l, t, p) in self.pairs() {
            if (p.inputs, p.outputs) != t.shape(model) {
                return Err(Error::Adapter {
                    what: format!(
                        "layer {l} {}: the adapter is {}→{} but the model's projection is {}→{}",
                        t.name(),
                        p.inputs,
                        p.outputs,
                        t.shape(model).0,
                        t.shape(model).1
                    ),
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// Saves the adapter in PEFT's layout in `dir` (created if missing). Each file is written
    /// through a temporary file and renamed, so an interrupted save never leaves half a file.
    pub fn save_peft(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder", dir, e))?;
        let mut tensors = Vec::new();
        for (l, t, p) in self.pairs() {
            let r = p.rank() as u64;
            tensors.push(StTensor::f32(
                &Self::peft_key(l, t, 'A'),
                &[r, p.inputs as u64],
                &p.a,
            ));
            tensors.push(StTensor::f32(
                &Self::peft_key(l, t, 'B'),
                &[p.outputs as u64, r],
                &p.b,
            ));
        }
        let metadata = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
        let weights = dir.join(ADAPTER_WEIGHTS);
        write_atomically(&weights, &safetensors_bytes(&tensors, &metadata))
            .map_err(|e| Error::io("write the adapter weights", &weights, e))?;
        let config = dir.join(ADAPTER_CONFIG);
        let json = serde_json::to_vec_pretty(&PeftConfig::from_adapter(self)).map_err(|e| {
            Error::Training {
                what: format!("cannot encode the adapter configuration: {e}"),
            }
        })?;
        write_atomically(&config, &json)
            .map_err(|e| Error::io("write the adapter configuration", &config, e))?;
        Ok(())
    }

    /// Loads an adapter saved in PEFT's layout, by us or by PEFT.
    pub fn load_peft(dir: &Path) -> Result<Self> {
        let config_path = dir.join(ADAPTER_CONFIG);
        if !config_path.is_file() {
            return Err(Error::Adapter {
                what: format!("not a PEFT adapter folder: it has no {ADAPTER_CONFIG}"),
                path: dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::io("read the adapter configuration", &config_path, e))?;
        let peft: PeftConfig = serde_json::from_str(&text).map_err(|e| Error::Adapter {
            what: format!("{ADAPTER_CONFIG} is not a PEFT LoRA configuration: {e}"),
            path: config_path.clone(),
        })?;
        let config = peft.to_lora_config(&config_path)?;
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let files = WeightFiles::safetensors_file(&weights_path)?;
        let mut layers: Vec<[Option<LoraPair>; 7]> = Vec::new();
        for name in files.tensor_names() {
            let Some((layer, target, which)) = parse_peft_key(&name) else {
                return Err(Error::Adapter {
                    what: format!(
                        "tensor `{name}` is not a LoRA weight of a Llama-family projection \
                         (DoRA, bias training and saved modules are not supported)"
                    ),
                    path: weights_path,
                });
            };
            if layer >= 4096 {
                return Err(Error::Adapter {
                    what: format!("tensor `{name}` names layer {layer}"),
                    path: weights_path,
                });
            }
            if layers.len() <= layer {
                layers.resize_with(layer + 1, Default::default);
            }
            let raw = files.require(&name)?;
            let [rows, cols] = raw.shape[..] else {
                return Err(Error::Adapter {
                    what: format!("tensor `{name}` has shape {:?}, expected 2-D", raw.shape),
                    path: weights_path,
                });
            };
            let values = files.f32s(&name, &[rows, cols])?;
            let slot = layers[layer][target.index()].get_or_insert_with(|| LoraPair {
                a: Vec::new(),
                b: Vec::new(),
                inputs: 0,
                outputs: 0,
            });
            if which == 'A' {
                slot.a = values;
                slot.inputs = cols as usize;
            } else {
                slot.b = values;
                slot.outputs = rows as usize;
            }
        }
        for (l, pairs) in layers.iter().enumerate() {
            for t in Target::ALL {
                if let Some(p) = &pairs[t.index()] {
                    let rank_a = p.a.len() / p.inputs.max(1);
                    let rank_b = p.b.len() / p.outputs.max(1);
                    if p.a.is_empty() || p.b.is_empty() || rank_a != rank_b {
                        return Err(Error::Adapter {
                            what: format!(
                                "layer {l} {}: lora_A and lora_B are missing or disagree on \
                                 the rank",
                                t.name()
                            ),
                            path: weights_path,
                        });
                    }
                }
            }
        }
        if layers.is_empty() {
            return Err(Error::Adapter {
                what: "the weights file holds no LoRA tensors".into(),
                path: weights_path,
            });
        }
        Ok(Adapter {
            config,
            base_model: peft.base_model_name_or_path.unwrap_or_default(),
            layers,
        })
    }
}

/// `base_model.model.model.layers.{l}.{self_attn|mlp}.{target}.lora_{A|B}.weight`, also
/// accepting PEFT's older keys that carry the adapter name (`lora_A.default.weight`).
fn parse_peft_key(name: &str) -> Option<(usize, Target, char)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, rest) = rest.split_once('.')?;
    let (target, rest) = rest.split_once('.')?;
    let target = Target::from_name(target)?;
    if target.module_path() != module {
        return None;
    }
    let which = match rest {
        "lora_A.weight" | "lora_A.default.weight" => 'A',
        "lora_B.weight" | "lora_B.default.weight" => 'B',
        _ => return None,
    };
    Some((layer, target, which))
}

/// `adapter_config.json` as PEFT writes it (the fields it needs to rebuild the adapter).
#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    r: usize,
    lora_alpha: f32,
    #[serde(default)]
    lora_dropout: f32,
    target_modules: TargetModules,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default = "no_bias")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    init_lora_weights: serde_json::Value,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    revision: Option<String>,
    // Newer PEFT options that change what the weights mean: refused rather than ignored.
    #[serde(default)]
    alora_invocation_tokens: Option<serde_json::Value>,
    #[serde(default)]
    use_qalora: bool,
    #[serde(default)]
    trainable_token_indices: Option<serde_json::Value>,
    #[serde(default)]
    lora_bias: bool,
}

fn no_bias() -> String {
    "none".into()
}

/// PEFT writes `target_modules` as a list, or as one regular expression string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

impl PeftConfig {
    fn from_adapter(adapter: &Adapter) -> Self {
        let c = &adapter.config;
        PeftConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: c.rank,
            lora_alpha: c.alpha,
            lora_dropout: c.dropout,
            target_modules: TargetModules::List(
                c.targets.iter().map(|t| t.name().to_owned()).collect(),
            ),
            use_rslora: c.rslora,
            use_dora: false,
            bias: no_bias(),
            fan_in_fan_out: false,
            base_model_name_or_path: Some(adapter.base_model.clone()),
            inference_mode: true,
            init_lora_weights: serde_json::Value::Bool(true),
            modules_to_save: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            revision: None,
            alora_invocation_tokens: None,
            use_qalora: false,
            trainable_token_indices: None,
            lora_bias: false,
        }
    }

    fn to_lora_config(&self, path: &Path) -> Result<LoraConfig> {
        let refuse = |what: String| {
            Err(Error::Adapter {
                what,
                path: path.to_path_buf(),
            })
        };
        if self.peft_type != "LORA" {
            return refuse(format!(
                "peft_type is {:?}, only LORA is supported",
                self.peft_type
            ));
        }
        if self.use_dora {
            return refuse("DoRA adapters (use_dora) are not supported".into());
        }
        if self.bias != "none" {
            return refuse(format!(
                "bias = {:?}: trained biases are not supported",
                self.bias
            ));
        }
        let set = |v: &Option<serde_json::Value>| v.as_ref().is_some_and(|v| !v.is_null());
        if set(&self.alora_invocation_tokens) {
            return refuse("activated LoRA (alora_invocation_tokens) is not supported".into());
        }
        if self.use_qalora {
            return refuse("QA-LoRA adapters (use_qalora) are not supported".into());
        }
        if set(&self.trainable_token_indices) {
            return refuse(
                "trained token embeddings (trainable_token_indices) are not supported".into(),
            );
        }
        if self.lora_bias {
            return refuse("LoRA biases (lora_bias) are not supported".into());
        }
        if self.fan_in_fan_out {
            return refuse("fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported".into());
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return refuse("per-module rank_pattern / alpha_pattern are not supported".into());
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return refuse("modules_to_save (fully trained modules) are not supported".into());
        }
        let targets = match &self.target_modules {
            TargetModules::List(names) => names
                .iter()
                .map(|n| {
                    Target::from_name(n).ok_or_else(|| Error::Adapter {
                        what: format!("target module {n:?} is not a Llama-family projection"),
                        path: path.to_path_buf(),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            // A pattern: the weights file says which modules are present.
            TargetModules::Pattern(_) => Target::ALL.to_vec(),
        };
        let config = LoraConfig {
            rank: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            rslora: self.use_rslora,
            targets,
        };
        if let Err(e) = config.validate() {
            return refuse(e.to_string());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_round_trip() {
        for t in Target::ALL {
            for which in ['A', 'B'] {
                let key = Adapter::peft_key(7, t, which);
                assert_eq!(parse_peft_key(&key), Some((7, t, which)), "{key}");
            }
        }
        assert_eq!(
            parse_peft_key(
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
            ),
            Some((0, Target::Q, 'A'))
        );
        assert_eq!(
            parse_peft_key("base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(parse_peft_key("base_model.model.lm_head.weight"), None);
    }

    #[test]
    fn scaling_follows_peft() {
        let mut c = LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..LoraConfig::default()
        };
        assert_eq!(c.scaling(), 2.0);
        c.rslora = true;
        assert_eq!(c.scaling(), 8.0);
    }

    #[test]
    fn delta_is_b_times_a() {
        let p = LoraPair {
            a: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], // [2, 3]
            b: vec![1.0, 0.0, 0.0, 1.0],           // [2, 2]
            inputs: 3,
            outputs: 2,
        };
        assert_eq!(p.delta(2.0), vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
    }
}
