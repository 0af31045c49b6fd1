//! Which browser origins may open a connection (RFC 6455 §10.2).
//!
//! Browsers send cookies with a WebSocket handshake to any site, so a server
//! that authenticates by cookie must refuse pages from other origins
//! (cross-site WebSocket hijacking). Requests without `Origin` come from
//! non-browser clients and are allowed by every policy.

use crate::server::Reject;
use tether_proto::handshake::UpgradeRequest;

/// An origin check, applied with [`OriginPolicy::check`].
///
/// ```
/// use tether::OriginPolicy;
/// let policy = OriginPolicy::list(["https://app.example"]);
/// assert!(policy.allows(Some("https://app.example"), "ws.example"));
/// assert!(!policy.allows(Some("https://evil.example"), "ws.example"));
/// assert!(policy.allows(None, "ws.example")); // not a browser
/// assert!(OriginPolicy::SameOrigin.allows(Some("http://localhost:8080"), "localhost:8080"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Any origin.
    Any,
    /// The `Origin` must name the host (and port) the request was sent to,
    /// as its `Host` header says. The default.
    #[default]
    SameOrigin,
    /// One of these origins (`scheme://host[:port]`, compared without case
    /// and trailing slash).
    List(Vec<String>),
}

impl OriginPolicy {
    /// An allow-list of origins.
    pub fn list<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        OriginPolicy::List(origins.into_iter().map(|o| normalize(o.as_ref())).collect())
    }

    /// The verdict for a request's `Origin` (if any) and `Host`.
    pub fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = normalize(origin);
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => list.iter().any(|o| normalize(o) == origin),
            OriginPolicy::SameOrigin => {
                let Some((scheme, authority)) = origin.split_once("://") else {
                    return false; // "null" and other opaque origins
                };
                let port = match scheme {
                    "http" => 80,
                    "https" => 443,
                    _ => return false,
                };
                let (oname, oport) = split_host(authority);
                let host = host.to_ascii_lowercase();
                let (hname, hport) = split_host(&host);
                oname == hname && oport.unwrap_or(port) == hport.unwrap_or(port)
            }
        }
    }

    /// The verdict when the scheme the client used is known (`https`: TLS
    /// here, or the scheme a trusted proxy forwarded). [`SameOrigin`]
    /// then also requires the origin's scheme to be that one, so a page
    /// served over `http://` cannot open a connection that arrived over TLS
    /// (and the reverse); the other policies ignore the scheme.
    ///
    /// [`SameOrigin`]: OriginPolicy::SameOrigin
    ///
    /// ```
    /// use tether::OriginPolicy;
    /// let same = OriginPolicy::SameOrigin;
    /// assert!(same.allows_over(Some("https://example.com"), "example.com", true));
    /// assert!(!same.allows_over(Some("https://example.com"), "example.com", false));
    /// ```
    pub fn allows_over(&self, origin: Option<&str>, host: &str, https: bool) -> bool {
        if let (OriginPolicy::SameOrigin, Some(o)) = (self, origin) {
            let scheme = if https { "https://" } else { "http://" };
            if !normalize(o).starts_with(scheme) {
                return false;
            }
        }
        self.allows(origin, host)
    }

    /// Check a request: `Ok` when allowed, else a `403` naming the origin.
    pub fn check(&self, upgrade: &UpgradeRequest) -> Result<(), Reject> {
        let origin = upgrade.origin.as_deref();
        if self.allows(origin, &upgrade.host) {
            return Ok(());
        }
        Err(Reject::forbidden(format!(
            "Origin {:?} is not allowed to open a WebSocket on {:?}\n",
            origin.unwrap_or_default(),
            upgrade.host
        )))
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `name[:port]` (or `[v6]:port`) into name and port.
fn split_host(host: &str) -> (&str, Option<u16>) {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => (&host[..end + 2], rest[end + 1..].strip_prefix(':')),
            None => (host, None),
        },
        None => match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        },
    };
    (name, port.and_then(|p| p.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_compares_host_and_port() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.allows(Some("http://Example.com"), "example.com"));
        assert!(p.allows(Some("https://example.com"), "example.com:443"));
        assert!(p.allows(Some("http://[::1]:9000"), "[::1]:9000"));
        assert!(!p.allows(Some("http://example.com:8080"), "example.com"));
        assert!(!p.allows(Some("http://evil.example"), "example.com"));
        assert!(!p.allows(Some("null"), "example.com"));
    }

    #[test]
    fn list_is_exact_and_any_allows_all() {
        let p = OriginPolicy::list(["https://a.example/"]);
        assert!(p.allows(Some("HTTPS://a.example"), "x"));
        assert!(!p.allows(Some("https://a.example:8443"), "x"));
        assert!(OriginPolicy::Any.allows(Some("null"), "x"));
    }

    #[test]
    fn same_origin_over_a_known_scheme_requires_that_scheme() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.allows_over(None, "127.0.0.1:8080", false));
        assert!(p.allows_over(Some("http://127.0.0.1:8080"), "127.0.0.1:8080", false));
        assert!(p.allows_over(Some("http://Example.com"), "example.com:80", false));
        assert!(p.allows_over(Some("https://example.com"), "example.com", true));
        assert!(!p.allows_over(Some("http://127.0.0.1:9999"), "127.0.0.1:8080", false));
        assert!(!p.allows_over(Some("http://evil.example"), "127.0.0.1", false));
        assert!(!p.allows_over(Some("null"), "127.0.0.1", false));
        assert!(!p.allows_over(Some("https://example.com"), "example.com", false));
        assert!(!p.allows_over(Some("http://example.com"), "example.com", true));
        let list = OriginPolicy::list(["https://app.example"]);
        assert!(list.allows_over(Some("https://app.example/"), "x", false));
        assert!(!list.allows_over(Some("https://app.example.evil"), "x", false));
    }
}
