//! Echo server on the `tether` library alone (no `tether serve` routing,
//! limits or logging), with the same loop as `tether serve`'s /echo: feed
//! every message already buffered, then flush once. Comparing it with
//! `tether serve` separates the library's cost from the application's.

use futures_util::{FutureExt, SinkExt, StreamExt};

fn main() {
    tether_bench_peers::serve("tether (library)", |tcp| async move {
        let Ok(mut ws) = tether::accept(tcp).await else {
            return;
        };
        while let Some(Ok(mut msg)) = ws.next().await {
            loop {
                if msg.is_data() && ws.feed(msg).await.is_err() {
                    return;
                }
                match ws.next().now_or_never() {
                    Some(Some(Ok(next))) => msg = next,
                    Some(Some(Err(_)) | None) => return,
                    None => break,
                }
            }
            if ws.flush().await.is_err() {
                return;
            }
        }
    });
}
