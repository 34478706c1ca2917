//! One engine thread driving many streams.
//!
//! Each stream has a 16 kHz SPSC ring (`hark-audio-io`) between its producer (socket reader,
//! microphone, file) and the engine thread, and an [`EventSink`] for what it emits. The thread
//! visits the streams round-robin, giving each at most one chunk of audio per turn, so a busy
//! stream cannot starve the others. A stream whose backlog grows beyond real time skips its
//! partial hypotheses (finals are never skipped) until it has caught up. A panic while serving a
//! stream closes that stream with an error event and touches no other.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use burn::tensor::backend::Backend;
use hark_audio_io::{RingConsumer, RingProducer, audio_ring};
use hark_model::{SAMPLE_RATE, SpeechModel};

use crate::events::{ErrorCode, Event};
use crate::stream::{Stream, StreamConfig, StreamError};

/// An event with the stream's state when it was emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event: Event,
    /// Seconds of audio received by the engine for this stream so far.
    pub audio_s: f64,
    /// Seconds of audio waiting in the stream's ring (how far behind the engine is).
    pub backlog_s: f64,
}

/// Where a stream's events go. `false` means the receiver is gone: the stream is dropped.
pub trait EventSink: Send + 'static {
    fn emit(&mut self, event: Emitted) -> bool;
}

impl EventSink for mpsc::Sender<Emitted> {
    fn emit(&mut self, event: Emitted) -> bool {
        self.send(event).is_ok()
    }
}

impl<F: FnMut(Emitted) -> bool + Send + 'static> EventSink for F {
    fn emit(&mut self, event: Emitted) -> bool {
        self(event)
    }
}

/// Tuning of the engine thread.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Audio a stream may process per turn.
    pub chunk_ms: u32,
    /// Backlog beyond which partials are skipped.
    pub shed_partials_after_ms: u32,
    /// Capacity of each stream's ring.
    pub ring_ms: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            chunk_ms: 320,
            shed_partials_after_ms: 600,
            ring_ms: 60_000,
        }
    }
}

enum Command {
    Open {
        id: u64,
        stream: Box<dyn StreamDriver>,
        audio: RingConsumer,
        sink: Box<dyn EventSink>,
    },
    Flush {
        id: u64,
    },
    Shutdown,
}

/// A stream with its model type erased, so one engine API serves every backend.
trait StreamDriver: Send {
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), crate::StreamError>;
    fn flush(&mut self, out: &mut Vec<Event>);
    fn close(&mut self, out: &mut Vec<Event>);
    fn position(&self) -> u64;
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
    ) -> Result<(), crate::StreamError> {
        Stream::push(self, samples, allow_partials, out)
    }
    fn flush(&mut self, out: &mut Vec<Event>) {
        Stream::flush(self, out)
    }
    fn close(&mut self, out: &mut Vec<Event>) {
        Stream::close(self, out)
    }
    fn position(&self) -> u64 {
        Stream::position(self)
    }
}

/// Makes a stream of the engine's model (whose backend type is erased here).
type StreamFactory =
    Box<dyn Fn(StreamConfig) -> Result<Box<dyn StreamDriver>, crate::StreamError> + Send + Sync>;

/// Counters shared with the engine's owner.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Streams being served.
    pub streams: AtomicUsize,
    /// Samples processed, all streams together.
    pub samples: AtomicU64,
    /// Partial hypotheses skipped because a stream was behind.
    pub shed_partials: AtomicU64,
    /// Streams closed by a panic.
    pub panics: AtomicU64,
}

/// Handle to an engine thread. Dropping it shuts the thread down after finalising every
/// stream it serves.
pub struct Engine {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    config: EngineConfig,
    stats: Arc<EngineStats>,
    new_stream: StreamFactory,
}

/// The producer side of one stream.
pub struct StreamHandle {
    id: u64,
    /// `None` only while dropping.
    audio: Option<RingProducer>,
    commands: mpsc::Sender<Command>,
    engine: thread::Thread,
}

impl StreamHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue 16 kHz mono samples; never blocks. Returns how many fit (the rest were dropped and
    /// counted: the ring holds a minute of audio by default, so only a stuck engine drops).
    pub fn push(&mut self, samples: &[f32]) -> usize {
        let n = self.audio.as_mut().map_or(0, |a| a.push(samples));
        self.engine.unpark();
        n
    }

    /// Finalise the open segment once the audio queued so far is processed.
    pub fn flush(&self) {
        let _ = self.commands.send(Command::Flush { id: self.id });
        self.engine.unpark();
    }

    /// End of audio: the stream is finalised after the queued audio and then dropped.
    pub fn close(self) {}
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        // Close the ring first, so the woken engine sees the end of the audio.
        drop(self.audio.take());
        self.engine.unpark();
    }
}

impl Engine {
    /// Start an engine thread serving streams of `model`.
    pub fn start<B: Backend>(model: Arc<SpeechModel<B>>, config: EngineConfig) -> Engine
    where
        Stream<B>: Send,
        SpeechModel<B>: Send + Sync,
    {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(EngineStats::default());
        let worker_stats = stats.clone();
        let worker_config = config.clone();
        let thread = thread::Builder::new()
            .name("hark-engine".into())
            .spawn(move || run(rx, worker_config, worker_stats))
            .expect("spawn the engine thread");
        let new_stream = Box::new(move |cfg: StreamConfig| {
            Stream::new(model.clone(), cfg).map(|s| Box::new(s) as Box<dyn StreamDriver>)
        });
        Engine {
            commands: tx,
            thread: Some(thread),
            next_id: AtomicU64::new(0),
            config,
            stats,
            new_stream,
        }
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Open a stream; its events go to `sink`.
    pub fn open(
        &self,
        config: StreamConfig,
        sink: impl EventSink,
    ) -> Result<StreamHandle, crate::StreamError> {
        let stream = (self.new_stream)(config)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (producer, consumer) =
            audio_ring((self.config.ring_ms as usize * SAMPLE_RATE as usize / 1000).max(1));
        let engine = self.thread.as_ref().expect("running").thread().clone();
        self.commands
            .send(Command::Open {
                id,
                stream,
                audio: consumer,
                sink: Box::new(sink),
            })
            .map_err(|_| crate::StreamError::Closed)?;
        engine.unpark();
        Ok(StreamHandle {
            id,
            audio: Some(producer),
            commands: self.commands.clone(),
            engine,
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

struct Served {
    id: u64,
    stream: Box<dyn StreamDriver>,
    audio: RingConsumer,
    sink: Box<dyn EventSink>,
    flush_requested: bool,
    done: bool,
}

fn run(commands: mpsc::Receiver<Command>, config: EngineConfig, stats: Arc<EngineStats>) {
    let chunk = (config.chunk_ms as usize * SAMPLE_RATE as usize / 1000).max(1);
    let shed_after = config.shed_partials_after_ms as usize * SAMPLE_RATE as usize / 1000;
    let mut streams: VecDeque<Served> = VecDeque::new();
    let mut buf = vec![0.0f32; chunk];
    let mut events = Vec::new();
    let mut shutdown = false;
    loop {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Open {
                    id,
                    stream,
                    audio,
                    sink,
                } => {
                    streams.push_back(Served {
                        id,
                        stream,
                        audio,
                        sink,
                        flush_requested: false,
                        done: false,
                    });
                }
                Command::Flush { id } => {
                    if let Some(s) = streams.iter_mut().find(|s| s.id == id) {
                        s.flush_requested = true;
                    }
                }
                Command::Shutdown => shutdown = true,
            }
        }
        stats.streams.store(streams.len(), Ordering::Relaxed);
        let mut worked = false;
        for _ in 0..streams.len() {
            let Some(mut s) = streams.pop_front() else {
                break;
            };
            worked |= serve(&mut s, &mut buf, &mut events, shed_after, shutdown, &stats);
            if !s.done {
                streams.push_back(s);
            }
        }
        if shutdown && streams.is_empty() {
            stats.streams.store(0, Ordering::Relaxed);
            return;
        }
        if !worked {
            thread::park_timeout(Duration::from_millis(20));
        }
    }
}

/// Runs one turn of a stream's state machine so that its failure stays that stream's: an error or
/// a panic becomes the `(code, message)` of the error event to send it (a panic is counted in
/// `panics` and logged), `None` when the turn went well. The engine and the daemon's scheduler
/// both serve streams through it.
pub fn guarded_turn(
    stream: u64,
    panics: &AtomicU64,
    turn: impl FnOnce() -> Result<(), StreamError>,
) -> Option<(ErrorCode, String)> {
    match catch_unwind(AssertUnwindSafe(turn)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some((e.code(), e.to_string())),
        Err(panic) => {
            panics.fetch_add(1, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(stream, "stream state machine panicked: {what}");
            Some((
                ErrorCode::Internal,
                format!("internal error while processing this stream: {what}"),
            ))
        }
    }
}

/// One turn of one stream; returns whether it did any work.
fn serve(
    s: &mut Served,
    buf: &mut [f32],
    events: &mut Vec<Event>,
    shed_after: usize,
    shutdown: bool,
    stats: &EngineStats,
) -> bool {
    let mut worked = false;
    events.clear();
    let failure = guarded_turn(s.id, &stats.panics, || {
        let backlog = s.audio.available();
        if backlog > 0 {
            let n = s.audio.pop_into(buf);
            let allow_partials = backlog - n <= shed_after;
            if !allow_partials {
                stats.shed_partials.fetch_add(1, Ordering::Relaxed);
            }
            s.stream.push(&buf[..n], allow_partials, events)?;
            stats.samples.fetch_add(n as u64, Ordering::Relaxed);
            worked = true;
        }
        let drained = s.audio.available() == 0;
        if drained && s.flush_requested {
            s.flush_requested = false;
            s.stream.flush(events);
            worked = true;
        }
        if drained && (s.audio.is_closed() || shutdown) {
            s.stream.close(events);
            s.done = true;
            worked = true;
        }
        Ok(())
    });
    if let Some((code, message)) = failure {
        events.push(Event::Error { code, message });
        s.done = true;
    }
    let audio_s = s.stream.position() as f64 / SAMPLE_RATE as f64;
    let backlog_s = s.audio.available() as f64 / SAMPLE_RATE as f64;
    for event in events.drain(..) {
        if !s.sink.emit(Emitted {
            event,
            audio_s,
            backlog_s,
        }) {
            // Nobody listens any more: stop spending compute on this stream.
            s.done = true;
            break;
        }
    }
    worked
}
