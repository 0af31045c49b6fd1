use super::*;
use crate::handshake::{parse_request, parse_response, HandshakeLimits};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn base() -> http::request::Builder {
    Request::get("/chat")
        .header("Host", "server.example.com")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", KEY)
        .header("Sec-WebSocket-Version", "13")
}

fn without(name: &str) -> Request<()> {
    let mut r = base().body(()).unwrap();
    r.headers_mut().remove(name);
    r
}

fn with(name: &'static str, value: &'static str) -> Request<()> {
    base().header(name, value).body(()).unwrap()
}

fn replaced(name: &'static str, value: &'static str) -> Request<()> {
    let mut r = without(name);
    r.headers_mut()
        .append(name, HeaderValue::from_static(value));
    r
}

#[test]
fn server_accepts_rfc6455_section_1_2_request() {
    let raw = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let (req, _) = parse_request(raw, &HandshakeLimits::default())
        .unwrap()
        .unwrap();
    let up = validate_request(&req).unwrap();
    assert_eq!(
        up,
        UpgradeRequest {
            key: KEY.into(),
            host: "server.example.com".into(),
            origin: Some("http://example.com".into()),
            protocols: vec!["chat".into(), "superchat".into()],
            extensions: vec![],
            path: "/chat".into(),
        }
    );
    assert_eq!(up.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(up.select_protocol(&["superchat", "chat"]), Some("chat"));
    assert_eq!(up.select_protocol(&["other"]), None);
}

#[test]
fn server_accepts_case_insensitive_and_listed_upgrade_tokens() {
    let mut r = base().body(()).unwrap();
    r.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    r.headers_mut()
        .append(CONNECTION, HeaderValue::from_static("UPGRADE"));
    assert!(validate_request(&r).is_ok());
}

#[test]
fn server_rejects_non_get_method() {
    let mut r = base().body(()).unwrap();
    *r.method_mut() = Method::POST;
    let err = validate_request(&r).unwrap_err();
    assert_eq!(err, HandshakeError::MethodNotGet(Method::POST));
    assert_eq!(err.status(), 400);
}

#[test]
fn server_rejects_http10() {
    let mut r = base().body(()).unwrap();
    *r.version_mut() = Version::HTTP_10;
    assert_eq!(validate_request(&r), Err(HandshakeError::Http10));
    *r.version_mut() = Version::HTTP_09;
    assert_eq!(validate_request(&r), Err(HandshakeError::Http10));
}

#[test]
fn server_rejects_missing_host() {
    assert_eq!(
        validate_request(&without("host")),
        Err(HandshakeError::MissingHost)
    );
}

#[test]
fn server_rejects_duplicate_host() {
    assert_eq!(
        validate_request(&with("host", "other.example")),
        Err(HandshakeError::DuplicateHeader(HOST))
    );
}

#[test]
fn server_rejects_invalid_host() {
    for bad in [
        "", "user@h", "h:port", "h:99999", "h:123456", "a b", "h:", ":80", "[::1", "[zz]",
        "[::1]x", "[::1]:", "h:80:81", "h%zz", "h/x", "h\u{e9}",
    ] {
        let mut r = without("host");
        r.headers_mut()
            .insert(HOST, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
        assert_eq!(
            validate_request(&r),
            Err(HandshakeError::InvalidHost),
            "{bad:?}"
        );
    }
    for good in [
        "h",
        "h:8080",
        "[::1]:9000",
        "[::1]",
        "127.0.0.1:1",
        "xn--bcher-kva.example",
        "a%41b",
    ] {
        let mut r = without("host");
        r.headers_mut()
            .insert(HOST, HeaderValue::from_str(good).unwrap());
        assert_eq!(validate_request(&r).unwrap().host, good);
    }
}

#[test]
fn server_rejects_missing_upgrade_websocket_with_426() {
    let err = validate_request(&without("upgrade")).unwrap_err();
    assert_eq!(err, HandshakeError::MissingUpgradeWebsocket);
    assert_eq!(err.status(), 426);
    assert_eq!(
        validate_request(&replaced("upgrade", "websocket/13, h2c")),
        Err(HandshakeError::MissingUpgradeWebsocket)
    );
}

#[test]
fn server_reports_plain_http_request_as_missing_upgrade() {
    // No Host and a body too, but the first thing to say is "this is not
    // a WebSocket handshake".
    let r = Request::get("/chat")
        .header("content-length", "3")
        .body(())
        .unwrap();
    assert_eq!(
        validate_request(&r),
        Err(HandshakeError::MissingUpgradeWebsocket)
    );
}

#[test]
fn server_rejects_missing_connection_upgrade() {
    assert_eq!(
        validate_request(&without("connection")),
        Err(HandshakeError::MissingConnectionUpgrade)
    );
    assert_eq!(
        validate_request(&replaced("connection", "keep-alive, upgraded")),
        Err(HandshakeError::MissingConnectionUpgrade)
    );
}

#[test]
fn server_rejects_missing_key() {
    assert_eq!(
        validate_request(&without("sec-websocket-key")),
        Err(HandshakeError::MissingKey)
    );
}

#[test]
fn server_rejects_duplicate_key() {
    assert_eq!(
        validate_request(&with("sec-websocket-key", KEY)),
        Err(HandshakeError::DuplicateHeader(SEC_WEBSOCKET_KEY))
    );
}

#[test]
fn server_rejects_key_not_16_bytes() {
    for bad in [
        "dGhlIHNhbXBsZSBub25jZQ=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "dGhlIHNhbXBsZSBub25jZQ",
        "not base64 at all!!!!!!",
    ] {
        assert_eq!(
            validate_request(&replaced("sec-websocket-key", bad)),
            Err(HandshakeError::InvalidKey),
            "{bad}"
        );
    }
}

#[test]
fn server_trims_whitespace_around_single_values() {
    let mut r = without("sec-websocket-key");
    r.headers_mut().insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_static(" dGhlIHNhbXBsZSBub25jZQ==\t"),
    );
    r.headers_mut()
        .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13 "));
    r.headers_mut()
        .insert(HOST, HeaderValue::from_static(" h:1 "));
    r.headers_mut()
        .insert(ORIGIN, HeaderValue::from_static(" https://o "));
    let up = validate_request(&r).unwrap();
    assert_eq!(up.key, KEY);
    assert_eq!(up.host, "h:1");
    assert_eq!(up.origin.as_deref(), Some("https://o"));
    assert_eq!(up.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn server_rejects_non_ascii_key() {
    let mut r = without("sec-websocket-key");
    r.headers_mut().insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_bytes(b"dGhlIHNhbXBsZSBub25jZ\xff==").unwrap(),
    );
    assert_eq!(validate_request(&r), Err(HandshakeError::InvalidKey));
}

#[test]
fn server_rejects_unsupported_version_with_426() {
    let err = validate_request(&replaced("sec-websocket-version", "8")).unwrap_err();
    assert_eq!(err, HandshakeError::UnsupportedVersion(Some("8".into())));
    assert_eq!(err.status(), 426);
    let text = String::from_utf8(err.to_response()).unwrap();
    assert!(text.contains("sec-websocket-version: 13\r\n"));
    assert_eq!(
        validate_request(&without("sec-websocket-version")),
        Err(HandshakeError::UnsupportedVersion(None))
    );
    for bad in ["013", "13 ,", "13, 8", "+13"] {
        assert!(
            matches!(
                validate_request(&replaced("sec-websocket-version", bad)),
                Err(HandshakeError::UnsupportedVersion(Some(_)))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        validate_request(&with("sec-websocket-version", "13")),
        Err(HandshakeError::DuplicateHeader(SEC_WEBSOCKET_VERSION))
    );
}

#[test]
fn server_rejects_request_with_body() {
    assert_eq!(
        validate_request(&with("content-length", "5")),
        Err(HandshakeError::RequestHasBody)
    );
    assert_eq!(
        validate_request(&with("content-length", "x")),
        Err(HandshakeError::RequestHasBody)
    );
    assert_eq!(
        validate_request(&with("transfer-encoding", "chunked")),
        Err(HandshakeError::RequestHasBody)
    );
    assert!(validate_request(&with("content-length", "0")).is_ok());
}

#[test]
fn server_rejects_invalid_subprotocol() {
    assert_eq!(
        validate_request(&with("sec-websocket-protocol", "chat, bad/proto")),
        Err(HandshakeError::InvalidSubprotocol("bad/proto".into()))
    );
    assert_eq!(
        validate_request(&with("sec-websocket-protocol", " , ")),
        Err(HandshakeError::InvalidSubprotocol(String::new()))
    );
}

#[test]
fn server_rejects_duplicate_subprotocol_across_lines() {
    let r = base()
        .header("sec-websocket-protocol", "chat")
        .header("sec-websocket-protocol", "v2, chat")
        .body(())
        .unwrap();
    assert_eq!(
        validate_request(&r),
        Err(HandshakeError::DuplicateSubprotocol("chat".into()))
    );
}

#[test]
fn server_collects_protocols_and_extensions_across_lines() {
    let r = base()
        .header("sec-websocket-protocol", "a")
        .header("sec-websocket-protocol", "b,c")
        .header(
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        )
        .header("sec-websocket-extensions", "x-foo")
        .body(())
        .unwrap();
    let up = validate_request(&r).unwrap();
    assert_eq!(up.protocols, ["a", "b", "c"]);
    assert_eq!(up.extensions.len(), 2);
    assert_eq!(up.extensions[1], ExtensionOffer::new("x-foo"));
}

#[test]
fn server_rejects_malformed_extensions() {
    assert!(matches!(
        validate_request(&with(
            "sec-websocket-extensions",
            "permessage-deflate; x=\"a b\""
        )),
        Err(HandshakeError::MalformedExtensions(_))
    ));
}

#[test]
fn server_rejects_duplicate_or_binary_origin() {
    let r = base()
        .header("origin", "https://a")
        .header("origin", "https://b")
        .body(())
        .unwrap();
    assert_eq!(validate_request(&r), Err(HandshakeError::InvalidOrigin));
    let mut r = base().body(()).unwrap();
    r.headers_mut()
        .insert(ORIGIN, HeaderValue::from_bytes(b"https://\xe9").unwrap());
    assert_eq!(validate_request(&r), Err(HandshakeError::InvalidOrigin));
}

#[test]
fn server_keeps_path_and_query_as_sent() {
    let mut r = base().body(()).unwrap();
    *r.uri_mut() = "/a/b%20c?x=1&y=%2F".parse().unwrap();
    let up = validate_request(&r).unwrap();
    assert_eq!(up.path, "/a/b%20c?x=1&y=%2F");
    assert_eq!(up.path_only(), "/a/b%20c");
    assert_eq!(up.query(), Some("x=1&y=%2F"));
    *r.uri_mut() = "/x?".parse().unwrap();
    assert_eq!(validate_request(&r).unwrap().path, "/x?");
}

#[test]
fn server_takes_path_and_host_from_absolute_form() {
    let mut r = base().body(()).unwrap();
    *r.uri_mut() = "ws://other.example:81?q".parse().unwrap();
    let up = validate_request(&r).unwrap();
    assert_eq!(up.path, "/?q");
    assert_eq!(up.host, "other.example:81");
    *r.uri_mut() = "https://h.example/chat".parse().unwrap();
    assert_eq!(validate_request(&r).unwrap().path, "/chat");
    *r.uri_mut() = "ftp://h.example/chat".parse().unwrap();
    assert_eq!(
        validate_request(&r),
        Err(HandshakeError::InvalidRequestTarget)
    );
}

#[test]
fn server_accepts_http2_style_request_without_host_header() {
    let mut r = without("host");
    *r.uri_mut() = "https://h2.example/socket?x".parse().unwrap();
    *r.version_mut() = Version::HTTP_2;
    let up = validate_request(&r).unwrap();
    assert_eq!(
        (up.host.as_str(), up.path.as_str()),
        ("h2.example", "/socket?x")
    );
    // ...but HTTP/1.1 still needs Host (RFC 7230 §5.4).
    *r.version_mut() = Version::HTTP_11;
    assert_eq!(validate_request(&r), Err(HandshakeError::MissingHost));
}

#[test]
fn server_rejects_asterisk_and_authority_form_targets() {
    for target in ["*", "example.com:80"] {
        let mut r = base().body(()).unwrap();
        *r.uri_mut() = target.parse().unwrap();
        assert_eq!(
            validate_request(&r),
            Err(HandshakeError::InvalidRequestTarget),
            "{target}"
        );
    }
}

#[test]
fn accept_response_matches_rfc6455_section_1_3() {
    let raw = build_accept_response(KEY, Some("chat"), None, &HeaderMap::new());
    assert_eq!(
        raw,
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
          Sec-WebSocket-Protocol: chat\r\n\r\n"
    );
}

#[test]
fn accept_response_writes_extensions_and_extra_but_not_conflicting_headers() {
    let mut extra = HeaderMap::new();
    extra.insert("set-cookie", HeaderValue::from_static("a=b"));
    extra.insert(CONNECTION, HeaderValue::from_static("close"));
    extra.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
    extra.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("forged"));
    let raw = build_accept_response(KEY, None, Some("permessage-deflate"), &extra);
    let (resp, n) = parse_response(&raw, &HandshakeLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(n, raw.len());
    assert_eq!(
        resp.headers()["sec-websocket-extensions"],
        "permessage-deflate"
    );
    assert_eq!(resp.headers()["set-cookie"], "a=b");
    assert_eq!(resp.headers().get_all(CONNECTION).iter().count(), 1);
    assert_eq!(
        resp.headers().get_all(SEC_WEBSOCKET_ACCEPT).iter().count(),
        1
    );
    assert!(!resp.headers().contains_key(CONTENT_LENGTH));
}

#[test]
fn accept_response_never_injects_header_lines() {
    let raw = build_accept_response(
        KEY,
        Some("chat\r\nX-Evil: 1"),
        Some("x\r\nX-Evil: 2"),
        &HeaderMap::new(),
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(!text.contains("X-Evil"), "{text}");
    assert!(!text.contains("Sec-WebSocket-Protocol"));
}

#[test]
fn http_accept_response_matches_raw_one() {
    let resp = accept_response(KEY, Some("chat"), Some("permessage-deflate"));
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()[SEC_WEBSOCKET_ACCEPT],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(resp.headers()[UPGRADE], "websocket");
    assert_eq!(resp.headers()[CONNECTION], "Upgrade");
    assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
    assert_eq!(
        resp.headers()[SEC_WEBSOCKET_EXTENSIONS],
        "permessage-deflate"
    );
    let bad = accept_response(KEY, Some("a b"), Some(" "));
    assert!(!bad.headers().contains_key(SEC_WEBSOCKET_PROTOCOL));
    assert!(!bad.headers().contains_key(SEC_WEBSOCKET_EXTENSIONS));
}

#[test]
fn reject_response_has_length_close_and_type() {
    let raw = build_reject_response(StatusCode::FORBIDDEN, &HeaderMap::new(), b"nope");
    assert_eq!(
        raw,
        b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\
          content-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\n\r\nnope"
    );
}

#[test]
fn reject_response_respects_given_headers() {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
    h.insert("retry-after", HeaderValue::from_static("5"));
    let raw = build_reject_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"{}");
    let (resp, n) = parse_response(&raw, &HandshakeLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(&raw[n..], b"{}");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(
        resp.headers()
            .get_all(CONTENT_LENGTH)
            .iter()
            .collect::<Vec<_>>(),
        ["2"]
    );
    assert_eq!(resp.headers()["retry-after"], "5");
}

#[test]
fn reject_response_with_unknown_status_keeps_the_space() {
    let raw = build_reject_response(StatusCode::from_u16(599).unwrap(), &HeaderMap::new(), b"");
    assert!(raw.starts_with(b"HTTP/1.1 599 \r\n"));
    assert!(parse_response(&raw, &HandshakeLimits::default())
        .unwrap()
        .is_some());
}

#[test]
fn reject_response_without_body_status_has_no_body() {
    let raw = build_reject_response(StatusCode::NO_CONTENT, &HeaderMap::new(), b"ignored");
    assert!(raw.ends_with(b"\r\n\r\n"));
    assert!(!String::from_utf8(raw).unwrap().contains("content-length"));
}
