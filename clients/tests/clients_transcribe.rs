//! `hark transcribe --server` through the real harkd, in every output format.

mod common;

use common::*;

/// Parses an SRT or WebVTT file into (start_ms, end_ms, text) cues, checking the syntax.
fn cues(text: &str, vtt: bool) -> Vec<(u64, u64, String)> {
    let body = if vtt {
        text.strip_prefix("WEBVTT\n\n").expect("WEBVTT header")
    } else {
        text
    };
    let sep = if vtt { '.' } else { ',' };
    let parse = |t: &str| -> u64 {
        let (hms, ms) = t
            .split_once(sep)
            .unwrap_or_else(|| panic!("bad time {t:?}"));
        let p: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        assert_eq!(p.len(), 3, "{t:?}");
        ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + ms.parse::<u64>().unwrap()
    };
    let mut out = Vec::new();
    for (i, block) in body.split_terminator("\n\n").enumerate() {
        let mut lines = block.lines();
        if !vtt {
            assert_eq!(lines.next().unwrap(), (i + 1).to_string(), "cue index");
        }
        let (a, b) = lines
            .next()
            .unwrap()
            .split_once(" --> ")
            .expect("cue timing");
        let text: Vec<&str> = lines.collect();
        assert!(!text.is_empty() && text.len() <= 2, "{block:?}");
        out.push((parse(a), parse(b), text.join(" ")));
    }
    for w in out.windows(2) {
        assert!(w[0].1 <= w[1].0, "cues overlap: {w:?}");
    }
    assert!(out.iter().all(|(a, b, _)| a < b));
    out
}

#[test]
fn transcribe_through_the_daemon_in_every_format() {
    let daemon = Daemon::start(&[]);
    let server = daemon.url();

    let (json, _) = run_ok(
        hark()
            .args(["transcribe", "--server", &server, "--format", "json"])
            .arg(clip("coffee.wav"))
            .arg(clip("hello.wav")),
    );
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{json}");
    for (line, file) in lines.iter().zip(["coffee.wav", "hello.wav"]) {
        assert!(line["file"].as_str().unwrap().ends_with(file));
        let duration = hound::WavReader::open(clip(file)).unwrap().duration() as f64 / 16_000.0;
        assert!(
            (line["audio_seconds"].as_f64().unwrap() - duration).abs() < 1e-3,
            "{line}"
        );
        let segments = line["segments"].as_array().unwrap();
        assert!(!segments.is_empty(), "{line}");
        for s in segments {
            let (a, b) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
            assert!(0.0 <= a && a <= b && b <= duration + 0.05, "{s}");
        }
        assert!(line["session_id"].as_str().unwrap().starts_with("s-"));
        assert_says(line["text"].as_str().unwrap(), &clip_words(file));
    }

    let (srt, _) = run_ok(
        hark()
            .args(["transcribe", "--server", &server, "--format", "srt"])
            .arg(clip("numbers.wav")),
    );
    let srt_cues = cues(&srt, false);
    assert!(!srt_cues.is_empty(), "{srt}");
    let said: Vec<String> = srt_cues.iter().map(|c| c.2.clone()).collect();
    assert_says(&said.join(" "), &clip_words("numbers.wav"));

    // Several files as subtitles go to one file each; the token flag is accepted (the daemon
    // has none) and the language is given by name.
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        hark()
            .args([
                "transcribe",
                "--server",
                &server,
                "--format",
                "vtt",
                "--language",
            ])
            .args(["English", "--token", "unused", "--out-dir"])
            .arg(dir.path())
            .arg(clip("coffee.wav"))
            .arg(clip("hello.wav")),
    );
    for stem in ["coffee", "hello"] {
        let vtt = std::fs::read_to_string(dir.path().join(format!("{stem}.vtt"))).unwrap();
        assert!(!cues(&vtt, true).is_empty(), "{vtt}");
    }

    // Subtitles for several files on stdout would be one invalid document.
    let err = run_err(
        hark()
            .args(["transcribe", "--server", &server, "--format", "srt"])
            .arg(clip("coffee.wav"))
            .arg(clip("hello.wav")),
    );
    assert!(err.contains("--out-dir"), "{err}");
    let err = run_err(
        hark()
            .args(["transcribe", "--server", &server, "--language", "Klingon"])
            .arg(clip("coffee.wav")),
    );
    assert!(err.contains("BCP 47"), "{err}");
}
