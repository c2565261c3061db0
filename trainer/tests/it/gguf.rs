//! The GGUF reader against files made by the test writer: round trips, and every kind of damage.

use trainer::loading::ggml::GgmlType;
use trainer::loading::gguf::{GgufFile, MetadataValue, ValueType};
use trainer::test_support::{GgufValue, GgufWriter, TinyGguf, quantize_q8_0, tiny_llama_gguf};
use trainer::{Error, FileKind};

use crate::{assert_names_path, temp_dir, write_file};

/// The tiny Llama plus one entry of every value type, nested and empty arrays included.
fn every_type_writer() -> GgufWriter {
    tiny_llama_gguf(&TinyGguf::default())
        .meta("t.u8", GgufValue::U8(200))
        .meta("t.i8", GgufValue::I8(-100))
        .meta("t.u16", GgufValue::U16(60_000))
        .meta("t.i16", GgufValue::I16(-30_000))
        .meta("t.u32", GgufValue::U32(4_000_000_000))
        .meta("t.i32", GgufValue::I32(-2_000_000_000))
        .meta("t.f32", GgufValue::F32(0.25))
        .meta("t.bool", GgufValue::Bool(true))
        .meta("t.string", GgufValue::String("héllo ✓".into()))
        .meta("t.u64", GgufValue::U64(u64::MAX))
        .meta("t.i64", GgufValue::I64(i64::MIN))
        .meta("t.f64", GgufValue::F64(-1.5e300))
        .meta("t.u32s", GgufValue::u32s([1, 2, 3]))
        .meta("t.f32s", GgufValue::f32s([0.5, -0.5]))
        .meta(
            "t.u8s",
            GgufValue::Array {
                element_type: ValueType::U8,
                values: vec![GgufValue::U8(7), GgufValue::U8(8)],
            },
        )
        .meta(
            "t.empty",
            GgufValue::Array {
                element_type: ValueType::String,
                values: vec![],
            },
        )
        .meta(
            "t.nested",
            GgufValue::Array {
                element_type: ValueType::Array,
                values: vec![GgufValue::u32s([1]), GgufValue::strings(["a", "b"])],
            },
        )
}

#[test]
fn writer_round_trips_through_reader() {
    let dir = temp_dir();
    let writer = every_type_writer();
    let path = dir.path().join("tiny.gguf");
    writer.write(&path).expect("write");
    let file = GgufFile::open(&path).expect("the written file reads");

    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
    assert_eq!(
        file.file_size(),
        std::fs::metadata(&path).expect("stat").len()
    );
    assert_eq!(file.architecture().expect("arch"), "llama");
    assert_eq!(file.file_type().expect("ft"), Some((7, Some("Q8_0"))));

    // Scalars come back exactly, with their types.
    assert_eq!(file.get("t.u8"), Some(&MetadataValue::U8(200)));
    assert_eq!(file.get("t.i8"), Some(&MetadataValue::I8(-100)));
    assert_eq!(file.get("t.u16"), Some(&MetadataValue::U16(60_000)));
    assert_eq!(file.get("t.i16"), Some(&MetadataValue::I16(-30_000)));
    assert_eq!(file.get("t.u32"), Some(&MetadataValue::U32(4_000_000_000)));
    assert_eq!(file.get("t.i32"), Some(&MetadataValue::I32(-2_000_000_000)));
    assert_eq!(file.get("t.f32"), Some(&MetadataValue::F32(0.25)));
    assert_eq!(file.get("t.bool"), Some(&MetadataValue::Bool(true)));
    assert_eq!(file.str("t.string").expect("string"), "héllo ✓");
    assert_eq!(file.u64("t.u64").expect("u64"), u64::MAX);
    assert_eq!(file.get("t.i64"), Some(&MetadataValue::I64(i64::MIN)));
    assert_eq!(file.get("t.f64"), Some(&MetadataValue::F64(-1.5e300)));
    // Typed getters convert between integer widths when the value fits.
    assert_eq!(file.u32("t.u8").expect("u8 as u32"), 200);
    assert_eq!(file.u32("llama.block_count").expect("u32"), 2);
    assert_eq!(file.opt_u32("absent").expect("absent"), None);
    assert_eq!(file.opt_bool("t.bool").expect("bool"), Some(true));
    assert_eq!(file.f32("llama.rope.freq_base").expect("f32"), 10000.0);

    // Arrays are read on demand.
    assert_eq!(file.u32_array("t.u32s").expect("u32s"), [1, 2, 3]);
    assert_eq!(file.f32_array("t.f32s").expect("f32s"), [0.5, -0.5]);
    assert_eq!(file.u32_array("t.u8s").expect("u8s"), [7, 8]);
    assert_eq!(
        file.str_array("t.empty").expect("empty"),
        Vec::<&str>::new()
    );
    let nested = file
        .opt_array("t.nested")
        .expect("nested")
        .expect("present");
    assert_eq!((nested.element_type(), nested.len()), (ValueType::Array, 2));
    let tokens = file.str_array("tokenizer.ggml.tokens").expect("tokens");
    assert_eq!(tokens.len(), 48);
    assert_eq!((tokens[0], tokens[47]), ("tok0", "tok47"));
    assert_eq!(
        file.array_len("tokenizer.ggml.tokens").expect("len"),
        Some(48)
    );
    assert_eq!(
        file.i32_array("tokenizer.ggml.token_type").expect("types")[..3],
        [3, 3, 1]
    );
    assert_eq!(
        file.f32_array("tokenizer.ggml.scores").expect("scores")[2],
        -2.0
    );
    assert_eq!(
        file.str_array("tokenizer.ggml.merges").expect("merges"),
        ["t o", "to k"]
    );

    // Every metadata entry is there, in order.
    let keys: Vec<&str> = file.metadata().map(|(k, _)| k).collect();
    assert_eq!(keys.first(), Some(&"general.architecture"));
    assert_eq!(keys.last(), Some(&"t.nested"));

    // Tensor infos and data.
    let spec = TinyGguf::default();
    assert_eq!(file.tensors().len(), 2 + 9 * spec.layers as usize);
    let embd = file.tensor("token_embd.weight").expect("embedding");
    assert_eq!(embd.dims, [32, 48]);
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.size, 32 * 48 / 32 * 34);
    let values = trainer::test_support::test_values(1, 32 * 48);
    assert_eq!(
        file.tensor_data(embd).expect("data"),
        quantize_q8_0(&values).as_slice()
    );
    let q = file.tensor("blk.1.attn_q.weight").expect("q");
    assert_eq!(
        (q.ggml_type, q.elements, q.size),
        (GgmlType::F16, 32 * 32, 32 * 32 * 2)
    );
    let norm = file.tensor("output_norm.weight").expect("norm");
    let bytes = file.tensor_data(norm).expect("norm data");
    let first = f32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let seed = 2 + 9 * spec.layers; // the writer's seed counter for the last tensor
    assert_eq!(first, trainer::test_support::test_values(seed, 1)[0]);
    for t in file.tensors() {
        assert_eq!(t.offset % 32, 0, "{} is aligned", t.name);
        assert_eq!(file.tensor_data(t).expect("in range").len() as u64, t.size);
    }
}

#[test]
fn version_2_and_custom_alignment_read() {
    let dir = temp_dir();
    let path = dir.path().join("v2.gguf");
    GgufWriter::new()
        .version(2)
        .alignment(64)
        .meta_str("general.architecture", "llama")
        .f32_tensor("a", &[3], &[1.0, 2.0, 3.0])
        .f32_tensor("b", &[2, 2], &[4.0, 5.0, 6.0, 7.0])
        .write(&path)
        .expect("write");
    let file = GgufFile::open(&path).expect("reads");
    assert_eq!((file.version(), file.alignment()), (2, 64));
    assert_eq!(file.data_offset() % 64, 0);
    let b = file.tensor("b").expect("b");
    assert_eq!(b.offset, 64);
    let data = file.tensor_data(b).expect("data");
    assert_eq!(f32::from_le_bytes(data[12..16].try_into().expect("4")), 7.0);
}

#[test]
fn every_truncation_is_detected_and_names_the_file() {
    let dir = temp_dir();
    let bytes = every_type_writer().to_bytes();
    let path = dir.path().join("cut.gguf");
    let header_end = GgufFile::open(write_file(dir.path(), "whole.gguf", &bytes))
        .expect("the whole file reads")
        .data_offset() as usize;
    // Every cut in the header, metadata and tensor infos, and a stride through the data.
    let cuts = (0..header_end)
        .chain((header_end..bytes.len()).step_by(7))
        .chain([bytes.len() - 1]);
    for cut in cuts {
        std::fs::write(&path, &bytes[..cut]).expect("write the prefix");
        let err = GgufFile::open(&path).expect_err("a truncated file must not read");
        match &err {
            Error::Truncated {
                kind: FileKind::Gguf,
                offset,
                needed,
                file_size,
                what,
                ..
            } => {
                assert_eq!(*file_size, cut as u64);
                assert!(offset + needed > *file_size, "cut {cut}: {err}");
                assert!(!what.is_empty());
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
        assert_names_path(&err, &path);
    }
}

#[test]
fn truncation_errors_say_what_was_being_read() {
    let dir = temp_dir();
    let bytes = every_type_writer().to_bytes();
    let path = dir.path().join("cut.gguf");
    let whole = write_file(dir.path(), "whole.gguf", &bytes);
    let file = GgufFile::open(&whole).expect("reads");
    let last = file.tensors().last().expect("tensors").clone();
    let data_start = (file.data_offset() + last.offset) as usize;

    let cases: [(usize, &str); 4] = [
        (10, "tensor count"),
        (20, "metadata count"),
        (data_start + 1, "data of tensor `output_norm.weight`"),
        (bytes.len() / 2, ""),
    ];
    for (cut, expected) in cases {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let err = GgufFile::open(&path).expect_err("truncated");
        let text = err.to_string();
        assert!(text.contains(expected), "cut {cut}: {text}");
        assert!(text.contains(&format!("is {cut} bytes long")), "{text}");
    }
    // Inside the vocabulary: the element is named, with its byte offset.
    let vocab_cut = bytes
        .windows(5)
        .position(|w| w == b"tok20")
        .expect("token 20 is in the file")
        + 2;
    std::fs::write(&path, &bytes[..vocab_cut]).expect("write");
    let err = GgufFile::open(&path).expect_err("truncated");
    match err {
        Error::Truncated { what, offset, .. } => {
            assert_eq!(what, "element 20 of metadata array `tokenizer.ggml.tokens`");
            assert_eq!(offset as usize, vocab_cut - 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_magic_is_reported() {
    let dir = temp_dir();
    let mut bytes = every_type_writer().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let path = write_file(dir.path(), "old.gguf", &bytes);
    let err = GgufFile::open(&path).expect_err("bad magic");
    assert!(
        matches!(&err, Error::BadMagic { found, .. } if found == b"GGML"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    assert_names_path(&err, &path);
}

#[test]
fn unsupported_version_is_reported() {
    let dir = temp_dir();
    let path = dir.path().join("v1.gguf");
    GgufWriter::new().version(1).write(&path).expect("write");
    let err = GgufFile::open(&path).expect_err("v1");
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            version: 1,
            big_endian: false,
            ..
        }
    ));
}

#[test]
fn unknown_tensor_type_is_reported_by_number_and_name() {
    let dir = temp_dir();
    for type_id in [99, 31, 4] {
        let path = dir.path().join(format!("t{type_id}.gguf"));
        GgufWriter::new()
            .meta_str("general.architecture", "llama")
            .f32_tensor("fine", &[2], &[1.0, 2.0])
            .raw_tensor("blk.0.mystery", &[32], type_id, vec![0; 64])
            .write(&path)
            .expect("write");
        let err = GgufFile::open(&path).expect_err("unknown type");
        match &err {
            Error::UnknownTensorType {
                type_id: id,
                tensor,
                ..
            } => {
                assert_eq!((*id, tensor.as_str()), (type_id, "blk.0.mystery"));
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("type id {type_id}")) && text.contains("blk.0.mystery"),
            "{text}"
        );
        assert_names_path(&err, &path);
    }
}

#[test]
fn tensor_sizes_follow_the_type_table() {
    let dir = temp_dir();
    // A Q4_1 row of 33 elements is not a whole number of 32-element blocks.
    let path = dir.path().join("rows.gguf");
    GgufWriter::new()
        .raw_tensor("w", &[33, 2], GgmlType::Q4_1.id(), vec![0; 80])
        .write(&path)
        .expect("write");
    let err = GgufFile::open(&path).expect_err("partial block");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("Q4_1 blocks of 32"), "{err}");

    // A Q4_K tensor of 512 elements takes 2 × 144 bytes; give it 100.
    let path = dir.path().join("short.gguf");
    GgufWriter::new()
        .raw_tensor("k", &[256, 2], GgmlType::Q4_K.id(), vec![0; 100])
        .write(&path)
        .expect("write");
    match GgufFile::open(&path).expect_err("short data") {
        Error::Truncated { what, needed, .. } => {
            assert!(what.contains("`k`"), "{what}");
            assert_eq!(needed, 288);
        }
        other => panic!("{other:?}"),
    }
    // The same tensor with all its bytes reads, with the right size.
    let path = dir.path().join("ok.gguf");
    GgufWriter::new()
        .raw_tensor("k", &[256, 2], GgmlType::Q4_K.id(), vec![0; 288])
        .write(&path)
        .expect("write");
    let file = GgufFile::open(&path).expect("reads");
    assert_eq!(file.tensor("k").expect("k").size, 288);
}

#[test]
fn missing_required_keys_are_listed_together() {
    let dir = temp_dir();
    let path = dir.path().join("tiny.gguf");
    tiny_llama_gguf(&TinyGguf::default())
        .write(&path)
        .expect("write");
    let file = GgufFile::open(&path).expect("reads");
    file.require(&["general.architecture", "llama.block_count"])
        .expect("present keys pass");
    let err = file
        .require(&[
            "general.architecture",
            "llama.rope.dimension_count",
            "llama.block_count",
            "llama.expert_count",
        ])
        .expect_err("two are missing");
    match &err {
        Error::MissingMetadata { keys, .. } => {
            assert_eq!(keys, &["llama.rope.dimension_count", "llama.expert_count"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("llama.rope.dimension_count, llama.expert_count"),
        "{err}"
    );
    assert_names_path(&err, &path);

    // A single getter names its key too, and a wrong type says what was found.
    let err = file.u32("llama.expert_count").expect_err("absent");
    assert!(matches!(err, Error::MissingMetadata { keys, .. } if keys == ["llama.expert_count"]));
    let err = file.u32("general.name").expect_err("a string is not a u32");
    assert!(
        matches!(&err, Error::MetadataType { key, .. } if key == "general.name"),
        "{err:?}"
    );
    assert!(err.to_string().contains("string \"Tiny Llama\""), "{err}");
    assert!(file.str_array("llama.block_count").is_err());
}

#[test]
fn structural_damage_is_malformed() {
    let dir = temp_dir();
    let duplicate = dir.path().join("dup.gguf");
    GgufWriter::new()
        .meta_u32("a", 1)
        .meta_u32("a", 2)
        .write(&duplicate)
        .expect("write");
    let err = GgufFile::open(&duplicate).expect_err("duplicate key");
    assert!(err.to_string().contains("appears twice"), "{err}");

    let bad_alignment = dir.path().join("align.gguf");
    GgufWriter::new()
        .meta_u32("general.alignment", 24)
        .write(&bad_alignment)
        .expect("write");
    let err = GgufFile::open(&bad_alignment).expect_err("alignment 24");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");

    // An unknown metadata value type id (13), patched into a valid file.
    let mut bytes = GgufWriter::new().meta_u32("k", 5).to_bytes();
    let type_at = 24 + 8 + 1;
    assert_eq!(bytes[type_at..type_at + 4], 4u32.to_le_bytes());
    bytes[type_at..type_at + 4].copy_from_slice(&13u32.to_le_bytes());
    let path = write_file(dir.path(), "vtype.gguf", &bytes);
    let err = GgufFile::open(&path).expect_err("value type 13");
    assert!(
        err.to_string().contains("unknown value type id 13"),
        "{err}"
    );

    let five_dims = dir.path().join("dims.gguf");
    GgufWriter::new()
        .raw_tensor("x", &[1, 1, 1, 1, 1], 0, vec![0; 4])
        .write(&five_dims)
        .expect("write");
    let err = GgufFile::open(&five_dims).expect_err("5 dims");
    assert!(err.to_string().contains("at most 4"), "{err}");
}
