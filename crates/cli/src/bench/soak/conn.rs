//! One soak connection from open to end, by kind, and the run's tallies.
//!
//! Every connection records how it ended twice: what the generator saw
//! (the code of the Close it received, `reset` for a socket it dropped,
//! `abnormal` for a failure) and, when that determines it, the close code
//! the server must have counted: a completed closing handshake is counted
//! by the server under the code of the Close it sent (it echoes ours, or
//! it closed first with its own), a reset by the client under 1006. A
//! reset of a slow reader, a codeless Close and a failure leave it unknown.

use super::super::stats::{CloseCodes, Errors};
use super::{Kind, Targets};
use bytes::Bytes;
use futures_util::StreamExt;
use rand::rngs::SmallRng;
use rand::RngExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tether::{CloseCode, CloseFrame, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

/// Longest a single send may wait before the connection counts as failed
/// (slow-reader floods use their own, shorter, limit).
const SEND_LIMIT: Duration = Duration::from_secs(10);
/// Closing handshake of a slow reader: it first reads what piled up.
pub const SLOW_CLOSE_LIMIT: Duration = Duration::from_secs(30);
/// A flooding slow reader stops sending when one send waits this long...
const FLOOD_STALL: Duration = Duration::from_secs(1);
/// ...or after this many bytes.
const FLOOD_BYTES: usize = 4 << 20;
/// Payload of a flooding message.
const FLOOD_MESSAGE: usize = 64 << 10;

/// Counters every connection of the run adds to.
#[derive(Default)]
pub struct Tally {
    /// Connection attempts.
    pub attempts: AtomicU64,
    /// WebSocket connections established, by kind.
    pub connected: [AtomicU64; Kind::ALL.len()],
    /// Open now (generator side).
    pub open: AtomicU64,
    /// Handshakes the server refused, by HTTP status.
    pub rejected: Mutex<BTreeMap<u16, u64>>,
    /// Data messages sent and received.
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Echoes (echo, exec) that did not match what was sent.
    pub mismatches: AtomicU64,
    /// Pub/sub `error` replies.
    pub pubsub_errors: AtomicU64,
    /// How connections ended, as the generator saw it.
    pub seen: CloseCodes,
    /// The code the server must have counted, where that is determined.
    pub expected: Mutex<BTreeMap<u16, u64>>,
    /// Connections whose server-side code is not determined.
    pub undetermined: AtomicU64,
    /// Failures, with examples.
    pub errors: Errors,
}

impl Tally {
    /// All WebSocket connections established.
    pub fn connected_total(&self) -> u64 {
        self.connected.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn record(&self, end: End) {
        let (label, expected) = match end {
            End::Closed(Some(code)) => (code.to_string(), Some(code)),
            End::Closed(None) => ("none".to_owned(), None),
            End::Reset { determined } => ("reset".to_owned(), determined.then_some(1006)),
            End::Failed(e) => {
                self.errors.record(e);
                ("abnormal".to_owned(), None)
            }
        };
        self.seen.record(&label);
        match expected {
            Some(code) => {
                *lock(&self.expected).entry(code).or_default() += 1;
            }
            None => {
                self.undetermined.fetch_add(1, Relaxed);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a connection ended.
enum End {
    /// The closing handshake completed; the code of the server's Close.
    Closed(Option<u16>),
    /// The generator dropped the socket; `determined` when the server had
    /// no reason to close it first (it then counts 1006).
    Reset { determined: bool },
    /// Anything else (error text).
    Failed(String),
}

/// One slot's state: it runs connections one after another until the deadline.
pub struct Slot<'a> {
    pub id: usize,
    pub rng: SmallRng,
    pub targets: &'a Targets,
    pub tally: &'a Tally,
    pub deadline: Instant,
    pub seq: u64,
}

impl Slot<'_> {
    /// Open and run one connection of `kind` for up to `lifetime`.
    pub async fn run_one(&mut self, kind: Kind, lifetime: Duration) {
        let until = (Instant::now() + lifetime).min(self.deadline);
        // Slow readers flood an echo, sit on the busy channel or in a room;
        // resets happen on echo, in rooms or (one in six) in exec sessions,
        // as a reset (flavour 0) or mid-frame (1).
        let flavour = self.rng.random_range(0..2u8);
        let route = match (kind, self.rng.random_range(0..6u8)) {
            (Kind::Echo, _) | (Kind::Slow, 0..=1) => Route::Echo,
            (Kind::Pubsub, _) | (Kind::Slow, 2..=3) => Route::Pubsub,
            (Kind::Room, _) | (Kind::Slow, _) => Route::Room,
            (Kind::Exec, _) | (Kind::Reset, 0) => Route::Exec,
            (Kind::Reset, 1..=3) => Route::Echo,
            (Kind::Reset, _) => Route::Room,
        };
        let url = match route {
            Route::Echo => self.targets.echo.clone(),
            Route::Room => {
                let r = self.rng.random_range(0..self.targets.rooms.max(1));
                self.targets.room.replace("{room}", &format!("soak-{r}"))
            }
            Route::Pubsub => self.targets.pubsub.clone(),
            Route::Exec => self.targets.exec.clone(),
        };
        self.tally.attempts.fetch_add(1, Relaxed);
        let Some(mut ws) = self.connect(&url).await else {
            return;
        };
        self.tally.connected[kind as usize].fetch_add(1, Relaxed);
        self.tally.open.fetch_add(1, Relaxed);
        let end = match kind {
            Kind::Slow => self.slow(&mut ws, route, until).await,
            _ => {
                let mut echo = Echoed::new(self.id, route == Route::Exec);
                let mut room = Room(self.id);
                let mut pubsub = Pubsub::new(self.targets, &mut self.rng);
                let script: &mut dyn Script = match route {
                    Route::Echo | Route::Exec => &mut echo,
                    Route::Room => &mut room,
                    Route::Pubsub => &mut pubsub,
                };
                match self.talk(&mut ws, script, until).await {
                    Some(end) => end,
                    None if kind == Kind::Reset => drop_socket(&ws, flavour == 1),
                    None => close_normally(&mut ws, self.targets.config.close_timeout).await,
                }
            }
        };
        self.tally.open.fetch_sub(1, Relaxed);
        self.tally.record(end);
    }

    async fn connect(&mut self, url: &str) -> Option<Ws> {
        let builder = tether::ClientBuilder::new(url)
            .config(self.targets.config.clone())
            .connect_timeout(Duration::from_secs(10));
        let connected = {
            let _permit = self
                .targets
                .connecting
                .acquire()
                .await
                .expect("never closed");
            builder.connect().await
        };
        match connected {
            Ok((ws, _)) => Some(ws),
            Err(e) => {
                if let Some(s) = e.refused_status() {
                    *lock(&self.tally.rejected).entry(s.as_u16()).or_default() += 1;
                } else {
                    self.tally.errors.record(format!("connect: {e}"));
                }
                // Do not hammer a server that refuses.
                tokio::time::sleep(Duration::from_millis(500)).await;
                None
            }
        }
    }

    /// The conversation: `None` when `until` came with the connection open.
    async fn talk(&mut self, ws: &mut Ws, script: &mut dyn Script, until: Instant) -> Option<End> {
        for m in script.opening() {
            if let Err(end) = self.send(ws, m).await {
                return Some(end);
            }
        }
        let mut next = Instant::now() + self.gap();
        loop {
            let event = tokio::select! {
                m = ws.next() => Some(m),
                _ = tokio::time::sleep_until(next.into()) => None,
                _ = tokio::time::sleep_until(until.into()) => return None,
            };
            match event {
                None => {
                    next += self.gap();
                    self.seq += 1;
                    if let Some(m) = script.next(&mut self.rng, self.seq) {
                        if let Err(end) = self.send(ws, m).await {
                            return Some(end);
                        }
                    }
                }
                Some(Some(Ok(Message::Close(frame)))) => {
                    return Some(peer_closed(ws, frame, self.targets.config.close_timeout).await)
                }
                Some(Some(Ok(m))) if m.is_data() => {
                    self.tally.received.fetch_add(1, Relaxed);
                    match script.received(&m) {
                        Heard::Fine => {}
                        Heard::Mismatch => {
                            self.tally.mismatches.fetch_add(1, Relaxed);
                        }
                        Heard::Error(e) => {
                            self.tally.pubsub_errors.fetch_add(1, Relaxed);
                            self.tally.errors.record(e);
                        }
                    }
                }
                Some(Some(Ok(_))) => {}
                Some(Some(Err(e))) => return Some(End::Failed(e.to_string())),
                Some(None) => return Some(End::Failed("ended without a Close".into())),
            }
        }
    }

    async fn send(&self, ws: &mut Ws, m: Message) -> Result<(), End> {
        match tokio::time::timeout(SEND_LIMIT, ws.send(m)).await {
            Ok(Ok(())) => {
                self.tally.sent.fetch_add(1, Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(End::Failed(format!("send: {e}"))),
            Err(_) => Err(End::Failed(format!("send: blocked for {SEND_LIMIT:?}"))),
        }
    }

    /// The time to the next message: uniform around the mean interval.
    fn gap(&mut self) -> Duration {
        self.targets
            .interval
            .mul_f64(self.rng.random_range(0.2..1.8))
    }

    /// Stop reading: flood an echo until the server stops taking more,
    /// subscribe to the busy channel, or sit in a room; at the end, either
    /// drop the socket or read what piled up and close.
    async fn slow(&mut self, ws: &mut Ws, route: Route, until: Instant) -> End {
        if route == Route::Pubsub {
            let subscribe = json!({"op": "subscribe", "channel": HOT_CHANNEL});
            if let Err(end) = self.send(ws, Message::text(subscribe.to_string())).await {
                return end;
            }
        }
        if route == Route::Echo {
            let payload = Message::Binary(Bytes::from(vec![0x5a; FLOOD_MESSAGE]));
            let mut sent = 0;
            while sent < FLOOD_BYTES && Instant::now() < until {
                match tokio::time::timeout(FLOOD_STALL, ws.send(payload.clone())).await {
                    Ok(Ok(())) => {
                        self.tally.sent.fetch_add(1, Relaxed);
                        sent += FLOOD_MESSAGE;
                    }
                    Ok(Err(e)) => return End::Failed(format!("flood: {e}")),
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep_until(until.into()).await;
        if self.rng.random_bool(0.5) {
            let _ = drop_socket(ws, false);
            // The server may have given up on it first.
            return End::Reset { determined: false };
        }
        close_normally(ws, SLOW_CLOSE_LIMIT).await
    }
}

/// Which route a connection uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Echo,
    Room,
    Pubsub,
    Exec,
}

/// Make dropping `ws` abrupt: a reset (SO_LINGER 0), or, `mid_frame`,
/// the start of a frame that never ends (a masked binary frame announcing
/// 125 bytes, 10 of them sent) before the socket goes.
fn drop_socket(ws: &Ws, mid_frame: bool) -> End {
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        if mid_frame {
            let mut partial = vec![0x82, 0x80 | 125, 1, 2, 3, 4];
            partial.extend_from_slice(&[0u8; 10]);
            let _ = tcp.try_write(&partial);
        } else {
            let _ = tcp.set_zero_linger();
        }
    }
    End::Reset { determined: true }
}

/// The channel the HTTP publisher keeps busy, where slow readers sit.
pub const HOT_CHANNEL: &str = "soak-hot";

/// Close with 1000 and wait for the server's Close (bounded).
async fn close_normally(ws: &mut Ws, limit: Duration) -> End {
    let frame = Some(CloseFrame::new(CloseCode::NORMAL, ""));
    match tokio::time::timeout(limit, ws.close(frame)).await {
        Ok(Ok(())) => match ws.peer_close() {
            Some(f) => End::Closed(Some(f.code.as_u16())),
            None => End::Closed(None),
        },
        Ok(Err(e)) => End::Failed(format!("close: {e}")),
        Err(_) => End::Failed(format!("close: no Close from the server within {limit:?}")),
    }
}

/// The server closed first: complete the handshake.
async fn peer_closed(ws: &mut Ws, frame: Option<CloseFrame>, limit: Duration) -> End {
    let _ = tokio::time::timeout(limit, ws.close(None)).await;
    End::Closed(frame.map(|f| f.code.as_u16()))
}

/// What a received message meant.
enum Heard {
    Fine,
    Mismatch,
    Error(String),
}

/// What a connection of one kind sends and expects.
trait Script: Send {
    /// Messages sent right after connecting.
    fn opening(&mut self) -> Vec<Message> {
        Vec::new()
    }
    /// The next message to send (number `seq` of the slot), if any.
    fn next(&mut self, rng: &mut SmallRng, seq: u64) -> Option<Message>;
    /// A data message arrived.
    fn received(&mut self, m: &Message) -> Heard;
}

/// Echo and exec (`cat`): every message comes back, in order.
struct Echoed {
    slot: usize,
    /// Lines for a line-mode program: no newline inside a message.
    lines: bool,
    waiting: VecDeque<Message>,
}

impl Echoed {
    fn new(slot: usize, lines: bool) -> Self {
        Echoed {
            slot,
            lines,
            waiting: VecDeque::new(),
        }
    }
}

impl Script for Echoed {
    fn next(&mut self, rng: &mut SmallRng, seq: u64) -> Option<Message> {
        let mut text = format!("soak {} {seq} ", self.slot);
        // Mostly small, sometimes a few KiB, rarely 64 KiB (not for lines).
        let pad = match rng.random_range(0..100u32) {
            0 if !self.lines => 64 << 10,
            0..=9 => rng.random_range(1024..8192),
            _ => rng.random_range(0..200),
        };
        text.extend(std::iter::repeat_n('x', pad));
        let m = if self.lines || rng.random_bool(0.5) {
            Message::text(text)
        } else {
            Message::binary(text.into_bytes())
        };
        self.waiting.push_back(m.clone());
        Some(m)
    }

    fn received(&mut self, m: &Message) -> Heard {
        match self.waiting.pop_front() {
            Some(sent) if sent.as_bytes() == m.as_bytes() => Heard::Fine,
            _ => Heard::Mismatch,
        }
    }
}

/// A room member: says something now and then, hears the others.
struct Room(usize);

impl Script for Room {
    fn next(&mut self, _rng: &mut SmallRng, seq: u64) -> Option<Message> {
        Some(Message::text(format!("room {} {seq}", self.0)))
    }

    fn received(&mut self, _m: &Message) -> Heard {
        Heard::Fine
    }
}

/// A pub/sub client: subscribes to one to three channels, publishes (when
/// the route lets clients publish), and now and then swaps a channel
/// (unsubscribe, then subscribe to another), so every request it sends is
/// valid and any `error` reply is a server fault.
struct Pubsub {
    channels: Vec<String>,
    /// A channel to subscribe to next (after a swap).
    pending: Option<String>,
    all: usize,
    publish: bool,
}

impl Pubsub {
    fn new(targets: &Targets, rng: &mut SmallRng) -> Self {
        let all = targets.channels.max(1);
        let mut channels: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| format!("soak-{}", rng.random_range(0..all)))
            .collect();
        channels.sort();
        channels.dedup();
        Pubsub {
            channels,
            pending: None,
            all,
            publish: targets.ws_publish,
        }
    }
}

impl Script for Pubsub {
    fn opening(&mut self) -> Vec<Message> {
        self.channels
            .iter()
            .map(|c| Message::text(json!({"op": "subscribe", "channel": c}).to_string()))
            .collect()
    }

    fn next(&mut self, rng: &mut SmallRng, seq: u64) -> Option<Message> {
        if let Some(channel) = self.pending.take() {
            let m = json!({"op": "subscribe", "channel": channel, "id": seq});
            self.channels.push(channel);
            return Some(Message::text(m.to_string()));
        }
        let i = rng.random_range(0..self.channels.len());
        if self.publish && rng.random_range(0..4u32) != 0 {
            let m = json!({"op": "publish", "channel": self.channels[i], "data": {"seq": seq}, "id": seq});
            return Some(Message::text(m.to_string()));
        }
        let fresh = format!("soak-{}", rng.random_range(0..self.all));
        if self.channels.contains(&fresh) {
            return None;
        }
        let old = self.channels.swap_remove(i);
        self.pending = Some(fresh);
        let m = json!({"op": "unsubscribe", "channel": old, "id": seq});
        Some(Message::text(m.to_string()))
    }

    fn received(&mut self, m: &Message) -> Heard {
        let Ok(v) = serde_json::from_slice::<Value>(m.as_bytes()) else {
            return Heard::Mismatch;
        };
        match v.get("op").and_then(Value::as_str) {
            Some("ack" | "message") => Heard::Fine,
            Some("error") => Heard::Error(format!(
                "pubsub error: {}",
                v.get("error").and_then(Value::as_str).unwrap_or("?")
            )),
            _ => Heard::Mismatch,
        }
    }
}
