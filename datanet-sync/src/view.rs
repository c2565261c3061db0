//! The curation table: a Datanet's shard rows as the user now sees them — each row's latest
//! edit in place of the original, with its label and duplicate mark — filtered, sorted and
//! paged by polars over a lazy scan of the Parquet shards. Labels, edits and duplicate marks
//! come from the catalog as small frames joined onto the scan, so nothing is copied out of the
//! shards and a page of a million-row Datanet reads only what it shows.

use std::collections::HashMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, DatanetRecord, Edit, Label, LabelStatus};
use crate::curate::{self, PiiKind};
use crate::error::{Error, Result};
use crate::format::{Content, Message};
use crate::shard;

/// Most rows one page may hold.
pub const MAX_PAGE: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Accepted,
    Rejected,
    Unlabeled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    Pii,
    Duplicate,
    Edited,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Position,
    Length,
    Rating,
    Contributor,
    CreatedAt,
}

/// Which rows, in which order. Every field is optional in JSON and in a query string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RowQuery {
    pub offset: u64,
    /// 100 when 0; at most [`MAX_PAGE`].
    pub limit: u64,
    /// Case-insensitive text anywhere in the row.
    pub search: Option<String>,
    pub contributor: Option<String>,
    pub status: Option<StatusFilter>,
    pub tag: Option<String>,
    pub min_len: Option<u64>,
    pub max_len: Option<u64>,
    pub flag: Option<Flag>,
    pub sort: SortKey,
    pub desc: bool,
}

impl RowQuery {
    /// Whether a filter reads the rows' text: a search, a length bound or personal data.
    fn computes_over_text(&self) -> bool {
        self.search.as_deref().is_some_and(|s| !s.trim().is_empty())
            || self.min_len.is_some()
            || self.max_len.is_some()
            || self.flag == Some(Flag::Pii)
    }
}

/// One row as the curation table shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CuratedRow {
    pub contribution_id: String,
    pub contributor: String,
    pub created_at: String,
    pub license: String,
    /// The latest version: the contributor's original, or the newest edit.
    pub content: Content,
    /// The contributor's original when the row was edited.
    pub original: Option<Content>,
    /// 0 for the original, else the edit's number.
    pub version: u32,
    pub status: Option<LabelStatus>,
    pub rating: Option<u8>,
    pub tags: Vec<String>,
    /// Characters of the row's text; for chat rows, of its `messages` JSON.
    pub length: u64,
    pub pii: Vec<PiiKind>,
    /// The row this one duplicates, after a duplicates scan.
    pub duplicate_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowPage {
    /// Rows matching the query, across all pages.
    pub total: u64,
    pub offset: u64,
    pub rows: Vec<CuratedRow>,
}

/// A Datanet's rows joined with what the catalog knows about them.
pub struct CurationView {
    record: DatanetRecord,
    labels: HashMap<String, Label>,
    edits: HashMap<String, Edit>,
    duplicates: HashMap<String, String>,
}

const TEXT_COLUMNS: [&str; 4] = ["instruction", "input", "output", "messages"];

fn current(column: &str) -> String {
    format!("cur_{column}")
}

impl CurationView {
    /// Reads the Datanet's labels, edits and duplicate marks from the catalog.
    pub fn open(catalog: &Catalog, datanet: &str) -> Result<CurationView> {
        let record = catalog.datanet(datanet)?;
        Ok(CurationView {
            labels: catalog.labels(datanet)?,
            edits: catalog.edits(datanet)?,
            duplicates: catalog.duplicates(datanet)?,
            record,
        })
    }

    pub fn record(&self) -> &DatanetRecord {
        &self.record
    }

    /// The shards with `cur_*` text columns (the latest version), `version`, `status`,
    /// `rating`, `tags` (as `|a|b|` for whole-tag matching), `duplicate_of` and `length`.
    fn frame(&self) -> Result<LazyFrame> {
        let mut lf = shard::scan(&self.record.shard_paths())?;

        if self.edits.is_empty() {
            lf = lf.with_column(lit(0u32).cast(DataType::UInt32).alias("version"));
            lf = lf.with_columns(
                TEXT_COLUMNS
                    .iter()
                    .map(|c| col(*c).alias(current(c)))
                    .collect::<Vec<_>>(),
            );
        } else {
            let n = self.edits.len();
            let mut ids = Vec::with_capacity(n);
            let mut versions = Vec::with_capacity(n);
            let mut texts: [Vec<Option<String>>; 4] = Default::default();
            for (id, edit) in &self.edits {
                ids.push(id.clone());
                versions.push(edit.version);
                for (slot, value) in texts.iter_mut().zip(content_columns(&edit.content)) {
                    slot.push(value);
                }
            }
            let mut columns = vec![
                Column::new("contribution_id".into(), ids),
                Column::new("version".into(), versions),
            ];
            for (name, values) in TEXT_COLUMNS.iter().zip(texts) {
                columns.push(Column::new(format!("e_{name}").into(), values));
            }
            let edits = DataFrame::new(n, columns)?.lazy();
            lf = lf.join(
                edits,
                [col("contribution_id")],
                [col("contribution_id")],
                JoinArgs::new(JoinType::Left),
            );
            lf = lf.with_columns(
                TEXT_COLUMNS
                    .iter()
                    .map(|c| {
                        when(col("version").is_not_null())
                            .then(col(format!("e_{c}")))
                            .otherwise(col(*c))
                            .alias(current(c))
                    })
                    .collect::<Vec<_>>(),
            );
            lf = lf.with_column(col("version").fill_null(lit(0u32)).cast(DataType::UInt32));
        }

        if self.labels.is_empty() {
            lf = lf.with_columns([
                lit(NULL).cast(DataType::String).alias("status"),
                lit(NULL).cast(DataType::UInt32).alias("rating"),
                lit(NULL).cast(DataType::String).alias("tags"),
            ]);
        } else {
            let n = self.labels.len();
            let mut ids = Vec::with_capacity(n);
            let mut statuses = Vec::with_capacity(n);
            let mut ratings = Vec::with_capacity(n);
            let mut tags = Vec::with_capacity(n);
            for (id, label) in &self.labels {
                ids.push(id.clone());
                statuses.push(label.status.map(LabelStatus::as_str));
                ratings.push(label.rating.map(u32::from));
                tags.push(format!("|{}|", label.tags.join("|")));
            }
            let labels = DataFrame::new(
                n,
                vec![
                    Column::new("contribution_id".into(), ids),
                    Column::new("status".into(), statuses),
                    Column::new("rating".into(), ratings),
                    Column::new("tags".into(), tags),
                ],
            )?
            .lazy();
            lf = lf.join(
                labels,
                [col("contribution_id")],
                [col("contribution_id")],
                JoinArgs::new(JoinType::Left),
            );
        }

        if self.duplicates.is_empty() {
            lf = lf.with_column(lit(NULL).cast(DataType::String).alias("duplicate_of"));
        } else {
            let (ids, of): (Vec<String>, Vec<String>) = self
                .duplicates
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .unzip();
            let n = ids.len();
            let dups = DataFrame::new(
                n,
                vec![
                    Column::new("contribution_id".into(), ids),
                    Column::new("duplicate_of".into(), of),
                ],
            )?
            .lazy();
            lf = lf.join(
                dups,
                [col("contribution_id")],
                [col("contribution_id")],
                JoinArgs::new(JoinType::Left),
            );
        }

        let length = TEXT_COLUMNS
            .iter()
            .map(|c| {
                col(current(c))
                    .str()
                    .len_chars()
                    .cast(DataType::UInt64)
                    .fill_null(lit(0u64))
                    .cast(DataType::UInt64)
            })
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| lit(0u64));
        Ok(lf.with_column(length.cast(DataType::UInt64).alias("length")))
    }

    /// Rows whose current text holds an email address or a phone number: polars narrows the
    /// rows with a loose pattern, then [`curate::personal_data`] decides.
    fn personal_data_ids(&self) -> Result<Vec<String>> {
        let hint = any_text_matches(curate::PERSONAL_DATA_PATTERN);
        Ok(ids_and_texts(self.frame()?.filter(hint))?
            .into_iter()
            .filter(|(_, text)| !curate::personal_data(text).is_empty())
            .map(|(id, _)| id)
            .collect())
    }

    fn predicate(&self, query: &RowQuery) -> Result<Option<Expr>> {
        let mut parts: Vec<Expr> = Vec::new();
        if let Some(search) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            parts.push(any_text_matches(&format!("(?i){}", regex::escape(search))));
        }
        if let Some(who) = query.contributor.as_deref().filter(|s| !s.is_empty()) {
            parts.push(
                col("contributor")
                    .str()
                    .contains(lit(format!("(?i)^{}$", regex::escape(who))), false),
            );
        }
        match query.status {
            Some(StatusFilter::Accepted) => parts.push(col("status").eq(lit("accepted"))),
            Some(StatusFilter::Rejected) => parts.push(col("status").eq(lit("rejected"))),
            Some(StatusFilter::Unlabeled) => parts.push(col("status").is_null()),
            None => {}
        }
        if let Some(tag) = query.tag.as_deref().filter(|s| !s.is_empty()) {
            parts.push(
                col("tags")
                    .str()
                    .contains_literal(lit(format!("|{}|", tag.trim())))
                    .fill_null(lit(false)),
            );
        }
        if let Some(min) = query.min_len {
            parts.push(col("length").gt_eq(lit(min)));
        }
        if let Some(max) = query.max_len {
            parts.push(col("length").lt_eq(lit(max)));
        }
        match query.flag {
            Some(Flag::Pii) => {
                let ids = Series::new("ids".into(), self.personal_data_ids()?);
                parts.push(col("contribution_id").is_in(lit(ids).implode(false), false));
            }
            Some(Flag::Duplicate) => parts.push(col("duplicate_of").is_not_null()),
            Some(Flag::Edited) => parts.push(col("version").gt(lit(0u32))),
            None => {}
        }
        Ok(parts.into_iter().reduce(|a, b| a.and(b)))
    }

    /// One page of rows matching `query`, and how many match in all.
    pub fn page(&self, query: &RowQuery) -> Result<RowPage> {
        let limit = match query.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        };
        let mut lf = self.frame()?;
        let mut total_two_pass = None;
        let filtered = match self.predicate(query)? {
            // Text and length filters compute over every row: counting and paging then share
            // one pass. Filters on plain columns are cheaper as two passes that polars pushes
            // down into the Parquet reader, reading only the columns they test.
            Some(predicate) if query.computes_over_text() => {
                lf = lf.filter(predicate).cache();
                true
            }
            Some(predicate) => {
                lf = lf.filter(predicate);
                let counted = lf.clone().select([len().alias("n")]).collect()?;
                total_two_pass = Some(counted.column("n")?.u32()?.get(0).unwrap_or(0) as u64);
                false
            }
            None => false,
        };
        let sort_column = match query.sort {
            SortKey::Position => "position",
            SortKey::Length => "length",
            SortKey::Rating => "rating",
            SortKey::Contributor => "contributor",
            SortKey::CreatedAt => "created_at",
        };
        if query.sort != SortKey::Position || query.desc {
            let mut by = vec![col(sort_column)];
            let mut descending = vec![query.desc];
            if query.sort != SortKey::Position {
                by.push(col("position"));
                descending.push(false);
            }
            lf = lf.sort_by_exprs(
                by,
                SortMultipleOptions::default()
                    .with_order_descending_multi(descending)
                    .with_nulls_last(true)
                    .with_maintain_order(true),
            );
        }
        let offset = query.offset.min(i64::MAX as u64) as i64;
        let (total, df) = if filtered {
            let count = lf.clone().select([len().alias("n")]);
            let page = lf.slice(offset, limit as IdxSize);
            let mut out = LazyFrame::collect_all_with_engine(
                vec![count.logical_plan, page.logical_plan],
                Engine::Auto,
                OptFlags::default(),
            )?
            .into_iter();
            let (Some(counted), Some(df)) = (out.next(), out.next()) else {
                return Err(Error::Invalid("the page query gave no result".into()));
            };
            (counted.column("n")?.u32()?.get(0).unwrap_or(0) as u64, df)
        } else {
            let df = lf.slice(offset, limit as IdxSize).collect()?;
            (total_two_pass.unwrap_or(self.record.manifest.rows()), df)
        };
        Ok(RowPage {
            total,
            offset: query.offset,
            rows: self.rows_of(&df)?,
        })
    }

    /// Every row matching `query` (its paging ignored), in position order: what a dataset
    /// takes from this Datanet.
    pub fn all(&self, query: &RowQuery) -> Result<Vec<CuratedRow>> {
        let mut lf = self.frame()?;
        if let Some(predicate) = self.predicate(query)? {
            lf = lf.filter(predicate);
        }
        self.rows_of(&lf.collect()?)
    }

    /// One row by its contribution id.
    pub fn find(&self, contribution_id: &str) -> Result<Option<CuratedRow>> {
        let df = self
            .frame()?
            .filter(col("contribution_id").eq(lit(contribution_id.to_string())))
            .slice(0, 1)
            .collect()?;
        Ok(self.rows_of(&df)?.into_iter().next())
    }

    /// Each row's id and current text, in position order, for duplicate detection.
    pub fn texts(&self) -> Result<Vec<(String, String)>> {
        ids_and_texts(self.frame()?)
    }

    /// The length (characters) of every row, in position order.
    pub fn lengths(&self) -> Result<Vec<u64>> {
        let df = self.frame()?.select([col("length")]).collect()?;
        Ok(df.column("length")?.u64()?.iter().flatten().collect())
    }

    /// How many rows mention an email address or a phone number.
    pub fn personal_data_rows(&self) -> Result<u64> {
        Ok(self.personal_data_ids()?.len() as u64)
    }

    fn rows_of(&self, df: &DataFrame) -> Result<Vec<CuratedRow>> {
        let text = |name: &str| -> Result<&StringChunked> { Ok(df.column(name)?.str()?) };
        let ids = text("contribution_id")?;
        let contributors = text("contributor")?;
        let created = text("created_at")?;
        let licenses = text("license")?;
        let originals: Vec<&StringChunked> = TEXT_COLUMNS
            .iter()
            .map(|c| text(c))
            .collect::<Result<_>>()?;
        let currents: Vec<&StringChunked> = TEXT_COLUMNS
            .iter()
            .map(|c| text(&current(c)))
            .collect::<Result<_>>()?;
        let versions = df.column("version")?.u32()?;
        let lengths = df.column("length")?.u64()?;
        let duplicates = text("duplicate_of")?;
        let mut rows = Vec::with_capacity(df.height());
        for i in 0..df.height() {
            let id = ids.get(i).unwrap_or_default().to_string();
            let version = versions.get(i).unwrap_or(0);
            let content = content_at(&currents, i)?;
            let original = if version > 0 {
                Some(content_at(&originals, i)?)
            } else {
                None
            };
            let label = self.labels.get(&id).cloned().unwrap_or_default();
            rows.push(CuratedRow {
                pii: curate::personal_data(&content.text()),
                contributor: contributors.get(i).unwrap_or_default().to_string(),
                created_at: created.get(i).unwrap_or_default().to_string(),
                license: licenses.get(i).unwrap_or_default().to_string(),
                content,
                original,
                version,
                status: label.status,
                rating: label.rating,
                tags: label.tags,
                length: lengths.get(i).unwrap_or(0),
                duplicate_of: duplicates.get(i).map(str::to_string),
                contribution_id: id,
            });
        }
        Ok(rows)
    }
}

/// Whether any of a row's current text columns matches the regular expression.
fn any_text_matches(pattern: &str) -> Expr {
    TEXT_COLUMNS
        .iter()
        .map(|c| {
            col(current(c))
                .str()
                .contains(lit(pattern.to_string()), false)
                .fill_null(lit(false))
        })
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| lit(false))
}

/// Each row's id and current text (see [`Content::text`]), in the frame's order.
fn ids_and_texts(lf: LazyFrame) -> Result<Vec<(String, String)>> {
    let df = lf
        .select(
            std::iter::once(col("contribution_id"))
                .chain(TEXT_COLUMNS.iter().map(|c| col(current(c))))
                .collect::<Vec<_>>(),
        )
        .collect()?;
    let ids = df.column("contribution_id")?.str()?;
    let texts: Vec<_> = TEXT_COLUMNS
        .iter()
        .map(|c| df.column(&current(c)).and_then(|s| s.str()))
        .collect::<PolarsResult<Vec<_>>>()?;
    (0..df.height())
        .map(|i| {
            Ok((
                ids.get(i).unwrap_or_default().to_string(),
                content_at(&texts, i)?.text(),
            ))
        })
        .collect()
}

/// A content's four text columns: instruction, input, output, messages (JSON).
fn content_columns(content: &Content) -> [Option<String>; 4] {
    match content {
        Content::Instruction {
            instruction,
            input,
            output,
        } => [
            Some(instruction.clone()),
            Some(input.clone()),
            Some(output.clone()),
            None,
        ],
        Content::Messages { messages } => [
            None,
            None,
            None,
            Some(serde_json::to_string(messages).unwrap_or_default()),
        ],
    }
}

/// The content held in row `i` of the four text columns.
fn content_at(columns: &[&StringChunked], i: usize) -> Result<Content> {
    if let Some(messages) = columns[3].get(i) {
        let messages: Vec<Message> = serde_json::from_str(messages).map_err(|e| {
            Error::BadRow(format!("row {i}: `messages` is not a message list: {e}"))
        })?;
        return Ok(Content::Messages { messages });
    }
    Ok(Content::Instruction {
        instruction: columns[0].get(i).unwrap_or_default().to_string(),
        input: columns[1].get(i).unwrap_or_default().to_string(),
        output: columns[2].get(i).unwrap_or_default().to_string(),
    })
}
