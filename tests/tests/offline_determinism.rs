//! `hark transcribe` prints the same thing every run (issue 17 part 8): the README's own
//! command, run as separate processes with glibc's `MALLOC_PERTURB_` filling fresh and freed
//! heap memory with a different byte each time — a read of uninitialised or stale memory
//! anywhere on the path would change the output.

use std::process::Command;

use hark_tests::{binary, fixtures};

fn transcribe(clip: &str, perturb: u8) -> (String, serde_json::Value) {
    let out = Command::new(binary("hark"))
        .args(["transcribe", "--json"])
        .arg(fixtures().join("audio").join(clip))
        .env("MALLOC_PERTURB_", perturb.to_string())
        .env_remove("HARK_MODEL")
        .output()
        .expect("run hark transcribe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let text = json["text"].as_str().expect("text").to_owned();
    let ids = json["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["token_ids"].clone())
        .collect();
    (text, ids)
}

#[test]
fn the_readme_command_prints_the_same_text_every_run() {
    for clip in ["numbers.wav", "april.wav"] {
        let first = transcribe(clip, 0);
        for perturb in [1u8, 85, 170, 255, 7, 99, 201, 33, 128, 64, 240] {
            assert_eq!(
                transcribe(clip, perturb),
                first,
                "{clip}: run with MALLOC_PERTURB_={perturb} differs"
            );
        }
    }
}
