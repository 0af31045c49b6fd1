//! The opening handshake of a WebSocket over HTTP/2 (RFC 8441), for both
//! roles, sans-IO.
//!
//! Over HTTP/2 a WebSocket is one stream of a shared connection, opened by
//! an *extended CONNECT*: `:method CONNECT` with the `:protocol`
//! pseudo-header `websocket`, `:scheme`, `:path` and `:authority` as for any
//! request, and the same `Sec-WebSocket-Version`, `Origin`,
//! `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` fields as the
//! HTTP/1.1 handshake. There is no `Sec-WebSocket-Key` and no
//! `Sec-WebSocket-Accept` (RFC 8441 §5): the server answers `200`, and the
//! stream's DATA frames then carry WebSocket frames, masked and negotiated
//! exactly as over HTTP/1.1.
//!
//! The `:protocol` pseudo-header is not part of the `http` crate's request;
//! HTTP/2 libraries carry it in the request's extensions
//! (`hyper::ext::Protocol`, `h2::ext::Protocol`), so the server side takes
//! its value as an argument and the client side leaves it to the caller.
//!
//! The server validates with [`validate_extended_connect`] (same
//! [`UpgradeRequest`] as [`validate_request`](super::validate_request), with
//! an empty key) and answers with [`extended_connect_response`]; the client
//! builds its request with [`ClientRequest::to_extended_connect`] and checks
//! the answer with [`validate_extended_connect_response`].

use http::header::{
    ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

use super::client::{agreed_fields, value};
use super::headers::is_token;
use super::server::{
    check_no_body, check_version, host, is_safe_value, offered_fields, resource_name,
};
use super::{Accepted, ClientRequest, HandshakeError, UpgradeRequest};

/// The `:protocol` value that opens a WebSocket (RFC 8441 §4, the HTTP
/// Upgrade Token registry).
pub const WEBSOCKET_PROTOCOL: &str = "websocket";

/// Checks an HTTP/2 extended CONNECT (RFC 8441 §4, §5) and returns its
/// parts, as [`validate_request`](super::validate_request) does for
/// HTTP/1.1. `protocol` is the request's `:protocol` pseudo-header, `None`
/// when it has none.
///
/// The checks, in order (the first failure is returned):
///
/// 1. method `CONNECT` ([`MethodNotConnect`](HandshakeError::MethodNotConnect));
/// 2. HTTP/2 or later ([`ExtendedConnectNeedsHttp2`](HandshakeError::ExtendedConnectNeedsHttp2));
/// 3. `:protocol` is `websocket`, ASCII-case-insensitively; any other value,
///    or none (a plain CONNECT, a tunnel request), is
///    [`UnsupportedConnectProtocol`](HandshakeError::UnsupportedConnectProtocol),
///    answered `501`;
/// 4. `:scheme` is `http` or `https` and `:path` a path, both present
///    (RFC 8441 §4: an extended CONNECT carries them)
///    ([`InvalidRequestTarget`](HandshakeError::InvalidRequestTarget));
/// 5. no body announced: `Content-Length` absent or 0
///    ([`RequestHasBody`](HandshakeError::RequestHasBody)): the stream's
///    DATA frames are the WebSocket's;
/// 6. an authority: `:authority`, else a single valid `Host` (RFC 9113
///    §8.3.1) ([`MissingHost`](HandshakeError::MissingHost),
///    [`InvalidHost`](HandshakeError::InvalidHost));
/// 7. exactly one `Sec-WebSocket-Version`, equal to `13`
///    ([`UnsupportedVersion`](HandshakeError::UnsupportedVersion), 426);
/// 8. at most one `Origin`, ASCII; `Sec-WebSocket-Protocol` elements are
///    unique tokens; `Sec-WebSocket-Extensions` follows RFC 6455 §9.1 — as
///    over HTTP/1.1.
///
/// A `Sec-WebSocket-Key` is ignored (RFC 8441 §5: not used); the returned
/// [`UpgradeRequest::key`] is empty.
pub fn validate_extended_connect<B>(
    req: &Request<B>,
    protocol: Option<&[u8]>,
) -> Result<UpgradeRequest, HandshakeError> {
    if req.method() != Method::CONNECT {
        return Err(HandshakeError::MethodNotConnect(req.method().clone()));
    }
    if req.version() < Version::HTTP_2 {
        return Err(HandshakeError::ExtendedConnectNeedsHttp2);
    }
    match protocol {
        Some(p) if p.eq_ignore_ascii_case(WEBSOCKET_PROTOCOL.as_bytes()) => {}
        Some(p) => {
            let asked = String::from_utf8_lossy(p).into_owned();
            return Err(HandshakeError::UnsupportedConnectProtocol(Some(asked)));
        }
        None => return Err(HandshakeError::UnsupportedConnectProtocol(None)),
    }
    let uri = req.uri();
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
    {
        return Err(HandshakeError::InvalidRequestTarget);
    }
    let path = resource_name(uri)?;
    let headers = req.headers();
    check_no_body(headers)?;
    let host = host(req)?;
    check_version(headers)?;
    let (origin, protocols, extensions) = offered_fields(headers)?;
    Ok(UpgradeRequest {
        key: String::new(),
        host,
        origin,
        protocols,
        extensions,
        path,
    })
}

/// The `200` accepting an extended CONNECT (RFC 8441 §5): no
/// `Sec-WebSocket-Accept`, no `Upgrade`/`Connection` (connection-specific
/// fields are malformed in HTTP/2), `Sec-WebSocket-Protocol` and
/// `Sec-WebSocket-Extensions` when given, under the same rules as
/// [`accept_response`](super::accept_response): a protocol that is not a
/// token, or an extensions value that is not a safe header value, is
/// omitted rather than written.
pub fn extended_connect_response(protocol: Option<&str>, extensions: Option<&str>) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::OK;
    *resp.version_mut() = Version::HTTP_2;
    let h = resp.headers_mut();
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

impl ClientRequest {
    /// This request as an HTTP/2 extended CONNECT (RFC 8441 §4, §5):
    /// `CONNECT`, a URI of `https` (`secure`) or `http`, the host header's
    /// authority and the resource (so `:scheme`, `:authority` and `:path`
    /// are sent), `Sec-WebSocket-Version: 13`, the origin, subprotocols,
    /// extensions and extra headers; no `Host`, `Upgrade`, `Connection` or
    /// key. The caller adds the `:protocol` pseudo-header
    /// ([`WEBSOCKET_PROTOCOL`]) the way its HTTP/2 library carries it
    /// (`hyper::ext::Protocol` in the request's extensions). Validated like
    /// [`encode`](Self::encode), but for the key.
    pub fn to_extended_connect(&self, secure: bool) -> Result<Request<()>, HandshakeError> {
        self.check_parts()?;
        let scheme = if secure { "https" } else { "http" };
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = format!("{scheme}://{}{}", self.host_header, self.resource)
            .parse()
            .map_err(|_| HandshakeError::InvalidResource)?;
        let h = req.headers_mut();
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
}

/// Checks the server's answer to an extended CONNECT (RFC 8441 §5) and
/// returns what was agreed, as [`validate_response`](super::validate_response)
/// does for a `101`:
///
/// 1. a `2xx` status (RFC 9110 §9.3.6: any 2xx to a CONNECT opens the
///    tunnel) ([`UnexpectedStatus`](HandshakeError::UnexpectedStatus));
/// 2. every extension in `Sec-WebSocket-Extensions` was offered and appears
///    once;
/// 3. `Sec-WebSocket-Protocol`, if present, is a single offered token.
///
/// A `Sec-WebSocket-Accept` in the answer is ignored (RFC 8441 §5: not used).
pub fn validate_extended_connect_response<B>(
    resp: &Response<B>,
    offered_protocols: &[String],
    offered_extension_names: &[&str],
) -> Result<Accepted, HandshakeError> {
    if !resp.status().is_success() {
        return Err(HandshakeError::UnexpectedStatus(resp.status()));
    }
    agreed_fields(resp.headers(), offered_protocols, offered_extension_names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ExtensionOffer;
    use http::header::{CONTENT_LENGTH, HOST, SEC_WEBSOCKET_KEY};

    const WS: Option<&[u8]> = Some(b"websocket");

    fn base() -> http::request::Builder {
        Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://server.example.com/chat?room=1")
            .header("sec-websocket-version", "13")
    }

    fn request() -> Request<()> {
        base().body(()).unwrap()
    }

    #[test]
    fn server_accepts_rfc8441_section_5_request() {
        let req = base()
            .header("origin", "http://www.example.com")
            .header("sec-websocket-protocol", "chat, superchat")
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(())
            .unwrap();
        let up = validate_extended_connect(&req, WS).unwrap();
        assert_eq!(
            up,
            UpgradeRequest {
                key: String::new(),
                host: "server.example.com".into(),
                origin: Some("http://www.example.com".into()),
                protocols: vec!["chat".into(), "superchat".into()],
                extensions: vec![ExtensionOffer::new("permessage-deflate")],
                path: "/chat?room=1".into(),
            }
        );
    }

    #[test]
    fn server_refuses_extended_connect_with_other_method() {
        let mut req = request();
        *req.method_mut() = Method::GET;
        let err = validate_extended_connect(&req, WS).unwrap_err();
        assert_eq!(err, HandshakeError::MethodNotConnect(Method::GET));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn server_refuses_extended_connect_over_http11() {
        let mut req = request();
        *req.version_mut() = Version::HTTP_11;
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::ExtendedConnectNeedsHttp2)
        );
    }

    #[test]
    fn server_refuses_extended_connect_with_other_protocol_as_501() {
        let err = validate_extended_connect(&request(), Some(b"connect-udp")).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::UnsupportedConnectProtocol(Some("connect-udp".into()))
        );
        assert_eq!(err.status(), 501);
    }

    #[test]
    fn server_refuses_plain_connect_as_501() {
        let err = validate_extended_connect(&request(), None).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedConnectProtocol(None));
        assert_eq!(err.status(), 501);
    }

    #[test]
    fn server_refuses_other_protocol_before_anything_else() {
        // No version, no authority: the protocol is what decides.
        let req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("/x")
            .body(())
            .unwrap();
        assert_eq!(
            validate_extended_connect(&req, Some(b"h3"))
                .unwrap_err()
                .status(),
            501
        );
    }

    #[test]
    fn server_accepts_protocol_case_insensitively() {
        assert!(validate_extended_connect(&request(), Some(b"WebSocket")).is_ok());
    }

    #[test]
    fn server_refuses_extended_connect_without_scheme_or_path() {
        for uri in [
            "/chat",
            "server.example.com:443",
            "ftp://server.example.com/chat",
        ] {
            let mut req = request();
            *req.uri_mut() = uri.parse().unwrap();
            req.headers_mut()
                .insert(HOST, HeaderValue::from_static("server.example.com"));
            assert_eq!(
                validate_extended_connect(&req, WS),
                Err(HandshakeError::InvalidRequestTarget),
                "{uri}"
            );
        }
    }

    #[test]
    fn server_refuses_extended_connect_with_body() {
        let req = base().header(CONTENT_LENGTH, "5").body(()).unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::RequestHasBody)
        );
        let req = base().header(CONTENT_LENGTH, "0").body(()).unwrap();
        assert!(validate_extended_connect(&req, WS).is_ok());
    }

    #[test]
    fn server_takes_authority_and_checks_a_host_header() {
        let req = base().header(HOST, "a b").body(()).unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::InvalidHost)
        );
        let req = base().header(HOST, "other.example").body(()).unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS).unwrap().host,
            "server.example.com"
        );
    }

    #[test]
    fn server_refuses_extended_connect_with_invalid_authority() {
        let req = base().uri("https://h:99999/chat").body(()).unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::InvalidHost)
        );
    }

    #[test]
    fn server_refuses_extended_connect_without_version_13() {
        let mut req = request();
        req.headers_mut().remove(SEC_WEBSOCKET_VERSION);
        let err = validate_extended_connect(&req, WS).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion(None));
        assert_eq!(err.status(), 426);
        let req = base().header(SEC_WEBSOCKET_VERSION, "8").body(()).unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::DuplicateHeader(SEC_WEBSOCKET_VERSION))
        );
        let mut req = request();
        req.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::UnsupportedVersion(Some("8".into())))
        );
    }

    #[test]
    fn server_ignores_a_sec_websocket_key() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ==", "not a key"] {
            let req = base().header(SEC_WEBSOCKET_KEY, key).body(()).unwrap();
            assert_eq!(validate_extended_connect(&req, WS).unwrap().key, "");
        }
    }

    #[test]
    fn server_refuses_duplicate_subprotocols_and_bad_extensions_as_over_http11() {
        let req = base()
            .header("sec-websocket-protocol", "a, a")
            .body(())
            .unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::DuplicateSubprotocol("a".into()))
        );
        let req = base()
            .header("sec-websocket-extensions", "permessage-deflate;;")
            .body(())
            .unwrap();
        assert!(matches!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::MalformedExtensions(_))
        ));
        let req = base()
            .header("origin", "a")
            .header("origin", "b")
            .body(())
            .unwrap();
        assert_eq!(
            validate_extended_connect(&req, WS),
            Err(HandshakeError::InvalidOrigin)
        );
    }

    #[test]
    fn server_answers_200_without_accept_or_upgrade() {
        let resp = extended_connect_response(Some("chat"), Some("permessage-deflate"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(
            resp.headers()["sec-websocket-extensions"],
            "permessage-deflate"
        );
        for absent in ["sec-websocket-accept", "upgrade", "connection"] {
            assert!(!resp.headers().contains_key(absent), "{absent}");
        }
        let resp = extended_connect_response(Some("a b"), Some("x\r\ny: z"));
        assert!(resp.headers().is_empty());
    }

    #[test]
    fn client_extended_connect_passes_server_validation() {
        let mut creq = ClientRequest::new("/chat?room=1", "server.example.com:8443");
        creq.origin = Some("https://server.example.com".into());
        creq.protocols = vec!["v2".into(), "v1".into()];
        creq.extensions = Some("permessage-deflate; client_max_window_bits".into());
        creq.headers
            .insert("authorization", HeaderValue::from_static("Bearer x"));
        let req = creq.to_extended_connect(true).unwrap();
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(
            req.uri().to_string(),
            "https://server.example.com:8443/chat?room=1"
        );
        for absent in ["host", "upgrade", "connection", "sec-websocket-key"] {
            assert!(!req.headers().contains_key(absent), "{absent}");
        }
        let up = validate_extended_connect(&req, WS).unwrap();
        assert_eq!(up.host, "server.example.com:8443");
        assert_eq!(up.protocols, ["v2", "v1"]);
        assert_eq!(up.origin.as_deref(), Some("https://server.example.com"));
        assert_eq!(up.extensions[0].name, "permessage-deflate");

        let plain = creq.to_extended_connect(false).unwrap();
        assert_eq!(plain.uri().scheme_str(), Some("http"));
    }

    #[test]
    fn client_extended_connect_is_validated_like_http11() {
        let mut creq = ClientRequest::new("/chat", "server.example.com");
        creq.protocols = vec!["a".into(), "a".into()];
        assert_eq!(
            creq.to_extended_connect(true).unwrap_err(),
            HandshakeError::DuplicateSubprotocol("a".into())
        );
        let mut creq = ClientRequest::new("/chat", "server.example.com");
        creq.headers
            .insert("sec-websocket-key", HeaderValue::from_static("x"));
        assert!(matches!(
            creq.to_extended_connect(true),
            Err(HandshakeError::ForbiddenHeader(_))
        ));
        assert_eq!(
            ClientRequest::new("chat", "h")
                .to_extended_connect(true)
                .unwrap_err(),
            HandshakeError::InvalidResource
        );
    }

    #[test]
    fn client_accepts_200_and_what_it_agreed() {
        let resp = extended_connect_response(Some("v1"), Some("permessage-deflate"));
        let offered = vec!["v2".to_owned(), "v1".to_owned()];
        let accepted =
            validate_extended_connect_response(&resp, &offered, &["permessage-deflate"]).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("v1"));
        assert_eq!(
            accepted.extensions,
            [ExtensionOffer::new("permessage-deflate")]
        );
    }

    #[test]
    fn client_refuses_non_2xx_to_extended_connect() {
        for status in [101, 301, 400, 426, 501] {
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                validate_extended_connect_response(&resp, &[], &[]),
                Err(HandshakeError::UnexpectedStatus(resp.status()))
            );
        }
    }

    #[test]
    fn client_refuses_unoffered_subprotocol_or_extension_over_http2() {
        let resp = extended_connect_response(Some("v3"), None);
        assert_eq!(
            validate_extended_connect_response(&resp, &["v1".into()], &[]),
            Err(HandshakeError::UnrequestedSubprotocol("v3".into()))
        );
        let resp = extended_connect_response(None, Some("x-foo"));
        assert_eq!(
            validate_extended_connect_response(&resp, &[], &["permessage-deflate"]),
            Err(HandshakeError::UnrequestedExtension("x-foo".into()))
        );
    }
}
