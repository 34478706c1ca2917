//! Bad checkpoints get one clear error, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use hark_model::{Checkpoint, LoadError, SpeechModel, WeightDtype};
use safetensors::tensor::TensorView;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(name)
}

/// Copy a fixture checkpoint into a temporary directory.
fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load(dir: &Path) -> Result<SpeechModel<Flex>, LoadError> {
    let ckpt = Checkpoint::open(dir)?;
    SpeechModel::load(ckpt, &Default::default(), WeightDtype::F32)
}

#[test]
fn missing_unexpected_and_misshapen_tensors_are_listed_together() {
    let dir = copy("e2b-shaped");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    tensors.remove("model.audio_tower.layers.1.lconv1d.linear_end.linear.weight");
    tensors.remove("model.language_model.layers.3.mlp.up_proj.weight");
    let wrong = tensors["model.language_model.norm.weight"].clone();
    let short = TensorView::new(
        wrong.dtype(),
        vec![wrong.shape()[0] / 2],
        &wrong.data()[..wrong.data().len() / 2],
    )
    .unwrap();
    tensors.insert("model.language_model.norm.weight".into(), short);
    let extra = tensors["model.language_model.layers.0.layer_scalar"].clone();
    tensors.insert("model.language_model.layers.99.layer_scalar".into(), extra);
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let err = load(dir.path()).unwrap_err();
    let LoadError::Weights(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        report.missing,
        [
            "model.audio_tower.layers.1.lconv1d.linear_end.linear.weight",
            "model.language_model.layers.3.mlp.up_proj.weight"
        ]
    );
    assert_eq!(
        report.unexpected,
        ["model.language_model.layers.99.layer_scalar"]
    );
    assert_eq!(report.wrong.len(), 1);
    assert_eq!(report.wrong[0].name, "model.language_model.norm.weight");
    let text = err.to_string();
    assert!(
        text.contains("missing tensors (2)") && text.contains("shape [32], expected [64]"),
        "{text}"
    );
}

#[test]
fn broken_files_give_clear_errors() {
    // Truncated weights.
    let dir = copy("e2b-shaped");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    // Garbage instead of weights.
    std::fs::write(&path, b"not a tensor file").unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");

    // Corrupt config.json.
    let dir = copy("e2b-shaped");
    std::fs::write(dir.path().join("config.json"), b"{\"text_config\": [").unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );

    // A config the weights do not match (more layers than stored).
    let dir = copy("e2b-shaped");
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["audio_config"]["num_hidden_layers"] = 4.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model.audio_tower.layers.3."), "{err}");

    // No tokenizer.
    let dir = copy("e2b-shaped");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not found"),
        "{err}"
    );

    // A shard the index names is missing.
    let dir = copy("varied");
    std::fs::remove_file(dir.path().join("model-00003-of-00009.safetensors")).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model-00003-of-00009.safetensors"), "{err}");

    // No such directory, and a directory without weights.
    let err = load(Path::new("/no/such/model")).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    let dir = copy("e2b-shaped");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("neither model.safetensors"), "{err}");
}

#[test]
fn the_vision_tower_is_skipped_and_not_reported() {
    let dir = fixture("with-vision");
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert!(ckpt.config.has_vision_tower);
    assert!(
        ckpt.tensors
            .names()
            .any(|n| n.starts_with("model.vision_tower."))
    );
    let model = SpeechModel::<Flex>::load(ckpt, &Default::default(), WeightDtype::F32).unwrap();
    assert_eq!(model.encoder.config().num_layers, 2);
}
