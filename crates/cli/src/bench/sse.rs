//! SSE mode (`--sse`): fan-out from one pub/sub channel to `-c` readers,
//! measured twice in one run against the same `tether serve` pub/sub route
//! (with `sse = true` and `client_publish` covering the channel): first
//! `-c` WebSocket subscribers, then `-c` Server-Sent Events readers of
//! `PATH/events?channel=…`, each phase with the same publisher (one
//! WebSocket sending `publish` ops at `--rate`) for `-t`. The summary puts
//! the two delivery rates side by side.
//!
//! An SSE reader is what an `EventSource` does on the wire: one HTTP/1.1
//! GET, then the chunked body read as it comes. It counts the stamps in
//! the stream (each message's data starts with the marker and the time it
//! was published, as in broadcast mode), so it measures fan-out latency
//! without parsing every event.

use super::broadcast::MAGIC;
use super::echo::{finish, ConnCounts, Ended, Shared};
use super::report::{human, Summary, Window};
use super::stats::LocalLatencies;
use super::{client_builder, connect_all, spawn_progress, BenchArgs};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

/// Both phases of one run.
#[derive(Serialize, Debug, Clone)]
pub struct SideBySide {
    /// WebSocket subscribers of the channel.
    pub websocket: Summary,
    /// Server-Sent Events readers of the same channel.
    pub sse: Summary,
    /// SSE deliveries per second over WebSocket deliveries per second.
    pub ratio: f64,
}

impl SideBySide {
    /// Both tables and the ratio.
    pub fn table(&self) -> String {
        let mut t = self.websocket.table();
        t.push('\n');
        t.push_str(&self.sse.table());
        let _ = writeln!(
            t,
            "\nfan-out to {} readers: WebSocket {}/s, SSE {}/s: SSE at {:.2}x",
            self.sse.connections,
            human(self.websocket.msgs_per_sec),
            human(self.sse.msgs_per_sec),
            self.ratio
        );
        t
    }
}

/// Which readers a phase uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readers {
    WebSocket,
    Sse,
}

/// Run both phases.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<SideBySide> {
    let websocket = phase(&args, Readers::WebSocket).await?;
    // Let the server see the first readers go before the second arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sse = phase(&args, Readers::Sse).await?;
    let ratio = sse.msgs_per_sec / websocket.msgs_per_sec.max(1e-9);
    Ok(SideBySide {
        websocket,
        sse,
        ratio,
    })
}

/// The channel read and published (`--channel`, default `bench`).
fn channel_of(args: &BenchArgs) -> &str {
    args.channel.as_deref().unwrap_or("bench")
}

/// `http://HOST:PORT/PATH/events?channel=C` for the route at `ws://HOST:PORT/PATH`.
fn events_url(url: &str, channel: &str) -> anyhow::Result<(String, String, String)> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        anyhow::anyhow!("--sse needs a ws:// URL of a pubsub route (got {url}); wss:// is not supported for the SSE readers")
    })?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = format!(
        "/{}/events?channel={}",
        path.trim_end_matches('/'),
        encode(channel)
    )
    .replace("//events", "/events");
    Ok((
        authority.to_owned(),
        path.clone(),
        format!("http://{authority}{path}"),
    ))
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One phase: connect and subscribe every reader, publish for the
/// window, count what each reader received in it.
async fn phase(args: &Arc<BenchArgs>, readers: Readers) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared::new());
    let (authority, path, sse_url) = events_url(&args.url, channel_of(args))?;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let (start_tx, start_rx) = watch::channel::<Option<(Instant, Instant)>>(None);
    let mut tasks = tokio::task::JoinSet::new();
    match readers {
        Readers::WebSocket => {
            let (conns, _) = connect_all(args, &args.url, &shared.errors).await;
            let subscribe =
                serde_json::json!({"op": "subscribe", "channel": channel_of(args)}).to_string();
            for (i, ws) in conns {
                let (args, shared) = (args.clone(), shared.clone());
                let (ready, start) = (ready_tx.clone(), start_rx.clone());
                let subscribe = Message::text(subscribe.clone());
                tasks.spawn(ws_reader(i, ws, subscribe, args, shared, ready, start));
            }
        }
        Readers::Sse => {
            let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
            for i in 0..args.connections {
                let (args, shared) = (args.clone(), shared.clone());
                let (ready, start) = (ready_tx.clone(), start_rx.clone());
                let (authority, path, limit) = (authority.clone(), path.clone(), limit.clone());
                tasks.spawn(async move {
                    let permit = limit.acquire_owned().await.expect("never closed");
                    let opened = open_stream(&authority, &path).await;
                    drop(permit);
                    match opened {
                        Ok(s) => sse_reader(i, s, args, shared, ready, start).await,
                        Err(e) => {
                            shared.errors.record(format!("connect: {e}"));
                            let _ = ready.send(false);
                            ConnCounts::default()
                        }
                    }
                });
            }
        }
    }
    drop(ready_tx);
    let mut connected = 0usize;
    while let Some(ok) = ready_rx.recv().await {
        connected += usize::from(ok);
    }
    if connected == 0 {
        anyhow::bail!(
            "no reader could subscribe ({}): {:?}",
            if readers == Readers::Sse {
                &sse_url
            } else {
                &args.url
            },
            shared.errors.samples()
        );
    }
    let publish_url = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
    let (publisher, _) = client_builder(args, &publish_url)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("publisher cannot connect to {publish_url}: {e}"))?;

    let epoch = Instant::now();
    let window = Window::start(args);
    let measure = args.measure_for();
    let deadline = window.start + measure;
    let progress = spawn_progress(shared.progress.clone(), Some(measure));
    let _ = start_tx.send(Some((epoch, deadline)));

    let (mut sink, mut stream) = publisher.split();
    let errors = shared.clone();
    let reader = tokio::spawn(async move {
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Text(t)) if t.contains(r#""op":"error""#) => {
                    errors.errors.record(format!("publisher: {t}"));
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        stream
    });
    let channel = serde_json::Value::from(channel_of(args));
    let op = |epoch: Instant| {
        let data = stamped(epoch, args.size);
        Message::text(format!(
            r#"{{"op":"publish","channel":{channel},"data":"{data}"}}"#
        ))
    };
    let mut published = 0u64;
    let publish = async {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut due = 0.0f64;
        loop {
            if args.rate == 0 {
                for _ in 0..32 {
                    sink.feed(op(epoch)).await?;
                    published += 1;
                }
            } else {
                tick.tick().await;
                due += args.rate as f64 / 1000.0;
                while due >= 1.0 {
                    sink.feed(op(epoch)).await?;
                    published += 1;
                    due -= 1.0;
                }
            }
            sink.flush().await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), tether::Error>(())
    };
    tokio::select! {
        r = publish => if let Err(e) = r { shared.errors.record(format!("publisher: {e}")) },
        _ = tokio::time::sleep_until(deadline.into()) => {}
    }
    let cpu = window.cpu(args, measure);
    let _ = tokio::time::timeout(args.close_timeout, sink.close()).await;
    let _ = tokio::time::timeout(args.close_timeout, reader).await;

    let mut total = ConnCounts::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(c) => {
                total.received += c.received;
                total.bytes += c.bytes;
            }
            Err(e) => shared.errors.record(format!("reader task: {e}")),
        }
    }
    progress.finish().await;
    let counts = ConnCounts {
        sent: published,
        ..total
    };
    let mut summary = shared.summary(args, counts.counts(connected, measure), cpu);
    match readers {
        Readers::WebSocket => summary.mode = "sse-bench: websocket".into(),
        Readers::Sse => {
            summary.mode = "sse-bench: sse".into();
            summary.url = sse_url;
        }
    }
    Ok(summary)
}

/// Wait for the start of the window: (epoch of the stamps, deadline).
async fn started(start: &mut watch::Receiver<Option<(Instant, Instant)>>) -> (Instant, Instant) {
    loop {
        if let Some(s) = *start.borrow_and_update() {
            return s;
        }
        if start.changed().await.is_err() {
            let now = Instant::now();
            return (now, now);
        }
    }
}

/// A WebSocket subscriber: subscribe, say it is ready once acknowledged,
/// then count the stamped messages until the deadline.
async fn ws_reader(
    i: usize,
    mut ws: tether::WebSocket<super::BenchStream>,
    subscribe: Message,
    args: Arc<BenchArgs>,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<bool>,
    mut start: watch::Receiver<Option<(Instant, Instant)>>,
) -> ConnCounts {
    let mut counts = ConnCounts::default();
    let acked = async {
        ws.send(subscribe).await?;
        while let Some(m) = ws.next().await {
            if matches!(&m?, Message::Text(t) if t.contains(r#""op":"ack""#)) {
                return Ok(true);
            }
        }
        Ok::<bool, tether::Error>(false)
    };
    match tokio::time::timeout(Duration::from_secs(30), acked).await {
        Ok(Ok(true)) => {
            let _ = ready.send(true);
        }
        other => {
            shared.errors.record(format!(
                "subscribe: {:?}",
                other.map(|r| r.map_err(|e| e.to_string()))
            ));
            let _ = ready.send(false);
            return counts;
        }
    }
    drop(ready);
    let (epoch, deadline) = started(&mut start).await;
    let mut latencies = LocalLatencies::new(&shared.latencies, i);
    let drive = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(f)) => return Err(Ended::PeerClosed(f)),
                Ok(m) if m.is_data() => {
                    let b = m.as_bytes();
                    if let Some(ns) = find_stamp(b) {
                        let now = epoch.elapsed().as_nanos() as u64;
                        latencies.push(Duration::from_nanos(now.saturating_sub(ns)));
                        counts.received += 1;
                        counts.bytes += b.len() as u64;
                        shared.progress.add(1, b.len() as u64);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(Ended::Failed(e)),
            }
        }
        Err(Ended::Failed(tether::Error::Closed(None)))
    };
    let ended = tokio::select! {
        r = drive => Some(r),
        _ = tokio::time::sleep_until(deadline.into()) => None,
    };
    latencies.flush();
    finish(&mut ws, ended, &args, &shared).await;
    counts
}

/// Send the GET and read the response head; the stream, positioned at
/// the start of the body, with what was read past the head.
async fn open_stream(authority: &str, path: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(authority).await?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut got = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 200") {
                let status = head.lines().next().unwrap_or("").to_owned();
                return Err(std::io::Error::other(format!("refused: {status}")));
            }
            return Ok((s, got[end + 4..].to_vec()));
        }
        if got.len() > 16 << 10 {
            return Err(std::io::Error::other("response head too long"));
        }
    }
}

/// Bytes an SSE reader reads at a time.
const READ: usize = 8 << 10;

/// An SSE reader: ready once the stream's first event (its `subscribed`)
/// arrived, then count the stamps in the stream until the deadline.
async fn sse_reader(
    i: usize,
    (mut s, first): (TcpStream, Vec<u8>),
    args: Arc<BenchArgs>,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<bool>,
    mut start: watch::Receiver<Option<(Instant, Instant)>>,
) -> ConnCounts {
    let _ = &args;
    let mut counts = ConnCounts::default();
    let mut buf = first;
    buf.reserve(READ);
    let subscribed = async {
        while !buf.windows(17).any(|w| w == b"event: subscribed") {
            let n = read_more(&mut s, &mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(30), subscribed).await {
        Ok(Ok(())) => {
            let _ = ready.send(true);
        }
        other => {
            shared.errors.record(format!("subscribe: {other:?}"));
            let _ = ready.send(false);
            return counts;
        }
    }
    drop(ready);
    buf.clear();
    let (epoch, deadline) = started(&mut start).await;
    let mut latencies = LocalLatencies::new(&shared.latencies, i);
    let drive = async {
        loop {
            let n = read_more(&mut s, &mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("the server ended the stream"));
            }
            let (got, keep) = count_stamps(&buf, |ns| {
                let now = epoch.elapsed().as_nanos() as u64;
                latencies.push(Duration::from_nanos(now.saturating_sub(ns)));
            });
            counts.received += got;
            counts.bytes += n as u64;
            shared.progress.add(got, n as u64);
            buf.drain(..buf.len() - keep);
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let ended = tokio::select! {
        r = drive => Some(r),
        _ = tokio::time::sleep_until(deadline.into()) => None,
    };
    latencies.flush();
    match ended {
        Some(Err(e)) => {
            shared.errors.record(e.to_string());
            shared.closes.record("ended");
        }
        _ => shared.closes.record("none"),
    }
    counts
}

/// Read up to [`READ`] more bytes onto the end of `buf`.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = buf.len();
    buf.resize(len + READ, 0);
    let n = s.read(&mut buf[len..]).await;
    buf.truncate(len + *n.as_ref().unwrap_or(&0));
    n
}

/// The stamped messages whose stamp is whole in `buf` (each stamp given
/// to `each`): how many, and how many bytes at the end to keep for the
/// next read (a stamp may start there).
fn count_stamps(buf: &[u8], mut each: impl FnMut(u64)) -> (u64, usize) {
    let mut at = 0;
    let mut got = 0;
    while let Some(p) = find(&buf[at..], &MAGIC) {
        let start = at + p;
        if start + STAMP_LEN > buf.len() {
            return (got, buf.len() - start);
        }
        if let Some(ns) = stamp_of(&buf[start..start + STAMP_LEN]) {
            each(ns);
            got += 1;
        }
        at = start + STAMP_LEN;
    }
    (got, (buf.len() - at).min(MAGIC.len() - 1))
}

/// Marker + 16 hex digits of the time published.
const STAMP_LEN: usize = 24;

/// A message's data: the marker, the nanoseconds since `epoch` in hex (a
/// JSON string needs no escape for them), then `x` up to `size` bytes.
fn stamped(epoch: Instant, size: usize) -> String {
    let ns = epoch.elapsed().as_nanos() as u64;
    let magic = std::str::from_utf8(&MAGIC).expect("ASCII");
    let mut s = format!("{magic}{ns:016x}");
    s.extend(std::iter::repeat_n('x', size.saturating_sub(STAMP_LEN)));
    s
}

/// The time in a stamp that starts `b`.
fn stamp_of(b: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(b.get(MAGIC.len()..STAMP_LEN)?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == needle[0]) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        if hay.len() - at < needle.len() {
            return None;
        }
        from = at + 1;
    }
    None
}

/// The stamp inside a pub/sub message (its data starts with it).
fn find_stamp(msg: &[u8]) -> Option<u64> {
    let at = find(msg, &MAGIC)?;
    stamp_of(msg.get(at..at + STAMP_LEN)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_url_is_beside_the_route() {
        let (a, p, u) = events_url("ws://127.0.0.1:8080/pubsub", "a b").unwrap();
        assert_eq!(a, "127.0.0.1:8080");
        assert_eq!(p, "/pubsub/events?channel=a%20b");
        assert_eq!(u, "http://127.0.0.1:8080/pubsub/events?channel=a%20b");
        assert!(events_url("wss://x/pubsub", "c").is_err());
    }

    #[test]
    fn stamps_are_counted_across_reads() {
        let epoch = Instant::now();
        let m = stamped(epoch, 30);
        assert_eq!(m.len(), 30);
        let event = format!("id: e:1\ndata: {{\"data\":\"{m}\"}}\n\n");
        let stream = event.repeat(3);
        let bytes = stream.as_bytes();
        // Split everywhere: the total is always 3.
        for cut in 0..bytes.len() {
            let mut buf = bytes[..cut].to_vec();
            let (a, keep) = count_stamps(&buf, |_| {});
            buf.drain(..buf.len() - keep);
            buf.extend_from_slice(&bytes[cut..]);
            let (b, _) = count_stamps(&buf, |_| {});
            assert_eq!(a + b, 3, "cut at {cut}");
        }
    }
}
