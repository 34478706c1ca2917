//! A finished transcript in each `response_format`.
//!
//! `verbose_json` follows the SDK's `TranscriptionVerbose` / `TranscriptionSegment`. Hark does
//! not compute Whisper's per-segment quality figures, so `avg_logprob`, `compression_ratio`
//! and `no_speech_prob` are fixed at 0, 1 and 0, and `temperature` is 0 (greedy decoding).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::form::ResponseFormat;
use super::job::Transcript;
use crate::session::round_ms;

/// Which endpoint answered (verbose_json's `task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Transcribe,
    Translate,
}

/// The response body for `format`; `language` is the lower-case English name of the output
/// language, as OpenAI reports it.
pub fn render(t: &Transcript, format: ResponseFormat, kind: Kind, language: &str) -> Response {
    match format {
        ResponseFormat::Json => axum::Json(json!({
            "text": t.text(),
            "usage": {"type": "duration", "seconds": duration_seconds(t.duration)},
        }))
        .into_response(),
        ResponseFormat::VerboseJson => axum::Json(verbose(t, kind, language)).into_response(),
        ResponseFormat::Text => plain(format!("{}\n", t.text()), "text/plain; charset=utf-8"),
        ResponseFormat::Srt => plain(srt(t), "text/plain; charset=utf-8"),
        ResponseFormat::Vtt => plain(vtt(t), "text/vtt; charset=utf-8"),
    }
}

fn plain(body: String, content_type: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// OpenAI bills whole seconds, rounded up.
fn duration_seconds(duration: f64) -> u64 {
    duration.ceil() as u64
}

fn verbose(t: &Transcript, kind: Kind, language: &str) -> serde_json::Value {
    let segments: Vec<_> = t
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": i,
                "seek": (s.start * 100.0).round() as u64,
                "start": round_ms(s.start),
                "end": round_ms(s.end),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            })
        })
        .collect();
    let task = match kind {
        Kind::Transcribe => "transcribe",
        Kind::Translate => "translate",
    };
    json!({
        "task": task,
        "language": language,
        "duration": round_ms(t.duration),
        "text": t.text(),
        "segments": segments,
        "usage": {"type": "duration", "seconds": duration_seconds(t.duration)},
    })
}

/// SubRip: numbered cues, `HH:MM:SS,mmm`.
pub fn srt(t: &Transcript) -> String {
    let mut out = String::new();
    for (i, s) in t.segments.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(s.start, ','),
            timestamp(s.end, ','),
            s.text
        ));
    }
    out
}

/// WebVTT: a header, then cues with `HH:MM:SS.mmm`.
pub fn vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in &t.segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            s.text
        ));
    }
    out
}

fn timestamp(seconds: f64, separator: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::job::Segment;

    fn transcript() -> Transcript {
        Transcript {
            segments: vec![
                Segment {
                    start: 0.25,
                    end: 1.5,
                    text: "hello world".into(),
                    tokens: vec![1, 2],
                },
                Segment {
                    start: 3661.0,
                    end: 3662.0049,
                    text: "again".into(),
                    tokens: vec![3],
                },
            ],
            duration: 3662.3,
        }
    }

    #[test]
    fn subtitles() {
        let t = transcript();
        assert_eq!(
            srt(&t),
            "1\n00:00:00,250 --> 00:00:01,500\nhello world\n\n\
             2\n01:01:01,000 --> 01:01:02,005\nagain\n\n"
        );
        assert_eq!(
            vtt(&t),
            "WEBVTT\n\n00:00:00.250 --> 00:00:01.500\nhello world\n\n\
             01:01:01.000 --> 01:01:02.005\nagain\n\n"
        );
        assert_eq!(t.text(), "hello world again");
    }

    #[test]
    fn verbose_json_segments() {
        let v = verbose(&transcript(), Kind::Translate, "english");
        assert_eq!(v["task"], "translate");
        assert_eq!(v["language"], "english");
        assert_eq!(v["text"], "hello world again");
        assert_eq!(v["segments"][1]["id"], 1);
        assert_eq!(v["segments"][1]["seek"], 366100);
        assert_eq!(v["segments"][0]["tokens"], json!([1, 2]));
        assert_eq!(v["usage"]["seconds"], 3663);
    }
}
