//! A hyper 1.x server that answers plain HTTP and upgrades `/echo` to a
//! WebSocket echoing every message back.
//!
//! ```text
//! cargo run -p tether-ws --features hyper --example hyper_server -- 127.0.0.1:3001
//! cargo run -p tether-ws --example client -- ws://127.0.0.1:3001/echo
//! ```
//!
//! `/echo` speaks the `echo.v1` subprotocol when offered and agrees to
//! permessage-deflate when offered; any other path gets a plain text answer.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tether::hyper::{HyperWebSocket, Upgrade};
use tether::proto::deflate::DeflateConfig;
use tether::{Accept, WebSocketConfig};
use tokio::net::TcpListener;

/// Serve HTTP/1.1 with upgrades on every connection `listener` accepts.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(handle);
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("connection: {e}");
            }
        });
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
    let mut config = WebSocketConfig::default();
    config.protocol.deflate = Some(DeflateConfig::default());
    let upgrade = match Upgrade::new(req, config) {
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
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo on ws://{}/echo", listener.local_addr()?);
    serve(listener).await
}
