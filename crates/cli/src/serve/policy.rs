//! Who may connect: the checks made before a request reaches a route.
//!
//! * **Host** (DNS-rebinding defence): a page on `evil.example` whose DNS
//!   name is re-pointed at 127.0.0.1 reaches a local server with
//!   `Host: evil.example`. A loopback listener therefore answers only
//!   loopback names; others the names configured. Refused with
//!   `421 Misdirected Request` (for every request, HTTP or WebSocket).
//! * **Origin** (cross-site WebSocket hijacking, RFC 6455 §10.2): browsers
//!   send cookies with a WebSocket handshake to any site, so a page from
//!   another origin must not be let in. Default: the `Origin` must be the
//!   origin the request was sent to (its `Host`); requests without `Origin`
//!   (non-browser clients) are allowed. Refused with `403`.
//! * **Auth** ([`super::auth`]): a bearer token (header, cookie or query
//!   parameter), either one of the configured opaque tokens or a JWT;
//!   refused with `401`.
//! * **Limits**: total and per-IP WebSocket connection counts; refused with
//!   `503` / `429`.

use super::config::{HostRule, OriginRule};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Split a `Host` header value into lowercase name and optional port.
/// `[::1]:8080` gives `("[::1]", Some(8080))`.
pub fn split_host(host: &str) -> (String, Option<u16>) {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => {
                let rest = &host[end + 1..];
                (&host[..=end], rest.strip_prefix(':'))
            }
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    (name.to_ascii_lowercase(), port.and_then(|p| p.parse().ok()))
}

/// The DNS-rebinding check.
pub fn host_allowed(rule: &HostRule, host: &str) -> bool {
    let (name, _) = split_host(host);
    match rule {
        HostRule::Any => true,
        HostRule::Loopback => matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]"),
        HostRule::Names(names) => names.contains(&name),
    }
}

/// Why `host` is refused by `rule` on `listen[idx]`, naming the setting that
/// would allow it (for the log).
pub fn host_refusal(rule: &HostRule, host: &str, idx: usize) -> String {
    let (name, _) = split_host(host);
    match rule {
        HostRule::Loopback => format!(
            "Host {host:?} not allowed by listen[{idx}] (loopback names only: localhost, 127.0.0.1, [::1]); add {name:?} to listen[{idx}].allowed_hosts"
        ),
        HostRule::Names(names) => {
            format!("Host {host:?} not in listen[{idx}].allowed_hosts {names:?}")
        }
        HostRule::Any => format!("Host {host:?} refused"),
    }
}

/// Why `origin` is refused by `route`'s `origins` (for the log).
pub fn origin_refusal(rule: &OriginRule, origin: &str, host: &str, route: &str) -> String {
    match rule {
        OriginRule::List(list) => format!("Origin {origin:?} not in {route} origins {list:?}"),
        _ => format!(
            "Origin {origin:?} is not the origin of Host {host:?} ({route} allows the same origin only); list the page's origin, and the server's own, in {route} origins"
        ),
    }
}

/// The origin-check verdict.
pub fn origin_allowed(rule: &OriginRule, origin: Option<&str>, host: &str, tls: bool) -> bool {
    let Some(origin) = origin else {
        // Not a browser: the hijacking attack needs a victim's browser.
        return true;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    match rule {
        OriginRule::Any => true,
        OriginRule::List(list) => list.contains(&origin),
        OriginRule::SameOrigin => {
            let Some((scheme, authority)) = origin.split_once("://") else {
                return false; // "null" and other opaque origins
            };
            let default_port = match scheme {
                "http" => 80,
                "https" => 443,
                _ => return false,
            };
            if (scheme == "https") != tls {
                return false;
            }
            let (oname, oport) = split_host(authority);
            let (hname, hport) = split_host(host);
            let host_default = if tls { 443 } else { 80 };
            oname == hname && oport.unwrap_or(default_port) == hport.unwrap_or(host_default)
        }
    }
}

/// What an authenticated client may do on a pub/sub route.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Channel patterns it may subscribe to (`None` = all).
    pub subscribe: Option<Vec<String>>,
    /// Channel patterns it may publish to (`None` = all).
    pub publish: Option<Vec<String>>,
    /// Who (the JWT `sub`), for logs.
    pub subject: Option<String>,
}

impl Grants {
    /// Full access (an opaque token).
    pub fn all() -> Grants {
        Grants::default()
    }

    /// A client without credentials: subscribe anywhere, publish nowhere
    /// (until [`Grants::with_client_publish`]).
    pub fn anonymous() -> Grants {
        Grants {
            publish: Some(Vec::new()),
            ..Grants::default()
        }
    }

    /// Add the channels a route lets every client publish to
    /// (`client_publish`).
    pub fn with_client_publish(mut self, patterns: &[String]) -> Grants {
        if let Some(p) = &mut self.publish {
            p.extend_from_slice(patterns);
        }
        self
    }

    /// May subscribe to `channel`?
    pub fn may_subscribe(&self, channel: &str) -> bool {
        allowed(&self.subscribe, channel)
    }

    /// May publish to `channel`?
    pub fn may_publish(&self, channel: &str) -> bool {
        allowed(&self.publish, channel)
    }
}

/// `None` allows all; patterns are exact names or `prefix*`.
///
/// A prefix is matched byte for byte, with no notion of a separator:
/// `tenant1*` matches `tenant10` as well as `tenant1.news`. To stay within
/// one namespace, end the prefix with the separator the channel names use
/// (`tenant1.*`). `*` alone matches every channel.
fn allowed(list: &Option<Vec<String>>, channel: &str) -> bool {
    match list {
        None => true,
        Some(l) => l.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => p == channel,
        }),
    }
}

/// The (percent-decoded) value of a query parameter.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// Decode `%XX` escapes (and `+` as space); invalid escapes are kept.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Compare secrets without an early exit on the first different byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts of open connections, total and per IP: one for WebSockets, one
/// for connections in the HTTP phase.
#[derive(Debug)]
pub struct ConnLimiter {
    /// Changed by a reload; slots already held stay held.
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused by the limiter.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitError {
    /// Too many in all.
    Total,
    /// Too many from this IP.
    PerIp,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    /// `None`: counted in the total only.
    ip: Option<IpAddr>,
}

impl ConnLimiter {
    /// Limits.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            inner: Mutex::new((0, HashMap::new())),
        })
    }

    /// New limits for connections from now on (a reload).
    pub fn set_limits(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Take a slot for `ip`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, LimitError> {
        self.acquire_for(Some(ip))
    }

    /// Take a slot for `ip`, or in the total only (`None`: a connection
    /// from a trusted proxy carries many clients).
    pub fn acquire_for(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnSlot, LimitError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 >= self.max_total.load(Ordering::Relaxed) {
            return Err(LimitError::Total);
        }
        if let Some(ip) = ip {
            let n = g.1.entry(ip).or_insert(0);
            if *n >= self.max_per_ip.load(Ordering::Relaxed) {
                return Err(LimitError::PerIp);
            }
            *n += 1;
        }
        g.0 += 1;
        Ok(ConnSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut g = self.limiter.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        let Some(ip) = self.ip else {
            return;
        };
        if let Some(n) = g.1.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_refuses_rebound_names() {
        assert!(host_allowed(&HostRule::Loopback, "localhost:8080"));
        assert!(host_allowed(&HostRule::Loopback, "127.0.0.1"));
        assert!(host_allowed(&HostRule::Loopback, "[::1]:80"));
        assert!(!host_allowed(&HostRule::Loopback, "evil.example:8080"));
        assert!(!host_allowed(&HostRule::Loopback, "127.0.0.1.evil.example"));
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let r = OriginRule::SameOrigin;
        assert!(origin_allowed(&r, None, "127.0.0.1:8080", false));
        assert!(origin_allowed(
            &r,
            Some("http://127.0.0.1:8080"),
            "127.0.0.1:8080",
            false
        ));
        assert!(origin_allowed(
            &r,
            Some("http://Example.com"),
            "example.com:80",
            false
        ));
        assert!(origin_allowed(
            &r,
            Some("https://example.com"),
            "example.com",
            true
        ));
        assert!(!origin_allowed(
            &r,
            Some("http://127.0.0.1:9999"),
            "127.0.0.1:8080",
            false
        ));
        assert!(!origin_allowed(
            &r,
            Some("http://evil.example"),
            "127.0.0.1",
            false
        ));
        assert!(!origin_allowed(&r, Some("null"), "127.0.0.1", false));
        assert!(!origin_allowed(
            &r,
            Some("https://example.com"),
            "example.com",
            false
        ));
    }

    #[test]
    fn origin_list_is_exact() {
        let r = OriginRule::List(vec!["https://app.example".into()]);
        assert!(origin_allowed(&r, Some("https://app.example/"), "x", false));
        assert!(!origin_allowed(
            &r,
            Some("https://app.example.evil"),
            "x",
            false
        ));
    }

    #[test]
    fn channel_patterns() {
        let g = Grants {
            subscribe: Some(vec!["news.*".into(), "chat".into()]),
            publish: Some(vec![]),
            subject: None,
        };
        assert!(g.may_subscribe("news.sport"));
        assert!(g.may_subscribe("chat"));
        assert!(!g.may_subscribe("chat2"));
        assert!(!g.may_publish("chat"));
    }

    #[test]
    fn a_prefix_pattern_is_a_plain_prefix_so_end_it_with_a_separator() {
        let g = Grants {
            subscribe: Some(vec!["tenant1*".into()]),
            publish: Some(vec!["tenant1.*".into()]),
            subject: None,
        };
        // Documented: `*` does not stop at a name boundary.
        assert!(g.may_subscribe("tenant10"));
        assert!(g.may_subscribe("tenant1.news"));
        // With the separator in the pattern, another tenant is out.
        assert!(g.may_publish("tenant1.news"));
        assert!(!g.may_publish("tenant10.news"));
        assert!(!g.may_publish("tenant1"));
    }

    #[test]
    fn anonymous_clients_publish_only_where_the_route_allows() {
        let anon = Grants::anonymous();
        assert!(anon.may_subscribe("ticker") && !anon.may_publish("ticker"));
        let chat = Grants::anonymous().with_client_publish(&["chat.*".into()]);
        assert!(chat.may_publish("chat.lobby") && !chat.may_publish("ticker"));
        let all = Grants::anonymous().with_client_publish(&["*".into()]);
        assert!(all.may_publish("anything"));
        assert!(Grants::all().with_client_publish(&[]).may_publish("x"));
    }

    #[test]
    fn limiter_counts_per_ip_and_total() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), LimitError::PerIp);
        let _s3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).unwrap_err(), LimitError::Total);
        drop(s1);
        assert!(l.acquire(a).is_ok());
    }

    #[test]
    fn unkeyed_slots_count_in_the_total_only() {
        let l = ConnLimiter::new(3, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _p1 = l.acquire_for(None).unwrap();
        let _p2 = l.acquire_for(None).unwrap();
        let s = l.acquire(a).unwrap();
        assert_eq!(l.acquire_for(None).unwrap_err(), LimitError::Total);
        drop(s);
        assert!(l.acquire_for(None).is_ok());
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param("a=1&access_token=x%2By+z", "access_token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
