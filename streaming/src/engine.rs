//! The serving engine: worker threads that run every stream's model work. harkd's sessions
//! (every protocol) feed it and only translate its outputs into messages; hark's streaming
//! paths (`transcribe --stream-chunk-ms`, `eval`, `bench --stream`) feed it a file.
//!
//! A front end opens a [`StreamLink`] to one worker thread: 16 kHz audio goes in through a
//! lock-free SPSC ring, [`Output`]s come back through a channel. A worker serves its streams
//! round-robin, at most `chunk_ms` of audio per stream per turn (the turn is in `engine/worker.rs`),
//! so a stream sent at full speed cannot starve live ones. New streams go to the worker with
//! the fewest streams (then the shortest queue).
//!
//! Besides running the streams, the engine gives a server what it needs: flushes acknowledged
//! at an exact stream position ([`Output::Flushed`]: the native `flushed`, OpenAI's `commit`),
//! aborting a stream without finishing it (dropping its link), the exact backlog of every
//! stream (lag, back-pressure, queue depth), partials skipped for a stream behind real time
//! (finals never are, and do not depend on partials), and each worker's counters
//! ([`WorkerStats`]: busy time for the real-time factor).
//!
//! With batching on (`batch` > 1, the default on a GPU) the streams' decoder passes go through
//! one [`Batcher`](crate::batcher::Batcher) (see [`batched_stream_factory`]): each worker runs
//! its streams' encoders itself and hands decoder passes to the batcher, which runs the
//! passes of all workers in a decoder phase as one forward pass.

mod driver;
mod link;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use hark_audio_io::audio_ring;
use hark_model::SAMPLE_RATE;
use tokio::sync::mpsc as tmpsc;

pub use driver::{StreamDriver, StreamFactory, batched_stream_factory, stream_factory};
pub use link::{LinkClosed, Output, StreamLink};

use link::LinkShared;
use worker::{Command, Slot};

use crate::stream::{StreamConfig, StreamError};

/// Tuning of the workers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Most audio one stream processes per turn.
    pub chunk_ms: u32,
    /// Backlog beyond which a stream skips partial hypotheses (finals are never skipped).
    pub shed_partials_after_ms: u32,
    /// Capacity of each stream's audio queue; a client further ahead than this waits.
    pub queue_ms: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            chunk_ms: 200,
            shed_partials_after_ms: 600,
            queue_ms: 60_000,
        }
    }
}

/// Counters of one worker, read by `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Streams assigned to the worker.
    pub streams: AtomicUsize,
    /// Samples queued in the worker's streams, not yet processed.
    pub queued_samples: AtomicU64,
    /// Samples processed, all streams together.
    pub processed_samples: AtomicU64,
    /// Nanoseconds spent processing (the rest of the time the worker waits for audio).
    pub busy_ns: AtomicU64,
    /// Partial hypotheses skipped because a stream was behind.
    pub shed_partials: AtomicU64,
    /// Streams closed by a panic in their state machine.
    pub panics: AtomicU64,
}

/// A stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the stream: {0}")]
    Stream(#[from] StreamError),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

struct Worker {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WorkerStats>,
}

/// The worker threads and how streams are spread over them. Dropping it finalises every
/// stream still served, then joins the workers.
pub struct Engine {
    workers: Vec<Worker>,
    factory: StreamFactory,
    config: EngineConfig,
    next_id: AtomicU64,
}

impl Engine {
    /// Start `config.workers` worker threads (at least one) serving streams made by `factory`.
    pub fn start(factory: StreamFactory, config: EngineConfig) -> Engine {
        let count = config.workers.max(1);
        let workers = (0..count)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let stats = Arc::new(WorkerStats::default());
                let worker_stats = stats.clone();
                let cfg = config.clone();
                let thread = thread::Builder::new()
                    .name(format!("hark-engine-{i}"))
                    .spawn(move || worker::run(rx, cfg, worker_stats))
                    .expect("spawn an engine worker thread");
                Worker {
                    commands: tx,
                    thread: Some(thread),
                    stats,
                }
            })
            .collect();
        Engine {
            workers,
            factory,
            config,
            next_id: AtomicU64::new(0),
        }
    }

    /// Counters of each worker, in worker order.
    pub fn worker_stats(&self) -> impl Iterator<Item = &WorkerStats> {
        self.workers.iter().map(|w| &*w.stats)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Open a stream on the least-loaded worker. Runs the model's prompt prefill: call it from
    /// a blocking thread.
    pub fn open(&self, config: StreamConfig) -> Result<StreamLink, OpenError> {
        let driver = (self.factory)(config)?;
        let (index, worker) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| {
                (
                    w.stats.streams.load(Ordering::Relaxed),
                    w.stats.queued_samples.load(Ordering::Relaxed),
                )
            })
            .expect("at least one worker");
        let thread = worker
            .thread
            .as_ref()
            .map(|t| t.thread().clone())
            .ok_or(OpenError::ShuttingDown)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let capacity = (self.config.queue_ms as usize * SAMPLE_RATE as usize / 1000).max(1);
        let (producer, consumer) = audio_ring(capacity);
        let shared = Arc::new(LinkShared::default());
        let (tx, rx) = tmpsc::unbounded_channel();
        worker.stats.streams.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::new(
            id,
            driver,
            consumer,
            shared.clone(),
            tx,
            worker.stats.clone(),
        );
        worker
            .commands
            .send(Command::Open(Box::new(slot)))
            .map_err(|_| OpenError::ShuttingDown)?;
        thread.unpark();
        tracing::debug!(stream = id, worker = index, "engine: stream opened");
        Ok(StreamLink::new(
            id,
            index,
            producer,
            worker.commands.clone(),
            thread,
            shared,
            rx,
        ))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.commands.send(Command::Shutdown);
            if let Some(t) = &w.thread {
                t.thread().unpark();
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}
