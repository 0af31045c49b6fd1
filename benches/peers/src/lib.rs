//! What the peer echo servers share: argument parsing, the accept loop, and
//! a minimal RFC 6455 opening handshake for libraries whose own handshake
//! needs an HTTP stack (fastwebsockets' `upgrade` is built on hyper; doing
//! the handshake by hand keeps hyper out of the measurement).

use base64::Engine;
use sha1::{Digest, Sha1};
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `--listen ADDR` (default 127.0.0.1:9002).
pub fn listen_addr() -> SocketAddr {
    let args: Vec<String> = std::env::args().collect();
    let mut addr = "127.0.0.1:9002".to_owned();
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--listen" && i + 1 < args.len() {
            addr = args[i + 1].clone();
            i += 1;
        }
        i += 1;
    }
    addr.parse().expect("--listen takes host:port")
}

/// Accept connections forever on a multi-thread runtime (one worker per
/// core, as `tether serve`), running `handle` on each in its own task.
pub fn serve<F, Fut>(name: &str, handle: F)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static + Copy,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listen_addr();
    let name = name.to_owned();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let listener = TcpListener::bind(addr).await.expect("bind");
            eprintln!("{name} echo listening on {addr}");
            loop {
                let (tcp, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("accept: {e}");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(handle(tcp));
            }
        });
}

/// Read the request head and answer `101 Switching Protocols`.
/// Only what a benchmark client sends is supported; anything else is refused.
pub async fn handshake(tcp: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await
}
