//! `inspect_model` on tiny GGUF files and safetensors folders.

use std::collections::BTreeMap;

use trainer::loading::safetensors::Dtype;
use trainer::test_support::{GgufWriter, TinyGguf, TinyLlama, tiny_llama_gguf};
use trainer::{Error, ModelFormat, inspect_model};

use crate::{temp_dir, write_file};

/// Parameters of a Llama by its shape, computed by hand (independent of the writers).
fn llama_parameters(
    vocab: u64,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
    tied: bool,
) -> u64 {
    let kv = kv_heads * (hidden / heads);
    let attention = hidden * hidden + kv * hidden + kv * hidden + hidden * hidden;
    let mlp = 3 * hidden * ffn;
    let norms = 2 * hidden;
    let embeddings = if tied {
        vocab * hidden
    } else {
        2 * vocab * hidden
    };
    embeddings + layers * (attention + mlp + norms) + hidden
}

#[test]
fn tiny_safetensors_folder() {
    let dir = temp_dir();
    let spec = TinyLlama::default();
    let files = spec.write(dir.path()).expect("write");
    let info = inspect_model(dir.path()).expect("inspects");

    let expected = llama_parameters(64, 16, 2, 4, 2, 32, true);
    assert_eq!(
        expected,
        64 * 16 + 2 * (256 + 128 + 128 + 256 + 3 * 512 + 32) + 16
    );
    assert_eq!(info.parameters, expected);
    assert_eq!(spec.parameters(), expected);
    assert_eq!(info.format, ModelFormat::Safetensors);
    assert_eq!(info.name, None);
    assert_eq!(info.architecture, "llama");
    assert!(info.is_supported_architecture());
    assert_eq!(info.quantization, "F32");
    assert_eq!(
        info.tensor_types,
        BTreeMap::from([("F32".to_owned(), expected)])
    );
    assert_eq!(info.context_length, Some(128));
    assert_eq!(
        (
            info.layers,
            info.hidden_size,
            info.attention_heads,
            info.kv_heads,
            info.vocab_size
        ),
        (Some(2), Some(16), Some(4), Some(2), Some(64))
    );
    let size: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert_eq!(info.file_size, size);
    assert_eq!(info.files, files);

    // The folder's config.json or weight file lead to the same model.
    assert_eq!(
        inspect_model(&dir.path().join("config.json")).expect("config"),
        info
    );
    assert_eq!(inspect_model(&files[0]).expect("weights"), info);

    let json = serde_json::to_value(&info).expect("serializes");
    assert_eq!(json["format"], "safetensors");
    assert_eq!(json["parameters"], expected);
    let back: trainer::ModelInfo = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, info);
}

#[test]
fn bf16_untied_sharded_folder() {
    let dir = temp_dir();
    let spec = TinyLlama {
        tie_embeddings: false,
        dtype: Dtype::BF16,
        shards: 2,
        kv_heads: 4,
        ..TinyLlama::default()
    };
    let files = spec.write(dir.path()).expect("write");
    let info = inspect_model(dir.path()).expect("inspects");
    let expected = llama_parameters(64, 16, 2, 4, 4, 32, false);
    assert_eq!(info.parameters, expected);
    assert_eq!(info.quantization, "BF16");
    let norms = 2 * 2 * 16 + 16;
    assert_eq!(
        info.tensor_types,
        BTreeMap::from([
            ("BF16".to_owned(), expected - norms),
            ("F32".to_owned(), norms)
        ])
    );
    assert_eq!(info.files, files);
    assert_eq!(info.files.len(), 2);
    let size: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert_eq!(info.file_size, size);
}

#[test]
fn tiny_gguf() {
    let dir = temp_dir();
    let spec = TinyGguf::default();
    let path = dir.path().join("tiny.gguf");
    tiny_llama_gguf(&spec).write(&path).expect("write");
    let info = inspect_model(&path).expect("inspects");

    let expected = llama_parameters(48, 32, 2, 4, 2, 64, true);
    assert_eq!(info.parameters, expected);
    assert_eq!(spec.parameters(), expected);
    assert_eq!(info.format, ModelFormat::Gguf);
    assert_eq!(info.name.as_deref(), Some("Tiny Llama"));
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.quantization, "Q8_0", "from general.file_type 7");
    let f16 = 2 * (32 * 32 * 2 + 32 * 16 * 2);
    let f32 = 2 * 2 * 32 + 32;
    assert_eq!(
        info.tensor_types,
        BTreeMap::from([
            ("F16".to_owned(), f16),
            ("F32".to_owned(), f32),
            ("Q8_0".to_owned(), expected - f16 - f32),
        ])
    );
    assert_eq!(info.context_length, Some(256));
    assert_eq!(
        (
            info.layers,
            info.hidden_size,
            info.attention_heads,
            info.kv_heads,
            info.vocab_size
        ),
        (Some(2), Some(32), Some(4), Some(2), Some(48))
    );
    assert_eq!(
        info.file_size,
        std::fs::metadata(&path).expect("stat").len()
    );
    assert_eq!(info.files, std::slice::from_ref(&path));

    // Any file name works when the content is GGUF.
    let renamed = dir.path().join("model.bin");
    std::fs::copy(&path, &renamed).expect("copy");
    assert_eq!(
        inspect_model(&renamed).expect("inspects").parameters,
        expected
    );
}

#[test]
fn gguf_without_file_type_reports_the_dominant_type_and_any_architecture() {
    let dir = temp_dir();
    let path = dir.path().join("other.gguf");
    GgufWriter::new()
        .meta_str("general.architecture", "gpt2")
        .meta_u32("gpt2.context_length", 1024)
        .f32_tensor("a", &[4], &[0.0; 4])
        .f16_tensor("b", &[8, 2], &[0.0; 16])
        .write(&path)
        .expect("write");
    let info = inspect_model(&path).expect("inspects");
    assert_eq!(info.architecture, "gpt2");
    assert!(!info.is_supported_architecture());
    assert_eq!(info.quantization, "F16");
    assert_eq!(info.parameters, 20);
    assert_eq!(info.context_length, Some(1024));
    assert_eq!(
        (info.layers, info.vocab_size, info.kv_heads),
        (None, None, None)
    );
}

#[test]
fn gguf_without_architecture_is_an_error_naming_the_key() {
    let dir = temp_dir();
    let path = dir.path().join("noarch.gguf");
    GgufWriter::new()
        .f32_tensor("a", &[1], &[0.0])
        .write(&path)
        .expect("write");
    match inspect_model(&path).expect_err("no architecture") {
        Error::MissingMetadata { keys, .. } => assert_eq!(keys, ["general.architecture"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn split_gguf_is_counted_whole() {
    let dir = temp_dir();
    let part = |no: u16, name: &str| {
        GgufWriter::new()
            .meta_str("general.architecture", "llama")
            .meta("split.no", trainer::test_support::GgufValue::U16(no))
            .meta("split.count", trainer::test_support::GgufValue::U16(2))
            .f32_tensor(name, &[8], &[0.0; 8])
            .write(dir.path().join(format!("m-{:05}-of-00002.gguf", no + 1)))
            .expect("write");
    };
    part(0, "a");
    part(1, "b");
    let info = inspect_model(&dir.path().join("m-00001-of-00002.gguf")).expect("inspects");
    assert_eq!(info.parameters, 16);
    assert_eq!(info.files.len(), 2);
    let second = inspect_model(&dir.path().join("m-00002-of-00002.gguf")).expect("inspects");
    assert_eq!(second, info);
}

#[test]
fn things_that_are_not_models() {
    let dir = temp_dir();
    let text = write_file(dir.path(), "notes.txt", b"hello");
    assert!(matches!(inspect_model(&text), Err(Error::NotAModel { .. })));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = inspect_model(&empty).expect_err("no config.json");
    assert!(matches!(err, Error::NotAModel { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");

    // config.json without weights.
    std::fs::write(empty.join("config.json"), r#"{"model_type": "llama"}"#).expect("write");
    let err = inspect_model(&empty).expect_err("no weights");
    assert!(err.to_string().contains("no .safetensors"), "{err}");

    // Unreadable config.json names the file.
    std::fs::write(empty.join("config.json"), "{ model_type: llama }").expect("write");
    let err = inspect_model(&empty).expect_err("bad config");
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    assert!(err.to_string().ends_with("config.json"), "{err}");

    let missing = dir.path().join("nowhere.gguf");
    assert!(matches!(inspect_model(&missing), Err(Error::Io { .. })));
    let bad = write_file(dir.path(), "bad.gguf", b"PK\x03\x04 not gguf");
    assert!(matches!(inspect_model(&bad), Err(Error::BadMagic { .. })));
}
