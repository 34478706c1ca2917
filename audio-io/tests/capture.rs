//! Capture sources: a file played through the converter thread, and the microphone path
//! (no sound card here: a clean error, plus ALSA's `null` capture device when present).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{bits, fixture};
use hark_audio_io::{
    AudioError, CaptureFormat, CaptureSource, DecodedAudio, FileCapture, MicCapture, Pacing,
    RingConsumer, SampleFormat, audio_ring, decode_file, expected_output_len, list_input_devices,
    to_mono_16k,
};

/// Reads `consumer` until its producer is closed and everything is drained.
fn drain(consumer: &mut RingConsumer) -> Vec<f32> {
    let mut all = Vec::new();
    let mut buf = [0f32; 777];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let closed = consumer.is_closed();
        let n = consumer.pop_into(&mut buf);
        all.extend_from_slice(&buf[..n]);
        if n == 0 {
            if closed {
                return all;
            }
            assert!(Instant::now() < deadline, "the ring was never closed");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn file_capture_delivers_exactly_the_offline_conversion() {
    let audio = decode_file(fixture("hello-44k1-stereo.wav")).unwrap();
    let offline = to_mono_16k(&audio).unwrap();
    for chunk_ms in [1, 20, 500] {
        // A ring far smaller than the clip: delivery has to wait for the reader.
        let (producer, mut consumer) = audio_ring(1_000);
        let handle = FileCapture::new(audio.clone())
            .chunk(Duration::from_millis(chunk_ms))
            .start(producer)
            .unwrap();
        let format = handle.format();
        assert_eq!(
            (format.sample_rate, format.channels, format.sample_format),
            (44_100, 2, SampleFormat::F32)
        );
        let captured = drain(&mut consumer);
        let stats = handle.wait().unwrap();
        assert_eq!(bits(&captured), bits(&offline), "{chunk_ms} ms chunks");
        assert_eq!(stats.input_frames, 46_964);
        assert_eq!(stats.output_samples, offline.len() as u64);
        assert_eq!((stats.input_dropped, stats.output_dropped), (0, 0));
        assert_eq!(consumer.dropped(), 0);
    }
}

#[test]
fn file_capture_opens_and_converts_other_rates() {
    let (producer, mut consumer) = audio_ring(16_000);
    let handle = FileCapture::open(fixture("hello-8k.wav"))
        .unwrap()
        .start(producer)
        .unwrap();
    let captured = drain(&mut consumer);
    handle.wait().unwrap();
    assert_eq!(captured.len() as u64, expected_output_len(8_520, 8_000));
    let offline = to_mono_16k(&decode_file(fixture("hello-8k.wav")).unwrap()).unwrap();
    assert_eq!(bits(&captured), bits(&offline));
}

#[test]
fn real_time_pacing_follows_the_wall_clock() {
    let audio = decode_file(fixture("hello.wav")).unwrap(); // 1.065 s
    let (producer, mut consumer) = audio_ring(32_000);
    let started = Instant::now();
    let handle = FileCapture::new(audio.clone())
        .pacing(Pacing::RealTime)
        .chunk(Duration::from_millis(20))
        .start(producer)
        .unwrap();

    thread::sleep(Duration::from_millis(400));
    let early = consumer.available();
    // About 400 ms of audio by now; far from all of it, and more than nothing.
    assert!(
        (3_200..=9_600).contains(&early),
        "{early} samples after 400 ms"
    );
    assert!(!handle.is_finished());

    let captured = drain(&mut consumer);
    let elapsed = started.elapsed();
    let stats = handle.wait().unwrap();
    assert!(
        elapsed >= Duration::from_millis(1_000),
        "a 1.06 s clip took {elapsed:?}"
    );
    assert_eq!(captured.len(), audio.samples.len());
    assert_eq!(stats.output_samples, audio.samples.len() as u64);
}

#[test]
fn dropping_the_handle_stops_capture_and_closes_the_ring() {
    let audio = decode_file(fixture("april.wav")).unwrap();
    let total = audio.samples.len();
    let (producer, mut consumer) = audio_ring(total);
    let handle = FileCapture::new(audio)
        .pacing(Pacing::RealTime)
        .start(producer)
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    drop(handle);
    assert!(stopped_at.elapsed() < Duration::from_millis(500));
    assert!(
        consumer.is_closed(),
        "the ring must be closed once the handle is gone"
    );
    let captured = drain(&mut consumer);
    assert!(
        captured.len() > 1_600 && captured.len() < total / 2,
        "{} of {total} samples",
        captured.len()
    );
}

#[test]
fn stop_reports_the_counters() {
    let audio = decode_file(fixture("april.wav")).unwrap();
    let (producer, consumer) = audio_ring(1_000_000);
    let handle = FileCapture::new(audio)
        .pacing(Pacing::RealTime)
        .start(producer)
        .unwrap();
    thread::sleep(Duration::from_millis(150));
    let stats = handle.stop().unwrap();
    assert!(stats.input_frames >= 1_600, "{stats:?}");
    assert_eq!(stats.output_samples, consumer.available() as u64);
    assert!(consumer.is_closed());
}

#[test]
fn a_vanished_reader_does_not_hang_the_capture() {
    let audio = decode_file(fixture("april.wav")).unwrap();
    let (producer, consumer) = audio_ring(256);
    let handle = FileCapture::new(audio).start(producer).unwrap();
    thread::sleep(Duration::from_millis(50));
    drop(consumer);
    let started = Instant::now();
    let stats = handle.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stats.output_dropped > 0, "{stats:?}");
}

#[test]
fn unsupported_file_formats_are_rejected_at_start() {
    let audio = DecodedAudio {
        samples: vec![0.0; 4_000],
        sample_rate: 4_000,
        channels: 1,
    };
    let (producer, consumer) = audio_ring(1_000);
    match FileCapture::new(audio).start(producer) {
        Err(AudioError::UnsupportedSampleRate { rate: 4_000, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        consumer.is_closed(),
        "a failed start must still close the ring"
    );
}

#[test]
fn a_file_ending_inside_a_frame_is_reported() {
    let mut audio = decode_file(fixture("hello-44k1-stereo.wav")).unwrap();
    audio.samples.push(0.1);
    let (producer, mut consumer) = audio_ring(64_000);
    let handle = FileCapture::new(audio).start(producer).unwrap();
    let captured = drain(&mut consumer);
    assert_eq!(captured.len(), 17_039);
    assert!(matches!(
        handle.wait(),
        Err(AudioError::IncompleteFrame {
            samples: 1,
            channels: 2
        })
    ));
}

#[test]
fn missing_microphones_give_a_clean_error() {
    // Listing never panics, with or without a sound card.
    let devices = list_input_devices();
    assert!(
        matches!(devices, Ok(_) | Err(AudioError::NoInputDevice(_))),
        "{devices:?}"
    );
    match MicCapture::by_name("no such microphone, surely") {
        Err(AudioError::NoInputDevice(message)) => assert!(message.contains("no such microphone")),
        other => panic!("{other:?}"),
    }
    match MicCapture::default_device() {
        // This build machine has no sound card.
        Err(AudioError::NoInputDevice(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("expected NoInputDevice, got {other}"),
        Ok(mic) => eprintln!("a default microphone exists here: {mic:?}"),
    }
}

/// ALSA's `null` PCM captures silence on any machine with alsa-lib: a real device callback
/// feeding the raw ring and the converter thread, without a sound card.
fn null_microphone() -> Option<MicCapture> {
    match MicCapture::by_name("alsa:null") {
        Ok(mic) => Some(mic),
        Err(e) => {
            eprintln!("SKIPPED: no ALSA null device ({e})");
            None
        }
    }
}

/// Captures for a moment from the null device, which fills buffers with zero bytes, and checks
/// the level that encodes (0.0 signed or float, -1.0 unsigned) and that every loss is counted.
fn capture_zero_bytes(mic: MicCapture) {
    let format = mic.format();
    let (producer, mut consumer) = audio_ring(16_000 * 5);
    let handle = mic.start(producer).unwrap();
    assert_eq!(handle.format(), format);
    thread::sleep(Duration::from_millis(150));
    let stats = handle.stop().unwrap();
    assert!(consumer.is_closed());
    let captured = drain(&mut consumer);
    assert!(stats.input_frames > 0, "{format:?} {stats:?}");
    let unsigned = matches!(
        format.sample_format,
        SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::U24
            | SampleFormat::U32
            | SampleFormat::U64
    );
    if unsigned {
        // A constant -1.0 (the resampler ramps in from and out to silence at the edges).
        let edge = 200.min(captured.len() / 4);
        let interior = &captured[edge..captured.len() - edge];
        assert!(!interior.is_empty(), "{format:?}");
        assert!(
            interior.iter().all(|&s| (s + 1.0).abs() < 1e-3),
            "{format:?}: {:?}",
            &interior[..4]
        );
    } else {
        assert!(captured.iter().all(|&s| s == 0.0), "{format:?}");
    }

    // The null device delivers frames as fast as it can, far faster than real time, so both
    // rings may overflow. Every lost sample must be accounted for, in whole frames.
    let channels = u64::from(format.channels);
    assert_eq!(stats.input_dropped % channels, 0, "{stats:?}");
    let converted_frames = stats.input_frames - stats.input_dropped / channels;
    assert_eq!(
        stats.output_samples,
        expected_output_len(converted_frames, format.sample_rate),
        "{format:?} {stats:?}"
    );
    assert_eq!(
        captured.len() as u64 + stats.output_dropped,
        stats.output_samples,
        "{stats:?}"
    );
    assert_eq!(consumer.dropped(), stats.output_dropped);
}

#[test]
fn alsa_null_device_runs_the_whole_microphone_path() {
    let Some(mic) = null_microphone() else {
        return;
    };
    assert!(mic.format().channels >= 1);
    capture_zero_bytes(mic);
}

#[test]
fn microphone_formats_can_be_chosen_and_all_convert() {
    let Some(mic) = null_microphone() else {
        return;
    };
    for (sample_rate, channels, sample_format) in [
        (16_000, 1, SampleFormat::I16),
        (44_100, 2, SampleFormat::U8),
        (48_000, 1, SampleFormat::U16),
        (22_050, 2, SampleFormat::I32),
        (8_000, 1, SampleFormat::F32),
    ] {
        let format = CaptureFormat {
            sample_rate,
            channels,
            sample_format,
        };
        let mic = match null_microphone().unwrap().with_format(format) {
            Ok(mic) => mic,
            Err(AudioError::Unsupported(reason)) => {
                eprintln!("SKIPPED {format:?}: {reason}");
                continue;
            }
            Err(other) => panic!("{format:?}: {other}"),
        };
        assert_eq!(mic.format(), format);
        capture_zero_bytes(mic);
    }
    // A rate the converter cannot take is refused when capture starts.
    if let Ok(slow) = mic.with_format(CaptureFormat {
        sample_rate: 4_000,
        channels: 1,
        sample_format: SampleFormat::F32,
    }) {
        let (producer, _consumer) = audio_ring(100);
        assert!(matches!(
            slow.start(producer),
            Err(AudioError::UnsupportedSampleRate { rate: 4_000, .. })
        ));
    }
}
