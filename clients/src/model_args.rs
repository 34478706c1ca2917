//! The flags every in-process command shares: which model, on which backend, in which precision.
//! The option types and their resolution are hark-model's, shared with harkd's settings.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use hark_model::backend::{BackendName, Device};
use hark_model::hub::ModelSource;
use hark_model::{BackendKind, Checkpoint, SpeechModel, WeightsChoice};

/// The backend name flag's type (`hark bench --backend` takes it too).
pub type BackendArg = BackendName;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory (Hugging Face layout), .gguf file, or repo id resolved from the local
    /// Hugging Face cache (e.g. google/gemma-4-E2B-it). Without it, the embedded
    /// demonstration model.
    #[arg(long, env = "HARK_MODEL")]
    pub model: Option<String>,
    /// Where to run the model.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// CPU backend (flex is the fast one); `cuda` is implied by `--device cuda`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendName>,
    /// Precision of matmul weights: auto, f32, f16, bf16, q8, q4 (auto: q8 on the CPU and f16
    /// on a GPU for large models, f32 for small ones).
    #[arg(long, default_value_t = WeightsChoice::Auto)]
    pub weights: WeightsChoice,
}

impl ModelArgs {
    pub fn backend(&self) -> Result<BackendKind> {
        Ok(BackendKind::select(self.device, self.backend)?)
    }

    /// Open the checkpoint the flags name.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(ModelSource::from_arg(self.model.as_deref())?.open()?)
    }

    /// Load the model onto `device` of backend `B`.
    pub fn load<B: Backend>(
        &self,
        kind: BackendKind,
        device: &B::Device,
    ) -> Result<SpeechModel<B>> {
        let started = Instant::now();
        let ckpt = self.checkpoint()?;
        let weights = kind.weights(self.weights, ckpt.tensors.parameters())?;
        let name = ckpt.name.clone();
        let model = SpeechModel::<B>::load(ckpt, device, weights)
            .with_context(|| format!("cannot load model {name}"))?;
        tracing::info!(
            "loaded {name} on {kind} ({weights} weights) in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        Ok(model)
    }
}
