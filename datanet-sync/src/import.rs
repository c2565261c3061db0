//! Files into rows: JSON lines or a JSON array, CSV, TSV and Parquet, in the common row shapes
//! (alpaca `instruction`/`input`/`output`, sharegpt `conversations`, chatml `messages`, and
//! `prompt`/`response`). A line that cannot be used is reported with its number and the rest
//! are kept.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::format::{Content, Message, Row};
use crate::shard::write_atomically;

/// What a row takes when the file does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportDefaults {
    /// The contributor's 0x address.
    pub contributor: String,
    /// SPDX licence identifier.
    pub license: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
}

/// A record that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// 1-based: the line in JSON lines, CSV and TSV files; the element in a JSON array; the
    /// row in a Parquet file.
    pub line: usize,
    pub reason: String,
}

/// How many reasons the error for a file without usable rows quotes.
const REASONS_QUOTED: usize = 3;

/// Reads `path` by its extension (`.jsonl`, `.ndjson`, `.json`, `.csv`, `.tsv`, `.parquet`).
/// Fails only when the file cannot be read at all or yields no usable row; otherwise bad
/// records are listed in [`Imported::skipped`].
pub fn import_file(path: &Path, defaults: &ImportDefaults) -> Result<Imported> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let records = match extension.as_str() {
        "jsonl" | "ndjson" | "json" => json_records(path)?,
        "csv" => delimited_records(path, b',')?,
        "tsv" => delimited_records(path, b'\t')?,
        "parquet" => parquet_records(path)?,
        _ => {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "unknown file type {extension:?} (expected .jsonl, .json, .csv, .tsv or .parquet)"
                ),
            });
        }
    };
    let mut imported = Imported {
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for (line, record) in records {
        match record.and_then(|record| row_from_record(&record, defaults)) {
            Ok(row) => imported.rows.push(row),
            Err(reason) => imported.skipped.push(Skipped { line, reason }),
        }
    }
    if imported.rows.is_empty() {
        let reasons = if imported.skipped.is_empty() {
            "the file holds no records".to_string()
        } else {
            let mut quoted: Vec<String> = imported
                .skipped
                .iter()
                .take(REASONS_QUOTED)
                .map(|s| format!("line {}: {}", s.line, s.reason))
                .collect();
            if imported.skipped.len() > REASONS_QUOTED {
                quoted.push(format!(
                    "and {} more",
                    imported.skipped.len() - REASONS_QUOTED
                ));
            }
            quoted.join("; ")
        };
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            message: format!("no usable rows: {reasons}"),
        });
    }
    tracing::info!(
        path = %path.display(),
        rows = imported.rows.len(),
        skipped = imported.skipped.len(),
        "imported"
    );
    Ok(imported)
}

/// Writes one row's JSON (`Row`'s serde form) per line, atomically.
pub fn export_jsonl(rows: &[Row], path: &Path) -> Result<()> {
    write_atomically(path, |out| {
        for row in rows {
            serde_json::to_writer(&mut *out, row).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: format!("cannot write row {}: {e}", row.contribution_id),
            })?;
            out.write_all(b"\n").map_err(Error::io("writing", path))?;
        }
        Ok(())
    })
}

/// A record as a JSON object, or why it is not one, with its 1-based line (or element, or row).
type Records = Vec<(usize, std::result::Result<Map<String, Value>, String>)>;

fn object(value: Value) -> std::result::Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("not a JSON object but {}", json_kind(&other))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn json_records(path: &Path) -> Result<Records> {
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim_start().starts_with('[') {
        // One JSON array: it parses whole or not at all, so a syntax error fails the file.
        let items: Vec<Value> = serde_json::from_str(text).map_err(|e| Error::BadLine {
            path: path.to_path_buf(),
            line: e.line(),
            message: format!("not a JSON array: {e}"),
        })?;
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, object(v)))
            .collect());
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let record = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("not valid JSON ({e})"))
                .and_then(object);
            (i + 1, record)
        })
        .collect())
}

fn delimited_records(path: &Path, delimiter: u8) -> Result<Records> {
    let file = File::open(path).map_err(Error::io("opening", path))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|e| Error::BadLine {
            path: path.to_path_buf(),
            line: 1,
            message: format!("cannot read the header: {e}"),
        })?
        .clone();
    let mut records = Records::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line() as usize);
                let map = headers
                    .iter()
                    .zip(record.iter())
                    // An empty cell is a missing value: defaults apply, `input` is empty.
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(k, v)| (k.trim().to_string(), Value::String(v.to_string())))
                    .collect();
                records.push((line, Ok(map)));
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line() as usize);
                match e.kind() {
                    csv::ErrorKind::Io(_) => {
                        return Err(Error::BadLine {
                            path: path.to_path_buf(),
                            line,
                            message: e.to_string(),
                        });
                    }
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => records.push((
                        line,
                        Err(format!("{len} fields where the header has {expected_len}")),
                    )),
                    _ => records.push((line, Err(e.to_string()))),
                }
            }
        }
    }
    Ok(records)
}

fn parquet_records(path: &Path) -> Result<Records> {
    use parquet::file::reader::SerializedFileReader;

    let file = File::open(path).map_err(Error::io("opening", path))?;
    let reader = SerializedFileReader::try_from(file).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("not a Parquet file ({e})"),
    })?;
    let mut records = Records::new();
    for (i, row) in reader.into_iter().enumerate() {
        match row {
            Ok(row) => records.push((i + 1, object(parquet_row_to_json(&row)))),
            Err(e) => {
                // A broken page ends what can be read of the file; keep the rows before it.
                records.push((i + 1, Err(format!("unreadable from here on ({e})"))));
                break;
            }
        }
    }
    Ok(records)
}

fn parquet_row_to_json(row: &parquet::record::Row) -> Value {
    Value::Object(
        row.get_column_iter()
            .map(|(name, field)| (name.clone(), parquet_field_to_json(field)))
            .collect(),
    )
}

fn parquet_field_to_json(field: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    let timestamp = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        })
    };
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float(n) => f64::from(*n).into(),
        Field::Double(n) => (*n).into(),
        Field::Str(s) => Value::String(s.clone()),
        // Older writers store text without the UTF-8 annotation.
        Field::Bytes(b) => match b.as_utf8() {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::String(field.to_string()),
        },
        Field::TimestampMillis(ms) => timestamp(chrono::DateTime::from_timestamp_millis(*ms)),
        Field::TimestampMicros(us) => timestamp(chrono::DateTime::from_timestamp_micros(*us)),
        Field::Group(row) => parquet_row_to_json(row),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(parquet_field_to_json).collect())
        }
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Field::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, parquet_field_to_json(v))
                })
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// A string field: absent, null and "" are `None`; anything but a string is an error.
fn text_field<'a>(
    record: &'a Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<&'a str>, String> {
    match record.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{name}` is {}, not a string", json_kind(other))),
    }
}

/// A list of turns, given as JSON or (in CSV and Parquet files) as text holding JSON.
fn turns(value: &Value, field: &str) -> std::result::Result<Vec<Message>, String> {
    let parsed;
    let list = match value {
        Value::Array(list) => list,
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("`{field}` is not a JSON list ({e})"))?;
            match &parsed {
                Value::Array(list) => list,
                other => return Err(format!("`{field}` is {}, not a list", json_kind(other))),
            }
        }
        other => return Err(format!("`{field}` is {}, not a list", json_kind(other))),
    };
    list.iter()
        .enumerate()
        .map(|(i, turn)| {
            let Value::Object(turn) = turn else {
                return Err(format!("`{field}` turn {} is not an object", i + 1));
            };
            // chatml says role/content, sharegpt from/value; accept either in both.
            let role = text_field(turn, "role")
                .and_then(|r| r.map_or_else(|| text_field(turn, "from"), |r| Ok(Some(r))))?
                .ok_or_else(|| format!("`{field}` turn {} has no role", i + 1))?;
            let content = match turn.get("content").or_else(|| turn.get("value")) {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(other) => {
                    return Err(format!(
                        "`{field}` turn {} has {} as its text",
                        i + 1,
                        json_kind(other)
                    ));
                }
            };
            let role = match role.to_ascii_lowercase().as_str() {
                "user" | "human" => "user",
                "assistant" | "gpt" | "bot" | "model" => "assistant",
                "system" => "system",
                other => {
                    return Err(format!(
                        "`{field}` turn {} has the unknown role {other:?}",
                        i + 1
                    ));
                }
            };
            Ok(Message {
                role: role.to_string(),
                content,
            })
        })
        .collect()
}

fn content_from_record(record: &Map<String, Value>) -> std::result::Result<Content, String> {
    for field in ["messages", "conversations"] {
        if let Some(value) = record.get(field).filter(|v| !v.is_null()) {
            return Ok(Content::Messages {
                messages: turns(value, field)?,
            });
        }
    }
    if let Some(instruction) = text_field(record, "instruction")? {
        let output = text_field(record, "output")?.ok_or("an `instruction` without an `output`")?;
        return Ok(Content::Instruction {
            instruction: instruction.to_string(),
            input: text_field(record, "input")?.unwrap_or_default().to_string(),
            output: output.to_string(),
        });
    }
    if let Some(prompt) = text_field(record, "prompt")? {
        let response = text_field(record, "response")?.ok_or("a `prompt` without a `response`")?;
        return Ok(Content::Instruction {
            instruction: prompt.to_string(),
            input: String::new(),
            output: response.to_string(),
        });
    }
    Err("no `instruction`/`output`, `messages`, `conversations` or `prompt`/`response`".into())
}

fn row_from_record(
    record: &Map<String, Value>,
    defaults: &ImportDefaults,
) -> std::result::Result<Row, String> {
    let content = content_from_record(record)?;
    let contributor = text_field(record, "contributor")?.unwrap_or(&defaults.contributor);
    let created_at = text_field(record, "created_at")?.unwrap_or(&defaults.created_at);
    let license = text_field(record, "license")?.unwrap_or(&defaults.license);
    let mut row = Row::new(content, contributor, created_at, license);
    row.signature = text_field(record, "signature")?.map(str::to_string);
    if let Some(given) = text_field(record, "contribution_id")?
        && given != row.contribution_id
    {
        return Err(format!(
            "contribution_id {given} does not match the row (it hashes to {}): the row was \
             changed after it was written",
            row.contribution_id
        ));
    }
    row.validate().map_err(|e| match e {
        Error::BadRow(message) => message,
        other => other.to_string(),
    })?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "0x1111111111111111111111111111111111111111";
    const BOB: &str = "0x2222222222222222222222222222222222222222";

    fn defaults() -> ImportDefaults {
        ImportDefaults {
            contributor: ALICE.into(),
            license: "CC-BY-4.0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("writes the input");
        path
    }

    fn instruction(row: &Row) -> (&str, &str, &str) {
        match &row.content {
            Content::Instruction {
                instruction,
                input,
                output,
            } => (instruction, input, output),
            Content::Messages { .. } => panic!("expected an instruction row, got {row:?}"),
        }
    }

    fn messages(row: &Row) -> Vec<(&str, &str)> {
        match &row.content {
            Content::Messages { messages } => messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.as_str()))
                .collect(),
            Content::Instruction { .. } => panic!("expected a chat row, got {row:?}"),
        }
    }

    #[test]
    fn alpaca_jsonl_with_a_bad_line_keeps_the_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "alpaca.jsonl",
            &[
                r#"{"instruction": "Add", "input": "2+2", "output": "4"}"#.to_string(),
                String::new(),
                r#"{"instruction": "broken"#.to_string(),
                format!(
                    r#"{{"instruction": "Name a colour", "output": "Red", "contributor": "{BOB}", "license": "MIT"}}"#
                ),
                "[1, 2]".to_string(),
            ]
            .join("\n"),
        );
        let imported = import_file(&path, &defaults()).expect("imports");
        assert_eq!(imported.rows.len(), 2);
        assert_eq!(instruction(&imported.rows[0]), ("Add", "2+2", "4"));
        assert_eq!(imported.rows[0].contributor, ALICE);
        assert_eq!(imported.rows[0].license, "CC-BY-4.0");
        assert_eq!(instruction(&imported.rows[1]), ("Name a colour", "", "Red"));
        assert_eq!(imported.rows[1].contributor, BOB);
        assert_eq!(imported.rows[1].license, "MIT");
        for row in &imported.rows {
            row.validate().expect("imported rows are valid");
        }
        let lines: Vec<usize> = imported.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 5], "{:?}", imported.skipped);
        assert!(imported.skipped[0].reason.contains("not valid JSON"));
        assert!(imported.skipped[1].reason.contains("not a JSON object"));
    }

    #[test]
    fn sharegpt_and_chatml_become_messages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "chat.json",
            r#"[
  {"conversations": [{"from": "system", "value": "Be kind."},
                     {"from": "human", "value": "Hi"},
                     {"from": "gpt", "value": "Hello!"}]},
  {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
  {"messages": [{"role": "user", "content": "no answer"}]},
  {"conversations": [{"from": "wizard", "value": "?"}]},
  {"prompt": "Capital of France?", "response": "Paris"}
]"#,
        );
        let imported = import_file(&path, &defaults()).expect("imports");
        assert_eq!(imported.rows.len(), 3);
        assert_eq!(
            messages(&imported.rows[0]),
            vec![
                ("system", "Be kind."),
                ("user", "Hi"),
                ("assistant", "Hello!")
            ]
        );
        assert_eq!(
            messages(&imported.rows[1]),
            vec![("user", "2+2?"), ("assistant", "4")]
        );
        assert_eq!(
            instruction(&imported.rows[2]),
            ("Capital of France?", "", "Paris")
        );
        let skipped: Vec<usize> = imported.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, vec![3, 4]);
        assert!(
            imported.skipped[0].reason.contains("assistant"),
            "{:?}",
            imported.skipped
        );
        assert!(
            imported.skipped[1].reason.contains("wizard"),
            "{:?}",
            imported.skipped
        );
    }

    #[test]
    fn csv_and_tsv_with_a_short_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let csv = write(
            dir.path(),
            "rows.csv",
            "instruction,input,output\n\
             Translate,\"bonjour, monde\",\"hello, world\"\n\
             only one field\n\
             \"Multi\nline\",,Yes\n\
             Last,,Done\n",
        );
        let imported = import_file(&csv, &defaults()).expect("imports");
        let got: Vec<_> = imported.rows.iter().map(instruction).collect();
        assert_eq!(
            got,
            vec![
                ("Translate", "bonjour, monde", "hello, world"),
                ("Multi\nline", "", "Yes"),
                ("Last", "", "Done"),
            ]
        );
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].line, 3, "{:?}", imported.skipped);

        let chat = write(
            dir.path(),
            "chat.csv",
            "messages,contributor\n\
             \"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"Hi\"\"}, {\"\"role\"\": \"\"assistant\"\", \"\"content\"\": \"\"Yo\"\"}]\",0x2222222222222222222222222222222222222222\n\
             not json,\n",
        );
        let imported = import_file(&chat, &defaults()).expect("imports");
        assert_eq!(
            messages(&imported.rows[0]),
            vec![("user", "Hi"), ("assistant", "Yo")]
        );
        assert_eq!(imported.rows[0].contributor, BOB);
        assert_eq!(imported.skipped.len(), 1);
        assert!(
            imported.skipped[0].reason.contains("not a JSON list"),
            "{:?}",
            imported.skipped
        );

        let tsv = write(
            dir.path(),
            "rows.tsv",
            "prompt\tresponse\nHi\tHello\nbad\n\
             Ping\tPong\n",
        );
        let imported = import_file(&tsv, &defaults()).expect("imports");
        assert_eq!(imported.rows.len(), 2);
        assert_eq!(imported.skipped[0].line, 3);
    }

    #[test]
    fn a_tampered_id_is_skipped_and_a_matching_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let original = Row::new(
            Content::Instruction {
                instruction: "q".into(),
                input: String::new(),
                output: "a".into(),
            },
            BOB,
            "2025-05-05T00:00:00Z",
            "MIT",
        );
        let mut tampered = serde_json::to_value(&original).expect("serialises");
        tampered["output"] = "something else".into();
        let path = write(
            dir.path(),
            "ids.jsonl",
            &format!(
                "{}\n{}\n",
                serde_json::to_string(&original).expect("serialises"),
                tampered
            ),
        );
        let imported = import_file(&path, &defaults()).expect("imports");
        assert_eq!(imported.rows, vec![original.clone()]);
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].line, 2);
        assert!(
            imported.skipped[0]
                .reason
                .contains(&original.contribution_id)
        );
        assert!(imported.skipped[0].reason.contains("does not match"));
    }

    #[test]
    fn a_file_without_usable_rows_is_an_error_quoting_the_reasons() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "bad.jsonl",
            "{\"instruction\": \"q\"}\nnope\n{\"foo\": 1}\n{}\n{}\n",
        );
        let err = import_file(&path, &defaults()).expect_err("nothing usable");
        let text = err.to_string();
        assert!(text.contains("bad.jsonl"), "{text}");
        assert!(
            text.contains("line 1: an `instruction` without an `output`"),
            "{text}"
        );
        assert!(text.contains("line 2: not valid JSON"), "{text}");
        assert!(text.contains("and 2 more"), "{text}");

        let empty = write(dir.path(), "empty.csv", "instruction,output\n");
        let err = import_file(&empty, &defaults()).expect_err("no records");
        assert!(err.to_string().contains("no records"), "{err}");

        let unknown = write(dir.path(), "rows.xlsx", "");
        assert!(import_file(&unknown, &defaults()).is_err());
    }

    #[test]
    fn parquet_files_import_including_nested_turns() {
        use polars::prelude::*;
        let dir = tempfile::tempdir().expect("temp dir");
        // A shard written by this crate: rows come back whole, ids checked.
        let original = crate::shard::tests::sample_rows(6);
        let shard = dir.path().join("shard.parquet");
        crate::shard::write_shard(&original, &shard).expect("writes");
        let imported = import_file(&shard, &defaults()).expect("imports");
        assert_eq!(imported.rows, original);
        assert!(imported.skipped.is_empty());

        // An alpaca-shaped file from elsewhere, with one row missing its output (row 2).
        let mut df = polars::df!(
            "instruction" => ["One", "Two", "Three"],
            "output" => [Some("1"), None, Some("3")],
        )
        .expect("frame");
        let other = dir.path().join("other.parquet");
        ParquetWriter::new(File::create(&other).expect("creates"))
            .finish(&mut df)
            .expect("writes");
        let imported = import_file(&other, &defaults()).expect("imports");
        let got: Vec<_> = imported.rows.iter().map(instruction).collect();
        assert_eq!(got, vec![("One", "", "1"), ("Three", "", "3")]);
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].line, 2);

        // sharegpt as Parquet writers store it: a list of {from, value} structs.
        let turns = |pairs: &[(&str, &str)]| -> Series {
            let from = Series::new("from".into(), pairs.iter().map(|p| p.0).collect::<Vec<_>>());
            let value = Series::new(
                "value".into(),
                pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
            );
            StructChunked::from_series("turn".into(), pairs.len(), [from, value].iter())
                .expect("struct")
                .into_series()
        };
        let conversations: ListChunked = [
            Some(turns(&[("human", "Hi"), ("gpt", "Hello")])),
            Some(turns(&[("human", "Only a question")])),
        ]
        .into_iter()
        .collect();
        let mut df = DataFrame::new(
            2,
            vec![
                conversations
                    .into_series()
                    .with_name("conversations".into())
                    .into(),
            ],
        )
        .expect("frame");
        let nested = dir.path().join("nested.parquet");
        ParquetWriter::new(File::create(&nested).expect("creates"))
            .finish(&mut df)
            .expect("writes");
        let imported = import_file(&nested, &defaults()).expect("imports");
        assert_eq!(imported.rows.len(), 1);
        assert_eq!(
            messages(&imported.rows[0]),
            vec![("user", "Hi"), ("assistant", "Hello")]
        );
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].line, 2);

        let garbage = write(dir.path(), "garbage.parquet", "PAR1 not really");
        let err = import_file(&garbage, &defaults()).expect_err("garbage");
        assert!(err.to_string().contains("garbage.parquet"), "{err}");
    }

    #[test]
    fn export_then_import_gives_the_same_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rows = crate::shard::tests::sample_rows(9);
        let path = dir.path().join("out.jsonl");
        export_jsonl(&rows, &path).expect("exports");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert_eq!(text.lines().count(), 9);
        let first: Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["contribution_id"], rows[0].contribution_id.as_str());
        assert_eq!(first["contributor"], ALICE);
        let imported = import_file(&path, &defaults()).expect("imports");
        assert_eq!(imported.rows, rows);
    }
}
