//! One worker thread: the turn loop over its streams.
//!
//! Each turn visits every stream once, in the shape of moshi's batched ASR loop: pre-process
//! (take at most one chunk of queued audio, up to the next flush mark), step (the stream's
//! state machine; its decoder passes may meet other workers' in the batcher), post-process
//! (book the position, acknowledge flushes, send the outputs).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use hark_audio_io::RingConsumer;
use hark_model::SAMPLE_RATE;
use tokio::sync::mpsc as tmpsc;

use super::driver::StreamDriver;
use super::link::{LinkShared, Output};
use super::{EngineConfig, WorkerStats};
use crate::events::{ErrorCode, Event};
use crate::stream::StreamError;

/// How long an idle worker sleeps before looking again (pushes wake it earlier).
const IDLE_PARK: Duration = Duration::from_millis(20);

pub(super) enum Command {
    Open(Box<Slot>),
    Flush { id: u64, at: u64, token: u64 },
    Abort { id: u64 },
    Shutdown,
}

/// A stream as the worker holds it.
pub(super) struct Slot {
    id: u64,
    driver: Box<dyn StreamDriver>,
    audio: RingConsumer,
    shared: Arc<LinkShared>,
    out: tmpsc::UnboundedSender<Output>,
    /// Pending flushes: (stream position, token), in order.
    marks: VecDeque<(u64, u64)>,
    /// Samples processed.
    position: u64,
    stats: Arc<WorkerStats>,
}

impl Slot {
    pub(super) fn new(
        id: u64,
        driver: Box<dyn StreamDriver>,
        audio: RingConsumer,
        shared: Arc<LinkShared>,
        out: tmpsc::UnboundedSender<Output>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        Self {
            id,
            driver,
            audio,
            shared,
            out,
            marks: VecDeque::new(),
            position: 0,
            stats,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.streams.fetch_sub(1, Ordering::Relaxed);
        // Wake a front end waiting for queue room: the queue is abandoned now.
        self.shared.room.notify_one();
    }
}

/// Scratch buffers reused across turns.
struct Scratch {
    audio: Vec<f32>,
    events: Vec<Event>,
    outputs: Vec<Output>,
}

pub(super) fn run(commands: mpsc::Receiver<Command>, cfg: EngineConfig, stats: Arc<WorkerStats>) {
    let chunk = (cfg.chunk_ms as usize * SAMPLE_RATE as usize / 1000).max(1);
    let shed_after = cfg.shed_partials_after_ms as usize * SAMPLE_RATE as usize / 1000;
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let mut scratch = Scratch {
        audio: vec![0.0; chunk],
        events: Vec::new(),
        outputs: Vec::new(),
    };
    let mut shutdown = false;
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Open(slot)) => slots.push_back(*slot),
                Ok(Command::Flush { id, at, token }) => {
                    if let Some(s) = slots.iter_mut().find(|s| s.id == id) {
                        s.marks.push_back((at, token));
                    }
                }
                Ok(Command::Abort { id }) => slots.retain(|s| s.id != id),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        // One turn: each stream gets at most one chunk, so a file sent at full speed cannot
        // starve live streams on the same worker.
        let mut worked = false;
        for _ in 0..slots.len() {
            let Some(mut slot) = slots.pop_front() else {
                break;
            };
            let started = Instant::now();
            let (did, done) = serve(&mut slot, &mut scratch, shed_after, shutdown, &stats);
            if did {
                stats
                    .busy_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            worked |= did;
            if !done {
                slots.push_back(slot);
            }
        }
        let queued: usize = slots.iter().map(|s| s.audio.available()).sum();
        stats.queued_samples.store(queued as u64, Ordering::Relaxed);
        if shutdown && slots.is_empty() {
            return;
        }
        if !worked {
            thread::park_timeout(IDLE_PARK);
        }
    }
}

/// One turn of one stream. Returns (did any work, the stream is done).
fn serve(
    slot: &mut Slot,
    scratch: &mut Scratch,
    shed_after: usize,
    shutdown: bool,
    stats: &WorkerStats,
) -> (bool, bool) {
    let mut worked = false;
    let mut done = false;
    let Scratch {
        audio: buf,
        events,
        outputs,
    } = scratch;
    outputs.clear();
    let failure = guarded_turn(slot.id, &stats.panics, || {
        // Pre-process: the next chunk, never past a pending flush mark.
        let available = slot.audio.available();
        let until_mark = slot.marks.front().map_or(usize::MAX, |&(at, _)| {
            at.saturating_sub(slot.position) as usize
        });
        let n = buf.len().min(available).min(until_mark);
        if n > 0 {
            let got = slot.audio.pop_into(&mut buf[..n]);
            // A stream behind real time skips partials; finals do not depend on them.
            let allow_partials = available - got <= shed_after;
            if !allow_partials {
                stats.shed_partials.fetch_add(1, Ordering::Relaxed);
            }
            // Step.
            events.clear();
            let pushed = slot.driver.push(&buf[..got], allow_partials, events);
            // Post-process.
            slot.position += got as u64;
            slot.shared
                .processed
                .store(slot.position, Ordering::Relaxed);
            slot.shared.room.notify_one();
            stats
                .processed_samples
                .fetch_add(got as u64, Ordering::Relaxed);
            collect(events, slot, outputs);
            worked = true;
            pushed?;
        }
        while let Some(&(at, token)) = slot.marks.front()
            && at <= slot.position
        {
            slot.marks.pop_front();
            slot.driver.flush(events);
            collect(events, slot, outputs);
            outputs.push(Output::Flushed {
                token,
                position: slot.position,
            });
            worked = true;
        }
        if slot.marks.is_empty()
            && slot.audio.available() == 0
            && (slot.audio.is_closed() || shutdown)
        {
            slot.driver.close(events);
            collect(events, slot, outputs);
            outputs.push(Output::Finished {
                position: slot.position,
            });
            done = true;
            worked = true;
        }
        Ok(())
    });
    if let Some((code, message)) = failure {
        outputs.push(Output::Event {
            event: Event::Error { code, message },
            position: slot.position,
            backlog: slot.audio.available() as u64,
        });
        done = true;
    }
    for output in outputs.drain(..) {
        if slot.out.send(output).is_err() {
            // The front end is gone: spend no more compute on its stream.
            done = true;
            break;
        }
    }
    (worked, done)
}

fn collect(events: &mut Vec<Event>, slot: &Slot, outputs: &mut Vec<Output>) {
    let backlog = slot.audio.available() as u64;
    outputs.extend(events.drain(..).map(|event| Output::Event {
        event,
        position: slot.position,
        backlog,
    }));
}

/// Runs one turn of a stream's state machine so that its failure stays that stream's: an error or
/// a panic becomes the `(code, message)` of the error event to send it (a panic is counted in
/// `panics` and logged), `None` when the turn went well.
fn guarded_turn(
    stream: u64,
    panics: &std::sync::atomic::AtomicU64,
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
