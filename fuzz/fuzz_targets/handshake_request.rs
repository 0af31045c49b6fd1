//! The server side of the opening handshake on arbitrary bytes:
//! `parse_request`, `validate_request` and the responses built from their
//! results never panic, and what they produce is consistent:
//!
//! * parsing is prefix-consistent: the complete head parses the same when
//!   cut at its own end, and a strict prefix of it asks for more bytes;
//! * an accepted request yields a `101` that the client-side checks
//!   (`parse_response` + `validate_response`) accept for the same key and
//!   subprotocol;
//! * a refused one yields an HTTP response carrying the error's status (426
//!   answers advertise `Sec-WebSocket-Version: 13`).
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use tether_proto::handshake::{
    accept_response, build_accept_response, parse_request, parse_response, validate_request,
    validate_response, HandshakeError, HandshakeLimits,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits, so both the default and tight limits
    // (where HeadTooLarge is reachable) are exercised.
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let limits = if selector & 1 == 0 {
        HandshakeLimits::default()
    } else {
        HandshakeLimits::default()
            .with_max_head_bytes(32 + (selector as usize >> 1) * 4)
            .with_max_headers((selector as usize >> 4) + 1)
    };
    match parse_request(data, &limits) {
        Ok(None) => assert!(data.len() < limits.max_head_bytes),
        Err(e) => check_refusal(&e),
        Ok(Some((request, head_len))) => {
            assert!(head_len <= data.len() && head_len <= limits.max_head_bytes);
            let (again, again_len) = parse_request(&data[..head_len], &limits)
                .expect("the head alone parses")
                .expect("the head alone is complete");
            assert_eq!(again_len, head_len);
            assert_eq!(again.uri(), request.uri());
            assert_eq!(again.headers(), request.headers());
            assert!(
                matches!(parse_request(&data[..head_len - 1], &limits), Ok(None)),
                "a strict prefix of a head is not incomplete"
            );
            match validate_request(&request) {
                Ok(upgrade) => check_accept(&upgrade),
                Err(e) => check_refusal(&e),
            }
        }
    }
});

fn check_accept(upgrade: &tether_proto::handshake::UpgradeRequest) {
    assert!(upgrade.path.starts_with('/'), "path {:?}", upgrade.path);
    let protocol = upgrade.protocols.first().map(String::as_str);
    let raw = build_accept_response(&upgrade.key, protocol, None, &HeaderMap::new());
    let (response, len) = parse_response(&raw, &HandshakeLimits::default())
        .expect("our 101 parses")
        .expect("our 101 is complete");
    assert_eq!(len, raw.len());
    let accepted = validate_response(&response, &upgrade.key, &upgrade.protocols, &[])
        .expect("our 101 passes the client's checks");
    assert_eq!(accepted.protocol.as_deref(), protocol);

    let response = accept_response(&upgrade.key, protocol, None);
    let accepted = validate_response(&response, &upgrade.key, &upgrade.protocols, &[])
        .expect("our http::Response 101 passes the client's checks");
    assert_eq!(accepted.protocol.as_deref(), protocol);
}

fn check_refusal(e: &HandshakeError) {
    let status = e.status();
    assert!(status.is_client_error(), "{e}: {status}");
    let raw = e.to_response();
    let (response, _) = parse_response(&raw, &HandshakeLimits::default())
        .expect("our refusal parses")
        .expect("our refusal is complete");
    assert_eq!(response.status(), status);
    if status == http::StatusCode::UPGRADE_REQUIRED {
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-version")
                .map(|v| v.as_bytes()),
            Some(&b"13"[..])
        );
    }
}
