//! Training data: a user's dataset file → conversations ([`Example`]) → token sequences whose
//! loss covers only what the assistant says ([`TokenizedExample`]).
//!
//! - [`load_dataset`] reads JSONL / JSON (alpaca, sharegpt, chatml `messages`, prompt/response),
//!   CSV / TSV and Parquet. Bad rows are reported by line or row number and skipped, never
//!   silently trained on; a file with no usable row is an error.
//! - [`tokenize_dataset`] renders each conversation with the model's own chat template and marks
//!   the assistant's tokens, end-of-turn token included, so the model learns to stop.
//! - [`pack`] and [`split_train_eval`] shape the result for training; [`preview`] shows the
//!   trained spans to the user before a run starts.
//!
//! Every example keeps an id that leads back to its source row (the row's `contribution_id`,
//! else `file:line`), through packing too, so attribution can credit the row's contributor.

mod pack;
mod preview;
mod read;
mod rows;
mod tokenize;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::runtime::ChatMessage;

pub use pack::{ExampleId, PackedSegment, PackedSequence, pack, split_train_eval};
pub use preview::{ExamplePreview, PreviewSegment, SegmentKind, preview};
pub use tokenize::{
    SkipReason, SkippedExample, TokenizeReport, TokenizedExample, tokenize_dataset,
    tokenize_example,
};

/// One training conversation and the source row it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The row's `contribution_id`, else `"<file name>:<line or row number>"`.
    pub id: String,
    /// The turns, in order; at least one is a non-empty assistant turn.
    pub messages: Vec<ChatMessage>,
    /// The row's `contributor` (a wallet address in Datanets), when it has one.
    pub contributor: Option<String>,
    /// The row's `contribution_id`, when it has one.
    pub contribution_id: Option<String>,
}

/// How the file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON object per line (`.jsonl`, `.ndjson`, or a `.json` file that is not an array).
    Jsonl,
    /// A `.json` file holding one array of row objects.
    JsonArray,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// What a row's number counts in this format: text lines, or rows.
    pub fn unit(self) -> RowUnit {
        match self {
            FileFormat::Jsonl | FileFormat::Csv | FileFormat::Tsv => RowUnit::Line,
            FileFormat::JsonArray | FileFormat::Parquet => RowUnit::Row,
        }
    }
}

/// How a row spells a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowFormat {
    /// `instruction`, optional `input`, `output`, optional `system` (and LLaMA-Factory's
    /// optional `history` of `[prompt, answer]` pairs).
    Alpaca,
    /// `conversations: [{from: human|gpt|system, value}]`, optional top-level `system`.
    ShareGpt,
    /// `messages: [{role: system|user|assistant, content}]`; in CSV and Parquet, JSON text.
    ChatMl,
    /// `prompt`, `response`, optional `system`.
    PromptResponse,
}

impl fmt::Display for RowFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RowFormat::Alpaca => "alpaca",
            RowFormat::ShareGpt => "sharegpt",
            RowFormat::ChatMl => "chatml messages",
            RowFormat::PromptResponse => "prompt/response",
        })
    }
}

/// The file format and row format of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFormat {
    /// How the file is stored.
    pub file: FileFormat,
    /// How each row spells a conversation.
    pub rows: RowFormat,
}

/// What a row number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowUnit {
    /// 1-based text line (JSONL; CSV, where the header is line 1 and a row is numbered by the
    /// line it starts on), as an editor shows it.
    Line,
    /// 1-based row (Parquet, JSON arrays), header not counted.
    Row,
}

impl fmt::Display for RowUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RowUnit::Line => "line",
            RowUnit::Row => "row",
        })
    }
}

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    /// The row's 1-based line or row number (see `unit`).
    pub number: u64,
    /// What `number` counts.
    pub unit: RowUnit,
    /// What is wrong with the row, in words a user can act on.
    pub reason: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.unit, self.number, self.reason)
    }
}

/// What reading a dataset file found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The file.
    pub path: PathBuf,
    /// The formats detected.
    pub format: DatasetFormat,
    /// Rows in the file (blank lines not counted).
    pub rows_read: usize,
    /// Rows that became examples.
    pub rows_kept: usize,
    /// Every skipped row, in file order.
    pub problems: Vec<RowProblem>,
}

/// The examples of a dataset file and the report of reading it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The usable rows, in file order.
    pub examples: Vec<Example>,
    /// What was read and what was skipped.
    pub report: LoadReport,
}

/// Reads a dataset file, choosing the reader by extension: `.jsonl`/`.ndjson`/`.json`,
/// `.csv`, `.tsv`, `.parquet`/`.pq`.
///
/// Bad rows are skipped and listed in the report; an error only when the file cannot be read,
/// its columns fit no format, or no row is usable.
pub fn load_dataset(path: &Path) -> Result<Dataset> {
    read::load(path)
}

/// How many problems a "no usable rows" error lists.
pub(crate) const PROBLEMS_IN_ERROR: usize = 5;

/// "line 3: reason; line 4: reason" for the first few problems, for error messages.
pub(crate) fn summarize_problems(problems: &[RowProblem]) -> String {
    let mut text = problems
        .iter()
        .take(PROBLEMS_IN_ERROR)
        .map(RowProblem::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > PROBLEMS_IN_ERROR {
        text.push_str(&format!(
            "; and {} more",
            problems.len() - PROBLEMS_IN_ERROR
        ));
    }
    text
}
