//! Whole-handshake round trips and property tests across the submodules.

use proptest::prelude::*;

use super::*;

fn token() -> impl Strategy<Value = String> {
    "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}"
}

fn key() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    })
}

fn extension() -> impl Strategy<Value = ExtensionOffer> {
    (
        token(),
        prop::collection::vec((token(), prop::option::of(token())), 0..4),
    )
        .prop_map(|(name, params)| ExtensionOffer { name, params })
}

#[test]
fn full_handshake_client_to_server_and_back() {
    let target = parse_target("ws://localhost:9001/echo?x=1").unwrap();
    let mut creq = target.client_request();
    creq.protocols = vec!["v2.chat".into(), "v1.chat".into()];
    creq.extensions = Some("permessage-deflate; client_max_window_bits".into());
    let key = generate_key();
    let mut wire = creq.encode(&key).unwrap();
    wire.extend_from_slice(b"\x81\x80\0\0\0\0"); // a pipelined first frame

    let limits = HandshakeLimits::default();
    let (req, used) = parse_request(&wire, &limits).unwrap().unwrap();
    assert_eq!(&wire[used..], b"\x81\x80\0\0\0\0");
    let up = validate_request(&req).unwrap();
    assert_eq!(up.host, "localhost:9001");
    assert_eq!(up.path, "/echo?x=1");
    let protocol = up.select_protocol(&["v1.chat", "v2.chat"]);
    assert_eq!(protocol, Some("v2.chat"));
    let answer = up.accept(
        protocol,
        Some("permessage-deflate"),
        &http::HeaderMap::new(),
    );

    let (resp, used) = parse_response(&answer, &limits).unwrap().unwrap();
    assert_eq!(used, answer.len());
    let accepted =
        validate_response(&resp, &key, &creq.protocols, &["permessage-deflate"]).unwrap();
    assert_eq!(accepted.protocol.as_deref(), Some("v2.chat"));
    assert_eq!(
        accepted.extensions,
        [ExtensionOffer::new("permessage-deflate")]
    );
}

#[test]
fn server_error_response_parses_as_http() {
    for err in [
        HandshakeError::UnsupportedVersion(None),
        HandshakeError::HeadTooLarge,
        HandshakeError::InvalidSubprotocol("a\"b".into()),
        HandshakeError::MalformedHead("x"),
    ] {
        let raw = err.to_response();
        let (resp, used) = parse_response(&raw, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), err.status());
        let len: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(raw.len() - used, len);
    }
}

proptest! {
    #[test]
    fn parse_request_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..600, hdrs in 0usize..10) {
        let limits = HandshakeLimits { max_head_bytes: max, max_headers: hdrs };
        if let Ok(Some((req, n))) = parse_request(&buf, &limits) {
            prop_assert!(n <= buf.len() && n <= max);
            let _ = validate_request(&req);
        }
    }

    #[test]
    fn parse_response_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some((resp, n))) = parse_response(&buf, &HandshakeLimits::default()) {
            prop_assert!(n <= buf.len());
            let _ = validate_response(&resp, "dGhlIHNhbXBsZSBub25jZQ==", &[], &[]);
        }
    }

    #[test]
    fn parse_request_never_panics_on_head_like_input(
        lines in prop::collection::vec("[ -~\t\u{80}-\u{ff}]{0,40}", 0..12)
    ) {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for l in &lines {
            buf.extend_from_slice(l.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        if let Ok(Some((req, _))) = parse_request(&buf, &HandshakeLimits::default()) {
            let _ = validate_request(&req);
        }
    }

    #[test]
    fn header_parsers_never_panic(s in "\\PC{0,64}", raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_extensions(&s);
        let _ = parse_target(&s);
        let _ = is_token(&s);
        if let Ok(v) = http::HeaderValue::from_bytes(&raw) {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
            for t in header_tokens(&h, http::header::SEC_WEBSOCKET_PROTOCOL) {
                prop_assert!(!t.is_empty());
            }
        }
    }

    #[test]
    fn extension_display_parse_round_trip(list in prop::collection::vec(extension(), 1..4)) {
        let text = format_extensions(&list);
        prop_assert_eq!(parse_extensions(&text).unwrap(), list);
    }

    #[test]
    fn client_request_round_trips_through_server_validation(
        key in key(),
        path in "(/[a-zA-Z0-9%._~-]{0,8}){1,3}",
        query in prop::option::of("[a-zA-Z0-9=&%]{0,12}"),
        protocols in prop::collection::btree_set(token(), 0..4),
        exts in prop::collection::vec(extension(), 0..3),
        port in 1u16..,
    ) {
        let resource = match &query { Some(q) => format!("{path}?{q}"), None => path };
        let mut req = ClientRequest::new(resource.clone(), format!("example.com:{port}"));
        req.protocols = protocols.into_iter().collect();
        if !exts.is_empty() {
            req.extensions = Some(format_extensions(&exts));
        }
        let wire = req.encode(&key).unwrap();
        let (parsed, used) = parse_request(&wire, &HandshakeLimits::default()).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        let up = validate_request(&parsed).unwrap();
        prop_assert_eq!(&up.key, &key);
        prop_assert_eq!(&up.path, &resource);
        prop_assert_eq!(&up.protocols, &req.protocols);
        prop_assert_eq!(&up.extensions, &exts);

        // ... and the server's answer satisfies the client.
        let chosen = up.protocols.last().map(String::as_str);
        let names: Vec<&str> = exts.iter().map(|e| e.name.as_str()).collect();
        let answer = build_accept_response(&up.key, chosen, None, &http::HeaderMap::new());
        let (resp, _) = parse_response(&answer, &HandshakeLimits::default()).unwrap().unwrap();
        let accepted = validate_response(&resp, &key, &req.protocols, &names).unwrap();
        prop_assert_eq!(accepted.protocol.as_deref(), chosen);
    }

    #[test]
    fn incremental_parse_agrees_with_one_shot(split in 0usize..400) {
        let wire = parse_target("wss://example.org/x").unwrap()
            .client_request().encode("dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        let split = split.min(wire.len());
        let limits = HandshakeLimits::default();
        let partial = parse_request(&wire[..split], &limits).unwrap();
        prop_assert_eq!(partial.is_some(), split == wire.len());
        prop_assert_eq!(parse_request(&wire, &limits).unwrap().unwrap().1, wire.len());
    }

    #[test]
    fn accept_key_is_always_28_base64_chars(k in prop::collection::vec(any::<u8>(), 0..64)) {
        let a = accept_key(&k);
        prop_assert_eq!(a.len(), 28);
        prop_assert!(a.ends_with('='));
    }
}
