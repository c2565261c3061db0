//! The manifest as a Hugging Face model card (`README.md`): YAML front matter the Hub reads
//! (`base_model`, `base_model_relation: adapter`, `datasets`, `library_name: peft`, `license`,
//! `tags`), then a body a person reads: who contributed, their shares, the data, the training
//! settings, the results, and the manifest's hash and signature.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alloy_primitives::Address;
use serde_json::Value;

use super::{Manifest, ManifestError, TOTAL_BPS};

/// The model card. The manifest should be valid; the hash shown is computed here.
pub fn model_card(manifest: &Manifest) -> Result<String, ManifestError> {
    let hash = manifest.hash()?;
    let mut out = String::new();
    let _ = write_front_matter(&mut out, manifest);
    let _ = write_body(&mut out, manifest, &format!("{hash}"));
    Ok(out)
}

fn write_front_matter(out: &mut String, m: &Manifest) -> std::fmt::Result {
    writeln!(out, "---")?;
    writeln!(out, "base_model: {}", yaml_string(&m.base_model.repo))?;
    writeln!(out, "base_model_relation: adapter")?;
    if !m.datanets.is_empty() {
        writeln!(out, "datasets:")?;
        for d in &m.datanets {
            writeln!(out, "- {}", yaml_string(&d.id))?;
        }
    }
    writeln!(out, "library_name: peft")?;
    // The Hub's licence identifiers are the SPDX ones in lower case.
    writeln!(out, "license: {}", yaml_string(&m.license.to_lowercase()))?;
    writeln!(out, "tags:")?;
    let method = m.training.method.to_lowercase();
    for tag in ["modelfactory", "peft", method.as_str(), "lineage-manifest"] {
        writeln!(out, "- {}", yaml_string(tag))?;
    }
    writeln!(out, "---")?;
    writeln!(out)
}

fn write_body(out: &mut String, m: &Manifest, hash: &str) -> std::fmt::Result {
    writeln!(out, "# {}", text(&m.name))?;
    writeln!(out)?;
    writeln!(
        out,
        "A {} adapter for [{}](https://huggingface.co/{}) at revision `{}`, trained with \
         ModelFactory on {} contribution{} from {} Datanet{}.",
        text(method_name(&m.training.method)),
        text(&m.base_model.repo),
        m.base_model.repo,
        code(&m.base_model.revision),
        m.contributions.len(),
        plural(m.contributions.len()),
        m.datanets.len(),
        plural(m.datanets.len()),
    )?;
    writeln!(out)?;

    writeln!(out, "## Contributors and shares")?;
    writeln!(out)?;
    let influence = m.attribution.influence.as_ref();
    match influence {
        None => writeln!(
            out,
            "Method: `{}`. Each contributor's share is their part of the training rows, in \
             basis points (10 000 in all), rounded by the largest-remainder method. It measures \
             how much of the data each person wrote, not how much each row changed the model.",
            m.attribution.method.as_str()
        )?,
        Some(i) => {
            writeln!(
                out,
                "Method: `{}`. Each contributor's share is their part of the measured influence \
                 of their rows on the evaluation loss ({} training rows against {} held-out \
                 rows, DataInf over the LoRA gradients), in basis points (10 000 in all), \
                 rounded by the largest-remainder method. Contributors whose rows raised the \
                 loss are marked harmful and get no share.",
                m.attribution.method.as_str(),
                i.train_rows,
                i.eval_rows
            )?;
            if let Some(a) = &i.accuracy {
                writeln!(out)?;
                writeln!(
                    out,
                    "Measured accuracy on this run: LDS {:.3} over {} adapters retrained on \
                     random halves (1 would rank their losses perfectly, 0 no better than \
                     chance); the credit of {:.0} % of contributors has the sign of what \
                     leaving them out costs.",
                    a.lds,
                    a.subsets,
                    100.0 * a.loco_sign_agreement
                )?;
            }
        }
    }
    writeln!(out)?;
    if influence.is_some() {
        writeln!(out, "| Contributor | Rows | Influence | Share |")?;
        writeln!(out, "|---|---:|---:|---:|")?;
    } else {
        writeln!(out, "| Contributor | Rows | Share |")?;
        writeln!(out, "|---|---:|---:|")?;
    }
    let mut rows: BTreeMap<Address, u64> = BTreeMap::new();
    for c in &m.contributions {
        *rows.entry(c.contributor).or_default() += c.rows_used;
    }
    for (address, used) in &rows {
        let bps = m
            .attribution
            .shares
            .iter()
            .find(|s| s.contributor == *address)
            .map_or(0, |s| s.bps);
        let score = influence
            .and_then(|i| i.scores.iter().find(|s| s.contributor == *address))
            .map(|s| s.score);
        let share = match score {
            Some(s) if s < 0.0 => "none (harmful)".to_string(),
            _ if bps == 0 => "below one basis point".to_string(),
            _ => format!("{}.{:02} %", bps / 100, bps % 100),
        };
        match (influence, score) {
            (Some(_), Some(s)) => writeln!(out, "| `{address}` | {used} | {s:.4e} | {share} |")?,
            (Some(_), None) => writeln!(out, "| `{address}` | {used} | - | {share} |")?,
            (None, _) => writeln!(out, "| `{address}` | {used} | {share} |")?,
        }
    }
    let shared: u32 = m.attribution.shares.iter().map(|s| u32::from(s.bps)).sum();
    writeln!(
        out,
        "| **{} contributor{}** | {} |{} {}.{:02} % |",
        rows.len(),
        plural(rows.len()),
        rows.values().sum::<u64>(),
        if influence.is_some() { " |" } else { "" },
        shared / 100,
        shared % 100
    )?;
    debug_assert!(shared <= u32::from(TOTAL_BPS));
    writeln!(out)?;

    writeln!(out, "## Training data")?;
    writeln!(out)?;
    for d in &m.datanets {
        let used = m.contributions.iter().filter(|c| c.datanet == d.id).count();
        writeln!(
            out,
            "- [{}](https://huggingface.co/datasets/{}) at revision `{}`: {} contribution{} used, \
             {} shard{}, contributions root `{}`",
            text(&d.id),
            d.id,
            code(&d.revision),
            used,
            plural(used),
            d.shards.len(),
            plural(d.shards.len()),
            code(&d.contributions_root),
        )?;
    }
    let mut licenses: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &m.contributions {
        *licenses.entry(c.license.as_str()).or_default() += 1;
    }
    let licenses: Vec<String> = licenses
        .iter()
        .map(|(l, n)| format!("{} ({n})", text(l)))
        .collect();
    writeln!(out, "- Contribution licences: {}", licenses.join(", "))?;
    writeln!(out)?;

    writeln!(out, "## Training")?;
    writeln!(out)?;
    writeln!(out, "| Setting | Value |")?;
    writeln!(out, "|---|---|")?;
    writeln!(out, "| method | `{}` |", code(&m.training.method))?;
    writeln!(out, "| backend | `{}` |", code(&m.training.backend))?;
    writeln!(out, "| seed | {} |", m.training.seed)?;
    writeln!(
        out,
        "| code version | `{}` |",
        code(&m.training.code_version)
    )?;
    for (name, value) in &m.training.hyperparameters {
        writeln!(out, "| `{}` | `{}` |", code(name), code(&compact(value)))?;
    }
    writeln!(
        out,
        "| run | `{}`, {} to {} |",
        code(&m.run.id),
        text(&m.run.started_at),
        text(&m.run.ended_at)
    )?;
    writeln!(out)?;

    if !m.metrics.is_empty() {
        writeln!(out, "## Evaluation")?;
        writeln!(out)?;
        writeln!(out, "| Metric | Value |")?;
        writeln!(out, "|---|---:|")?;
        for (name, value) in &m.metrics {
            writeln!(out, "| `{}` | {value} |", code(name))?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Lineage manifest")?;
    writeln!(out)?;
    writeln!(
        out,
        "The full record is `lineage-manifest.json` (schema `{}`, version {}).",
        super::SCHEMA,
        m.version
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "- Manifest hash (keccak256 of its RFC 8785 canonical JSON, without the signature): `{hash}`"
    )?;
    writeln!(out, "- Publisher: `{}`", m.publisher)?;
    match &m.signature {
        Some(signature) => writeln!(
            out,
            "- Signature (EIP-712, domain \"ModelFactory Lineage Manifest\" version 1): `{}`",
            code(signature)
        )?,
        None => writeln!(out, "- Not signed yet.")?,
    }
    Ok(())
}

/// A YAML double-quoted scalar. JSON's string syntax is a subset of it.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Text for a Markdown table cell or line: no line breaks, and the characters that would
/// start markup escaped.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside a code span: a backtick would end it, and `|` would split a table row.
fn code(s: &str) -> String {
    s.replace(['`', '\n', '\r'], " ").replace('|', "\\|")
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The method as people write it.
fn method_name(method: &str) -> &str {
    match method {
        "lora" => "LoRA",
        "qlora" => "QLoRA",
        other => other,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
