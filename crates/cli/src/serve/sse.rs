//! Server-Sent Events for a pubsub route's channels (`sse = true`):
//! `GET PATH/events?channel=a&channel=b` answers `text/event-stream`, the
//! same channels, positions, grants and limits as the WebSocket protocol
//! (`docs/pubsub-protocol.md`, "Server-Sent Events").
//!
//! The stream is a hub [`Member`] like a WebSocket subscriber, so the same
//! slow-consumer rules bound it (`limits.send_queue`, the bytes queued per
//! connection and in all); a reader that falls behind is cut off, and its
//! browser reconnects and resumes. Every message event carries an `id:`
//! made of each channel's position (`EPOCH:OFFSET`, comma-separated, in
//! the order of the `channel` parameters), so the `Last-Event-ID` a browser
//! sends when it reconnects resumes every channel at once with the hub's
//! `since` recovery: no gap, no duplicate, or a `reset` event per channel
//! that cannot be resumed.
//!
//! [`Events`] turns a subscription into the bytes of the event stream and
//! knows nothing of HTTP versions; [`serve`] admits an HTTP/1.1 request and
//! writes those bytes as a chunked response, [`serve_http2`] admits a
//! request of an HTTP/2 stream the same way and makes them its body.

use super::body::ResponseBody;
use super::config::{Route, RouteKind, SseRoute};
use super::http::{write_response, Response};
use super::http2::Http2Conn;
use super::hub::{Hub, Joined, Member, Next};
use super::logsafe::esc;
use super::metrics::RouteMetrics;
use super::policy::{self, ConnSlot, Endpoint, Grants, Refusal, Upgrade};
use super::proxy_addr::Client;
use super::pubsub::valid_channel;
use super::query::{percent_decode, query_param};
use super::shutdown::wait_shutdown;
use super::state::{ActiveGuard, State};
use super::transport::Conn;
use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde::Deserialize;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tether::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tracing::info;

/// Most messages put in one chunk of the stream.
const BATCH: usize = 64;

/// The SSE route that serves `path`, if any.
pub fn route_for<'a>(routes: &'a [Route], path: &str) -> Option<(&'a Route, &'a SseRoute)> {
    routes.iter().find_map(|r| match &r.kind {
        RouteKind::Pubsub { sse: Some(s), .. } if s.path == path => Some((r, s)),
        _ => None,
    })
}

/// Where a stream starts: nowhere in particular, or the positions of a
/// `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// A new stream: live messages only.
    Fresh,
    /// Each channel's (epoch, offset), in the order of the channels.
    At(Vec<(String, u64)>),
    /// An id that does not describe these channels: every channel is reset.
    Unreadable,
}

impl Resume {
    /// Read a `Last-Event-ID` for `channels` channels.
    pub fn parse(id: Option<&str>, channels: usize) -> Resume {
        let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) else {
            return Resume::Fresh;
        };
        let positions: Option<Vec<(String, u64)>> = id
            .split(',')
            .map(|p| {
                let (epoch, offset) = p.split_once(':')?;
                let offset = offset.parse().ok()?;
                (!epoch.is_empty()).then(|| (epoch.to_owned(), offset))
            })
            .collect();
        match positions {
            Some(p) if p.len() == channels => Resume::At(p),
            _ => Resume::Unreadable,
        }
    }

    /// The position to resume channel `i` from, if any.
    fn since(&self, i: usize) -> Option<(&str, u64)> {
        match self {
            Resume::Fresh => None,
            Resume::At(p) => p.get(i).map(|(e, o)| (e.as_str(), *o)),
            // No epoch is empty: the resume fails, and says so.
            Resume::Unreadable => Some(("", 0)),
        }
    }
}

/// One channel of a stream and the position its client has reached.
struct Channel {
    name: Box<str>,
    /// `{"op":"message","channel":NAME,"offset":` as the hub's messages
    /// start on this channel.
    prefix: Vec<u8>,
    epoch: Arc<str>,
    offset: u64,
}

/// Why a stream ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reader fell too far behind (`limits.send_queue`, the queued
    /// byte limits).
    SlowConsumer,
    /// `sse_max_lifetime` passed.
    Lifetime,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::SlowConsumer => "slow consumer",
            End::Lifetime => "sse_max_lifetime reached",
        }
    }
}

/// A piece of the event stream.
#[derive(Debug)]
pub struct Chunk {
    /// Bytes to send as they are.
    pub bytes: Bytes,
    /// Message events in it (heartbeats and subscribe events excluded).
    pub messages: u64,
}

/// The event stream of one subscription to a route's channels: the
/// `retry:` line, one `subscribed` (or `reset`) event per channel, then
/// every message as an event with the positions as its id, and a comment
/// after each `heartbeat` of silence. Independent of the HTTP version:
/// the caller sends each [`Chunk`] and, while a send waits on the client,
/// polls [`Events::poll_stalled`] to cut off a reader that fell behind.
pub struct Events {
    member: Member,
    channels: Vec<Channel>,
    buf: BytesMut,
    /// When the stream last sent something.
    spoke: tokio::time::Instant,
    heartbeat: tokio::time::Interval,
    lifetime: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: Option<End>,
}

/// Fields of the own replies and resets the slow path reads.
#[derive(Deserialize)]
struct Control<'a> {
    op: &'a str,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
}

/// How a stream is set up.
pub struct Settings {
    /// `retry:` sent first.
    pub retry: Duration,
    /// Silence after which a comment is sent.
    pub heartbeat: Duration,
    /// End the stream after about this long.
    pub max_lifetime: Option<Duration>,
}

impl Settings {
    /// A route's settings.
    pub fn of(route: &SseRoute) -> Settings {
        Settings {
            retry: route.retry,
            heartbeat: route.heartbeat,
            max_lifetime: route.max_lifetime,
        }
    }
}

impl Events {
    /// Subscribe `user` to `channels` (valid, allowed, deduplicated) in
    /// `hub`, resuming from `resume`.
    pub fn open(
        hub: &Arc<Hub>,
        user: Option<Arc<str>>,
        channels: &[String],
        resume: &Resume,
        settings: &Settings,
    ) -> Events {
        let mut member = hub.member_as(user);
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"retry: ");
        put_u64(&mut buf, settings.retry.as_millis() as u64);
        buf.put_slice(b"\n\n");
        let mut list = Vec::with_capacity(channels.len());
        for (i, name) in channels.iter().enumerate() {
            let since = resume.since(i);
            let mut joined = None;
            member.subscribe(name, since, |j: &Joined| {
                joined = Some(j.clone());
                subscribed(name, j)
            });
            let j = joined.expect("a new subscription is acknowledged");
            // Where this client is: the resume position when everything
            // after it follows, else the channel's position now.
            let offset = match (j.recovered, since) {
                (Some(true), Some((_, o))) => o,
                _ => j.position.offset,
            };
            let json_name = serde_json::Value::from(name.as_str()).to_string();
            list.push(Channel {
                name: name.as_str().into(),
                prefix: format!(r#"{{"op":"message","channel":{json_name},"offset":"#).into_bytes(),
                epoch: j.position.epoch,
                offset,
            });
        }
        let start = tokio::time::Instant::now() + settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(start, settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lifetime = settings.max_lifetime.map(|l| {
            // Spread over the last tenth, so streams opened together do
            // not all reconnect at once.
            let l = l.mul_f64(0.9 + 0.1 * rand::random::<f64>());
            Box::pin(tokio::time::sleep(l))
        });
        Events {
            member,
            channels: list,
            buf,
            spoke: tokio::time::Instant::now(),
            heartbeat,
            lifetime,
            ended: None,
        }
    }

    /// The id of the next event: every channel's position.
    fn put_id(&mut self) {
        self.buf.put_slice(b"id: ");
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                self.buf.put_u8(b',');
            }
            self.buf.put_slice(c.epoch.as_bytes());
            self.buf.put_u8(b':');
            put_u64(&mut self.buf, c.offset);
        }
        self.buf.put_u8(b'\n');
    }

    /// Append the event for `msg`; true for a message event.
    fn put_event(&mut self, msg: &Message) -> bool {
        let text = msg.as_bytes();
        // The common case: a message on one of the channels.
        let found = self
            .channels
            .iter()
            .position(|c| text.starts_with(&c.prefix));
        if let Some(i) = found {
            let rest = &text[self.channels[i].prefix.len()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if let Some(offset) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                self.channels[i].offset = offset;
                self.put_id();
                put_data(&mut self.buf, text);
                return true;
            }
        }
        // Acknowledgements and resets.
        let control: Option<Control<'_>> = serde_json::from_slice(text).ok();
        let event = match control {
            Some(c) if c.op == "reset" => {
                let i = c.channel.as_deref().and_then(|n| self.index_of(n));
                if let (Some(i), Some(epoch), Some(offset)) = (i, c.epoch, c.offset) {
                    self.channels[i].epoch = epoch.into();
                    self.channels[i].offset = offset;
                }
                Some("reset")
            }
            Some(c) if c.op == "ack" => Some("subscribed"),
            _ => None,
        };
        if let Some(event) = event {
            self.buf.put_slice(b"event: ");
            self.buf.put_slice(event.as_bytes());
            self.buf.put_u8(b'\n');
        }
        self.put_id();
        put_data(&mut self.buf, text);
        false
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| &*c.name == name)
    }

    /// The next piece of the stream: what the subscription has now (at
    /// most [`BATCH`] messages), a heartbeat, or the end. When nothing is
    /// there the task is woken by the next message or timer.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Chunk, End>> {
        if let Some(end) = self.ended {
            return Poll::Ready(Err(end));
        }
        if self
            .lifetime
            .as_mut()
            .is_some_and(|l| l.as_mut().poll(cx).is_ready())
        {
            return self.end(End::Lifetime);
        }
        let mut messages = 0u64;
        for _ in 0..BATCH {
            match self.member.poll_next(cx) {
                Poll::Ready(Next::Message(m)) => messages += u64::from(self.put_event(&m)),
                Poll::Ready(Next::SlowConsumer) => return self.end(End::SlowConsumer),
                Poll::Pending => break,
            }
        }
        let now = tokio::time::Instant::now();
        if !self.buf.is_empty() {
            self.spoke = now;
        }
        while self.heartbeat.poll_tick(cx).is_ready() {
            let due = self.spoke + self.heartbeat.period();
            if due > now {
                // Not silent for a whole period: the next tick is a period
                // after the last write.
                self.heartbeat.reset_at(due);
            } else {
                self.buf.put_slice(b": heartbeat\n\n");
                self.spoke = now;
            }
        }
        if self.buf.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(Ok(Chunk {
            bytes: self.buf.split().freeze(),
            messages,
        }))
    }

    /// For a caller whose send of the last chunk waits on the client:
    /// ready once the stream must end instead (the reader fell behind
    /// while blocked, or its lifetime passed).
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if self
            .lifetime
            .as_mut()
            .is_some_and(|l| l.as_mut().poll(cx).is_ready())
        {
            self.ended = Some(End::Lifetime);
            return Poll::Ready(End::Lifetime);
        }
        match self.member.poll_lagged(cx) {
            Poll::Ready(()) => {
                self.ended = Some(End::SlowConsumer);
                Poll::Ready(End::SlowConsumer)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn end(&mut self, end: End) -> Poll<Result<Chunk, End>> {
        self.ended = Some(end);
        Poll::Ready(Err(end))
    }
}

/// The stream as bytes (for HTTP bodies built from a `Stream`), ending
/// where [`Events::poll_chunk`] ends.
impl futures_util::Stream for Events {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.get_mut().poll_chunk(cx) {
            Poll::Ready(Ok(c)) => Poll::Ready(Some(c.bytes)),
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `data:` lines for `text` and the blank line that ends the event (a
/// line break in `text` starts another `data:` line).
fn put_data(buf: &mut BytesMut, text: &[u8]) {
    buf.reserve(text.len() + 8);
    for line in text.split(|&b| b == b'\n') {
        buf.put_slice(b"data: ");
        buf.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
}

fn put_u64(buf: &mut BytesMut, n: u64) {
    buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The data of a channel's first event: its position, or a `reset` when
/// a resume was asked for and is impossible.
fn subscribed(channel: &str, j: &Joined) -> Message {
    let name = serde_json::Value::from(channel);
    let epoch = serde_json::Value::from(&*j.position.epoch);
    let offset = j.position.offset;
    Message::text(match j.recovered {
        Some(false) => {
            format!(r#"{{"op":"reset","channel":{name},"epoch":{epoch},"offset":{offset}}}"#)
        }
        Some(true) => format!(
            r#"{{"op":"ack","channel":{name},"epoch":{epoch},"offset":{offset},"recovered":true}}"#
        ),
        None => format!(r#"{{"op":"ack","channel":{name},"epoch":{epoch},"offset":{offset}}}"#),
    })
}

/// What a request asks for: its channels, or why it is refused.
fn channels_of(query: &str, grants: &Grants, max: usize) -> Result<Vec<String>, Refusal> {
    let mut channels: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "channel" {
            continue;
        }
        let c = percent_decode(v);
        if !valid_channel(&c) {
            return Err(Refusal::BadChannel);
        }
        if !grants.may_subscribe(&c) {
            return Err(Refusal::ForbiddenChannel(c));
        }
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    if channels.len() > max {
        return Err(Refusal::TooManyChannels(max));
    }
    if channels.is_empty() {
        // Nothing to stream: 204 tells an EventSource to stop.
        return Err(Refusal::NoChannel);
    }
    Ok(channels)
}

/// How a stream ended, for the log.
enum Ended {
    Server(End),
    Shutdown,
    ClientClosed,
    SendTimeout,
    Failed(std::io::Error),
}

impl Ended {
    fn describe(&self) -> String {
        match self {
            Ended::Server(e) => e.reason().to_owned(),
            Ended::Shutdown => "server shutting down".into(),
            Ended::ClientClosed => "client closed".into(),
            Ended::SendTimeout => "no byte taken for limits.send_timeout".into(),
            Ended::Failed(e) => format!("write failed: {e}"),
        }
    }
}

/// Serve `GET PATH/events` of `route` on an HTTP/1.1 connection that
/// arrived on listener `listener`: admit it as a WebSocket subscriber
/// would be ([`policy::admit`]: Host, Origin, auth, connection limits; then
/// the token's channel grants), then stream until the client leaves, the stream
/// ends (slow reader, lifetime) or the server shuts down. The connection
/// is closed afterwards. `http_slot` (the HTTP-phase connection slot) is
/// given up once the stream holds a connection slot.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    state: &State,
    listener: usize,
    mut conn: Conn,
    req: http::Request<()>,
    route: &Route,
    sse: &SseRoute,
    client: Client,
    http_slot: ConnSlot,
) {
    let peer = client.addr;
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let admitted = admit(state, listener, &host, &req, route, client);
    let (grants, channels, slot, cors) = match admitted {
        Ok(a) => a,
        Err(refused) => {
            let resp = match refused {
                Some(r) => {
                    r.record(&state.metrics, "event stream", peer, &path);
                    Response::refused(&r)
                }
                None => Response::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                    .header("allow", "GET"),
            };
            let deadline = state.config.limits.http_response_deadline(resp.body_len());
            let _ =
                tokio::time::timeout(deadline, write_response(&mut conn, resp, false, false)).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
            return;
        }
    };
    drop(http_slot);
    let mut events = open_events(state, &req, route, sse, &grants, &channels);
    let chunked = req.version() != http::Version::HTTP_10;
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n\
         x-accel-buffering: no\r\nx-content-type-options: nosniff\r\n",
    );
    if let Some(origin) = cors {
        head.push_str(&format!(
            "access-control-allow-origin: {origin}\r\naccess-control-allow-credentials: true\r\nvary: origin\r\n"
        ));
    }
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("connection: close\r\n\r\n");

    let _active = ActiveGuard::enter(&state.active);
    let metrics = &*state.route_metrics[route.id];
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    metrics.open.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    info!(%peer, path = %esc(&path), kind = "sse", channels = channels.len(), user = %esc(grants.subject.as_deref().unwrap_or("")), "open");
    let limits = &state.config.limits;
    let wrote_head = tokio::time::timeout(
        limits.http_response_timeout,
        conn.write_all(head.as_bytes()),
    )
    .await;
    let mut shutdown = state.shutdown.clone();
    let mut sent = (0u64, 0u64);
    let mut mid_chunk = false;
    let ended = match wrote_head {
        Ok(Ok(())) => {
            let out = Writer {
                conn: &mut conn,
                chunked,
                send_timeout: limits.send_timeout,
            };
            pump(
                out,
                &mut events,
                &mut shutdown,
                metrics,
                &mut sent,
                &mut mid_chunk,
            )
            .await
        }
        Ok(Err(e)) => Ended::Failed(e),
        Err(_) => Ended::SendTimeout,
    };
    if matches!(ended, Ended::Server(End::SlowConsumer)) {
        metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
    if matches!(ended, Ended::Server(_) | Ended::Shutdown) && chunked && !mid_chunk {
        // The end of the body: the client sees a complete response and
        // reconnects. (Cut off in the middle of a chunk, it sees the
        // connection close, and reconnects as well.)
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.write_all(b"0\r\n\r\n")).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
    drop(conn);
    drop(events);
    drop(slot);
    metrics.open.fetch_sub(1, Ordering::Relaxed);
    info!(
        %peer,
        path = %esc(&path),
        kind = "sse",
        duration_ms = started.elapsed().as_millis() as u64,
        messages_out = sent.0,
        bytes_out = sent.1,
        reason = %esc(&ended.describe()),
        "close"
    );
}

/// The events of an admitted request: its channels, resumed from its
/// `Last-Event-ID` (header, or `last_event_id` in the query).
fn open_events(
    state: &State,
    req: &http::Request<()>,
    route: &Route,
    sse: &SseRoute,
    grants: &Grants,
    channels: &[String],
) -> Events {
    let hub = state.hubs[route.id].as_ref().expect("pubsub hub");
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(req.uri().query().unwrap_or(""), "last_event_id"));
    let resume = Resume::parse(last_id.as_deref(), channels.len());
    let user = grants.subject.as_deref().map(Arc::from);
    Events::open(hub, user, channels, &resume, &Settings::of(sse))
}

/// Serve `GET PATH/events` of `route` on a stream of an HTTP/2 connection:
/// the admission of [`serve`], then the same [`Events`] as the response
/// body (hyper sends it as DATA frames; the end of the body ends the
/// stream, and the browser reconnects).
pub fn serve_http2(
    ctx: &Arc<Http2Conn>,
    req: http::Request<()>,
    host: &str,
    route: &Route,
    sse: &SseRoute,
    client: Client,
) -> http::Response<ResponseBody> {
    let state = &*ctx.state;
    let peer = client.addr;
    let path = req.uri().path().to_owned();
    let (grants, channels, slot, cors) = match admit(state, ctx.listener, host, &req, route, client)
    {
        Ok(a) => a,
        Err(refused) => {
            let resp = match refused {
                Some(r) => {
                    r.record(&state.metrics, "event stream", peer, &path);
                    Response::refused(&r)
                }
                None => Response::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                    .header("allow", "GET"),
            };
            return resp.into_http(false);
        }
    };
    let events = open_events(state, &req, route, sse, &grants, &channels);
    let metrics = state.route_metrics[route.id].clone();
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    metrics.open.fetch_add(1, Ordering::Relaxed);
    state.active.fetch_add(1, Ordering::AcqRel);
    ctx.session_opened();
    info!(%peer, path = %esc(&path), kind = "sse", channels = channels.len(), user = %esc(grants.subject.as_deref().unwrap_or("")), "open");
    let mut shutdown = state.shutdown.clone();
    let body = Http2Events {
        events,
        stop: Box::pin(async move { wait_shutdown(&mut shutdown).await }),
        ctx: ctx.clone(),
        metrics,
        _slot: slot,
        sent: (0, 0),
        started: Instant::now(),
        peer,
        path,
        ended: None,
    };
    let mut resp = http::Response::new(ResponseBody::Stream(Box::pin(body)));
    let headers = resp.headers_mut();
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-store"),
        ("x-accel-buffering", "no"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    if let Some(origin) = cors.and_then(|o| http::HeaderValue::try_from(o).ok()) {
        headers.insert("access-control-allow-origin", origin);
        headers.insert(
            "access-control-allow-credentials",
            http::HeaderValue::from_static("true"),
        );
        headers.insert("vary", http::HeaderValue::from_static("origin"));
    }
    resp
}

/// An event stream as an HTTP/2 response body. The stream ends (the body's
/// end) on shutdown, for a slow consumer or at `sse_max_lifetime`; a client
/// that resets the stream drops it. hyper polls a body only while its
/// stream has send capacity, so a reader that stops taking leaves its
/// messages in the hub (bounded like any subscriber's) and is cut off when
/// its stream is polled again; `send_timeout` cannot reach it, and it holds
/// its connection slot until the client resets the stream or the
/// connection ends.
struct Http2Events {
    events: Events,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    ctx: Arc<Http2Conn>,
    metrics: Arc<RouteMetrics>,
    _slot: ConnSlot,
    sent: (u64, u64),
    started: Instant,
    peer: std::net::SocketAddr,
    path: String,
    ended: Option<Ended>,
}

impl hyper::body::Body for Http2Events {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.ended.is_some() {
            return Poll::Ready(None);
        }
        if this.stop.as_mut().poll(cx).is_ready() {
            this.ended = Some(Ended::Shutdown);
            return Poll::Ready(None);
        }
        match this.events.poll_chunk(cx) {
            Poll::Ready(Ok(chunk)) => {
                if chunk.messages > 0 {
                    this.sent.0 += chunk.messages;
                    this.sent.1 += chunk.bytes.len() as u64;
                    this.metrics.sent(chunk.messages, chunk.bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk.bytes))))
            }
            Poll::Ready(Err(end)) => {
                if end == End::SlowConsumer {
                    this.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                }
                this.ended = Some(Ended::Server(end));
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Http2Events {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Ordering::Relaxed);
        self.ctx.session_closed();
        self.ctx.state.active.fetch_sub(1, Ordering::AcqRel);
        let ended = self.ended.take().unwrap_or(Ended::ClientClosed);
        info!(
            peer = %self.peer,
            path = %esc(&self.path),
            kind = "sse",
            duration_ms = self.started.elapsed().as_millis() as u64,
            messages_out = self.sent.0,
            bytes_out = self.sent.1,
            reason = %esc(&ended.describe()),
            "close"
        );
    }
}

/// What an admitted request carries on with: its grants, channels,
/// connection slot and the origin to allow (CORS) if it is another one.
type Admitted = (Grants, Vec<String>, ConnSlot, Option<String>);

/// The WebSocket path's admission, then the channels asked for; `None`:
/// not a `GET` (answered 405, not counted as a refusal).
fn admit(
    state: &State,
    listener: usize,
    host: &str,
    req: &http::Request<()>,
    route: &Route,
    client: Client,
) -> Result<Admitted, Option<Refusal>> {
    if req.method() != http::Method::GET {
        return Err(None);
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let up = Upgrade {
        host,
        path: req.uri().path(),
        query: req.uri().query().unwrap_or(""),
        origin: header("origin"),
        headers: req.headers(),
        client: client.addr,
        https: client.https,
    };
    let admission = policy::admit(state, listener, &up, Endpoint::Route(route))?;
    let max = state.config.limits.max_subscriptions;
    let channels = channels_of(up.query, &admission.grants, max)?;
    // Another origin the route allows: let its page read the stream.
    let cors = up
        .origin
        .filter(|o| !tether::OriginPolicy::SameOrigin.allows_over(Some(o), up.host, up.https))
        .map(str::to_owned);
    Ok((admission.grants, channels, admission.slot, cors))
}

/// The HTTP/1.1 body writer of a stream.
struct Writer<'a> {
    conn: &'a mut Conn,
    chunked: bool,
    send_timeout: Option<Duration>,
}

/// Send the stream's chunks until it ends.
async fn pump(
    mut out: Writer<'_>,
    events: &mut Events,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
    sent: &mut (u64, u64),
    mid_chunk: &mut bool,
) -> Ended {
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    loop {
        let next = std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Ended::Shutdown));
            }
            if client_left(out.conn, cx) {
                return Poll::Ready(Err(Ended::ClientClosed));
            }
            events.poll_chunk(cx).map_err(Ended::Server)
        })
        .await;
        let chunk = match next {
            Ok(c) => c,
            Err(e) => return e,
        };
        if let Err(e) = write_chunk(&mut out, events, stop.as_mut(), &chunk.bytes).await {
            *mid_chunk = true;
            return e;
        }
        if chunk.messages > 0 {
            sent.0 += chunk.messages;
            sent.1 += chunk.bytes.len() as u64;
            metrics.sent(chunk.messages, chunk.bytes.len() as u64);
        }
    }
}

/// Did the client close its side (or reset it)? Anything it sends is
/// read and dropped.
fn client_left(conn: &mut Conn, cx: &mut Context<'_>) -> bool {
    let mut scratch = [0u8; 256];
    for _ in 0..16 {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *conn).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return true,
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return true,
            Poll::Pending => return false,
        }
    }
    false
}

/// Write one chunk (with HTTP/1.1 chunk framing) and flush. While the
/// client takes nothing, the stream may still end (shutdown, a reader
/// behind, lifetime) or time out (`limits.send_timeout` without progress).
async fn write_chunk(
    out: &mut Writer<'_>,
    events: &mut Events,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    data: &[u8],
) -> Result<(), Ended> {
    let mut size = BytesMut::with_capacity(20);
    if out.chunked {
        size.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    let tail: &[u8] = if out.chunked { b"\r\n" } else { b"" };
    let parts = [&size[..], data, tail];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| loop {
        let polled = if done < total {
            let slices = remaining(&parts, done);
            let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
            Pin::new(&mut *out.conn)
                .poll_write_vectored(cx, &io)
                .map_ok(Some)
        } else {
            Pin::new(&mut *out.conn).poll_flush(cx).map_ok(|()| None)
        };
        match polled {
            Poll::Ready(Ok(Some(0))) => {
                return Poll::Ready(Err(Ended::Failed(std::io::ErrorKind::WriteZero.into())))
            }
            Poll::Ready(Ok(Some(n))) => {
                done += n;
                if let (Some(t), Some(limit)) = (timer.as_mut(), out.send_timeout) {
                    t.as_mut().reset(tokio::time::Instant::now() + limit);
                }
            }
            Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Ended::Failed(e))),
            Poll::Pending => {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Ended::Shutdown));
                }
                if let Poll::Ready(end) = events.poll_stalled(cx) {
                    return Poll::Ready(Err(Ended::Server(end)));
                }
                if let Some(limit) = out.send_timeout {
                    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                    if t.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Ended::SendTimeout));
                    }
                }
                return Poll::Pending;
            }
        }
    })
    .await
}

/// What is left of `parts` after the first `done` bytes.
fn remaining<'a>(parts: &[&'a [u8]; 3], mut done: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(3);
    for p in parts {
        if done >= p.len() {
            done -= p.len();
        } else {
            out.push(&p[done..]);
            done = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            retry: Duration::from_millis(1500),
            heartbeat: Duration::from_secs(3600),
            max_lifetime: None,
        }
    }

    /// Everything the stream has now, as text.
    fn drain(events: &mut Events) -> String {
        let mut out = String::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Ok(c)) = events.poll_chunk(&mut cx) {
            out.push_str(std::str::from_utf8(&c.bytes).unwrap());
        }
        out
    }

    fn publish(hub: &Arc<Hub>, channel: &str, data: i64) {
        let engine = super::super::engine::Memory(hub.clone());
        super::super::pubsub::publish(&engine, channel, &serde_json::json!(data), None);
    }

    /// The ids of the message events in `text`.
    fn ids(text: &str) -> Vec<String> {
        text.split("\n\n")
            .filter(|e| e.contains(r#""op":"message""#))
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("id: ")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn last_event_ids_are_read_per_channel() {
        assert_eq!(Resume::parse(None, 1), Resume::Fresh);
        assert_eq!(Resume::parse(Some(" "), 1), Resume::Fresh);
        assert_eq!(
            Resume::parse(Some("ab:3,cd:0"), 2),
            Resume::At(vec![("ab".into(), 3), ("cd".into(), 0)])
        );
        assert_eq!(Resume::parse(Some("ab:3"), 2), Resume::Unreadable);
        assert_eq!(Resume::parse(Some("ab:x"), 1), Resume::Unreadable);
        assert_eq!(Resume::parse(Some(":3"), 1), Resume::Unreadable);
    }

    #[tokio::test]
    async fn retry_first_then_positions_then_messages_with_ids() {
        let hub = Arc::new(Hub::new(16));
        let chans = ["a".to_owned(), "b".to_owned()];
        let mut ev = Events::open(&hub, None, &chans, &Resume::Fresh, &settings());
        publish(&hub, "a", 1);
        publish(&hub, "b", 2);
        publish(&hub, "a", 3);
        let text = drain(&mut ev);
        assert!(text.starts_with("retry: 1500\n\n"), "{text}");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert!(events[1].starts_with("event: subscribed\nid: "), "{text}");
        let ea = &*ev.channels[0].epoch;
        let eb = &*ev.channels[1].epoch;
        assert_eq!(
            ids(&text),
            [
                format!("{ea}:1,{eb}:0"),
                format!("{ea}:1,{eb}:1"),
                format!("{ea}:2,{eb}:1")
            ]
        );
        assert!(text
            .contains("data: {\"op\":\"message\",\"channel\":\"a\",\"offset\":2,\"data\":3}\n\n"));
    }

    #[tokio::test]
    async fn a_last_event_id_resumes_every_channel_without_gap_or_repeat() {
        let hub = Arc::new(Hub::new(16).retaining(super::super::hub::Retention {
            history_size: 10,
            ..Default::default()
        }));
        let chans = ["a".to_owned(), "b".to_owned()];
        let mut first = Events::open(&hub, None, &chans, &Resume::Fresh, &settings());
        publish(&hub, "a", 1);
        publish(&hub, "b", 1);
        let text = drain(&mut first);
        let last = ids(&text).pop().unwrap();
        drop(first);
        // Missed while away.
        publish(&hub, "a", 2);
        publish(&hub, "b", 2);
        publish(&hub, "a", 3);
        let resume = Resume::parse(Some(&last), 2);
        let mut again = Events::open(&hub, None, &chans, &resume, &settings());
        publish(&hub, "b", 3);
        let text = drain(&mut again);
        let got: Vec<(String, i64)> = text
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter(|v| v["op"] == "message")
            .map(|v| {
                (
                    v["channel"].as_str().unwrap().to_owned(),
                    v["data"].as_i64().unwrap(),
                )
            })
            .collect();
        let pairs = |v: &[(&str, i64)]| {
            v.iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect::<Vec<_>>()
        };
        // In order per channel (a resumed channel's replay comes whole).
        assert_eq!(got, pairs(&[("a", 2), ("a", 3), ("b", 2), ("b", 3)]));
        let (ea, eb) = (&*again.channels[0].epoch, &*again.channels[1].epoch);
        assert_eq!(
            ids(&text),
            [
                format!("{ea}:2,{eb}:1"),
                format!("{ea}:3,{eb}:1"),
                format!("{ea}:3,{eb}:2"),
                format!("{ea}:3,{eb}:3")
            ]
        );
        assert_eq!(text.matches("\"recovered\":true").count(), 2, "{text}");
        assert!(!text.contains("event: reset"), "{text}");
    }

    #[tokio::test]
    async fn an_impossible_resume_is_a_reset_event() {
        let hub = Arc::new(Hub::new(16));
        let chans = ["a".to_owned()];
        let mut ev = Events::open(
            &hub,
            None,
            &chans,
            &Resume::parse(Some("0123456789abcdef:7"), 1),
            &settings(),
        );
        let text = drain(&mut ev);
        assert!(text.contains("event: reset\n"), "{text}");
        assert!(text.contains(r#""op":"reset","channel":"a""#), "{text}");
        let mut garbled = Events::open(
            &hub,
            None,
            &chans,
            &Resume::parse(Some("what"), 1),
            &settings(),
        );
        assert!(drain(&mut garbled).contains("event: reset\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_gets_a_heartbeat_comment() {
        let hub = Arc::new(Hub::new(16));
        let s = Settings {
            heartbeat: Duration::from_secs(15),
            ..settings()
        };
        let mut ev = Events::open(&hub, None, &["a".to_owned()], &Resume::Fresh, &s);
        drain(&mut ev);
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(drain(&mut ev), "");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(drain(&mut ev), ": heartbeat\n\n");
        // A message: the next heartbeat is a whole period after it.
        tokio::time::advance(Duration::from_secs(5)).await;
        publish(&hub, "a", 1);
        assert!(drain(&mut ev).starts_with("id: "));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(drain(&mut ev), "");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(drain(&mut ev), ": heartbeat\n\n");
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_ended() {
        let hub = Arc::new(Hub::new(4));
        let mut ev = Events::open(&hub, None, &["a".to_owned()], &Resume::Fresh, &settings());
        for n in 0..10 {
            publish(&hub, "a", n);
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            ev.poll_chunk(&mut cx),
            Poll::Ready(Err(End::SlowConsumer))
        ));
        assert!(ev.poll_stalled(&mut cx).is_ready());
    }
}
