//! The default model compiled into Hark: a small demonstration model of the Gemma 4
//! architecture trained on synthetic English speech (`model/demo-model/README.md`), so a fresh
//! install transcribes without downloading anything. Real use wants `google/gemma-4-E2B-it`.

use crate::checkpoint::{Checkpoint, EmbeddedCheckpoint};
use crate::error::LoadError;

#[cfg(hark_demo_model)]
const DEMO: EmbeddedCheckpoint = EmbeddedCheckpoint {
    name: "hark-demo-en",
    config: include_str!("../demo-model/config.json"),
    generation_config: Some(include_str!("../demo-model/generation_config.json")),
    processor_config: Some(include_str!("../demo-model/processor_config.json")),
    tokenizer: include_bytes!("../demo-model/tokenizer.json"),
    weights: include_bytes!("../demo-model/model.safetensors"),
};

/// The embedded model's files, when this build has them.
pub fn default_model() -> Option<&'static EmbeddedCheckpoint> {
    #[cfg(hark_demo_model)]
    {
        Some(&DEMO)
    }
    #[cfg(not(hark_demo_model))]
    {
        None
    }
}

/// Open the embedded default model.
pub fn default_checkpoint() -> Result<Checkpoint, LoadError> {
    match default_model() {
        Some(e) => Checkpoint::open_embedded(e),
        None => Err(LoadError::Other(
            "this build embeds no default model (model/demo-model/ was missing when it was built); \
             pass --model DIR or a Hugging Face repo id such as google/gemma-4-E2B-it"
                .into(),
        )),
    }
}
