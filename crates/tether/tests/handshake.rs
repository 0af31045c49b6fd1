//! The opening handshake through the async layer: the server's policy hook,
//! subprotocol negotiation, and the answers malformed requests get.

// `ServerBuilder::accept_with` takes a `FnOnce(..) -> Result<Accept, Reject>`,
// and `Reject` is large; every policy closure trips this lint.
#![allow(clippy::result_large_err)]

use common::*;
use http::StatusCode;
use std::time::Duration;
use test_support::raw as common;
use tether::proto::frame::OpCode;
use tether::proto::handshake::HandshakeError;
use tether::{Accept, ClientBuilder, Error, Message, Reject, ServerBuilder, WebSocketConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Run `server` on one accepted TCP connection and `client` against it.
async fn over_tcp<S, SF, C, CF>(server: S, client: C) -> (SF::Output, CF::Output)
where
    S: FnOnce(tokio::net::TcpStream) -> SF,
    SF: std::future::Future,
    C: FnOnce(String) -> CF,
    CF: std::future::Future,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server(tcp).await
    };
    tokio::join!(server, client(url))
}

#[tokio::test]
async fn policy_rejection_is_seen_by_the_client_as_its_status() {
    let (server, client) = over_tcp(
        |tcp| async move {
            ServerBuilder::new()
                .accept_with(tcp, |incoming| {
                    assert_eq!(incoming.origin(), Some("https://evil.example"));
                    Err(Reject::forbidden("origin not allowed"))
                })
                .await
                .map(|_| ())
        },
        |url| async move {
            ClientBuilder::new(format!("{url}/chat"))
                .origin("https://evil.example")
                .connect()
                .await
                .map(|_| ())
        },
    )
    .await;
    assert!(
        matches!(server, Err(Error::Rejected(StatusCode::FORBIDDEN))),
        "{server:?}"
    );
    // The reason in the body reaches the client, bounded and as text.
    match client {
        Err(Error::Refused { status, body }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body.trim(), "origin not allowed");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn policy_sees_path_query_origin_and_headers() {
    let (server, client) = over_tcp(
        |tcp| async move {
            ServerBuilder::new()
                .accept_with(tcp, |incoming| {
                    assert_eq!(incoming.path(), "/rooms/1?user=ann");
                    assert_eq!(incoming.origin(), Some("https://good.example"));
                    assert_eq!(
                        incoming.header("x-token").map(|v| v.as_bytes()),
                        Some(&b"secret"[..])
                    );
                    Ok(Accept::default().header(
                        http::HeaderName::from_static("x-session"),
                        http::HeaderValue::from_static("42"),
                    ))
                })
                .await
        },
        |url| async move {
            ClientBuilder::new(format!("{url}/rooms/1?user=ann"))
                .origin("https://good.example")
                .header(
                    http::HeaderName::from_static("x-token"),
                    http::HeaderValue::from_static("secret"),
                )
                .connect()
                .await
        },
    )
    .await;
    let mut server = server.unwrap();
    let (mut client, response) = client.unwrap();
    assert_eq!(response.headers()["x-session"], "42");
    client.send(Message::text("in")).await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("in"));
}

#[tokio::test]
async fn subprotocol_is_negotiated_by_server_preference() {
    let (server, client) = over_tcp(
        |tcp| async move {
            ServerBuilder::new()
                .accept_with(tcp, |incoming| {
                    assert_eq!(incoming.protocols(), ["v3.chat", "v2.chat", "v1.chat"]);
                    let chosen = incoming.upgrade().select_protocol(&["v1.chat", "v2.chat"]);
                    Ok(Accept::default().protocol(chosen.unwrap()))
                })
                .await
        },
        |url| async move {
            ClientBuilder::new(url)
                .protocol("v3.chat")
                .protocol("v2.chat")
                .protocol("v1.chat")
                .connect()
                .await
        },
    )
    .await;
    server.unwrap();
    let (_, response) = client.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
}

#[tokio::test]
async fn no_subprotocol_header_when_none_is_chosen() {
    let (server, client) = over_tcp(
        |tcp| async move { ServerBuilder::new().accept(tcp).await },
        |url| async move { ClientBuilder::new(url).protocol("x").connect().await },
    )
    .await;
    server.unwrap();
    let (_, response) = client.unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn choosing_an_unoffered_subprotocol_fails_the_handshake() {
    let (server, client) = over_tcp(
        |tcp| async move {
            ServerBuilder::new()
                .accept_with(tcp, |_| Ok(Accept::default().protocol("never-offered")))
                .await
                .map(|_| ())
        },
        |url| async move {
            ClientBuilder::new(url)
                .protocol("chat")
                .connect()
                .await
                .map(|_| ())
        },
    )
    .await;
    assert!(matches!(server, Err(Error::Rejected(_))), "{server:?}");
    assert!(client.is_err(), "the client must not accept the handshake");
}

/// Send `request` from a raw client; return the server's result and the
/// raw response (head and body up to EOF).
async fn raw_request(
    config: WebSocketConfig,
    request: Vec<u8>,
) -> (
    tether::Result<tether::WebSocket<tokio::io::DuplexStream>>,
    String,
) {
    let (mut raw, server_end) = tokio::io::duplex(PIPE);
    let server = ServerBuilder::new().config(config);
    let (result, response) = tokio::join!(server.accept(server_end), async move {
        // The server may stop reading before the end of an oversized head.
        let _ = raw.write_all(&request).await;
        let mut response = Vec::new();
        let _ = raw.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    });
    (result, response)
}

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn request_without_key_gets_400() {
    let request = String::from_utf8(REQUEST.to_vec())
        .unwrap()
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let (result, response) = raw_request(WebSocketConfig::default(), request.into_bytes()).await;
    assert_eq!(status_of(&response), "400", "{response}");
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::MissingKey))),
        "{result:?}"
    );
}

#[tokio::test]
async fn request_with_a_body_gets_400() {
    // A body's bytes would otherwise be read as frames.
    let request = String::from_utf8(REQUEST.to_vec())
        .unwrap()
        .replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\nhello");
    let (result, response) = raw_request(WebSocketConfig::default(), request.into_bytes()).await;
    assert_eq!(status_of(&response), "400", "{response}");
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::RequestHasBody))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn garbage_gets_400() {
    let (result, response) = raw_request(
        WebSocketConfig::default(),
        b"\x16\x03\x01 hello\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&response), "400", "{response}");
    assert!(matches!(result, Err(Error::Handshake(_))), "{result:?}");
}

#[tokio::test]
async fn wrong_version_gets_426_naming_version_13() {
    let request = String::from_utf8(REQUEST.to_vec())
        .unwrap()
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let (result, response) = raw_request(WebSocketConfig::default(), request.into_bytes()).await;
    assert_eq!(status_of(&response), "426", "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nsec-websocket-version: 13\r\n"),
        "{response}"
    );
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::UnsupportedVersion(_)))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn plain_http_request_gets_426() {
    let request = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec();
    let (result, response) = raw_request(WebSocketConfig::default(), request).await;
    assert_eq!(status_of(&response), "426", "{response}");
    assert!(result.is_err());
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let mut request = REQUEST[..REQUEST.len() - 2].to_vec();
    request.extend_from_slice(b"Cookie: ");
    request.extend(std::iter::repeat_n(b'c', 20 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let (result, response) = raw_request(WebSocketConfig::default(), request).await;
    assert_eq!(status_of(&response), "431", "{response}");
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::HeadTooLarge))),
        "{result:?}"
    );
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let mut config = WebSocketConfig::default();
    config.handshake_limits.max_headers = 8;
    let mut request = REQUEST[..REQUEST.len() - 2].to_vec();
    for i in 0..10 {
        request.extend_from_slice(format!("X-Filler-{i}: x\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let (_, response) = raw_request(config, request).await;
    assert_eq!(status_of(&response), "431", "{response}");
}

#[tokio::test(start_paused = true)]
async fn slow_drip_request_hits_the_handshake_timeout() {
    let (mut raw, server_end) = tokio::io::duplex(PIPE);
    let config = WebSocketConfig::default().with_handshake_timeout(Duration::from_secs(10));
    let server = ServerBuilder::new().config(config);
    let dripper = tokio::spawn(async move {
        // One byte a second: the whole head would take minutes.
        for &b in REQUEST {
            if raw.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        raw
    });
    let result = server.accept(server_end).await;
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                what: "opening handshake",
                ..
            })
        ),
        "{result:?}"
    );
    let mut raw = dripper.await.unwrap();
    let mut response = Vec::new();
    let _ = raw.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert_eq!(status_of(&response), "408", "{response}");
}

#[tokio::test(start_paused = true)]
async fn client_handshake_times_out_when_the_server_never_answers() {
    let (client_end, _silent) = tokio::io::duplex(PIPE);
    let config = WebSocketConfig::default().with_handshake_timeout(Duration::from_secs(3));
    let result = ClientBuilder::new("ws://localhost/")
        .config(config)
        .connect_on(client_end)
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                what: "opening handshake",
                ..
            })
        ),
        "{:?}",
        result.map(|_| ())
    );
}

#[tokio::test]
async fn frame_pipelined_behind_the_request_is_not_lost() {
    let (mut raw, server_end) = tokio::io::duplex(PIPE);
    let mut bytes = REQUEST.to_vec();
    bytes.extend(encode_frame(
        true,
        0,
        OpCode::Text,
        Some([1, 2, 3, 4]),
        b"early bird",
    ));
    // One write: the server reads the head and the frame together.
    raw.write_all(&bytes).await.unwrap();
    let mut ws = ServerBuilder::new().accept(server_end).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("early bird")
    );
}

#[tokio::test]
async fn frame_pipelined_behind_the_101_is_not_lost() {
    let (client_end, server_end) = tokio::io::duplex(PIPE);
    let mut raw = RawPeer::new(server_end, false);
    let client = ClientBuilder::new("ws://localhost/").connect_on(client_end);
    let (client, ()) = tokio::join!(client, async {
        let head = raw.read_head().await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            tether::proto::handshake::accept_key(key.trim().as_bytes())
        )
        .into_bytes();
        response.extend(encode_frame(true, 0, OpCode::Text, None, b"welcome"));
        raw.io.write_all(&response).await.unwrap();
    });
    let (mut ws, _) = client.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("welcome"));
}

#[tokio::test]
async fn client_rejects_a_wrong_accept_value() {
    let (client_end, server_end) = tokio::io::duplex(PIPE);
    let mut raw = RawPeer::new(server_end, false);
    let client = ClientBuilder::new("ws://localhost/").connect_on(client_end);
    let (result, ()) = tokio::join!(client, async {
        raw.read_head().await;
        raw.io
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await
            .unwrap();
    });
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::AcceptMismatch))
        ),
        "{:?}",
        result.map(|_| ())
    );
}

#[tokio::test]
async fn http_router_path_keeps_the_pipelined_frame() {
    // A server that also speaks plain HTTP reads the head itself, routes,
    // then hands the request (and the bytes read past it) to `Incoming`.
    let (mut raw, mut server_end) = tokio::io::duplex(PIPE);
    let mut bytes = REQUEST.to_vec();
    bytes.extend(encode_frame(
        true,
        0,
        OpCode::Binary,
        Some([5, 6, 7, 8]),
        b"routed",
    ));
    raw.write_all(&bytes).await.unwrap();
    let builder = ServerBuilder::new();
    let (request, leftover) = builder.read_http_request(&mut server_end).await.unwrap();
    assert_eq!(request.uri().path(), "/chat");
    let incoming =
        tether::Incoming::from_request(server_end, request, leftover, builder.get_config().clone())
            .await
            .unwrap();
    let mut ws = incoming.accept(Accept::default()).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(&b"routed"[..])
    );
}
