//! [`admit`]: the one decision on a WebSocket handshake, whatever HTTP
//! version carried it, and [`Refusal`]: every way it says no, each with its
//! status, client body, metric label and log line.

use super::host::{host_allowed, host_refusal, split_host};
use super::{ConnSlot, Grants, LimitError};
use crate::serve::auth::{self, AuthError};
use crate::serve::config::{Route, RouteKind, MAX_NAME};
use crate::serve::exec::ProcessSlot;
use crate::serve::logsafe::esc;
use crate::serve::metrics::Metrics;
use crate::serve::query::percent_decode;
use crate::serve::state::State;
use http::StatusCode;
use std::net::{IpAddr, SocketAddr};
use tracing::info;

/// What admission looks at in a handshake request.
///
/// An HTTP/1.1 upgrade fills it from its request line and headers. An
/// HTTP/2 extended CONNECT (RFC 8441) fills it from its pseudo-headers:
/// `host` is `:authority` (which stands in for `Host`, RFC 9113 §8.3.1),
/// `path` and `query` come from `:path`; `Origin`, `Authorization` and
/// `Cookie` are ordinary headers in both.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// The host the request was sent to: `Host`, or `:authority`.
    pub host: &'a str,
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    /// The query string without `?` (empty: none).
    pub query: &'a str,
    /// `Origin`, if sent.
    pub origin: Option<&'a str>,
    /// The request headers (where the token is looked for).
    pub headers: &'a http::HeaderMap,
    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    pub client: SocketAddr,
    /// The client used `https`/`wss`: TLS here, or the scheme a trusted
    /// proxy forwarded.
    pub https: bool,
}

/// What a request asks to open.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'s> {
    /// A WebSocket: the route is the first WebSocket route whose path
    /// pattern matches.
    WebSocket,
    /// A route its path already chose (a pubsub route's event stream).
    Route(&'s Route),
}

/// A handshake let in: where it goes and what it holds.
#[derive(Debug)]
pub struct Admission<'s> {
    /// The route.
    pub route: &'s Route,
    /// The path's `{name}` capture, percent-decoded (a room route's room).
    pub capture: Option<String>,
    /// What the client may do (pub/sub channels).
    pub grants: Grants,
    /// The WebSocket connection slot; freed on drop.
    pub slot: ConnSlot,
    /// An exec route's program slot; freed on drop.
    pub process: Option<ProcessSlot<'s>>,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// Not a valid WebSocket upgrade (the library answers it: 400, or 426
    /// for another protocol version).
    Handshake(String),
    /// A `Host` the listener does not answer; why, naming the setting.
    Host(String),
    /// No WebSocket route matches the path.
    NoRoute,
    /// An `Origin` the route does not allow; why, naming the setting.
    Origin(String),
    /// A room name longer than [`MAX_NAME`] bytes.
    RoomName(usize),
    /// No token in the request; the route's query parameter name.
    NoToken(String),
    /// A token that is not accepted; why (for the log only).
    BadToken(String),
    /// `limits.max_connections` (or `max_http_connections`) reached.
    Connections(usize),
    /// `limits.max_connections_per_ip` (or `max_http_connections_per_ip`)
    /// reached for this address.
    ConnectionsPerIp(usize, IpAddr),
    /// An exec route's `max_processes` reached: the limit and the route.
    Processes(usize, String),
    /// An event stream without a `channel` parameter (204 stops an
    /// `EventSource`).
    NoChannel,
    /// An invalid channel name.
    BadChannel,
    /// A channel the client may not subscribe to.
    ForbiddenChannel(String),
    /// More channels than `limits.max_subscriptions`.
    TooManyChannels(usize),
}

impl Refusal {
    /// A connection limit's refusal.
    pub fn of_limit(e: LimitError, max_total: usize, max_per_ip: usize, ip: IpAddr) -> Refusal {
        match e {
            LimitError::Total => Refusal::Connections(max_total),
            LimitError::PerIp => Refusal::ConnectionsPerIp(max_per_ip, ip),
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Handshake(_)
            | Refusal::RoomName(_)
            | Refusal::BadChannel
            | Refusal::TooManyChannels(_) => StatusCode::BAD_REQUEST,
            Refusal::NoChannel => StatusCode::NO_CONTENT,
            Refusal::ForbiddenChannel(_) => StatusCode::FORBIDDEN,
            Refusal::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
            Refusal::NoToken(_) | Refusal::BadToken(_) => StatusCode::UNAUTHORIZED,
            Refusal::Connections(_) | Refusal::Processes(..) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::ConnectionsPerIp(..) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `reason` label of `tether_handshakes_rejected_total` and
    /// `tether_http_connections_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Handshake(_) => "bad_handshake",
            Refusal::Host(_) => "host",
            Refusal::NoRoute => "not_found",
            Refusal::Origin(_) => "origin",
            Refusal::RoomName(_) => "bad_room",
            Refusal::NoToken(_) | Refusal::BadToken(_) => "auth",
            Refusal::Connections(_) => "limit_total",
            Refusal::ConnectionsPerIp(..) => "limit_ip",
            Refusal::Processes(..) => "exec_processes",
            Refusal::NoChannel => "no_channel",
            Refusal::BadChannel => "bad_channel",
            Refusal::ForbiddenChannel(_) => "forbidden_channel",
            Refusal::TooManyChannels(_) => "too_many_channels",
        }
    }

    /// What the client is told: a short reason, never why its token failed
    /// (an attacker would use that to probe).
    pub fn body(&self) -> String {
        match self {
            Refusal::Handshake(_) => "bad WebSocket handshake\n".into(),
            Refusal::Host(_) => "this server does not answer for that Host name\n".into(),
            Refusal::NoRoute => "no WebSocket endpoint here\n".into(),
            Refusal::Origin(_) => "cross-origin connections are not allowed here\n".into(),
            Refusal::RoomName(_) => format!("room names are at most {MAX_NAME} bytes\n"),
            Refusal::NoToken(_) => "authentication required\n".into(),
            Refusal::BadToken(_) => "invalid token\n".into(),
            Refusal::Connections(_) => "too many connections\n".into(),
            Refusal::ConnectionsPerIp(..) => "too many connections from your address\n".into(),
            Refusal::Processes(..) => {
                "too many programs running for this route (max_processes)\n".into()
            }
            Refusal::NoChannel => String::new(),
            Refusal::BadChannel => {
                "invalid channel name (1 to 128 bytes, no control characters)\n".into()
            }
            Refusal::ForbiddenChannel(c) => format!("not allowed to subscribe to {c}\n"),
            Refusal::TooManyChannels(max) => {
                format!("too many channels: at most {max} per stream (limits.max_subscriptions)\n")
            }
        }
    }

    /// The headers the answer carries besides its body's: `Retry-After: 5`
    /// for a limit that frees up, `WWW-Authenticate: Bearer` for a token.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Refusal::Connections(_) | Refusal::ConnectionsPerIp(..) | Refusal::Processes(..) => {
                &[("retry-after", "5")]
            }
            Refusal::NoToken(_) | Refusal::BadToken(_) => &[("www-authenticate", "Bearer")],
            _ => &[],
        }
    }

    /// What was received and the setting that decides, for the log.
    pub fn detail(&self) -> String {
        match self {
            Refusal::Handshake(why) => esc(why).to_string(),
            // Quoted with `{:?}` where made.
            Refusal::Host(why) | Refusal::Origin(why) => why.clone(),
            Refusal::NoRoute => "no WebSocket route matches the path".into(),
            Refusal::RoomName(len) => format!(
                "the room name is {len} bytes; at most {MAX_NAME} (a route's `{{room}}` capture)"
            ),
            Refusal::NoToken(param) => {
                format!("no token (Authorization: Bearer, cookie or `{param}` query parameter)")
            }
            Refusal::BadToken(why) => format!("token refused: {}", esc(why)),
            Refusal::Connections(max) => format!("limits.max_connections ({max}) reached"),
            Refusal::ConnectionsPerIp(max, ip) => {
                format!("limits.max_connections_per_ip ({max}) reached for {ip}")
            }
            Refusal::Processes(max, route) => {
                format!("`max_processes` ({max}) programs of {route} already running")
            }
            Refusal::NoChannel => "no `channel` parameter".into(),
            Refusal::BadChannel | Refusal::ForbiddenChannel(_) | Refusal::TooManyChannels(_) => {
                self.body().trim_end().to_owned()
            }
        }
    }

    /// Count the refusal and log one line: what was refused (`WebSocket`,
    /// `event stream`, `request`), what was received and the setting that
    /// decides.
    pub fn record(&self, metrics: &Metrics, what: &str, peer: SocketAddr, path: &str) {
        metrics.rejected(self.label());
        info!(%peer, path = %esc(path), status = self.status().as_u16(), "refused {what}: {}: {}", self.label(), self.detail());
    }

    /// The answer to a refused WebSocket handshake.
    pub fn reject(&self) -> tether::Reject {
        let mut r = tether::Reject::new(self.status(), self.body());
        for (name, value) in self.headers() {
            r = r.header(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        r
    }

    /// The answer as a whole HTTP/1.1 response that closes the connection.
    pub fn http1_response(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.body();
        let headers: String = self
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        format!(
            "HTTP/1.1 {} {}\r\n{headers}content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

/// The Host check of listener `listener` (`listen[N]`), for every request.
pub fn check_host(state: &State, listener: usize, host: &str) -> Result<(), Refusal> {
    let rule = &state.config.listeners[listener].hosts;
    if host_allowed(rule, host) {
        Ok(())
    } else {
        Err(Refusal::Host(host_refusal(rule, host, listener)))
    }
}

/// Decide on a request for `endpoint` that arrived on listener `listener`
/// (`listen[N]`) and is otherwise valid (a WebSocket handshake the library
/// validated, or an event stream's `GET`): the checks of [`super`] in
/// their order, the first failing one refusing. Every path that opens a
/// long-lived connection calls it: the HTTP/1.1 upgrade, the event stream,
/// and an HTTP/2 extended CONNECT (with `:authority` as the host).
/// Admitted, the request holds a connection slot (and an exec route's
/// process slot) until the [`Admission`] is dropped.
pub fn admit<'s>(
    state: &'s State,
    listener: usize,
    up: &Upgrade<'_>,
    endpoint: Endpoint<'s>,
) -> Result<Admission<'s>, Refusal> {
    check_host(state, listener, up.host)?;
    let (route, capture) = match endpoint {
        Endpoint::Route(route) => (route, None),
        Endpoint::WebSocket => {
            let (name, _) = split_host(up.host);
            state
                .config
                .routes_for(&name)
                .iter()
                .filter(|r| r.kind.is_websocket())
                .find_map(|r| {
                    let (caps, _) = r.pattern.matches(up.path)?;
                    Some((r, caps.first().map(|c| percent_decode(c))))
                })
                .ok_or(Refusal::NoRoute)?
        }
    };
    if !route.origins.allows_over(up.origin, up.host, up.https) {
        let origin = up.origin.unwrap_or("");
        let detail = match &route.origins {
            tether::OriginPolicy::List(list) => {
                format!("Origin {origin:?} not in {} origins {list:?}", route.name)
            }
            _ => format!(
                "Origin {origin:?} is not the origin of Host {:?} ({route} allows the same origin only); list the page's origin, and the server's own, in {route} origins",
                up.host,
                route = route.name
            ),
        };
        return Err(Refusal::Origin(detail));
    }
    if let (RouteKind::Room, Some(room)) = (&route.kind, &capture) {
        if room.len() > MAX_NAME {
            return Err(Refusal::RoomName(room.len()));
        }
    }
    let grants = match &route.auth {
        None => Grants::anonymous(),
        Some(a) => {
            let token = auth::find_token(a, up.headers, up.query);
            auth::check_token(a, token.as_deref()).map_err(|e| match e {
                AuthError::Missing => Refusal::NoToken(a.query_param.clone()),
                AuthError::Invalid(why) => Refusal::BadToken(why),
            })?
        }
    };
    let grants = match &route.kind {
        RouteKind::Pubsub { client_publish, .. } => grants.with_client_publish(client_publish),
        _ => grants,
    };
    let limits = &state.config.limits;
    let ip = up.client.ip();
    let slot = state.limiter.acquire(ip).map_err(|e| {
        Refusal::of_limit(e, limits.max_connections, limits.max_connections_per_ip, ip)
    })?;
    let process = match &route.kind {
        RouteKind::Exec(e) => {
            let running = &state.route_metrics[route.id].exec_processes;
            let process = ProcessSlot::acquire(running, e.max_processes)
                .ok_or_else(|| Refusal::Processes(e.max_processes, route.name.clone()))?;
            Some(process)
        }
        _ => None,
    };
    Ok(Admission {
        route,
        capture,
        grants,
        slot,
        process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_maps_to_one_status_label_and_body() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let cases = [
            (Refusal::Handshake("x".into()), 400, "bad_handshake"),
            (Refusal::Host("x".into()), 421, "host"),
            (Refusal::NoRoute, 404, "not_found"),
            (Refusal::Origin("x".into()), 403, "origin"),
            (Refusal::RoomName(200), 400, "bad_room"),
            (Refusal::NoToken("access_token".into()), 401, "auth"),
            (Refusal::BadToken("expired".into()), 401, "auth"),
            (Refusal::Connections(7), 503, "limit_total"),
            (Refusal::ConnectionsPerIp(3, ip), 429, "limit_ip"),
            (
                Refusal::Processes(1, "route[0] (/x)".into()),
                503,
                "exec_processes",
            ),
            (Refusal::NoChannel, 204, "no_channel"),
            (Refusal::BadChannel, 400, "bad_channel"),
            (
                Refusal::ForbiddenChannel("secret".into()),
                403,
                "forbidden_channel",
            ),
            (Refusal::TooManyChannels(128), 400, "too_many_channels"),
        ];
        for (r, status, label) in cases {
            assert_eq!((r.status().as_u16(), r.label()), (status, label), "{r:?}");
            assert!(r.body().ends_with('\n') || status == 204, "{r:?}");
            let reject = r.reject();
            assert_eq!(reject.status.as_u16(), status);
            for (name, value) in r.headers() {
                assert_eq!(reject.headers[*name], *value, "{r:?}");
            }
            assert_eq!(
                reject.headers.contains_key(http::header::RETRY_AFTER),
                matches!(status, 429 | 503)
            );
        }
        // The client never learns why its token failed; the log does.
        let bad = Refusal::BadToken("ExpiredSignature".into());
        assert!(!bad.body().contains("Expired") && bad.detail().contains("ExpiredSignature"));
    }

    #[test]
    fn an_http1_refusal_is_one_complete_response() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let bytes = Refusal::ConnectionsPerIp(3, ip).http1_response();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 5\r\n") && head.contains("connection: close"));
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
    }
}
