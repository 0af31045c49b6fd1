//! What the peer echo servers share: argument parsing, the accept loop
//! (plain TCP, or TLS with `--tls CERT KEY`), and a minimal RFC 6455
//! opening handshake for libraries whose own handshake needs an HTTP stack
//! (fastwebsockets' `upgrade` is built on hyper; doing the handshake by hand
//! keeps hyper out of the measurement).
//!
//! Every binary takes `--listen ADDR` and `--tls CERT KEY` (PEM files): with
//! `--tls` it speaks TLS only, through tokio-rustls on rustls's `ring`
//! provider, as Tether does.

use base64::Engine;
use sha1::{Digest, Sha1};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
pub use tokio_rustls::TlsAcceptor;

/// A server-side TLS connection.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The command line: `--listen ADDR` (default 127.0.0.1:9002) and
/// `--tls CERT KEY`.
pub struct Args {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Parse the command line; other arguments are left to the binary.
pub fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let mut addr = "127.0.0.1:9002".to_owned();
    let mut tls = None;
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--listen" && i + 1 < args.len() {
            addr = args[i + 1].clone();
            i += 1;
        } else if args[i] == "--tls" && i + 2 < args.len() {
            tls = Some((PathBuf::from(&args[i + 1]), PathBuf::from(&args[i + 2])));
            i += 2;
        }
        i += 1;
    }
    Args {
        listen: addr.parse().expect("--listen takes host:port"),
        tls,
    }
}

/// `--listen ADDR` (default 127.0.0.1:9002).
pub fn listen_addr() -> SocketAddr {
    args().listen
}

/// The `--tls CERT KEY` files, if given.
pub fn tls_files() -> Option<(PathBuf, PathBuf)> {
    args().tls
}

/// An acceptor for `--tls CERT KEY` with rustls's defaults on the `ring`
/// provider (what a peer library's user gets), offering `http/1.1` by ALPN.
pub fn tls_acceptor() -> Option<TlsAcceptor> {
    let (cert, key) = tls_files()?;
    let certs = rustls_pemfile::certs(&mut std::fs::read(&cert).expect("read cert").as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = rustls_pemfile::private_key(&mut std::fs::read(&key).expect("read key").as_slice())
        .expect("key PEM")
        .expect("a private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections forever on a multi-thread runtime (one worker per
/// core, as `tether serve`), running `handle` on each in its own task.
pub fn serve<F, Fut>(name: &str, handle: F)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static + Copy,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop(name, move |tcp| {
        tokio::spawn(handle(tcp));
    });
}

/// [`serve`] over TLS: each connection's TLS handshake runs in its task,
/// then `handle` on the TLS stream.
pub fn serve_tls<F, Fut>(name: &str, acceptor: TlsAcceptor, handle: F)
where
    F: Fn(TlsStream) -> Fut + Send + Sync + 'static + Copy,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop(&format!("{name} (TLS)"), move |tcp| {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                handle(tls).await;
            }
        });
    });
}

/// Bind `--listen` and hand every accepted TCP connection (no Nagle) to
/// `on_accept`.
fn accept_loop(name: &str, on_accept: impl Fn(TcpStream) + Send + 'static) {
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
                on_accept(tcp);
            }
        });
}

/// Read the request head and answer `101 Switching Protocols`.
/// Only what a benchmark client sends is supported; anything else is refused.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut buf).await?;
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
    io.write_all(response.as_bytes()).await?;
    // TLS holds what was written until flushed; TCP has nothing to flush.
    io.flush().await
}
