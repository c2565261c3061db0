//! The rendered text of a few examples with the trained spans marked, so a user sees before a
//! run what the model will learn to say (wrong masks are a common, silent failure in peers).

use serde::{Deserialize, Serialize};

use super::Example;
use super::tokenize::{SkipReason, tokens_and_mask};
use crate::tokenizer::TextTokenizer;

/// What a piece of the rendered text is to training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Context the model reads but is not trained to produce (prompts, template markup).
    Context,
    /// Trained: the assistant's answer and its end-of-turn token.
    Trained,
    /// Beyond the maximum length: dropped before training.
    Truncated,
}

/// A run of rendered text of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewSegment {
    /// The text, exactly as the chat template rendered it (special tokens included).
    pub text: String,
    /// What it is to training.
    pub kind: SegmentKind,
}

/// One example as the trainer will see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamplePreview {
    /// The example's id.
    pub id: String,
    /// The rendered conversation, in order; empty when the example is skipped.
    pub segments: Vec<PreviewSegment>,
    /// Tokens in the whole rendered conversation.
    pub tokens: usize,
    /// Tokens trained on, after truncation.
    pub trained_tokens: usize,
    /// Why the example will not train, if it will not.
    pub skipped: Option<SkipReason>,
}

/// The first `count` examples rendered with their trained spans marked; `max_len` marks the
/// text that truncation will drop.
pub fn preview(
    tokenizer: &TextTokenizer,
    examples: &[Example],
    count: usize,
    max_len: Option<usize>,
) -> Vec<ExamplePreview> {
    examples
        .iter()
        .take(count)
        .map(|example| preview_one(tokenizer, example, max_len))
        .collect()
}

fn preview_one(
    tokenizer: &TextTokenizer,
    example: &Example,
    max_len: Option<usize>,
) -> ExamplePreview {
    let skipped = |reason| ExamplePreview {
        id: example.id.clone(),
        segments: Vec::new(),
        tokens: 0,
        trained_tokens: 0,
        skipped: Some(reason),
    };
    let masked = match tokens_and_mask(tokenizer, &example.messages) {
        Ok(m) => m,
        Err(reason) => return skipped(reason),
    };
    let offsets = match tokenizer.encode_with_offsets(&masked.text) {
        Ok((ids, offsets)) if ids.len() == masked.tokens.len() => offsets,
        Ok(_) => {
            return skipped(SkipReason::Render {
                message: "the tokenizer gives different tokens with and without offsets".into(),
            });
        }
        Err(e) => {
            return skipped(SkipReason::Render {
                message: e.to_string(),
            });
        }
    };
    let limit = max_len.unwrap_or(usize::MAX);
    let kinds: Vec<SegmentKind> = masked
        .mask
        .iter()
        .enumerate()
        .map(|(i, &trained)| match (i >= limit, trained) {
            (true, _) => SegmentKind::Truncated,
            (false, true) => SegmentKind::Trained,
            (false, false) => SegmentKind::Context,
        })
        .collect();
    let trained_tokens = kinds.iter().filter(|k| **k == SegmentKind::Trained).count();
    let reason = if trained_tokens > 0 {
        None
    } else if masked.mask.contains(&true) {
        Some(SkipReason::LongerThanContext {
            tokens: masked.tokens.len(),
            first_trained: masked.mask.iter().position(|m| *m).unwrap_or(0),
            max_len: limit,
        })
    } else {
        Some(SkipReason::NoTrainedTokens)
    };
    ExamplePreview {
        id: example.id.clone(),
        segments: segments(&masked.text, &offsets, &kinds),
        tokens: masked.tokens.len(),
        trained_tokens,
        skipped: reason,
    }
}

/// Splits `text` into runs by the kind of the token each byte belongs to. Bytes no token
/// covers (spaces some tokenizers leave out of offsets) take the kind of the byte before.
fn segments(text: &str, offsets: &[(usize, usize)], kinds: &[SegmentKind]) -> Vec<PreviewSegment> {
    let mut byte_kind: Vec<Option<SegmentKind>> = vec![None; text.len()];
    for (&(start, end), &kind) in offsets.iter().zip(kinds) {
        for slot in byte_kind.iter_mut().take(end.min(text.len())).skip(start) {
            // Where tokens overlap, trained wins: it is what the user must see.
            if *slot != Some(SegmentKind::Trained) {
                *slot = Some(kind);
            }
        }
    }
    let mut out: Vec<PreviewSegment> = Vec::new();
    let mut previous = SegmentKind::Context;
    for (i, c) in text.char_indices() {
        let kind = byte_kind[i].unwrap_or(previous);
        previous = kind;
        match out.last_mut() {
            Some(last) if last.kind == kind => last.text.push(c),
            _ => out.push(PreviewSegment {
                text: c.to_string(),
                kind,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_bytes_follow_the_byte_before() {
        use SegmentKind::{Context, Trained};
        let text = "ab cd";
        let offsets = [(0, 2), (3, 5)];
        let out = segments(text, &offsets, &[Context, Trained]);
        let parts: Vec<(&str, SegmentKind)> =
            out.iter().map(|s| (s.text.as_str(), s.kind)).collect();
        assert_eq!(parts, vec![("ab ", Context), ("cd", Trained)]);
    }
}
