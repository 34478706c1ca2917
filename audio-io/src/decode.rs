//! Decoding audio files and in-memory buffers into interleaved `f32` samples.
//!
//! WAV (integer PCM of 8 to 32 bits, 32-bit float) is read with `hound`; everything else
//! (FLAC, MP3, Ogg Vorbis, AIFF, CAF, MP4/M4A with AAC or ALAC, MKV/WebM, WAV encodings hound
//! does not know such as A-law or ADPCM) goes through `symphonia`.
//!
//! Policy on damaged input: a stream whose header declares more audio than the data holds is an
//! error ([`AudioError::Truncated`]), never padded and never silently shortened. That check
//! needs an exact declared length, which WAV, AIFF, CAF (PCM) and FLAC have; lossy streams
//! (MP3, Vorbis, AAC) only carry estimates, so for them decoding stops at the last complete
//! packet. A corrupt packet is an error rather than a skipped gap. Third-party decoders are
//! run under `catch_unwind` so that even a decoder bug on hostile bytes becomes an error.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_FLAC, CODEC_ID_PCM_MULAW, CODEC_ID_PCM_S32LE,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::AudioError;

/// Headers can claim gigabytes; never reserve more than this up front (samples).
const MAX_RESERVE: usize = 1 << 24;

/// Decoded audio at its native rate and channel count.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved samples, nominally in [-1, 1] (float sources may exceed it; the converter
    /// clamps).
    pub samples: Vec<f32>,
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame (always at least 1).
    pub channels: u16,
}

impl DecodedAudio {
    /// Number of complete frames.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decodes an audio file of any supported format.
///
/// The extension is only a hint; the format is detected from the content.
pub fn decode_file(path: impl AsRef<Path>) -> Result<DecodedAudio, AudioError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            AudioError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            AudioError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let extension = path.extension().and_then(|e| e.to_str());
    guarded(|| decode_source(file, extension, path, Limit(f64::INFINITY)))
}

/// Decodes audio held in memory (for example an upload received over the network).
pub fn decode_bytes(bytes: &[u8]) -> Result<DecodedAudio, AudioError> {
    decode_bytes_within(bytes, f64::INFINITY)
}

/// Decodes audio held in memory, refusing it ([`AudioError::TooLong`]) as soon as it is
/// longer than `max_seconds`. A few megabytes of a low-bitrate compressed stream can hold
/// days of audio; this stops decoding at the limit instead of after gigabytes.
pub fn decode_bytes_within(bytes: &[u8], max_seconds: f64) -> Result<DecodedAudio, AudioError> {
    let limit = Limit(max_seconds);
    guarded(|| decode_source(Cursor::new(bytes), None, Path::new("<memory>"), limit))
}

/// The longest audio a decode accepts.
#[derive(Debug, Clone, Copy)]
struct Limit(f64);

impl Limit {
    fn check(self, frames: u64, sample_rate: u32) -> Result<(), AudioError> {
        if sample_rate > 0 && frames as f64 / f64::from(sample_rate) > self.0 {
            return Err(AudioError::TooLong { limit_s: self.0 });
        }
        Ok(())
    }
}

/// Turns a panic inside a third-party decoder into an error.
fn guarded(
    decode: impl FnOnce() -> Result<DecodedAudio, AudioError>,
) -> Result<DecodedAudio, AudioError> {
    panic::catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(AudioError::malformed(
            "audio",
            "the decoder failed on this input",
        ))
    })
}

fn decode_source<'s, S: MediaSource + 's>(
    mut source: S,
    extension: Option<&str>,
    origin: &Path,
    limit: Limit,
) -> Result<DecodedAudio, AudioError> {
    let io_err = |source| AudioError::Io {
        path: origin.to_path_buf(),
        source,
    };
    let mut head = [0u8; 12];
    let n = read_up_to(&mut source, &mut head).map_err(io_err)?;
    source.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if n == 0 {
        return Err(AudioError::UnknownFormat(
            "the input is empty (0 bytes)".into(),
        ));
    }
    if n == head.len() && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        let hound_said = match decode_wav(BufReader::new(&mut source), origin, limit)? {
            Ok(audio) => return Ok(audio),
            Err(reason) => reason,
        };
        // A WAV variant hound does not read (A-law, ADPCM, 64-bit float, ...): let symphonia
        // try, and keep hound's explanation if symphonia cannot even parse it.
        source.seek(SeekFrom::Start(0)).map_err(io_err)?;
        return decode_symphonia(Box::new(source), extension, origin, limit).map_err(|e| match e {
            AudioError::UnknownFormat(_) => hound_said,
            other => other,
        });
    }
    decode_symphonia(Box::new(source), extension, origin, limit)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a WAV file with hound. `Ok(Err(reason))` means hound cannot read this WAV variant
/// (A-law, ADPCM, 64-bit float, ...) and symphonia should try.
fn decode_wav<R: Read>(
    reader: R,
    origin: &Path,
    limit: Limit,
) -> Result<Result<DecodedAudio, AudioError>, AudioError> {
    let mut reader = EofTracking {
        inner: reader,
        hit_eof: false,
    };
    let mut wav = match hound::WavReader::new(&mut reader) {
        Ok(wav) => wav,
        Err(hound::Error::Unsupported) => {
            return Ok(Err(AudioError::Unsupported("WAV sample encoding".into())));
        }
        Err(hound::Error::FormatError(msg)) if !msg.contains("zero channels") => {
            return Ok(Err(AudioError::malformed("WAV", msg)));
        }
        Err(e) => return Err(hound_error(e, reader.hit_eof, origin)),
    };
    let spec = wav.spec();
    if spec.sample_rate == 0 {
        return Err(AudioError::ZeroSampleRate);
    }
    if spec.sample_format == hound::SampleFormat::Int && !(1..=32).contains(&spec.bits_per_sample) {
        return Ok(Err(AudioError::Unsupported(format!(
            "{}-bit integer WAV",
            spec.bits_per_sample
        ))));
    }
    let channels = usize::from(spec.channels);
    let declared = wav.len() as usize;
    // WAV declares its length exactly: refuse before decoding anything.
    limit.check((declared / channels.max(1)) as u64, spec.sample_rate)?;
    let mut samples = Vec::with_capacity(declared.min(MAX_RESERVE));

    let result = match spec.sample_format {
        hound::SampleFormat::Float => wav
            .samples::<f32>()
            .try_for_each(|s| s.map(|s| samples.push(s))),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            wav.samples::<i32>()
                .try_for_each(|s| s.map(|s| samples.push((f64::from(s) * scale) as f32)))
        }
    };
    match result {
        Ok(()) => {}
        Err(hound::Error::IoError(_)) if reader.hit_eof => {
            return Err(AudioError::Truncated {
                expected_frames: (declared / channels) as u64,
                decoded_frames: (samples.len() / channels) as u64,
            });
        }
        Err(e) => return Err(hound_error(e, reader.hit_eof, origin)),
    }
    if samples.is_empty() {
        return Err(AudioError::Empty);
    }
    Ok(Ok(DecodedAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    }))
}

/// Remembers whether the reader ran dry, because hound reports a short read as a generic
/// I/O error.
struct EofTracking<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EofTracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

fn hound_error(error: hound::Error, hit_eof: bool, origin: &Path) -> AudioError {
    match error {
        hound::Error::IoError(_) if hit_eof => {
            AudioError::malformed("WAV", "the header ends before the audio data begins")
        }
        hound::Error::IoError(source) => AudioError::Io {
            path: origin.to_path_buf(),
            source,
        },
        // hound reports this one as a generic format error; keep it distinguishable.
        hound::Error::FormatError(msg) if msg.contains("zero channels") => AudioError::ZeroChannels,
        hound::Error::FormatError(msg) => AudioError::malformed("WAV", msg),
        hound::Error::Unsupported | hound::Error::TooWide => {
            AudioError::Unsupported("WAV sample encoding".into())
        }
        other => AudioError::malformed("WAV", other.to_string()),
    }
}

fn decode_symphonia<'s>(
    source: Box<dyn MediaSource + 's>,
    extension: Option<&str>,
    origin: &Path,
    limit: Limit,
) -> Result<DecodedAudio, AudioError> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymphoniaError::IoError(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
                AudioError::Io {
                    path: origin.to_path_buf(),
                    source: e,
                }
            }
            other => AudioError::UnknownFormat(other.to_string()),
        })?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::UnknownFormat("the container has no audio track".into()))?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::Unsupported("the audio track has no codec parameters".into()))?
        .clone();
    if params.sample_rate == Some(0) {
        return Err(AudioError::ZeroSampleRate);
    }
    if params.channels.as_ref().is_some_and(|c| c.count() == 0) {
        return Err(AudioError::ZeroChannels);
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| symphonia_error(e, origin))?;

    let mut samples = Vec::new();
    let mut scratch = Vec::new();
    let mut layout: Option<(u32, usize)> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // Some readers report the end of a stream cut mid-packet this way.
            Err(SymphoniaError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(symphonia_error(e, origin)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| symphonia_error(e, origin))?;
        if decoded.frames() == 0 {
            continue;
        }
        let this = (decoded.spec().rate(), decoded.spec().channels().count());
        match layout {
            None => layout = Some(this),
            Some(first) if first != this => {
                return Err(AudioError::malformed(
                    "audio stream",
                    format!(
                        "format changes mid-stream ({} Hz x{} to {} Hz x{})",
                        first.0, first.1, this.0, this.1
                    ),
                ));
            }
            Some(_) => {}
        }
        decoded.copy_to_vec_interleaved(&mut scratch);
        samples.extend_from_slice(&scratch);
        limit.check((samples.len() / this.1.max(1)) as u64, this.0)?;
    }

    let (sample_rate, channels) = layout.unwrap_or((
        params.sample_rate.unwrap_or(0),
        params.channels.as_ref().map_or(0, |c| c.count()),
    ));
    if sample_rate == 0 {
        return Err(AudioError::ZeroSampleRate);
    }
    if channels == 0 {
        return Err(AudioError::ZeroChannels);
    }
    let channels = u16::try_from(channels)
        .map_err(|_| AudioError::Unsupported(format!("{channels} channels")))?;
    let frames = (samples.len() / usize::from(channels)) as u64;
    // Only PCM and FLAC declare an exact length; lossy formats carry estimates.
    let exact_length = params.codec == CODEC_ID_FLAC
        || (CODEC_ID_PCM_S32LE..=CODEC_ID_PCM_MULAW).contains(&params.codec);
    if let Some(expected) = declared_frames.filter(|&n| exact_length && frames < n) {
        return Err(AudioError::Truncated {
            expected_frames: expected,
            decoded_frames: frames,
        });
    }
    if samples.is_empty() {
        return Err(AudioError::Empty);
    }
    Ok(DecodedAudio {
        samples,
        sample_rate,
        channels,
    })
}

fn symphonia_error(error: SymphoniaError, origin: &Path) -> AudioError {
    match error {
        SymphoniaError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::malformed("audio stream", "the data ends in the middle of a packet")
        }
        SymphoniaError::IoError(source) => AudioError::Io {
            path: PathBuf::from(origin),
            source,
        },
        SymphoniaError::DecodeError(msg) => AudioError::malformed("audio stream", msg),
        SymphoniaError::Unsupported(msg) => AudioError::Unsupported(msg.to_string()),
        SymphoniaError::LimitError(msg) => {
            AudioError::Unsupported(format!("a decoder limit was exceeded: {msg}"))
        }
        SymphoniaError::ResetRequired => {
            AudioError::Unsupported("chained streams whose format changes".into())
        }
        other => AudioError::malformed("audio stream", other.to_string()),
    }
}
