//! Idle mode: what an open, quiet connection costs the server.
//!
//! The server's resident memory (`VmRSS`, `--server-pid`) is read before
//! connecting; then `-c` connections are opened, each exchanges one message
//! of `-s` bytes (so its buffers have been used once, as in real life), and
//! all are held open for `-t` (default 1 s) before memory is read again.
//! The difference divided by the connections is the per-connection cost.

use super::echo::{finish, payload, ConnCounts, Shared};
use super::report::{Summary, Window};
use super::stats::rss_kib;
use super::{connect_all, BenchArgs};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tether::Message;

/// Run idle mode.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared::new());
    let server = args.server_pid.map(|p| p.to_string());
    let before = server.as_deref().and_then(rss_kib);
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

    // One round trip on every connection, in parallel.
    let mut tasks = tokio::task::JoinSet::new();
    for (_, mut ws) in conns {
        let msg = msg.clone();
        tasks.spawn(async move {
            ws.send(msg).await?;
            loop {
                match ws.next().await {
                    Some(Ok(m)) if m.is_data() => return Ok((ws, m.len() as u64)),
                    Some(Ok(Message::Close(frame))) => return Err(tether::Error::Closed(frame)),
                    None => return Err(tether::Error::Closed(None)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                }
            }
        });
    }
    let mut open = Vec::with_capacity(connected);
    let mut counts = ConnCounts::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((ws, len))) => {
                counts.sent += 1;
                counts.received += 1;
                counts.bytes += len;
                open.push(ws);
            }
            Ok(Err(e)) => shared.errors.record(format!("first message: {e}")),
            Err(e) => shared.errors.record(format!("connection task: {e}")),
        }
    }

    let window = Window::start(&args);
    let hold = args.duration.unwrap_or(Duration::from_secs(1));
    tokio::time::sleep(hold).await;
    let after = server.as_deref().and_then(rss_kib);
    let cpu = window.cpu(&args, hold);
    let client_rss = rss_kib("self");

    let mut closing = tokio::task::JoinSet::new();
    for mut ws in open {
        let (args, shared) = (args.clone(), shared.clone());
        closing.spawn(async move { finish(&mut ws, None, &args, &shared).await });
    }
    while closing.join_next().await.is_some() {}

    let mut summary = Summary::build(
        &args,
        counts.counts(connected, hold),
        None,
        &shared.errors,
        &shared.closes,
        cpu,
        Some((before, after)),
    );
    if let Some(kib) = client_rss {
        tracing::info!(
            "client RSS {kib} KiB for {connected} connections ({:.0} B each, incl. the runtime)",
            kib as f64 * 1024.0 / connected as f64
        );
    }
    summary.compressed_connections = compressed;
    // A rate is meaningless for the single exchange: report the counts only.
    summary.msgs_per_sec = 0.0;
    summary.mb_per_sec = 0.0;
    Ok(summary)
}
