//! The offline reference: `hark transcribe --json --no-vad`, what an ungated session
//! (`endpointing_ms: 0`) of the whole file must finalise to.

use std::path::Path;
use std::process::Command;

/// The text `hark transcribe --no-vad` produces for `file` with `model` (offline, the whole file
/// as speech, cut only at the model's span limit).
pub fn transcribe(model: Option<&Path>, file: &Path, max_new_tokens: usize) -> String {
    let mut cmd = Command::new(crate::binary("hark"));
    cmd.args(["transcribe", "--json", "--no-vad", "--max-new-tokens"])
        .arg(max_new_tokens.to_string());
    if let Some(model) = model {
        cmd.arg("--model").arg(model);
    }
    let out = cmd.arg(file).output().expect("run hark transcribe");
    assert!(
        out.status.success(),
        "hark transcribe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hark transcribe --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    line["text"]
        .as_str()
        .expect("`text` in hark transcribe --json")
        .to_owned()
}
