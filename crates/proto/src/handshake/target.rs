//! WebSocket URLs: from `ws://…` text to where to connect and what to send.
//!
//! Parsing follows the WHATWG WebSockets standard (the algorithm behind
//! `new WebSocket(url)`), on top of the WHATWG URL parser of the `url`
//! crate, so a URL means the same thing here as in a browser:
//!
//! 1. parse with the URL standard (which lowercases and IDNA-encodes the
//!    host, normalises IPv4, percent-encodes the path and query, drops a
//!    port equal to the scheme's default);
//! 2. map `http` to `ws` and `https` to `wss`;
//! 3. refuse any other scheme;
//! 4. refuse a fragment, even an empty one (`ws://h/#`).
//!
//! In addition, userinfo (`ws://user:pass@host`) is refused: RFC 6455 §3's
//! `ws-URI` grammar has no userinfo, and silently dropping credentials would
//! be worse than saying so.

use url::{Host, Url};

use super::{ClientRequest, HandshakeError};

/// Where and how to open a WebSocket connection, from [`parse_target`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// `wss` (TLS) rather than `ws`.
    pub secure: bool,
    /// The host to connect to, as the URL standard serializes it: a
    /// lowercase ASCII (punycode) domain, a dotted IPv4 address, or an IPv6
    /// address **without** brackets (`::1`), ready for DNS resolution,
    /// `SocketAddr` parsing or a TLS server name. [`Target::host_header`]
    /// adds the brackets the `Host` header needs.
    pub host: String,
    /// The port, the scheme's default (80 or 443) if the URL has none.
    pub port: u16,
    /// The resource name (RFC 6455 §3): the path, then `?` and the query if
    /// the URL has one (even an empty one). Always starts with `/`.
    pub resource: String,
}

impl Target {
    /// The scheme's default port: 443 for `wss`, 80 for `ws`.
    pub fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }

    /// The `Host` header value (RFC 6455 §4.1 item 4, RFC 7230 §5.4): the
    /// host, bracketed if IPv6, with `:port` only when the port is not the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// A [`ClientRequest`] for this target with nothing optional set.
    pub fn client_request(&self) -> ClientRequest {
        ClientRequest::new(self.resource.clone(), self.host_header())
    }
}

/// Parses a WebSocket URL by the WHATWG WebSockets rules (see the module
/// docs).
///
/// * Schemes `ws` and `http` give `secure: false`, `wss` and `https`
///   `secure: true`; anything else is
///   [`UnsupportedScheme`](HandshakeError::UnsupportedScheme).
/// * A fragment is [`UrlHasFragment`](HandshakeError::UrlHasFragment).
/// * Credentials are [`UrlHasCredentials`](HandshakeError::UrlHasCredentials).
/// * A string the URL parser rejects (including relative URLs: there is no
///   base URL here) is [`InvalidUrl`](HandshakeError::InvalidUrl).
///
/// ```
/// use tether_proto::handshake::parse_target;
/// let t = parse_target("https://[::1]:8443/a b?q").unwrap();
/// assert!(t.secure);
/// assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
/// assert_eq!(t.resource, "/a%20b?q");
/// assert_eq!(t.host_header(), "[::1]:8443");
/// ```
pub fn parse_target(url: &str) -> Result<Target, HandshakeError> {
    let parsed = Url::parse(url).map_err(|e| HandshakeError::InvalidUrl(e.to_string()))?;
    let secure = match parsed.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => return Err(HandshakeError::UnsupportedScheme(other.to_owned())),
    };
    if parsed.fragment().is_some() {
        return Err(HandshakeError::UrlHasFragment);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(HandshakeError::UrlHasCredentials);
    }
    let host = match parsed.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        _ => return Err(HandshakeError::InvalidUrl("the URL has no host".to_owned())),
    };
    // `port()` is None when the URL's port equals its own scheme's default;
    // http/ws and https/wss share defaults, so the mapping keeps it right.
    let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
    let mut resource = parsed.path().to_owned();
    if !resource.starts_with('/') {
        // Special-scheme URLs always have a path starting with '/'; keep the
        // invariant even if that ever changes.
        resource.insert(0, '/');
    }
    if let Some(q) = parsed.query() {
        resource.push('?');
        resource.push_str(q);
    }
    Ok(Target {
        secure,
        host,
        port,
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        parse_target(url).unwrap()
    }

    #[test]
    fn parses_plain_ws_url_with_defaults() {
        assert_eq!(
            t("ws://example.com"),
            Target {
                secure: false,
                host: "example.com".into(),
                port: 80,
                resource: "/".into()
            }
        );
        assert_eq!(t("ws://example.com").host_header(), "example.com");
    }

    #[test]
    fn parses_wss_with_port_path_and_query() {
        let target = t("wss://Example.COM:8443/chat/room?x=1&y");
        assert_eq!(
            target,
            Target {
                secure: true,
                host: "example.com".into(),
                port: 8443,
                resource: "/chat/room?x=1&y".into()
            }
        );
        assert_eq!(target.host_header(), "example.com:8443");
    }

    #[test]
    fn maps_http_schemes_to_websocket_schemes() {
        assert!(!t("http://h/").secure);
        assert!(t("https://h/").secure);
        assert_eq!(t("HTTPS://h").port, 443);
    }

    #[test]
    fn default_ports_are_omitted_from_host_header() {
        assert_eq!(t("ws://h:80/").host_header(), "h");
        assert_eq!(t("wss://h:443/").host_header(), "h");
        assert_eq!(t("https://h:443/").port, 443);
        assert_eq!(t("ws://h:443/").host_header(), "h:443");
        assert_eq!(t("wss://h:80/").host_header(), "h:80");
        assert_eq!(t("http://h:443/").host_header(), "h:443");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_only_in_host_header() {
        let target = t("ws://[0:0::1]/");
        assert_eq!(target.host, "::1");
        assert_eq!(target.host_header(), "[::1]");
        assert_eq!(t("ws://[::1]:9000/").host_header(), "[::1]:9000");
    }

    #[test]
    fn ipv4_and_idna_hosts_are_normalised() {
        assert_eq!(t("ws://0x7f.1/").host, "127.0.0.1");
        assert_eq!(t("ws://bücher.example/").host, "xn--bcher-kva.example");
    }

    #[test]
    fn resource_is_percent_encoded_and_keeps_empty_query() {
        assert_eq!(t("ws://h/ä b").resource, "/%C3%A4%20b");
        assert_eq!(t("ws://h/x?").resource, "/x?");
        assert_eq!(t("ws://h?q=1").resource, "/?q=1");
        assert_eq!(t("ws://h/a/../b").resource, "/b");
    }

    #[test]
    fn rejects_other_schemes() {
        for (url, scheme) in [
            ("ftp://h/", "ftp"),
            ("file:///x", "file"),
            ("mailto:a@b", "mailto"),
            ("wsx://h", "wsx"),
        ] {
            assert_eq!(
                parse_target(url),
                Err(HandshakeError::UnsupportedScheme(scheme.into())),
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_fragment_even_empty() {
        assert_eq!(
            parse_target("ws://h/#"),
            Err(HandshakeError::UrlHasFragment)
        );
        assert_eq!(
            parse_target("wss://h/x#frag"),
            Err(HandshakeError::UrlHasFragment)
        );
    }

    #[test]
    fn rejects_credentials() {
        assert_eq!(
            parse_target("ws://u:p@h/"),
            Err(HandshakeError::UrlHasCredentials)
        );
        assert_eq!(
            parse_target("ws://u@h/"),
            Err(HandshakeError::UrlHasCredentials)
        );
    }

    #[test]
    fn rejects_unparseable_and_relative_urls() {
        for bad in [
            "",
            "/chat",
            "ws://",
            "ws://h:99999/",
            "ws://[::1/",
            "not a url",
            "ws://a b/",
        ] {
            assert!(
                matches!(parse_target(bad), Err(HandshakeError::InvalidUrl(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_request_from_target() {
        let req = t("ws://h:8080/p?q").client_request();
        assert_eq!(req.resource, "/p?q");
        assert_eq!(req.host_header, "h:8080");
    }
}
