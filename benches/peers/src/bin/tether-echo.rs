//! Echo server on the `tether` library alone (no `tether serve` routing,
//! limits or logging), with the same loop as `tether serve`'s /echo
//! (`WebSocket::echo`: echo every message already buffered, then flush
//! once). Comparing it with `tether serve` separates the library's cost
//! from the application's.

fn main() {
    tether_bench_peers::serve("tether (library)", |tcp| async move {
        if let Ok(mut ws) = tether::accept(tcp).await {
            let _ = ws.echo().await;
        }
    });
}
