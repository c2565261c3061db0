//! Conversations → token ids and the mask of tokens the loss is computed on.
//!
//! Only the assistant's turns are trained, each with the end-of-turn token that closes it (so
//! the fine-tuned model learns to stop). The spans are found by incremental rendering: for each
//! assistant turn `k`, the chat template renders `messages[..k]` with the generation prompt and
//! `messages[..=k]` without; the difference is exactly what the model must produce at that
//! point, in the template's own words. That text is then mapped to tokens: by tokenising the
//! text up to each span boundary and checking it is a prefix of the full tokenisation, or, when
//! a tokenizer merges across a boundary, by the tokens' byte offsets.

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Example;
use crate::error::{Error, Result};
use crate::runtime::ChatMessage;
use crate::tokenizer::TextTokenizer;

/// A conversation as training tokens.
///
/// `labels_mask[i]` says whether `tokens[i]` is a target of the loss: the trainer predicts
/// `tokens[i]` from `tokens[..i]` and counts the loss only where the mask is true (the same
/// positions a Hugging Face `labels` array would hold ids rather than -100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedExample {
    /// The [`Example`]'s id.
    pub id: String,
    /// The rendered conversation's token ids, BOS included when the model uses one.
    pub tokens: Vec<u32>,
    /// One flag per token: true for the assistant's tokens (end-of-turn tokens included).
    pub labels_mask: Vec<bool>,
}

impl TokenizedExample {
    /// How many tokens the loss covers.
    pub fn trained_tokens(&self) -> usize {
        self.labels_mask.iter().filter(|m| **m).count()
    }

    /// The example cut to `max_len` tokens (the tail is dropped), or why it cannot be trained.
    pub fn truncated(mut self, max_len: usize) -> Result<Self, SkipReason> {
        let first_trained = self.labels_mask.iter().position(|m| *m);
        match first_trained {
            None => Err(SkipReason::NoTrainedTokens),
            Some(first) if first >= max_len => Err(SkipReason::LongerThanContext {
                tokens: self.tokens.len(),
                first_trained: first,
                max_len,
            }),
            Some(_) => {
                self.tokens.truncate(max_len);
                self.labels_mask.truncate(max_len);
                Ok(self)
            }
        }
    }
}

/// Why an example was not turned into training tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SkipReason {
    /// Every trained token lies beyond the maximum length: truncating would train on nothing.
    LongerThanContext {
        /// Tokens in the whole example.
        tokens: usize,
        /// Index of its first trained token.
        first_trained: usize,
        /// The maximum length.
        max_len: usize,
    },
    /// The rendered conversation has no assistant token (a template that drops the turn).
    NoTrainedTokens,
    /// The chat template renders this assistant turn (1-based, among all turns) differently
    /// once later turns follow, so its tokens cannot be located.
    TurnNotFound {
        /// The turn's 1-based position in the conversation.
        turn: usize,
    },
    /// The chat template or the tokenizer failed on this conversation.
    Render {
        /// Their message.
        message: String,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::LongerThanContext {
                tokens,
                first_trained,
                max_len,
            } => write!(
                f,
                "longer than the context: {tokens} tokens and the answer starts at token \
                 {first_trained}, but the maximum length is {max_len}"
            ),
            SkipReason::NoTrainedTokens => f.write_str("no assistant tokens after rendering"),
            SkipReason::TurnNotFound { turn } => write!(
                f,
                "the chat template writes turn {turn} differently inside the whole \
                 conversation, so its tokens cannot be located"
            ),
            SkipReason::Render { message } => f.write_str(message),
        }
    }
}

/// An example that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedExample {
    /// The [`Example`]'s id.
    pub id: String,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// The result of tokenising a dataset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenizeReport {
    /// The examples that train, in input order, each at most `max_len` tokens.
    pub examples: Vec<TokenizedExample>,
    /// The examples left out, in input order.
    pub skipped: Vec<SkippedExample>,
    /// How many kept examples lost their tail to the maximum length.
    pub truncated: usize,
}

/// Tokenises every example (in parallel) and cuts each to `max_len` tokens.
///
/// Examples the template cannot render, or whose answer starts beyond `max_len`, are listed in
/// [`TokenizeReport::skipped`] rather than failing the whole dataset.
pub fn tokenize_dataset(
    tokenizer: &TextTokenizer,
    examples: &[Example],
    max_len: usize,
) -> Result<TokenizeReport> {
    check_max_len(max_len)?;
    let results: Vec<Result<(TokenizedExample, bool), SkipReason>> = examples
        .par_iter()
        .map(|example| {
            let t = tokenize_example(tokenizer, example)?;
            let cut = t.tokens.len() > max_len;
            Ok((t.truncated(max_len)?, cut))
        })
        .collect();
    let mut report = TokenizeReport::default();
    for (example, result) in examples.iter().zip(results) {
        match result {
            Ok((t, cut)) => {
                report.truncated += usize::from(cut);
                report.examples.push(t);
            }
            Err(reason) => report.skipped.push(SkippedExample {
                id: example.id.clone(),
                reason,
            }),
        }
    }
    Ok(report)
}

pub(crate) fn check_max_len(max_len: usize) -> Result<()> {
    if max_len < 2 {
        return Err(Error::DataSetting {
            what: format!("maximum length {max_len} is too short (at least 2 tokens)"),
        });
    }
    Ok(())
}

/// The whole conversation as tokens with its assistant mask, not truncated.
pub fn tokenize_example(
    tokenizer: &TextTokenizer,
    example: &Example,
) -> Result<TokenizedExample, SkipReason> {
    let masked = tokens_and_mask(tokenizer, &example.messages)?;
    if !masked.mask.contains(&true) {
        return Err(SkipReason::NoTrainedTokens);
    }
    Ok(TokenizedExample {
        id: example.id.clone(),
        tokens: masked.tokens,
        labels_mask: masked.mask,
    })
}

/// A rendered conversation: its text, its tokens and their mask.
pub(crate) struct Masked {
    pub text: String,
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
}

fn render_failed(e: Error) -> SkipReason {
    SkipReason::Render {
        message: e.to_string(),
    }
}

pub(crate) fn tokens_and_mask(
    tokenizer: &TextTokenizer,
    messages: &[ChatMessage],
) -> Result<Masked, SkipReason> {
    let (text, spans) = assistant_spans(tokenizer, messages)?;
    let tokens = tokenizer.encode(&text).map_err(render_failed)?;
    let mut ranges = Vec::with_capacity(spans.len());
    for span in &spans {
        let before = tokenizer
            .encode(&text[..span.start])
            .map_err(render_failed)?;
        let through = tokenizer.encode(&text[..span.end]).map_err(render_failed)?;
        if tokens.starts_with(&through) && through.starts_with(&before) {
            ranges.push(before.len()..through.len());
        } else {
            ranges.clear();
            break;
        }
    }
    if ranges.len() != spans.len() {
        // The tokenizer merges across a span boundary: map by byte offsets instead. A token
        // that straddles a boundary is trained, since the model must produce it.
        let (ids, offsets) = tokenizer
            .encode_with_offsets(&text)
            .map_err(render_failed)?;
        if ids != tokens {
            return Err(SkipReason::Render {
                message: "the tokenizer gives different tokens with and without offsets".into(),
            });
        }
        ranges = spans
            .iter()
            .map(|span| overlapping_tokens(&offsets, span))
            .collect();
    }
    let mut mask = vec![false; tokens.len()];
    for range in ranges {
        let end = end_after_stop_token(tokenizer, &tokens, range.clone());
        for m in &mut mask[range.start..end] {
            *m = true;
        }
    }
    Ok(Masked { text, tokens, mask })
}

/// Tokens whose bytes overlap `span` (an empty-range token counts when it sits inside).
fn overlapping_tokens(offsets: &[(usize, usize)], span: &Range<usize>) -> Range<usize> {
    let inside = |&(start, end): &(usize, usize)| {
        if start == end {
            start > span.start && start < span.end
        } else {
            start < span.end && end > span.start
        }
    };
    let first = offsets.iter().position(inside);
    let last = offsets.iter().rposition(inside);
    match (first, last) {
        (Some(first), Some(last)) => first..last + 1,
        _ => 0..0,
    }
}

/// The end of an assistant span after its last end-of-turn token: text the template writes
/// after it (ChatML's newline) is the next turn's business, never generated.
fn end_after_stop_token(tokenizer: &TextTokenizer, tokens: &[u32], range: Range<usize>) -> usize {
    tokens[range.clone()]
        .iter()
        .rposition(|&t| tokenizer.is_stop(t))
        .map_or(range.end, |i| range.start + i + 1)
}

/// The full conversation text and, per assistant turn, the byte range of what the model
/// produces there (its answer and end-of-turn text).
fn assistant_spans(
    tokenizer: &TextTokenizer,
    messages: &[ChatMessage],
) -> Result<(String, Vec<Range<usize>>), SkipReason> {
    let render = |messages: &[ChatMessage], generation_prompt: bool| {
        tokenizer
            .render_chat(messages, generation_prompt)
            .map_err(render_failed)
    };
    let full = render(messages, false)?;
    let mut spans = Vec::new();
    let mut cursor = 0;
    for (k, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let prompt = render(&messages[..k], true)?;
        let with_turn = render(&messages[..=k], false)?;
        // Normally `prompt` is a prefix of `with_turn`; a template whose generation prompt
        // differs from how it writes a finished turn starts the span where the two part.
        let start = common_prefix_len(&prompt, &with_turn);
        let turn = &with_turn[start..];
        let span = if start >= cursor && full.starts_with(&with_turn) {
            start..with_turn.len()
        } else if let Some(at) = full[cursor..].find(turn).filter(|_| !turn.is_empty()) {
            // The template writes earlier turns differently once later ones follow (some
            // strip reasoning); find the turn's text where it does appear.
            cursor + at..cursor + at + turn.len()
        } else {
            return Err(SkipReason::TurnNotFound { turn: k + 1 });
        };
        cursor = span.end;
        spans.push(span);
    }
    Ok((full, spans))
}

/// Length in bytes of the longest common prefix, on a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_stops_on_char_boundaries() {
        assert_eq!(common_prefix_len("abc", "abd"), 2);
        assert_eq!(common_prefix_len("ab", "abc"), 2);
        assert_eq!(common_prefix_len("aé", "aè"), 1);
        assert_eq!(common_prefix_len("", "x"), 0);
    }

    #[test]
    fn overlap_takes_straddling_tokens() {
        let offsets = [(0, 0), (0, 3), (3, 6), (6, 9), (9, 9)];
        assert_eq!(overlapping_tokens(&offsets, &(4..7)), 2..4);
        assert_eq!(overlapping_tokens(&offsets, &(3..6)), 2..3);
        assert_eq!(overlapping_tokens(&offsets, &(10..12)), 0..0);
    }

    #[test]
    fn truncation_keeps_what_trains_and_refuses_what_cannot() {
        let t = TokenizedExample {
            id: "a".into(),
            tokens: vec![1, 2, 3, 4, 5],
            labels_mask: vec![false, false, false, true, true],
        };
        let cut = t.clone().truncated(4).expect("keeps a trained token");
        assert_eq!(cut.tokens, vec![1, 2, 3, 4]);
        assert_eq!(cut.trained_tokens(), 1);
        assert!(matches!(
            t.truncated(3),
            Err(SkipReason::LongerThanContext {
                first_trained: 3,
                ..
            })
        ));
    }
}
