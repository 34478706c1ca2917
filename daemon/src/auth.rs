//! Optional bearer-token authentication.
//!
//! A client presents the token as `Authorization: Bearer TOKEN`, as `?token=TOKEN` (browsers
//! cannot set headers on a WebSocket), or, on the OpenAI endpoint, as the subprotocol
//! `openai-insecure-api-key.TOKEN` that OpenAI's browser clients send.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};

/// Subprotocol prefix OpenAI browser clients carry their key in.
const OPENAI_KEY_PROTOCOL: &str = "openai-insecure-api-key.";

/// Whether the request carries `expected` (always true when no token is configured).
pub fn authorized(expected: Option<&str>, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    candidates(headers, query_token).any(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
}

fn candidates<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> impl Iterator<Item = &'a str> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let protocol = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(OPENAI_KEY_PROTOCOL));
    bearer.chain(protocol).chain(query_token)
}

/// Compares without an early exit, so response time does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn no_token_configured_lets_everyone_in() {
        assert!(authorized(None, &HeaderMap::new(), None));
    }

    #[test]
    fn header_query_and_subprotocol() {
        let t = Some("s3cret");
        assert!(authorized(
            t,
            &headers(&[("authorization", "Bearer s3cret")]),
            None
        ));
        assert!(authorized(
            t,
            &headers(&[("authorization", "bearer  s3cret ")]),
            None
        ));
        assert!(authorized(t, &HeaderMap::new(), Some("s3cret")));
        let proto = headers(&[(
            "sec-websocket-protocol",
            "realtime, openai-insecure-api-key.s3cret",
        )]);
        assert!(authorized(t, &proto, None));
    }

    #[test]
    fn wrong_or_missing_tokens_are_refused() {
        let t = Some("s3cret");
        assert!(!authorized(t, &HeaderMap::new(), None));
        assert!(!authorized(
            t,
            &headers(&[("authorization", "Bearer s3cre")]),
            None
        ));
        assert!(!authorized(
            t,
            &headers(&[("authorization", "Basic s3cret")]),
            None
        ));
        assert!(!authorized(t, &HeaderMap::new(), Some("s3cret0")));
        assert!(!authorized(t, &HeaderMap::new(), Some("")));
    }

    #[test]
    fn equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
