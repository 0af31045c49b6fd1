//! Echo server on the `tether` library alone (no `tether serve` routing,
//! limits or logging), with the same loop as `tether serve`'s /echo
//! (`WebSocket::echo`: echo every message already buffered, then flush
//! once). Comparing it with `tether serve` separates the library's cost
//! from the application's. With `--tls CERT KEY`, over the library's own
//! server TLS (`tether::tls::acceptor_from_pem`).

use tokio::io::{AsyncRead, AsyncWrite};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    if let Ok(mut ws) = tether::accept(io).await {
        let _ = ws.echo().await;
    }
}

fn main() {
    let name = "tether (library)";
    match tether_bench_peers::tls_files() {
        None => tether_bench_peers::serve(name, echo::<tokio::net::TcpStream>),
        Some((cert, key)) => {
            let acceptor = tether::tls::acceptor_from_pem(&cert, &key).expect("--tls CERT KEY");
            tether_bench_peers::serve_tls(name, acceptor, echo::<tether_bench_peers::TlsStream>)
        }
    }
}
