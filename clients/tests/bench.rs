//! `hark bench` end to end on the tiny synthetic model (E2B's layout, small shapes).

mod common;

use std::path::Path;
use std::process::Command;

use common::{hark, run_err, run_ok};

/// `hark bench` on the built-in tiny synthetic model.
/// `hark bench` on the tiny config, its synthetic checkpoint written under `cache`.
fn tiny_bench(cache: &Path, runs: &str, decode_steps: &str, seconds: &str) -> Command {
    let mut cmd = hark();
    cmd.env("HARK_CACHE_DIR", cache)
        .args(["bench", "--config", "tiny", "--runs", runs])
        .args(["--decode-steps", decode_steps, "--seconds", seconds]);
    cmd
}

#[test]
fn bench_reports_every_stage_and_saves_the_reference_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (stdout, _) = run_ok(
        tiny_bench(cache.path(), "2", "3", "2")
            .args(["--json", "--save-inputs"])
            .arg(dir.path()),
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["audio_tokens"], 50, "2 s of audio is 50 tokens");
    // The ASR prompt: 74 text tokens around the placeholder, which becomes 50 + 2 markers.
    assert_eq!(r["prompt_tokens"], 125);
    assert_eq!(r["backend"], "flex");
    assert_eq!(r["weights"], "f32", "small models default to f32 weights");
    for key in [
        "mel_ms",
        "encoder_ms",
        "audio_prefill_ms",
        "prompt_prefill_ms",
        "decode_ms_per_token",
        "peak_rss_gb",
    ] {
        assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {}", r[key]);
    }
    for stage in ["mel", "encoder", "audio_prefill", "prompt_prefill"] {
        assert_eq!(
            r["samples_ms"][stage].as_array().unwrap().len(),
            2,
            "{stage}"
        );
    }
    let tokens_per_s = r["audio_prefill_tokens_per_s"].as_f64().unwrap();
    let prefill_ms = r["audio_prefill_ms"].as_f64().unwrap();
    assert!((tokens_per_s * prefill_ms / 1e3 - 50.0).abs() < 1e-6);

    // The synthetic checkpoint was written once under the cache and memory-mapped from there.
    let written: Vec<_> = std::fs::read_dir(cache.path().join("bench"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(written[0].join(file).is_file(), "{file}");
    }

    let samples = std::fs::read(dir.path().join("samples.f32")).unwrap();
    assert_eq!(samples.len(), 2 * 16_000 * 4);
    let prompt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("prompt.json")).unwrap()).unwrap();
    let ids = prompt["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 125);
    let at = prompt["audio_at"].as_u64().unwrap() as usize;
    assert_eq!(ids[at - 1], 256_000);
    assert_eq!(ids[at], 258_881);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["text_config"]["hidden_size"], 64);
}

#[test]
fn bench_table_and_bad_flags() {
    let cache = tempfile::tempdir().unwrap();
    let (stdout, _) = run_ok(tiny_bench(cache.path(), "1", "1", "1").args([
        "--text-layers",
        "5",
        "--in-memory",
        "--stream",
    ]));
    assert!(
        stdout.contains("synthetic-tiny, 5 decoder layers"),
        "{stdout}"
    );
    assert!(stdout.contains("decode (1 steps)"), "{stdout}");
    assert!(
        std::fs::read_dir(cache.path()).unwrap().next().is_none(),
        "--in-memory writes no checkpoint"
    );
    // The streaming runs: VAD off, then on, each with a compute real-time factor.
    let stream: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("streaming (320 ms chunks"))
        .skip(2)
        .collect();
    assert_eq!(stream.len(), 2, "{stdout}");
    for (line, vad) in stream.iter().zip(["off", "on"]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], vad, "{line}");
        let rtf: f64 = cols[2].parse().unwrap();
        assert!(rtf > 0.0, "{line}");
    }

    for (flags, message) in [
        (vec!["--config", "tiny", "--seconds", "40"], "--seconds"),
        (vec!["--config", "tiny", "--runs", "0"], "--runs"),
        (
            vec!["--config", "tiny", "--text-layers", "11"],
            "--text-layers",
        ),
        (
            vec!["--config", "/no/such/config.json"],
            "cannot read config",
        ),
        (vec!["--backend", "ndarray", "--weights", "f16"], "ndarray"),
    ] {
        let err = run_err(hark().arg("bench").args(&flags));
        assert!(err.contains(message), "{flags:?}: {err}");
    }
}
