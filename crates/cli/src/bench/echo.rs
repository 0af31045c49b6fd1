//! Echo mode: keep `depth` messages in flight on every connection.
//!
//! Each connection is one task running one poll loop ([`EchoConn::poll_drive`])
//! that queues the replacements for every echo that arrived, flushes once, and
//! reads until the socket would block. Reading and writing happen in the same
//! loop, so a large message in flight in both directions can never deadlock
//! the way "write everything, then read" can.

use super::report::{Counts, CpuSummary, Summary, Window};
use super::stats::{CloseCodes, Errors, Latencies, LocalLatencies};
use super::{connect_all, spawn_progress, BenchArgs, Progress};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tether::{CloseCode, CloseFrame, Message, WebSocket};

/// State every connection task reports into.
pub(super) struct Shared {
    pub errors: Errors,
    pub closes: CloseCodes,
    pub latencies: Latencies,
    pub progress: Arc<Progress>,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            errors: Errors::default(),
            closes: CloseCodes::default(),
            latencies: Latencies::new(),
            progress: Arc::new(Progress::default()),
        }
    }

    /// The run's summary: `counts` with the latencies, errors and close
    /// codes the connections reported here (echo, raw and broadcast modes).
    pub fn summary(
        &self,
        args: &BenchArgs,
        counts: Counts,
        cpu: (CpuSummary, Option<CpuSummary>),
    ) -> Summary {
        Summary::build(
            args,
            counts,
            Some(&self.latencies),
            &self.errors,
            &self.closes,
            cpu,
            None,
        )
    }
}

/// The message every connection sends: `size` bytes, shared by reference.
///
/// The bytes are leaked into a `'static` buffer (once per run), so cloning
/// the message for every send is free: `Bytes::from_static` has no
/// reference count to update, and the generator spends its time on the
/// protocol rather than on atomics.
pub(super) fn payload(args: &BenchArgs) -> Message {
    if args.text {
        let s: String = (0..args.size)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        Message::Text(tether::Utf8Bytes::from_static(String::leak(s)))
    } else {
        let b: Vec<u8> = (0..args.size).map(|i| i as u8).collect();
        Message::Binary(Bytes::from_static(Vec::leak(b)))
    }
}

/// What one connection did before the window closed.
#[derive(Default, Clone, Copy)]
pub(super) struct ConnCounts {
    pub sent: u64,
    pub received: u64,
    pub bytes: u64,
}

impl ConnCounts {
    /// These totals as the summary's counts.
    pub fn counts(self, connected: usize, elapsed: Duration) -> Counts {
        Counts {
            connected,
            elapsed,
            sent: self.sent,
            received: self.received,
            bytes: self.bytes,
        }
    }
}

/// Why a connection's drive loop ended early.
pub(super) enum Ended {
    /// The peer sent a Close (its code, if any).
    PeerClosed(Option<CloseFrame>),
    /// The connection failed.
    Failed(tether::Error),
}

struct EchoConn<'a> {
    ws: &'a mut WebSocket<super::BenchStream>,
    msg: Message,
    /// Sends still allowed (count mode), or `u64::MAX`.
    allowed: u64,
    /// Messages received that complete the quota (count mode).
    quota: Option<u64>,
    /// Replacements to queue at the next opportunity.
    owed: u64,
    /// Send times of the messages in flight, oldest first.
    inflight: VecDeque<Instant>,
    counts: ConnCounts,
    latencies: LocalLatencies<'a>,
    progress: &'a Progress,
}

impl EchoConn<'_> {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Ended>> {
        // Set once a send had to wait: from then on this poll reads all it
        // can, so that the server, which may be waiting for us to read
        // before it reads again, is never left waiting.
        let mut write_blocked = false;
        loop {
            if self.owed > 0 {
                let now = Instant::now();
                while self.owed > 0 {
                    match Pin::new(&mut *self.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(Ended::Failed(e))),
                        Poll::Pending => {
                            write_blocked = true;
                            break;
                        }
                    }
                    if let Err(e) = Pin::new(&mut *self.ws).start_send(self.msg.clone()) {
                        return Poll::Ready(Err(Ended::Failed(e)));
                    }
                    self.inflight.push_back(now);
                    self.owed -= 1;
                    self.counts.sent += 1;
                }
            }
            if let Poll::Ready(Err(e)) = Pin::new(&mut *self.ws).poll_flush(cx) {
                return Poll::Ready(Err(Ended::Failed(e)));
            }
            let (mut got, mut bytes) = (0u64, 0u64);
            let mut now = None;
            loop {
                // A small echo is counted where it lies in the read buffer
                // (checked as any message is, not copied out): the load
                // generator's cost per message is part of every server's
                // result, so it is kept as low as the library allows.
                let len = if let Some(len) = self.ws.recv_buffered_ref(|m| m.len()) {
                    Some(len)
                } else {
                    // Echoes counted in this pass owe their replacements:
                    // send those first (the server is waiting for them),
                    // then read. At depth 1 a read now could only find
                    // nothing, and would cost as much as the one that
                    // follows the send (a third of the reads per message).
                    if self.owed > 0 && !write_blocked {
                        break;
                    }
                    // At depth 1 the buffer is empty every time: read here
                    // so that the echo, too, is counted in place.
                    match self.ws.poll_read_ahead(cx) {
                        Poll::Ready(true) => continue,
                        Poll::Ready(false) => {}
                        Poll::Pending => break,
                    }
                    match Pin::new(&mut *self.ws).poll_next(cx) {
                        Poll::Ready(Some(Ok(Message::Close(frame)))) => {
                            self.account(got, bytes);
                            return Poll::Ready(Err(Ended::PeerClosed(frame)));
                        }
                        Poll::Ready(Some(Ok(m))) if m.is_data() => Some(m.len()),
                        Poll::Ready(Some(Ok(_))) => None,
                        Poll::Ready(Some(Err(e))) => {
                            self.account(got, bytes);
                            return Poll::Ready(Err(Ended::Failed(e)));
                        }
                        Poll::Ready(None) => {
                            self.account(got, bytes);
                            return Poll::Ready(Err(Ended::Failed(tether::Error::Closed(None))));
                        }
                        Poll::Pending => break,
                    }
                };
                if let Some(len) = len {
                    let now = *now.get_or_insert_with(Instant::now);
                    if let Some(sent_at) = self.inflight.pop_front() {
                        self.latencies.push(now.duration_since(sent_at));
                    }
                    got += 1;
                    bytes += len as u64;
                    if self.allowed > 0 {
                        self.allowed -= 1;
                        self.owed += 1;
                    }
                }
            }
            self.account(got, bytes);
            if let Some(q) = self.quota {
                if self.counts.received >= q {
                    return Poll::Ready(Ok(()));
                }
            }
            if got == 0 || self.owed == 0 {
                // Every waker is registered: reads by poll_read_ahead or
                // poll_next, writes by poll_ready/poll_flush if they were
                // pending.
                return Poll::Pending;
            }
        }
    }

    fn account(&mut self, got: u64, bytes: u64) {
        if got > 0 {
            self.counts.received += got;
            self.counts.bytes += bytes;
            self.progress.add(got, bytes);
        }
    }
}

/// Record how a connection ended and close it politely (bounded by `--close-timeout`).
pub(super) async fn finish(
    ws: &mut WebSocket<super::BenchStream>,
    ended: Option<Result<(), Ended>>,
    args: &BenchArgs,
    shared: &Shared,
) {
    match ended {
        Some(Err(Ended::Failed(e))) => {
            shared.errors.record(e.to_string());
            shared.closes.record("abnormal");
            return;
        }
        Some(Err(Ended::PeerClosed(frame))) => {
            // Complete the handshake the peer started.
            let _ = tokio::time::timeout(args.close_timeout, ws.close(None)).await;
            shared.closes.record(&close_label(frame.as_ref()));
            return;
        }
        _ => {}
    }
    let normal = Some(CloseFrame::new(CloseCode::NORMAL, ""));
    match tokio::time::timeout(args.close_timeout, ws.close(normal)).await {
        Ok(Ok(())) => shared.closes.record(&close_label(ws.peer_close())),
        Ok(Err(e)) => {
            shared.errors.record(format!("close: {e}"));
            shared.closes.record("abnormal");
        }
        Err(_) => {
            shared.errors.record("close: timed out".into());
            shared.closes.record("abnormal");
        }
    }
}

/// How a close is shown in the summary: the code, or `none` for a Close without one.
pub(super) fn close_label(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => f.code.0.to_string(),
        None => "none".into(),
    }
}

/// Run echo mode.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared::new());
    let (conns, compressed) = connect_all(&args, &args.url, &shared.errors).await;
    if conns.is_empty() {
        anyhow::bail!(
            "no connection to {} could be opened: {:?}",
            args.url,
            shared.errors.samples()
        );
    }
    let connected = conns.len();
    let msg = payload(&args);
    let window = Window::start(&args);
    let deadline = args
        .messages
        .is_none()
        .then(|| window.start + args.measure_for());
    let progress = spawn_progress(
        shared.progress.clone(),
        deadline.map(|_| args.measure_for()),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in conns {
        let (args, shared, msg) = (args.clone(), shared.clone(), msg.clone());
        tasks.spawn(async move {
            let depth = u64::from(args.depth);
            let quota = args.quota(i);
            let (allowed, owed) = match quota {
                Some(q) => (q.saturating_sub(depth.min(q)), depth.min(q)),
                None => (u64::MAX, depth),
            };
            let mut conn = EchoConn {
                ws: &mut ws,
                msg,
                allowed,
                quota,
                owed,
                inflight: VecDeque::with_capacity(depth as usize),
                counts: ConnCounts::default(),
                latencies: LocalLatencies::new(&shared.latencies, i),
                progress: &shared.progress,
            };
            let ended = if quota == Some(0) {
                Some(Ok(()))
            } else {
                let drive = std::future::poll_fn(|cx| conn.poll_drive(cx));
                match deadline {
                    Some(d) => {
                        tokio::select! {
                            r = drive => Some(r),
                            _ = tokio::time::sleep_until(d.into()) => None,
                        }
                    }
                    None => Some(drive.await),
                }
            };
            let done_at = Instant::now();
            let counts = conn.counts;
            drop(conn);
            finish(&mut ws, ended, &args, &shared).await;
            (counts, done_at)
        });
    }
    let (total, elapsed, cpu) = collect(&mut tasks, deadline, &window, &args, &shared).await;
    progress.finish().await;
    let mut summary = shared.summary(&args, total.counts(connected, elapsed), cpu);
    summary.compressed_connections = compressed;
    Ok(summary)
}

/// Wait for the measuring window (when timed) and for every connection
/// task; return the summed counts, the measured time and the CPU use.
pub(super) async fn collect(
    tasks: &mut tokio::task::JoinSet<(ConnCounts, Instant)>,
    deadline: Option<Instant>,
    window: &Window,
    args: &BenchArgs,
    shared: &Shared,
) -> (ConnCounts, Duration, (CpuSummary, Option<CpuSummary>)) {
    let mut cpu = None;
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
        cpu = Some(window.cpu(args, args.measure_for()));
    }
    let mut total = ConnCounts::default();
    let mut last_done = window.start;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((c, done_at)) => {
                total.sent += c.sent;
                total.received += c.received;
                total.bytes += c.bytes;
                last_done = last_done.max(done_at);
            }
            Err(e) => shared.errors.record(format!("connection task: {e}")),
        }
    }
    let elapsed = match deadline {
        Some(_) => args.measure_for(),
        None => last_done
            .duration_since(window.start)
            .max(Duration::from_nanos(1)),
    };
    let cpu = cpu.unwrap_or_else(|| window.cpu(args, elapsed));
    (total, elapsed, cpu)
}
