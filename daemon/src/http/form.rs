//! The form fields of `/v1/audio/transcriptions` and `/v1/audio/translations`.
//!
//! Fields OpenAI defines that do not change Hark's output are accepted and ignored (`model`
//! names any model: the loaded one answers; `prompt`, `temperature`, `include[]`,
//! `chunking_strategy`); unknown fields are ignored too, as clients add new ones.

use axum::body::Bytes;

use super::errors::ApiError;
use super::multipart::Part;

/// `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl ResponseFormat {
    fn parse(value: &str) -> Result<Self, ApiError> {
        Ok(match value {
            "json" => Self::Json,
            "text" => Self::Text,
            "srt" => Self::Srt,
            "vtt" => Self::Vtt,
            "verbose_json" => Self::VerboseJson,
            other => {
                return Err(ApiError::invalid(
                    "invalid_value",
                    Some("response_format"),
                    format!(
                        "response_format `{other}` is not supported \
                         (use json, text, srt, vtt or verbose_json)"
                    ),
                ));
            }
        })
    }
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct AudioForm {
    /// The uploaded file's bytes.
    pub file: Bytes,
    pub filename: Option<String>,
    pub model: Option<String>,
    /// BCP 47 / ISO 639-1 tag of the spoken language.
    pub language: Option<String>,
    pub response_format: ResponseFormat,
    pub stream: bool,
}

impl AudioForm {
    /// The request the form `parts` make.
    pub fn from_parts(parts: Vec<Part>) -> Result<Self, ApiError> {
        let mut file = None;
        let mut form = AudioForm {
            file: Bytes::new(),
            filename: None,
            model: None,
            language: None,
            response_format: ResponseFormat::Json,
            stream: false,
        };
        for part in parts {
            match part.name.as_str() {
                "file" => {
                    form.filename = part.filename.clone();
                    file = Some(part.data);
                }
                "model" => form.model = Some(text(&part, "model")?.to_owned()),
                "language" => {
                    let tag = text(&part, "language")?.trim();
                    form.language = (!tag.is_empty()).then(|| tag.to_owned());
                }
                "response_format" => {
                    form.response_format = ResponseFormat::parse(text(&part, "response_format")?)?
                }
                "stream" => form.stream = boolean(&part, "stream")?,
                "temperature" => temperature(&part)?,
                "timestamp_granularities[]" | "timestamp_granularities" => granularity(&part)?,
                _ => {}
            }
        }
        form.file = file.ok_or_else(|| {
            ApiError::invalid(
                "missing_required_parameter",
                Some("file"),
                "the request has no `file` field (send the audio as multipart field `file`)",
            )
        })?;
        if form.file.is_empty() {
            return Err(ApiError::invalid(
                "invalid_value",
                Some("file"),
                "the uploaded file is empty",
            ));
        }
        Ok(form)
    }
}

fn text<'a>(part: &'a Part, param: &'static str) -> Result<&'a str, ApiError> {
    part.text().ok_or_else(|| {
        ApiError::invalid(
            "invalid_value",
            Some(param),
            format!("`{param}` is not UTF-8 text"),
        )
    })
}

fn boolean(part: &Part, param: &'static str) -> Result<bool, ApiError> {
    match text(part, param)?.trim() {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" | "" => Ok(false),
        other => Err(ApiError::invalid(
            "invalid_value",
            Some(param),
            format!("`{param}` must be true or false, not `{other}`"),
        )),
    }
}

/// Checked as OpenAI does (0 to 1), then unused: the decoder is greedy.
fn temperature(part: &Part) -> Result<(), ApiError> {
    let value = text(part, "temperature")?.trim();
    match value.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(()),
        _ => Err(ApiError::invalid(
            "invalid_value",
            Some("temperature"),
            format!("temperature must be a number from 0 to 1, not `{value}`"),
        )),
    }
}

/// Segment times are always given (`verbose_json`, `srt`, `vtt`); word times are not.
fn granularity(part: &Part) -> Result<(), ApiError> {
    match text(part, "timestamp_granularities[]")?.trim() {
        "segment" => Ok(()),
        "word" => Err(ApiError::invalid(
            "unsupported_value",
            Some("timestamp_granularities[]"),
            "word timestamps are not supported by this server; use `segment`",
        )),
        other => Err(ApiError::invalid(
            "invalid_value",
            Some("timestamp_granularities[]"),
            format!("timestamp granularity `{other}` is not `segment` or `word`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, value: &[u8]) -> Part {
        Part {
            name: name.into(),
            filename: (name == "file").then(|| "a.wav".into()),
            data: Bytes::copy_from_slice(value),
        }
    }

    #[test]
    fn fields_are_read() {
        let form = AudioForm::from_parts(vec![
            part("model", b"whisper-1"),
            part("file", b"RIFF"),
            part("language", b"fr"),
            part("response_format", b"verbose_json"),
            part("stream", b"true"),
            part("temperature", b"0.2"),
            part("timestamp_granularities[]", b"segment"),
            part("include[]", b"logprobs"),
        ])
        .unwrap();
        assert_eq!(&form.file[..], b"RIFF");
        assert_eq!(form.filename.as_deref(), Some("a.wav"));
        assert_eq!(form.model.as_deref(), Some("whisper-1"));
        assert_eq!(form.language.as_deref(), Some("fr"));
        assert_eq!(form.response_format, ResponseFormat::VerboseJson);
        assert!(form.stream);
    }

    #[test]
    fn bad_fields_name_their_param() {
        let cases: [(Vec<Part>, &str, &str); 6] = [
            (
                vec![part("model", b"x")],
                "file",
                "missing_required_parameter",
            ),
            (vec![part("file", b"")], "file", "invalid_value"),
            (
                vec![part("file", b"x"), part("response_format", b"xml")],
                "response_format",
                "invalid_value",
            ),
            (
                vec![part("file", b"x"), part("temperature", b"1.5")],
                "temperature",
                "invalid_value",
            ),
            (
                vec![
                    part("file", b"x"),
                    part("timestamp_granularities[]", b"word"),
                ],
                "timestamp_granularities[]",
                "unsupported_value",
            ),
            (
                vec![part("file", b"x"), part("stream", b"maybe")],
                "stream",
                "invalid_value",
            ),
        ];
        for (parts, param, code) in cases {
            let err = AudioForm::from_parts(parts).unwrap_err();
            assert_eq!(err.param, Some(param), "{err}");
            assert_eq!(err.code, code, "{err}");
        }
    }
}
