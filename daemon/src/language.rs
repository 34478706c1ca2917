//! BCP 47 language tags (the wire format) to the language names Gemma's instruction uses.
//!
//! The prompt says "Transcribe the following speech segment in French into French text", so
//! the daemon needs the English name of the language. Only the primary subtag matters
//! (`pt-BR` and `pt-PT` are both Portuguese).

/// Primary subtags Hark knows, with the name used in the instruction.
const LANGUAGES: &[(&str, &str)] = &[
    ("af", "Afrikaans"),
    ("ar", "Arabic"),
    ("bg", "Bulgarian"),
    ("bn", "Bengali"),
    ("ca", "Catalan"),
    ("cs", "Czech"),
    ("cy", "Welsh"),
    ("da", "Danish"),
    ("de", "German"),
    ("el", "Greek"),
    ("en", "English"),
    ("es", "Spanish"),
    ("et", "Estonian"),
    ("eu", "Basque"),
    ("fa", "Persian"),
    ("fi", "Finnish"),
    ("fil", "Filipino"),
    ("fr", "French"),
    ("ga", "Irish"),
    ("gl", "Galician"),
    ("gu", "Gujarati"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("hr", "Croatian"),
    ("hu", "Hungarian"),
    ("id", "Indonesian"),
    ("is", "Icelandic"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("kn", "Kannada"),
    ("ko", "Korean"),
    ("lt", "Lithuanian"),
    ("lv", "Latvian"),
    ("ml", "Malayalam"),
    ("mr", "Marathi"),
    ("ms", "Malay"),
    ("nb", "Norwegian"),
    ("nl", "Dutch"),
    ("no", "Norwegian"),
    ("pa", "Punjabi"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ro", "Romanian"),
    ("ru", "Russian"),
    ("sk", "Slovak"),
    ("sl", "Slovenian"),
    ("sr", "Serbian"),
    ("sv", "Swedish"),
    ("sw", "Swahili"),
    ("ta", "Tamil"),
    ("te", "Telugu"),
    ("th", "Thai"),
    ("tl", "Filipino"),
    ("tr", "Turkish"),
    ("uk", "Ukrainian"),
    ("ur", "Urdu"),
    ("vi", "Vietnamese"),
    ("zh", "Chinese"),
];

/// The instruction name of a language tag (`"pt-BR"` → `"Portuguese"`), or `None` when the
/// primary subtag is not one Hark knows. Case-insensitive, as BCP 47 is.
pub fn language_name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next()?.to_ascii_lowercase();
    LANGUAGES
        .binary_search_by(|(code, _)| code.cmp(&primary.as_str()))
        .ok()
        .map(|i| LANGUAGES[i].1)
}

/// Every known primary subtag, for error messages.
pub fn known_tags() -> impl Iterator<Item = &'static str> {
    LANGUAGES.iter().map(|(code, _)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(LANGUAGES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn primary_subtag_decides() {
        assert_eq!(language_name("en"), Some("English"));
        assert_eq!(language_name("pt-BR"), Some("Portuguese"));
        assert_eq!(language_name("ZH-Hant-TW"), Some("Chinese"));
        assert_eq!(language_name("fil"), Some("Filipino"));
        assert_eq!(language_name("xx"), None);
        assert_eq!(language_name(""), None);
    }
}
