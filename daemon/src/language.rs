//! Languages for the daemon's endpoints: the one table in `hark_model::language` (BCP 47 tags
//! and the English names Gemma's instruction uses), shared with `hark`.

pub use hark_model::language::language_name;

/// Every known primary subtag, for error messages and Wyoming's `info`.
pub fn known_tags() -> impl Iterator<Item = &'static str> {
    hark_model::language::known_languages().map(|(tag, _)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_knows_the_same_languages_as_the_model_crate() {
        assert_eq!(language_name("pt-BR"), Some("Portuguese"));
        assert_eq!(language_name("xx"), None);
        assert!(known_tags().any(|t| t == "fil"));
        assert_eq!(
            known_tags().count(),
            hark_model::language::known_languages().count()
        );
    }
}
