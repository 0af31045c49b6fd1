//! The client role: writing the opening handshake (RFC 6455 §4.1, client
//! items 1–12) and checking the server's answer (§4.1, response items 1–6).
//!
//! Every check on the response is a MUST: a client that skips the
//! `Sec-WebSocket-Accept` comparison could take a plain HTTP server's or a
//! cache's reply for a WebSocket peer, and one that tolerates an
//! unrequested subprotocol or extension would start interpreting frames in
//! a way the application never agreed to.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};

use super::headers::{has_token, header_tokens, is_token, single};
use super::key::{accept_key, is_valid_key};
use super::server::{is_valid_host, trim_ows_bytes};
use super::{parse_extensions, ExtensionOffer, HandshakeError};

/// What a client puts in its opening handshake, apart from the key.
///
/// Build one from a URL with [`Target::client_request`](super::Target::client_request)
/// (or [`ClientRequest::new`]), set the optional fields, then
/// [`encode`](ClientRequest::encode) it with a fresh
/// [`generate_key`](super::generate_key) and keep the key to check the
/// response with [`validate_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The resource name: path and query, starting with `/` (RFC 6455 §3).
    pub resource: String,
    /// The `Host` header value: host, plus `:port` when not the default
    /// (see [`Target::host_header`](super::Target::host_header)).
    pub host_header: String,
    /// An `Origin` header to send (§4.1 item 8; browsers always send one,
    /// other clients may).
    pub origin: Option<String>,
    /// Subprotocols to offer, most preferred first (§4.1 item 10).
    pub protocols: Vec<String>,
    /// A `Sec-WebSocket-Extensions` value to offer, e.g. the output of
    /// [`format_extensions`](super::format_extensions) (§4.1 item 11).
    pub extensions: Option<String>,
    /// Further headers (`Authorization`, `Cookie`, `User-Agent`, ...). Names
    /// the handshake writes itself are refused with
    /// [`HandshakeError::ForbiddenHeader`].
    pub headers: HeaderMap,
}

impl ClientRequest {
    /// A request for `resource` on `host_header`, with nothing optional set.
    pub fn new(resource: impl Into<String>, host_header: impl Into<String>) -> Self {
        ClientRequest {
            resource: resource.into(),
            host_header: host_header.into(),
            origin: None,
            protocols: Vec::new(),
            extensions: None,
            headers: HeaderMap::new(),
        }
    }

    /// Writes the raw request head, ending with the empty line:
    ///
    /// ```text
    /// GET {resource} HTTP/1.1
    /// Host: {host_header}
    /// Upgrade: websocket
    /// Connection: Upgrade
    /// Sec-WebSocket-Key: {key}
    /// Sec-WebSocket-Version: 13
    /// Origin: ...                      (if set)
    /// Sec-WebSocket-Protocol: a, b     (if any)
    /// Sec-WebSocket-Extensions: ...    (if set)
    /// {headers}
    /// ```
    ///
    /// Everything is validated first, so the output is always a well-formed
    /// handshake: the key must be base64 of 16 bytes
    /// ([`InvalidKey`](HandshakeError::InvalidKey)), the resource a
    /// `/`-path of visible ASCII without `#`
    /// ([`InvalidResource`](HandshakeError::InvalidResource)), the host an
    /// authority ([`InvalidHost`](HandshakeError::InvalidHost)), subprotocols
    /// unique tokens ([`InvalidSubprotocol`](HandshakeError::InvalidSubprotocol),
    /// [`DuplicateSubprotocol`](HandshakeError::DuplicateSubprotocol)), the
    /// extensions §9.1-valid, and no extra header may be one the handshake
    /// owns ([`ForbiddenHeader`](HandshakeError::ForbiddenHeader)).
    pub fn encode(&self, key: &str) -> Result<Vec<u8>, HandshakeError> {
        self.check(key)?;
        let mut out = Vec::with_capacity(256);
        let mut line = |parts: &[&[u8]]| {
            for p in parts {
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b"\r\n");
        };
        line(&[b"GET ", self.resource.as_bytes(), b" HTTP/1.1"]);
        line(&[b"Host: ", self.host_header.as_bytes()]);
        line(&[b"Upgrade: websocket"]);
        line(&[b"Connection: Upgrade"]);
        line(&[b"Sec-WebSocket-Key: ", key.as_bytes()]);
        line(&[b"Sec-WebSocket-Version: 13"]);
        if let Some(origin) = &self.origin {
            line(&[b"Origin: ", origin.as_bytes()]);
        }
        if !self.protocols.is_empty() {
            line(&[
                b"Sec-WebSocket-Protocol: ",
                self.protocols.join(", ").as_bytes(),
            ]);
        }
        if let Some(ext) = &self.extensions {
            line(&[b"Sec-WebSocket-Extensions: ", ext.as_bytes()]);
        }
        for (name, value) in &self.headers {
            line(&[name.as_str().as_bytes(), b": ", value.as_bytes()]);
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }

    /// The same request as an `http::Request` (origin-form URI), for HTTP
    /// clients such as hyper that write the head themselves. Validated like
    /// [`encode`](Self::encode).
    pub fn to_request(&self, key: &str) -> Result<Request<()>, HandshakeError> {
        self.check(key)?;
        let mut req = Request::new(());
        *req.uri_mut() = self
            .resource
            .parse()
            .map_err(|_| HandshakeError::InvalidResource)?;
        *req.version_mut() = Version::HTTP_11;
        let h = req.headers_mut();
        h.insert(
            HOST,
            value(&self.host_header).ok_or(HandshakeError::InvalidHost)?,
        );
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            SEC_WEBSOCKET_KEY,
            value(key).ok_or(HandshakeError::InvalidKey)?,
        );
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Some(origin) = &self.origin {
            h.insert(ORIGIN, value(origin).ok_or(HandshakeError::InvalidOrigin)?);
        }
        if !self.protocols.is_empty() {
            let joined = self.protocols.join(", ");
            h.insert(
                SEC_WEBSOCKET_PROTOCOL,
                value(&joined).ok_or(HandshakeError::InvalidSubprotocol(joined))?,
            );
        }
        if let Some(ext) = &self.extensions {
            h.insert(
                SEC_WEBSOCKET_EXTENSIONS,
                value(ext).ok_or(HandshakeError::MalformedExtensions(
                    "not a valid header value",
                ))?,
            );
        }
        for (name, v) in &self.headers {
            h.append(name.clone(), v.clone());
        }
        Ok(req)
    }

    fn check(&self, key: &str) -> Result<(), HandshakeError> {
        if !is_valid_key(key) {
            return Err(HandshakeError::InvalidKey);
        }
        self.check_parts()
    }

    /// Everything [`check`](Self::check) validates but the key.
    pub(crate) fn check_parts(&self) -> Result<(), HandshakeError> {
        if !is_valid_resource(&self.resource) {
            return Err(HandshakeError::InvalidResource);
        }
        if !is_valid_host(&self.host_header) {
            return Err(HandshakeError::InvalidHost);
        }
        if let Some(origin) = &self.origin {
            if origin.is_empty() || !origin.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err(HandshakeError::InvalidOrigin);
            }
        }
        for (i, p) in self.protocols.iter().enumerate() {
            if !is_token(p) {
                return Err(HandshakeError::InvalidSubprotocol(p.clone()));
            }
            if self.protocols[..i].contains(p) {
                return Err(HandshakeError::DuplicateSubprotocol(p.clone()));
            }
        }
        if let Some(ext) = &self.extensions {
            // The grammar excludes CR/LF, so a valid list cannot inject lines.
            parse_extensions(ext)?;
        }
        if let Some(name) = self.headers.keys().find(|n| is_forbidden(n)) {
            return Err(HandshakeError::ForbiddenHeader(name.clone()));
        }
        Ok(())
    }
}

pub(crate) fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// A resource name: `/`, then visible ASCII without `#` (RFC 6455 §3; the
/// URL parser has already percent-encoded everything else).
fn is_valid_resource(r: &str) -> bool {
    r.starts_with('/') && r.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'#')
}

/// Headers the handshake writes (or that would give the GET a body).
fn is_forbidden(name: &HeaderName) -> bool {
    [
        &HOST,
        &UPGRADE,
        &CONNECTION,
        &ORIGIN,
        &CONTENT_LENGTH,
        &TRANSFER_ENCODING,
    ]
    .contains(&name)
        || name.as_str().starts_with("sec-websocket-")
}

/// What the server agreed to in a valid `101` response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol the server selected, one of those offered; `None` if
    /// it selected none (the application decides whether that is
    /// acceptable).
    pub protocol: Option<String>,
    /// The extensions the server accepted, in the order it listed them
    /// (which is the order they apply, §9.1), with its parameters, for the
    /// extension's own negotiation to check.
    pub extensions: Vec<ExtensionOffer>,
}

/// Checks the server's answer to a client handshake (RFC 6455 §4.1, the
/// client's response checks) and returns what was agreed.
///
/// * `key` is the `Sec-WebSocket-Key` that was sent;
/// * `offered_protocols` the subprotocols that were offered;
/// * `offered_extension_names` the names of the extensions that were offered.
///
/// The checks, in order:
///
/// 1. status `101` ([`UnexpectedStatus`](HandshakeError::UnexpectedStatus);
///    the caller may follow redirects or handle 401 itself) and HTTP/1.1 or
///    later ([`Http10`](HandshakeError::Http10));
/// 2. `Upgrade` is `websocket`, case-insensitively, and names nothing else —
///    the response must not switch to any other protocol;
/// 3. `Connection` contains `Upgrade`;
/// 4. exactly one `Sec-WebSocket-Accept`, equal to [`accept_key`]`(key)`;
/// 5. every extension in `Sec-WebSocket-Extensions` (§9.1 grammar, all
///    lines: the field may be repeated in a response, RFC 6455 erratum 3433)
///    was offered ([`UnrequestedExtension`](HandshakeError::UnrequestedExtension))
///    and appears once ([`DuplicateExtension`](HandshakeError::DuplicateExtension));
///    names compare ASCII-case-insensitively like other HTTP tokens;
/// 6. `Sec-WebSocket-Protocol`, if present, is a single line holding a
///    single token that was offered (exact match,
///    [`UnrequestedSubprotocol`](HandshakeError::UnrequestedSubprotocol)).
pub fn validate_response<B>(
    resp: &Response<B>,
    key: &str,
    offered_protocols: &[String],
    offered_extension_names: &[&str],
) -> Result<Accepted, HandshakeError> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus(resp.status()));
    }
    if resp.version() < Version::HTTP_11 {
        return Err(HandshakeError::Http10);
    }
    let headers = resp.headers();

    let mut upgrade = header_tokens(headers, &UPGRADE).peekable();
    if upgrade.peek().is_none() || !upgrade.all(|t| t.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::MissingUpgradeWebsocket);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }

    let accept = single(headers, &SEC_WEBSOCKET_ACCEPT)?.ok_or(HandshakeError::MissingAccept)?;
    if trim_ows_bytes(accept.as_bytes()) != accept_key(key.as_bytes()).as_bytes() {
        return Err(HandshakeError::AcceptMismatch);
    }
    agreed_fields(headers, offered_protocols, offered_extension_names)
}

/// Checks 5 and 6 of [`validate_response`]: the extensions and subprotocol
/// the server agreed to; shared with the HTTP/2 handshake (RFC 8441 §5).
pub(crate) fn agreed_fields(
    headers: &HeaderMap,
    offered_protocols: &[String],
    offered_extension_names: &[&str],
) -> Result<Accepted, HandshakeError> {
    let mut extensions: Vec<ExtensionOffer> = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let value = value
            .to_str()
            .map_err(|_| HandshakeError::MalformedExtensions("value is not visible ASCII"))?;
        for ext in parse_extensions(value)? {
            if !offered_extension_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&ext.name))
            {
                return Err(HandshakeError::UnrequestedExtension(ext.name));
            }
            if extensions
                .iter()
                .any(|e| e.name.eq_ignore_ascii_case(&ext.name))
            {
                return Err(HandshakeError::DuplicateExtension(ext.name));
            }
            extensions.push(ext);
        }
    }

    let protocol = match single(headers, &SEC_WEBSOCKET_PROTOCOL)? {
        None => None,
        Some(v) => {
            let text = String::from_utf8_lossy(trim_ows_bytes(v.as_bytes()));
            // Sec-WebSocket-Protocol-Server = token (§4.3): one, no list.
            if !is_token(&text) {
                return Err(HandshakeError::InvalidSubprotocol(text.into_owned()));
            }
            if !offered_protocols.iter().any(|p| *p == text) {
                return Err(HandshakeError::UnrequestedSubprotocol(text.into_owned()));
            }
            Some(text.into_owned())
        }
    };

    Ok(Accepted {
        protocol,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{parse_request, parse_response, validate_request, HandshakeLimits};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn ok_response() -> http::response::Builder {
        Response::builder()
            .status(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", ACCEPT)
    }

    fn offered() -> Vec<String> {
        vec!["chat".into(), "superchat".into()]
    }

    #[test]
    fn client_encodes_rfc6455_section_1_2_request() {
        let mut req = ClientRequest::new("/chat", "server.example.com");
        req.origin = Some("http://example.com".into());
        req.protocols = offered();
        assert_eq!(
            String::from_utf8(req.encode(KEY).unwrap()).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Origin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
    }

    #[test]
    fn client_request_passes_server_validation() {
        let mut req = ClientRequest::new("/a?b=c", "[::1]:9001");
        req.protocols = offered();
        req.extensions = Some("permessage-deflate; client_max_window_bits".into());
        req.headers
            .insert("authorization", HeaderValue::from_static("Bearer x"));
        let raw = req.encode(KEY).unwrap();
        let (parsed, n) = parse_request(&raw, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, raw.len());
        let up = validate_request(&parsed).unwrap();
        assert_eq!(up.path, "/a?b=c");
        assert_eq!(up.host, "[::1]:9001");
        assert_eq!(up.protocols, offered());
        assert_eq!(up.extensions[0].name, "permessage-deflate");
        assert_eq!(parsed.headers()["authorization"], "Bearer x");
    }

    #[test]
    fn client_to_request_matches_encode() {
        let mut req = ClientRequest::new("/x", "h");
        req.protocols = vec!["p".into()];
        let r = req.to_request(KEY).unwrap();
        assert_eq!(r.uri(), "/x");
        let up = validate_request(&r).unwrap();
        assert_eq!(up.protocols, ["p"]);
    }

    #[test]
    fn client_rejects_forbidden_extra_headers() {
        for name in [
            "host",
            "upgrade",
            "connection",
            "origin",
            "sec-websocket-key",
            "sec-websocket-version",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "sec-websocket-anything",
            "content-length",
            "transfer-encoding",
        ] {
            let mut req = ClientRequest::new("/", "h");
            req.headers
                .insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            assert_eq!(
                req.encode(KEY),
                Err(HandshakeError::ForbiddenHeader(HeaderName::from_static(
                    name
                ))),
                "{name}"
            );
        }
    }

    #[test]
    fn client_rejects_invalid_or_duplicate_subprotocols() {
        let mut req = ClientRequest::new("/", "h");
        req.protocols = vec!["chat".into(), "chat v2".into()];
        assert_eq!(
            req.encode(KEY),
            Err(HandshakeError::InvalidSubprotocol("chat v2".into()))
        );
        req.protocols = vec!["".into()];
        assert_eq!(
            req.encode(KEY),
            Err(HandshakeError::InvalidSubprotocol("".into()))
        );
        req.protocols = vec!["chat".into(), "v2".into(), "chat".into()];
        assert_eq!(
            req.encode(KEY),
            Err(HandshakeError::DuplicateSubprotocol("chat".into()))
        );
    }

    #[test]
    fn client_rejects_invalid_request_parts() {
        assert_eq!(
            ClientRequest::new("/", "h").encode("short"),
            Err(HandshakeError::InvalidKey)
        );
        for bad in ["", "chat", "/a b", "/a#b", "/\r\nX: y", "/é"] {
            assert_eq!(
                ClientRequest::new(bad, "h").encode(KEY),
                Err(HandshakeError::InvalidResource),
                "{bad:?}"
            );
        }
        for bad in ["", "h\r\nX: y", "u@h", "h h"] {
            assert_eq!(
                ClientRequest::new("/", bad).encode(KEY),
                Err(HandshakeError::InvalidHost),
                "{bad:?}"
            );
        }
        let mut req = ClientRequest::new("/", "h");
        req.origin = Some("http://a\r\nX: y".into());
        assert_eq!(req.encode(KEY), Err(HandshakeError::InvalidOrigin));
        let mut req = ClientRequest::new("/", "h");
        req.extensions = Some("x\r\nX: y".into());
        assert!(matches!(
            req.encode(KEY),
            Err(HandshakeError::MalformedExtensions(_))
        ));
    }

    #[test]
    fn client_accepts_rfc6455_section_1_3_response() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            Sec-WebSocket-Protocol: chat\r\n\r\n";
        let (resp, _) = parse_response(raw, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        let accepted = validate_response(&resp, KEY, &offered(), &[]).unwrap();
        assert_eq!(
            accepted,
            Accepted {
                protocol: Some("chat".into()),
                extensions: vec![]
            }
        );
    }

    #[test]
    fn client_rejects_non_101_status() {
        let resp = Response::builder().status(200).body(()).unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::UnexpectedStatus(StatusCode::OK))
        );
    }

    #[test]
    fn client_rejects_http10_response() {
        let resp = ok_response().version(Version::HTTP_10).body(()).unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::Http10)
        );
    }

    #[test]
    fn client_rejects_missing_or_foreign_upgrade() {
        let mut resp = ok_response().body(()).unwrap();
        resp.headers_mut().remove(UPGRADE);
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::MissingUpgradeWebsocket)
        );
        resp.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket, h2c"));
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::MissingUpgradeWebsocket)
        );
        resp.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(validate_response(&resp, KEY, &[], &[]).is_ok());
    }

    #[test]
    fn client_rejects_missing_connection_upgrade() {
        let mut resp = ok_response().body(()).unwrap();
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
        resp.headers_mut()
            .append(CONNECTION, HeaderValue::from_static("upgrade"));
        assert!(validate_response(&resp, KEY, &[], &[]).is_ok());
    }

    #[test]
    fn client_rejects_wrong_missing_or_duplicate_accept() {
        let resp = ok_response().body(()).unwrap();
        assert_eq!(
            validate_response(&resp, "x3JJHMbDL1EzLkh9GBhXDw==", &[], &[]),
            Err(HandshakeError::AcceptMismatch)
        );
        let mut resp = ok_response().body(()).unwrap();
        resp.headers_mut().remove(SEC_WEBSOCKET_ACCEPT);
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::MissingAccept)
        );
        let resp = ok_response()
            .header("Sec-WebSocket-Accept", ACCEPT)
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::DuplicateHeader(SEC_WEBSOCKET_ACCEPT))
        );
        // Base64 is case-sensitive: a case-folded accept value is wrong.
        let resp = ok_response().body(()).unwrap();
        let mut lower = resp;
        lower.headers_mut().insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pplmbitxaq9kygzzhzrbk+xoo="),
        );
        assert_eq!(
            validate_response(&lower, KEY, &[], &[]),
            Err(HandshakeError::AcceptMismatch)
        );
    }

    #[test]
    fn client_rejects_unrequested_subprotocol() {
        let resp = ok_response()
            .header("Sec-WebSocket-Protocol", "chat")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::UnrequestedSubprotocol("chat".into()))
        );
        let resp = ok_response()
            .header("Sec-WebSocket-Protocol", "Chat")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &offered(), &[]),
            Err(HandshakeError::UnrequestedSubprotocol("Chat".into()))
        );
    }

    #[test]
    fn client_rejects_subprotocol_list_in_response() {
        let resp = ok_response()
            .header("Sec-WebSocket-Protocol", "chat, superchat")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &offered(), &[]),
            Err(HandshakeError::InvalidSubprotocol("chat, superchat".into()))
        );
        let resp = ok_response()
            .header("Sec-WebSocket-Protocol", "chat")
            .header("Sec-WebSocket-Protocol", "chat")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &offered(), &[]),
            Err(HandshakeError::DuplicateHeader(SEC_WEBSOCKET_PROTOCOL))
        );
        let resp = ok_response()
            .header("Sec-WebSocket-Protocol", "")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &offered(), &[]),
            Err(HandshakeError::InvalidSubprotocol("".into()))
        );
    }

    #[test]
    fn client_accepts_no_subprotocol_even_if_offered() {
        let resp = ok_response().body(()).unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &offered(), &[])
                .unwrap()
                .protocol,
            None
        );
    }

    #[test]
    fn client_rejects_unrequested_extension() {
        let resp = ok_response()
            .header("Sec-WebSocket-Extensions", "permessage-deflate")
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &[]),
            Err(HandshakeError::UnrequestedExtension(
                "permessage-deflate".into()
            ))
        );
        assert_eq!(
            validate_response(&resp, KEY, &[], &["x-other"]),
            Err(HandshakeError::UnrequestedExtension(
                "permessage-deflate".into()
            ))
        );
    }

    #[test]
    fn client_rejects_duplicate_extension() {
        let resp = ok_response()
            .header("Sec-WebSocket-Extensions", "permessage-deflate")
            .header(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_no_context_takeover",
            )
            .body(())
            .unwrap();
        assert_eq!(
            validate_response(&resp, KEY, &[], &["permessage-deflate"]),
            Err(HandshakeError::DuplicateExtension(
                "permessage-deflate".into()
            ))
        );
    }

    #[test]
    fn client_returns_accepted_extensions_with_params() {
        let resp = ok_response()
            .header(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=10, x-b",
            )
            .body(())
            .unwrap();
        let accepted = validate_response(&resp, KEY, &[], &["x-b", "permessage-deflate"]).unwrap();
        assert_eq!(
            accepted.extensions,
            [
                ExtensionOffer::new("permessage-deflate")
                    .with_param("server_max_window_bits", Some("10")),
                ExtensionOffer::new("x-b"),
            ]
        );
    }

    #[test]
    fn client_rejects_malformed_extensions_in_response() {
        let resp = ok_response()
            .header("Sec-WebSocket-Extensions", "permessage-deflate;")
            .body(())
            .unwrap();
        assert!(matches!(
            validate_response(&resp, KEY, &[], &["permessage-deflate"]),
            Err(HandshakeError::MalformedExtensions(_))
        ));
    }
}
