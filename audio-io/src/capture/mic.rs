//! Microphone capture through cpal.
//!
//! The device callback is real-time code: it converts the native samples to `f32` in a
//! scratch buffer allocated before the stream starts and pushes them into the raw ring. No
//! allocation, no lock, no blocking, no resampling there; the converter thread does the rest.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::{CaptureFormat, CaptureHandle, CaptureShared, CaptureSource, SampleFormat};
use crate::{AudioError, RingProducer, audio_ring};

/// Raw ring size: half a second of native audio absorbs converter-thread hiccups.
const RAW_RING_SECONDS: f64 = 0.5;
/// Frames converted per step inside the callback.
const SCRATCH_FRAMES: usize = 1024;

/// One supported input configuration range of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputConfigRange {
    /// Channels per frame.
    pub channels: u16,
    /// Lowest supported rate in Hz.
    pub min_sample_rate: u32,
    /// Highest supported rate in Hz.
    pub max_sample_rate: u32,
    /// Sample encoding.
    pub sample_format: SampleFormat,
}

/// An input device as listed by [`list_input_devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDeviceInfo {
    /// Human-readable name; [`MicCapture::by_name`] accepts it.
    pub name: String,
    /// Stable host identifier such as `alsa:hw:CARD=PCH,DEV=0`; also accepted by `by_name`.
    pub id: String,
    /// Whether this is the host's default input device.
    pub is_default: bool,
    /// The format capture would use, when the device reports one.
    pub default_format: Option<CaptureFormat>,
    /// Every supported configuration range (DSD formats left out).
    pub configs: Vec<InputConfigRange>,
}

/// Lists the input devices of the default audio host. An empty list is not an error.
pub fn list_input_devices() -> Result<Vec<InputDeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let default_id = host.default_input_device().and_then(|d| d.id().ok());
    let devices = host.input_devices().map_err(no_device)?;
    Ok(devices
        .map(|device| {
            let id = device.id().ok();
            let configs = device
                .supported_input_configs()
                .map(|ranges| {
                    ranges
                        .filter_map(|r| {
                            Some(InputConfigRange {
                                channels: r.channels(),
                                min_sample_rate: r.min_sample_rate(),
                                max_sample_rate: r.max_sample_rate(),
                                sample_format: sample_format(r.sample_format())?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            InputDeviceInfo {
                name: device_name(&device),
                is_default: id.is_some() && id == default_id,
                id: id.map(|id| id.to_string()).unwrap_or_default(),
                default_format: device
                    .default_input_config()
                    .ok()
                    .and_then(|c| capture_format(&c)),
                configs,
            }
        })
        .collect())
}

/// Captures from a sound card input at its native format.
pub struct MicCapture {
    device: cpal::Device,
    name: String,
    config: cpal::SupportedStreamConfig,
    format: CaptureFormat,
}

impl std::fmt::Debug for MicCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicCapture")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish()
    }
}

impl MicCapture {
    /// The host's default input device.
    pub fn default_device() -> Result<Self, AudioError> {
        let device = cpal::default_host().default_input_device().ok_or_else(|| {
            AudioError::NoInputDevice(
                "the audio host has no default input (no sound card or audio server)".into(),
            )
        })?;
        Self::with_device(device)
    }

    /// The input device whose name or id (as listed by [`list_input_devices`]) is `name`.
    pub fn by_name(name: &str) -> Result<Self, AudioError> {
        let host = cpal::default_host();
        let device = host
            .input_devices()
            .map_err(no_device)?
            .find(|device| {
                device_name(device) == name
                    || device
                        .id()
                        .is_ok_and(|id| id.to_string() == name || id.id() == name)
            })
            .ok_or_else(|| AudioError::NoInputDevice(format!("no input device named {name:?}")))?;
        Self::with_device(device)
    }

    fn with_device(device: cpal::Device) -> Result<Self, AudioError> {
        let name = device_name(&device);
        let config = device
            .default_input_config()
            .map_err(|e| AudioError::NoInputDevice(format!("{name}: {e}")))?;
        let format = capture_format(&config).ok_or_else(|| {
            AudioError::Unsupported(format!("{name}: sample format {}", config.sample_format()))
        })?;
        Ok(MicCapture {
            device,
            name,
            config,
            format,
        })
    }

    /// Captures in `format` instead of the device default, if the device supports it
    /// (for example 16 kHz mono to skip resampling, or a specific sample encoding).
    pub fn with_format(mut self, format: CaptureFormat) -> Result<Self, AudioError> {
        let wanted = cpal_format(format.sample_format);
        let config = self
            .device
            .supported_input_configs()
            .map_err(|e| device_error(&self.name, e))?
            .filter(|r| r.channels() == format.channels && r.sample_format() == wanted)
            .find_map(|r| r.try_with_sample_rate(format.sample_rate))
            .ok_or_else(|| {
                AudioError::Unsupported(format!(
                    "{}: no input configuration with {} Hz, {} channels, {:?}",
                    self.name, format.sample_rate, format.channels, format.sample_format
                ))
            })?;
        self.config = config;
        self.format = format;
        Ok(self)
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The native format capture will use.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }
}

impl CaptureSource for MicCapture {
    fn start(self, sink: RingProducer) -> Result<CaptureHandle, AudioError> {
        let format = self.format;
        let channels = usize::from(format.channels);
        let raw_frames = (RAW_RING_SECONDS * f64::from(format.sample_rate)) as usize;
        // A whole number of frames, so a full ring always cuts between frames.
        let (raw_producer, raw_consumer) = audio_ring(raw_frames.max(SCRATCH_FRAMES) * channels);
        let shared = Arc::new(CaptureShared::default());
        let config: cpal::StreamConfig = self.config.config();

        let stream = match self.config.sample_format() {
            cpal::SampleFormat::I8 => build::<i8>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::I16 => build::<i16>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::I24 => build::<cpal::I24>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::I32 => build::<i32>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::I64 => build::<i64>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::U8 => build::<u8>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::U16 => build::<u16>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::U24 => build::<cpal::U24>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::U32 => build::<u32>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::U64 => build::<u64>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::F32 => build::<f32>(&self, &config, raw_producer, &shared),
            cpal::SampleFormat::F64 => build::<f64>(&self, &config, raw_producer, &shared),
            other => {
                return Err(AudioError::Unsupported(format!(
                    "{}: sample format {other}",
                    self.name
                )));
            }
        }?;
        let mut handle =
            super::spawn_pipeline(format, raw_consumer, sink, false, Arc::clone(&shared))?;
        stream.play().map_err(|e| device_error(&self.name, e))?;
        handle.keepalive = Some(Box::new(stream));
        Ok(handle)
    }
}

/// Builds the input stream for native sample type `T`.
fn build<T>(
    mic: &MicCapture,
    config: &cpal::StreamConfig,
    mut raw: RingProducer,
    shared: &Arc<CaptureShared>,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let mut scratch = vec![0f32; SCRATCH_FRAMES * channels];
    let data_shared = Arc::clone(shared);
    let error_shared = Arc::clone(shared);
    let name = mic.name.clone();
    let on_data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        // Real-time: only arithmetic, a wait-free ring push and relaxed atomics.
        for piece in data.chunks(scratch.len()) {
            let converted = &mut scratch[..piece.len()];
            for (dst, &src) in converted.iter_mut().zip(piece) {
                *dst = src.to_sample::<f32>();
            }
            raw.push(converted);
        }
        data_shared
            .input_frames
            .fetch_add((data.len() / channels) as u64, Ordering::Relaxed);
    };
    let on_error = move |error: cpal::Error| match error.kind() {
        // Glitches and reroutes are survivable; the lost audio shows up nowhere else, so log it.
        cpal::ErrorKind::Xrun
        | cpal::ErrorKind::DeviceChanged
        | cpal::ErrorKind::RealtimeDenied => {
            tracing::warn!(device = %name, %error, "audio input glitch");
        }
        _ => error_shared.fail(device_error(&name, error)),
    };
    mic.device
        .build_input_stream::<T, _, _>(*config, on_data, on_error, None)
        .map_err(|e| device_error(&mic.name, e))
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .or_else(|_| device.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "<unnamed device>".into())
}

fn no_device(error: cpal::Error) -> AudioError {
    AudioError::NoInputDevice(error.to_string())
}

fn device_error(name: &str, error: cpal::Error) -> AudioError {
    match error.kind() {
        cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::HostUnavailable => {
            AudioError::NoInputDevice(format!("{name}: {error}"))
        }
        _ => AudioError::Device(format!("{name}: {error}")),
    }
}

fn capture_format(config: &cpal::SupportedStreamConfig) -> Option<CaptureFormat> {
    Some(CaptureFormat {
        sample_rate: config.sample_rate(),
        channels: config.channels(),
        sample_format: sample_format(config.sample_format())?,
    })
}

fn cpal_format(format: SampleFormat) -> cpal::SampleFormat {
    match format {
        SampleFormat::I8 => cpal::SampleFormat::I8,
        SampleFormat::I16 => cpal::SampleFormat::I16,
        SampleFormat::I24 => cpal::SampleFormat::I24,
        SampleFormat::I32 => cpal::SampleFormat::I32,
        SampleFormat::I64 => cpal::SampleFormat::I64,
        SampleFormat::U8 => cpal::SampleFormat::U8,
        SampleFormat::U16 => cpal::SampleFormat::U16,
        SampleFormat::U24 => cpal::SampleFormat::U24,
        SampleFormat::U32 => cpal::SampleFormat::U32,
        SampleFormat::U64 => cpal::SampleFormat::U64,
        SampleFormat::F32 => cpal::SampleFormat::F32,
        SampleFormat::F64 => cpal::SampleFormat::F64,
    }
}

fn sample_format(format: cpal::SampleFormat) -> Option<SampleFormat> {
    Some(match format {
        cpal::SampleFormat::I8 => SampleFormat::I8,
        cpal::SampleFormat::I16 => SampleFormat::I16,
        cpal::SampleFormat::I24 => SampleFormat::I24,
        cpal::SampleFormat::I32 => SampleFormat::I32,
        cpal::SampleFormat::I64 => SampleFormat::I64,
        cpal::SampleFormat::U8 => SampleFormat::U8,
        cpal::SampleFormat::U16 => SampleFormat::U16,
        cpal::SampleFormat::U24 => SampleFormat::U24,
        cpal::SampleFormat::U32 => SampleFormat::U32,
        cpal::SampleFormat::U64 => SampleFormat::U64,
        cpal::SampleFormat::F32 => SampleFormat::F32,
        cpal::SampleFormat::F64 => SampleFormat::F64,
        _ => return None,
    })
}
