//! `--language` and friends: a BCP 47 tag or an English name, checked when the flags are
//! parsed; and `hark languages`, the list of what is accepted.

use anyhow::Result;
use clap::Args;
use hark_model::language::{Language, UnknownLanguage, known_languages, parse_language};

/// Clap value parser for flags that name a language for the in-process model.
pub fn language(input: &str) -> Result<Language, UnknownLanguage> {
    parse_language(input)
}

/// Clap value parser for flags sent to harkd: the BCP 47 tag of a tag or a name.
pub fn tag(input: &str) -> Result<String, UnknownLanguage> {
    parse_language(input).map(|language| language.tag)
}

/// `hark languages` has no options.
#[derive(Debug, Clone, Args)]
pub struct LanguagesArgs {}

/// Prints every supported language: tag and name, one per line.
pub fn run(_: LanguagesArgs) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (tag, name) in known_languages() {
        writeln!(out, "{tag:<4} {name}")?;
    }
    Ok(())
}
