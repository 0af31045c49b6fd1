//! `pubsub` routes: named channels over one connection, with a small JSON
//! protocol (one JSON object per text message), documented in full in
//! `docs/pubsub-protocol.md`.
//!
//! Client to server (`id` is optional and echoed in the answer):
//!
//! ```json
//! {"op": "subscribe",   "channel": "news", "id": 1}
//! {"op": "subscribe",   "channel": "news", "since": {"epoch": "…", "offset": 41}}
//! {"op": "subscribe",   "channel": "news", "presence_events": true}
//! {"op": "unsubscribe", "channel": "news", "id": 2}
//! {"op": "publish",     "channel": "news", "data": {"any": "json"}, "id": 3}
//! {"op": "history",     "channel": "news", "limit": 10}
//! {"op": "presence",    "channel": "news"}
//! ```
//!
//! Server to client:
//!
//! ```json
//! {"op": "ack",     "channel": "news", "id": 1, "epoch": "…", "offset": 41}
//! {"op": "ack",     "channel": "news", "epoch": "…", "offset": 45, "recovered": true}
//! {"op": "ack",     "channel": "news", "id": 3, "delivered": 4, "epoch": "…", "offset": 46}
//! {"op": "error",   "id": 2, "error": "not subscribed to news"}
//! {"op": "message", "channel": "news", "offset": 46, "data": {"any": "json"}}
//! {"op": "history", "channel": "news", "epoch": "…", "offset": 46, "messages": [...]}
//! {"op": "presence","channel": "news", "clients": [{"client": "7", "user": "ann"}]}
//! {"op": "join",    "channel": "news", "client": "8", "user": null}
//! {"op": "leave",   "channel": "news", "client": "8", "user": null}
//! {"op": "reset",   "channel": "news", "epoch": "…", "offset": 0}
//! ```
//!
//! Every channel has a position: an epoch (random, new whenever the
//! channel's history may have been lost) and the offset of its last
//! message (1, 2, 3, … in publish order). A subscribe with `since` gets
//! exactly the messages after that position, then live ones, when the
//! channel still has them all (`recovered: true`); otherwise none of them
//! (`recovered: false`). Channel names are 1 to 128 bytes without control
//! characters. Clients publish only where the route's `client_publish` or
//! their JWT's `publish` claim allows (an opaque token allows all). A
//! backend publishes with `POST /api/publish` (bearer token), body
//! `{"channel": "news", "data": ..., "idempotency_key": "..."}`.

use super::close::Summary;
use super::cluster::EngineError;
use super::config::MAX_NAME;
use super::engine::{Engine, Interest, Op, Present};
use super::hub::{FedJoin, History, Hub, Joined, Member, Position, Published};
use super::metrics::RouteMetrics;
use super::policy::Grants;
use super::presence;
use super::session::{hub_loop, Apply, Pending, Work};
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
        since: Option<Since>,
        /// Receive the channel's join/leave events (routes with presence).
        #[serde(default)]
        presence_events: bool,
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
    History {
        channel: String,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        id: Option<Value>,
    },
    Presence {
        channel: String,
        #[serde(default)]
        id: Option<Value>,
    },
}

/// A position to resume from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    epoch: String,
    offset: u64,
}

/// Is this a usable channel name (1 to [`MAX_NAME`] bytes, no control
/// characters)?
pub fn valid_channel(c: &str) -> bool {
    !c.is_empty() && c.len() <= MAX_NAME && !c.chars().any(char::is_control)
}

/// A channel message: `name` is the channel as a JSON string, `data` the
/// published JSON text.
pub fn channel_message(name: &str, offset: u64, data: &str) -> Message {
    Message::text(format!(
        r#"{{"op":"message","channel":{name},"offset":{offset},"data":{data}}}"#
    ))
}

/// The `reset` a subscriber gets when `channel`'s continuity was lost: it
/// carries on from `epoch`/`offset`.
pub fn reset_message(channel: &str, epoch: &str, offset: u64) -> Message {
    Reply::new("reset")
        .channel(channel)
        .field("epoch", Value::from(epoch))
        .field("offset", offset)
        .done()
}

/// Publish `data` on `channel`: encoded once with its offset, shared by
/// every subscriber, kept in the channel's history.
pub fn publish(
    engine: &dyn Engine,
    channel: &str,
    data: &Value,
    idempotency_key: Option<&str>,
) -> Op<Result<Published, EngineError>> {
    engine.publish(channel, &data.to_string(), idempotency_key)
}

/// A JSON object written field by field, in order (serde_json would sort
/// the keys, and `op` reads best first).
struct Reply(String);

impl Reply {
    fn new(op: &str) -> Reply {
        Reply(format!(r#"{{"op":"{op}""#))
    }

    fn field(mut self, key: &str, value: impl std::fmt::Display) -> Reply {
        self.0.push_str(&format!(r#","{key}":{value}"#));
        self
    }

    fn id(self, id: &Option<Value>) -> Reply {
        match id {
            Some(id) => self.field("id", id),
            None => self,
        }
    }

    fn channel(self, channel: &str) -> Reply {
        self.field("channel", Value::from(channel))
    }

    fn done(mut self) -> Message {
        self.0.push('}');
        Message::text(self.0)
    }
}

fn error(id: &Option<Value>, msg: &str) -> Message {
    Reply::new("error")
        .field("error", Value::from(msg))
        .id(id)
        .done()
}

fn subscribed(id: &Option<Value>, channel: &str, joined: &Joined) -> Message {
    let mut r = Reply::new("ack")
        .channel(channel)
        .id(id)
        .field("epoch", Value::from(&*joined.position.epoch))
        .field("offset", joined.position.offset);
    if let Some(recovered) = joined.recovered {
        r = r.field("recovered", recovered);
    }
    r.done()
}

/// The reply to a publish (`delivered`, and the position it got).
fn published(id: &Option<Value>, channel: &str, p: &Published) -> Message {
    let mut r = Reply::new("ack")
        .channel(channel)
        .id(id)
        .field("delivered", p.delivered);
    if let Some(pos) = &p.position {
        r = r
            .field("epoch", Value::from(&*pos.epoch))
            .field("offset", pos.offset);
    }
    r.done()
}

/// `"messages":[...]` and the position of a channel's history.
pub fn history_fields(h: &History) -> String {
    let mut out = String::new();
    if let Some(pos) = &h.position {
        out.push_str(&format!(
            r#""epoch":{},"offset":{},"#,
            Value::from(&*pos.epoch),
            pos.offset
        ));
    } else {
        out.push_str(r#""offset":0,"#);
    }
    out.push_str(r#""messages":["#);
    for (i, m) in h.messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.as_text().unwrap_or("null"));
    }
    out.push(']');
    out
}

/// `"clients":[...]` of a channel's presence.
pub fn presence_fields(clients: Vec<Present>) -> String {
    let clients: Vec<Value> = clients
        .into_iter()
        .map(|(client, user)| json!({"client": client, "user": user.as_deref()}))
        .collect();
    format!(r#""clients":{}"#, Value::from(clients))
}

/// A reply made when an engine call completes (`Op::Done`: now).
fn when_done<T: Send + 'static>(
    op: Op<T>,
    reply: impl FnOnce(T) -> Message + Send + 'static,
) -> Result<Message, Pending> {
    match op {
        Op::Done(v) => Ok(reply(v)),
        Op::Wait(f) => Err(Box::pin(async move {
            let v = f.await;
            let apply: Apply = Box::new(move |m: &mut Member| m.send_self(reply(v)));
            apply
        })),
    }
}

/// What a connection may do, and where its channels live.
pub struct Rights<'a> {
    /// Its channel grants.
    pub grants: &'a Grants,
    /// Most channels it may be subscribed to at once.
    pub max_subscriptions: usize,
    /// Largest history reply, in bytes of messages.
    pub max_reply: usize,
    /// The route's engine.
    pub engine: &'a Arc<dyn Engine>,
}

/// An answer known now: queued at once when nothing is pending, else
/// behind the answers still awaited.
fn answer(member: &mut Member, busy: bool, reply: Message) -> Work {
    if busy {
        let apply: Apply = Box::new(move |m: &mut Member| m.send_self(reply));
        Work::Concurrent(Box::pin(std::future::ready(apply)))
    } else {
        member.send_self(reply);
        Work::Done
    }
}

/// Handle one client message; the answer is queued to the client, now or
/// (with a shared engine) when the returned work completes.
///
/// While earlier requests of the connection are `busy` (pending engine
/// round trips), publishes, history and presence reads start at once, so
/// a publisher is not held to one round trip per message; a subscribe or
/// unsubscribe depends on the subscriptions those requests leave, so it
/// waits until they have completed, and nothing is read while a subscribe
/// is pending.
fn handle(member: &mut Member, rights: &Rights<'_>, msg: &Message, busy: bool) -> Work {
    let grants = rights.grants;
    let Some(text) = msg.as_text() else {
        return answer(
            member,
            busy,
            error(
                &None,
                "binary messages are not part of the protocol; send JSON text",
            ),
        );
    };
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return answer(member, busy, error(&None, &format!("bad request: {e}"))),
    };
    if busy && matches!(req, Request::Subscribe { .. } | Request::Unsubscribe { .. }) {
        return Work::Deferred(msg.clone());
    }
    let retention = member.hub().retention().clone();
    let engine = rights.engine;
    let reply = match req {
        Request::Subscribe {
            channel,
            since,
            presence_events,
            id,
        } => {
            let fresh = !member.is_in(&channel);
            let count = if retention.presence {
                presence::subscriptions(member)
            } else {
                member.subscriptions()
            };
            if !valid_channel(&channel) {
                error(&id, "invalid channel name")
            } else if !grants.may_subscribe(&channel) {
                error(&id, &format!("not allowed to subscribe to {channel}"))
            } else if presence_events && !retention.presence {
                error(
                    &id,
                    "this route keeps no presence, so it has no presence events (set `presence = true` on the route)",
                )
            } else if fresh && count >= rights.max_subscriptions {
                error(
                    &id,
                    &format!(
                        "too many subscriptions: at most {} per connection (limits.max_subscriptions); unsubscribe first",
                        rights.max_subscriptions
                    ),
                )
            } else if engine.local() || member.is_in(&channel) {
                let since = since.as_ref().map(|s| (s.epoch.as_str(), s.offset));
                member.subscribe(&channel, since, |joined| subscribed(&id, &channel, joined));
                presence::subscribed(member, &channel, fresh, presence_events);
                return Work::Done;
            } else {
                return Work::Exclusive(subscribe_fed(
                    member,
                    engine.clone(),
                    channel,
                    since,
                    id,
                    presence_events,
                ));
            }
        }
        Request::Unsubscribe { channel, id } => {
            // Internal feeds (not valid channel names) are left alone.
            if valid_channel(&channel) && member.leave(&channel) {
                presence::unsubscribed(member, &channel);
                Reply::new("ack").channel(&channel).id(&id).done()
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
                let op = publish(&**engine, &channel, &data, None);
                match when_done(op, move |r| match r {
                    Ok(p) => published(&id, &channel, &p),
                    Err(e) => error(&id, &format!("publish to {channel} failed: {e}")),
                }) {
                    Ok(reply) => reply,
                    Err(pending) => return Work::Concurrent(pending),
                }
            }
        }
        Request::History { channel, limit, id } => {
            if !valid_channel(&channel) {
                error(&id, "invalid channel name")
            } else if retention.history_size == 0 {
                error(
                    &id,
                    "this route keeps no history (set `history_size` on the route)",
                )
            } else if !grants.may_subscribe(&channel) {
                error(&id, &format!("not allowed to subscribe to {channel}"))
            } else {
                let limit = limit.unwrap_or(usize::MAX).min(retention.history_size);
                let op = engine.history(&channel, limit, rights.max_reply);
                match when_done(op, move |r| match r {
                    Ok(h) => {
                        let mut r = Reply::new("history").channel(&channel).id(&id).0;
                        r.push(',');
                        r.push_str(&history_fields(&h));
                        r.push('}');
                        Message::text(r)
                    }
                    Err(e) => error(&id, &format!("history of {channel} failed: {e}")),
                }) {
                    Ok(reply) => reply,
                    Err(pending) => return Work::Concurrent(pending),
                }
            }
        }
        Request::Presence { channel, id } => {
            if !valid_channel(&channel) {
                error(&id, "invalid channel name")
            } else if !retention.presence {
                error(
                    &id,
                    "this route keeps no presence (set `presence = true` on the route)",
                )
            } else if !grants.may_subscribe(&channel) {
                error(&id, &format!("not allowed to subscribe to {channel}"))
            } else {
                let op = engine.presence(&channel);
                match when_done(op, move |r| match r {
                    Ok(clients) => {
                        let mut r = Reply::new("presence").channel(&channel).id(&id).0;
                        r.push(',');
                        r.push_str(&presence_fields(clients));
                        r.push('}');
                        Message::text(r)
                    }
                    Err(e) => error(&id, &format!("presence of {channel} failed: {e}")),
                }) {
                    Ok(reply) => reply,
                    Err(pending) => return Work::Concurrent(pending),
                }
            }
        }
    };
    answer(member, busy, reply)
}

/// Longest wait for the node to receive what a history read returned.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Subscribe through a shared engine: hold the channel's group open,
/// register with the engine (and read its history when the ring cannot
/// resume from `since`), then join at the position the engine gave.
fn subscribe_fed(
    member: &mut Member,
    engine: Arc<dyn Engine>,
    channel: String,
    since: Option<Since>,
    id: Option<Value>,
    presence_events: bool,
) -> Pending {
    let joining = member.hub().joining(&channel);
    let client = member.hub().retention().presence.then_some(member.id);
    let user = member.user().map(|u| u.to_string());
    Box::pin(async move {
        let delivered = match engine.subscribe(&channel).get().await {
            Ok(p) => p,
            Err(e) => {
                let msg = error(&id, &format!("subscribe to {channel} failed: {e}"));
                let apply: Apply = Box::new(move |m: &mut Member| m.send_self(msg));
                return apply;
            }
        };
        let interest = Interest::new(engine.clone(), &channel, client);
        let since = match since {
            None => None,
            Some(s) => {
                let since = Position {
                    epoch: s.epoch.into(),
                    offset: s.offset,
                };
                let recovery = if joining.resumable(&since) {
                    None
                } else {
                    match engine.recover(&channel, &since, &delivered).get().await {
                        Ok(r) => {
                            // The ring continues the replay: wait (briefly)
                            // until it has what the read had.
                            let deadline = tokio::time::Instant::now() + CATCH_UP;
                            while !joining.caught_up(&delivered, &r.top)
                                && tokio::time::Instant::now() < deadline
                            {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Some(r)
                        }
                        Err(e) => {
                            // Not a `recovered: false`: the history may
                            // well be there; the client tries again.
                            drop(interest);
                            let msg = error(&id, &format!("subscribe to {channel} failed: {e}"));
                            let apply: Apply = Box::new(move |m: &mut Member| m.send_self(msg));
                            return apply;
                        }
                    }
                };
                Some((since, recovery))
            }
        };
        let apply: Apply = Box::new(move |m: &mut Member| {
            if let Some(client) = client {
                engine.presence_join(&channel, client, user.as_deref());
            }
            let join = FedJoin {
                delivered,
                since,
                interest,
            };
            let fresh = !m.is_in(&channel);
            m.subscribe_fed(joining, join, |joined| subscribed(&id, &channel, joined));
            presence::subscribed(m, &channel, fresh, presence_events);
        });
        apply
    })
}

/// Serve the protocol until the connection ends.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    hub: &Arc<Hub>,
    rights: &Rights<'_>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Summary {
    let user = rights.grants.subject.as_deref().map(Arc::from);
    let mut member = hub.member_as(user);
    let outcome = hub_loop(ws, &mut member, shutdown, metrics, |m, msg, busy| {
        handle(m, rights, &msg, busy)
    })
    .await;
    presence::departed(&mut member);
    outcome
}

/// Publish simulated stock prices on `channel` once a second, forever.
pub async fn demo_ticker(hub: Arc<Hub>, engine: Arc<dyn Engine>, channel: String) {
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
            let _ = publish(&*engine, &channel, &json!({"quotes": quotes}), None)
                .get()
                .await;
        }
    }
}

#[cfg(test)]
mod tests;
