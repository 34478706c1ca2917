//! The `listen` setting: `host[:port]` where host is a name (`localhost`), an IPv4 address or
//! a bracketed IPv6 address, and the port defaults to 4275.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// harkd's port when `listen` names none.
pub const DEFAULT_PORT: u16 = 4275;

/// Where harkd listens; names are resolved when binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    host: String,
    port: u16,
}

/// A `listen` value that is not `host[:port]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not an address to listen on (host[:port], e.g. 127.0.0.1:4275, localhost or [::1]:8765)"
)]
pub struct BadListenAddr(String);

impl ListenAddr {
    /// The host as written (a name or an address, IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether only this machine can connect: `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// What a tokio or std `bind` takes.
    pub fn bind_target(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl Default for ListenAddr {
    /// Loopback only, so nothing is exposed until the operator decides to.
    fn default() -> Self {
        ListenAddr {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = BadListenAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadListenAddr(s.to_string());
        let text = s.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, DEFAULT_PORT).into());
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let ip: IpAddr = inner.parse().map_err(|_| bad())?;
            return Ok(SocketAddr::new(ip, DEFAULT_PORT).into());
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (text, DEFAULT_PORT),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(ListenAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl serde::Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ListenAddr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ListenAddr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_addresses_and_default_port() {
        let cases = [
            ("127.0.0.1:4275", "127.0.0.1:4275"),
            ("0.0.0.0", "0.0.0.0:4275"),
            ("localhost:8765", "localhost:8765"),
            ("LocalHost", "localhost:4275"),
            ("[::1]:9000", "[::1]:9000"),
            ("[::]", "[::]:4275"),
            ("::1", "[::1]:4275"),
            ("harkd.example.org:80", "harkd.example.org:80"),
        ];
        for (text, shown) in cases {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), shown, "{text}");
            assert_eq!(addr.to_string().parse::<ListenAddr>().unwrap(), addr);
        }
        assert!("localhost:1".parse::<ListenAddr>().unwrap().is_loopback());
        assert!("[::1]".parse::<ListenAddr>().unwrap().is_loopback());
        assert!(!"0.0.0.0".parse::<ListenAddr>().unwrap().is_loopback());
        for bad in [
            "",
            "host:",
            "host:99999",
            "a b",
            "-x",
            "[::1",
            "x:y:z",
            "a..b",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?}");
        }
    }
}
