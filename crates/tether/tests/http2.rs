//! WebSockets over HTTP/2 (RFC 8441): the `hyper_http2` example (hyper's
//! `auto` builder with `tether::hyper::Upgrade`) served on 127.0.0.1, and
//! the `tether::http2` client against it, over cleartext HTTP/2 (prior
//! knowledge) and over TLS with ALPN.

#[allow(dead_code)]
#[path = "../examples/hyper_http2.rs"]
mod hyper_http2;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use test_support::raw::client;
use tether::http2::{ClientStream, Http2Connection};
use tether::proto::deflate::DeflateConfig;
use tether::tls::TlsOptions;
use tether::{Error, Message, WebSocketConfig};
use tokio::net::TcpListener;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

async fn serve(connect_protocol: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_http2::serve(listener, connect_protocol));
    addr
}

async fn echo_once<S>(ws: &mut tether::WebSocket<S>, msg: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(msg.clone()).await.unwrap();
    let got = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, msg);
}

#[tokio::test]
async fn http2_client_opens_many_sockets_on_one_connection() {
    let addr = serve(true).await;
    let builder = client(format!("ws://{addr}/echo"));
    let connection = timeout(T, Http2Connection::connect(&builder))
        .await
        .unwrap()
        .expect("HTTP/2 with the extended CONNECT");
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let (ws, response) = connection.open(builder.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert!(response.headers().get("sec-websocket-accept").is_none());
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echo_once(ws, Message::text(format!("socket {i}"))).await;
        echo_once(ws, Message::binary(vec![i as u8; 70_000])).await;
    }
    // A clean close of one stream leaves the others working.
    let mut first = sockets.remove(0);
    first.close(None).await.unwrap();
    assert!(timeout(T, first.next()).await.unwrap().is_none());
    echo_once(&mut sockets[0], Message::text("still here")).await;
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn http2_negotiates_subprotocol_and_deflate_as_over_http11() {
    let addr = serve(true).await;
    let mut config = WebSocketConfig::default();
    config.protocol.deflate = Some(DeflateConfig::default());
    let builder = client(format!("ws://{addr}/echo"))
        .protocol("other")
        .protocol("echo.v1")
        .config(config);
    let connection = Http2Connection::connect(&builder).await.unwrap();
    let (mut ws, response) = connection.open(builder).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
    // The example's server does not enable deflate: none agreed.
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    echo_once(&mut ws, Message::text("abc".repeat(5000))).await;
}

#[tokio::test]
async fn http2_server_refuses_another_protocol_with_501_and_a_plain_get_with_426() {
    let addr = serve(true).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let connect = |protocol: Option<&'static str>, version: Option<&'static str>| {
        let mut b = http::Request::connect(format!("http://{addr}/echo"));
        if let Some(v) = version {
            b = b.header("sec-websocket-version", v);
        }
        let mut req = b.body(Empty::<Bytes>::new()).unwrap();
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(p));
        }
        req
    };
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(connect(Some("connect-udp"), Some("13")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 501);
    let resp = sender
        .send_request(connect(Some("websocket"), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13");
    let get = http::Request::get(format!("http://{addr}/echo"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(get).await.unwrap();
    assert_eq!(resp.status(), 426);
}

#[tokio::test]
async fn http2_client_without_the_setting_fails_or_falls_back_to_http11() {
    let addr = serve(false).await;
    let builder = client(format!("ws://{addr}/echo"));
    match Http2Connection::connect(&builder).await {
        Err(Error::Http2(why)) => {
            assert!(why.contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"), "{why}")
        }
        other => panic!("expected Error::Http2, got {other:?}"),
    }
    let (mut ws, response) = builder.connect_http2().await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(!ws.get_ref().is_http2());
    echo_once(&mut ws, Message::text("over HTTP/1.1")).await;
}

#[tokio::test]
async fn http2_client_falls_back_from_an_http11_only_server() {
    // A server that does not speak HTTP/2 at all: its first bytes are an
    // HTTP/1.1 answer to the preface, not SETTINGS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let builder = tether::ServerBuilder::new();
                if let Ok(mut ws) = builder.accept(tcp).await {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_data() && ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    let builder = client(format!("ws://{addr}/echo"));
    assert!(matches!(
        Http2Connection::connect(&builder).await,
        Err(Error::Http2(_))
    ));
    let (mut ws, _) = builder.connect_http2().await.unwrap();
    assert!(matches!(ws.get_ref(), ClientStream::Http1(_)));
    echo_once(&mut ws, Message::text("fallback")).await;
}

/// A TLS acceptor for 127.0.0.1 offering `alpn`, with a self-signed
/// certificate.
fn acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve_tls(alpn: &[&[u8]]) -> SocketAddr {
    let acceptor = acceptor(alpn);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    hyper_http2::serve_connection(tls, true).await;
                }
            });
        }
    });
    addr
}

fn tls_client(addr: SocketAddr) -> tether::ClientBuilder {
    client(format!("wss://{addr}/echo")).tls(TlsOptions::new().danger_accept_invalid_certs(true))
}

#[tokio::test]
async fn http2_client_uses_alpn_h2_over_tls() {
    let addr = serve_tls(&[b"h2", b"http/1.1"]).await;
    let (mut ws, response) = tls_client(addr).connect_http2().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(ws.get_ref().is_http2());
    echo_once(&mut ws, Message::text("over h2 and TLS")).await;
    echo_once(&mut ws, Message::binary(vec![9u8; 4 << 20])).await;
}

#[tokio::test]
async fn http2_client_falls_back_on_the_same_tls_connection_when_alpn_chooses_http11() {
    let addr = serve_tls(&[b"http/1.1"]).await;
    let builder = tls_client(addr);
    match Http2Connection::connect(&builder).await {
        Err(Error::Http2(why)) => assert!(why.contains("ALPN"), "{why}"),
        other => panic!("expected Error::Http2, got {other:?}"),
    }
    let (mut ws, response) = builder.connect_http2().await.unwrap();
    assert_eq!(response.status(), 101);
    match ws.get_ref() {
        ClientStream::Http1(s) => assert_eq!(
            s.tls_session().unwrap().alpn_protocol(),
            Some(&b"http/1.1"[..])
        ),
        other => panic!("expected HTTP/1.1, got {other:?}"),
    }
    echo_once(&mut ws, Message::text("over HTTP/1.1 and TLS")).await;
}

#[tokio::test]
async fn http2_connection_refuses_a_url_of_another_origin() {
    let addr = serve(true).await;
    let connection = Http2Connection::connect(&client(format!("ws://{addr}/echo")))
        .await
        .unwrap();
    let other = client(format!("ws://localhost:{}/echo", addr.port()));
    assert!(matches!(
        connection.open(other).await,
        Err(Error::Config(_))
    ));
}
