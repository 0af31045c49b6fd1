//! The HTTP/2 extended CONNECT (RFC 8441) on arbitrary input:
//! `validate_extended_connect` and the answers built from its results never
//! panic, and what they produce is consistent.
//!
//! Input: a selector byte, the `:protocol` value up to the first `\n` (absent
//! when the selector's bit 0 is set), then an HTTP/1.1-style head giving the
//! method, target and header fields (parsed by `parse_request`); the request
//! is then marked HTTP/2 and, when the selector's bit 1 is clear, its target
//! gets the `https` scheme and the `Host` value as authority (`:scheme` and
//! `:authority` as hyper would present them).
//!
//! * an accepted request is a CONNECT for `websocket` with a path and no
//!   key; its `200` passes the client's `validate_extended_connect_response`
//!   for the first offered subprotocol; a client request rebuilt from it
//!   validates to the same fields;
//! * a refusal is a 4xx, or a 501 exactly when `:protocol` is not
//!   `websocket`.
#![no_main]

use http::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use tether_proto::handshake::{
    extended_connect_response, parse_request, validate_extended_connect,
    validate_extended_connect_response, ClientRequest, HandshakeError, HandshakeLimits,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let (protocol, head) = if selector & 1 == 1 {
        (None, data)
    } else {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&data[..i]), &data[i + 1..]),
            None => (Some(data), &[][..]),
        }
    };
    let Ok(Some((mut request, _))) = parse_request(head, &HandshakeLimits::default()) else {
        return;
    };
    *request.version_mut() = Version::HTTP_2;
    if selector & 2 == 0 {
        let authority = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        if let Ok(uri) = format!("https://{authority}{path}").parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    match validate_extended_connect(&request, protocol) {
        Ok(upgrade) => {
            assert_eq!(request.method(), Method::CONNECT);
            assert!(protocol.is_some_and(|p| p.eq_ignore_ascii_case(b"websocket")));
            assert!(upgrade.path.starts_with('/'), "path {:?}", upgrade.path);
            assert!(upgrade.key.is_empty());
            let chosen = upgrade.protocols.first().map(String::as_str);
            let response = extended_connect_response(chosen, None);
            let accepted = validate_extended_connect_response(&response, &upgrade.protocols, &[])
                .expect("our 200 passes the client's checks");
            assert_eq!(accepted.protocol.as_deref(), chosen);

            let mut again = ClientRequest::new(upgrade.path.clone(), upgrade.host.clone());
            again.origin = upgrade.origin.clone();
            again.protocols = upgrade.protocols.clone();
            if let Ok(rebuilt) = again.to_extended_connect(true) {
                let up = validate_extended_connect(&rebuilt, Some(b"websocket"))
                    .expect("a request the client builds passes the server's checks");
                assert_eq!(up.host, upgrade.host);
                assert_eq!(up.path, upgrade.path);
                assert_eq!(up.protocols, upgrade.protocols);
                assert_eq!(up.origin, upgrade.origin);
            }
        }
        Err(e) => {
            let status = e.status();
            let unsupported = matches!(e, HandshakeError::UnsupportedConnectProtocol(_));
            if unsupported {
                assert_eq!(status, http::StatusCode::NOT_IMPLEMENTED);
                assert!(!protocol.is_some_and(|p| p.eq_ignore_ascii_case(b"websocket")));
            } else {
                assert!(status.is_client_error(), "{e}: {status}");
            }
        }
    }
});
