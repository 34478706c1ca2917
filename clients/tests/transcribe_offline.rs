//! Offline `hark transcribe` with the embedded model: the file is cut where the streaming
//! engine's voice gate cuts it, so long recordings lose nothing and noise gives no text.

mod common;

use common::*;

/// The sentences of the long recordings (fixture clips), each with a word the small
/// demonstration model gets right in it, so a missing or misplaced sentence shows.
const SENTENCES: [(&str, &str); 5] = [
    ("lights", "kitchen"),
    ("numbers", "number"),
    ("coffee", "coffee"),
    ("hello", "world"),
    ("callback", "call"),
];

/// Whether the cue says the sentence's key word.
fn says(text: &str, key: &str) -> bool {
    words(text).iter().any(|w| w == key)
}

fn offline_json(file: &std::path::Path, extra: &[&str]) -> (serde_json::Value, String) {
    let (stdout, stderr) = run_ok(hark().arg("transcribe").args(extra).arg("--json").arg(file));
    let mut lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    (lines.remove(0), stderr)
}

/// (start, end, text) of every non-empty span of an offline JSON result.
fn spans(result: &serde_json::Value) -> Vec<(f64, f64, String)> {
    result["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["start_s"].as_f64().unwrap(),
                s["end_s"].as_f64().unwrap(),
                s["text"].as_str().unwrap().trim().to_owned(),
            )
        })
        .filter(|(_, _, text)| !text.is_empty())
        .collect()
}

#[test]
fn sentences_with_short_gaps_each_get_their_own_timed_cue() {
    if demo_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<String> = SENTENCES.iter().map(|(c, _)| format!("{c}.wav")).collect();
    let clip_refs: Vec<&str> = clips.iter().map(String::as_str).collect();
    let (path, _) = speech_with_gaps(dir.path(), &clip_refs, 1.0);
    let (result, _) = offline_json(&path, &[]);
    let spans = spans(&result);
    assert_eq!(spans.len(), SENTENCES.len(), "{spans:?}");
    // Each cue says its sentence and sits where the sentence is in the file.
    let mut at = 0.0;
    for (((start, end, text), clip), (_, key)) in spans.iter().zip(&clips).zip(SENTENCES) {
        let seconds = hound::WavReader::open(common::clip(clip))
            .unwrap()
            .duration() as f64
            / 16e3;
        assert!(says(text, key), "{clip}: {text:?}");
        assert!(
            *start >= at - 0.35 && *end <= at + seconds + 0.35,
            "{clip}: {start}..{end} vs {at}..{}",
            at + seconds
        );
        at += seconds + 1.0;
    }

    // The same cuts as the streaming engine's: identical segment times.
    let (streamed, _) = offline_json(&path, &["--stream-chunk-ms", "200"]);
    let finals: Vec<(f64, f64)> = streamed["finals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["text"].as_str().unwrap().trim().is_empty())
        .map(|f| (f["start"].as_f64().unwrap(), f["end"].as_f64().unwrap()))
        .collect();
    let offline: Vec<(f64, f64)> = spans.iter().map(|(s, e, _)| (*s, *e)).collect();
    assert_eq!(offline.len(), finals.len(), "{offline:?} vs {finals:?}");
    for (a, b) in offline.iter().zip(&finals) {
        assert!(
            (a.0 - b.0).abs() < 1e-3 && (a.1 - b.1).abs() < 1e-3,
            "{offline:?} vs {finals:?}"
        );
    }

    // Subtitles: one cue per sentence.
    let (srt, _) = run_ok(hark().args(["transcribe", "--format", "srt"]).arg(&path));
    assert_eq!(srt.matches(" --> ").count(), SENTENCES.len(), "{srt}");
}

#[test]
fn a_two_minute_recording_loses_no_sentence_and_reports_progress() {
    if demo_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut clips = Vec::new();
    let mut seconds = 0.0;
    while seconds < 120.0 {
        for (c, _) in SENTENCES {
            let name = format!("{c}.wav");
            seconds += hound::WavReader::open(common::clip(&name))
                .unwrap()
                .duration() as f64
                / 16e3
                + 0.8;
            clips.push(name);
        }
    }
    let clip_refs: Vec<&str> = clips.iter().map(String::as_str).collect();
    let (path, _) = speech_with_gaps(dir.path(), &clip_refs, 0.8);
    let (result, stderr) = offline_json(&path, &[]);
    let spans = spans(&result);
    assert_eq!(spans.len(), clips.len(), "{spans:?}");
    let keys = SENTENCES.iter().cycle().map(|(_, key)| key);
    for ((_, _, text), key) in spans.iter().zip(keys) {
        assert!(says(text, key), "{key:?} not in {text:?}");
    }
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
    assert!(
        !stderr.contains("of audio"),
        "a short job shows no progress: {stderr}"
    );
    // Without a terminal, progress comes as log lines (here every 1 ms instead of 10 s).
    let (stdout, stderr) = run_ok(
        hark()
            .env("HARK_PROGRESS_INTERVAL_MS", "1")
            .arg("transcribe")
            .arg(&path),
    );
    assert_eq!(stdout.trim(), result["text"].as_str().unwrap());
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" of audio ("))
        .collect();
    assert!(progress.len() >= 3, "{stderr}");
    assert!(progress.iter().all(|l| !l.contains('\x1b')), "{stderr}");
}

#[test]
fn noise_and_silence_print_nothing() {
    for clip in ["noise.wav", "silence.wav"] {
        let (stdout, stderr) = run_ok(hark().arg("transcribe").arg(common::clip(clip)));
        assert_eq!(stdout, "", "{clip}: {stderr}");
    }
}
