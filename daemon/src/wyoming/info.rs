//! The `info` event harkd answers `describe` with: one ASR program, the loaded model and the
//! languages it transcribes, with transcript streaming.

use serde_json::{Value, json};

use super::event::Event;

/// The program name Home Assistant shows for the speech-to-text entity.
pub const PROGRAM: &str = "hark";

/// Where Hark comes from (the workspace's `repository`).
const HOMEPAGE: &str = "https://github.com/hark-asr/hark";

/// `info` for a server running `model`, which transcribes `languages` (BCP 47 tags).
pub fn info(model: &str, languages: &[&str]) -> Event {
    let version = env!("CARGO_PKG_VERSION");
    let asr = json!({
        "name": PROGRAM,
        "description": "Hark streaming speech transcription (Gemma 4 speech path)",
        "attribution": {"name": "Hark", "url": HOMEPAGE},
        "installed": true,
        "version": version,
        "models": [{
            "name": model,
            "description": format!("{model} (speech to text)"),
            "attribution": {"name": "Google Gemma 4", "url": "https://ai.google.dev/gemma"},
            "installed": true,
            "version": version,
            "languages": languages,
        }],
        "supports_transcript_streaming": true,
        // The stream decodes what it is sent until `audio-stop`: Home Assistant's own voice
        // activity detection ends the command.
        "requires_external_vad": true,
    });
    let empty = Value::Array(Vec::new());
    Event::new(
        "info",
        json!({
            "asr": [asr],
            "tts": empty, "handle": empty, "intent": empty, "wake": empty,
            "mic": empty, "snd": empty,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_names_the_model_and_its_languages() {
        let e = info("demo", &["en", "fr"]);
        assert_eq!(e.kind, "info");
        let asr = &e.data["asr"][0];
        assert_eq!(asr["name"], PROGRAM);
        assert_eq!(asr["supports_transcript_streaming"], true);
        assert_eq!(asr["models"][0]["name"], "demo");
        assert_eq!(asr["models"][0]["languages"], json!(["en", "fr"]));
        assert_eq!(e.data["tts"], json!([]));
    }
}
