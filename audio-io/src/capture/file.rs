//! A decoded file played into the capture pipeline, in place of a microphone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{CaptureFormat, CaptureHandle, CaptureShared, CaptureSource, POLL, SampleFormat};
use crate::{AudioError, DecodedAudio, RingProducer, audio_ring, decode_file};

/// How fast a [`FileCapture`] feeds its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// As fast as the reader of the output ring consumes (nothing is dropped).
    #[default]
    AsFastAsPossible,
    /// One chunk per chunk duration of wall-clock time, like a live source.
    RealTime,
}

/// Plays decoded audio into a ring through the same raw ring and converter thread as a
/// microphone, then closes the ring.
///
/// Delivery never drops samples: when the output ring is full the converter waits for the
/// reader (until the handle is stopped or the reader is dropped).
#[derive(Debug, Clone)]
pub struct FileCapture {
    audio: DecodedAudio,
    pacing: Pacing,
    chunk: Duration,
}

impl FileCapture {
    /// Decodes `path` and prepares to play it as fast as possible in 20 ms chunks.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        Ok(Self::new(decode_file(path)?))
    }

    /// Plays already decoded audio.
    pub fn new(audio: DecodedAudio) -> Self {
        FileCapture {
            audio,
            pacing: Pacing::default(),
            chunk: Duration::from_millis(20),
        }
    }

    /// Sets the pacing.
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Sets how much audio is fed at a time (at least one frame).
    pub fn chunk(mut self, chunk: Duration) -> Self {
        self.chunk = chunk;
        self
    }

    /// The audio this source plays.
    pub fn audio(&self) -> &DecodedAudio {
        &self.audio
    }
}

impl CaptureSource for FileCapture {
    fn start(self, sink: RingProducer) -> Result<CaptureHandle, AudioError> {
        let FileCapture {
            audio,
            pacing,
            chunk,
        } = self;
        if audio.channels == 0 {
            return Err(AudioError::ZeroChannels);
        }
        let format = CaptureFormat {
            sample_rate: audio.sample_rate,
            channels: audio.channels,
            sample_format: SampleFormat::F32,
        };
        let channels = usize::from(audio.channels);
        let chunk_frames =
            ((chunk.as_secs_f64() * f64::from(audio.sample_rate)).round() as usize).max(1);
        // Half a second of slack between feeder and converter. A bigger chunk simply trickles
        // through in pieces, so the ring need not hold one.
        let ring_frames = (audio.sample_rate as usize / 2).max(1_024);
        let (raw_producer, raw_consumer) = audio_ring(ring_frames * channels);

        let shared = Arc::new(CaptureShared::default());
        let mut handle =
            super::spawn_pipeline(format, raw_consumer, sink, true, Arc::clone(&shared))?;
        let feeder_shared = Arc::clone(&shared);
        let feeder = thread::Builder::new()
            .name("hark-audio-file".into())
            .spawn(move || feed(&audio, raw_producer, chunk_frames, pacing, &feeder_shared))
            .map_err(|e| AudioError::Thread(e.to_string()))?;
        handle.feeder = Some(feeder);
        Ok(handle)
    }
}

/// Pushes the file into the raw ring chunk by chunk; dropping `raw` at the end closes it.
/// A trailing partial frame is fed too, so the converter reports it instead of hiding it.
fn feed(
    audio: &DecodedAudio,
    mut raw: RingProducer,
    chunk_frames: usize,
    pacing: Pacing,
    shared: &CaptureShared,
) {
    let channels = usize::from(audio.channels);
    let started = Instant::now();
    let mut frames_sent = 0u64;
    for chunk in audio.samples.chunks(chunk_frames * channels) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if shared.stop_requested() || raw.is_abandoned() {
                return;
            }
            // Nothing is dropped here, so a frame may straddle two pushes; the converter copes.
            let fit = rest.len().min(raw.vacant());
            raw.push(&rest[..fit]);
            rest = &rest[fit..];
            if !rest.is_empty() {
                thread::sleep(POLL);
            }
        }
        frames_sent += (chunk.len() / channels) as u64;
        shared
            .input_frames
            .fetch_add((chunk.len() / channels) as u64, Ordering::Relaxed);
        if pacing == Pacing::RealTime {
            let due = Duration::from_secs_f64(frames_sent as f64 / f64::from(audio.sample_rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
}
