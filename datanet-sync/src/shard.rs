//! Parquet shards of rows, in one fixed schema; lazy polars scans over several shards.
//!
//! Every column is a string. `instruction`, `input` and `output` are null in chat rows,
//! `messages` (a JSON list of `{role, content}`) is null in instruction rows, and `signature` is
//! null in unsigned rows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{Content, Message, Row};

/// The shard columns, in the order they are written.
pub const COLUMNS: [&str; 9] = [
    "contribution_id",
    "contributor",
    "created_at",
    "license",
    "instruction",
    "input",
    "output",
    "messages",
    "signature",
];

/// The column [`scan`] adds: each row's place across all the shards scanned, from 0.
pub const POSITION: &str = "position";

/// Writes `rows` as one zstd-compressed Parquet shard at `path` and returns its size in bytes.
/// The file is written beside `path` under a temporary name and renamed into place, so a crash
/// never leaves half a shard under the final name.
pub fn write_shard(rows: &[Row], path: &Path) -> Result<u64> {
    let mut df = rows_to_frame(rows)?;
    write_atomically(path, |out| {
        ParquetWriter::new(out)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)
            .map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: format!("cannot write the shard: {e}"),
            })?;
        Ok(())
    })?;
    let bytes = std::fs::metadata(path)
        .map_err(Error::io("reading the size of", path))?
        .len();
    tracing::debug!(path = %path.display(), rows = rows.len(), bytes, "wrote shard");
    Ok(bytes)
}

/// The rows as a frame in the shard schema (columns built whole, not row by row).
pub fn rows_to_frame(rows: &[Row]) -> Result<DataFrame> {
    let n = rows.len();
    let text = |f: fn(&Row) -> Option<&str>| -> Vec<Option<&str>> { rows.iter().map(f).collect() };
    // The only per-row serialisation; done in parallel because it dominates for chat rows.
    let messages: Vec<Option<String>> = rows
        .par_iter()
        .map(|row| match &row.content {
            Content::Messages { messages } => serde_json::to_string(messages)
                .map(Some)
                .map_err(|e| Error::BadRow(format!("{}: {e}", row.contribution_id))),
            Content::Instruction { .. } => Ok(None),
        })
        .collect::<Result<_>>()?;
    let columns = vec![
        Column::new(COLUMNS[0].into(), text(|r| Some(&r.contribution_id))),
        Column::new(COLUMNS[1].into(), text(|r| Some(&r.contributor))),
        Column::new(COLUMNS[2].into(), text(|r| Some(&r.created_at))),
        Column::new(COLUMNS[3].into(), text(|r| Some(&r.license))),
        Column::new(
            COLUMNS[4].into(),
            rows.iter()
                .map(|r| instruction_part(r, 0))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            COLUMNS[5].into(),
            rows.iter()
                .map(|r| instruction_part(r, 1))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            COLUMNS[6].into(),
            rows.iter()
                .map(|r| instruction_part(r, 2))
                .collect::<Vec<_>>(),
        ),
        Column::new(COLUMNS[7].into(), messages),
        Column::new(COLUMNS[8].into(), text(|r| r.signature.as_deref())),
    ];
    // An empty column list would lose the string types, so build the columns even for no rows.
    let columns = columns
        .into_iter()
        .map(|c| c.cast(&DataType::String))
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok(DataFrame::new(n, columns)?)
}

/// `instruction` (0), `input` (1) or `output` (2) of an instruction row; `None` for chat rows.
fn instruction_part(row: &Row, part: usize) -> Option<&str> {
    match &row.content {
        Content::Instruction {
            instruction,
            input,
            output,
        } => Some([instruction, input, output][part]),
        Content::Messages { .. } => None,
    }
}

/// Every row of a shard, in order.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    check_schema(path)?;
    let file = File::open(path).map_err(Error::io("opening the shard", path))?;
    let df = ParquetReader::new(file)
        .with_columns(Some(COLUMNS.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            message: format!("cannot read the Parquet data: {e}"),
        })?;
    rows_from_frame(&df).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A lazy scan over `paths` in order, with the shard columns and [`POSITION`], each row's
/// place across all of them, so that pages cut from the scan stay put. Each file's schema is
/// checked first from its Parquet footer alone.
pub fn scan(paths: &[PathBuf]) -> Result<LazyFrame> {
    if paths.is_empty() {
        return Err(Error::Invalid("no shards to scan".into()));
    }
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        check_schema(path)?;
        sources.push(PlRefPath::try_from_path(path).map_err(|e| Error::BadFile {
            path: path.clone(),
            message: format!("not a usable path: {e}"),
        })?);
    }
    let args = ScanArgsParquet {
        row_index: Some(RowIndex {
            name: POSITION.into(),
            offset: 0,
        }),
        // Shard names are paths, not patterns: `[` or `*` in a folder name must not expand.
        glob: false,
        ..Default::default()
    };
    let selection: Vec<Expr> = std::iter::once(POSITION).chain(COLUMNS).map(col).collect();
    Ok(LazyFrame::scan_parquet_files(sources.into(), args)?.select(selection))
}

/// Rows from a collected frame that has the shard columns (others, such as [`POSITION`], are
/// ignored).
pub fn rows_from_frame(df: &DataFrame) -> Result<Vec<Row>> {
    let column = |name: &str| -> Result<&StringChunked> {
        let c = df
            .column(name)
            .map_err(|_| Error::Invalid(format!("the shard data has no column `{name}`")))?;
        c.str().map_err(|_| {
            Error::Invalid(format!(
                "the shard column `{name}` holds {}, not strings",
                c.dtype()
            ))
        })
    };
    let [
        id,
        contributor,
        created_at,
        license,
        instruction,
        input,
        output,
        messages,
        signature,
    ] = COLUMNS.map(column);
    let (id, contributor, created_at, license) = (id?, contributor?, created_at?, license?);
    let (instruction, input, output) = (instruction?, input?, output?);
    let (messages, signature) = (messages?, signature?);

    let mut rows = Vec::with_capacity(df.height());
    let mut input = input.iter();
    let mut output = output.iter();
    let mut messages = messages.iter();
    let mut signature = signature.iter();
    let mut contributor = contributor.iter();
    let mut created_at = created_at.iter();
    let mut license = license.iter();
    for (i, (id, instruction)) in id.iter().zip(instruction.iter()).enumerate() {
        let (input, output, messages, signature) = (
            input.next().flatten(),
            output.next().flatten(),
            messages.next().flatten(),
            signature.next().flatten(),
        );
        let required = |value: Option<Option<&str>>, name: &str| {
            value
                .flatten()
                .map(str::to_string)
                .ok_or_else(|| Error::BadRow(format!("row {i}: the column `{name}` is null")))
        };
        let id = required(Some(id), "contribution_id")?;
        let contributor = required(contributor.next(), "contributor")?;
        let created_at = required(created_at.next(), "created_at")?;
        let license = required(license.next(), "license")?;
        let content = match (messages, instruction, output) {
            (Some(json), _, _) => Content::Messages {
                messages: serde_json::from_str::<Vec<Message>>(json).map_err(|e| {
                    Error::BadRow(format!(
                        "row {i} ({id}): `messages` is not a JSON list of {{role, content}}: {e}"
                    ))
                })?,
            },
            (None, Some(instruction), Some(output)) => Content::Instruction {
                instruction: instruction.to_string(),
                input: input.unwrap_or_default().to_string(),
                output: output.to_string(),
            },
            _ => {
                return Err(Error::BadRow(format!(
                    "row {i} ({id}) has neither `messages` nor `instruction` and `output`"
                )));
            }
        };
        rows.push(Row {
            contribution_id: id,
            contributor,
            created_at,
            license,
            content,
            signature: signature.map(str::to_string),
        });
    }
    Ok(rows)
}

/// Checks from the Parquet footer alone that `path` has every shard column as strings.
fn check_schema(path: &Path) -> Result<()> {
    let bad = |message: String| Error::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(Error::io("opening the shard", path))?;
    let schema = ParquetReader::new(file)
        .schema()
        .map_err(|e| bad(format!("not a Parquet file ({e})")))?;
    for name in COLUMNS {
        let field = schema
            .get(name)
            .ok_or_else(|| bad(format!("no column `{name}`")))?;
        if !matches!(
            field.dtype,
            ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View
        ) {
            return Err(bad(format!(
                "the column `{name}` holds {:?}, not strings",
                field.dtype
            )));
        }
    }
    Ok(())
}

/// Writes a file through `write` under a temporary name in the same folder, syncs it and
/// renames it to `path`; on any failure the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush().map_err(Error::io("writing", &tmp))?;
        out.get_ref()
            .sync_all()
            .map_err(Error::io("syncing", &tmp))?;
        drop(out);
        std::fs::rename(&tmp, path).map_err(Error::io("renaming into place", path))
    })();
    if result.is_err() {
        // Best effort: the error being returned is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::Message;

    const ALICE: &str = "0x1111111111111111111111111111111111111111";

    pub(crate) fn sample_rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let content = if i % 3 == 2 {
                    Content::Messages {
                        messages: vec![
                            Message {
                                role: "system".into(),
                                content: "Be brief.".into(),
                            },
                            Message {
                                role: "user".into(),
                                content: format!("Question {i}: \"quotes\", ümlauts"),
                            },
                            Message {
                                role: "assistant".into(),
                                content: format!("Answer {i}"),
                            },
                        ],
                    }
                } else {
                    Content::Instruction {
                        instruction: format!("Instruction {i}"),
                        input: if i % 2 == 0 {
                            String::new()
                        } else {
                            format!("input {i}")
                        },
                        output: format!("Output {i}"),
                    }
                };
                let mut row = Row::new(content, ALICE, "2026-01-02T03:04:05Z", "CC-BY-4.0");
                if i % 4 == 0 {
                    row.signature = Some(format!("0xsig{i}"));
                }
                row
            })
            .collect()
    }

    #[test]
    fn rows_round_trip_through_a_shard() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("00000.parquet");
        let rows = sample_rows(50);
        let bytes = write_shard(&rows, &path).expect("writes");
        assert_eq!(bytes, std::fs::metadata(&path).expect("shard exists").len());
        assert_eq!(read_rows(&path).expect("reads"), rows);
        // Nothing but the shard is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("00000.parquet")]);
    }

    #[test]
    fn an_empty_shard_keeps_its_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.parquet");
        write_shard(&[], &path).expect("writes");
        assert!(read_rows(&path).expect("reads").is_empty());
    }

    #[test]
    fn a_scan_over_shards_numbers_rows_across_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rows = sample_rows(30);
        let paths: Vec<PathBuf> = rows
            .chunks(12)
            .enumerate()
            .map(|(i, chunk)| {
                let path = dir.path().join(format!("{i:05}.parquet"));
                write_shard(chunk, &path).expect("writes");
                path
            })
            .collect();
        let df = scan(&paths).expect("scans").collect().expect("collects");
        assert_eq!(rows_from_frame(&df).expect("converts"), rows);
        let positions: Vec<u64> = df
            .column(POSITION)
            .expect("position column")
            .cast(&DataType::UInt64)
            .expect("casts")
            .u64()
            .expect("u64")
            .into_no_null_iter()
            .collect();
        assert_eq!(positions, (0..30).collect::<Vec<u64>>());

        // A page from the middle, as the curation table asks for it.
        let page = scan(&paths)
            .expect("scans")
            .slice(20, 5)
            .collect()
            .expect("collects");
        assert_eq!(rows_from_frame(&page).expect("converts"), rows[20..25]);
    }

    #[test]
    fn garbage_and_truncated_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let garbage = dir.path().join("garbage.parquet");
        std::fs::write(&garbage, b"this is not parquet at all").expect("writes");
        for result in [
            read_rows(&garbage).map(|_| ()),
            scan(std::slice::from_ref(&garbage)).map(|_| ()),
        ] {
            let err = result.expect_err("garbage");
            assert!(matches!(err, Error::BadFile { .. }), "{err}");
            assert!(err.to_string().contains("garbage.parquet"), "{err}");
            assert!(err.to_string().contains("not a Parquet file"), "{err}");
        }

        let good = dir.path().join("good.parquet");
        write_shard(&sample_rows(20), &good).expect("writes");
        let bytes = std::fs::read(&good).expect("reads");
        let truncated = dir.path().join("truncated.parquet");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("writes");
        let err = read_rows(&truncated).expect_err("truncated");
        assert!(err.to_string().contains("truncated.parquet"), "{err}");
    }

    fn write_frame(path: &Path, mut df: DataFrame) {
        let file = File::create(path).expect("creates");
        ParquetWriter::new(file).finish(&mut df).expect("writes");
    }

    #[test]
    fn a_missing_or_mistyped_column_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut df = rows_to_frame(&sample_rows(3)).expect("frame");

        let missing = dir.path().join("missing.parquet");
        write_frame(&missing, df.drop("license").expect("drops"));
        for result in [
            read_rows(&missing).map(|_| ()),
            scan(std::slice::from_ref(&missing)).map(|_| ()),
        ] {
            let err = result.expect_err("no license column");
            let text = err.to_string();
            assert!(
                text.contains("missing.parquet") && text.contains("`license`"),
                "{text}"
            );
        }

        let mistyped = dir.path().join("mistyped.parquet");
        df.with_column(Column::new("created_at".into(), [1i64, 2, 3]))
            .expect("replaces");
        write_frame(&mistyped, df);
        let err = read_rows(&mistyped).expect_err("created_at is a number");
        let text = err.to_string();
        assert!(
            text.contains("mistyped.parquet")
                && text.contains("`created_at`")
                && text.contains("Int64"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_file_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.txt");
        let err = write_atomically(&path, |out| {
            out.write_all(b"half").map_err(Error::io("writing", "x"))?;
            Err(Error::Invalid("stopped".into()))
        })
        .expect_err("the writer failed");
        assert!(err.to_string().contains("stopped"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("lists").count(), 0);
    }
}
