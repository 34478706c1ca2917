//! Conversion of any supported input to 16 kHz mono `f32`.
//!
//! [`StreamConverter`] is the only conversion code path: the offline helper [`to_mono_16k`]
//! pushes a whole clip through it, capture threads push device or file chunks through it.
//!
//! Frames are first averaged to mono, then resampled with rubato's synchronous FFT resampler
//! (the ratio is fixed, so the FFT resampler gives sinc quality at a fraction of the cost).
//! The resampler always sees whole blocks of a fixed size collected by the converter, so the
//! output does not depend on how the caller chunks its input: chunked and one-shot conversion
//! are bit-identical. Its start-up delay is trimmed and [`StreamConverter::finish`] flushes the
//! tail, so the output is aligned with the input and holds exactly
//! `round(input_frames * 16000 / input_rate)` samples.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::{AudioError, DecodedAudio};

/// The rate of every sample after this crate.
pub const TARGET_RATE: u32 = 16_000;
/// Lowest accepted input rate.
pub const MIN_INPUT_RATE: u32 = 8_000;
/// Highest accepted input rate.
pub const MAX_INPUT_RATE: u32 = 192_000;

/// Smallest FFT block, in frames of the lower of the two rates. 320 frames keep the
/// anti-aliasing cutoff near 0.96 of Nyquist (about 7.7 kHz at 16 kHz out) while the block
/// adds at most 20 ms (40 ms at 8 kHz in) of latency plus half a block of filter delay.
const MIN_BLOCK: usize = 320;

/// Converts one stream of interleaved samples to 16 kHz mono, chunk by chunk.
///
/// Keep one converter per stream. Input chunks may have any length, even a fraction of a
/// frame. Output samples are clamped to [-1, 1] and NaN becomes 0. At 16 kHz mono the input
/// passes through bit-exactly (apart from that sanitising).
///
/// `push` allocates only when `out` must grow; reserve capacity in `out` to avoid that.
pub struct StreamConverter {
    input_rate: u32,
    channels: u16,
    /// Samples of a frame split across two `push` calls.
    partial: Vec<f32>,
    resampler: Option<BlockResampler>,
}

impl std::fmt::Debug for StreamConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConverter")
            .field("input_rate", &self.input_rate)
            .field("channels", &self.channels)
            .field("resampling", &self.resampler.is_some())
            .finish()
    }
}

impl StreamConverter {
    /// A converter for `input_rate` Hz audio with `channels` interleaved channels.
    pub fn new(input_rate: u32, channels: u16) -> Result<Self, AudioError> {
        if channels == 0 {
            return Err(AudioError::ZeroChannels);
        }
        if input_rate == 0 {
            return Err(AudioError::ZeroSampleRate);
        }
        if !(MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&input_rate) {
            return Err(AudioError::UnsupportedSampleRate {
                rate: input_rate,
                min: MIN_INPUT_RATE,
                max: MAX_INPUT_RATE,
            });
        }
        let resampler = if input_rate == TARGET_RATE {
            None
        } else {
            Some(BlockResampler::new(input_rate)?)
        };
        Ok(StreamConverter {
            input_rate,
            channels,
            partial: Vec::with_capacity(usize::from(channels)),
            resampler,
        })
    }

    /// Input rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Input channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Output samples the converter holds back before emitting them (resampler block plus
    /// filter delay), an upper bound on its added latency in 16 kHz samples.
    pub fn latency_samples(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| r.block_out + r.delay)
    }

    /// Converts `interleaved` and appends the 16 kHz mono samples that are ready to `out`.
    pub fn push(&mut self, interleaved: &[f32], out: &mut Vec<f32>) {
        let channels = usize::from(self.channels);
        let mut rest = interleaved;
        if !self.partial.is_empty() {
            let take = (channels - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() < channels {
                return;
            }
            let mono = mix(&self.partial);
            self.partial.clear();
            self.emit(&[mono], out);
        }
        let whole = rest.len() / channels * channels;
        let (frames, tail) = rest.split_at(whole);
        if channels == 1 {
            self.emit(frames, out);
        } else {
            // Mix in bounded pieces so the stack buffer stays small.
            let mut mono = [0f32; 512];
            for piece in frames.chunks(mono.len() * channels) {
                let n = piece.len() / channels;
                for (m, frame) in mono.iter_mut().zip(piece.chunks_exact(channels)) {
                    *m = mix(frame);
                }
                self.emit(&mono[..n], out);
            }
        }
        self.partial.extend_from_slice(tail);
    }

    /// Ends the stream: flushes the resampler tail into `out` and resets the converter so it
    /// can start a new stream.
    ///
    /// Returns [`AudioError::IncompleteFrame`] if the input ended inside a frame; everything up
    /// to the last complete frame has still been written to `out`.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        if let Some(resampler) = &mut self.resampler {
            resampler.finish(out);
        }
        let dangling = self.partial.len();
        self.partial.clear();
        if dangling > 0 {
            return Err(AudioError::IncompleteFrame {
                samples: dangling,
                channels: self.channels,
            });
        }
        Ok(())
    }

    fn emit(&mut self, mono: &[f32], out: &mut Vec<f32>) {
        match &mut self.resampler {
            Some(resampler) => resampler.push(mono, out),
            None => out.extend(mono.iter().map(|&s| sanitize(s))),
        }
    }
}

/// Converts a whole decoded clip to 16 kHz mono (through a [`StreamConverter`]).
pub fn to_mono_16k(audio: &DecodedAudio) -> Result<Vec<f32>, AudioError> {
    let mut converter = StreamConverter::new(audio.sample_rate, audio.channels)?;
    let expected = expected_output_len(audio.frames() as u64, audio.sample_rate) as usize;
    let mut out = Vec::with_capacity(expected);
    converter.push(&audio.samples, &mut out);
    converter.finish(&mut out)?;
    Ok(out)
}

/// Decodes a file and converts it to 16 kHz mono in one call.
pub fn load_mono_16k(path: impl AsRef<std::path::Path>) -> Result<Vec<f32>, AudioError> {
    to_mono_16k(&crate::decode_file(path)?)
}

/// Number of 16 kHz samples a stream of `input_frames` at `input_rate` converts to.
pub fn expected_output_len(input_frames: u64, input_rate: u32) -> u64 {
    if input_rate == 0 {
        return 0;
    }
    let num = u128::from(input_frames) * u128::from(TARGET_RATE);
    let rate = u128::from(input_rate);
    ((num + rate / 2) / rate) as u64
}

/// Channel average, summed in channel order so the result never depends on chunking.
fn mix(frame: &[f32]) -> f32 {
    let sum: f32 = frame.iter().map(|&s| sanitize(s)).sum();
    sum / frame.len() as f32
}

/// Clamps to [-1, 1] and maps NaN to silence; in-range values pass unchanged.
fn sanitize(s: f32) -> f32 {
    if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) }
}

/// Mono resampler fed one sample at a time, running rubato on fixed blocks.
struct BlockResampler {
    fft: Fft<f32>,
    input_rate: u32,
    block_in: usize,
    block_out: usize,
    delay: usize,
    /// Mono input collected for the next block.
    pending: Vec<f32>,
    block: Vec<f32>,
    /// Start-up delay samples still to drop.
    to_skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl BlockResampler {
    fn new(input_rate: u32) -> Result<Self, AudioError> {
        let (rate_in, rate_out) = (input_rate as usize, TARGET_RATE as usize);
        let gcd = gcd(rate_in, rate_out);
        let (unit_in, unit_out) = (rate_in / gcd, rate_out / gcd);
        // Whole number of the smallest exact-ratio units, big enough on both sides.
        let units = MIN_BLOCK
            .div_ceil(unit_in)
            .max(MIN_BLOCK.div_ceil(unit_out));
        let fft = Fft::<f32>::new_custom(
            rate_in,
            rate_out,
            units * unit_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )
        .map_err(|e| AudioError::Unsupported(format!("resampler for {input_rate} Hz: {e}")))?;
        let (block_in, block_out) = (fft.input_frames_next(), fft.output_frames_next());
        let delay = fft.output_delay();
        Ok(BlockResampler {
            fft,
            input_rate,
            block_in,
            block_out,
            delay,
            pending: Vec::with_capacity(block_in),
            block: vec![0.0; block_out],
            to_skip: delay,
            frames_in: 0,
            frames_out: 0,
        })
    }

    fn push(&mut self, mut mono: &[f32], out: &mut Vec<f32>) {
        self.frames_in += mono.len() as u64;
        while !mono.is_empty() {
            let take = (self.block_in - self.pending.len()).min(mono.len());
            self.pending
                .extend(mono[..take].iter().map(|&s| sanitize(s)));
            mono = &mono[take..];
            if self.pending.len() == self.block_in {
                self.run_block(usize::MAX, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<f32>) {
        let total = expected_output_len(self.frames_in, self.input_rate);
        // Zero-pad the last partial block, then pump silence until the delayed tail is out.
        while self.frames_out < total {
            self.pending.resize(self.block_in, 0.0);
            let limit = (total - self.frames_out) as usize;
            self.run_block(limit, out);
        }
        self.fft.reset();
        self.pending.clear();
        self.to_skip = self.delay;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    /// Resamples `pending` (exactly one block) and emits at most `limit` samples.
    fn run_block(&mut self, limit: usize, out: &mut Vec<f32>) {
        let input = InterleavedSlice::new(&self.pending[..], 1, self.block_in)
            .expect("pending holds exactly one input block");
        let mut output = InterleavedSlice::new_mut(&mut self.block[..], 1, self.block_out)
            .expect("block holds exactly one output block");
        self.fft
            .process_into_buffer(&input, &mut output, None)
            .expect("buffers are sized from the resampler's own block sizes");
        self.pending.clear();
        let skip = self.to_skip.min(self.block_out);
        self.to_skip -= skip;
        let ready = &self.block[skip..];
        let ready = &ready[..ready.len().min(limit)];
        out.extend(ready.iter().map(|&s| sanitize(s)));
        self.frames_out += ready.len() as u64;
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
