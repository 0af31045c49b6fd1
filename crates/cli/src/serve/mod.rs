//! `tether serve`: the server people run.
//!
//! One TCP listener; each connection's first request head is read with the
//! protocol core's bounded parser, then routed: WebSocket upgrades to their
//! endpoint, plain HTTP requests to the built-in pages. Every refused or
//! malformed request gets a real HTTP answer.

mod echo;

use crate::size::parse_size;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::proto::handshake::build_reject_response;
use tether::{Incoming, ServerBuilder, WebSocketConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// Options of `tether serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Largest message accepted (e.g. 1M, 64K, 16MiB); larger ones close the connection with 1009.
    #[arg(long, env = "TETHER_MAX_MESSAGE_SIZE", default_value = "1M", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Seconds a client may take to send its opening handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
}

/// Shared, read-only server state.
struct State {
    builder: ServerBuilder,
}

/// Run the server until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut config = WebSocketConfig::default();
    config.protocol.max_message_size = args.max_message_size;
    config.protocol.max_frame_size = args.max_message_size;
    config.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    let state = Arc::new(State {
        builder: ServerBuilder::new().config(config),
    });
    info!("tether serve listening on http://{addr} (WebSocket echo at ws://{addr}/echo)");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let state = state.clone();
                    tokio::spawn(async move { handle_connection(state, tcp, peer).await });
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => {
                info!("shutting down");
                return Ok(());
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn is_upgrade(req: &http::Request<()>) -> bool {
    req.headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
                })
                .unwrap_or(false)
        })
}

async fn handle_connection(state: Arc<State>, mut tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let (request, leftover) = match state.builder.read_http_request(&mut tcp).await {
        Ok(r) => r,
        Err(e) => {
            debug!(%peer, "bad request: {e}");
            return;
        }
    };
    let path = request.uri().path().to_owned();
    if !is_upgrade(&request) {
        let (status, body): (http::StatusCode, &[u8]) = match path.as_str() {
            "/healthz" => (http::StatusCode::OK, b"ok\n"),
            "/echo" => (
                http::StatusCode::UPGRADE_REQUIRED,
                b"this is a WebSocket endpoint: connect with a WebSocket client\n",
            ),
            _ => (http::StatusCode::NOT_FOUND, b"not found\n"),
        };
        let mut headers = http::HeaderMap::new();
        if status == http::StatusCode::UPGRADE_REQUIRED {
            headers.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            headers.insert(
                "sec-websocket-version",
                http::HeaderValue::from_static("13"),
            );
        }
        let _ = tcp
            .write_all(&build_reject_response(status, &headers, body))
            .await;
        let _ = tcp.shutdown().await;
        return;
    }
    let config = state.builder.get_config().clone();
    let incoming = match Incoming::from_request(tcp, request, leftover, config).await {
        Ok(i) => i,
        Err(e) => {
            info!(%peer, %path, "refused handshake: {e}");
            return;
        }
    };
    match path.as_str() {
        "/echo" => {
            let started = Instant::now();
            match incoming.accept(tether::Accept::default()).await {
                Ok(ws) => {
                    let summary = echo::run(ws).await;
                    info!(%peer, %path, duration_ms = started.elapsed().as_millis() as u64, "{summary}");
                }
                Err(e) => info!(%peer, %path, "handshake failed: {e}"),
            }
        }
        _ => {
            let _ = incoming
                .reject(tether::Reject::new(
                    http::StatusCode::NOT_FOUND,
                    "no WebSocket endpoint here\n",
                ))
                .await;
        }
    }
}

/// Drain a socket we are done with (used by tests of the module).
#[allow(dead_code)]
async fn drain<S: futures_util::Stream + Unpin>(mut s: S) {
    while s.next().await.is_some() {}
}
