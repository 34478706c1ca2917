//! `tools/device/check.sh`, the one-command GPU check (issue 19), run here without a GPU: it
//! refuses cleanly when no GPU answers, and its CPU dry run goes through every step (numerics
//! against the golden references, the stage bench, the concurrency bisection) and writes the
//! JSON a GPU run writes. Also `hark dump --against`, the comparer the numerics step uses.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hark_tests::{binary, fixtures, repo_root};
use serde_json::Value;

fn script() -> PathBuf {
    repo_root().join("tools/device/check.sh")
}

/// The folder holding the release binaries the script runs.
fn bin_dir() -> PathBuf {
    let hark = binary("hark");
    let dir = hark.parent().expect("binary folder").to_path_buf();
    for b in ["harkd", "hark-loadbench"] {
        assert_eq!(binary(b).parent(), Some(dir.as_path()), "{b} beside hark");
    }
    dir
}

fn read_json(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}):\n{text}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A PATH whose first folder holds an `nvidia-smi` that fails like one without a driver.
fn path_with_broken_nvidia_smi(dir: &Path) -> String {
    let fake = dir.join("nvidia-smi");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2\nexit 9\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn refuses_without_a_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(script())
        .args(["--out".as_ref(), out_dir.as_os_str()])
        .env("PATH", path_with_broken_nvidia_smi(tmp.path()))
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("no NVIDIA GPU usable here"), "{all}");
    assert!(
        all.contains("--dry-run-cpu"),
        "the refusal names the dry run: {all}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusal took {:?}",
        started.elapsed()
    );
    assert!(!out_dir.exists(), "nothing is written when it refuses");

    // Without any nvidia-smi (skipped only where a real one is installed).
    let found = Command::new("bash")
        .args(["-c", "command -v nvidia-smi"])
        .output()
        .unwrap();
    if !found.status.success() {
        let out = Command::new("bash")
            .arg(script())
            .args(["--out".as_ref(), out_dir.as_os_str()])
            .output()
            .unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains("nvidia-smi not found"), "{all}");
    }

    // Bad arguments are refused the same way, before anything runs.
    for args in [
        &["--out"][..],
        &["--bogus"],
        &["--dry-run-cpu", "--out", "x", "--batch", "-1"],
    ] {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn cpu_dry_run_writes_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(script())
        .arg("--dry-run-cpu")
        .args(["--out".as_ref(), out_dir.as_os_str()])
        .args(["--bin".as_ref(), bin_dir().as_os_str()])
        .env_remove("HARK_MODEL")
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    eprintln!("dry run took {:?}", started.elapsed());

    let env = read_json(&out_dir, "env.json");
    assert_eq!(env["mode"], "cpu");
    assert!(env["cores"].as_u64().unwrap() >= 1);

    // (a) every fixture checkpoint, every clip, every stage within the f32 tolerance.
    let numerics = read_json(&out_dir, "numerics.json");
    let runs = numerics["runs"].as_array().unwrap();
    let models: Vec<&str> = runs.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models.len(), 3, "{numerics}");
    for run in runs {
        assert_eq!(run["ok"], true, "{run}");
        assert_eq!(run["tolerance"]["name"], "f32", "{run}");
        let clips = run["clips"].as_array().unwrap();
        assert_eq!(clips.len(), 7, "{}", run["model"]);
        // Some clips have an unclear first margin; across the seven, greedy ids are compared.
        let firm: u64 = clips
            .iter()
            .map(|c| c["greedy"]["firm_steps"].as_u64().unwrap())
            .sum();
        assert!(firm > 0, "{}: no greedy step compared", run["model"]);
        for clip in clips {
            let stages = clip["stages"].as_array().unwrap();
            assert!(stages.len() >= 6, "{clip}");
            for s in stages {
                assert!(s["cosine"].as_f64().unwrap() >= 0.99999, "{s}");
            }
            assert_eq!(clip["greedy"]["ok"], true);
        }
    }

    // (b) the stage figures, per weight format.
    let bench = read_json(&out_dir, "bench.json");
    let runs = bench["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{bench}");
    for run in runs {
        for figure in [
            "encoder_ms",
            "prompt_prefill_ms",
            "decode_ms_per_token",
            "end_to_end_ms",
        ] {
            assert!(run[figure].as_f64().unwrap() > 0.0, "{figure} in {run}");
        }
        assert_eq!(run["stream"].as_array().unwrap().len(), 2, "{run}");
    }

    // (c) the bisection: complete, at least one sustained stream, latencies measured.
    let load = read_json(&out_dir, "loadbench.json");
    assert_eq!(load["complete"], true, "{load}");
    let summary = &load["summary"];
    let sustained = summary["sustained_streams"].as_u64().unwrap();
    assert!(sustained >= 1, "{load}");
    let one = &summary["at_1_stream"];
    assert_eq!(one["streams"], 1);
    assert!(one["final_latency_p95_s"].as_f64().unwrap() > 0.0, "{one}");
    // synthetic:tiny decodes to ids without text: the first hypothesis is what is timed.
    assert!(
        one["first_hypothesis_p50_s"].as_f64().unwrap() > 0.0,
        "{one}"
    );
    assert_eq!(summary["at_sustained"]["streams"].as_u64(), Some(sustained));
    assert!(!load["rounds"].as_array().unwrap().is_empty());

    let done = read_json(&out_dir, "summary.json");
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["sustained_streams"].as_u64(), Some(sustained));
    for file in done["files"].as_array().unwrap() {
        assert!(out_dir.join(file.as_str().unwrap()).is_file(), "{file}");
    }
    let log = std::fs::read_to_string(out_dir.join("check.log")).unwrap();
    assert!(log.contains("hark-loadbench"), "{log}");
}

fn dump_against(model: &str, extra: &[&str]) -> (Output, Value) {
    let out = Command::new(binary("hark"))
        .args(["dump", "--model"])
        .arg(fixtures().join("models").join(model))
        .arg("--audio")
        .arg(fixtures().join("audio"))
        .arg("--against")
        .arg(fixtures().join("golden").join(model))
        .args(extra)
        .env_remove("HARK_MODEL")
        .output()
        .unwrap();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out, json)
}

#[test]
fn dump_against_fails_out_of_tolerance() {
    // f16 weights meet the f16 tolerance...
    let (out, json) = dump_against("varied", &["--weights", "f16"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json["tolerance"]["name"], "f16");
    assert_eq!(json["ok"], true);
    // ...but not the f32 one: the comparer fails, names the clips, and still prints figures.
    let (out, json) = dump_against("varied", &["--weights", "f16", "--tolerance", "f32"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(json["ok"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of the f32 tolerance"));
    let failing = json["clips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false);
    assert!(failing.count() > 0, "{json}");

    // A reference for another checkpoint does not match its shapes: a clear error, no panic.
    let out = Command::new(binary("hark"))
        .args(["dump", "--model"])
        .arg(fixtures().join("models/varied"))
        .arg("--audio")
        .arg(fixtures().join("audio/hello.wav"))
        .arg("--against")
        .arg(fixtures().join("golden/e2b-shaped/hello.safetensors"))
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    assert!(all.contains("error"), "{all}");
}
