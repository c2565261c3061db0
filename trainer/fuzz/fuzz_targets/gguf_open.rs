//! Any bytes given to the GGUF reader, and to what the runtime builds from a file it accepts
//! (configuration, tokenizer, weights' dequantisation), give a value or an error, never a
//! panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainer::GgufFile;
use trainer::model::{DecoderConfig, WeightFiles};
use trainer::tokenizer::TextTokenizer;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("trainer-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.gguf");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(file) = GgufFile::open(&path) else {
        return;
    };
    let _ = TextTokenizer::from_gguf(&file);
    let files = WeightFiles::gguf(file);
    let Ok(config) = files.config() else {
        return;
    };
    let Ok(config) = DecoderConfig::from_hf(&config, files.path()) else {
        return;
    };
    // Dequantise the small tensors only: the fuzzer can declare huge shapes.
    if let Ok(Some(t)) = files.get("model.norm.weight") {
        let _ = files.f32s("model.norm.weight", &[t.shape.iter().product()]);
    }
    let _ = config.rope_inv_freq();
});
