//! Merging an adapter into its base model: `W' = W + s · B A` for every adapted projection,
//! written as a Hugging Face folder (`model.safetensors`, `config.json`, tokenizer files) that
//! transformers, vLLM and this studio load like any other model.

use std::path::Path;

use crate::error::{Error, Result};
use crate::loading::safetensors_writer::{StTensor, safetensors_bytes, write_atomically};
use crate::lora::{Adapter, Target};
use crate::model::llama::{permute_values, unpermute_order};
use crate::runtime::OpenedModel;

/// The element type of the merged weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergedDtype {
    /// Exact: what the merge computed.
    #[default]
    F32,
    /// Half the size, the usual release format.
    Bf16,
}

/// Merges `adapter` into the model at `model` and writes the result into `out` (created if
/// missing). `progress` gets the fraction of layers done.
pub fn merge_adapter(
    model: &Path,
    adapter: &Adapter,
    adapter_path: &Path,
    out: &Path,
    dtype: MergedDtype,
    progress: &mut dyn FnMut(f32),
) -> Result<()> {
    let opened = OpenedModel::open(model)?;
    let c = &opened.config;
    adapter.check_fits(c, adapter_path)?;
    let files = &opened.files;
    let permuted = files.has_permuted_qk()?;
    let scaling = adapter.config.scaling();
    let tensor = |name: &str, shape: &[u64], values: &[f32]| match dtype {
        MergedDtype::F32 => StTensor::f32(name, shape, values),
        MergedDtype::Bf16 => StTensor::bf16(name, shape, values),
    };
    let mut tensors = Vec::new();
    let d = c.hidden_size;
    let embed = files.f32s(
        "model.embed_tokens.weight",
        &[c.vocab_size as u64, d as u64],
    )?;
    tensors.push(tensor(
        "model.embed_tokens.weight",
        &[c.vocab_size as u64, d as u64],
        &embed,
    ));
    for layer in 0..c.layers {
        let p = |s: &str| format!("model.layers.{layer}.{s}");
        for norm in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            let values = files.f32s(&p(norm), &[d as u64])?;
            tensors.push(tensor(&p(norm), &[d as u64], &values));
        }
        if c.qk_norm {
            for norm in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] {
                let values = files.f32s(&p(norm), &[c.head_dim as u64])?;
                tensors.push(tensor(&p(norm), &[c.head_dim as u64], &values));
            }
        }
        for target in Target::ALL {
            let (inputs, outputs) = target.shape(c);
            let name = p(&format!(
                "{}.{}.weight",
                target.module_path(),
                target.name()
            ));
            let heads = match target {
                Target::Q => c.heads,
                Target::K => c.kv_heads,
                _ => 0,
            };
            let mut matrix = files.matrix(&name, outputs, inputs)?;
            if permuted && heads > 0 {
                matrix = matrix.permute_rows(&unpermute_order(heads, c.head_dim));
            }
            let mut values = matrix.dequantize();
            if let Some(pair) = &adapter.layers[layer][target.index()] {
                for (w, dw) in values.iter_mut().zip(pair.delta(scaling)) {
                    *w += dw;
                }
            }
            tensors.push(tensor(&name, &[outputs as u64, inputs as u64], &values));
            let bias_name = p(&format!("{}.{}.bias", target.module_path(), target.name()));
            if c.qkv_bias
                && let Some(_) = files.get(&bias_name)?
            {
                let mut bias = files.f32s(&bias_name, &[outputs as u64])?;
                if permuted && heads > 0 {
                    bias = permute_values(&bias, &unpermute_order(heads, c.head_dim));
                }
                tensors.push(tensor(&bias_name, &[outputs as u64], &bias));
            }
        }
        progress((layer + 1) as f32 / c.layers as f32);
    }
    let norm = files.f32s("model.norm.weight", &[d as u64])?;
    tensors.push(tensor("model.norm.weight", &[d as u64], &norm));
    let mut hf = files.config()?;
    if !c.tie_word_embeddings && files.get("lm_head.weight")?.is_some() {
        let head = files.f32s("lm_head.weight", &[c.vocab_size as u64, d as u64])?;
        tensors.push(tensor(
            "lm_head.weight",
            &[c.vocab_size as u64, d as u64],
            &head,
        ));
    } else {
        hf.tie_word_embeddings = true;
    }

    std::fs::create_dir_all(out).map_err(|e| Error::io("create the folder", out, e))?;
    let metadata = [("format".to_owned(), "pt".to_owned())].into();
    let path = out.join("model.safetensors");
    write_atomically(&path, &safetensors_bytes(&tensors, &metadata))
        .map_err(|e| Error::io("write the merged weights", &path, e))?;
    let mut config = serde_json::to_value(&hf).map_err(|e| Error::Training {
        what: format!("cannot encode config.json: {e}"),
    })?;
    config["torch_dtype"] = serde_json::Value::String(
        match dtype {
            MergedDtype::F32 => "float32",
            MergedDtype::Bf16 => "bfloat16",
        }
        .into(),
    );
    let path = out.join("config.json");
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| Error::Training {
        what: format!("cannot encode config.json: {e}"),
    })?;
    write_atomically(&path, &bytes).map_err(|e| Error::io("write", &path, e))?;
    opened.tokenizer.save_folder(out)
}
