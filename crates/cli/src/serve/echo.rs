//! The echo endpoint: every text and binary message is sent back as received.
//!
//! Messages that are already buffered are echoed together and flushed once,
//! so pipelined clients get their answers in as few writes as possible.

use super::metrics::RouteMetrics;
use super::session::{close_with, wait_shutdown, Outcome, SHUTTING_DOWN};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tether::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Echo until the connection ends (or the server shuts down: 1001).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Outcome {
    let mut out = Outcome::default();
    // One shutdown future for the whole connection, not one per message.
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    let result: tether::Result<()> = async {
        loop {
            let next = tokio::select! {
                biased;
                m = ws.next() => m,
                _ = &mut stop => {
                    close_with(ws, &mut out, SHUTTING_DOWN).await;
                    return Ok(());
                }
            };
            let Some(msg) = next else { return Ok(()) };
            let mut msg = msg?;
            let (mut messages, mut bytes) = (0u64, 0u64);
            loop {
                if msg.is_data() {
                    messages += 1;
                    bytes += msg.len() as u64;
                    ws.feed(msg).await?;
                } else if let Message::Close(f) = &msg {
                    out.peer_closed(f);
                }
                match ws.next().now_or_never() {
                    Some(Some(next)) => msg = next?,
                    _ => break,
                }
            }
            ws.flush().await?;
            if messages > 0 {
                out.messages_in += messages;
                out.bytes_in += bytes;
                out.messages_out += messages;
                out.bytes_out += bytes;
                metrics.received(messages, bytes);
                metrics.sent(messages, bytes);
            }
        }
    }
    .await;
    if let Err(e) = result {
        out.failed(&e);
    }
    out.finish()
}
