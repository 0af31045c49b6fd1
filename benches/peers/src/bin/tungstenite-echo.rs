//! Echo server on tokio-tungstenite, as in its `echo-server` example:
//! `accept_async`, then the read half forwarded into the write half
//! (`forward` feeds while messages are ready and flushes when none are).
//! With `--tls CERT KEY`, over tokio-rustls (tokio-tungstenite's TLS of
//! choice on the `rustls` side).

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let Ok(ws) = tokio_tungstenite::accept_async(io).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

fn main() {
    let name = "tokio-tungstenite";
    match tether_bench_peers::tls_acceptor() {
        None => tether_bench_peers::serve(name, echo::<tokio::net::TcpStream>),
        Some(tls) => {
            tether_bench_peers::serve_tls(name, tls, echo::<tether_bench_peers::TlsStream>)
        }
    }
}
