//! `hark-audio-io`: where every sample enters Hark.
//!
//! Whatever the source (a file in any common format, a byte buffer received over the network,
//! a microphone at any native rate and sample format), what leaves this crate is 16 kHz mono
//! `f32` in [-1, 1].
//!
//! * [`decode_file`] / [`decode_bytes`] decode to interleaved `f32` at the native format
//!   ([`DecodedAudio`]); [`to_mono_16k`] converts a whole clip.
//! * [`StreamConverter`] does the conversion incrementally, one instance per stream. It is the
//!   only conversion code path, so offline and streaming results are identical.
//! * [`audio_ring`] creates the per-stream SPSC ring of 16 kHz samples that the engine reads.
//! * [`CaptureSource`] ([`MicCapture`], [`FileCapture`]) fills such a ring on background
//!   threads.
//!
//! # Threading model
//!
//! ```text
//!  device callback (real-time)          file feeder thread
//!  convert to f32 in a preallocated      push decoded chunks, paced
//!  scratch, push, never block            or as fast as possible
//!             │                                   │
//!             └──────────► raw SPSC ring ◄────────┘   native rate and channels
//!                               │
//!                      converter thread: mix to mono, resample (StreamConverter)
//!                               │
//!                               ▼
//!                16 kHz mono SPSC ring (RingProducer → RingConsumer)
//!                               │
//!                               ▼
//!                        engine thread (hark-streaming)
//! ```
//!
//! The real-time callback never allocates, locks or blocks; when a ring is full the samples
//! that do not fit are dropped and counted ([`RingConsumer::dropped`],
//! [`CaptureStats`]), never lost silently. A file source waits for room instead, so it loses
//! nothing. Closing the source closes each ring in turn, so the engine learns that the stream
//! ended from [`RingConsumer::is_closed`] after the last sample.

mod capture;
mod convert;
mod decode;
mod error;
mod ring;
mod wav;

pub use capture::{
    CaptureFormat, CaptureHandle, CaptureSource, CaptureStats, FileCapture, InputConfigRange,
    InputDeviceInfo, MicCapture, Pacing, SampleFormat, list_input_devices,
};
pub use convert::{
    MAX_INPUT_RATE, MIN_INPUT_RATE, StreamConverter, TARGET_RATE, expected_output_len,
    load_mono_16k, to_mono_16k,
};
pub use decode::{DecodedAudio, decode_bytes, decode_bytes_within, decode_file};
pub use error::AudioError;
pub use ring::{RingConsumer, RingProducer, audio_ring};
pub use wav::write_wav_16k_mono;
