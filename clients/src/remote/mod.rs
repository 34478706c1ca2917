//! Talking to `harkd` over the native protocol v1 (`/v1/listen`).
//!
//! [`Endpoint`] says where the daemon is and how to authenticate; [`Connection`] is one open
//! WebSocket session; [`run_session`] drives a whole stream through it, reconnecting and
//! resuming when the connection drops.

mod session;
mod timeline;

use std::time::Duration;

use clap::Args;
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::{SinkExt, Stream};
use hark_protocol::{ClientMessage, ErrorCode, Ready, ServerMessage, Start, parse_server_text};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use session::{Control, SessionEvent, SessionOptions, SessionSummary, run_session};
pub use timeline::seconds;

/// Where harkd listens by default (its own default, loopback only).
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:4275";

/// How long a TCP connect plus WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon may take to answer `start`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// `--server` and `--token`, for the clients that always go through the daemon.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// harkd's address: ws://HOST:PORT (the /v1/listen path is added when missing).
    #[arg(long, env = "HARK_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Bearer token, when harkd requires one.
    #[arg(long, env = "HARK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArgs {
    /// The endpoint these flags name.
    pub fn endpoint(&self) -> Result<Endpoint, RemoteError> {
        Endpoint::new(&self.server, self.token.clone())
    }
}

/// Why talking to the daemon failed, phrased for the person at the keyboard.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL cannot name a harkd endpoint.
    #[error("invalid server address `{url}`: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answers at the address.
    #[error(
        "cannot reach harkd at {url}: {reason}. Is the daemon running? Start it with `harkd` \
         (or `systemctl --user start harkd`), or point --server / HARK_SERVER at it"
    )]
    Unreachable {
        /// The WebSocket URL.
        url: String,
        /// The underlying failure.
        reason: String,
    },
    /// The token is missing or wrong.
    #[error(
        "harkd at {url} refused the connection: {message}. Pass the daemon's token with \
         --token or HARK_TOKEN"
    )]
    Unauthorized {
        /// The WebSocket URL.
        url: String,
        /// The server's explanation.
        message: String,
    },
    /// Every stream slot is taken.
    #[error("harkd at {url} is busy: {message} (retry in {retry_after_s} s)")]
    Busy {
        /// The WebSocket URL.
        url: String,
        /// The server's explanation.
        message: String,
        /// When a retry may succeed.
        retry_after_s: u32,
    },
    /// Something answered, but not harkd's WebSocket endpoint.
    #[error("{url} is not a harkd endpoint: {reason}")]
    NotHarkd {
        /// The WebSocket URL.
        url: String,
        /// What came back instead.
        reason: String,
    },
    /// The daemon ended the session with an error.
    #[error("harkd ended the session: {message} ({code})")]
    Server {
        /// Stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection dropped and could not be re-established.
    #[error("lost the connection to harkd at {url}: {reason}")]
    ConnectionLost {
        /// The WebSocket URL.
        url: String,
        /// The last failure.
        reason: String,
    },
}

impl RemoteError {
    /// Worth trying again later (the daemon may come back, a slot may free up).
    fn is_transient(&self) -> bool {
        match self {
            RemoteError::Unreachable { .. }
            | RemoteError::Busy { .. }
            | RemoteError::ConnectionLost { .. } => true,
            RemoteError::Server { code, .. } => {
                matches!(code, ErrorCode::ShuttingDown | ErrorCode::ResumeFailed)
            }
            _ => false,
        }
    }
}

/// A harkd native endpoint: `ws://host:port/v1/listen` and an optional token.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    token: Option<String>,
}

impl Endpoint {
    /// Accepts `ws://host:port[/path]`, `http://…` (the same port serves both) or a bare
    /// `host:port`; the native path is added when the URL has none.
    pub fn new(address: &str, token: Option<String>) -> Result<Self, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            url: address.to_owned(),
            reason: reason.to_owned(),
        };
        let address = address.trim();
        let (scheme, rest) = match address.split_once("://") {
            Some(("ws" | "http", rest)) => ("ws", rest),
            Some(("wss" | "https", _)) => {
                return Err(bad(
                    "this build of hark speaks plain ws:// only; reach a TLS-fronted harkd \
                     through a local tunnel, or run hark on the daemon's machine",
                ));
            }
            Some((other, _)) => return Err(bad(&format!("unknown scheme `{other}`"))),
            None => ("ws", address),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if let Some((_, port)) = authority.rsplit_once(':')
            && !port.contains(']')
            && port.parse::<u16>().is_err()
        {
            return Err(bad(&format!("`{port}` is not a port number")));
        }
        let path = if path.is_empty() || path == "/" {
            hark_protocol::LISTEN_PATH
        } else {
            path
        };
        let url = format!("{scheme}://{authority}{path}");
        // Let the WebSocket library check the rest (port syntax, characters).
        url.as_str()
            .into_client_request()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Endpoint {
            url,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, reason: impl Into<String>) -> RemoteError {
        RemoteError::Unreachable {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn lost(&self, reason: impl Into<String>) -> RemoteError {
        RemoteError::ConnectionLost {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the reader task hands over.
#[derive(Debug)]
enum Incoming {
    Message(ServerMessage),
    /// The connection ended (dropped, or closed by the peer) without a `closed` message.
    Ended(String),
}

/// One open session: the writing half of the socket and the messages read by a background
/// task (reading never waits on writing, so neither side can stall the other).
pub struct Connection {
    sink: SplitSink<Socket, Message>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects, sends `start` and waits for `ready`. Every refusal becomes a [`RemoteError`]
    /// that says what to do about it.
    pub async fn open(endpoint: &Endpoint, start: &Start) -> Result<(Self, Ready), RemoteError> {
        let mut request =
            endpoint
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| RemoteError::BadUrl {
                    url: endpoint.url.clone(),
                    reason: e.to_string(),
                })?;
        if let Some(token) = &endpoint.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                RemoteError::Unauthorized {
                    url: endpoint.url.clone(),
                    message: "the token contains characters an HTTP header cannot carry".into(),
                }
            })?;
            request.headers_mut().insert("authorization", value);
        }
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| endpoint.unreachable("no answer within 5 s"))?
            .map_err(|e| handshake_error(endpoint, e))?;
        let (mut sink, stream) = socket.split();
        let (tx, mut incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(stream, tx));

        let start = serde_json::to_string(&ClientMessage::Start(start.clone()))
            .expect("a start message always serialises");
        sink.send(Message::text(start))
            .await
            .map_err(|e| endpoint.lost(e.to_string()))?;
        let first = tokio::time::timeout(READY_TIMEOUT, incoming.recv())
            .await
            .map_err(|_| endpoint.lost("no `ready` within 15 s of `start`"))?;
        let conn = |sink, incoming| Connection {
            sink,
            incoming,
            reader,
        };
        match first {
            Some(Incoming::Message(ServerMessage::Ready(ready))) => {
                Ok((conn(sink, incoming), ready))
            }
            Some(Incoming::Message(ServerMessage::Error(e))) => Err(refusal(endpoint, e)),
            Some(Incoming::Message(other)) => Err(RemoteError::NotHarkd {
                url: endpoint.url.clone(),
                reason: format!("the first message was not `ready` but {other:?}"),
            }),
            Some(Incoming::Ended(reason)) => Err(endpoint.lost(format!(
                "the server ended the connection before `ready`: {reason}"
            ))),
            None => Err(endpoint.lost("the server ended the connection before `ready`")),
        }
    }

    /// Sends one control message.
    pub async fn send_control(&mut self, msg: &ClientMessage) -> Result<(), String> {
        let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends one binary audio frame.
    pub async fn send_audio(&mut self, frame: Vec<u8>) -> Result<(), String> {
        self.sink
            .send(Message::binary(frame))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next server message; `Err` with a reason when the connection ended without
    /// `closed`.
    async fn next(&mut self) -> Result<ServerMessage, String> {
        match self.incoming.recv().await {
            Some(Incoming::Message(msg)) => Ok(msg),
            Some(Incoming::Ended(reason)) => Err(reason),
            None => Err("the connection reader stopped".into()),
        }
    }
}

/// The error a refused `start` turns into.
fn refusal(endpoint: &Endpoint, e: hark_protocol::ErrorMessage) -> RemoteError {
    match e.code {
        ErrorCode::Unauthorized => RemoteError::Unauthorized {
            url: endpoint.url.clone(),
            message: e.message,
        },
        ErrorCode::ServerBusy => RemoteError::Busy {
            url: endpoint.url.clone(),
            message: e.message,
            retry_after_s: e.retry_after_s.unwrap_or(5),
        },
        code => RemoteError::Server {
            code,
            message: e.message,
        },
    }
}

/// Maps a failed WebSocket handshake to what the user should know.
fn handshake_error(endpoint: &Endpoint, e: tungstenite::Error) -> RemoteError {
    match e {
        tungstenite::Error::Io(io) => endpoint.unreachable(match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => io.to_string(),
        }),
        tungstenite::Error::Http(response) => match response.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RemoteError::Unauthorized {
                url: endpoint.url.clone(),
                message: format!("HTTP {}", response.status()),
            },
            status => RemoteError::NotHarkd {
                url: endpoint.url.clone(),
                reason: format!("the WebSocket upgrade was answered with HTTP {status}"),
            },
        },
        tungstenite::Error::Url(e) => RemoteError::BadUrl {
            url: endpoint.url.clone(),
            reason: e.to_string(),
        },
        other => RemoteError::NotHarkd {
            url: endpoint.url.clone(),
            reason: other.to_string(),
        },
    }
}

/// Reads the socket until it ends, forwarding server messages.
async fn read_loop(
    mut stream: impl Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => match parse_server_text(&text) {
                Ok(Some(msg)) => {
                    if tx.send(Incoming::Message(msg)).is_err() {
                        return;
                    }
                }
                // A message type from a newer server: skip it, as the protocol says.
                Ok(None) => {}
                Err(e) => tracing::warn!("ignoring a malformed server message: {e}"),
            },
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) if !f.reason.is_empty() => {
                        format!("closed by the server ({}: {})", u16::from(f.code), f.reason)
                    }
                    Some(f) => format!("closed by the server ({})", u16::from(f.code)),
                    None => "closed by the server".to_owned(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "the connection was closed".to_owned(),
        }
    };
    let _ = tx.send(Incoming::Ended(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_native_path() {
        let cases = [
            ("ws://127.0.0.1:4275", "ws://127.0.0.1:4275/v1/listen"),
            ("ws://127.0.0.1:4275/", "ws://127.0.0.1:4275/v1/listen"),
            ("http://localhost:9000", "ws://localhost:9000/v1/listen"),
            ("127.0.0.1:80", "ws://127.0.0.1:80/v1/listen"),
            ("ws://h:1/custom/listen", "ws://h:1/custom/listen"),
        ];
        for (given, want) in cases {
            assert_eq!(Endpoint::new(given, None).unwrap().url(), want, "{given}");
        }
        for bad in ["wss://h:1", "ftp://h", "ws://", "ws://h:notaport"] {
            let err = Endpoint::new(bad, None).unwrap_err();
            assert!(matches!(err, RemoteError::BadUrl { .. }), "{bad}: {err}");
        }
        assert!(
            Endpoint::new("ws://h:1", Some(String::new()))
                .unwrap()
                .token
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_the_daemon_being_down() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = Endpoint::new(&format!("ws://127.0.0.1:{port}"), None).unwrap();
        let start = Start::new(16_000, hark_protocol::Encoding::S16le, 1);
        let err = Connection::open(&endpoint, &start).await.err().unwrap();
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("connection refused") && text.contains("Is the daemon running"),
            "{text}"
        );
    }
}
