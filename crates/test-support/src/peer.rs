//! Servers a test controls: [`raw_server`] answers one handshake and then
//! writes the bytes the test gives it; [`ws_server`] hands each accepted
//! WebSocket to the test; [`tls_echo_server`] echoes every data message
//! over TLS.

use futures_util::StreamExt;
use std::future::Future;
use tether::WebSocket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Read an HTTP head (up to and with its blank line), byte by byte so that
/// nothing after it is consumed.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The `101` answer to a handshake `head`, with `extra_headers` (each line
/// ending in `\r\n`).
pub fn switching_protocols(head: &str, extra_headers: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        })
        .expect("a Sec-WebSocket-Key header");
    let accept = tether::proto::handshake::accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra_headers}\r\n"
    )
}

/// A server for one connection: answers the handshake with a `101`
/// carrying `extra_headers`, writes `after` (raw frames) and reads until
/// the client is gone. Returns its port on 127.0.0.1.
pub async fn raw_server(extra_headers: &'static str, after: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let response = switching_protocols(&head, extra_headers);
        tcp.write_all(response.as_bytes()).await.unwrap();
        tcp.write_all(after).await.unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    });
    port
}

/// A `wss://` echo server on 127.0.0.1 (every data message sent back);
/// returns its port.
pub async fn tls_echo_server(acceptor: tokio_rustls::TlsAcceptor) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut ws = tether::accept(tls).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_data() {
                        ws.send(m).await.unwrap();
                    }
                }
            });
        }
    });
    port
}

/// A WebSocket server on 127.0.0.1: each connection's handshake is read
/// with `tether::ServerBuilder`, accepted (with `protocol` when the client
/// offers it) and handed to `handle` with the request's URI and headers.
/// Returns its port.
pub async fn ws_server<F, Fut>(protocol: &'static str, handle: F) -> u16
where
    F: Fn(WebSocket<TcpStream>, http::Request<()>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let incoming = tether::ServerBuilder::new()
                    .read_request(tcp)
                    .await
                    .unwrap();
                let mut request = http::Request::new(());
                *request.uri_mut() = incoming.request().uri().clone();
                *request.headers_mut() = incoming.request().headers().clone();
                let mut accept = tether::Accept::default();
                if incoming.protocols().iter().any(|p| p == protocol) {
                    accept = accept.protocol(protocol);
                }
                let ws = incoming.accept(accept).await.unwrap();
                handle(ws, request).await;
            });
        }
    });
    port
}
