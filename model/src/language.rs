//! Languages: BCP 47 tags (the wire format) and the English names Gemma's instruction uses.
//!
//! The prompt says "Transcribe the following speech segment in French into French text", so
//! a language given as a tag needs its English name, and one given by name needs a tag for
//! the wire. Only the primary subtag matters to the model (`pt-BR` and `pt-PT` are both
//! Portuguese).

/// Primary subtags Hark knows, sorted, with the name used in the instruction.
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

/// A language the instruction can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// BCP 47 tag: the one given, or the primary subtag of a language given by name.
    pub tag: String,
    /// English name, as the instruction says it.
    pub name: &'static str,
}

/// A language Hark does not know, or text that is neither a tag nor a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown language `{0}`: give a BCP 47 tag such as en, fr or pt-BR, or an English name \
     such as French (`hark languages` lists the supported ones)"
)]
pub struct UnknownLanguage(pub String);

/// The instruction name of a language tag (`"pt-BR"` → `"Portuguese"`), or `None` when the
/// primary subtag is not one Hark knows. Case-insensitive, as BCP 47 is.
pub fn language_name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next()?.to_ascii_lowercase();
    LANGUAGES
        .binary_search_by(|(code, _)| code.cmp(&primary.as_str()))
        .ok()
        .map(|i| LANGUAGES[i].1)
}

/// Every known primary subtag with its name, sorted by tag.
pub fn known_languages() -> impl Iterator<Item = (&'static str, &'static str)> {
    LANGUAGES.iter().copied()
}

/// A language given as a BCP 47 tag (`fr`, `pt-BR`, any case) or an English name (`French`,
/// any case).
pub fn parse_language(input: &str) -> Result<Language, UnknownLanguage> {
    let input = input.trim();
    let is_tag_shaped = input.split('-').all(|part| {
        (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if is_tag_shaped && let Some(name) = language_name(input) {
        return Ok(Language {
            tag: input.to_owned(),
            name,
        });
    }
    LANGUAGES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(input))
        .map(|(tag, name)| Language {
            tag: (*tag).to_owned(),
            name,
        })
        .ok_or_else(|| UnknownLanguage(input.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(LANGUAGES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn tags_and_names_both_name_a_language() {
        let fr = |tag: &str| Language {
            tag: tag.into(),
            name: "French",
        };
        assert_eq!(parse_language("fr"), Ok(fr("fr")));
        assert_eq!(parse_language("fr-CA"), Ok(fr("fr-CA")));
        assert_eq!(parse_language("French"), Ok(fr("fr")));
        assert_eq!(parse_language(" french "), Ok(fr("fr")));
        assert_eq!(parse_language("ZH-Hant-TW").unwrap().name, "Chinese");
        assert_eq!(parse_language("Norwegian").unwrap().tag, "nb");
    }

    #[test]
    fn unknown_languages_are_refused() {
        for bad in ["Klingon", "tlh", "xx-YY", "", "en_US", "Englishh"] {
            let err = parse_language(bad).unwrap_err();
            assert!(err.to_string().contains("hark languages"), "{err}");
        }
    }
}
