//! A WebSocket client in a tokio app: sends each line of stdin as a text
//! message and prints every message received, until either side closes.
//!
//! ```text
//! cargo run -p tether-ws --example client -- ws://127.0.0.1:3000/chat
//! ```

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> tether::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:3000/chat".into());
    let (ws, response) = ClientBuilder::new(&url)
        .protocol("chat.v1")
        .connect()
        .await?;
    if let Some(p) = response.headers().get("sec-websocket-protocol") {
        eprintln!("connected to {url} (subprotocol {p:?})");
    } else {
        eprintln!("connected to {url}");
    }
    let (mut tx, mut rx) = ws.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => tx.send(Message::text(line)).await?,
                None => break,
            },
            msg = rx.next() => match msg {
                Some(msg) => match msg?.as_text() {
                    Some(text) => println!("{text}"),
                    None => println!("(binary message)"),
                },
                None => return Ok(()),
            },
        }
    }
    // stdin ended: close, and print what arrives until the server's Close.
    tx.close().await?;
    while let Some(msg) = rx.next().await {
        if let Some(text) = msg?.as_text() {
            println!("{text}");
        }
    }
    Ok(())
}
