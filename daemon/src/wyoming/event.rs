//! Wyoming framing: one JSON header line, then optional data bytes (more JSON, merged into the
//! header's `data`), then optional payload bytes (raw audio).
//!
//! ```text
//! {"type": "audio-chunk", "data_length": 42, "payload_length": 2048}\n
//! <42 bytes of JSON data><2048 bytes of PCM>
//! ```
//!
//! Every length is bounded before anything is allocated for it, so a hostile header cannot
//! make the daemon read or buffer more than [`FrameLimits`] allow.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The most a peer may send in one event.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Longest header line, bytes (newline included).
    pub header_bytes: usize,
    /// Largest `data_length`.
    pub data_bytes: usize,
    /// Largest `payload_length`.
    pub payload_bytes: usize,
}

/// One Wyoming event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type (`describe`, `audio-chunk`, …).
    pub kind: String,
    /// The header's `data` merged with the data bytes.
    pub data: Map<String, Value>,
    /// The payload bytes (empty when there are none).
    pub payload: Vec<u8>,
}

/// An event that could not be read. Framing is lost after any of these, so the connection
/// must end.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the header line is longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("the header line is not valid JSON: {0}")]
    BadJson(serde_json::Error),
    #[error("the header is not a JSON object with a string `type`")]
    BadHeader,
    #[error("`{field}` is not a non-negative integer")]
    BadLength { field: &'static str },
    #[error("`{field}` is {length} bytes, above the limit of {limit}")]
    TooLarge {
        field: &'static str,
        length: u64,
        limit: usize,
    },
    #[error("the data bytes are not a JSON object: {0}")]
    BadData(String),
    #[error("the connection ended inside an event")]
    Truncated,
    #[error("cannot read from the connection: {0}")]
    Io(#[from] std::io::Error),
}

impl Event {
    /// An event with `data` and no payload.
    pub fn new(kind: &str, data: Value) -> Event {
        let data = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Event {
            kind: kind.to_owned(),
            data,
            payload: Vec::new(),
        }
    }

    /// The wire bytes: the header line, the data bytes when there is data, the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Map::new();
        header.insert("type".into(), Value::String(self.kind.clone()));
        header.insert("version".into(), Value::String(PROTOCOL_VERSION.into()));
        let data = (!self.data.is_empty())
            .then(|| serde_json::to_vec(&self.data).expect("a JSON map serialises"));
        if let Some(d) = &data {
            header.insert("data_length".into(), d.len().into());
        }
        if !self.payload.is_empty() {
            header.insert("payload_length".into(), self.payload.len().into());
        }
        let mut out = serde_json::to_vec(&header).expect("a JSON map serialises");
        out.push(b'\n');
        out.extend_from_slice(data.as_deref().unwrap_or_default());
        out.extend_from_slice(&self.payload);
        out
    }

    /// A string field of `data`.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// The Wyoming protocol version written in headers (the `wyoming` package this was checked
/// against).
pub const PROTOCOL_VERSION: &str = "1.10.2";

/// Read the next event; `None` when the peer closed the connection between events.
pub async fn read_event<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Option<Event>, FrameError> {
    let Some(line) = read_line(reader, limits.header_bytes).await? else {
        return Ok(None);
    };
    let header: Value = serde_json::from_slice(&line).map_err(FrameError::BadJson)?;
    let Value::Object(mut header) = header else {
        return Err(FrameError::BadHeader);
    };
    let Some(Value::String(kind)) = header.remove("type") else {
        return Err(FrameError::BadHeader);
    };
    let mut data = match header.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(FrameError::BadHeader),
    };
    let data_length = length(&header, "data_length", limits.data_bytes)?;
    let payload_length = length(&header, "payload_length", limits.payload_bytes)?;
    if data_length > 0 {
        let bytes = read_exact(reader, data_length).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(extra)) => data.extend(extra),
            Ok(_) => return Err(FrameError::BadData("not an object".into())),
            Err(e) => return Err(FrameError::BadData(e.to_string())),
        }
    }
    let payload = read_exact(reader, payload_length).await?;
    Ok(Some(Event {
        kind,
        data,
        payload,
    }))
}

/// A header length field: absent or null is 0.
fn length(
    header: &Map<String, Value>,
    field: &'static str,
    limit: usize,
) -> Result<usize, FrameError> {
    let length = match header.get(field) {
        None | Some(Value::Null) => return Ok(0),
        Some(v) => v.as_u64().ok_or(FrameError::BadLength { field })?,
    };
    if length > limit as u64 {
        return Err(FrameError::TooLarge {
            field,
            length,
            limit,
        });
    }
    Ok(length as usize)
}

/// One line without its newline, at most `limit` bytes with it; `None` at a clean end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > limit {
            return Err(FrameError::HeaderTooLong { limit });
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            return Ok(Some(line));
        }
    }
}

async fn read_exact<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    n: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut bytes = vec![0; n];
    match reader.read_exact(&mut bytes).await {
        Ok(_) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        header_bytes: 128,
        data_bytes: 64,
        payload_bytes: 16,
    };

    async fn read_all(bytes: &[u8]) -> Vec<Result<Option<Event>, String>> {
        let mut reader = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let r = read_event(&mut reader, &LIMITS).await;
            let stop = !matches!(r, Ok(Some(_)));
            out.push(r.map_err(|e| e.to_string()));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn encoded_events_read_back_with_data_and_payload() {
        let mut chunk = Event::new("audio-chunk", json!({"rate": 16000, "width": 2}));
        chunk.payload = vec![1, 2, 3, 4];
        let describe = Event::new("describe", json!({}));
        let mut wire = chunk.encode();
        wire.extend(describe.encode());
        let events = read_all(&wire).await;
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].as_ref().unwrap().as_ref(), Some(&chunk));
        assert_eq!(events[1].as_ref().unwrap().as_ref(), Some(&describe));
        assert!(matches!(events[2], Ok(None)));
        // The header names the lengths the way the Python package reads them.
        let header: Value =
            serde_json::from_slice(chunk.encode().split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(header["payload_length"], 4);
        assert_eq!(header["type"], "audio-chunk");
    }

    #[tokio::test]
    async fn inline_data_merges_with_data_bytes() {
        let wire = b"{\"type\":\"transcribe\",\"data\":{\"language\":\"en\",\"name\":\"x\"},\"data_length\":15}\n{\"name\":\"hark\"}";
        let events = read_all(wire).await;
        let e = events[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(e.str("language"), Some("en"));
        assert_eq!(e.str("name"), Some("hark"));
    }

    #[tokio::test]
    async fn bad_frames_are_typed_errors() {
        let long = format!("{{\"type\":\"{}\"}}\n", "x".repeat(200));
        let cases: [(&[u8], &str); 8] = [
            (long.as_bytes(), "longer than 128"),
            (b"{\"type\": \n", "not valid JSON"),
            (b"[1,2]\n", "string `type`"),
            (b"{\"data\":{}}\n", "string `type`"),
            (
                b"{\"type\":\"a\",\"payload_length\":-1}\n",
                "payload_length",
            ),
            (
                b"{\"type\":\"a\",\"payload_length\":17}\n",
                "above the limit of 16",
            ),
            (
                b"{\"type\":\"a\",\"payload_length\":8}\nabc",
                "ended inside",
            ),
            (
                b"{\"type\":\"a\",\"data_length\":3}\n[1]",
                "not a JSON object",
            ),
        ];
        for (wire, expected) in cases {
            let events = read_all(wire).await;
            let err = events.last().unwrap().as_ref().unwrap_err();
            assert!(err.contains(expected), "{err} (wanted {expected})");
        }
    }

    #[tokio::test]
    async fn a_header_cut_off_is_truncated_not_a_clean_end() {
        let events = read_all(b"{\"type\":\"describe\"}").await;
        assert!(events[0].as_ref().unwrap_err().contains("ended inside"));
    }
}
