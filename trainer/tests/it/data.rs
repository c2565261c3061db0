//! Training data: reading the dataset formats, the assistant-only loss mask, truncation,
//! packing, the train/eval split and the preview. A small byte-level tokenizer with ChatML
//! special tokens is written per test; the real default model's tokenizer and template are
//! checked with `--features default-model`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use trainer::ChatMessage;
use trainer::data::{
    Example, FileFormat, RowFormat, RowUnit, SegmentKind, SkipReason, TokenizedExample,
    load_dataset, pack, preview, split_train_eval, tokenize_dataset, tokenize_example,
};
use trainer::tokenizer::TextTokenizer;

use crate::{assert_names_path, temp_dir, write_file};

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// GPT-2's byte → character table, the alphabet of byte-level BPE.
fn byte_chars() -> Vec<char> {
    let mut shifted = 0u32;
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            if printable {
                char::from_u32(b).expect("a Latin-1 char")
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("a shifted char")
            }
        })
        .collect()
}

/// A byte-level BPE tokenizer over all 256 bytes plus `<s>`, `</s>`, `<|im_start|>` and
/// `<|im_end|>`, with `merges` (pairs of byte-level strings) and the given chat template.
/// `use_regex: false` lets merges cross word boundaries, as some tokenizers do.
fn chat_tokenizer(
    dir: &Path,
    template: &str,
    add_bos: bool,
    merges: &[(&str, &str)],
    use_regex: bool,
) -> TextTokenizer {
    let specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"];
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert((*s).to_owned(), json!(i));
    }
    for c in byte_chars() {
        let id = vocab.len();
        vocab.insert(c.to_string(), json!(id));
    }
    for (a, b) in merges {
        let id = vocab.len();
        vocab.insert(format!("{a}{b}"), json!(id));
    }
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let merges: Vec<String> = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let tokenizer = json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                          "trim_offsets": true, "use_regex": use_regex},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    let config = json!({"bos_token": "<s>", "eos_token": "<|im_end|>",
                        "add_bos_token": add_bos, "chat_template": template});
    write_file(dir, "tokenizer.json", tokenizer.to_string().as_bytes());
    write_file(dir, "tokenizer_config.json", config.to_string().as_bytes());
    TextTokenizer::from_folder(dir).expect("the test tokenizer loads")
}

fn chatml_tokenizer(dir: &Path) -> TextTokenizer {
    chat_tokenizer(dir, CHATML, false, &[], true)
}

fn conversation(turns: &[(&str, &str)]) -> Example {
    Example {
        id: "test:1".into(),
        messages: turns
            .iter()
            .map(|(role, content)| ChatMessage::new(*role, *content))
            .collect(),
        contributor: None,
        contribution_id: None,
    }
}

/// The masked tokens as runs of consecutive trained tokens, each decoded with special
/// tokens kept.
fn trained_runs(tokenizer: &TextTokenizer, t: &TokenizedExample) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut previous = false;
    for (&id, &trained) in t.tokens.iter().zip(&t.labels_mask) {
        if trained {
            if !previous {
                runs.push(Vec::new());
            }
            runs.last_mut().expect("a run was started").push(id);
        }
        previous = trained;
    }
    runs.iter()
        .map(|ids| tokenizer.inner().decode(ids, false).expect("decodes"))
        .collect()
}

fn jsonl(dir: &Path, name: &str, rows: &[serde_json::Value]) -> PathBuf {
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    write_file(dir, name, text.join("\n").as_bytes())
}

#[test]
fn each_jsonl_format_is_detected_and_parsed() {
    let dir = temp_dir();
    let alpaca = jsonl(
        dir.path(),
        "alpaca.jsonl",
        &[
            json!({"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief",
                   "contribution_id": "c-1", "contributor": "0xabc"}),
            json!({"instruction": "Say hi", "output": "hi"}),
        ],
    );
    let sharegpt = jsonl(
        dir.path(),
        "sharegpt.jsonl",
        &[json!({"conversations": [
            {"from": "system", "value": "Be kind"},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"}]})],
    );
    let chatml = jsonl(
        dir.path(),
        "chatml.jsonl",
        &[json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}], "contributor": "0xdef"})],
    );

    let d = load_dataset(&alpaca).expect("alpaca loads");
    assert_eq!(d.report.format.rows, RowFormat::Alpaca);
    assert_eq!(d.report.format.file, FileFormat::Jsonl);
    assert_eq!((d.report.rows_read, d.report.rows_kept), (2, 2));
    let first = &d.examples[0];
    assert_eq!(first.id, "c-1");
    assert_eq!(first.contribution_id.as_deref(), Some("c-1"));
    assert_eq!(first.contributor.as_deref(), Some("0xabc"));
    assert_eq!(
        first.messages,
        vec![
            ChatMessage::new("system", "Be brief"),
            ChatMessage::new("user", "Add\n\n2 and 3"),
            ChatMessage::new("assistant", "5"),
        ]
    );
    assert_eq!(d.examples[1].id, "alpaca.jsonl:2");
    assert_eq!(d.examples[1].contributor, None);

    let d = load_dataset(&sharegpt).expect("sharegpt loads");
    assert_eq!(d.report.format.rows, RowFormat::ShareGpt);
    assert_eq!(
        d.examples[0].messages,
        vec![
            ChatMessage::new("system", "Be kind"),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello"),
        ]
    );

    let d = load_dataset(&chatml).expect("chatml loads");
    assert_eq!(d.report.format.rows, RowFormat::ChatMl);
    assert_eq!(d.examples[0].id, "chatml.jsonl:1");
    assert_eq!(d.examples[0].contributor.as_deref(), Some("0xdef"));
    assert_eq!(d.examples[0].messages.len(), 2);
}

#[test]
fn a_json_array_file_is_read_by_row() {
    let dir = temp_dir();
    let rows = json!([
        {"instruction": "A", "output": "a"},
        {"instruction": "B", "output": ""},
        {"instruction": "C", "output": "c"}
    ]);
    let path = write_file(dir.path(), "data.json", rows.to_string().as_bytes());
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.file, FileFormat::JsonArray);
    assert_eq!(d.report.rows_kept, 2);
    assert_eq!(d.report.problems[0].number, 2);
    assert_eq!(d.report.problems[0].unit, RowUnit::Row);
    assert_eq!(d.examples[1].id, "data.json:3");

    // A `.json` file that is really JSON Lines is read as such, numbered by line.
    let path = write_file(
        dir.path(),
        "lines.json",
        b"\n{\"prompt\": \"p\", \"response\": \"r\"}\n",
    );
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.file, FileFormat::Jsonl);
    assert_eq!(d.examples[0].id, "lines.json:2");
}

#[test]
fn bad_lines_are_reported_by_number_and_good_rows_survive() {
    let dir = temp_dir();
    let lines = [
        r#"{"instruction": "one", "output": "1"}"#,
        r#"{"instruction": "two", "output": "2""#,
        r#"{"instruction": "three"}"#,
        "",
        r#"{"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}"#,
        r#"{"instruction": "six", "output": "   "}"#,
        r#"[1, 2]"#,
        r#"{"instruction": "eight", "output": "8"}"#,
    ];
    let path = write_file(dir.path(), "mixed.jsonl", lines.join("\n").as_bytes());
    let d = load_dataset(&path).expect("the good rows load");
    assert_eq!(d.report.format.rows, RowFormat::Alpaca);
    assert_eq!(d.report.rows_read, 7, "the blank line is not a row");
    assert_eq!(d.report.rows_kept, 2);
    let ids: Vec<&str> = d.examples.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["mixed.jsonl:1", "mixed.jsonl:8"]);
    let problems: Vec<(u64, &str)> = d
        .report
        .problems
        .iter()
        .map(|p| (p.number, p.reason.as_str()))
        .collect();
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert_eq!(problems[0].0, 2);
    assert!(problems[0].1.starts_with("malformed JSON"), "{problems:?}");
    assert_eq!(problems[1], (3, "missing `output`"));
    assert_eq!(problems[2].0, 5);
    assert!(
        problems[2].1.contains("sharegpt") && problems[2].1.contains("alpaca (from line 1)"),
        "{problems:?}"
    );
    assert_eq!(problems[3].0, 6);
    assert!(
        problems[3].1.contains("empty assistant turn"),
        "{problems:?}"
    );
    assert_eq!(problems[4], (7, "not a JSON object"));
    assert_eq!(
        d.report.problems[0].to_string().split(':').next(),
        Some("line 2")
    );
}

#[test]
fn the_format_comes_from_the_first_row_that_names_one() {
    let dir = temp_dir();
    let path = jsonl(
        dir.path(),
        "late.jsonl",
        &[
            json!({"text": "no format here"}),
            json!({"messages": [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Yo"}]}),
        ],
    );
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.rows, RowFormat::ChatMl);
    assert_eq!(d.report.problems.len(), 1);
    assert!(d.report.problems[0].reason.contains("fields: text"));
}

#[test]
fn a_file_without_usable_rows_is_an_error_listing_problems() {
    let dir = temp_dir();
    let path = write_file(
        dir.path(),
        "bad.jsonl",
        b"{\"instruction\": \"x\"}\nnot json\n{\"instruction\": \"y\", \"output\": \"\"}\n",
    );
    let err = load_dataset(&path).expect_err("fails");
    let message = err.to_string();
    assert!(message.contains("no usable rows (3 read"), "{message}");
    assert!(message.contains("line 1: missing `output`"), "{message}");
    assert!(message.contains("line 2: malformed JSON"), "{message}");
    assert!(
        message.contains("line 3: empty assistant turn"),
        "{message}"
    );
    assert_names_path(&err, &path);

    let empty = write_file(dir.path(), "empty.jsonl", b"\n\n");
    let err = load_dataset(&empty).expect_err("fails");
    assert!(err.to_string().contains("no rows"), "{err}");

    let unknown = write_file(dir.path(), "data.xlsx", b"");
    let err = load_dataset(&unknown).expect_err("fails");
    assert!(err.to_string().contains(".jsonl"), "{err}");
    assert_names_path(&err, &unknown);
}

#[test]
fn csv_alpaca_and_prompt_response_columns() {
    let dir = temp_dir();
    let path = write_file(
        dir.path(),
        "alpaca.csv",
        "\u{feff}Instruction,input,output,contributor\n\
         Translate,\"bonjour,\nmonde\",\"hello, world\",0xaaa\n\
         Empty,,,0xbbb\n\
         Count,,\"1 2 3\",\n"
            .as_bytes(),
    );
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.file, FileFormat::Csv);
    assert_eq!(d.report.format.rows, RowFormat::Alpaca);
    assert_eq!((d.report.rows_read, d.report.rows_kept), (3, 2));
    assert_eq!(
        d.examples[0].messages[0],
        ChatMessage::new("user", "Translate\n\nbonjour,\nmonde")
    );
    assert_eq!(d.examples[0].contributor.as_deref(), Some("0xaaa"));
    // The quoted field spans two lines: the next row starts on line 4.
    assert_eq!(d.report.problems[0].number, 4);
    assert_eq!(d.examples[1].id, "alpaca.csv:5");

    let path = write_file(
        dir.path(),
        "pairs.csv",
        b"prompt,response,system\nHi,Hello,Be kind\n",
    );
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.rows, RowFormat::PromptResponse);
    assert_eq!(
        d.examples[0].messages,
        vec![
            ChatMessage::new("system", "Be kind"),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello"),
        ]
    );

    let path = write_file(dir.path(), "other.csv", b"question,answer\na,b\n");
    let err = load_dataset(&path).expect_err("unknown columns");
    assert!(err.to_string().contains("question, answer"), "{err}");
}

fn write_parquet(path: &Path, schema: &str, columns: &[Vec<Option<&str>>], codec: &str) {
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let compression = match codec {
        "zstd" => Compression::ZSTD(ZstdLevel::default()),
        "gzip" => Compression::GZIP(GzipLevel::default()),
        _ => Compression::SNAPPY,
    };
    let schema = Arc::new(parse_message_type(schema).expect("schema parses"));
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = std::fs::File::create(path).expect("create");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    let mut index = 0;
    while let Some(mut column) = group.next_column().expect("column") {
        let cells = &columns[index];
        let values: Vec<ByteArray> = cells.iter().flatten().map(|s| (*s).into()).collect();
        let levels: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
        let optional = column
            .typed::<ByteArrayType>()
            .get_descriptor()
            .max_def_level()
            > 0;
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, optional.then_some(levels.as_slice()), None)
            .expect("write");
        column.close().expect("close column");
        index += 1;
    }
    group.close().expect("close row group");
    writer.close().expect("close file");
}

#[test]
fn parquet_columns_and_messages() {
    let dir = temp_dir();
    for codec in ["snappy", "zstd", "gzip"] {
        let path = dir.path().join(format!("pairs-{codec}.parquet"));
        write_parquet(
            &path,
            "message rows { REQUIRED BYTE_ARRAY prompt (UTF8); \
             REQUIRED BYTE_ARRAY response (UTF8); OPTIONAL BYTE_ARRAY contribution_id (UTF8); }",
            &[
                vec![Some("Hi"), Some("Bye"), Some("Again")],
                vec![Some("Hello"), Some(""), Some("Once more")],
                vec![Some("0xrow1"), None, None],
            ],
            codec,
        );
        let d = load_dataset(&path).expect("loads");
        assert_eq!(d.report.format.file, FileFormat::Parquet);
        assert_eq!(d.report.format.rows, RowFormat::PromptResponse);
        assert_eq!((d.report.rows_read, d.report.rows_kept), (3, 2), "{codec}");
        assert_eq!(d.examples[0].id, "0xrow1");
        assert_eq!(d.examples[1].id, format!("pairs-{codec}.parquet:3"));
        assert_eq!(d.report.problems[0].number, 2);
        assert_eq!(d.report.problems[0].unit, RowUnit::Row);
    }

    let path = dir.path().join("messages.parquet");
    let messages = json!([{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}])
    .to_string();
    write_parquet(
        &path,
        "message rows { REQUIRED BYTE_ARRAY messages (UTF8); \
         REQUIRED BYTE_ARRAY contributor (UTF8); }",
        &[
            vec![Some(messages.as_str()), Some("[not json")],
            vec![Some("0xabc"), Some("0xdef")],
        ],
        "snappy",
    );
    let d = load_dataset(&path).expect("loads");
    assert_eq!(d.report.format.rows, RowFormat::ChatMl);
    assert_eq!(d.examples.len(), 1);
    assert_eq!(d.examples[0].contributor.as_deref(), Some("0xabc"));
    assert_eq!(
        d.examples[0].messages[1],
        ChatMessage::new("assistant", "Hello")
    );
    assert!(d.report.problems[0].reason.contains("not valid JSON"));

    let not_parquet = write_file(dir.path(), "fake.parquet", b"PAR1 but not really");
    let err = load_dataset(&not_parquet).expect_err("fails");
    assert_names_path(&err, &not_parquet);
}

#[test]
fn the_mask_covers_the_answer_and_its_end_of_turn_token() {
    let dir = temp_dir();
    let tokenizer = chatml_tokenizer(dir.path());
    let example = conversation(&[
        ("system", "Be brief"),
        ("user", "Say hello"),
        ("assistant", "Hello there"),
    ]);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert_eq!(t.tokens.len(), t.labels_mask.len());
    assert_eq!(trained_runs(&tokenizer, &t), vec!["Hello there<|im_end|>"]);
    let im_end = tokenizer.inner().token_to_id("<|im_end|>").expect("token");
    let last_trained = t.labels_mask.iter().rposition(|m| *m).expect("trained");
    assert_eq!(t.tokens[last_trained], im_end);
    // The newline ChatML writes after <|im_end|> is not trained.
    assert_eq!(last_trained, t.tokens.len() - 2);
    let text = tokenizer.inner().decode(&t.tokens, false).expect("decodes");
    assert_eq!(
        text,
        tokenizer
            .render_chat(&example.messages, false)
            .expect("renders")
    );
}

#[test]
fn every_assistant_turn_of_a_conversation_trains() {
    let dir = temp_dir();
    let tokenizer = chatml_tokenizer(dir.path());
    let example = conversation(&[
        ("user", "Q1"),
        ("assistant", "A one"),
        ("user", "Q2"),
        ("assistant", "A two"),
    ]);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert_eq!(
        trained_runs(&tokenizer, &t),
        vec!["A one<|im_end|>", "A two<|im_end|>"]
    );
}

#[test]
fn the_bos_token_is_written_once() {
    let dir = temp_dir();
    let with_bos = format!("{{{{ bos_token }}}}{CHATML}");
    let tokenizer = chat_tokenizer(dir.path(), &with_bos, true, &[], true);
    let bos = tokenizer.inner().token_to_id("<s>").expect("bos");
    let example = conversation(&[("user", "Hi"), ("assistant", "Yo")]);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert_eq!(t.tokens[0], bos);
    assert_eq!(t.tokens.iter().filter(|&&id| id == bos).count(), 1);
    assert_eq!(trained_runs(&tokenizer, &t), vec!["Yo<|im_end|>"]);

    // A template without BOS, for a model that wants one: the tokenizer adds it, once.
    let dir = temp_dir();
    let tokenizer = chat_tokenizer(dir.path(), CHATML, true, &[], true);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert_eq!(t.tokens[0], bos);
    assert_eq!(t.tokens.iter().filter(|&&id| id == bos).count(), 1);
    assert_eq!(trained_runs(&tokenizer, &t), vec!["Yo<|im_end|>"]);
}

#[test]
fn a_merge_across_the_answer_boundary_falls_back_to_offsets() {
    let dir = temp_dir();
    // "\n" (Ċ) followed by "H" merges into one token when merges may cross words, so the
    // prompt's tokens are not a prefix of the conversation's.
    let tokenizer = chat_tokenizer(dir.path(), CHATML, false, &[("Ċ", "H")], false);
    let merged = tokenizer.inner().token_to_id("ĊH").expect("merged token");
    let example = conversation(&[("user", "Hi"), ("assistant", "Hello")]);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert!(t.tokens.contains(&merged));
    // The straddling token is trained (the model must produce its "H"); the rest of the
    // prompt is not.
    assert_eq!(trained_runs(&tokenizer, &t), vec!["\nHello<|im_end|>"]);
}

#[test]
fn truncation_drops_the_tail_and_skips_answers_beyond_the_context() {
    let dir = temp_dir();
    let tokenizer = chatml_tokenizer(dir.path());
    let long_answer = conversation(&[("user", "Hi"), ("assistant", &"word ".repeat(40))]);
    let mut long_prompt = conversation(&[("user", &"x".repeat(200)), ("assistant", "ok")]);
    long_prompt.id = "test:2".into();
    let full = tokenize_example(&tokenizer, &long_answer).expect("tokenizes");
    let max_len = 32;
    assert!(full.tokens.len() > max_len);

    let report =
        tokenize_dataset(&tokenizer, &[long_answer, long_prompt], max_len).expect("tokenizes");
    assert_eq!(report.examples.len(), 1);
    assert_eq!(report.truncated, 1);
    let kept = &report.examples[0];
    assert_eq!(kept.tokens, full.tokens[..max_len]);
    assert_eq!(kept.labels_mask, full.labels_mask[..max_len]);
    assert!(kept.trained_tokens() > 0);

    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].id, "test:2");
    assert!(matches!(
        report.skipped[0].reason,
        SkipReason::LongerThanContext { max_len: 32, .. }
    ));
    assert!(
        report.skipped[0]
            .reason
            .to_string()
            .starts_with("longer than the context")
    );
    assert!(tokenize_dataset(&tokenizer, &[], 1).is_err());
}

fn numbered_examples(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            id: format!("row-{i}"),
            messages: vec![
                ChatMessage::new("user", format!("question {i}")),
                ChatMessage::new("assistant", "answer ".repeat(1 + i % 4)),
            ],
            contributor: None,
            contribution_id: Some(format!("row-{i}")),
        })
        .collect()
}

#[test]
fn packing_keeps_each_examples_id_and_token_range() {
    let dir = temp_dir();
    let tokenizer = chatml_tokenizer(dir.path());
    let max_len = 96;
    let report = tokenize_dataset(&tokenizer, &numbered_examples(9), max_len).expect("ok");
    let packed = pack(&report.examples, max_len).expect("packs");
    assert!(
        packed.len() < report.examples.len(),
        "packing saves sequences"
    );
    let mut seen = Vec::new();
    for p in &packed {
        assert!(p.tokens.len() <= max_len);
        assert_eq!(p.tokens.len(), p.labels_mask.len());
        let mut end = 0;
        for s in &p.segments {
            assert_eq!(s.range.start, end, "segments are contiguous");
            end = s.range.end;
            let original = report
                .examples
                .iter()
                .find(|e| e.id == s.id)
                .expect("a known id");
            assert_eq!(p.tokens[s.range.clone()], original.tokens[..]);
            assert_eq!(p.labels_mask[s.range.clone()], original.labels_mask[..]);
            seen.push(s.id.clone());
        }
        assert_eq!(end, p.tokens.len());
    }
    seen.sort();
    let mut ids: Vec<String> = report.examples.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(seen, ids, "every example is packed exactly once");
    assert_eq!(pack(&report.examples, max_len).expect("packs"), packed);
}

#[test]
fn the_split_is_deterministic_disjoint_and_order_independent() {
    let examples = numbered_examples(100);
    let (train, eval) = split_train_eval(examples.clone(), 0.2, 7).expect("splits");
    assert_eq!((train.len(), eval.len()), (80, 20));
    let (train2, eval2) = split_train_eval(examples.clone(), 0.2, 7).expect("splits");
    assert_eq!((&train, &eval), (&train2, &eval2));
    let eval_ids: Vec<&str> = eval.iter().map(|e| e.id.as_str()).collect();
    assert!(train.iter().all(|e| !eval_ids.contains(&e.id.as_str())));

    let mut reversed = examples.clone();
    reversed.reverse();
    let (_, eval3) = split_train_eval(reversed, 0.2, 7).expect("splits");
    let mut ids3: Vec<&str> = eval3.iter().map(|e| e.id.as_str()).collect();
    let mut ids1 = eval_ids.clone();
    ids1.sort_unstable();
    ids3.sort_unstable();
    assert_eq!(ids1, ids3, "the split follows ids, not positions");

    let (_, other_seed) = split_train_eval(examples.clone(), 0.2, 8).expect("splits");
    assert_ne!(eval, other_seed);

    let (train, eval) = split_train_eval(examples.clone(), 0.0, 7).expect("splits");
    assert_eq!((train.len(), eval.len()), (100, 0));
    let (train, eval) = split_train_eval(examples[..1].to_vec(), 0.5, 7).expect("splits");
    assert_eq!((train.len(), eval.len()), (1, 0));
    assert!(split_train_eval(examples, f64::NAN, 7).is_err());
}

#[test]
fn the_preview_marks_trained_and_truncated_text() {
    let dir = temp_dir();
    let tokenizer = chatml_tokenizer(dir.path());
    let example = conversation(&[("user", "Say hello"), ("assistant", "Hello there")]);
    let previews = preview(&tokenizer, &[example.clone(), example.clone()], 1, None);
    assert_eq!(previews.len(), 1);
    let p = &previews[0];
    let text: String = p.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        text,
        tokenizer
            .render_chat(&example.messages, false)
            .expect("renders")
    );
    let trained: Vec<&str> = p
        .segments
        .iter()
        .filter(|s| s.kind == SegmentKind::Trained)
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(trained, vec!["Hello there<|im_end|>"]);
    assert_eq!(p.skipped, None);

    let cut = preview(&tokenizer, &[example], 1, Some(4));
    assert!(
        cut[0]
            .segments
            .iter()
            .any(|s| s.kind == SegmentKind::Truncated)
    );
    assert!(
        cut[0]
            .segments
            .iter()
            .all(|s| s.kind != SegmentKind::Trained)
    );
    assert!(matches!(
        cut[0].skipped,
        Some(SkipReason::LongerThanContext { .. })
    ));
}

#[test]
#[cfg_attr(
    not(feature = "default-model"),
    ignore = "needs the default model: run with --features default-model after scripts/setup"
)]
fn the_default_models_template_masks_only_the_answers() {
    let file = trainer::GgufFile::open(crate::default_model::default_gguf()).expect("opens");
    let tokenizer = TextTokenizer::from_gguf(&file).expect("tokenizer");
    let example = conversation(&[
        ("user", "What is 2+2?"),
        ("assistant", "4."),
        ("user", "And 3+3?"),
        ("assistant", "6, of course."),
    ]);
    let t = tokenize_example(&tokenizer, &example).expect("tokenizes");
    assert_eq!(
        trained_runs(&tokenizer, &t),
        vec!["4.<|im_end|>", "6, of course.<|im_end|>"]
    );
    // SmolLM2's template adds its default system prompt; it is context, not trained.
    let text = tokenizer.inner().decode(&t.tokens, false).expect("decodes");
    assert!(text.contains("SmolLM"), "{text}");
    let previews = preview(&tokenizer, &[example], 1, None);
    let trained: String = previews[0]
        .segments
        .iter()
        .filter(|s| s.kind == SegmentKind::Trained)
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(trained, "4.<|im_end|>6, of course.<|im_end|>");
}
