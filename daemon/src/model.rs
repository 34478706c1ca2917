//! Loading the model once and starting the scheduler's workers on it.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::Backend;
use hark_model::backend::BackendError;
use hark_model::hub::{ModelSource, OpenError};
use hark_model::{BackendKind, BackendTask, Checkpoint, LoadError, SpeechModel};
use hark_testkit::synthetic;

use crate::config::{Config, ConfigError};
use crate::scheduler::{Scheduler, SchedulerConfig, batched_stream_factory, stream_factory};
use hark_streaming::batcher::Batcher;

/// Prefix of the `model` setting that builds a checkpoint with random weights in memory, for
/// load tests at the real shapes without the real weights (`synthetic:e2b`, `synthetic:tiny`).
pub const SYNTHETIC_PREFIX: &str = "synthetic:";

/// The model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot load model {name}: {reason}")]
    Load { name: String, reason: LoadError },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(
        "unknown synthetic model `{0}` (use synthetic:e2b or synthetic:tiny; random weights, for load tests)"
    )]
    UnknownSynthetic(String),
}

/// The loaded model, served by the scheduler's workers.
pub struct LoadedModel {
    /// Model name as reported in `ready` and `/healthz`.
    pub name: String,
    /// Backend the model runs on.
    pub backend: BackendKind,
    /// Matmul weight precision.
    pub weights: hark_model::Weights,
    /// The workers.
    pub scheduler: Scheduler,
    /// The decoder batcher the workers' streams share, when batching is on. Declared after the
    /// scheduler: its thread ends once the workers (holding its clients) are gone.
    _batcher: Option<Box<dyn Send + Sync>>,
}

/// How long the batcher waits for the other streams' passes before running a partial batch.
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(3);

/// Load the checkpoint the configuration names and start the workers. Blocking (seconds
/// for a real model): run it on a blocking thread.
pub fn load(cfg: &Config) -> Result<LoadedModel, ModelLoadError> {
    let kind = cfg.backend_kind()?;
    let started = Instant::now();
    let ckpt = checkpoint(cfg)?;
    let scheduler_config = SchedulerConfig {
        workers: cfg.resolved_workers(kind),
        chunk_ms: cfg.chunk_ms,
        shed_partials_after_ms: cfg.shed_partials_after_ms,
        queue_ms: cfg.queue_s.saturating_mul(1000),
    };
    let batch = cfg.resolved_batch(kind);
    let task = Start {
        ckpt,
        kind,
        weights: cfg.weights,
        scheduler: scheduler_config,
        batch,
    };
    let loaded = hark_model::run_on(kind, task)??;
    tracing::info!(
        model = %loaded.name,
        backend = %kind,
        weights = ?loaded.weights,
        workers = loaded.scheduler.workers(),
        batch,
        "model loaded in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(loaded)
}

fn checkpoint(cfg: &Config) -> Result<Checkpoint, ModelLoadError> {
    if let Some(which) = cfg
        .model
        .as_deref()
        .and_then(|m| m.strip_prefix(SYNTHETIC_PREFIX))
    {
        let config = match which {
            "e2b" => synthetic::e2b_config_json(),
            "tiny" => synthetic::tiny_config_json(),
            other => return Err(ModelLoadError::UnknownSynthetic(other.into())),
        };
        let generation = synthetic::e2b_generation_config_json();
        let name = format!("synthetic-{which}");
        return synthetic::checkpoint(&name, &config, Some(&generation), 0)
            .map_err(|reason| ModelLoadError::Load { name, reason });
    }
    let source = ModelSource::from_arg(cfg.model.as_deref()).map_err(OpenError::from)?;
    Ok(source.open()?)
}

struct Start {
    ckpt: Checkpoint,
    kind: BackendKind,
    weights: hark_model::WeightsChoice,
    scheduler: SchedulerConfig,
    batch: usize,
}

impl BackendTask for Start {
    type Output = Result<LoadedModel, ModelLoadError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let weights = self
            .kind
            .weights(self.weights, self.ckpt.tensors.parameters())?;
        let name = self.ckpt.name.clone();
        let model = SpeechModel::<B>::load(self.ckpt, &device, weights).map_err(|reason| {
            ModelLoadError::Load {
                name: name.clone(),
                reason,
            }
        })?;
        let model = Arc::new(model);
        let (factory, batcher) = if self.batch > 1 {
            let batcher = Batcher::start(model.clone(), self.batch, BATCH_WAIT);
            let factory = batched_stream_factory(model, batcher.client());
            (factory, Some(Box::new(batcher) as Box<dyn Send + Sync>))
        } else {
            (stream_factory(model), None)
        };
        let scheduler = Scheduler::start(factory, self.scheduler);
        Ok(LoadedModel {
            name,
            backend: self.kind,
            weights,
            scheduler,
            _batcher: batcher,
        })
    }
}
