//! The axum extractor, through the `axum_chat` example's router served on
//! 127.0.0.1 and talked to with the tether client.

#[allow(dead_code)]
#[path = "../examples/axum_chat.rs"]
mod axum_chat;

use common::{client, raw_http};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use test_support::raw as common;
use tether::proto::deflate::DeflateConfig;
use tether::{Message, WebSocketConfig};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

/// Serve the example's app on a free loopback port.
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum_chat::app()).await });
    addr
}

async fn next_text<S>(ws: &mut tether::WebSocket<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let msg = timeout(T, ws.next()).await.expect("a message in time");
    msg.expect("open")
        .expect("no error")
        .as_text()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn chat_echoes_to_the_sender_with_the_offered_subprotocol_chosen() {
    let addr = serve().await;
    let (mut ws, resp) = client(format!("ws://{addr}/chat"))
        .protocol("other")
        .protocol("chat.v1")
        .connect()
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v1");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn chat_without_a_common_subprotocol_is_accepted_without_one() {
    let addr = serve().await;
    let (_ws, resp) = client(format!("ws://{addr}/chat"))
        .protocol("other")
        .connect()
        .await
        .expect("handshake");
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn chat_relays_between_members() {
    let addr = serve().await;
    let (mut a, _) = client(format!("ws://{addr}/chat")).connect().await.unwrap();
    let (mut b, _) = client(format!("ws://{addr}/chat")).connect().await.unwrap();
    // b is subscribed once its own message comes back to it.
    b.send(Message::text("b here")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "b here");
    a.send(Message::text("hi from a")).await.unwrap();
    let mut got = next_text(&mut b).await;
    if got == "b here" {
        got = next_text(&mut b).await;
    }
    assert_eq!(got, "hi from a");
}

#[tokio::test]
async fn chat_negotiates_deflate_when_offered() {
    let addr = serve().await;
    let mut config = WebSocketConfig::default();
    config.protocol.deflate = Some(DeflateConfig::default());
    let (mut ws, resp) = client(format!("ws://{addr}/chat"))
        .config(config)
        .connect()
        .await
        .expect("handshake");
    let ext = resp.headers()["sec-websocket-extensions"].to_str().unwrap();
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    let long = "compressible ".repeat(1000);
    ws.send(Message::text(long.clone())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, long);
}

#[tokio::test]
async fn a_plain_get_is_refused_with_426_and_the_version() {
    let addr = serve().await;
    let resp = raw_http(
        addr,
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-version: 13"), "{resp}");
    assert!(lower.contains("upgrade: websocket"), "{resp}");
}

#[tokio::test]
async fn a_bad_key_is_refused_with_400() {
    let addr = serve().await;
    let resp = raw_http(
        addr,
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_with_403() {
    let addr = serve().await;
    let err = client(format!("ws://{addr}/chat"))
        .origin("https://evil.example")
        .connect()
        .await
        .expect_err("refused");
    assert_eq!(
        err.refused_status(),
        Some(http::StatusCode::FORBIDDEN),
        "{err}"
    );
    let (_ws, _) = client(format!("ws://{addr}/chat"))
        .origin(format!("http://{addr}"))
        .connect()
        .await
        .expect("same origin accepted");
}

#[tokio::test]
async fn messages_over_the_limit_close_with_1009() {
    let addr = serve().await;
    let (mut ws, _) = client(format!("ws://{addr}/chat")).connect().await.unwrap();
    ws.send(Message::text("x".repeat(65 << 10))).await.unwrap();
    let end = timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("closed in time");
    assert!(
        end.is_none() || end.as_ref().is_some_and(|r| r.is_err()),
        "{end:?}"
    );
    assert_eq!(
        ws.peer_close().map(|f| f.code),
        Some(tether::CloseCode::MESSAGE_TOO_BIG)
    );
}
