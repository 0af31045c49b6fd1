//! The echo endpoint: every text and binary message is sent back as received.
//!
//! The library's [`WebSocket::poll_echo`] does the work: messages that are
//! already buffered are echoed together and flushed once, so pipelined
//! clients get their answers in as few writes as possible. This route adds
//! the server's shutdown (1001) and its traffic metrics, counted per batch.

use super::close::{close_with, CloseReason, Summary};
use super::metrics::RouteMetrics;
use super::shutdown::wait_shutdown;
use tether::{Echoed, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Echo until the connection ends (or the server shuts down: 1001).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Summary {
    let mut out = Summary::default();
    // One shutdown future for the whole connection, not one per message.
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    let mut echoed = Echoed::default();
    // What the metrics have been told so far.
    let mut counted = (0u64, 0u64);
    let echo = std::future::poll_fn(|cx| {
        let polled = ws.poll_echo(cx, &mut echoed);
        let (messages, bytes) = (echoed.messages - counted.0, echoed.bytes - counted.1);
        if messages > 0 {
            metrics.received(messages, bytes);
            metrics.sent(messages, bytes);
            counted = (echoed.messages, echoed.bytes);
        }
        polled
    });
    let result = tokio::select! {
        biased;
        r = echo => r,
        _ = &mut stop => {
            close_with(ws, &mut out, CloseReason::Shutdown).await;
            Ok(())
        }
    };
    out.messages_in += echoed.messages;
    out.bytes_in += echoed.bytes;
    out.messages_out += echoed.messages;
    out.bytes_out += echoed.bytes;
    if let Some(f) = &echoed.peer_close {
        out.peer_closed(f);
    }
    if let Err(e) = result {
        out.failed(&e);
    }
    out.finish()
}
