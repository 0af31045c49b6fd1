//! The echo endpoint: every text and binary message is sent back as received.
//!
//! Messages that are already buffered are echoed together and flushed once,
//! so pipelined clients get their answers in as few writes as possible.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tether::WebSocket;
use tokio::io::{AsyncRead, AsyncWrite};

/// Echo until the connection ends; returns a one-line summary for the log.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) -> String {
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let result: tether::Result<()> = async {
        while let Some(msg) = ws.next().await {
            let mut msg = msg?;
            loop {
                if msg.is_data() {
                    messages += 1;
                    bytes += msg.len() as u64;
                    ws.feed(msg).await?;
                }
                match ws.next().now_or_never() {
                    Some(Some(next)) => msg = next?,
                    _ => break,
                }
            }
            ws.flush().await?;
        }
        Ok(())
    }
    .await;
    let close = match ws.peer_close() {
        Some(f) => format!("peer closed with {f}"),
        None => "peer sent no close code".to_owned(),
    };
    match result {
        Ok(()) => format!("echo done: {messages} messages, {bytes} bytes; {close}"),
        Err(e) => format!(
            "echo ended: {e}; {messages} messages, {bytes} bytes (close code {})",
            e.close_code()
        ),
    }
}
