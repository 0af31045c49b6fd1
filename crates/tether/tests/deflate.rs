//! permessage-deflate negotiated through the async client and server.

use futures_util::StreamExt;
use tether::proto::deflate::{DeflateConfig, DeflateParams};
use tether::proto::Config;
use tether::{ClientBuilder, Message, ServerBuilder, WebSocketConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn with_deflate(d: Option<DeflateConfig>) -> WebSocketConfig {
    WebSocketConfig::default().with_protocol(Config::default().with_deflate(d))
}

async fn pair(
    server: Option<DeflateConfig>,
    client: Option<DeflateConfig>,
) -> (
    tether::WebSocket<tokio::io::DuplexStream>,
    tether::WebSocket<tokio::io::DuplexStream>,
    http::Response<()>,
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let s = ServerBuilder::new().config(with_deflate(server));
    let c = ClientBuilder::new("ws://localhost/chat").config(with_deflate(client));
    let (s, c) = tokio::join!(s.accept(b), c.connect_on(a));
    let (c, resp) = c.expect("client handshake");
    (s.expect("server handshake"), c, resp)
}

#[tokio::test]
async fn both_sides_enabled_negotiate_and_echo() {
    let (mut s, mut c, resp) = pair(
        Some(DeflateConfig::default()),
        Some(DeflateConfig::default()),
    )
    .await;
    assert_eq!(
        resp.headers().get("sec-websocket-extensions").unwrap(),
        "permessage-deflate"
    );
    assert_eq!(s.connection().deflate(), Some(DeflateParams::default()));
    assert_eq!(c.connection().deflate(), Some(DeflateParams::default()));
    let big = "tether ".repeat(10_000);
    for msg in [
        Message::text(big.clone()),
        Message::text("hi"),
        Message::binary(vec![1u8; 100_000]),
    ] {
        c.send(msg.clone()).await.unwrap();
        let got = s.next().await.unwrap().unwrap();
        assert_eq!(got, msg);
        s.send(got).await.unwrap();
        assert_eq!(c.next().await.unwrap().unwrap(), msg);
    }
}

#[tokio::test]
async fn server_limits_are_agreed_by_the_client() {
    let server = DeflateConfig::default()
        .with_server_max_window_bits(10)
        .with_client_max_window_bits(9)
        .with_client_no_context_takeover(true);
    let (mut s, mut c, resp) = pair(Some(server), Some(DeflateConfig::default())).await;
    assert_eq!(
        resp.headers().get("sec-websocket-extensions").unwrap(),
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9"
    );
    let p = c.connection().deflate().unwrap();
    assert_eq!(p, s.connection().deflate().unwrap());
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (10, 9)
    );
    c.send(Message::text("x".repeat(5000))).await.unwrap();
    assert_eq!(
        s.next().await.unwrap().unwrap(),
        Message::text("x".repeat(5000))
    );
}

#[tokio::test]
async fn no_deflate_unless_both_sides_opt_in() {
    let (s, c, resp) = pair(None, Some(DeflateConfig::default())).await;
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    assert_eq!(
        (s.connection().deflate(), c.connection().deflate()),
        (None, None)
    );
    let (s, c, _) = pair(Some(DeflateConfig::default()), None).await;
    assert_eq!(
        (s.connection().deflate(), c.connection().deflate()),
        (None, None)
    );
}

/// A server that answers with whatever `extensions` says.
async fn client_against(extensions: &str) -> tether::Result<()> {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let extensions = extensions.to_owned();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = b.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head
            .contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n",
            tether::proto::handshake::accept_key(key.as_bytes())
        );
        b.write_all(resp.as_bytes()).await.unwrap();
        b
    });
    let r = ClientBuilder::new("ws://localhost/")
        .config(with_deflate(Some(DeflateConfig::default())))
        .connect_on(a)
        .await
        .map(|_| ());
    drop(server.await.unwrap());
    r
}

#[tokio::test]
async fn client_fails_on_invalid_deflate_response() {
    client_against("permessage-deflate").await.unwrap();
    client_against("permessage-deflate; client_max_window_bits=8; server_max_window_bits=8")
        .await
        .unwrap();
    for bad in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate, permessage-deflate",
        "x-unoffered",
    ] {
        let e = client_against(bad).await.unwrap_err();
        assert!(matches!(e, tether::Error::Handshake(_)), "{bad}: {e}");
    }
}
