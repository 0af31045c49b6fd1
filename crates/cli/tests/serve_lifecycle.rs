//! Slow consumers, graceful shutdown and TLS of `tether serve`.

use futures_util::StreamExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use test_support::serve::{eventually, Server};
use test_support::ws::close_of;
use tether::{ClientBuilder, Message};
use tokio_rustls::rustls;

#[tokio::test]
async fn slow_consumer_is_closed_with_1008_and_counted() {
    let server = Server::with_config(
        r#"
[limits]
send_queue = 4
write_buffer = "16K"

[[route]]
path = "/chat/{room}"
kind = "room"
"#,
    );
    let url = server.ws_url("/chat/flood");
    // The slow one never reads until it has been cut off.
    let (mut slow, _) = ClientBuilder::new(&url).connect().await.unwrap();
    let (mut fast, _) = ClientBuilder::new(&url).connect().await.unwrap();
    let metric = "tether_slow_consumer_closes_total{route=\"/chat/{room}\",kind=\"room\"}";
    let chunk = Message::binary(vec![7u8; 64 * 1024]);
    let mut kicked = false;
    // Up to 256 MiB: far more than socket buffers and the queue can hold.
    for i in 0..4096 {
        fast.send(chunk.clone()).await.unwrap();
        if i % 32 == 31 && server.metric(metric) == 1 {
            kicked = true;
            break;
        }
    }
    assert!(kicked, "the slow consumer was never cut off");
    assert_eq!(
        close_of(&mut slow).await,
        (1008, "slow consumer: send queue full".to_owned())
    );
    // The publisher is unaffected.
    fast.send(Message::text("still here")).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_closes_total{code=\"1008\"}")
        == 1));
}

#[tokio::test]
async fn sigterm_closes_every_socket_with_1001_and_exits() {
    let mut server = Server::with_args(&[]);
    let (mut echo, _) = ClientBuilder::new(server.ws_url("/echo"))
        .connect()
        .await
        .unwrap();
    let (mut chat, _) = ClientBuilder::new(server.ws_url("/chat/lobby"))
        .connect()
        .await
        .unwrap();
    let (mut pubsub, _) = ClientBuilder::new(server.ws_url("/pubsub"))
        .connect()
        .await
        .unwrap();
    // Make sure all three are being served before the signal.
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_connections_open")
        == 3));
    server.terminate();
    let going_away = (1001, "server shutting down".to_owned());
    assert_eq!(close_of(&mut echo).await, going_away);
    assert_eq!(close_of(&mut chat).await, going_away);
    assert_eq!(close_of(&mut pubsub).await, going_away);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server exited");
    assert!(status.success(), "{status}");
}

fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (needed to make a test certificate)")
        .success();
    assert!(ok, "openssl req failed");
    (cert, key)
}

#[tokio::test]
async fn wss_and_https_share_the_tls_port() {
    let dir = test_support::serve::TempDir::new();
    let (cert, key) = make_cert(dir.path());
    let server = Server::with_args(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(server.scheme, "https");

    let pem = std::fs::read(&cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let (mut ws, _) = ClientBuilder::new(url)
        .origin(format!("https://localhost:{}", server.addr.port()))
        .connect_on(tls)
        .await
        .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));

    // Plain HTTP on the same TLS port.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        server.addr.port()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    let _ = tls.read_to_string(&mut resp).await;
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok\n"),
        "{resp}"
    );
}

#[test]
fn silent_client_is_pinged_then_dropped() {
    use std::io::{Read, Write};
    let server = Server::with_config(
        r#"
[limits]
ping_interval = "1s"
idle_timeout = "1s"

[[route]]
path = "/echo"
kind = "echo"
"#,
    );
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .unwrap();
    // Read everything until the server gives up on us (we never answer).
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    assert!(all.starts_with(b"HTTP/1.1 101"));
    let frames = &all[head_end..];
    // The first frame after the handshake is the server's ping (FIN + opcode 9).
    assert_eq!(frames.first(), Some(&0x89), "frames: {frames:02x?}");
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_connections_open")
        == 0));
}

#[test]
fn a_peer_that_stops_reading_is_dropped_after_the_send_timeout() {
    let server = Server::with_config(
        r#"
[limits]
send_timeout = "1s"
write_buffer = "16K"

[[route]]
path = "/echo"
kind = "echo"
"#,
    );
    let mut s = server.raw_websocket("/echo");
    // Echo requests that are never read: the server's socket fills, then
    // its output queue, then it stops reading ours.
    let frame = test_support::serve::client_frame(&[7u8; 60_000]);
    test_support::serve::write_until_blocked(&mut s, &frame, Duration::from_millis(500), 1 << 30);
    assert!(
        eventually(Duration::from_secs(10), || server
            .metric("tether_connections_open")
            == 0),
        "the blocked connection was kept; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("timed out: sending"), "{log}");
}

#[tokio::test]
async fn builtin_demo_ticker_pushes_prices() {
    let server = Server::with_args(&[]);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/pubsub"))
        .connect()
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"op":"subscribe","channel":"ticker","id":1}"#,
    ))
    .await
    .unwrap();
    let mut quotes = 0;
    while quotes < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Some(text) = m.as_text() else { continue };
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        if v["op"] == "message" {
            assert_eq!(v["channel"], "ticker");
            assert_eq!(v["data"]["quotes"][0]["symbol"], "ACME");
            quotes += 1;
        }
    }
}
