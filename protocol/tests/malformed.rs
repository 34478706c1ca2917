//! Every class of malformed input gets its documented error code, never a panic.

use hark_protocol::openai::{self, ErrorDetail, ServerEvent, TranscriptionConfig};
use hark_protocol::{
    ClientMessage, Encoding, ErrorCode, ErrorMessage, Limits, MAX_CONTROL_BYTES, ServerMessage,
    decode_pcm, parse_client_text, validate_start,
};

/// The code for a native text frame after parsing and, for `start`, validation.
fn native_code(text: &str) -> Option<ErrorCode> {
    match parse_client_text(text) {
        Err(e) => Some(e.code),
        Ok(ClientMessage::Start(start)) => validate_start(&start, &Limits::default())
            .err()
            .map(|e| e.code),
        Ok(_) => None,
    }
}

fn openai_code(text: &str) -> ErrorCode {
    let event = match openai::parse_client_event(text) {
        Err(rejected) => return rejected.error.code,
        Ok(event) => event,
    };
    let mut config = TranscriptionConfig::new("hark");
    let result = match &event {
        openai::ClientEvent::SessionUpdate { session, .. } => {
            config.apply(session, &Limits::default())
        }
        openai::ClientEvent::TranscriptionSessionUpdate { session, .. } => {
            config.apply_beta(session)
        }
        openai::ClientEvent::InputAudioBufferAppend { audio, .. } => {
            openai::decode_audio(audio).map(drop)
        }
        _ => Ok(()),
    };
    result.expect_err(text).code
}

const START: &str = r#""type":"start","encoding":"s16le""#;

#[test]
fn malformed_json() {
    for text in [
        "",
        " ",
        "{",
        "}",
        "{\"type\":\"close\"} trailing",
        "{'type':'close'}",
        "{\"type\":\"close\",}",
        "{\"type\":\"start\",\"sample_rate\":NaN,\"encoding\":\"s16le\"}",
        "{\"type\":\"start\",\"sample_rate\":Infinity,\"encoding\":\"s16le\"}",
        "{\"type\":\"close\"\u{0}}",
        "\u{feff}{\"type\":\"close\"}",
    ] {
        assert_eq!(native_code(text), Some(ErrorCode::BadJson), "{text:?}");
    }
    let deep = format!("{}{}", "{\"a\":".repeat(2_000), "}".repeat(2_000));
    assert_eq!(native_code(&deep), Some(ErrorCode::BadJson));
}

#[test]
fn not_an_object_or_no_type() {
    for text in [
        "null",
        "42",
        "\"close\"",
        "[]",
        "{}",
        "{\"type\":null}",
        "{\"Type\":\"close\"}",
    ] {
        assert_eq!(native_code(text), Some(ErrorCode::BadMessage), "{text}");
    }
}

#[test]
fn unknown_types_are_not_fatal() {
    for text in [
        "{\"type\":\"\"}",
        "{\"type\":\"Close\"}",
        "{\"type\":\"finalize\",\"x\":[1]}",
    ] {
        let err = parse_client_text(text).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType, "{text}");
        let msg = ErrorMessage::from_error(&err, false);
        assert!(!msg.fatal);
    }
    // The type is quoted back, but not without bound.
    let long = format!("{{\"type\":\"{}\"}}", "x".repeat(10_000));
    assert!(parse_client_text(&long).unwrap_err().message.len() < 400);
}

#[test]
fn wrong_field_types_and_missing_fields() {
    for fields in [
        "",                                       // sample_rate missing
        r#","sample_rate":null"#,                 // null where required
        r#","sample_rate":"16000""#,              // string for integer
        r#","sample_rate":true"#,                 // boolean for integer
        r#","sample_rate":[16000]"#,              // array for integer
        r#","sample_rate":16000,"channels":"2""#, // string for integer
        r#","sample_rate":16000,"language":5"#,   // number for string
        r#","sample_rate":16000,"partials":1"#,   // number for boolean
        r#","sample_rate":16000,"resume":"s-1""#, // string for object
        r#","sample_rate":16000,"resume":{}"#,    // resume without session_id
    ] {
        let text = format!("{{{START}{fields}}}");
        assert_eq!(native_code(&text), Some(ErrorCode::BadMessage), "{text}");
    }
    assert_eq!(
        native_code(r#"{"type":"start","sample_rate":16000}"#),
        Some(ErrorCode::BadMessage)
    );
    assert_eq!(
        native_code(r#"{"type":"start","sample_rate":16000,"encoding":7}"#),
        Some(ErrorCode::BadMessage)
    );
}

#[test]
fn huge_and_negative_numbers() {
    for (value, code) in [
        ("-16000", ErrorCode::BadMessage),
        ("-0.5", ErrorCode::BadMessage),
        ("4294967296", ErrorCode::BadMessage), // u32::MAX + 1
        ("18446744073709551616", ErrorCode::BadMessage),
        ("1e400", ErrorCode::BadJson),
        ("-1e400", ErrorCode::BadJson),
        ("4294967295", ErrorCode::UnsupportedSampleRate),
        ("0", ErrorCode::UnsupportedSampleRate),
    ] {
        let text = format!("{{{START},\"sample_rate\":{value}}}");
        assert_eq!(native_code(&text), Some(code), "{text}");
    }
    let text = format!("{{{START},\"sample_rate\":16000,\"endpointing_ms\":4294967295}}");
    assert_eq!(native_code(&text), Some(ErrorCode::InvalidField));
    let text = format!("{{{START},\"sample_rate\":16000,\"v\":-1}}");
    assert_eq!(native_code(&text), Some(ErrorCode::BadMessage));
}

#[test]
fn oversize_text_frames() {
    let padding = " ".repeat(MAX_CONTROL_BYTES);
    let text = format!("{{\"type\":\"keepalive\"}}{padding}");
    assert_eq!(native_code(&text), Some(ErrorCode::MessageTooLarge));
    let at_limit = format!(
        "{{\"type\":\"keepalive\"}}{}",
        " ".repeat(MAX_CONTROL_BYTES - 20)
    );
    assert_eq!(at_limit.len(), MAX_CONTROL_BYTES);
    assert_eq!(native_code(&at_limit), None);

    let audio = "A".repeat(openai::MAX_EVENT_BYTES);
    let text = format!("{{\"type\":\"input_audio_buffer.append\",\"audio\":\"{audio}\"}}");
    assert_eq!(openai_code(&text), ErrorCode::MessageTooLarge);
}

#[test]
fn audio_frames() {
    let limits = Limits::default();
    assert_eq!(
        limits
            .check_frame(limits.max_frame_bytes as usize + 1)
            .unwrap_err()
            .code,
        ErrorCode::FrameTooLarge
    );
    for (encoding, channels, len) in [
        (Encoding::S16le, 1, 1),
        (Encoding::S16le, 1, 3),
        (Encoding::S16le, 2, 6),
        (Encoding::F32le, 1, 6),
        (Encoding::F32le, 2, 4),
        (Encoding::F32le, 2, 20),
    ] {
        let err = decode_pcm(encoding, channels, &vec![0; len]).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::OddByteCount,
            "{encoding} ×{channels} {len} B"
        );
        assert!(ErrorMessage::from_error(&err, true).fatal);
    }
    for bits in [0x7fc0_0000u32, 0xffc0_0001, 0x7f80_0000, 0xff80_0000] {
        let mut frame = 0.5f32.to_le_bytes().to_vec();
        frame.extend_from_slice(&bits.to_le_bytes());
        let err = decode_pcm(Encoding::F32le, 1, &frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::NonFiniteSample, "{bits:#x}");
    }
    // Subnormals and out-of-range finite values are fine (clamped).
    let mut frame = f32::MIN_POSITIVE.to_le_bytes().to_vec();
    frame.extend_from_slice(&f32::MAX.to_le_bytes());
    assert_eq!(
        decode_pcm(Encoding::F32le, 1, &frame).unwrap(),
        vec![f32::MIN_POSITIVE, 1.0]
    );
}

#[test]
fn fatality_before_and_after_start() {
    let err = parse_client_text("{").unwrap_err();
    assert!(ErrorMessage::from_error(&err, false).fatal);
    assert!(!ErrorMessage::from_error(&err, true).fatal);
    let msg = ServerMessage::from(ErrorMessage::from_error(&err, true));
    assert!(msg.to_json().contains("\"code\":\"bad_json\""));
}

#[test]
fn openai_malformed_events() {
    let cases = [
        ("{", ErrorCode::BadJson),
        ("[]", ErrorCode::BadMessage),
        (r#"{"type":"response.create"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"input_audio_buffer.append"}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":12}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"AAA@"}"#,
            ErrorCode::InvalidBase64,
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#,
            ErrorCode::OddByteCount,
        ),
        (r#"{"type":"session.update"}"#, ErrorCode::BadMessage),
        (
            r#"{"type":"session.update","session":"x"}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"session.update","session":{"type":"realtime"}}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/opus"}}}}}"#,
            ErrorCode::UnsupportedEncoding,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcmu","rate":16000}}}}}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":7000}}}}}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":-24000}}}}}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"type":"magic_vad"}}}}}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"threshold":1.5}}}}}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"silence_duration_ms":10}}}}}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"transcription":{"delay":"instant"}}}}}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"session.update","session":{"audio":{"input":{"transcription":{"language":"english"}}}}}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"transcription_session.update","session":{"input_audio_format":"g722"}}"#,
            ErrorCode::UnsupportedEncoding,
        ),
    ];
    for (text, code) in cases {
        assert_eq!(openai_code(text), code, "{text}");
    }
}

#[test]
fn openai_tolerates_unknown_fields() {
    let text = r#"{"type":"session.update","event_id":"e","future":1,"session":{"type":"transcription","model":"x","audio":{"input":{"format":{"type":"audio/pcm","rate":24000,"bits":16},"transcription":{"model":"m","keywords":["a"]}},"output":{}},"tracing":"auto"}}"#;
    let event = openai::parse_client_event(text).unwrap();
    let openai::ClientEvent::SessionUpdate { session, .. } = event else {
        panic!("wrong event");
    };
    let mut config = TranscriptionConfig::new("hark");
    config.apply(&session, &Limits::default()).unwrap();
    assert_eq!(config.transcription.model.as_deref(), Some("m"));
}

/// The error event in the README is what the daemon would send for that input.
#[test]
fn openai_error_event_matches_readme() {
    let err = openai::decode_audio("AAA@").unwrap_err();
    let event = ServerEvent::Error {
        event_id: "event_0011".into(),
        error: ErrorDetail::from_error(&err, Some("evt_42")),
    };
    let json = event.to_json();
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&json),
        "README error example out of date:\n{json}"
    );
}
