//! Bounded parsing of `{"type": …}` JSON envelopes, shared by both protocols.
//!
//! A message is parsed once into a `serde_json::Value` (syntax errors become `bad_json`;
//! serde_json caps nesting at 128 levels, so hostile input cannot exhaust the stack), its
//! `type` is read, and only then is the value decoded into the typed message (schema errors
//! become `bad_message`). Splitting the two steps is what lets an unknown `type` be told
//! apart from a malformed known one.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, ProtocolError, excerpt};

/// Longest `type` value quoted back in an error message.
const QUOTE_MAX: usize = 64;

/// A parsed envelope: the `type` and the whole object (including `type`).
pub(crate) struct Envelope {
    pub kind: String,
    pub object: Map<String, Value>,
}

impl Envelope {
    /// Parses `text` (at most `max_bytes` long) into an object with a string `type`.
    pub fn parse(text: &str, max_bytes: usize) -> Result<Self, ProtocolError> {
        if text.len() > max_bytes {
            return Err(ProtocolError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "text message of {} bytes exceeds the {max_bytes}-byte limit",
                    text.len()
                ),
            ));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ProtocolError::new(ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                format!("expected a JSON object, got {}", json_kind(&value)),
            ));
        };
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    format!("`type` must be a string, got {}", json_kind(other)),
                )
                .with_field("type"));
            }
            None => {
                return Err(
                    ProtocolError::new(ErrorCode::BadMessage, "missing field `type`")
                        .with_field("type"),
                );
            }
        };
        Ok(Self { kind, object })
    }

    /// A string member of the object, if present and a string.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.object.get(name).and_then(Value::as_str)
    }

    /// Decodes the whole object into a typed message.
    pub fn decode<T: DeserializeOwned>(self) -> Result<T, ProtocolError> {
        let kind = self.kind;
        serde_json::from_value(Value::Object(self.object)).map_err(|e| {
            ProtocolError::new(
                ErrorCode::BadMessage,
                format!("invalid `{}` message: {e}", excerpt(&kind, QUOTE_MAX)),
            )
        })
    }

    /// The `unknown_type` error for this envelope.
    pub fn unknown(&self, known: &[&str]) -> ProtocolError {
        ProtocolError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type `{}` (known: {})",
                excerpt(&self.kind, QUOTE_MAX),
                known.join(", ")
            ),
        )
        .with_field("type")
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serde helper for fields where `null` and absence mean different things
/// (`"turn_detection": null` turns VAD off, a missing `turn_detection` leaves it as is).
/// Use with `#[serde(default, deserialize_with = "double_option")]`.
pub(crate) fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        Envelope::parse(text, 1024).err().map(|e| e.code).unwrap()
    }

    #[test]
    fn classifies_envelope_failures() {
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("nope"), ErrorCode::BadJson);
        assert_eq!(code("[1]"), ErrorCode::BadMessage);
        assert_eq!(code("{\"a\":1}"), ErrorCode::BadMessage);
        assert_eq!(code("{\"type\":5}"), ErrorCode::BadMessage);
        assert_eq!(code(&" ".repeat(1025)), ErrorCode::MessageTooLarge);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            Envelope::parse(&deep, 100_000).err().unwrap().code,
            ErrorCode::BadJson
        );
    }
}
