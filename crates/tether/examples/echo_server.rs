//! A minimal echo server, e.g. for the Autobahn|Testsuite fuzzing client:
//! `cargo run --release -p tether-ws --example echo_server -- --listen 127.0.0.1:9001 [--deflate]`.
//!
//! Every text and binary message is sent back unchanged; messages that are
//! already buffered are echoed together and flushed once. `--deflate`
//! enables permessage-deflate (RFC 7692) with default settings.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tether::proto::deflate::DeflateConfig;
use tether::{ServerBuilder, WebSocketConfig};
use tokio::net::TcpListener;

async fn echo(server: ServerBuilder, tcp: tokio::net::TcpStream) -> tether::Result<()> {
    tcp.set_nodelay(true)?;
    let mut ws = server.accept(tcp).await?;
    while let Some(msg) = ws.next().await {
        let mut msg = msg?;
        loop {
            if msg.is_data() {
                ws.feed(msg).await?;
            }
            match ws.next().now_or_never() {
                Some(Some(next)) => msg = next?,
                _ => break,
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:9001".to_owned();
    let mut deflate = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs ADDR"),
            "--deflate" => deflate = true,
            _ => {
                eprintln!("usage: echo_server [--listen ADDR] [--deflate]");
                std::process::exit(2);
            }
        }
    }
    let mut config = WebSocketConfig::default();
    config.protocol.max_message_size = 64 << 20;
    config.protocol.max_frame_size = 64 << 20;
    if deflate {
        config.protocol.deflate = Some(DeflateConfig::default());
    }
    let server = ServerBuilder::new().config(config);
    let listener = TcpListener::bind(&listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(server, tcp).await {
                eprintln!("connection: {e}");
            }
        });
    }
}
