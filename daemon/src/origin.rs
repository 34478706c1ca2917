//! Which browser pages may open harkd's WebSockets.
//!
//! Browsers let any page open a WebSocket to any address, `127.0.0.1` included, and say which
//! page did in the `Origin` header. harkd accepts a browser's socket only from its own origin
//! (the `Host` the request was sent to) or from a configured allow-list. Clients that send no
//! `Origin` (every non-browser client) are not affected: the header is what a web page cannot
//! leave out or forge.

use std::net::IpAddr;

/// An allow-list entry: `*`, or an origin normalised to `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    Any,
    Exact(String),
}

/// Parse an `allowed_origins` entry; `None` when it is not an origin.
pub fn parse_allowed(entry: &str) -> Option<AllowedOrigin> {
    let entry = entry.trim();
    if entry == "*" {
        return Some(AllowedOrigin::Any);
    }
    let normal = normalise(entry)?;
    let (_, authority) = normal.split_once("://")?;
    (!authority.is_empty() && !authority.contains('/')).then_some(AllowedOrigin::Exact(normal))
}

/// Lower case, without a trailing slash; `None` without a scheme.
fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    origin.contains("://").then_some(origin)
}

/// The `Origin` policy of one server.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Vec<AllowedOrigin>,
    /// The server listens on a loopback address: its own origin is then only a loopback name,
    /// so a page whose domain was re-pointed at 127.0.0.1 (DNS rebinding) is not "same origin".
    loopback: bool,
}

impl OriginPolicy {
    /// The policy for `allowed_origins` entries (already validated) on a listener bound to a
    /// loopback address or not.
    pub fn new(entries: &[String], loopback: bool) -> OriginPolicy {
        OriginPolicy {
            allowed: entries.iter().filter_map(|e| parse_allowed(e)).collect(),
            loopback,
        }
    }

    /// Whether a request with this `Origin` (if any) sent to this `Host` may open a WebSocket.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Some(normal) = normalise(origin) else {
            // `null` (sandboxed frames, file pages) and anything else without a scheme: only
            // a wildcard lets it in.
            return self.allowed.contains(&AllowedOrigin::Any);
        };
        let listed = self.allowed.iter().any(|a| match a {
            AllowedOrigin::Any => true,
            AllowedOrigin::Exact(o) => *o == normal,
        });
        listed || host.is_some_and(|h| self.is_own(&normal, h))
    }

    /// The origin names the host the request was sent to (and, on loopback, a loopback one).
    fn is_own(&self, origin: &str, host: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        let same = matches!(scheme, "http" | "https") && authority == host;
        same && (!self.loopback || is_loopback_name(&host))
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origin_is_a_non_browser_client() {
        assert!(OriginPolicy::new(&[], true).allows(None, Some("127.0.0.1:4275")));
    }

    #[test]
    fn own_origin_and_foreign_ones() {
        let p = OriginPolicy::new(&[], true);
        let host = Some("127.0.0.1:4275");
        assert!(p.allows(Some("http://127.0.0.1:4275"), host));
        assert!(p.allows(Some("HTTP://localhost:4275"), Some("LOCALHOST:4275")));
        assert!(!p.allows(Some("http://127.0.0.1:4276"), host));
        assert!(!p.allows(Some("https://evil.example"), host));
        assert!(!p.allows(Some("null"), host));
        assert!(!p.allows(Some("http://127.0.0.1:4275"), None));
    }

    #[test]
    fn a_rebound_name_is_not_own_on_loopback() {
        let origin = Some("http://evil.example:4275");
        let host = Some("evil.example:4275");
        assert!(!OriginPolicy::new(&[], true).allows(origin, host));
        assert!(OriginPolicy::new(&[], false).allows(origin, host));
    }

    #[test]
    fn the_allow_list() {
        let p = OriginPolicy::new(&["https://Captions.Example/".into()], true);
        assert!(p.allows(Some("https://captions.example"), Some("127.0.0.1:4275")));
        assert!(!p.allows(Some("http://captions.example"), Some("127.0.0.1:4275")));
        let any = OriginPolicy::new(&["*".into()], true);
        assert!(any.allows(Some("null"), None));
    }

    #[test]
    fn allow_list_entries_are_checked() {
        assert_eq!(parse_allowed("*"), Some(AllowedOrigin::Any));
        assert!(parse_allowed("https://a.example:8443").is_some());
        assert!(parse_allowed("a.example").is_none());
        assert!(parse_allowed("https://a.example/page").is_none());
        assert!(parse_allowed("https://").is_none());
    }
}
