//! The hyper helper, through the `hyper_server` example served on
//! 127.0.0.1 and talked to with the tether client.

#[allow(dead_code)]
#[path = "../examples/hyper_server.rs"]
mod hyper_server;

use common::{client, raw_http};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use test_support::raw as common;
use tether::proto::deflate::DeflateConfig;
use tether::{Message, WebSocketConfig};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_server::serve(listener));
    addr
}

#[tokio::test]
async fn hyper_echoes_text_and_binary_with_the_subprotocol_chosen() {
    let addr = serve().await;
    let (mut ws, resp) = client(format!("ws://{addr}/echo"))
        .protocol("echo.v1")
        .connect()
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "echo.v1");
    for msg in [Message::text("one"), Message::binary(vec![0u8, 1, 2, 255])] {
        ws.send(msg.clone()).await.unwrap();
        let got = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, msg);
    }
    ws.close(None).await.unwrap();
    assert!(timeout(T, ws.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn hyper_negotiates_deflate_when_offered_and_not_otherwise() {
    let addr = serve().await;
    let mut config = WebSocketConfig::default();
    config.protocol.deflate = Some(DeflateConfig::default());
    let (mut ws, resp) = client(format!("ws://{addr}/echo"))
        .config(config)
        .connect()
        .await
        .expect("handshake");
    let ext = resp.headers()["sec-websocket-extensions"].to_str().unwrap();
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    let long = Message::text("abc".repeat(5000));
    ws.send(long.clone()).await.unwrap();
    assert_eq!(timeout(T, ws.next()).await.unwrap().unwrap().unwrap(), long);

    let (_ws, resp) = client(format!("ws://{addr}/echo")).connect().await.unwrap();
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
}

#[tokio::test]
async fn hyper_answers_a_plain_get_with_426_and_other_paths_normally() {
    let addr = serve().await;
    let resp = raw_http(addr, "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{resp}"
    );
    let resp = raw_http(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn hyper_refuses_a_wrong_version_with_426() {
    let addr = serve().await;
    let resp = raw_http(
        addr,
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
}

#[tokio::test]
async fn choosing_an_unoffered_subprotocol_answers_500() {
    use tether::hyper::Upgrade;
    let req = http::Request::get("/x")
        .header("host", "h")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let upgrade = Upgrade::new(req, WebSocketConfig::default()).expect("valid");
    assert!(!upgrade.is_upgradable());
    let (resp, socket) = upgrade.accept(tether::Accept::default().protocol("nope"));
    assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    assert!(matches!(socket.await, Err(tether::Error::Rejected(_))));
}
