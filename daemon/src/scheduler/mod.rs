//! The inference scheduler: worker threads that run every stream's model work.
//!
//! Sessions never touch the model. Each opens a [`StreamLink`] to one worker thread: 16 kHz
//! audio goes in through a lock-free SPSC ring, events come back through a tokio channel. A
//! worker serves its streams round-robin, at most `chunk_ms` of audio per stream per turn, so a
//! stream that sends a file at full speed cannot starve live ones. New streams go to the
//! worker with the fewest streams (then the shortest queue).
//!
//! What the worker adds on top of [`hark_streaming::Engine`]'s loop is what a server needs:
//! flushes acknowledged at an exact stream position (the protocol's `flushed`, OpenAI's
//! `commit`), aborting a stream without finishing it (`clear`, a vanished client), the exact
//! backlog of every stream (lag, back-pressure, queue depth) and the busy time of each worker
//! (real-time factor).
//!
//! With batching on (`batch` > 1, the default on a GPU) the streams' decoder passes go through
//! one [`hark_streaming::batcher::Batcher`]: each worker runs its stream's encoder itself and
//! hands the decoder pass to the batcher, which runs the passes of all workers in a decoder
//! phase as one forward pass.

mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use burn::tensor::backend::Backend;
use hark_audio_io::{RingProducer, audio_ring};
use hark_model::{SAMPLE_RATE, SpeechModel};
use hark_streaming::batcher::BatchClient;
use hark_streaming::segment::DecoderExec;
use hark_streaming::{Event, Stream, StreamConfig, StreamError};
use tokio::sync::{Notify, mpsc as tmpsc};

use worker::{Command, Slot};

/// One stream's state machine, with the model backend erased.
pub trait StreamDriver: Send {
    /// Feed 16 kHz mono samples; with `allow_partials` false no partial is decoded.
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError>;
    /// Finalise the open segment and keep listening.
    fn flush(&mut self, out: &mut Vec<Event>);
    /// End of audio: finalise the open segment.
    fn close(&mut self, out: &mut Vec<Event>);
}

impl<B: Backend> StreamDriver for Stream<B>
where
    Stream<B>: Send,
{
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError> {
        Stream::push(self, samples, allow_partials, out)
    }
    fn flush(&mut self, out: &mut Vec<Event>) {
        Stream::flush(self, out)
    }
    fn close(&mut self, out: &mut Vec<Event>) {
        Stream::close(self, out)
    }
}

/// Makes a stream's state machine. Runs the prompt-prefix prefill, so call it off the async
/// threads.
pub type StreamFactory =
    Arc<dyn Fn(StreamConfig) -> Result<Box<dyn StreamDriver>, StreamError> + Send + Sync>;

/// The factory for streams of `model`.
pub fn stream_factory<B: Backend>(model: Arc<SpeechModel<B>>) -> StreamFactory
where
    Stream<B>: Send,
    SpeechModel<B>: Send + Sync,
{
    Arc::new(move |cfg| {
        Stream::new(model.clone(), cfg).map(|s| Box::new(s) as Box<dyn StreamDriver>)
    })
}

/// The factory for streams of `model` whose decoder passes go through a shared batcher.
pub fn batched_stream_factory<B: Backend>(
    model: Arc<SpeechModel<B>>,
    batcher: BatchClient<B>,
) -> StreamFactory
where
    Stream<B>: Send,
    SpeechModel<B>: Send + Sync,
    BatchClient<B>: Send + Sync,
{
    Arc::new(move |cfg| {
        Stream::with_exec(model.clone(), cfg, DecoderExec::Batched(batcher.clone()))
            .map(|s| Box::new(s) as Box<dyn StreamDriver>)
    })
}

/// Tuning of the workers.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Worker threads.
    pub workers: usize,
    /// Most audio one stream processes per turn.
    pub chunk_ms: u32,
    /// Backlog beyond which a stream skips partial hypotheses (finals are never skipped).
    pub shed_partials_after_ms: u32,
    /// Capacity of each stream's audio queue; a client further ahead than this waits.
    pub queue_ms: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            chunk_ms: 200,
            shed_partials_after_ms: 600,
            queue_ms: 60_000,
        }
    }
}

/// What a stream reports to its session, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An engine event. `position` is the samples processed when it was emitted, `backlog`
    /// the samples queued behind them.
    Event {
        event: Event,
        position: u64,
        backlog: u64,
    },
    /// Everything pushed before [`StreamLink::flush`] returned `token` has been processed and
    /// the open segment (if any) finalised; its events came before this.
    Flushed { token: u64, position: u64 },
    /// The stream ended after [`StreamLink::close`]; nothing follows.
    Finished { position: u64 },
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

struct Worker {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WorkerStats>,
}

/// The worker threads and how streams are spread over them.
pub struct Scheduler {
    workers: Vec<Worker>,
    factory: StreamFactory,
    config: SchedulerConfig,
    next_id: AtomicU64,
}

/// A stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the stream: {0}")]
    Stream(#[from] StreamError),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

impl Scheduler {
    /// Start `config.workers` worker threads (at least one).
    pub fn start(factory: StreamFactory, config: SchedulerConfig) -> Scheduler {
        let count = config.workers.max(1);
        let workers = (0..count)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let stats = Arc::new(WorkerStats::default());
                let worker_stats = stats.clone();
                let cfg = config.clone();
                let thread = thread::Builder::new()
                    .name(format!("harkd-worker-{i}"))
                    .spawn(move || worker::run(rx, cfg, worker_stats))
                    .expect("spawn a worker thread");
                Worker {
                    commands: tx,
                    thread: Some(thread),
                    stats,
                }
            })
            .collect();
        Scheduler {
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
        let thread = worker
            .thread
            .as_ref()
            .map(|t| t.thread().clone())
            .ok_or(OpenError::ShuttingDown)?;
        worker
            .commands
            .send(Command::Open(Box::new(slot)))
            .map_err(|_| OpenError::ShuttingDown)?;
        thread.unpark();
        Ok(StreamLink {
            id,
            worker: index,
            audio: Some(producer),
            commands: worker.commands.clone(),
            thread,
            shared,
            events: rx,
            pushed: 0,
            next_token: 0,
            ended: false,
        })
    }
}

impl Drop for Scheduler {
    /// Finalises every stream still served, then joins the workers.
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

/// State the worker and the session share for one stream.
#[derive(Debug, Default)]
struct LinkShared {
    /// Samples the worker has processed.
    processed: AtomicU64,
    /// Signalled whenever the worker takes audio out of the queue.
    room: Notify,
}

/// The queue was closed: the worker dropped the stream (it failed or was aborted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is no longer served")]
pub struct LinkClosed;

/// A session's end of one stream. Dropping it before the stream finished aborts the stream
/// (no more model work is spent on it).
pub struct StreamLink {
    id: u64,
    worker: usize,
    /// `None` once closed.
    audio: Option<RingProducer>,
    commands: mpsc::Sender<Command>,
    thread: Thread,
    shared: Arc<LinkShared>,
    events: tmpsc::UnboundedReceiver<Output>,
    pushed: u64,
    next_token: u64,
    /// The worker is done with the stream (finished, failed or gone).
    ended: bool,
}

impl StreamLink {
    /// Index of the worker serving the stream.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Samples pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Samples the worker has processed so far.
    pub fn processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// Samples pushed but not yet processed.
    pub fn backlog(&self) -> u64 {
        self.pushed.saturating_sub(self.processed())
    }

    /// Queue 16 kHz mono samples. Never drops audio: when the queue is full (the worker is
    /// a whole queue behind) it waits for room, which stops the session reading its socket
    /// and so slows the client down through TCP.
    pub async fn push(&mut self, mut samples: &[f32]) -> Result<(), LinkClosed> {
        let Some(audio) = self.audio.as_mut() else {
            return Err(LinkClosed);
        };
        while !samples.is_empty() {
            if audio.is_abandoned() {
                return Err(LinkClosed);
            }
            let room = audio.vacant().min(samples.len());
            if room > 0 {
                let n = audio.push(&samples[..room]);
                self.pushed += n as u64;
                samples = &samples[n..];
                self.thread.unpark();
                continue;
            }
            // The timeout covers a worker that died without notifying.
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.shared.room.notified()).await;
        }
        Ok(())
    }

    /// Finalise the open segment once everything pushed so far is processed. The matching
    /// [`Output::Flushed`] carries the returned token.
    pub fn flush(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let _ = self.commands.send(Command::Flush {
            id: self.id,
            at: self.pushed,
            token,
        });
        self.thread.unpark();
        token
    }

    /// End of audio: the stream is finalised after the queued audio, then
    /// [`Output::Finished`] arrives.
    pub fn close(&mut self) {
        drop(self.audio.take());
        self.thread.unpark();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.audio.is_none()
    }

    /// An output that is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<Output> {
        if self.ended {
            return None;
        }
        match self.events.try_recv() {
            Ok(out) => {
                self.ended = matches!(out, Output::Finished { .. });
                Some(out)
            }
            Err(tmpsc::error::TryRecvError::Empty) => None,
            Err(tmpsc::error::TryRecvError::Disconnected) => {
                self.ended = true;
                None
            }
        }
    }

    /// The next output; `None` once the stream has ended (after `Finished`, an error, or an
    /// abort).
    pub async fn recv(&mut self) -> Option<Output> {
        if self.ended {
            return None;
        }
        let out = self.events.recv().await;
        if matches!(out, None | Some(Output::Finished { .. })) {
            self.ended = true;
        }
        out
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.commands.send(Command::Abort { id: self.id });
        }
        drop(self.audio.take());
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests;
