//! A client of the OpenAI Realtime transcription events, written from OpenAI's published
//! event reference: it builds client events as plain JSON (not through hark-protocol's types)
//! and reads server events as JSON values, so the daemon is checked against the published
//! shapes rather than against its own serializer.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::native::RECV_LIMIT;

/// What the socket delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event(Value),
    Binary(usize),
    Close(Option<u16>),
    Ended,
}

/// One Realtime connection.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
}

impl Client {
    /// Connect to `ws://host:port/v1/realtime?intent=transcription` with extra headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
        let mut request = url.into_client_request().expect("URL");
        for (k, v) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Client { ws, closed: false }
    }

    pub async fn send(&mut self, event: Value) {
        self.ws
            .send(Message::Text(event.to_string().into()))
            .await
            .expect("send an event");
    }

    pub async fn send_raw_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send a text frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send a binary frame");
    }

    /// `input_audio_buffer.append` of mono samples as base64 PCM16.
    pub async fn append(&mut self, samples: &[f32]) {
        let bytes = hark_protocol::encode_pcm(hark_protocol::Encoding::S16le, samples);
        let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.send(json!({"type": "input_audio_buffer.append", "audio": audio}))
            .await;
    }

    /// Append mono samples at `rate` in pieces of `piece_ms`, paced at real time when asked.
    pub async fn append_paced(
        &mut self,
        samples: &[f32],
        rate: u32,
        piece_ms: u32,
        realtime: bool,
    ) {
        let piece = (rate as usize * piece_ms as usize / 1000).max(1);
        let t0 = Instant::now();
        let mut sent = 0;
        for chunk in samples.chunks(piece) {
            if realtime {
                let due =
                    t0 + Duration::from_secs_f64((sent + chunk.len()) as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
            }
            self.append(chunk).await;
            sent += chunk.len();
        }
    }

    /// The next frame (failing the test after [`RECV_LIMIT`]).
    pub async fn recv(&mut self) -> Received {
        self.recv_timeout(RECV_LIMIT)
            .await
            .unwrap_or_else(|| panic!("no event from harkd within {RECV_LIMIT:?}"))
    }

    pub async fn recv_timeout(&mut self, limit: Duration) -> Option<Received> {
        if self.closed {
            return Some(Received::Ended);
        }
        let read = async {
            loop {
                let Some(frame) = self.ws.next().await else {
                    self.closed = true;
                    return Received::Ended;
                };
                match frame {
                    Ok(Message::Text(t)) => {
                        return Received::Event(
                            serde_json::from_str(t.as_str()).expect("server events are JSON"),
                        );
                    }
                    Ok(Message::Binary(b)) => return Received::Binary(b.len()),
                    Ok(Message::Close(f)) => {
                        self.closed = true;
                        return Received::Close(f.map(|f| u16::from(f.code)));
                    }
                    Ok(_) => continue,
                    Err(_) => {
                        self.closed = true;
                        return Received::Ended;
                    }
                }
            }
        };
        tokio::time::timeout(limit, read).await.ok()
    }

    /// The next event (panics on a close or a non-event frame).
    pub async fn event(&mut self) -> Value {
        match self.recv().await {
            Received::Event(v) => v,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Events until one of type `kind` (inclusive).
    pub async fn events_until(&mut self, kind: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let e = self.event().await;
            let done = e["type"] == kind;
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// Every event until the server closes, and the close code.
    pub async fn until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut out = Vec::new();
        loop {
            match self.recv().await {
                Received::Event(v) => out.push(v),
                Received::Close(code) => return (out, code),
                Received::Ended => return (out, None),
                Received::Binary(n) => panic!("harkd sent a binary frame of {n} bytes"),
            }
        }
    }
}

/// Events of one type.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// G.711 μ-law bytes of mono samples (the encoder side of ITU-T G.711, written here so the
/// daemon's decoder is checked against an independent implementation).
pub fn ulaw_encode(samples: &[f32]) -> Vec<u8> {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    samples
        .iter()
        .map(|&s| {
            let linear = (s.clamp(-1.0, 1.0) * 32_767.0).round() as i32;
            let sign: u8 = if linear < 0 { 0x80 } else { 0 };
            let magnitude = linear.abs().min(CLIP) + BIAS;
            // Exponent: position of the highest set bit above bit 7.
            let exponent = (7..=14)
                .rev()
                .find(|&b| magnitude & (1 << b) != 0)
                .unwrap_or(7)
                - 7;
            let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
            !(sign | ((exponent as u8) << 4) | mantissa as u8)
        })
        .collect()
}
