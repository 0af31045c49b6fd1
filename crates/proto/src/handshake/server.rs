//! The server role: validating the client's opening handshake (RFC 6455
//! §4.2.1) and writing the answer (§4.2.2).
//!
//! [`validate_request`] works on any `http::Request`, whether it came from
//! [`parse_request`](super::parse_request) or from hyper, and either returns
//! everything the application needs to decide (path, origin, offered
//! subprotocols and extensions) or the first rule the request breaks. The
//! application then answers with [`build_accept_response`] (raw bytes) or
//! [`accept_response`] (an `http::Response` for hyper), or refuses with
//! [`HandshakeError::to_response`] / [`build_reject_response`].

use std::fmt::Write as _;

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::headers::{has_token, header_tokens, is_token, single};
use super::key::{accept_key, is_valid_key};
use super::{parse_extensions, ExtensionOffer, HandshakeError};

/// A client's opening handshake that passed every check of RFC 6455 §4.2.1:
/// what the server needs to accept or refuse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `Sec-WebSocket-Key` as sent (24 base64 characters); feed it to
    /// [`build_accept_response`]. Empty for a WebSocket opened by an HTTP/2
    /// extended CONNECT ([`validate_extended_connect`](super::validate_extended_connect)),
    /// which has no key (RFC 8441 §5).
    pub key: String,
    /// The authority the client addressed: the `Host` header, or the
    /// authority of an absolute-form target (RFC 7230 §5.5).
    pub host: String,
    /// The `Origin` header, if any (§4.2.1 item 7). Browsers always send it;
    /// a server that relies on cookies or other ambient credentials must
    /// check it to prevent cross-site WebSocket hijacking (§10.2).
    pub origin: Option<String>,
    /// Offered subprotocols, in the client's order of preference (§4.2.1
    /// item 8). Validated as unique tokens.
    pub protocols: Vec<String>,
    /// Offered extensions, in order, across all `Sec-WebSocket-Extensions`
    /// lines (§4.2.1 item 9).
    pub extensions: Vec<ExtensionOffer>,
    /// The resource name: path and query as sent (`/chat?room=1`), always
    /// starting with `/`; for an absolute-form target, its path and query.
    pub path: String,
}

impl UpgradeRequest {
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// The query (after `?`), if the resource has one.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The `Sec-WebSocket-Accept` value answering this request.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// Picks the subprotocol to use: the first one in the client's
    /// preference order that `supported` contains (exact, case-sensitive
    /// match, as subprotocol names are compared by the client, §4.1 response
    /// item 6). `None` means "answer without Sec-WebSocket-Protocol".
    pub fn select_protocol<'a>(&'a self, supported: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(String::as_str)
            .find(|p| supported.contains(p))
    }

    /// The raw `101` response accepting this request; see
    /// [`build_accept_response`].
    pub fn accept(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
        extra: &HeaderMap,
    ) -> Vec<u8> {
        build_accept_response(&self.key, protocol, extensions, extra)
    }
}

/// Checks a client's opening handshake against RFC 6455 §4.2.1 and returns
/// its parts.
///
/// The checks, in order (the first failure is returned):
///
/// 1. method `GET` ([`MethodNotGet`](HandshakeError::MethodNotGet)) and
///    HTTP/1.1 or later ([`Http10`](HandshakeError::Http10)) — item 1;
/// 2. `Upgrade` contains `websocket` — item 3. A request failing this is a
///    plain HTTP request, answered 426
///    ([`MissingUpgradeWebsocket`](HandshakeError::MissingUpgradeWebsocket));
/// 3. `Connection` contains `Upgrade`, over all its field lines — item 4;
/// 4. a target that is a path or an absolute `http`/`https`/`ws`/`wss` URI
///    ([`InvalidRequestTarget`](HandshakeError::InvalidRequestTarget));
/// 5. no body: `Content-Length` absent or 0, no `Transfer-Encoding`
///    ([`RequestHasBody`](HandshakeError::RequestHasBody)) — whatever follows
///    the head is read as frames, so a body would be misinterpreted;
/// 6. exactly one valid `Host` — item 2 and RFC 7230 §5.4. For HTTP/2 and
///    later the URI authority stands in for `Host` when it is absent;
/// 7. exactly one `Sec-WebSocket-Key`, padded base64 of 16 bytes — item 5;
/// 8. exactly one `Sec-WebSocket-Version` (§11.3.5), equal to `13` — item 6;
///    any other value, or none, is
///    [`UnsupportedVersion`](HandshakeError::UnsupportedVersion), answered
///    with 426 and the version this server speaks;
/// 9. at most one `Origin`, ASCII — item 7;
/// 10. `Sec-WebSocket-Protocol` elements are unique tokens — item 8 with
///     §4.1 item 10;
/// 11. `Sec-WebSocket-Extensions` follows §9.1 — item 9.
///
/// The body type is ignored: pass a hyper request as is.
pub fn validate_request<B>(req: &Request<B>) -> Result<UpgradeRequest, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotGet(req.method().clone()));
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::Http10);
    }
    let headers = req.headers();
    // Checked early so that a plain HTTP request (no Upgrade at all) is
    // reported as such, whatever else is wrong with it.
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgradeWebsocket);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let path = resource_name(req.uri())?;
    check_no_body(headers)?;
    let host = host(req)?;

    let key = single(headers, &SEC_WEBSOCKET_KEY)?.ok_or(HandshakeError::MissingKey)?;
    // §1.3: the value "minus any leading and trailing whitespace" is used.
    let key = trim_ows(key.to_str().map_err(|_| HandshakeError::InvalidKey)?);
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }

    check_version(headers)?;
    let (origin, protocols, extensions) = offered_fields(headers)?;
    Ok(UpgradeRequest {
        key: key.to_owned(),
        host,
        origin,
        protocols,
        extensions,
        path,
    })
}

/// `Sec-WebSocket-Version` appears once and is `13` (§4.2.1 item 6,
/// §11.3.5); shared with the HTTP/2 handshake (RFC 8441 §5).
pub(crate) fn check_version(headers: &HeaderMap) -> Result<(), HandshakeError> {
    // §11.3.5: the field MUST NOT appear more than once in a request.
    match single(headers, &SEC_WEBSOCKET_VERSION)? {
        Some(v) if trim_ows_bytes(v.as_bytes()) == b"13" => Ok(()),
        Some(v) => {
            let offered = String::from_utf8_lossy(v.as_bytes()).into_owned();
            Err(HandshakeError::UnsupportedVersion(Some(offered)))
        }
        None => Err(HandshakeError::UnsupportedVersion(None)),
    }
}

/// The `Origin`, the offered subprotocols and the offered extensions
/// (§4.2.1 items 7–9), checked in that order; shared with the HTTP/2
/// handshake, which negotiates them the same way (RFC 8441 §5).
pub(crate) type OfferedFields = (Option<String>, Vec<String>, Vec<ExtensionOffer>);

pub(crate) fn offered_fields(headers: &HeaderMap) -> Result<OfferedFields, HandshakeError> {
    let origin = match single(headers, &ORIGIN).map_err(|_| HandshakeError::InvalidOrigin)? {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| HandshakeError::InvalidOrigin)?;
            Some(trim_ows(v).to_owned())
        }
    };

    let protocols = offered_protocols(headers)?;

    let mut extensions = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let value = value
            .to_str()
            .map_err(|_| HandshakeError::MalformedExtensions("value is not visible ASCII"))?;
        extensions.extend(parse_extensions(value)?);
    }
    Ok((origin, protocols, extensions))
}

/// The resource name (§3) of a request target: origin-form as is; for an
/// absolute-form `http(s)`/`ws(s)` URI, its path and query.
pub(crate) fn resource_name(uri: &Uri) -> Result<String, HandshakeError> {
    if let Some(scheme) = uri.scheme_str() {
        if !["http", "https", "ws", "wss"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return Err(HandshakeError::InvalidRequestTarget);
        }
    }
    let path = uri.path();
    // Rejects asterisk-form (`*`) and authority-form (`host:port`), which
    // are only for OPTIONS and CONNECT (RFC 7230 §5.3).
    if !path.starts_with('/') {
        return Err(HandshakeError::InvalidRequestTarget);
    }
    let mut out = path.to_owned();
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

pub(crate) fn check_no_body(headers: &HeaderMap) -> Result<(), HandshakeError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(HandshakeError::RequestHasBody);
    }
    // Every element of every Content-Length line must be 0 (a list of
    // identical values is tolerated by RFC 7230 §3.3.2).
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| HandshakeError::RequestHasBody)?;
        for element in text.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() || !element.bytes().all(|b| b == b'0') {
                return Err(HandshakeError::RequestHasBody);
            }
        }
    }
    Ok(())
}

pub(crate) fn host<B>(req: &Request<B>) -> Result<String, HandshakeError> {
    let header = single(req.headers(), &HOST)?;
    let header = match header {
        Some(v) => Some(trim_ows(
            v.to_str().map_err(|_| HandshakeError::InvalidHost)?,
        )),
        None => None,
    };
    if let Some(h) = header {
        if !is_valid_host(h) {
            return Err(HandshakeError::InvalidHost);
        }
    }
    // RFC 7230 §5.5: an absolute-form target's authority wins over Host.
    if let Some(authority) = req.uri().authority() {
        if !is_valid_host(authority.as_str()) {
            return Err(HandshakeError::InvalidHost);
        }
        // HTTP/1.1 still requires the Host header itself (RFC 7230 §5.4);
        // HTTP/2 and later carry the authority in :authority instead.
        if header.is_none() && req.version() < Version::HTTP_2 {
            return Err(HandshakeError::MissingHost);
        }
        return Ok(authority.as_str().to_owned());
    }
    header.map(str::to_owned).ok_or(HandshakeError::MissingHost)
}

/// Strips optional whitespace (SP / HTAB, RFC 7230 §3.2.3). Values from
/// [`parse_request`](super::parse_request) are already trimmed; values built
/// by other code may not be.
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

pub(crate) fn trim_ows_bytes(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// RFC 7230 §5.4 `Host = uri-host [ ":" port ]` (RFC 3986 §3.2.2), with a
/// non-empty host (a WebSocket server always has an authority) and a port of
/// 1–5 digits no larger than 65535. No userinfo.
pub(crate) fn is_valid_host(h: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = h.strip_prefix('[') {
        // IP-literal; IPvFuture is not accepted.
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (literal.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        };
        (!host.is_empty() && is_reg_name(host), port)
    };
    let port_ok = match port {
        None => true,
        Some(p) => {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        }
    };
    host_ok && port_ok
}

/// RFC 3986 `reg-name = *( unreserved / pct-encoded / sub-delims )`, which
/// also covers IPv4 literals.
fn is_reg_name(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b'%' => {
                let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 2;
            }
            _ => return false,
        }
        i += 1;
    }
    true
}

fn offered_protocols(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    let mut protocols: Vec<String> = Vec::new();
    for p in header_tokens(headers, &SEC_WEBSOCKET_PROTOCOL) {
        if !is_token(p) {
            return Err(HandshakeError::InvalidSubprotocol(p.to_owned()));
        }
        if protocols.iter().any(|seen| seen == p) {
            return Err(HandshakeError::DuplicateSubprotocol(p.to_owned()));
        }
        protocols.push(p.to_owned());
    }
    // `Sec-WebSocket-Protocol:` with nothing in it: the grammar is 1#token.
    if protocols.is_empty() && headers.contains_key(SEC_WEBSOCKET_PROTOCOL) {
        return Err(HandshakeError::InvalidSubprotocol(String::new()));
    }
    Ok(protocols)
}

/// Headers [`build_accept_response`] writes itself, or that a 101 must not
/// carry (RFC 7230 §3.3.1, §3.3.2: no Transfer-Encoding or Content-Length
/// in a 1xx); such names in `extra` are skipped.
fn owned_by_accept(name: &http::HeaderName) -> bool {
    [
        &UPGRADE,
        &CONNECTION,
        &SEC_WEBSOCKET_ACCEPT,
        &SEC_WEBSOCKET_PROTOCOL,
        &SEC_WEBSOCKET_EXTENSIONS,
        &CONTENT_LENGTH,
        &TRANSFER_ENCODING,
    ]
    .contains(&name)
}

/// The raw `HTTP/1.1 101 Switching Protocols` response accepting a
/// handshake (RFC 6455 §4.2.2 item 5): `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`, then
/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` when given, then
/// `extra`, then the empty line.
///
/// * `key` is the client's `Sec-WebSocket-Key` ([`UpgradeRequest::key`]).
/// * `protocol` must be one of the client's offered subprotocols; a value
///   that is not a token is omitted rather than written (it could not be
///   valid, and writing it could inject header lines).
/// * `extensions` is the negotiated `Sec-WebSocket-Extensions` value (see
///   [`format_extensions`](super::format_extensions)); a value that is not a
///   valid header value is omitted for the same reason.
/// * `extra` headers (e.g. `Set-Cookie`) are appended, except those this
///   function writes itself and `Content-Length`/`Transfer-Encoding`, which a
///   101 must not carry.
pub fn build_accept_response(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    out.push_str("HTTP/1.1 101 Switching Protocols\r\n");
    out.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
    let _ = write!(
        out,
        "Sec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if let Some(p) = protocol.filter(|p| is_token(p)) {
        let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = extensions.filter(|e| is_safe_value(e)) {
        let _ = write!(out, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    let mut out = out.into_bytes();
    write_headers(&mut out, extra, owned_by_accept);
    out.extend_from_slice(b"\r\n");
    out
}

/// The `101` accepting a handshake as an `http::Response`, for servers such
/// as hyper that write the head themselves. Same rules as
/// [`build_accept_response`].
pub fn accept_response(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol
        .filter(|p| is_token(p))
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        h.insert(SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = extensions
        .filter(|e| is_safe_value(e))
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        h.insert(SEC_WEBSOCKET_EXTENSIONS, v);
    }
    resp
}

/// A non-empty header value of visible ASCII, SP and HTAB only, not
/// starting or ending with whitespace.
pub(crate) fn is_safe_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
        && !v.starts_with([' ', '\t'])
        && !v.ends_with([' ', '\t'])
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&http::HeaderName) -> bool) {
    for (name, value) in headers {
        if skip(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A raw HTTP/1.1 response refusing a handshake: the status line, `headers`,
/// `Content-Length`, `Connection: close` (unless `headers` has a
/// `Connection`), `Content-Type: text/plain; charset=utf-8` (unless
/// `headers` has a `Content-Type`), the empty line and `body`.
///
/// `Content-Length` and `Transfer-Encoding` in `headers` are ignored: the
/// length is always computed from `body`. For statuses that cannot carry a
/// body (1xx, 204, 304; RFC 7230 §3.3.3) the body and its headers are
/// omitted. The connection should be closed after sending: the client's
/// bytes after its head were meant as WebSocket frames and cannot be read as
/// another HTTP request.
pub fn build_reject_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    let _ = write_status_line(&mut out, status);
    write_headers(&mut out, headers, |n| {
        n == CONTENT_LENGTH || n == TRANSFER_ENCODING
    });
    if !headers.contains_key(CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        if !headers.contains_key(CONTENT_TYPE) {
            out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

fn write_status_line(out: &mut Vec<u8>, status: StatusCode) -> std::fmt::Result {
    let mut line = String::new();
    // The reason phrase may be empty, but the space before it is required
    // (RFC 7230 §3.1.2).
    write!(
        line,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )?;
    out.extend_from_slice(line.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
