//! Echo server on tokio-tungstenite, as in its `echo-server` example:
//! `accept_async`, then the read half forwarded into the write half
//! (`forward` feeds while messages are ready and flushes when none are).

use futures_util::{future, StreamExt, TryStreamExt};

fn main() {
    tether_bench_peers::serve("tokio-tungstenite", |tcp| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (write, read) = ws.split();
        let _ = read
            .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
            .forward(write)
            .await;
    });
}
