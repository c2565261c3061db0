//! The safetensors header reader and shard handling.

use trainer::loading::safetensors::{Dtype, SafetensorsHeader, read_folder, weight_files};
use trainer::test_support::{StTensor, TinyLlama, raw_safetensors, write_safetensors};
use trainer::{Error, FileKind};

use crate::{assert_names_path, temp_dir, write_file};

#[test]
fn header_round_trip() {
    let dir = temp_dir();
    let path = dir.path().join("w.safetensors");
    write_safetensors(
        &path,
        &[
            StTensor::f32("a", &[2, 3], &[1.0; 6]),
            StTensor::bf16("b", &[4], &[0.5; 4]),
            StTensor::f32("empty", &[0, 3], &[]),
        ],
    )
    .expect("write");
    let header = SafetensorsHeader::read(&path).expect("reads");
    assert_eq!(header.data_start % 8, 0, "the header is padded to 8 bytes");
    let a = header.tensor("a").expect("a");
    assert_eq!(
        (a.dtype, a.shape.as_slice(), a.elements),
        (Dtype::F32, &[2, 3][..], 6)
    );
    let b = header.tensor("b").expect("b");
    assert_eq!((b.dtype, b.data_offsets), (Dtype::BF16, (24, 32)));
    assert_eq!(
        header.data_range(b),
        header.data_start + 24..header.data_start + 32
    );
    assert_eq!(header.tensor("empty").expect("empty").elements, 0);
    let bytes = std::fs::read(&path).expect("read");
    let range = header.data_range(a);
    assert_eq!(
        &bytes[range.start as usize..range.start as usize + 4],
        1f32.to_le_bytes()
    );
}

#[test]
fn header_longer_than_the_file_is_truncation() {
    let dir = temp_dir();
    let mut bytes = raw_safetensors(b"{}      ", &[]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    let path = write_file(dir.path(), "long.safetensors", &bytes);
    let err = SafetensorsHeader::read(&path).expect_err("header past the end");
    match &err {
        Error::Truncated {
            kind: FileKind::Safetensors,
            what,
            offset: 8,
            needed: 1000,
            file_size: 16,
            ..
        } => assert!(what.contains("JSON header"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert_names_path(&err, &path);

    let path = write_file(dir.path(), "tiny.safetensors", b"\x02\0\0");
    assert!(matches!(
        SafetensorsHeader::read(&path),
        Err(Error::Truncated { needed: 8, .. })
    ));

    let mut huge = raw_safetensors(b"{}", &[]);
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let path = write_file(dir.path(), "huge.safetensors", &huge);
    let err = SafetensorsHeader::read(&path).expect_err("absurd length");
    assert!(err.to_string().contains("more than the limit"), "{err}");
}

#[test]
fn bad_json_names_the_file() {
    let dir = temp_dir();
    let path = write_file(
        dir.path(),
        "bad.safetensors",
        &raw_safetensors(
            br#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]"#,
            &[0; 4],
        ),
    );
    let err = SafetensorsHeader::read(&path).expect_err("bad json");
    assert!(
        matches!(
            err,
            Error::Json {
                kind: FileKind::Safetensors,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("line 1 column"), "{err}");
    assert_names_path(&err, &path);

    let path = write_file(
        dir.path(),
        "shape.safetensors",
        &raw_safetensors(
            br#"{"a": {"dtype": "F32", "shape": "big", "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
    );
    let err = SafetensorsHeader::read(&path).expect_err("bad entry");
    assert!(err.to_string().contains("tensor `a`"), "{err}");
}

#[test]
fn data_offsets_out_of_range_or_inconsistent() {
    let dir = temp_dir();
    let header = br#"{"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 32]}}"#;
    let path = write_file(
        dir.path(),
        "short.safetensors",
        &raw_safetensors(header, &[0; 20]),
    );
    let err = SafetensorsHeader::read(&path).expect_err("data past the end");
    match &err {
        Error::Truncated {
            what, needed: 32, ..
        } => assert_eq!(what, "data of tensor `w`"),
        other => panic!("{other:?}"),
    }
    assert_names_path(&err, &path);

    let header = br#"{"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 30]}}"#;
    let path = write_file(
        dir.path(),
        "span.safetensors",
        &raw_safetensors(header, &[0; 32]),
    );
    let err = SafetensorsHeader::read(&path).expect_err("span mismatch");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("32 bytes"), "{err}");

    let header = br#"{"w": {"dtype": "F16", "shape": [1], "data_offsets": [8, 6]}}"#;
    let path = write_file(
        dir.path(),
        "reversed.safetensors",
        &raw_safetensors(header, &[0; 32]),
    );
    assert!(matches!(
        SafetensorsHeader::read(&path),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn unknown_dtype_is_named() {
    let dir = temp_dir();
    let header = br#"{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}"#;
    let path = write_file(
        dir.path(),
        "dtype.safetensors",
        &raw_safetensors(header, &[0; 16]),
    );
    let err = SafetensorsHeader::read(&path).expect_err("unknown dtype");
    match &err {
        Error::UnknownDtype { dtype, tensor, .. } => {
            assert_eq!((dtype.as_str(), tensor.as_str()), ("F128", "w"))
        }
        other => panic!("{other:?}"),
    }
    assert_names_path(&err, &path);
}

#[test]
fn sharded_folder_with_index() {
    let dir = temp_dir();
    let spec = TinyLlama {
        shards: 3,
        ..TinyLlama::default()
    };
    let written = spec.write(dir.path()).expect("write");
    assert_eq!(written.len(), 3);
    assert_eq!(weight_files(dir.path()).expect("files"), written);
    let headers = read_folder(dir.path()).expect("reads");
    let names: usize = headers.iter().map(|h| h.tensors.len()).sum();
    assert_eq!(names, spec.tensors().len());

    // Without the index, every *.safetensors file in the folder is used.
    std::fs::remove_file(dir.path().join("model.safetensors.index.json")).expect("remove index");
    assert_eq!(weight_files(dir.path()).expect("files"), written);
    assert_eq!(read_folder(dir.path()).expect("reads").len(), 3);
}

#[test]
fn index_that_disagrees_with_its_shards_is_refused() {
    let dir = temp_dir();
    TinyLlama {
        shards: 2,
        ..TinyLlama::default()
    }
    .write(dir.path())
    .expect("write");
    let index_path = dir.path().join("model.safetensors.index.json");
    let index = std::fs::read_to_string(&index_path).expect("read index");

    // A tensor listed in the wrong shard.
    let moved = index.replacen(
        "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
        "\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\"",
        1,
    );
    assert_ne!(moved, index, "the index lists the embedding in shard 1");
    std::fs::write(&index_path, &moved).expect("write");
    let err = read_folder(dir.path()).expect_err("wrong shard");
    assert!(
        err.to_string().contains("model.embed_tokens.weight"),
        "{err}"
    );
    assert_names_path(&err, &index_path);

    // A shard path that leaves the folder.
    let escaping = index.replacen("model-00001-of-00002", "../model-00001-of-00002", 1);
    std::fs::write(&index_path, &escaping).expect("write");
    let err = read_folder(dir.path()).expect_err("path outside the folder");
    assert!(
        matches!(
            err,
            Error::Malformed {
                kind: FileKind::SafetensorsIndex,
                ..
            }
        ),
        "{err:?}"
    );

    // A shard that is missing.
    std::fs::write(&index_path, &index).expect("restore");
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    std::fs::remove_file(&shard).expect("remove shard");
    let err = read_folder(dir.path()).expect_err("missing shard");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_names_path(&err, &shard);

    // An index that is not JSON.
    std::fs::write(&index_path, "{ nope").expect("write");
    let err = read_folder(dir.path()).expect_err("bad index");
    assert!(
        matches!(
            err,
            Error::Json {
                kind: FileKind::SafetensorsIndex,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn duplicate_tensors_across_shards_are_refused() {
    let dir = temp_dir();
    write_safetensors(
        dir.path().join("a.safetensors"),
        &[StTensor::f32("w", &[1], &[1.0])],
    )
    .expect("write");
    write_safetensors(
        dir.path().join("b.safetensors"),
        &[StTensor::f32("w", &[1], &[2.0])],
    )
    .expect("write");
    let err = read_folder(dir.path()).expect_err("duplicate");
    assert!(err.to_string().contains("tensor `w`"), "{err}");
}
