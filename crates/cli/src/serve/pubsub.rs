//! `pubsub` routes: named channels over one connection, with a small JSON
//! protocol (one JSON object per text message).
//!
//! Client to server (`id` is optional and echoed in the answer):
//!
//! ```json
//! {"op": "subscribe",   "channel": "news", "id": 1}
//! {"op": "unsubscribe", "channel": "news", "id": 2}
//! {"op": "publish",     "channel": "news", "data": {"any": "json"}, "id": 3}
//! ```
//!
//! Server to client:
//!
//! ```json
//! {"op": "ack",     "id": 1, "channel": "news"}
//! {"op": "ack",     "id": 3, "channel": "news", "delivered": 4}
//! {"op": "error",   "id": 2, "error": "not subscribed to news"}
//! {"op": "message", "channel": "news", "data": {"any": "json"}}
//! ```
//!
//! A publish goes to every subscriber of the channel, the publisher
//! included if it is subscribed. Channel names are 1 to 128 characters
//! without control characters. With JWT auth, the token's `subscribe` and
//! `publish` claims (names, or prefixes ending in `*`) limit which channels
//! the client may use. A backend publishes with
//! `POST /api/publish` (bearer token), body `{"channel": "news", "data": ...}`.

use super::config::MAX_NAME;
use super::hub::{Hub, Member};
use super::metrics::RouteMetrics;
use super::policy::Grants;
use super::session::{hub_loop, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tether::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Subscribe {
        channel: String,
        #[serde(default)]
        id: Option<Value>,
    },
    Unsubscribe {
        channel: String,
        #[serde(default)]
        id: Option<Value>,
    },
    Publish {
        channel: String,
        #[serde(default)]
        data: Value,
        #[serde(default)]
        id: Option<Value>,
    },
}

/// Is this a usable channel name (1 to [`MAX_NAME`] bytes, no control
/// characters)?
pub fn valid_channel(c: &str) -> bool {
    !c.is_empty() && c.len() <= MAX_NAME && !c.chars().any(char::is_control)
}

/// Publish `data` on `channel`: encoded once, shared by every subscriber.
/// Returns how many subscribers it was queued for.
pub fn publish(hub: &Hub, channel: &str, data: &Value) -> usize {
    let text = format!(
        r#"{{"op":"message","channel":{},"data":{data}}}"#,
        Value::from(channel)
    );
    hub.publish(channel, &Message::text(text))
}

/// `{"op":"ack",...}` with `op` first (serde_json would sort the keys).
fn ack(id: &Option<Value>, channel: &str, delivered: Option<usize>) -> Message {
    let mut text = format!(r#"{{"op":"ack","channel":{}"#, Value::from(channel));
    if let Some(id) = id {
        text.push_str(&format!(r#","id":{id}"#));
    }
    if let Some(d) = delivered {
        text.push_str(&format!(r#","delivered":{d}"#));
    }
    text.push('}');
    Message::text(text)
}

fn error(id: &Option<Value>, msg: &str) -> Message {
    let mut text = format!(r#"{{"op":"error","error":{}"#, Value::from(msg));
    if let Some(id) = id {
        text.push_str(&format!(r#","id":{id}"#));
    }
    text.push('}');
    Message::text(text)
}

/// What a connection may do.
pub struct Rights<'a> {
    /// Its channel grants.
    pub grants: &'a Grants,
    /// Most channels it may be subscribed to at once.
    pub max_subscriptions: usize,
}

/// Handle one client message; the answer is queued to the client.
fn handle(member: &mut Member, rights: &Rights<'_>, msg: &Message) {
    let grants = rights.grants;
    let Some(text) = msg.as_text() else {
        member.send_self(error(
            &None,
            "binary messages are not part of the protocol; send JSON text",
        ));
        return;
    };
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            member.send_self(error(&None, &format!("bad request: {e}")));
            return;
        }
    };
    let reply = match req {
        Request::Subscribe { channel, id } => {
            if !valid_channel(&channel) {
                error(&id, "invalid channel name")
            } else if !grants.may_subscribe(&channel) {
                error(&id, &format!("not allowed to subscribe to {channel}"))
            } else if !member.is_in(&channel) && member.subscriptions() >= rights.max_subscriptions
            {
                error(
                    &id,
                    &format!(
                        "too many subscriptions: at most {} per connection (limits.max_subscriptions); unsubscribe first",
                        rights.max_subscriptions
                    ),
                )
            } else {
                member.join(&channel);
                ack(&id, &channel, None)
            }
        }
        Request::Unsubscribe { channel, id } => {
            if member.leave(&channel) {
                ack(&id, &channel, None)
            } else {
                error(&id, &format!("not subscribed to {channel}"))
            }
        }
        Request::Publish { channel, data, id } => {
            if !valid_channel(&channel) {
                error(&id, "invalid channel name")
            } else if !grants.may_publish(&channel) {
                error(&id, &format!("not allowed to publish to {channel}"))
            } else {
                let n = publish(member.hub(), &channel, &data);
                ack(&id, &channel, Some(n))
            }
        }
    };
    member.send_self(reply);
}

/// Serve the protocol until the connection ends.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    hub: &Arc<Hub>,
    rights: &Rights<'_>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Outcome {
    let mut member = hub.member();
    hub_loop(ws, &mut member, shutdown, metrics, |m, msg| {
        handle(m, rights, &msg)
    })
    .await
}

/// Publish simulated stock prices on `channel` once a second, forever.
pub async fn demo_ticker(hub: Arc<Hub>, channel: String) {
    let symbols = ["ACME", "GLOBEX", "INITECH", "HOOLI", "UMBRELLA"];
    let mut prices = [120.0f64, 45.5, 78.25, 310.0, 12.8];
    // xorshift: deterministic, good enough for a demo.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut quotes = Vec::with_capacity(symbols.len());
        for (sym, price) in symbols.iter().zip(prices.iter_mut()) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let step = ((seed % 2001) as f64 - 1000.0) / 100_000.0; // +-1%
            let old = *price;
            *price = (old * (1.0 + step)).max(0.01);
            quotes.push(json!({
                "symbol": sym,
                "price": (*price * 100.0).round() / 100.0,
                "change": ((*price - old) * 100.0).round() / 100.0,
            }));
        }
        if hub.count(&channel) > 0 {
            publish(&hub, &channel, &json!({"quotes": quotes}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hub::Next;
    use super::*;

    /// The next message in the member's own queue, as JSON.
    fn reply(m: &mut Member) -> Value {
        let Some(Next::Message(msg)) = m.try_next() else {
            panic!("expected a queued reply");
        };
        serde_json::from_str(msg.as_text().unwrap()).unwrap()
    }

    #[test]
    fn subscribe_publish_unsubscribe() {
        let hub = Arc::new(Hub::new(8));
        let mut m = hub.member();
        let grants = Grants::all();
        let all = Rights {
            grants: &grants,
            max_subscriptions: 8,
        };
        handle(
            &mut m,
            &all,
            &Message::text(r#"{"op":"subscribe","channel":"news","id":1}"#),
        );
        assert_eq!(reply(&mut m), json!({"op":"ack","channel":"news","id":1}));
        handle(
            &mut m,
            &all,
            &Message::text(r#"{"op":"publish","channel":"news","data":[1],"id":2}"#),
        );
        assert_eq!(
            reply(&mut m),
            json!({"op":"message","channel":"news","data":[1]})
        );
        assert_eq!(
            reply(&mut m),
            json!({"op":"ack","channel":"news","id":2,"delivered":1})
        );
        handle(
            &mut m,
            &all,
            &Message::text(r#"{"op":"unsubscribe","channel":"news"}"#),
        );
        assert_eq!(reply(&mut m)["op"], "ack");
        handle(
            &mut m,
            &all,
            &Message::text(r#"{"op":"unsubscribe","channel":"news","id":"x"}"#),
        );
        assert_eq!(
            reply(&mut m),
            json!({"op":"error","id":"x","error":"not subscribed to news"})
        );
    }

    #[test]
    fn bad_requests_and_denied_channels_get_errors() {
        let hub = Arc::new(Hub::new(8));
        let mut m = hub.member();
        let grants = Grants {
            subscribe: Some(vec!["public.*".into()]),
            publish: Some(vec![]),
            subject: None,
        };
        let limited = Rights {
            grants: &grants,
            max_subscriptions: 8,
        };
        handle(&mut m, &limited, &Message::text("nope"));
        assert_eq!(reply(&mut m)["op"], "error");
        handle(
            &mut m,
            &limited,
            &Message::text(r#"{"op":"subscribe","channel":"private"}"#),
        );
        assert_eq!(
            reply(&mut m)["error"],
            "not allowed to subscribe to private"
        );
        handle(
            &mut m,
            &limited,
            &Message::text(r#"{"op":"publish","channel":"public.a","data":1}"#),
        );
        assert_eq!(reply(&mut m)["error"], "not allowed to publish to public.a");
        handle(
            &mut m,
            &limited,
            &Message::text(r#"{"op":"subscribe","channel":""}"#),
        );
        assert_eq!(reply(&mut m)["error"], "invalid channel name");
    }
}
