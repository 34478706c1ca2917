//! The flags every in-process command shares: which model, on which backend, in which precision.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use hark_model::{BackendKind, Checkpoint, SpeechModel, WeightsChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Flex,
    Ndarray,
    Cuda,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory (Hugging Face layout) or repo id resolved from the local Hugging Face
    /// cache (e.g. google/gemma-4-E2B-it). Without it, the embedded demonstration model.
    #[arg(long, env = "HARK_MODEL")]
    pub model: Option<String>,
    /// Where to run the model.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// CPU backend (flex is the fast one); `cuda` is implied by `--device cuda`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Precision of matmul weights: auto, f32, f16, bf16, q8, q4 (auto: q8 on the CPU and f16
    /// on a GPU for large models, f32 for small ones).
    #[arg(long, default_value_t = WeightsChoice::Auto)]
    pub weights: WeightsChoice,
}

impl ModelArgs {
    pub fn backend(&self) -> Result<BackendKind> {
        Ok(match (self.device, self.backend) {
            (DeviceArg::Cuda, None | Some(BackendArg::Cuda)) => BackendKind::Cuda,
            (DeviceArg::Cuda, Some(other)) => {
                bail!("--device cuda cannot use the {other:?} backend")
            }
            (DeviceArg::Cpu, None | Some(BackendArg::Flex)) => BackendKind::Flex,
            (DeviceArg::Cpu, Some(BackendArg::Ndarray)) => BackendKind::NdArray,
            (DeviceArg::Cpu, Some(BackendArg::Cuda)) => BackendKind::Cuda,
        })
    }

    /// Open the checkpoint the flags name.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        match &self.model {
            Some(arg) => {
                let dir = hark_model::hub::resolve(arg)?;
                Checkpoint::open(&dir).with_context(|| format!("cannot load model {arg}"))
            }
            None => Ok(hark_model::embedded::default_checkpoint()?),
        }
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
