//! The `hark` binary end to end on the fixture checkpoints and the embedded default model.

mod common;

use std::path::PathBuf;

use common::{
    assert_says, clip, clip_text, clip_words, demo_model, hark, json_lines, repo, run_err, run_ok,
};

fn golden_ids(model: &str, clip: &str) -> Vec<u32> {
    let bytes =
        std::fs::read(repo().join(format!("tests/fixtures/golden/{model}/{clip}.safetensors")))
            .unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("generated_ids").unwrap();
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

#[test]
fn transcribe_json_reports_the_reference_greedy_ids() {
    let (stdout, _) = run_ok(
        hark()
            // The references are of whole clips: no voice-activity gating.
            .args([
                "transcribe",
                "--json",
                "--no-vad",
                "--max-new-tokens",
                "12",
                "--model",
            ])
            .arg(repo().join("tests/fixtures/models/e2b-shaped"))
            .arg(repo().join("tests/fixtures/audio/fox.wav"))
            .arg(repo().join("tests/fixtures/audio/lights.wav")),
    );
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2);
    for (line, clip) in lines.iter().zip(["fox", "lights"]) {
        let ids: Vec<u32> = serde_json::from_value(line["spans"][0]["token_ids"].clone()).unwrap();
        assert_eq!(ids, golden_ids("e2b-shaped", clip), "{clip}");
        assert!(
            line["file"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{clip}.wav"))
        );
        assert!(line["timings"]["encoder_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(line["spans"][0]["stop"], "max_tokens");
    }
}

#[test]
fn dump_writes_the_contract_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("fox.safetensors");
    run_ok(
        hark()
            .args(["dump", "--model"])
            .arg(repo().join("tests/fixtures/models/varied"))
            .arg("--audio")
            .arg(repo().join("tests/fixtures/audio/callback.wav"))
            .arg("--out")
            .arg(&out_file),
    );
    let bytes = std::fs::read(&out_file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let golden =
        std::fs::read(repo().join("tests/fixtures/golden/varied/callback.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden).unwrap();
    for name in [
        "mel",
        "mel_mask",
        "subsample",
        "audio_layer.0",
        "audio_layer.1",
        "audio_tower",
        "audio_embeds",
        "prompt_ids",
        "prompt_logits_last",
        "generated_ids",
    ] {
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("dump lacks {name}"));
        let g = golden.tensor(name).unwrap();
        assert_eq!(t.dtype(), g.dtype(), "{name}");
        assert_eq!(t.shape()[1..], g.shape()[1..], "{name}");
    }
    assert_eq!(
        st.tensor("prompt_ids").unwrap().data(),
        golden.tensor("prompt_ids").unwrap().data()
    );
    assert_eq!(
        st.tensor("generated_ids").unwrap().data(),
        golden.tensor("generated_ids").unwrap().data()
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_wav = dir.path().join("notes.wav");
    std::fs::write(&not_wav, b"this is not audio at all").unwrap();
    let truncated = dir.path().join("truncated.wav");
    let whole = std::fs::read(repo().join("tests/fixtures/audio/hello.wav")).unwrap();
    std::fs::write(&truncated, &whole[..30]).unwrap();
    let empty = dir.path().join("empty.wav");
    hound::WavWriter::create(
        &empty,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap()
    .finalize()
    .unwrap();
    let model = repo().join("tests/fixtures/models/e2b-shaped");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "--model".into(),
                "/no/such/model".into(),
                repo().join("tests/fixtures/audio/hello.wav").into(),
            ],
            "/no/such/model",
        ),
        (
            vec![
                "--model".into(),
                model.clone().into(),
                dir.path().join("missing.wav").into(),
            ],
            "missing.wav",
        ),
        (
            vec!["--model".into(), model.clone().into(), not_wav.into()],
            "notes.wav",
        ),
        (
            vec!["--model".into(), model.clone().into(), truncated.into()],
            "truncated.wav",
        ),
        (
            vec!["--model".into(), model.clone().into(), empty.into()],
            "empty.wav",
        ),
        (
            vec![
                "--model".into(),
                model.into(),
                "--device".into(),
                "cuda".into(),
                repo().join("tests/fixtures/audio/hello.wav").into(),
            ],
            "cuda",
        ),
    ];
    for (args, needle) in cases {
        // The default log filter: exactly what a user sees (no decoder-library chatter).
        let out = hark()
            .env_remove("HARK_LOG")
            .arg("transcribe")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn streamed_transcription_without_vad_equals_offline() {
    for model in ["e2b-shaped", "varied"] {
        let model = repo().join(format!("tests/fixtures/models/{model}"));
        let files: Vec<PathBuf> = ["fox", "callback", "lights", "hello", "april"]
            .iter()
            .map(|c| repo().join(format!("tests/fixtures/audio/{c}.wav")))
            .collect();
        let (offline, _) = run_ok(
            hark()
                .args([
                    "transcribe",
                    "--no-vad",
                    "--max-new-tokens",
                    "12",
                    "--model",
                ])
                .arg(&model)
                .args(&files),
        );
        for chunk in ["40", "1000"] {
            let (streamed, _) = run_ok(
                hark()
                    .args([
                        "transcribe",
                        "--max-new-tokens",
                        "12",
                        "--no-vad",
                        "--stream-chunk-ms",
                        chunk,
                        "--model",
                    ])
                    .arg(&model)
                    .args(&files),
            );
            assert_eq!(streamed, offline, "chunk {chunk} ms");
        }
    }
}

/// `--stream-chunk-ms` runs the file through harkd's serving engine (its worker logs every
/// stream it opens), and the finals equal the offline text.
#[test]
fn streamed_transcription_goes_through_the_serving_engine() {
    let numbers = clip("numbers.wav");
    let (offline, _) = run_ok(hark().args(["transcribe", "--no-vad"]).arg(&numbers));
    let (streamed, stderr) = run_ok(
        hark()
            .env("HARK_LOG", "hark_streaming=debug")
            .args(["transcribe", "--no-vad", "--stream-chunk-ms", "200"])
            .arg(&numbers),
    );
    assert_eq!(streamed, offline);
    assert!(!streamed.trim().is_empty());
    assert_eq!(
        stderr.matches("engine: stream opened").count(),
        1,
        "{stderr}"
    );
    if demo_model().is_some() {
        assert_says(&streamed, &clip_words("numbers.wav"));
    }
}

#[test]
fn streamed_transcription_with_vad_skips_silence() {
    let (stdout, _) = run_ok(
        hark()
            .args([
                "transcribe",
                "--json",
                "--stream-chunk-ms",
                "100",
                "--model",
            ])
            .arg(repo().join("tests/fixtures/models/e2b-shaped"))
            .arg(repo().join("tests/fixtures/audio/silence.wav"))
            .arg(repo().join("tests/fixtures/audio/noise.wav")),
    );
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["finals"].as_array().unwrap().len(), 0, "{line}");
        assert_eq!(v["text"], "");
    }
}

/// `hark eval`: per-utterance hypotheses are `hark transcribe`'s, and the word errors add up.
/// One reference is the model's own offline output (no errors), one a real sentence.
#[test]
fn eval_scores_offline_and_streaming_hypotheses() {
    let model = repo().join("tests/fixtures/models/e2b-shaped");
    let fox = repo().join("tests/fixtures/audio/fox.wav");
    let (own, _) = run_ok(
        hark()
            .args(["transcribe", "--max-new-tokens", "8", "--model"])
            .arg(&model)
            .arg(&fox),
    );
    let own_text = own.trim().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let lines = [
        serde_json::json!({"id": "self", "path": fox, "text": own_text}),
        serde_json::json!({"id": "real", "path": fox, "text": "The quick brown fox jumps over the lazy dog."}),
    ];
    std::fs::write(
        &manifest,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let (stdout, _) = run_ok(
        hark()
            .args(["eval", "--json", "--max-new-tokens", "8", "--model"])
            .arg(&model)
            .arg("--manifest")
            .arg(&manifest),
    );
    let rows = json_lines(&stdout);
    assert_eq!(rows.len(), 3, "two utterances and a summary");
    let (me, real, summary) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(me["offline"], own_text.as_str());
    assert_eq!(me["offline_errors"], 0, "{me}");
    assert_eq!(real["words"], 9);
    assert!(real["streaming"].is_string(), "{real}");
    let sum = |key: &str| {
        rows[..2]
            .iter()
            .map(|r| r[key].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(summary["utterances"], 2);
    assert_eq!(summary["words"].as_u64(), Some(sum("words")));
    assert_eq!(
        summary["offline_errors"].as_u64(),
        Some(sum("offline_errors"))
    );
    assert_eq!(
        summary["streaming_errors"].as_u64(),
        Some(sum("streaming_errors"))
    );
    let wer = summary["offline_wer"].as_f64().unwrap();
    assert!((wer - sum("offline_errors") as f64 / sum("words") as f64).abs() < 1e-12);

    // A manifest naming a missing file fails with the file's name.
    std::fs::write(&manifest, "{\"audio\": \"nope.wav\", \"text\": \"x\"}\n").unwrap();
    let stderr = run_err(
        hark()
            .args(["eval", "--model"])
            .arg(&model)
            .arg("--manifest")
            .arg(&manifest),
    );
    assert!(stderr.contains("nope.wav"), "{stderr}");
}

/// The README's first command, exactly: the embedded default model, nothing but the file.
#[test]
fn the_readme_command_transcribes_a_committed_clip_with_the_embedded_model() {
    let out = hark()
        .current_dir(repo())
        .args(["transcribe", "tests/fixtures/audio/numbers.wav"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if demo_model().is_none() {
        // A checkout without the model builds without one, and says so.
        assert!(!out.status.success());
        assert!(stderr.contains("embeds no default model"), "{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let said = String::from_utf8(out.stdout).unwrap();
    assert_eq!(said.trim(), clip_text("numbers.wav"), "{said:?}");
}
