//! An axum app with a WebSocket chat: every text message sent to `/chat` is
//! relayed to everyone connected, the sender included.
//!
//! ```text
//! cargo run -p tether-ws --features axum --example axum_chat -- 127.0.0.1:3000
//! cargo run -p tether-ws --example client -- ws://127.0.0.1:3000/chat   (in two terminals)
//! ```
//!
//! `/chat` speaks the `chat.v1` subprotocol when the client offers it,
//! refuses pages from other origins (403), takes messages up to 64 KiB and
//! agrees to permessage-deflate when offered.

use axum::extract::State;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tether::axum::WebSocketUpgrade;
use tether::hyper::HyperWebSocket;
use tether::proto::deflate::DeflateConfig;
use tether::{Message, OriginPolicy, Reject};
use tokio::sync::broadcast;

/// The application: `/` says how to connect, `/chat` is the chat room.
pub fn app() -> Router {
    let (room, _) = broadcast::channel::<String>(256);
    Router::new()
        .route(
            "/",
            get(|| async { Html("Connect a WebSocket to /chat\n") }),
        )
        .route("/chat", get(chat))
        .with_state(room)
}

async fn chat(
    State(room): State<broadcast::Sender<String>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Reject> {
    let upgrade = upgrade
        .check_origin(&OriginPolicy::SameOrigin)?
        .protocols(["chat.v1"])
        .max_message_size(64 << 10)
        .deflate(DeflateConfig::default());
    Ok(upgrade.on_upgrade(move |ws| member(ws, room)))
}

/// One member: what it says goes to the room, what the room says goes to it.
async fn member(ws: HyperWebSocket, room: broadcast::Sender<String>) {
    let mut heard = room.subscribe();
    let (mut tx, mut rx) = ws.split();
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(msg)) => {
                    if let Some(text) = msg.as_text() {
                        let _ = room.send(text.to_owned());
                    }
                }
                _ => break,
            },
            line = heard.recv() => match line {
                Ok(line) => {
                    if tx.send(Message::text(line)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    let _ = tx.close().await;
}

#[allow(dead_code)] // the integration tests include this file for `app`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat on ws://{}/chat", listener.local_addr()?);
    axum::serve(listener, app()).await
}
