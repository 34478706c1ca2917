//! Every message of both protocols survives serialise → parse unchanged.

use hark_protocol::openai::{
    self, AudioFormat, AudioInputUpdate, AudioUpdate, BetaSessionUpdate, ClientEvent, Eagerness,
    ErrorDetail, Item, LogProb, NoiseReduction, ServerEvent, SessionUpdate, Transcription,
    TranscriptionConfig, TurnDetection, TurnDetectionType, Usage,
};
use hark_protocol::{
    AudioSource, ClientMessage, CloseReason, Closed, Encoding, ErrorCode, ErrorMessage, Final,
    Flush, Flushed, Limits, Partial, Ready, Resume, ServerMessage, SpeechStarted, SpeechStopped,
    Start, Task, parse_client_text, parse_server_text,
};

fn server_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Ready(Ready {
            v: 1,
            session_id: "s-1".into(),
            model: "gemma-4-e2b".into(),
            resumed: true,
            acked_samples: u64::MAX,
            endpointing_ms: 0,
            limits: Limits {
                resume_window_s: 60,
                encodings: vec![Encoding::F32le],
                ..Limits::default()
            },
        }),
        ServerMessage::SpeechStarted(SpeechStarted { at: 0.0 }),
        ServerMessage::Partial(Partial {
            segment_id: 3,
            committed: "Grüß Gott, ".into(),
            tentative: "wie geht's? \"quoted\" \u{1F600}\n".into(),
            start: 12.5,
            end: 14.25,
            acked_samples: 230_400,
            lag_s: 0.125,
            emit_latency_s: 0.3,
        }),
        ServerMessage::Final(Final {
            segment_id: 3,
            text: "日本語のテキスト".into(),
            start: 12.5,
            end: 15.0,
            acked_samples: 240_000,
            lag_s: 0.0,
            emit_latency_s: 1e-3,
        }),
        ServerMessage::SpeechStopped(SpeechStopped { at: 15.5 }),
        ServerMessage::Flushed(Flushed {
            id: None,
            acked_samples: 0,
        }),
        ServerMessage::Flushed(Flushed {
            id: Some("f".into()),
            acked_samples: 1,
        }),
        ServerMessage::Error(ErrorMessage {
            code: ErrorCode::ServerBusy,
            message: "full".into(),
            fatal: true,
            field: None,
            retry_after_s: Some(3),
        }),
        ServerMessage::Error(ErrorMessage {
            code: ErrorCode::InvalidField,
            message: "bad".into(),
            fatal: true,
            field: Some("label".into()),
            retry_after_s: None,
        }),
        ServerMessage::Closed(Closed {
            reason: CloseReason::ClientClose,
            acked_samples: 16_000,
            audio_s: 1.0,
            segments: 0,
        }),
        ServerMessage::Closed(Closed {
            reason: CloseReason::Error(ErrorCode::ShuttingDown),
            acked_samples: 0,
            audio_s: 0.0,
            segments: 7,
        }),
    ]
}

#[test]
fn server_messages_round_trip() {
    for code in ErrorCode::ALL {
        let msg = ServerMessage::Error(ErrorMessage {
            code,
            message: code.to_string(),
            fatal: code.is_fatal(true),
            field: None,
            retry_after_s: None,
        });
        assert_eq!(parse_server_text(&msg.to_json()).unwrap(), Some(msg));
    }
    for msg in server_messages() {
        let json = msg.to_json();
        assert_eq!(parse_server_text(&json).unwrap(), Some(msg), "{json}");
    }
}

#[test]
fn client_messages_round_trip() {
    let full = Start {
        v: 1,
        sample_rate: 44_100,
        encoding: Encoding::F32le,
        channels: 2,
        language: Some("pt-BR".into()),
        task: Task::Translate,
        target_language: Some("en".into()),
        partials: false,
        endpointing_ms: Some(0),
        label: Some("captions ✓".into()),
        resume: Some(Resume {
            session_id: "s-9".into(),
            last_final_segment_id: Some(12),
        }),
        source: AudioSource::File,
    };
    let messages = [
        ClientMessage::Start(full),
        ClientMessage::Start(Start::new(8_000, Encoding::S16le, 1)),
        ClientMessage::Flush(Flush::default()),
        ClientMessage::Flush(Flush {
            id: Some("x".into()),
        }),
        ClientMessage::Close,
        ClientMessage::Keepalive,
    ];
    for msg in messages {
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(parse_client_text(&json).unwrap(), msg, "{json}");
    }
}

#[test]
fn openai_client_events_round_trip() {
    let ga = SessionUpdate {
        kind: Some("transcription".into()),
        audio: Some(AudioUpdate {
            input: Some(AudioInputUpdate {
                format: Some(AudioFormat::pcm(16_000)),
                noise_reduction: Some(None),
                transcription: Some(Transcription {
                    model: Some("gpt-realtime-whisper".into()),
                    language: Some("en".into()),
                    prompt: None,
                    delay: Some("low".into()),
                }),
                turn_detection: Some(Some(TurnDetection {
                    kind: TurnDetectionType::SemanticVad,
                    eagerness: Some(Eagerness::Low),
                    idle_timeout_ms: Some(5_000),
                    ..TurnDetection::default()
                })),
            }),
        }),
        include: Some(None),
    };
    let beta = BetaSessionUpdate {
        input_audio_format: Some("pcm16".into()),
        input_audio_transcription: Some(Transcription::default()),
        turn_detection: Some(None),
        input_audio_noise_reduction: Some(Some(NoiseReduction {
            kind: Some("far_field".into()),
        })),
        include: Some(Some(vec!["item.input_audio_transcription.logprobs".into()])),
    };
    let events = [
        ClientEvent::SessionUpdate {
            event_id: Some("e1".into()),
            session: ga,
        },
        ClientEvent::SessionUpdate {
            event_id: None,
            session: SessionUpdate::default(),
        },
        ClientEvent::TranscriptionSessionUpdate {
            event_id: None,
            session: beta,
        },
        ClientEvent::InputAudioBufferAppend {
            event_id: None,
            audio: openai::encode_audio(&[0.1, -0.2]),
        },
        ClientEvent::InputAudioBufferCommit {
            event_id: Some("c".into()),
        },
        ClientEvent::InputAudioBufferClear { event_id: None },
    ];
    for event in events {
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(openai::parse_client_event(&json).unwrap(), event, "{json}");
    }
}

#[test]
fn openai_server_events_round_trip() {
    let config = TranscriptionConfig::new("hark");
    let detail = ErrorDetail {
        kind: "invalid_request_error".into(),
        code: Some("bad_json".into()),
        message: "oops".into(),
        param: None,
        event_id: Some("e".into()),
    };
    let events = [
        ServerEvent::SessionCreated {
            event_id: "1".into(),
            session: config.session("s"),
        },
        ServerEvent::SessionUpdated {
            event_id: "2".into(),
            session: config.session("s"),
        },
        ServerEvent::TranscriptionSessionCreated {
            event_id: "3".into(),
            session: config.beta_session("s"),
        },
        ServerEvent::TranscriptionSessionUpdated {
            event_id: "4".into(),
            session: config.beta_session("s"),
        },
        ServerEvent::SpeechStarted {
            event_id: "5".into(),
            audio_start_ms: 10,
            item_id: "i".into(),
        },
        ServerEvent::SpeechStopped {
            event_id: "6".into(),
            audio_end_ms: 20,
            item_id: "i".into(),
        },
        ServerEvent::Committed {
            event_id: "7".into(),
            item_id: "i2".into(),
            previous_item_id: Some("i".into()),
        },
        ServerEvent::Cleared {
            event_id: "8".into(),
        },
        ServerEvent::TranscriptionDelta {
            event_id: "9".into(),
            item_id: "i".into(),
            content_index: 0,
            delta: " wörld".into(),
            logprobs: None,
        },
        ServerEvent::TranscriptionCompleted {
            event_id: "10".into(),
            item_id: "i".into(),
            content_index: 0,
            transcript: "hello wörld".into(),
            usage: Usage::Duration { seconds: 1.5 },
            logprobs: Some(vec![
                LogProb::new("hello", -0.25),
                LogProb::new(" wörld", -1.5),
            ]),
        },
        ServerEvent::ItemAdded {
            event_id: "13".into(),
            previous_item_id: None,
            item: Item::input_audio("i"),
        },
        ServerEvent::ItemDone {
            event_id: "14".into(),
            previous_item_id: Some("h".into()),
            item: Item::input_audio("i"),
        },
        ServerEvent::ItemCreated {
            event_id: "15".into(),
            previous_item_id: None,
            item: Item::input_audio("i"),
        },
        ServerEvent::TranscriptionFailed {
            event_id: "11".into(),
            item_id: "i".into(),
            content_index: 0,
            error: detail.clone(),
        },
        ServerEvent::Error {
            event_id: "12".into(),
            error: detail,
        },
    ];
    for event in events {
        let json = event.to_json();
        let back: ServerEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["event_id"],
            event.event_id(),
            "every event carries event_id"
        );
    }
}
