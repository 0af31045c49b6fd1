//! A hyper 1.x server speaking HTTP/1.1 and HTTP/2 on one port (hyper-util's
//! `auto` builder tells them apart by the HTTP/2 preface), with WebSockets on
//! `/echo` over both: an HTTP/1.1 upgrade (`101`) or an HTTP/2 extended
//! CONNECT (RFC 8441, `200`). The same `tether::hyper::Upgrade` takes either.
//!
//! ```text
//! cargo run -p tether --features hyper --example hyper_http2 -- 127.0.0.1:3002
//! ```
//!
//! HTTP/2 here is cleartext with prior knowledge (for backends and tests);
//! browsers speak HTTP/2 over TLS only, where the acceptor offers ALPN `h2`
//! beside `http/1.1`.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use tether::hyper::{HyperWebSocket, Upgrade};
use tether::{Accept, WebSocketConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// Serve every connection accepted on `listener`; `connect_protocol` is
/// whether HTTP/2 connections enable the extended CONNECT.
pub async fn serve(listener: TcpListener, connect_protocol: bool) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(serve_connection(tcp, connect_protocol));
    }
}

/// Serve one connection (plain TCP or TLS) until it ends.
pub async fn serve_connection<S>(io: S, connect_protocol: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if connect_protocol {
        // Sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1: without it clients
        // (browsers included) never send an extended CONNECT.
        builder.http2().enable_connect_protocol();
    }
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service_fn(handle));
    if let Err(e) = conn.await {
        eprintln!("connection: {e}");
    }
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/echo" {
        return Ok(http::Response::new(Full::new(Bytes::from_static(
            b"WebSocket echo on /echo\n",
        ))));
    }
    // A GET with Upgrade (HTTP/1.1) or a CONNECT with :protocol (HTTP/2).
    let upgrade = match Upgrade::new(req, WebSocketConfig::default()) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return Ok(refusal.into_http_response()),
    };
    let mut accept = Accept::default();
    if upgrade.protocols().iter().any(|p| p == "echo.v1") {
        accept = accept.protocol("echo.v1");
    }
    let (response, socket) = upgrade.accept(accept);
    tokio::spawn(async move {
        match socket.await {
            Ok(ws) => echo(ws).await,
            Err(e) => eprintln!("upgrade: {e}"),
        }
    });
    Ok(response)
}

async fn echo(mut ws: HyperWebSocket) {
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

#[allow(dead_code)] // the integration tests include this file for `serve`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3002".into());
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "echo on ws://{}/echo (HTTP/1.1 and HTTP/2)",
        listener.local_addr()?
    );
    serve(listener, true).await
}
