//! Property tests: delta tracking, PCM decoding and the parsers' totality.

use hark_protocol::openai::{self, DeltaTracker};
use hark_protocol::{Encoding, ErrorCode, decode_pcm, encode_pcm, parse_client_text};
use proptest::prelude::*;

/// A final text and the cumulative committed prefixes an engine would report on the way to
/// it (cut at character boundaries, non-decreasing, sometimes repeated).
fn growing_text() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        "\\PC{0,40}",
        prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    )
        .prop_map(|(text, cuts)| {
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            let mut points: Vec<usize> =
                cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
            points.sort_unstable();
            let prefixes = points.into_iter().map(|p| text[..p].to_owned()).collect();
            (text, prefixes)
        })
}

proptest! {
    #[test]
    fn deltas_concatenate_to_the_final_text((text, prefixes) in growing_text()) {
        let mut tracker = DeltaTracker::new();
        let mut concatenated = String::new();
        for prefix in prefixes.iter().chain(std::iter::once(&text)) {
            let delta = tracker.advance(prefix).expect("growing text never retracts");
            concatenated.push_str(delta);
            prop_assert_eq!(&concatenated, prefix);
        }
        prop_assert_eq!(concatenated, text);
    }

    /// Whatever the engine reports (even text that shrinks or changes), the deltas sent
    /// concatenate to what the tracker says was sent, and that text never loses a character.
    #[test]
    fn deltas_never_retract(inputs in prop::collection::vec("[ab ]{0,6}", 0..20)) {
        let mut tracker = DeltaTracker::new();
        let mut concatenated = String::new();
        for input in &inputs {
            let before = tracker.sent().to_owned();
            match tracker.advance(input) {
                Ok(delta) => {
                    concatenated.push_str(delta);
                    prop_assert_eq!(tracker.sent(), input.as_str());
                }
                Err(r) => {
                    prop_assert!(!input.starts_with(&before));
                    prop_assert_eq!(r.sent_bytes, before.len());
                }
            }
            prop_assert!(tracker.sent().starts_with(&before));
            prop_assert_eq!(tracker.sent(), concatenated.as_str());
        }
    }

    #[test]
    fn decode_pcm_is_total(bytes in prop::collection::vec(any::<u8>(), 0..256), channels in 0u16..5, f32le: bool) {
        let encoding = if f32le { Encoding::F32le } else { Encoding::S16le };
        let frame = encoding.bytes_per_sample() * usize::from(channels);
        match decode_pcm(encoding, channels, &bytes) {
            Ok(samples) => {
                prop_assert!(channels > 0 && bytes.len().is_multiple_of(frame));
                prop_assert_eq!(samples.len(), bytes.len() / encoding.bytes_per_sample());
                prop_assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)));
            }
            Err(e) => match e.code {
                ErrorCode::UnsupportedChannels => prop_assert_eq!(channels, 0),
                ErrorCode::OddByteCount => prop_assert!(!bytes.len().is_multiple_of(frame)),
                ErrorCode::NonFiniteSample => prop_assert!(f32le),
                other => prop_assert!(false, "unexpected code {other}"),
            },
        }
    }

    #[test]
    fn pcm_encoding_round_trips(samples in prop::collection::vec(-1.0f32..=1.0, 0..64)) {
        let f = decode_pcm(Encoding::F32le, 1, &encode_pcm(Encoding::F32le, &samples)).unwrap();
        prop_assert_eq!(&f, &samples);
        let s = decode_pcm(Encoding::S16le, 1, &encode_pcm(Encoding::S16le, &samples)).unwrap();
        for (a, b) in s.iter().zip(&samples) {
            prop_assert!((a - b).abs() <= 1.0 / 32768.0, "{} vs {}", a, b);
        }
        let b64 = openai::decode_audio(&openai::encode_audio(&samples)).unwrap();
        prop_assert_eq!(b64, s);
    }

    #[test]
    fn parsers_are_total(text in "\\PC{0,200}") {
        let _ = parse_client_text(&text);
        let _ = openai::parse_client_event(&text);
        let _ = openai::decode_audio(&text);
    }

    /// Arbitrary JSON objects with a known type never panic the parsers either.
    #[test]
    fn parsers_are_total_on_json(
        kind in prop::sample::select(vec!["start", "flush", "close", "keepalive", "session.update", "input_audio_buffer.append"]),
        keys in prop::collection::vec(prop::sample::select(vec!["sample_rate", "encoding", "channels", "language", "resume", "session", "audio", "id", "v"]), 0..5),
        values in prop::collection::vec(prop::sample::select(vec!["null", "0", "-1", "1e300", "\"s16le\"", "\"\"", "[]", "{}", "true", "16000", "{\"session_id\":\"x\"}"]), 0..5),
    ) {
        let fields: Vec<String> = keys.iter().zip(&values).map(|(k, v)| format!(",\"{k}\":{v}")).collect();
        let text = format!("{{\"type\":\"{kind}\"{}}}", fields.concat());
        let _ = parse_client_text(&text);
        let _ = openai::parse_client_event(&text);
    }
}
