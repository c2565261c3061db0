//! From a dataset's examples to the sequences a run trains and evaluates on, with the ids of
//! the rows behind every sequence kept for attribution.

use serde::{Deserialize, Serialize};

use super::{Sequence, TrainConfig};
use crate::data::{
    Example, PackedSegment, SkippedExample, pack, split_train_eval, tokenize_dataset,
};
use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;

/// The sequences of a run and where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedData {
    /// Training sequences.
    pub train: Vec<Sequence>,
    /// Evaluation sequences.
    pub eval: Vec<Sequence>,
    /// For each training sequence, the example ids and token ranges it holds.
    pub train_sources: Vec<Vec<PackedSegment>>,
    /// Examples in the training split.
    pub train_examples: usize,
    /// Examples in the evaluation split.
    pub eval_examples: usize,
    /// Examples that could not be trained on, with the reason.
    pub skipped: Vec<SkippedExample>,
    /// Examples that lost their tail to the maximum length.
    pub truncated: usize,
    /// Trained tokens in the training split.
    pub trained_tokens: usize,
}

/// Tokenises `examples` with the model's chat template, splits them by example into train and
/// eval (seeded), and packs the training split when asked.
pub fn prepare_data(
    tokenizer: &TextTokenizer,
    examples: &[Example],
    config: &TrainConfig,
) -> Result<PreparedData> {
    let report = tokenize_dataset(tokenizer, examples, config.max_length)?;
    if report.examples.is_empty() {
        let reasons: Vec<String> = report
            .skipped
            .iter()
            .take(3)
            .map(|s| format!("{}: {}", s.id, s.reason))
            .collect();
        return Err(Error::Training {
            what: format!(
                "none of the {} examples can be trained on ({})",
                examples.len(),
                reasons.join("; ")
            ),
        });
    }
    let (train, eval) = split_train_eval(report.examples, config.eval_fraction, config.seed)?;
    let (train_examples, eval_examples) = (train.len(), eval.len());
    let trained_tokens = train.iter().map(|e| e.trained_tokens()).sum();
    let (train, train_sources): (Vec<Sequence>, Vec<Vec<PackedSegment>>) = if config.packing {
        pack(&train, config.max_length)?
            .into_iter()
            .map(|p| {
                (
                    Sequence {
                        tokens: p.tokens,
                        trained: p.labels_mask,
                    },
                    p.segments,
                )
            })
            .unzip()
    } else {
        train
            .into_iter()
            .map(|e| {
                let range = 0..e.tokens.len();
                (
                    Sequence {
                        tokens: e.tokens,
                        trained: e.labels_mask,
                    },
                    vec![PackedSegment { id: e.id, range }],
                )
            })
            .unzip()
    };
    let eval = eval
        .into_iter()
        .map(|e| Sequence {
            tokens: e.tokens,
            trained: e.labels_mask,
        })
        .collect();
    Ok(PreparedData {
        train,
        eval,
        train_sources,
        train_examples,
        eval_examples,
        skipped: report.skipped,
        truncated: report.truncated,
        trained_tokens,
    })
}
