//! Audio sources that fill a 16 kHz mono ring: a microphone ([`MicCapture`]) or a decoded
//! file played into the ring ([`FileCapture`], used by tests and clients instead of a sound
//! card). Both run the same pipeline:
//!
//! ```text
//! producer (device callback | file feeder thread)
//!     │ native rate/channels, f32, whole frames only
//!     ▼
//! raw SPSC ring ──► converter thread (StreamConverter) ──► 16 kHz mono RingProducer
//! ```
//!
//! The converter thread ends when the raw ring is closed (the device stream or the feeder is
//! gone): it drains the ring, flushes the resampler tail, and closes the output ring.

mod file;
mod mic;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::{AudioError, RingConsumer, RingProducer, StreamConverter};

pub use file::{FileCapture, Pacing};
pub use mic::{InputConfigRange, InputDeviceInfo, MicCapture, list_input_devices};

/// How often an idle worker looks at its ring again.
const POLL: Duration = Duration::from_millis(2);
/// Native samples the converter thread takes from the raw ring at a time (rounded to frames).
const CONVERT_CHUNK: usize = 4096;

/// Something that can capture audio into a 16 kHz mono ring.
pub trait CaptureSource {
    /// Starts capturing into `sink`. Capture runs on background threads until the source
    /// ends or the returned handle is stopped or dropped; the sink is closed at the end.
    fn start(self, sink: RingProducer) -> Result<CaptureHandle, AudioError>;
}

/// Sample encoding of a capture source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum SampleFormat {
    I8,
    I16,
    I24,
    I32,
    I64,
    U8,
    U16,
    U24,
    U32,
    U64,
    F32,
    F64,
}

/// The native format a source delivers before conversion to 16 kHz mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: u16,
    /// Sample encoding (decoded files report `F32`, the format they are fed in).
    pub sample_format: SampleFormat,
}

/// Counters of a capture, readable while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Native frames delivered by the source.
    pub input_frames: u64,
    /// Native samples lost because the converter thread fell behind (raw ring full).
    pub input_dropped: u64,
    /// 16 kHz samples produced by the converter.
    pub output_samples: u64,
    /// 16 kHz samples lost because the reader of the output ring fell behind.
    pub output_dropped: u64,
}

/// State shared by a handle, its worker threads and the device callbacks.
#[derive(Debug, Default)]
struct CaptureShared {
    stop: AtomicBool,
    finished: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<AudioError>>,
    input_frames: AtomicU64,
    input_dropped: AtomicU64,
    output_samples: AtomicU64,
    output_dropped: AtomicU64,
}

impl CaptureShared {
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records a fatal error (the first one wins) and makes the converter wind down.
    fn fail(&self, error: AudioError) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    fn take_failure(&self) -> Option<AudioError> {
        self.failure.lock().ok().and_then(|mut slot| slot.take())
    }

    fn stats(&self) -> CaptureStats {
        CaptureStats {
            input_frames: self.input_frames.load(Ordering::Relaxed),
            input_dropped: self.input_dropped.load(Ordering::Relaxed),
            output_samples: self.output_samples.load(Ordering::Relaxed),
            output_dropped: self.output_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A running capture. Dropping it stops the capture (see [`CaptureHandle::stop`]).
pub struct CaptureHandle {
    format: CaptureFormat,
    shared: Arc<CaptureShared>,
    /// Whatever keeps the producer side alive (the device stream); dropped first on stop.
    keepalive: Option<Box<dyn Send>>,
    feeder: Option<JoinHandle<()>>,
    converter: Option<JoinHandle<Result<(), AudioError>>>,
}

impl std::fmt::Debug for CaptureHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureHandle")
            .field("format", &self.format)
            .field("stats", &self.stats())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl CaptureHandle {
    /// The source's native format.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Live counters.
    pub fn stats(&self) -> CaptureStats {
        self.shared.stats()
    }

    /// True once the capture has ended (source exhausted, stopped, or failed) and the output
    /// ring is closed.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Waits until the source ends by itself, then returns the final counters or the first
    /// error. A file source ends at the end of the file; a microphone only ends on a device
    /// error. Delivery of a file waits for room in the output ring, so keep reading it.
    pub fn wait(mut self) -> Result<CaptureStats, AudioError> {
        self.join()
    }

    /// Stops the capture now: the device stream is closed (or the file feeder stops), the
    /// converter flushes what it already received, and the output ring is closed.
    pub fn stop(mut self) -> Result<CaptureStats, AudioError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<CaptureStats, AudioError> {
        self.shared.stop.store(true, Ordering::Release);
        // Dropping the device stream drops its callback and with it the raw producer.
        self.keepalive = None;
        self.join()
    }

    fn join(&mut self) -> Result<CaptureStats, AudioError> {
        let feeder_panicked = self.feeder.take().is_some_and(|h| h.join().is_err());
        let converted = match self.converter.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(AudioError::Thread("the converter thread panicked".into()))
            }),
            None => Ok(()),
        };
        self.keepalive = None;
        if let Some(error) = self.shared.take_failure() {
            return Err(error);
        }
        if feeder_panicked {
            return Err(AudioError::Thread("the file feeder thread panicked".into()));
        }
        converted.map(|()| self.shared.stats())
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        if self.converter.is_some()
            && let Err(error) = self.shutdown()
        {
            tracing::warn!(%error, "audio capture ended with an error");
        }
    }
}

/// Starts the converter thread that links `raw` to `sink`, and builds the handle.
///
/// `lossless`: wait for room in `sink` instead of dropping (file sources; a microphone cannot
/// wait). The wait is abandoned when the handle stops or the sink's reader is gone.
fn spawn_pipeline(
    format: CaptureFormat,
    raw: RingConsumer,
    sink: RingProducer,
    lossless: bool,
    shared: Arc<CaptureShared>,
) -> Result<CaptureHandle, AudioError> {
    let converter = StreamConverter::new(format.sample_rate, format.channels)?;
    let worker_shared = Arc::clone(&shared);
    let converter = thread::Builder::new()
        .name("hark-audio-convert".into())
        .spawn(move || {
            let result = convert_loop(raw, converter, sink, lossless, &worker_shared);
            worker_shared.finished.store(true, Ordering::Release);
            result
        })
        .map_err(|e| AudioError::Thread(e.to_string()))?;
    Ok(CaptureHandle {
        format,
        shared,
        keepalive: None,
        feeder: None,
        converter: Some(converter),
    })
}

/// The converter thread body. The sink is dropped (closed) when this returns.
fn convert_loop(
    mut raw: RingConsumer,
    mut converter: StreamConverter,
    mut sink: RingProducer,
    lossless: bool,
    shared: &CaptureShared,
) -> Result<(), AudioError> {
    let channels = usize::from(converter.channels());
    let mut chunk = vec![0f32; (CONVERT_CHUNK / channels).max(1) * channels];
    let mut out = Vec::with_capacity(CONVERT_CHUNK + converter.latency_samples());
    loop {
        // Read the flag before popping: once closed, this pop sees every last sample.
        let closed = raw.is_closed();
        let n = raw.pop_into(&mut chunk);
        if n > 0 {
            converter.push(&chunk[..n], &mut out);
            deliver(&mut out, &mut sink, lossless, shared);
            shared.input_dropped.store(raw.dropped(), Ordering::Relaxed);
            continue;
        }
        if closed || shared.failed.load(Ordering::Acquire) {
            break;
        }
        thread::sleep(POLL);
    }
    shared.input_dropped.store(raw.dropped(), Ordering::Relaxed);
    let finished = converter.finish(&mut out);
    deliver(&mut out, &mut sink, lossless, shared);
    finished
}

fn deliver(out: &mut Vec<f32>, sink: &mut RingProducer, lossless: bool, shared: &CaptureShared) {
    let mut rest = &out[..];
    while lossless && !rest.is_empty() {
        let fit = rest.len().min(sink.vacant());
        sink.push(&rest[..fit]);
        rest = &rest[fit..];
        if rest.is_empty() || sink.is_abandoned() || shared.stop_requested() {
            break;
        }
        thread::sleep(POLL);
    }
    // Whatever is left (all of it for a live source) goes in as far as it fits; the ring
    // counts the rest as dropped.
    sink.push(rest);
    shared
        .output_samples
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    shared
        .output_dropped
        .store(sink.dropped(), Ordering::Relaxed);
    out.clear();
}
