//! The pub/sub side of `tether bench` (`--channel`): subscribing with the
//! protocol of `kind = "pubsub"` routes, stamped publications, and the
//! recovery storm.
//!
//! A publication's `data` is a JSON string `"tethbnch<20 digits>xxx…"`: the
//! marker, the time it was queued (nanoseconds since the run's start, in
//! this process's monotonic clock, in decimal) and padding up to `-s`
//! bytes. Subscribers find the marker in the `message` the server sends, so
//! the server's framing of it does not matter.

use super::echo::{finish, ConnCounts, Shared};
use super::report::{Summary, Window};
use super::stats::LocalLatencies;
use super::{client_builder, connect_over, BenchArgs};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::{Message, WebSocket};

type Ws = WebSocket<super::BenchStream>;

/// Marks a payload as ours.
const MAGIC: &[u8; 8] = b"tethbnch";
/// Digits of the timestamp.
const DIGITS: usize = 20;

/// Longest wait for any one answer of the server.
const ANSWER: Duration = Duration::from_secs(30);

/// `{"op":"publish",…}` of a stamped payload of `size` bytes on `channel`.
pub(super) fn publish_frame(epoch: Instant, size: usize, channel: &str) -> Message {
    let ns = epoch.elapsed().as_nanos() as u64;
    let mut data = format!("tethbnch{ns:0DIGITS$}");
    let pad = size.saturating_sub(data.len());
    data.extend(std::iter::repeat_n('x', pad));
    Message::text(format!(
        r#"{{"op":"publish","channel":{},"data":"{data}"}}"#,
        Value::from(channel)
    ))
}

/// The timestamp stamped into a delivered message, if it carries one.
pub(super) fn stamp_in(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(MAGIC.len()).position(|w| w == MAGIC)? + MAGIC.len();
    let digits = payload.get(at..at + DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A subscribe ack: the channel's position, and whether a resume worked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ack {
    pub epoch: String,
    pub offset: u64,
    pub recovered: Option<bool>,
}

/// The next JSON text message (pings and pongs skipped), within [`ANSWER`].
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(ANSWER, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {ANSWER:?}"))?
            .ok_or_else(|| anyhow::anyhow!("connection ended"))??;
        match m {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(f) => anyhow::bail!("closed by the server: {f:?}"),
            _ => {}
        }
    }
}

/// Send `request` and wait for its `ack` (anything else before it is
/// passed to `other`; an `error` fails).
async fn request(
    ws: &mut Ws,
    request: Value,
    mut other: impl FnMut(Value),
) -> anyhow::Result<Value> {
    ws.send(Message::text(request.to_string())).await?;
    loop {
        let v = next_json(ws).await?;
        match v["op"].as_str() {
            Some("ack") => return Ok(v),
            Some("error") => anyhow::bail!("server: {}", v["error"]),
            _ => other(v),
        }
    }
}

/// Subscribe `ws` to `channel` (from `since`, if given).
pub(super) async fn subscribe(
    ws: &mut Ws,
    channel: &str,
    since: Option<&Ack>,
    other: impl FnMut(Value),
) -> anyhow::Result<Ack> {
    let mut req = json!({"op": "subscribe", "channel": channel});
    if let Some(s) = since {
        req["since"] = json!({"epoch": s.epoch, "offset": s.offset});
    }
    let v = request(ws, req, other).await?;
    Ok(Ack {
        epoch: v["epoch"].as_str().unwrap_or_default().to_owned(),
        offset: v["offset"].as_u64().unwrap_or(0),
        recovered: v["recovered"].as_bool(),
    })
}

/// Subscribe every connection to `channel`, concurrently; those that
/// cannot are counted as errors and dropped.
pub(super) async fn subscribe_all(
    conns: Vec<(usize, Ws)>,
    channel: &str,
    shared: &Shared,
) -> Vec<(usize, Ws, Ack)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in conns {
        let channel = channel.to_owned();
        tasks.spawn(async move {
            let ack = subscribe(&mut ws, &channel, None, |_| {}).await;
            (i, ws, ack)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, ws, Ok(ack))) => out.push((i, ws, ack)),
            Ok((_, _, Err(e))) => shared.errors.record(format!("subscribe: {e}")),
            Err(e) => shared.errors.record(format!("subscribe task: {e}")),
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out
}

/// The recovery storm: every connection subscribes to `--channel` and
/// unsubscribes; `--backlog` messages are published on `--publish-url`;
/// then every connection resubscribes with `since` at once. Each one's
/// time from the start of the storm to its last missed message is a
/// latency sample; the summary's duration is the time until all recovered,
/// its messages the missed messages received. A connection that did not
/// get `recovered: true` and exactly the missed offsets, in order, counts
/// as an error.
pub(super) async fn storm(args: Arc<BenchArgs>) -> anyhow::Result<Summary> {
    let channel = args
        .channel
        .clone()
        .expect("--recovery-storm requires --channel");
    let shared = Arc::new(Shared::new());
    // One publication first: a channel with history outlives its
    // subscribers (one without is forgotten when they leave, and comes back
    // in a new epoch that no resume can reach).
    let publish_url = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
    let (mut publisher, _) = client_builder(&args, &publish_url)
        .connect_http1()
        .await
        .map_err(|e| anyhow::anyhow!("publisher cannot connect to {publish_url}: {e}"))?;
    publish_acked(&mut publisher, Instant::now(), &args, &channel).await?;
    let (conns, _) = connect_over(&args, &args.subscriber_urls(), &shared.errors).await;
    let subs = subscribe_all(conns, &channel, &shared).await;
    anyhow::ensure!(
        !subs.is_empty(),
        "no subscriber could subscribe to {channel}: {:?}",
        shared.errors.samples()
    );
    let connected = subs.len();
    // Everyone leaves; every position must be the same, or the channel is
    // busy with other publishers and the missed count is unknown.
    let mut away = Vec::with_capacity(subs.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws, ack) in subs {
        let channel = channel.clone();
        tasks.spawn(async move {
            let r = request(
                &mut ws,
                json!({"op": "unsubscribe", "channel": channel}),
                |_| {},
            )
            .await;
            (i, ws, ack, r)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, ws, ack, r) = joined?;
        match r {
            Ok(_) => away.push((i, ws, ack)),
            Err(e) => shared.errors.record(format!("unsubscribe: {e}")),
        }
    }
    // The backlog, each publish acknowledged (so it is kept) before the storm.
    let epoch = Instant::now();
    for _ in 0..args.backlog {
        publish_acked(&mut publisher, epoch, &args, &channel).await?;
    }
    let _ = tokio::time::timeout(args.close_timeout, publisher.close(None)).await;

    let start = Arc::new(tokio::sync::Barrier::new(away.len() + 1));
    let window = Window::start(&args);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws, since) in away {
        let (args, shared, start, channel) =
            (args.clone(), shared.clone(), start.clone(), channel.clone());
        tasks.spawn(async move {
            start.wait().await;
            let began = Instant::now();
            let mut counts = ConnCounts::default();
            let r = recover(&mut ws, &channel, &since, args.backlog, &mut counts).await;
            let took = began.elapsed();
            match r {
                Ok(()) => LocalLatencies::new(&shared.latencies, i).push(took),
                Err(e) => shared.errors.record(format!("recovery: {e}")),
            }
            (ws, counts, took)
        });
    }
    start.wait().await;
    let mut total = ConnCounts::default();
    let mut conns = Vec::new();
    let mut slowest = Duration::ZERO;
    while let Some(joined) = tasks.join_next().await {
        let (ws, counts, took) = joined?;
        total.received += counts.received;
        total.bytes += counts.bytes;
        slowest = slowest.max(took);
        conns.push(ws);
    }
    let all = slowest.max(Duration::from_nanos(1));
    let cpu = window.cpu(&args, all);
    for mut ws in conns {
        finish(&mut ws, None, &args, &shared).await;
    }
    let counts = ConnCounts {
        sent: args.backlog,
        ..total
    };
    Ok(shared.summary(&args, counts.counts(connected, all), cpu))
}

/// Publish one stamped message and wait for its ack.
async fn publish_acked(
    publisher: &mut Ws,
    epoch: Instant,
    args: &BenchArgs,
    channel: &str,
) -> anyhow::Result<()> {
    publisher
        .send(publish_frame(epoch, args.size, channel))
        .await?;
    loop {
        let v = next_json(publisher).await?;
        match v["op"].as_str() {
            Some("ack") => return Ok(()),
            Some("error") => anyhow::bail!("publish: {}", v["error"]),
            _ => {}
        }
    }
}

/// Resubscribe from `since` and take exactly the `missed` messages after
/// it, in order.
async fn recover(
    ws: &mut Ws,
    channel: &str,
    since: &Ack,
    missed: u64,
    counts: &mut ConnCounts,
) -> anyhow::Result<()> {
    let mut next = since.offset + 1;
    fn take(v: &Value, next: &mut u64, counts: &mut ConnCounts) -> anyhow::Result<()> {
        if v["op"] == "message" {
            let offset = v["offset"].as_u64().unwrap_or(0);
            anyhow::ensure!(offset == *next, "offset {offset}, expected {next}");
            *next += 1;
            counts.received += 1;
            counts.bytes += v["data"].as_str().map_or(0, str::len) as u64;
        }
        Ok(())
    }
    let mut early = Vec::new();
    let ack = subscribe(ws, channel, Some(since), |v| early.push(v)).await?;
    anyhow::ensure!(
        ack.recovered == Some(true),
        "recovered: {:?} (is history_size at least --backlog?)",
        ack.recovered
    );
    for v in &early {
        take(v, &mut next, counts)?;
    }
    while next <= since.offset + missed {
        let v = next_json(ws).await?;
        take(&v, &mut next, counts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_a_delivered_message() {
        let epoch = Instant::now() - Duration::from_secs(5);
        let frame = publish_frame(epoch, 64, "bench");
        let v: Value = serde_json::from_str(frame.as_text().unwrap()).unwrap();
        assert_eq!(v["channel"], "bench");
        let data = v["data"].as_str().unwrap();
        assert_eq!(data.len(), 64);
        let delivered =
            format!(r#"{{"op":"message","channel":"bench","offset":7,"data":"{data}"}}"#);
        let ns = stamp_in(delivered.as_bytes()).unwrap();
        assert!((5_000_000_000..6_000_000_000).contains(&ns), "{ns}");
        assert_eq!(stamp_in(b"{\"data\":\"tethbnch12\"}"), None);
        assert_eq!(stamp_in(b"nothing here"), None);
    }
}
