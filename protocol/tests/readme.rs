//! The README is the protocol specification: every example in it is checked against the code.

use std::collections::BTreeSet;

use hark_protocol::openai::{self, ClientEvent, ServerEvent, TranscriptionConfig};
use hark_protocol::{
    ClientMessage, ErrorCode, Fatality, Limits, ServerMessage, parse_client_text,
    parse_server_text, validate_start,
};

const README: &str = include_str!("../README.md");

/// Fenced code blocks as (info string, lines).
fn blocks() -> Vec<(String, Vec<&'static str>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in README.lines() {
        if let Some(info) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some((info.trim().to_owned(), Vec::new())),
            }
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    assert!(current.is_none(), "unterminated code block in README");
    out
}

fn lines_of(info: &str) -> Vec<&'static str> {
    let lines: Vec<_> = blocks()
        .into_iter()
        .filter(|(i, _)| i == info)
        .flat_map(|(_, lines)| lines)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "no `{info}` examples in README");
    lines
}

fn type_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

fn check_server_line(line: &str) -> ServerMessage {
    let msg = parse_server_text(line)
        .unwrap_or_else(|e| panic!("README server example does not parse: {e}\n{line}"))
        .unwrap_or_else(|| panic!("README server example has an unknown type:\n{line}"));
    assert_eq!(msg.to_json(), line, "serialisation differs from README");
    msg
}

fn check_client_line(line: &str) -> ClientMessage {
    let msg = parse_client_text(line)
        .unwrap_or_else(|e| panic!("README client example rejected: {e}\n{line}"));
    let again = parse_client_text(&serde_json::to_string(&msg).unwrap()).unwrap();
    assert_eq!(again, msg, "client example does not round-trip:\n{line}");
    if let ClientMessage::Start(start) = &msg {
        let limits = Limits {
            resume_window_s: 60,
            ..Limits::default()
        };
        validate_start(start, &limits)
            .unwrap_or_else(|e| panic!("README start example invalid: {e}\n{line}"));
    }
    msg
}

#[test]
fn server_examples_are_exact_and_cover_every_type() {
    let mut seen = BTreeSet::new();
    for line in lines_of("json server") {
        check_server_line(line);
        seen.insert(type_of(line));
    }
    let all: BTreeSet<_> = ServerMessage::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "README must show every server message type");
}

#[test]
fn client_examples_parse_and_cover_every_type() {
    let mut seen = BTreeSet::new();
    for line in lines_of("json client") {
        check_client_line(line);
        seen.insert(type_of(line));
    }
    let all: BTreeSet<_> = ClientMessage::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "README must show every client message type");
}

#[test]
fn session_transcript_is_valid_and_consistent() {
    let mut server = Vec::new();
    for line in lines_of("text session") {
        if let Some(json) = line.strip_prefix("S: ") {
            server.push(check_server_line(json));
        } else if let Some(json) = line.strip_prefix("C: {") {
            check_client_line(&format!("{{{json}"));
        } else {
            assert!(
                line.starts_with("C: [binary"),
                "bad transcript line: {line}"
            );
        }
    }
    assert!(matches!(server.first(), Some(ServerMessage::Ready(_))));
    assert!(matches!(server.last(), Some(ServerMessage::Closed(_))));
    // committed text only grows and the final starts with it; acks never go backwards.
    let mut committed = String::new();
    let mut acked = 0;
    for msg in &server {
        match msg {
            ServerMessage::Partial(p) => {
                assert!(p.committed.starts_with(&committed));
                committed = p.committed.clone();
                assert!(p.acked_samples >= acked);
                acked = p.acked_samples;
            }
            ServerMessage::Final(f) => {
                assert!(f.text.starts_with(&committed));
                assert!(f.acked_samples >= acked);
                acked = f.acked_samples;
            }
            ServerMessage::Closed(c) => {
                assert!(c.acked_samples >= acked);
                assert_eq!(c.audio_s, c.acked_samples as f64 / 16_000.0);
            }
            _ => {}
        }
    }
}

#[test]
fn rejected_inputs_get_the_documented_code() {
    let limits = Limits::default();
    for line in lines_of("text rejects") {
        let (code, input) = line.split_once(' ').unwrap();
        let input = input.trim_start();
        let expected: ErrorCode = serde_json::from_value(serde_json::json!(code)).unwrap();
        assert_ne!(
            expected,
            ErrorCode::Unknown,
            "unknown code `{code}` in README"
        );
        let got = match parse_client_text(input) {
            Err(e) => e.code,
            Ok(ClientMessage::Start(start)) => match validate_start(&start, &limits) {
                Err(e) => e.code,
                Ok(()) => panic!("README says `{code}` but it was accepted: {input}"),
            },
            Ok(other) => panic!("README says `{code}` but it parsed as {other:?}"),
        };
        assert_eq!(got, expected, "{input}");
    }
}

#[test]
fn error_table_matches_the_code() {
    let mut rows = BTreeSet::new();
    for line in README.lines() {
        let cells: Vec<_> = line.split('|').map(str::trim).collect();
        // | `code` | fatal | close | when |
        if cells.len() != 6 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`');
        let Ok(code) = serde_json::from_value::<ErrorCode>(serde_json::json!(name)) else {
            continue;
        };
        if code == ErrorCode::Unknown || !["yes", "no", "before start"].contains(&cells[2]) {
            continue;
        }
        let fatality = match cells[2] {
            "yes" => Fatality::Always,
            "no" => Fatality::Never,
            _ => Fatality::BeforeStart,
        };
        assert_eq!(code.fatality(), fatality, "fatal column of `{name}`");
        let close = if fatality == Fatality::Never {
            "—".to_owned()
        } else {
            code.close_code().to_string()
        };
        assert_eq!(cells[3], close, "close column of `{name}`");
        assert!(rows.insert(code.as_str()), "`{name}` listed twice");
    }
    let all: BTreeSet<_> = ErrorCode::ALL.into_iter().map(ErrorCode::as_str).collect();
    assert_eq!(rows, all, "README error table must list every code once");
}

#[test]
fn openai_client_examples_parse_and_cover_every_type() {
    let mut seen = BTreeSet::new();
    for line in lines_of("json openai-client") {
        let event = openai::parse_client_event(line)
            .unwrap_or_else(|e| panic!("README OpenAI example rejected: {e}\n{line}"));
        let again = openai::parse_client_event(&serde_json::to_string(&event).unwrap());
        assert_eq!(again.unwrap(), event);
        let mut config = TranscriptionConfig::new("gemma-4-e2b");
        match &event {
            ClientEvent::SessionUpdate { session, .. } => {
                config.apply(session, &Limits::default()).unwrap();
            }
            ClientEvent::TranscriptionSessionUpdate { session, .. } => {
                config.apply_beta(session).unwrap();
            }
            ClientEvent::InputAudioBufferAppend { audio, .. } => {
                openai::decode_audio(audio).unwrap();
            }
            _ => {}
        }
        seen.insert(type_of(line));
    }
    let all: BTreeSet<_> = ClientEvent::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all);
}

#[test]
fn openai_server_examples_are_exact_and_cover_every_type() {
    let mut seen = BTreeSet::new();
    for line in lines_of("json openai-server") {
        let event: ServerEvent = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("README OpenAI event does not parse: {e}\n{line}"));
        assert_eq!(event.to_json(), line, "serialisation differs from README");
        seen.insert(type_of(line));
    }
    assert_eq!(
        seen.len(),
        15,
        "README must show all 15 OpenAI server events: {seen:?}"
    );
}

/// The session objects in the README are what the config code produces, so the documented
/// defaults and update semantics are the real ones.
#[test]
fn openai_session_examples_come_from_the_config() {
    let events: Vec<ServerEvent> = lines_of("json openai-server")
        .into_iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |kind: &str| {
        events
            .iter()
            .find(|e| serde_json::to_value(e).unwrap()["type"] == kind)
            .unwrap()
            .clone()
    };
    let mut config = TranscriptionConfig::new("gemma-4-e2b");
    let id = "sess_8WbN3sJq6eYc0Hd5Gm2TfK";
    assert_eq!(
        find("session.created"),
        ServerEvent::SessionCreated {
            event_id: "event_4kP0uQ7cHn2VwR9xTb1LzA".into(),
            session: config.session(id)
        }
    );
    assert_eq!(
        find("transcription_session.created"),
        ServerEvent::TranscriptionSessionCreated {
            event_id: "event_4kP0uQ7cHn2VwR9xTb1LzA".into(),
            session: config.beta_session(id)
        }
    );
    let updates: Vec<ClientEvent> = lines_of("json openai-client")
        .into_iter()
        .map(|l| openai::parse_client_event(l).unwrap())
        .collect();
    let mut ga = config.clone();
    let Some(ClientEvent::SessionUpdate { session, .. }) = updates.iter().find(|e| {
        matches!(
            e,
            ClientEvent::SessionUpdate {
                event_id: Some(_),
                ..
            }
        )
    }) else {
        panic!("no GA update with event_id in README");
    };
    ga.apply(session, &Limits::default()).unwrap();
    assert_eq!(
        find("session.updated"),
        ServerEvent::SessionUpdated {
            event_id: "event_9dLs2Xo5Vg8Ni1Qr4Uy7Bc".into(),
            session: ga.session(id)
        }
    );
    let Some(ClientEvent::TranscriptionSessionUpdate { session, .. }) = updates
        .iter()
        .find(|e| matches!(e, ClientEvent::TranscriptionSessionUpdate { .. }))
    else {
        panic!("no beta update in README");
    };
    config.apply_beta(session).unwrap();
    assert_eq!(
        find("transcription_session.updated"),
        ServerEvent::TranscriptionSessionUpdated {
            event_id: "event_9dLs2Xo5Vg8Ni1Qr4Uy7Bc".into(),
            session: config.beta_session(id)
        }
    );
}
