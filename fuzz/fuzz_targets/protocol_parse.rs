//! Arbitrary bytes into every parser of hark-protocol: the native text parser (and `start`
//! validation), the OpenAI event parser (and session updates, base64 audio), the server
//! message parser, and `decode_pcm` with a format picked by the first byte.
//!
//! Beyond "no panic", it checks the documented contracts: error codes come from the
//! documented set for each entry point, decoded samples are finite and in [-1, 1], and a
//! parsed native message survives serialise → parse unchanged.

#![no_main]

use hark_protocol::openai::{self, ClientEvent, TranscriptionConfig};
use hark_protocol::{
    ClientMessage, Encoding, ErrorCode, Limits, MAX_CONTROL_BYTES, decode_pcm, parse_client_text,
    parse_server_text, validate_start,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        native_text(text);
        openai_text(text);
        let _ = parse_server_text(text);
    }
    if let Some((&selector, bytes)) = data.split_first() {
        pcm(selector, bytes);
    }
});

fn native_text(text: &str) {
    match parse_client_text(text) {
        Ok(msg) => {
            if let ClientMessage::Start(start) = &msg {
                let _ = validate_start(start, &Limits::default());
            }
            let json = serde_json::to_string(&msg).expect("client messages serialise");
            // Defaults filled in can push a message near the cap over it.
            if json.len() <= MAX_CONTROL_BYTES {
                assert_eq!(parse_client_text(&json).as_ref(), Ok(&msg), "{json}");
            }
        }
        Err(e) => assert!(
            matches!(
                e.code,
                ErrorCode::BadJson
                    | ErrorCode::BadMessage
                    | ErrorCode::UnknownType
                    | ErrorCode::MessageTooLarge
                    | ErrorCode::UnsupportedEncoding
            ),
            "parse_client_text returned {e}"
        ),
    }
}

fn openai_text(text: &str) {
    let mut config = TranscriptionConfig::new("hark");
    match openai::parse_client_event(text) {
        Ok(ClientEvent::SessionUpdate { session, .. }) => {
            let _ = config.apply(&session, &Limits::default());
            let _ = config.endpointing_ms();
        }
        Ok(ClientEvent::TranscriptionSessionUpdate { session, .. }) => {
            let _ = config.apply_beta(&session);
        }
        Ok(ClientEvent::InputAudioBufferAppend { audio, .. }) => {
            if let Ok(samples) = openai::decode_audio(&audio) {
                assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)));
            }
        }
        Ok(_) => {}
        Err(rejected) => assert!(matches!(
            rejected.error.code,
            ErrorCode::BadJson
                | ErrorCode::BadMessage
                | ErrorCode::UnknownType
                | ErrorCode::MessageTooLarge
        )),
    }
    // The raw input as base64 audio as well.
    if let Err(e) = openai::decode_audio(text) {
        assert!(matches!(
            e.code,
            ErrorCode::InvalidBase64 | ErrorCode::OddByteCount
        ));
    }
}

fn pcm(selector: u8, bytes: &[u8]) {
    let encoding = if selector & 1 == 0 {
        Encoding::S16le
    } else {
        Encoding::F32le
    };
    // 0..=8 channels: zero is a documented error too.
    let channels = u16::from(selector >> 1) % 9;
    match decode_pcm(encoding, channels, bytes) {
        Ok(samples) => {
            assert_eq!(samples.len(), bytes.len() / encoding.bytes_per_sample());
            assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)));
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::OddByteCount | ErrorCode::UnsupportedChannels | ErrorCode::NonFiniteSample
        )),
    }
}
