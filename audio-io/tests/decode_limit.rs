//! `decode_bytes_within` refuses audio longer than its limit, and stops decoding there: an
//! upload of a few hundred kilobytes of compressed audio can hold hours.

mod common;

use common::{fixture, have_sox, sox, sox_supports};
use hark_audio_io::{AudioError, decode_bytes, decode_bytes_within};

#[test]
fn a_wav_longer_than_the_limit_is_refused_before_decoding() {
    let bytes = std::fs::read(fixture("hello.wav")).unwrap();
    let whole = decode_bytes(&bytes).unwrap();
    let seconds = whole.duration_secs();
    match decode_bytes_within(&bytes, seconds / 2.0) {
        Err(AudioError::TooLong { limit_s }) => assert_eq!(limit_s, seconds / 2.0),
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert_eq!(decode_bytes_within(&bytes, seconds + 1.0).unwrap(), whole);
}

#[test]
fn hours_of_compressed_audio_stop_at_the_limit() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("hello.wav");
    let mut formats = vec!["flac"];
    if sox_supports("ogg") {
        formats.push("ogg");
    }
    for format in formats {
        // hello.wav repeated to well over half an hour.
        let out = dir.path().join(format!("long.{format}"));
        sox(&[
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "repeat",
            "2000",
        ]);
        let bytes = std::fs::read(&out).unwrap();
        let started = std::time::Instant::now();
        match decode_bytes_within(&bytes, 30.0) {
            Err(AudioError::TooLong { limit_s }) => assert_eq!(limit_s, 30.0),
            other => panic!(
                "{format}: expected TooLong, got {:?}",
                other.map(|a| a.duration_secs())
            ),
        }
        eprintln!(
            "{format}: {} KiB refused after {:.0} ms",
            bytes.len() / 1024,
            started.elapsed().as_secs_f64() * 1e3
        );
        // The same file within a generous limit decodes whole.
        let whole = decode_bytes_within(&bytes, 1e6).unwrap();
        assert!(
            whole.duration_secs() > 1800.0,
            "{format}: {} s",
            whole.duration_secs()
        );
    }
}
