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

mod events;
mod http2;

use events::*;
pub use events::{Events, Resume};
pub use http2::serve_http2;

/// Most messages put in one chunk of the stream.
const BATCH: usize = 64;

/// The SSE route that serves `path`, if any.
pub fn route_for<'a>(routes: &'a [Route], path: &str) -> Option<(&'a Route, &'a SseRoute)> {
    routes.iter().find_map(|r| match &r.kind {
        RouteKind::Pubsub { sse: Some(s), .. } if s.path == path => Some((r, s)),
        _ => None,
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
mod tests;
