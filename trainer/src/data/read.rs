//! The file readers: JSONL / JSON arrays, CSV / TSV and Parquet. Each turns its rows into JSON
//! objects and hands them to a [`Collector`], which detects the row format, converts, and keeps
//! the problems with their line or row numbers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::rows::{self, Row};
use super::{Dataset, DatasetFormat, Example, FileFormat, LoadReport, RowFormat, RowProblem};
use crate::error::{Error, Result};

pub(crate) fn load(path: &Path) -> Result<Dataset> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "jsonl" | "ndjson" => read_jsonl(path),
        "json" => read_json(path),
        "csv" => read_delimited(path, FileFormat::Csv),
        "tsv" => read_delimited(path, FileFormat::Tsv),
        "parquet" | "pq" => read_parquet(path),
        _ => Err(Error::Dataset {
            what: format!(
                "unknown dataset extension \"{extension}\" (expected .jsonl, .json, .csv, .tsv \
                 or .parquet)"
            ),
            path: path.to_path_buf(),
        }),
    }
}

/// Gathers rows of one file: detects the row format from the first row that names one (or
/// takes it from the table's columns), then converts and checks every row against it.
struct Collector<'a> {
    path: &'a Path,
    name: String,
    file: FileFormat,
    rows: Option<RowFormat>,
    /// Where the row format was detected, for rows that disagree.
    detected_at: u64,
    examples: Vec<Example>,
    problems: Vec<RowProblem>,
    rows_read: usize,
}

impl<'a> Collector<'a> {
    fn new(path: &'a Path, file: FileFormat, rows: Option<RowFormat>) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self {
            path,
            name,
            file,
            rows,
            detected_at: 0,
            examples: Vec::new(),
            problems: Vec::new(),
            rows_read: 0,
        }
    }

    fn problem(&mut self, number: u64, reason: impl Into<String>) {
        self.problems.push(RowProblem {
            number,
            unit: self.file.unit(),
            reason: reason.into(),
        });
    }

    /// A row that could not even be parsed.
    fn bad(&mut self, number: u64, reason: impl Into<String>) {
        self.rows_read += 1;
        self.problem(number, reason);
    }

    fn row(&mut self, number: u64, row: &Map<String, Value>) {
        self.rows_read += 1;
        let detected = rows::detect(row);
        let format = match (self.rows, detected) {
            (None, None) => {
                let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
                keys.sort_unstable();
                return self.problem(
                    number,
                    format!(
                        "no known row format (fields: {}); expected alpaca `instruction`/`output`, \
                         sharegpt `conversations`, chatml `messages` or `prompt`/`response`",
                        keys.join(", ")
                    ),
                );
            }
            (None, Some(found)) => {
                self.rows = Some(found);
                self.detected_at = number;
                found
            }
            (Some(format), Some(found)) if found != format && self.file_is_json() => {
                let unit = self.file.unit();
                let at = self.detected_at;
                return self.problem(
                    number,
                    format!("this row is {found} but the file is {format} (from {unit} {at})"),
                );
            }
            (Some(format), None) if self.file_is_json() => {
                return self.problem(
                    number,
                    format!(
                        "not a {format} row: expected {}",
                        rows::expected_fields(format)
                    ),
                );
            }
            (Some(format), _) => format,
        };
        match rows::convert(row, format) {
            Ok(row) => self.keep(number, row),
            Err(reason) => self.problem(number, reason),
        }
    }

    fn file_is_json(&self) -> bool {
        matches!(self.file, FileFormat::Jsonl | FileFormat::JsonArray)
    }

    fn keep(&mut self, number: u64, row: Row) {
        let id = match &row.contribution_id {
            Some(id) if !id.trim().is_empty() => id.clone(),
            _ => format!("{}:{number}", self.name),
        };
        self.examples.push(Example {
            id,
            messages: row.messages,
            contributor: row.contributor,
            contribution_id: row.contribution_id,
        });
    }

    fn finish(self) -> Result<Dataset> {
        let Some(rows) = self.rows.filter(|_| !self.examples.is_empty()) else {
            let mut problems = self.problems;
            if self.rows_read == 0 {
                problems.push(RowProblem {
                    number: 1,
                    unit: self.file.unit(),
                    reason: "the file has no rows".into(),
                });
            }
            return Err(Error::NoUsableRows {
                rows_read: self.rows_read,
                format: self.rows.map_or("unknown".into(), |f| f.to_string()),
                problems,
                path: self.path.to_path_buf(),
            });
        };
        Ok(Dataset {
            report: LoadReport {
                path: self.path.to_path_buf(),
                format: DatasetFormat {
                    file: self.file,
                    rows,
                },
                rows_read: self.rows_read,
                rows_kept: self.examples.len(),
                problems: self.problems,
            },
            examples: self.examples,
        })
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open the dataset", path, e))
}

fn read_jsonl(path: &Path) -> Result<Dataset> {
    let reader = BufReader::new(open(path)?);
    read_jsonl_from(path, reader)
}

fn read_jsonl_from(path: &Path, mut reader: impl BufRead) -> Result<Dataset> {
    let mut c = Collector::new(path, FileFormat::Jsonl, None);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("read the dataset", path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        let mut bytes = line.as_slice();
        if number == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            c.bad(number, "not UTF-8 text");
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(row)) => c.row(number, &row),
            Ok(_) => c.bad(number, "not a JSON object"),
            Err(e) => c.bad(number, format!("malformed JSON: {e}")),
        }
    }
    c.finish()
}

/// A `.json` file: one array of rows, or (often mislabelled) JSON Lines.
fn read_json(path: &Path) -> Result<Dataset> {
    let mut text = String::new();
    open(path)?
        .read_to_string(&mut text)
        .map_err(|e| Error::io("read the dataset", path, e))?;
    let body = text.trim_start_matches('\u{feff}');
    if !body.trim_start().starts_with('[') {
        // Not trimmed further, so line numbers stay those of the file.
        return read_jsonl_from(path, body.as_bytes());
    }
    let items: Vec<Value> = serde_json::from_str(body).map_err(|e| Error::Dataset {
        what: format!("malformed JSON array: {e}"),
        path: path.to_path_buf(),
    })?;
    let mut c = Collector::new(path, FileFormat::JsonArray, None);
    for (i, item) in items.iter().enumerate() {
        let number = i as u64 + 1;
        match item {
            Value::Object(row) => c.row(number, row),
            _ => c.bad(number, "not a JSON object"),
        }
    }
    c.finish()
}

/// The row format a table's columns spell, or an error listing what it has.
fn table_format(columns: &[String], path: &Path) -> Result<RowFormat> {
    let has = |name: &str| columns.iter().any(|c| c == name);
    if has("messages") {
        Ok(RowFormat::ChatMl)
    } else if has("conversations") {
        Ok(RowFormat::ShareGpt)
    } else if has("instruction") && has("output") {
        Ok(RowFormat::Alpaca)
    } else if has("prompt") && has("response") {
        Ok(RowFormat::PromptResponse)
    } else {
        Err(Error::Dataset {
            what: format!(
                "the columns are {}; expected `instruction`, `output` (and optional `input`, \
                 `system`), or `prompt`, `response` (and optional `system`), or `messages` \
                 holding chatml JSON",
                columns.join(", ")
            ),
            path: path.to_path_buf(),
        })
    }
}

/// Column names as matched: trimmed and lower-cased, so "Instruction " still counts.
fn column_name(raw: &str) -> String {
    raw.trim_start_matches('\u{feff}').trim().to_lowercase()
}

fn read_delimited(path: &Path, file: FileFormat) -> Result<Dataset> {
    let delimiter = if file == FileFormat::Tsv { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(open(path)?);
    let header = reader.byte_headers().map_err(|e| Error::Dataset {
        what: format!("cannot read the header row: {e}"),
        path: path.to_path_buf(),
    })?;
    let columns: Vec<String> = header
        .iter()
        .map(|h| column_name(&String::from_utf8_lossy(h)))
        .collect();
    let format = table_format(&columns, path)?;
    let mut c = Collector::new(path, file, Some(format));
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let number = e.position().map_or(0, |p| p.line());
                return Err(Error::DatasetRow {
                    number,
                    unit: file.unit(),
                    what: e.to_string(),
                    path: path.to_path_buf(),
                });
            }
        }
        let number = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if record.len() > columns.len() {
            c.bad(
                number,
                format!(
                    "{} fields but the header has {} columns",
                    record.len(),
                    columns.len()
                ),
            );
            continue;
        }
        let mut row = Map::new();
        let mut utf8 = true;
        for (name, field) in columns.iter().zip(record.iter()) {
            match std::str::from_utf8(field) {
                Ok(text) => {
                    row.insert(name.clone(), Value::String(text.to_owned()));
                }
                Err(_) => utf8 = false,
            }
        }
        if utf8 {
            c.row(number, &row);
        } else {
            c.bad(number, "not UTF-8 text");
        }
    }
    c.finish()
}

fn read_parquet(path: &Path) -> Result<Dataset> {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let reader = SerializedFileReader::new(open(path)?).map_err(|e| Error::Dataset {
        what: format!("not a readable Parquet file: {e}"),
        path: path.to_path_buf(),
    })?;
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| column_name(f.name()))
        .collect();
    let format = table_format(&columns, path)?;
    let rows = reader.get_row_iter(None).map_err(|e| Error::Dataset {
        what: format!("cannot read the rows: {e}"),
        path: path.to_path_buf(),
    })?;
    let mut c = Collector::new(path, FileFormat::Parquet, Some(format));
    for (i, row) in rows.enumerate() {
        let number = i as u64 + 1;
        let row = row.map_err(|e| Error::DatasetRow {
            number,
            unit: FileFormat::Parquet.unit(),
            what: e.to_string(),
            path: path.to_path_buf(),
        })?;
        let object: Map<String, Value> = row
            .get_column_iter()
            .map(|(name, field)| (column_name(name), field_value(field)))
            .collect();
        c.row(number, &object);
    }
    c.finish()
}

/// A Parquet value as JSON: text stays text, a native `messages` list of `{role, content}`
/// structs becomes a JSON list, numbers become text (ids), anything else null.
fn field_value(field: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    match field {
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => std::str::from_utf8(b.data())
            .map(|s| Value::String(s.to_owned()))
            .unwrap_or(Value::Null),
        Field::Byte(n) => Value::String(n.to_string()),
        Field::Short(n) => Value::String(n.to_string()),
        Field::Int(n) => Value::String(n.to_string()),
        Field::Long(n) => Value::String(n.to_string()),
        Field::UByte(n) => Value::String(n.to_string()),
        Field::UShort(n) => Value::String(n.to_string()),
        Field::UInt(n) => Value::String(n.to_string()),
        Field::ULong(n) => Value::String(n.to_string()),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_value).collect())
        }
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(name, f)| (name.clone(), field_value(f)))
                .collect(),
        ),
        _ => Value::Null,
    }
}
