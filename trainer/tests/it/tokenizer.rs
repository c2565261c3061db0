//! Tokenizers built from GGUF metadata, for the vocabulary kinds llama.cpp has. The byte-level
//! BPE kind is checked against llama.cpp itself on the default model (`llama_cpp.rs`); here,
//! small hand-made vocabularies whose right answers are known.

use trainer::GgufFile;
use trainer::test_support::{GgufValue, GgufWriter};
use trainer::tokenizer::TextTokenizer;

use crate::temp_dir;

/// A SentencePiece-style vocabulary (`tokenizer.ggml.model = "llama"`, as in Llama 2 and
/// Mistral): merges are implied by the scores, spaces become "▁", unknown bytes fall back to
/// `<0xNN>` tokens.
fn sentencepiece_gguf() -> GgufWriter {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let pieces = [
        "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "llo", "ello", "▁hello", "or", "orl",
        "orld", "world", "▁world",
    ];
    for p in pieces {
        tokens.push(p.to_owned());
        types.push(1);
    }
    let n = tokens.len();
    GgufWriter::new()
        .meta_str("general.architecture", "llama")
        .meta_str("tokenizer.ggml.model", "llama")
        .meta("tokenizer.ggml.tokens", GgufValue::strings(tokens))
        .meta("tokenizer.ggml.token_type", GgufValue::i32s(types))
        // Longer pieces score higher, so they are merged last and survive.
        .meta(
            "tokenizer.ggml.scores",
            GgufValue::f32s((0..n).map(|i| -(n as f32) + i as f32)),
        )
        .meta_u32("tokenizer.ggml.bos_token_id", 1)
        .meta_u32("tokenizer.ggml.eos_token_id", 2)
        .meta_u32("tokenizer.ggml.unknown_token_id", 0)
        .meta("tokenizer.ggml.add_bos_token", GgufValue::Bool(true))
}

#[test]
fn sentencepiece_vocabularies_merge_by_score_and_fall_back_to_bytes() {
    let dir = temp_dir();
    let path = dir.path().join("spm.gguf");
    sentencepiece_gguf().write(&path).expect("write");
    let file = GgufFile::open(&path).expect("open");
    let tokenizer = TextTokenizer::from_gguf(&file).expect("tokenizer");
    let inner = tokenizer.inner();
    let id = |t: &str| inner.token_to_id(t).expect("in the vocabulary");

    let ids = tokenizer.encode("hello world").expect("encode");
    assert_eq!(ids, vec![id("<s>"), id("▁hello"), id("▁world")]);
    assert_eq!(tokenizer.decode(&ids).expect("decode"), "hello world");

    // "é" is not in the vocabulary: its two UTF-8 bytes come back as byte tokens.
    let ids = tokenizer.encode("hello é").expect("encode");
    assert_eq!(
        ids,
        vec![id("<s>"), id("▁hello"), id("▁"), id("<0xC3>"), id("<0xA9>")]
    );
    assert_eq!(tokenizer.decode(&ids).expect("decode"), "hello é");
    assert!(tokenizer.is_stop(id("</s>")));
}

#[test]
fn an_unknown_tokenizer_model_is_named() {
    let dir = temp_dir();
    let path = dir.path().join("rwkv.gguf");
    GgufWriter::new()
        .meta_str("general.architecture", "llama")
        .meta_str("tokenizer.ggml.model", "rwkv")
        .meta("tokenizer.ggml.tokens", GgufValue::strings(["a", "b"]))
        .write(&path)
        .expect("write");
    let file = GgufFile::open(&path).expect("open");
    let err = TextTokenizer::from_gguf(&file).err().expect("unsupported");
    let message = err.to_string();
    assert!(message.contains("\"rwkv\""), "{message}");
    assert!(message.ends_with("rwkv.gguf"), "{message}");
}
