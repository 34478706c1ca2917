//! One HTTP/1.1 request over a fresh connection (`/healthz`, `/metrics`, `/captions`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `GET path` with extra header lines (`"Authorization: Bearer x"`).
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<Response> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    exchange(addr, request.as_bytes())
}

/// Send `request` (head and body, as written) and read the response until the server closes.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers: head.to_owned(),
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of a Prometheus sample line `name{labels} value` (labels matched as a
/// substring of the label set; `""` for none), summed over matching series.
pub fn metric(page: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_set) = match series.split_once('{') {
            Some((n, l)) => (n, l),
            None => (series, ""),
        };
        if metric_name == name && label_set.contains(labels) {
            let v: f64 = value.parse().ok()?;
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_lines() {
        let page = "# HELP x y\nharkd_errors_total{code=\"bad_json\"} 2\nharkd_errors_total{code=\"odd_byte_count\"} 1\nharkd_session_slots 4\n";
        assert_eq!(metric(page, "harkd_errors_total", "bad_json"), Some(2.0));
        assert_eq!(metric(page, "harkd_errors_total", ""), Some(3.0));
        assert_eq!(metric(page, "harkd_session_slots", ""), Some(4.0));
        assert_eq!(metric(page, "harkd_nothing", ""), None);
        assert_eq!(dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"), "hello!");
    }
}
