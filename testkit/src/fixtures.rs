//! The committed test fixtures (`tests/fixtures/`): checkpoints, clips, golden references.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use hark_model::{Checkpoint, SpeechModel, Weights};

/// `tests/fixtures/` of the repository.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fixture checkpoint directory (`tests/fixtures/models/<name>`).
pub fn model_dir(name: &str) -> PathBuf {
    dir().join("models").join(name)
}

/// A fixture checkpoint loaded on `B`'s default device with `weights`.
pub fn model<B: Backend>(name: &str, weights: impl Into<Weights>) -> SpeechModel<B> {
    let ckpt =
        Checkpoint::open(&model_dir(name)).unwrap_or_else(|e| panic!("fixture model {name}: {e}"));
    SpeechModel::load(ckpt, &Default::default(), weights)
        .unwrap_or_else(|e| panic!("fixture model {name}: {e}"))
}

/// A fixture clip (`tests/fixtures/audio/<name>.wav`: 16 kHz mono 16-bit) as samples in [-1, 1).
pub fn clip(name: &str) -> Vec<f32> {
    let path = dir().join("audio").join(format!("{name}.wav"));
    let mut reader =
        hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16),
        "{}",
        path.display()
    );
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}
