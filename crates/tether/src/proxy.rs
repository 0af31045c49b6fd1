//! Reaching the server through a proxy: HTTP `CONNECT` tunnels and SOCKS5.
//!
//! A WebSocket connection is a long-lived TCP connection, so the only proxy
//! mechanisms that work are tunnels: HTTP `CONNECT` (RFC 9110 §9.3.6, what
//! browsers use for WebSockets behind a proxy) and SOCKS5 (RFC 1928, with
//! RFC 1929 username/password). After the tunnel is open the handshake (and
//! TLS, for `wss://`) runs end to end through it; the proxy sees only bytes.
//!
//! Proxy URLs: `http://[user:pass@]host[:port]` (default port 80, also
//! 8080-style explicit ports), `socks5://` (the client resolves the target
//! name and sends an address) and `socks5h://` (the proxy resolves the name;
//! needed when only the proxy's DNS knows it). Credentials in the userinfo
//! are percent-decoded and sent as `Proxy-Authorization: Basic` (HTTP) or
//! with RFC 1929 (SOCKS5).
//!
//! [`Proxy::from_env`] follows the curl conventions: `ws://` uses
//! `http_proxy`, `wss://` uses `https_proxy`, both fall back to `all_proxy`;
//! lowercase names win over uppercase; `no_proxy` lists hosts (`*` for all,
//! `example.com` or `.example.com` for a domain and its subdomains, IP
//! addresses, optional `:port`) that are reached directly.

use crate::error::{Error, Result};
use base64::Engine;
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest CONNECT response head accepted from an HTTP proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// The tunnel protocol a [`Proxy`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT`.
    Http,
    /// SOCKS5, the target name resolved by the client.
    Socks5,
    /// SOCKS5, the target name sent to (and resolved by) the proxy.
    Socks5h,
}

/// A proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The tunnel protocol.
    pub kind: ProxyKind,
    /// The proxy's host (IPv6 without brackets).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// Username and password, if the URL had them.
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.auth.as_ref().map(|a| &a.0))
            .finish()
    }
}

impl Proxy {
    /// Parse a proxy URL (`http://`, `socks5://`, `socks5h://`; a bare
    /// `host:port` means `http://`).
    pub fn parse(s: &str) -> Result<Proxy> {
        let with_scheme = if s.contains("://") {
            s.to_owned()
        } else {
            format!("http://{s}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| Error::Config(format!("invalid proxy URL `{s}`: {e}")))?;
        let (kind, default_port) = match url.scheme() {
            "http" => (ProxyKind::Http, 80),
            "socks5" => (ProxyKind::Socks5, 1080),
            "socks5h" => (ProxyKind::Socks5h, 1080),
            "https" => {
                return Err(Error::Config(
                    "TLS to the proxy itself (https:// proxy URL) is not supported; \
                     use http:// (the tunnel still carries wss:// end to end)"
                        .into(),
                ))
            }
            other => return Err(Error::Config(format!("unsupported proxy scheme `{other}`"))),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(Error::Config(format!("proxy URL `{s}` has no host"))),
        };
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some((
                percent_decode(url.username()),
                percent_decode(url.password().unwrap_or("")),
            ))
        };
        Ok(Proxy {
            kind,
            host,
            port: url.port().unwrap_or(default_port),
            auth,
        })
    }

    /// The proxy the environment asks for to reach `host:port` over `ws://`
    /// (`secure == false`) or `wss://`, or `None` (see the module docs).
    pub fn from_env(secure: bool, host: &str, port: u16) -> Result<Option<Proxy>> {
        Self::from_vars(|name| std::env::var(name).ok(), secure, host, port)
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `var`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        secure: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<Proxy>> {
        let get = |name: &str| {
            var(name)
                .or_else(|| var(&name.to_ascii_uppercase()))
                .filter(|v| !v.trim().is_empty())
        };
        if let Some(no_proxy) = get("no_proxy") {
            if no_proxy_matches(&no_proxy, host, port) {
                return Ok(None);
            }
        }
        let scheme_var = if secure { "https_proxy" } else { "http_proxy" };
        match get(scheme_var).or_else(|| get("all_proxy")) {
            Some(url) => Proxy::parse(url.trim()).map(Some),
            None => Ok(None),
        }
    }

    /// Open a TCP connection to the proxy and a tunnel through it to
    /// `host:port`. The returned stream is connected end to end.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream> {
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                Error::Proxy(format!(
                    "cannot connect to proxy {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        tcp.set_nodelay(true)?;
        match self.kind {
            ProxyKind::Http => self.http_connect(&mut tcp, host, port).await?,
            ProxyKind::Socks5 | ProxyKind::Socks5h => self.socks5(&mut tcp, host, port).await?,
        }
        Ok(tcp)
    }

    async fn http_connect(&self, tcp: &mut TcpStream, host: &str, port: u16) -> Result<()> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, pass)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await?;
        // Read byte by byte up to the end of the head: anything after it is
        // the tunnel's, and must not be swallowed here.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_RESPONSE {
                return Err(Error::Proxy("proxy response head too large".into()));
            }
            let mut b = [0u8; 1];
            if tcp.read(&mut b).await? == 0 {
                return Err(Error::Proxy(format!(
                    "proxy {}:{} closed the connection before answering CONNECT",
                    self.host, self.port
                )));
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if !version.starts_with("HTTP/1.") || status == 0 {
            return Err(Error::Proxy(format!(
                "proxy answered CONNECT with a malformed status line: {status_line:?}"
            )));
        }
        match status {
            200..=299 => Ok(()),
            407 => Err(Error::Proxy(format!(
                "proxy requires authentication (407){}",
                if self.auth.is_some() {
                    "; the credentials in the proxy URL were refused"
                } else {
                    "; put user:password@ in the proxy URL"
                }
            ))),
            _ => Err(Error::Proxy(format!(
                "proxy refused the tunnel to {authority}: {status_line}"
            ))),
        }
    }

    async fn socks5(&self, tcp: &mut TcpStream, host: &str, port: u16) -> Result<()> {
        // Greeting: offer no-auth, and username/password if we have them.
        let greeting: &[u8] = if self.auth.is_some() {
            &[5, 2, 0x00, 0x02]
        } else {
            &[5, 1, 0x00]
        };
        tcp.write_all(greeting).await?;
        let mut choice = [0u8; 2];
        tcp.read_exact(&mut choice).await.map_err(socks_eof)?;
        if choice[0] != 5 {
            return Err(Error::Proxy(format!(
                "not a SOCKS5 proxy (version byte {})",
                choice[0]
            )));
        }
        match (choice[1], &self.auth) {
            (0x00, _) => {}
            (0x02, Some((user, pass))) => {
                if user.len() > 255 || pass.len() > 255 {
                    return Err(Error::Proxy(
                        "SOCKS5 username and password must be at most 255 bytes".into(),
                    ));
                }
                let mut msg = vec![1, user.len() as u8];
                msg.extend_from_slice(user.as_bytes());
                msg.push(pass.len() as u8);
                msg.extend_from_slice(pass.as_bytes());
                tcp.write_all(&msg).await?;
                let mut reply = [0u8; 2];
                tcp.read_exact(&mut reply).await.map_err(socks_eof)?;
                if reply[1] != 0 {
                    return Err(Error::Proxy(
                        "SOCKS5 proxy refused the username/password".into(),
                    ));
                }
            }
            (0xFF, _) => {
                return Err(Error::Proxy(if self.auth.is_some() {
                    "SOCKS5 proxy accepts none of our authentication methods".into()
                } else {
                    "SOCKS5 proxy requires authentication; put user:password@ in the proxy URL"
                        .into()
                }))
            }
            (m, _) => {
                return Err(Error::Proxy(format!(
                    "SOCKS5 proxy chose authentication method {m:#04x}, which was not offered"
                )))
            }
        }
        // CONNECT request.
        let mut req = vec![5, 1, 0];
        let literal: Option<IpAddr> = host.parse().ok();
        let addr = match (literal, self.kind) {
            (Some(ip), _) => Some(ip),
            (None, ProxyKind::Socks5) => Some(
                tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| Error::Proxy(format!("cannot resolve {host}: {e}")))?
                    .next()
                    .ok_or_else(|| Error::Proxy(format!("{host} has no address")))?
                    .ip(),
            ),
            (None, _) => None,
        };
        match addr {
            Some(IpAddr::V4(a)) => {
                req.push(1);
                req.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                req.push(4);
                req.extend_from_slice(&a.octets());
            }
            None => {
                if host.len() > 255 {
                    return Err(Error::Proxy("host name too long for SOCKS5".into()));
                }
                req.push(3);
                req.push(host.len() as u8);
                req.extend_from_slice(host.as_bytes());
            }
        }
        req.extend_from_slice(&port.to_be_bytes());
        tcp.write_all(&req).await?;
        let mut reply = [0u8; 4];
        tcp.read_exact(&mut reply).await.map_err(socks_eof)?;
        if reply[1] != 0 {
            return Err(Error::Proxy(format!(
                "SOCKS5 proxy could not connect to {host}:{port}: {}",
                socks_reply_text(reply[1])
            )));
        }
        // Skip the bound address.
        let skip = match reply[3] {
            1 => 4,
            4 => 16,
            3 => {
                let mut len = [0u8; 1];
                tcp.read_exact(&mut len).await.map_err(socks_eof)?;
                len[0] as usize
            }
            t => {
                return Err(Error::Proxy(format!(
                    "SOCKS5 reply has unknown address type {t}"
                )))
            }
        };
        let mut rest = vec![0u8; skip + 2];
        tcp.read_exact(&mut rest).await.map_err(socks_eof)?;
        Ok(())
    }
}

fn socks_eof(e: std::io::Error) -> Error {
    Error::Proxy(format!("SOCKS5 proxy closed the connection: {e}"))
}

fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// Whether `no_proxy` (a comma- or space-separated list) exempts `host:port`.
pub fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.to_ascii_lowercase();
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            // Split an optional :port (but not inside a bare IPv6 address).
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, p.parse::<u16>().ok()),
                _ => (entry, None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                return a == b;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls_with_credentials() {
        let p = Proxy::parse("http://al%40ice:p%3Ass@proxy.local:3128").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert_eq!(p.auth, Some(("al@ice".into(), "p:ss".into())));
        let s = Proxy::parse("socks5h://[::1]").unwrap();
        assert_eq!(
            (s.kind, s.host.as_str(), s.port),
            (ProxyKind::Socks5h, "::1", 1080)
        );
        assert_eq!(
            Proxy::parse("127.0.0.1:8888").unwrap().kind,
            ProxyKind::Http
        );
        assert!(Proxy::parse("ftp://x").is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let p = Proxy::parse("http://u:secret@h:1").unwrap();
        assert!(!format!("{p:?}").contains("secret"));
    }

    #[test]
    fn no_proxy_matches_domains_ips_ports_and_star() {
        assert!(no_proxy_matches("*", "a.b", 80));
        assert!(no_proxy_matches("example.com", "api.example.com", 80));
        assert!(no_proxy_matches(".example.com", "example.com", 80));
        assert!(!no_proxy_matches("example.com", "badexample.com", 80));
        assert!(no_proxy_matches("localhost, 127.0.0.1", "127.0.0.1", 9));
        assert!(no_proxy_matches("[::1]", "::1", 9));
        assert!(no_proxy_matches("h:8080", "h", 8080));
        assert!(!no_proxy_matches("h:8080", "h", 80));
    }

    #[test]
    fn env_lookup_prefers_lowercase_and_scheme_specific_variables() {
        let vars = |name: &str| match name {
            "http_proxy" => Some("http://lower:1".to_owned()),
            "HTTP_PROXY" => Some("http://upper:2".to_owned()),
            "ALL_PROXY" => Some("socks5://all:3".to_owned()),
            "NO_PROXY" => Some("internal".to_owned()),
            _ => None,
        };
        let p = Proxy::from_vars(vars, false, "example.com", 80)
            .unwrap()
            .unwrap();
        assert_eq!(p.host, "lower");
        let p = Proxy::from_vars(vars, true, "example.com", 443)
            .unwrap()
            .unwrap();
        assert_eq!((p.kind, p.host.as_str()), (ProxyKind::Socks5, "all"));
        assert_eq!(Proxy::from_vars(vars, false, "internal", 80).unwrap(), None);
    }
}
