//! `tether serve` with `http2 = true`: HTTP/2 by ALPN over TLS and by prior
//! knowledge in cleartext, beside HTTP/1.1 on the same listener. Pages, the
//! HTTP API and `/metrics` over h2; WebSockets over extended CONNECT
//! (RFC 8441) through the same admission as HTTP/1.1; many sockets on one
//! connection with one stalled; a HEADERS+RST_STREAM flood; shutdown.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::raw::client;
use test_support::serve::Server;
use test_support::tls::Pki;
use tether::http2::Http2Connection;
use tether::proto::deflate::DeflateConfig;
use tether::tls::TlsOptions;
use tether::{ClientBuilder, Error, Message, WebSocketConfig};
use tokio::time::timeout;
use tokio_rustls::rustls;

const T: Duration = Duration::from_secs(10);
const TOKEN: &str = "h2-secret";

fn config() -> String {
    format!(
        r#"
[[listen]]
addr = "127.0.0.1:0"
http2 = true

[[route]]
path = "/"
kind = "demo"

[[route]]
path = "/echo"
kind = "echo"
protocols = ["echo.v1"]

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_path = "/api/publish"
publish_token = "{TOKEN}"
sse = true

[[route]]
path = "/chat/{{room}}"
kind = "room"

[[route]]
path = "/files"
kind = "static"
dir = "$DIR/www"

[limits]
max_message_size = "8M"
"#
    )
}

/// The static route's file: 200 KiB, several DATA frames.
fn static_file() -> Vec<u8> {
    (0..200 << 10).map(|i| b'a' + (i % 26) as u8).collect()
}

fn write_files(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/big.txt"), static_file()).unwrap();
}

/// A server with `http2 = true`, over TLS with the PKI's certificate or
/// in cleartext.
fn server(tls: Option<&Pki>) -> Server {
    let server = match tls {
        Some(pki) => {
            let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
            Server::with_setup(
                &config(),
                &[
                    "--tls-cert",
                    cert.to_str().unwrap(),
                    "--tls-key",
                    key.to_str().unwrap(),
                ],
                write_files,
            )
        }
        None => Server::with_setup(&config(), &[], write_files),
    };
    assert_eq!(server.scheme == "https", tls.is_some());
    server
}

/// The URL scheme and client settings for `server`.
fn ws_client(server: &Server, pki: Option<&Pki>, path: &str) -> ClientBuilder {
    let b = client(server.ws_url(path));
    match pki {
        Some(pki) => b.tls(TlsOptions::new().ca_file(pki.path("ca.pem"))),
        None => b,
    }
}

/// An HTTP/2 connection for plain requests: ALPN `h2` over TLS, prior
/// knowledge in cleartext.
async fn h2_requests(server: &Server, pki: Option<&Pki>) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (sender, conn) = match pki {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(pki.path("ca.pem")).unwrap();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (s, c) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("an HTTP/2 connection");
            (
                s,
                tokio::spawn(async move {
                    let _ = c.await;
                }),
            )
        }
        None => {
            let (s, c) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .expect("an HTTP/2 connection");
            (
                s,
                tokio::spawn(async move {
                    let _ = c.await;
                }),
            )
        }
    };
    drop(conn);
    sender
}

/// Send `req` on `sender`: status, headers and the whole body.
async fn fetch(
    sender: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    sender.ready().await.unwrap();
    let resp = timeout(T, sender.send_request(req)).await.unwrap().unwrap();
    let (parts, body) = resp.into_parts();
    let body = timeout(T, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(parts.version, http::Version::HTTP_2);
    (parts, body)
}

fn get(server: &Server, path: &str) -> http::Request<Full<Bytes>> {
    let scheme = if server.scheme == "https" {
        "https"
    } else {
        "http"
    };
    http::Request::get(format!("{scheme}://{}{path}", server.addr))
        .body(Full::default())
        .unwrap()
}

/// The value of a series in a `/metrics` text.
fn series(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn echo_once<S>(ws: &mut tether::WebSocket<S>, msg: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(msg.clone()).await.unwrap();
    let got = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, msg);
}

/// Everything a listener with `http2 = true` serves, over h2 and, beside
/// it, over HTTP/1.1.
async fn serves_everything_over_h2(server: &Server, pki: Option<&Pki>) {
    let mut h2 = h2_requests(server, pki).await;

    // The demo page and /healthz.
    let (page, body) = fetch(&mut h2, get(server, "/")).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.headers["content-length"], body.len().to_string());
    assert!(String::from_utf8_lossy(&body).contains("new WebSocket("));
    let (health, body) = fetch(&mut h2, get(server, "/healthz")).await;
    assert_eq!((health.status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    let (missing, _) = fetch(&mut h2, get(server, "/nothing-here")).await;
    assert_eq!(missing.status, 404);

    // The HTTP API: a publish without and with its token.
    let scheme = if pki.is_some() { "https" } else { "http" };
    let publish = |token: &str| {
        http::Request::post(format!("{scheme}://{}/api/publish", server.addr))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"channel":"news","data":"over h2"}"#,
            )))
            .unwrap()
    };
    let (refused, _) = fetch(&mut h2, publish("wrong")).await;
    assert_eq!(refused.status, 401);
    let (published, body) = fetch(&mut h2, publish(TOKEN)).await;
    assert_eq!(published.status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["delivered"], 0);

    // WebSockets over extended CONNECT: subprotocol and deflate as over
    // HTTP/1.1, 200 without Sec-WebSocket-Accept.
    let mut ws_config = WebSocketConfig::default();
    ws_config.protocol.deflate = Some(DeflateConfig::default());
    ws_config.protocol.max_message_size = 8 << 20;
    let builder = ws_client(server, pki, "/echo")
        .protocol("echo.v1")
        .config(ws_config);
    let connection = timeout(T, Http2Connection::connect(&builder))
        .await
        .unwrap()
        .expect("HTTP/2 with SETTINGS_ENABLE_CONNECT_PROTOCOL");
    let (mut ws, response) = connection.open(builder.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
    assert!(response.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap()
        .contains("permessage-deflate"));
    echo_once(&mut ws, Message::text("over h2")).await;
    // A 4 MiB message each way.
    let big: Vec<u8> = (0..4usize << 20).map(|i| (i % 251) as u8).collect();
    echo_once(&mut ws, Message::binary(big)).await;

    // A refused Origin: 403 over h2, from the same admission.
    let evil = builder.clone().origin("https://evil.example");
    match connection.open(evil).await {
        Err(Error::Refused { status, .. }) => assert_eq!(status, 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    // Another :protocol: 501.
    let mut connect = http::Request::connect(format!("{scheme}://{}/echo", server.addr))
        .header("sec-websocket-version", "13")
        .body(Full::default())
        .unwrap();
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("connect-udp"));
    let (other, _) = fetch(&mut h2, connect).await;
    assert_eq!(other.status, 501);
    // The socket still works.
    echo_once(&mut ws, Message::text("after the refusals")).await;

    // HTTP/1.1 on the same listener: a WebSocket and a request.
    let (mut ws11, response) = ws_client(server, pki, "/echo").connect().await.unwrap();
    assert_eq!(response.status(), 101);
    echo_once(&mut ws11, Message::text("over HTTP/1.1")).await;
    if pki.is_none() {
        assert!(server.get("/healthz").ends_with("ok\n"));
    }

    // The handshakes, by HTTP version.
    let (_, metrics) = fetch(&mut h2, get(server, "/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        series(&metrics, "tether_handshakes_total{version=\"2\"}") >= 1,
        "{metrics}"
    );
    assert!(
        series(&metrics, "tether_handshakes_total{version=\"1.1\"}") >= 1,
        "{metrics}"
    );
    assert!(
        series(
            &metrics,
            "tether_handshakes_rejected_total{reason=\"origin\"}"
        ) >= 1,
        "{metrics}"
    );
}

#[tokio::test]
async fn h2_by_alpn_over_tls_serves_pages_api_and_websockets() {
    let pki = Pki::new();
    let server = server(Some(&pki));
    serves_everything_over_h2(&server, Some(&pki)).await;
}

#[tokio::test]
async fn h2_by_prior_knowledge_serves_pages_api_and_websockets() {
    let server = server(None);
    serves_everything_over_h2(&server, None).await;
}

/// 100 sockets on one connection; one stops reading while its echoes pile
/// up, and the other 99 keep echoing promptly.
async fn one_stalled_socket_never_starves_the_others(server: &Server, pki: Option<&Pki>) {
    let mut ws_config = WebSocketConfig::default();
    ws_config.protocol.max_message_size = 8 << 20;
    let builder = ws_client(server, pki, "/echo").config(ws_config);
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let (ws, _) = timeout(T, connection.open(builder.clone()))
            .await
            .unwrap()
            .unwrap();
        sockets.push(ws);
    }
    // The stalled socket sends far more than the windows and buffers on
    // its way hold, and reads nothing.
    let mut stalled = sockets.remove(0);
    let sent = Arc::new(AtomicUsize::new(0));
    let progress = sent.clone();
    let staller = tokio::spawn(async move {
        for _ in 0..256 {
            stalled.send(Message::binary(vec![7u8; 64 << 10])).await?;
            progress.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, Error>(stalled)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            let started = Instant::now();
            echo_once(ws, Message::text(format!("round {round} socket {i}"))).await;
            slowest = slowest.max(started.elapsed());
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest echo beside a stalled socket: {slowest:?}"
    );
    let stuck_at = sent.load(Ordering::Relaxed);
    assert!(
        !staller.is_finished() && stuck_at < 256,
        "the stalled socket was not held back ({stuck_at} of 256 messages sent)"
    );
    staller.abort();
    let mut h2 = h2_requests(server, pki).await;
    let (_, metrics) = fetch(&mut h2, get(server, "/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(
        series(&metrics, "tether_handshakes_total{version=\"2\"}"),
        100,
        "the 100 sockets ran over HTTP/2: {metrics}"
    );
    // On one connection (the second is the one asking for /metrics).
    assert_eq!(
        series(&metrics, "tether_http2_connections_total"),
        2,
        "{metrics}"
    );
}

#[tokio::test]
async fn h2_one_stalled_socket_of_100_over_tls() {
    let pki = Pki::new();
    let server = server(Some(&pki));
    one_stalled_socket_never_starves_the_others(&server, Some(&pki)).await;
}

#[tokio::test]
async fn h2_one_stalled_socket_of_100_by_prior_knowledge() {
    let server = server(None);
    one_stalled_socket_never_starves_the_others(&server, None).await;
}

#[tokio::test]
async fn h2_rapid_reset_flood_is_survived() {
    let mut server = server(None);
    // A socket on another connection echoes while the flood runs.
    let builder = ws_client(&server, None, "/echo");
    let beside = Http2Connection::connect(&builder).await.unwrap();
    let (mut ws, _) = beside.open(builder).await.unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let beside = tokio::spawn(async move {
        let mut echoed = 0u32;
        while stopped.try_recv().is_err() {
            echo_once(&mut ws, Message::text(format!("beside {echoed}"))).await;
            echoed += 1;
        }
        echoed
    });
    // Open streams and reset each at once, as fast as the client can.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let url = format!("http://{}/", server.addr);
    let flood = async move {
        let mut client = client;
        let mut sent = 0u32;
        while sent < 20_000 {
            client = match client.ready().await {
                Ok(c) => c,
                Err(_) => break,
            };
            let req = http::Request::get(&url).body(()).unwrap();
            match client.send_request(req, true) {
                Ok((_, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    sent += 1;
                }
                Err(_) => break,
            }
        }
        sent
    };
    let sent = timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood ends");
    let _ = stop.send(());
    assert_eq!(sent, 20_000);
    driver.abort();
    let echoed = timeout(T, beside).await.unwrap().unwrap();
    assert!(echoed >= 1, "the socket beside the flood echoed nothing");
    // The server keeps serving everyone else.
    assert!(server.is_running(), "the server died under the flood");
    let mut h2 = h2_requests(&server, None).await;
    let (page, _) = fetch(&mut h2, get(&server, "/healthz")).await;
    assert_eq!(page.status, 200);
    let builder = ws_client(&server, None, "/echo");
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let (mut ws, _) = connection.open(builder).await.unwrap();
    echo_once(&mut ws, Message::text("after the flood")).await;
}

#[tokio::test]
async fn h2_shutdown_closes_sockets_with_1001_then_the_connection() {
    let mut server = server(None);
    let builder = ws_client(&server, None, "/echo");
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let (mut a, _) = connection.open(builder.clone()).await.unwrap();
    let (mut b, _) = connection.open(builder.clone()).await.unwrap();
    echo_once(&mut a, Message::text("before")).await;
    server.terminate();
    for ws in [&mut a, &mut b] {
        match timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected a Close 1001, got {other:?}"),
        }
    }
    let deadline = Instant::now() + T;
    while !connection.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        connection.is_closed(),
        "the HTTP/2 connection outlived the shutdown"
    );
    assert!(server.wait_exit(T).is_some());
}

#[tokio::test]
async fn h2_serves_static_files_head_and_event_streams() {
    let server = server(None);
    let mut h2 = h2_requests(&server, None).await;
    let (file, body) = fetch(&mut h2, get(&server, "/files/big.txt")).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(file.headers["content-length"], (200 << 10).to_string());
    assert!(body[..] == static_file()[..], "the file's bytes");
    let head = http::Request::head(format!("http://{}/files/big.txt", server.addr))
        .body(Full::default())
        .unwrap();
    let (head, body) = fetch(&mut h2, head).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], (200 << 10).to_string());
    assert!(body.is_empty());

    // An event stream on one stream, a publish on another.
    h2.ready().await.unwrap();
    let events = h2
        .send_request(get(&server, "/pubsub/events?channel=news"))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    assert_eq!(events.version(), http::Version::HTTP_2);
    let mut events = events.into_body();
    let mut text = String::new();
    let mut read_until = async |want: &str, text: &mut String| {
        while !text.contains(want) {
            let frame = timeout(T, events.frame()).await.unwrap().unwrap().unwrap();
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
    };
    read_until("event: subscribed", &mut text).await;
    assert!(text.starts_with("retry:"), "{text}");
    let publish = http::Request::post(format!("http://{}/api/publish", server.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from_static(
            br#"{"channel":"news","data":"to the event stream"}"#,
        )))
        .unwrap();
    let (published, body) = fetch(&mut h2, publish).await;
    assert_eq!(published.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["delivered"], 1, "the event stream is a subscriber");
    read_until("to the event stream", &mut text).await;
    assert!(text.contains("\nid: "), "{text}");
}

#[tokio::test]
async fn h2_streams_count_in_the_connection_limits() {
    let server = Server::with_setup(&config(), &["--max-connections-per-ip", "3"], write_files);
    let builder = ws_client(&server, None, "/echo");
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connection.open(builder.clone()).await.unwrap().0);
    }
    // A fourth stream of the same connection is a fourth connection.
    match connection.open(builder.clone()).await {
        Err(Error::Refused { status, .. }) => assert_eq!(status, 429),
        other => panic!("expected a 429, got {other:?}"),
    }
    // A closed socket frees its slot.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    assert!(timeout(T, first.next()).await.unwrap().is_none());
    let deadline = Instant::now() + T;
    let mut again = loop {
        match connection.open(builder.clone()).await {
            Ok((ws, _)) => break ws,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the slot was not freed: {e}"),
        }
    };
    echo_once(&mut again, Message::text("in the freed slot")).await;
    assert_eq!(
        server.metric("tether_handshakes_rejected_total{reason=\"limit_ip\"}"),
        1
    );
}

#[tokio::test]
async fn h2_idle_connections_close_and_busy_ones_stay() {
    let server = Server::with_setup(&config(), &["--handshake-timeout", "1"], write_files);
    let builder = ws_client(&server, None, "/echo");
    let idle = Http2Connection::connect(&builder).await.unwrap();
    let busy = Http2Connection::connect(&builder).await.unwrap();
    let (mut ws, _) = busy.open(builder.clone()).await.unwrap();
    let deadline = Instant::now() + T;
    while !idle.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idle.is_closed(),
        "an idle connection outlived handshake_timeout"
    );
    // The connection with a socket open is not idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!busy.is_closed());
    echo_once(&mut ws, Message::text("still open")).await;
}

#[tokio::test]
async fn h2_and_http11_sockets_share_a_room() {
    let server = server(None);
    let builder = ws_client(&server, None, "/chat/lobby");
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let (mut over_h2, _) = connection.open(builder.clone()).await.unwrap();
    let (mut over_h11, _) = builder.connect().await.unwrap();
    // Both members are in before anything is said.
    let deadline = Instant::now() + T;
    while server.metric("tether_route_connections_open{route=\"/chat/{room}\",kind=\"room\"}") < 2 {
        assert!(Instant::now() < deadline, "the room never had two members");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    over_h2.send(Message::text("from h2")).await.unwrap();
    let got = timeout(T, over_h11.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("from h2"));
    over_h11.send(Message::text("from HTTP/1.1")).await.unwrap();
    let got = timeout(T, over_h2.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("from HTTP/1.1"));
}

#[tokio::test]
async fn h2_settings_follow_the_http2_section() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::with_setup(
        "[[listen]]\naddr = \"127.0.0.1:0\"\nhttp2 = true\n\n[http2]\nmax_concurrent_streams = 7\nstream_window = \"1M\"\n\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
        &[],
        |_| {},
    );
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The preface and an empty SETTINGS frame.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frame = async || {
        let mut head = [0u8; 9];
        timeout(T, tcp.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        timeout(T, tcp.read_exact(&mut payload))
            .await
            .unwrap()
            .unwrap();
        (head[3], payload)
    };
    let (kind, payload) = frame().await;
    assert_eq!(kind, 4, "the server's first frame is SETTINGS");
    let settings: std::collections::HashMap<u16, u32> = payload
        .chunks(6)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            )
        })
        .collect();
    // MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, ENABLE_CONNECT_PROTOCOL.
    assert_eq!(settings.get(&3), Some(&7));
    assert_eq!(settings.get(&4), Some(&(1 << 20)));
    assert_eq!(settings.get(&5), Some(&(1 << 20)));
    assert_eq!(settings.get(&8), Some(&1));
    // The connection window: every stream's, raised from the protocol's 65,535.
    loop {
        let (kind, payload) = frame().await;
        if kind == 8 {
            let increment = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert_eq!(increment, (7 << 20) - 65_535);
            break;
        }
    }
}
