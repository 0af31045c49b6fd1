//! The client side of the opening handshake on arbitrary bytes:
//! `parse_response` and `validate_response` never panic, parsing is
//! prefix-consistent, and whatever is accepted really is a `101` that proves
//! knowledge of our key and agrees only to what was offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::handshake::{accept_key, parse_response, validate_response, HandshakeLimits};

/// The RFC 6455 §1.3 sample key; the fuzzer learns its accept value from the
/// seed response.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
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
    // Which subprotocols and extensions were "offered" also comes from the
    // selector, so both the empty and the non-empty offer paths run.
    let protocols: Vec<String> = if selector & 2 != 0 {
        vec!["chat".into(), "superchat".into()]
    } else {
        Vec::new()
    };
    let extensions: &[&str] = if selector & 4 != 0 {
        &["permessage-deflate"]
    } else {
        &[]
    };
    let Ok(Some((response, head_len))) = parse_response(data, &limits) else {
        return;
    };
    assert!(head_len <= data.len() && head_len <= limits.max_head_bytes);
    let (again, again_len) = parse_response(&data[..head_len], &limits)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(again_len, head_len);
    assert_eq!(again.status(), response.status());
    assert_eq!(again.headers(), response.headers());
    assert!(
        matches!(parse_response(&data[..head_len - 1], &limits), Ok(None)),
        "a strict prefix of a head is not incomplete"
    );

    let Ok(accepted) = validate_response(&response, KEY, &protocols, extensions) else {
        return;
    };
    assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    let proof = response
        .headers()
        .get("sec-websocket-accept")
        .expect("accepted without Sec-WebSocket-Accept");
    assert_eq!(
        proof.as_bytes().trim_ascii(),
        accept_key(KEY.as_bytes()).as_bytes()
    );
    if let Some(p) = &accepted.protocol {
        assert!(
            protocols.contains(p),
            "unoffered subprotocol {p:?} accepted"
        );
    }
    for e in &accepted.extensions {
        assert!(
            extensions.iter().any(|n| n.eq_ignore_ascii_case(&e.name)),
            "unoffered extension {:?} accepted",
            e.name
        );
    }
});
