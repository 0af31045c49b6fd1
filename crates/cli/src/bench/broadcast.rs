//! Broadcast mode: `-c` subscribers on a room (or a pub/sub channel with
//! `--channel`, spread over `--subscribe-url`s), one publisher (or
//! `--publishers N`).
//!
//! Every published payload starts with a marker and the time it was queued
//! (nanoseconds since the run's start, in this process's monotonic clock),
//! so each subscriber measures fan-out latency on its own. Deliveries are
//! counted only inside the measurement window.

use super::echo::{finish, ConnCounts, Ended, Shared};
use super::report::{Summary, Window};
use super::stats::LocalLatencies;
use super::{client_builder, connect_over, pubsub, spawn_progress, BenchArgs};
use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tether::{Message, WebSocket};

/// Marks a payload as ours: "tethbnch".
pub(super) const MAGIC: [u8; 8] = *b"tethbnch";
/// Marker + timestamp.
const STAMP_LEN: usize = 16;

fn stamped(epoch: Instant, size: usize, text: bool) -> Message {
    let size = size.max(STAMP_LEN);
    let mut b = BytesMut::with_capacity(size);
    b.put_slice(&MAGIC);
    let ns = epoch.elapsed().as_nanos() as u64;
    if text {
        // Text must stay UTF-8: the timestamp is written as 8 ASCII digits
        // of 6 bits each ('0' + value), 48 bits: 3 days of nanoseconds.
        for i in (0..8).rev() {
            b.put_u8(b'0' + ((ns >> (6 * i)) & 0x3f) as u8);
        }
        b.put_bytes(b'x', size - STAMP_LEN);
        Message::text(String::from_utf8(b.to_vec()).expect("ASCII"))
    } else {
        b.put_u64(ns);
        b.put_bytes(0x5a, size - STAMP_LEN);
        Message::Binary(b.freeze())
    }
}

fn stamp_of(payload: &[u8], text: bool) -> Option<u64> {
    if payload.len() < STAMP_LEN || payload[..8] != MAGIC {
        return None;
    }
    let t = &payload[8..16];
    if text {
        Some(t.iter().fold(0u64, |acc, &c| {
            (acc << 6) | u64::from(c.wrapping_sub(b'0') & 0x3f)
        }))
    } else {
        Some(u64::from_be_bytes(t.try_into().ok()?))
    }
}

struct Subscriber<'a> {
    ws: &'a mut tether::WebSocket<super::BenchStream>,
    epoch: Instant,
    text: bool,
    /// Pub/sub messages: the stamp is inside the `message` object.
    channel: bool,
    counts: ConnCounts,
    latencies: LocalLatencies<'a>,
    shared: &'a Shared,
}

impl Subscriber<'_> {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Ended>> {
        use futures_util::Stream;
        let (mut got, mut bytes) = (0u64, 0u64);
        let result = loop {
            match Pin::new(&mut *self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Close(f)))) => {
                    break Poll::Ready(Err(Ended::PeerClosed(f)))
                }
                Poll::Ready(Some(Ok(m))) if m.is_data() => {
                    let stamp = if self.channel {
                        pubsub::stamp_in(m.as_bytes())
                    } else {
                        stamp_of(m.as_bytes(), self.text)
                    };
                    if let Some(ns) = stamp {
                        let now = self.epoch.elapsed().as_nanos() as u64;
                        self.latencies
                            .push(Duration::from_nanos(now.saturating_sub(ns)));
                    }
                    got += 1;
                    bytes += m.len() as u64;
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => break Poll::Ready(Err(Ended::Failed(e))),
                Poll::Ready(None) => {
                    break Poll::Ready(Err(Ended::Failed(tether::Error::Closed(None))))
                }
                Poll::Pending => break Poll::Pending,
            }
        };
        if got > 0 {
            self.counts.received += got;
            self.counts.bytes += bytes;
            self.shared.progress.add(got, bytes);
        }
        result
    }
}

/// Run broadcast mode.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared::new());
    let (subs, compressed) = connect_over(&args, &args.subscriber_urls(), &shared.errors).await;
    let subs = match &args.channel {
        Some(channel) => pubsub::subscribe_all(subs, channel, &shared)
            .await
            .into_iter()
            .map(|(i, ws, _)| (i, ws))
            .collect(),
        None => subs,
    };
    if subs.is_empty() {
        anyhow::bail!(
            "no subscriber could connect to {}: {:?}",
            args.url,
            shared.errors.samples()
        );
    }
    let connected = subs.len();
    let publish_url = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
    let mut publishers = Vec::with_capacity(args.publishers as usize);
    for _ in 0..args.publishers {
        let (publisher, _) = client_builder(&args, &publish_url)
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("publisher cannot connect to {publish_url}: {e}"))?;
        publishers.push(publisher);
    }
    // Let the server register the last subscribers before publishing.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let epoch = Instant::now();
    let window = Window::start(&args);
    let measure = args.measure_for();
    let deadline = window.start + measure;
    let progress = spawn_progress(shared.progress.clone(), Some(measure));

    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in subs {
        let (args, shared) = (args.clone(), shared.clone());
        tasks.spawn(async move {
            let mut sub = Subscriber {
                ws: &mut ws,
                epoch,
                text: args.text,
                channel: args.channel.is_some(),
                counts: ConnCounts::default(),
                latencies: LocalLatencies::new(&shared.latencies, i),
                shared: &shared,
            };
            let drive = std::future::poll_fn(|cx| sub.poll_drive(cx));
            let ended = tokio::select! {
                r = drive => Some(r),
                _ = tokio::time::sleep_until(deadline.into()) => None,
            };
            let counts = sub.counts;
            drop(sub);
            finish(&mut ws, ended, &args, &shared).await;
            counts
        });
    }

    let mut publishing = tokio::task::JoinSet::new();
    for publisher in publishers {
        let (args, shared) = (args.clone(), shared.clone());
        publishing.spawn(async move { publish(publisher, epoch, deadline, &args, &shared).await });
    }
    let mut published = 0u64;
    while let Some(joined) = publishing.join_next().await {
        match joined {
            Ok(n) => published += n,
            Err(e) => shared.errors.record(format!("publisher task: {e}")),
        }
    }
    let cpu = window.cpu(&args, measure);

    let mut total = ConnCounts::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(c) => {
                total.received += c.received;
                total.bytes += c.bytes;
            }
            Err(e) => shared.errors.record(format!("subscriber task: {e}")),
        }
    }
    progress.finish().await;
    let counts = ConnCounts {
        sent: published,
        ..total
    };
    let mut summary = shared.summary(&args, counts.counts(connected, measure), cpu);
    summary.compressed_connections = compressed;
    Ok(summary)
}

/// One publisher until `deadline`: sends at `--rate / --publishers` per
/// second (or as fast as it can) while its own reader drains whatever the
/// server sends back; then closes. Returns the messages it sent.
async fn publish(
    publisher: WebSocket<tether::MaybeTlsStream>,
    epoch: Instant,
    deadline: Instant,
    args: &BenchArgs,
    shared: &Shared,
) -> u64 {
    let (mut sink, mut stream) = publisher.split();
    let reader = tokio::spawn(async move {
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        stream
    });
    let mut published = 0u64;
    let frame = || match &args.channel {
        Some(channel) => pubsub::publish_frame(epoch, args.size, channel),
        None => stamped(epoch, args.size, args.text),
    };
    let rate = args.rate as f64 / f64::from(args.publishers);
    let sending = async {
        if args.rate == 0 {
            loop {
                for _ in 0..32 {
                    sink.feed(frame()).await?;
                    published += 1;
                }
                sink.flush().await?;
            }
        } else {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut due = 0.0f64;
            loop {
                tick.tick().await;
                due += rate / 1000.0;
                while due >= 1.0 {
                    sink.feed(frame()).await?;
                    published += 1;
                    due -= 1.0;
                }
                sink.flush().await?;
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), tether::Error>(())
    };
    tokio::select! {
        r = sending => if let Err(e) = r { shared.errors.record(format!("publisher: {e}")) },
        _ = tokio::time::sleep_until(deadline.into()) => {}
    }
    let _ = tokio::time::timeout(args.close_timeout, sink.close()).await;
    if let Ok(Ok(stream)) = tokio::time::timeout(args.close_timeout, reader).await {
        drop(stream);
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_in_binary_and_text() {
        let epoch = Instant::now() - Duration::from_secs(5);
        for text in [false, true] {
            let m = stamped(epoch, 64, text);
            assert_eq!(m.len(), 64);
            let ns = stamp_of(m.as_bytes(), text).unwrap();
            assert!((5_000_000_000..6_000_000_000).contains(&ns), "{ns}");
        }
        assert_eq!(stamp_of(b"not a stamped message", false), None);
    }
}
