//! Reading and writing a client WebSocket in tests, each read bounded in
//! time.

use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tether::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// The next text message (pings and pongs skipped); panics on anything
/// else or after 10 s.
pub async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("no error");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next text message, parsed as JSON.
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

/// Send `v` as a text message.
pub async fn send_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The peer's Close frame (code, reason; 1005 for none), reading past
/// data; panics on an error, on the end without a Close, or after 20 s.
pub async fn close_of<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> (u16, String) {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("closed within 20 s");
        match item {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.as_u16(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before the close frame: {e}"),
            None => panic!("ended without a close frame"),
        }
    }
}
