//! Connection storm mode (`--storm`): how fast a server takes handshakes,
//! what each costs it, and whether connected clients notice.
//!
//! First `--probes` connections are opened and echo a small message every
//! 10 ms for the whole run (their round trips are the "during the storm"
//! latency). Then `-c` connections are opened as fast as
//! `--connect-concurrency` allows (the *connect* phase), all closed, and all
//! opened again at once (the *reconnect* phase: for `wss://` the client
//! resumes its TLS sessions unless `--no-tls-resumption`). Each phase
//! reports handshakes/s, handshake latency (TCP connect to the open
//! WebSocket), failures and, with `--server-pid`, the server's CPU per
//! handshake.

use super::report::{human, LatencySummary};
use super::stats::{cpu_times, CpuTimes, Errors};
use super::{client_builder, BenchArgs};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::{MaybeTlsStream, Message, WebSocket};
use tokio::sync::Semaphore;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::ClientConfig;

/// How often each probe sends.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// One phase of the storm.
#[derive(Serialize, Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub attempted: usize,
    pub opened: usize,
    pub failed: usize,
    pub secs: f64,
    pub handshakes_per_sec: f64,
    /// TCP connect to open WebSocket, microseconds.
    pub handshake_us: Option<LatencySummary>,
    /// The server's CPU (user + system) per opened connection.
    pub server_cpu_us_per_handshake: Option<f64>,
    /// TLS sessions resumed (`wss://` only).
    pub tls_resumed: Option<usize>,
}

/// What `--storm` measured.
#[derive(Serialize, Debug, Clone)]
pub struct StormReport {
    pub mode: &'static str,
    pub url: String,
    pub connections: usize,
    pub concurrency: u32,
    pub tls: bool,
    pub phases: Vec<Phase>,
    /// Echo round trips of the probes while the phases ran.
    pub probe_echo_us: Option<LatencySummary>,
    pub probe_errors: u64,
    pub errors: u64,
    pub error_samples: std::collections::BTreeMap<String, u64>,
}

impl StormReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "tether bench: storm {} — {} connections, {} at a time{}",
            self.url,
            self.connections,
            self.concurrency,
            if self.tls { ", TLS" } else { "" }
        );
        let _ = writeln!(
            t,
            "  {:<10} {:>8} {:>7} {:>12} {:>9} {:>9} {:>11} {:>8}",
            "phase", "opened", "failed", "handshakes/s", "p50", "p99", "server CPU", "resumed"
        );
        for p in &self.phases {
            let lat = |q: fn(&LatencySummary) -> u64| {
                p.handshake_us
                    .as_ref()
                    .map_or("-".into(), |l| format!("{:.2} ms", q(l) as f64 / 1000.0))
            };
            let _ = writeln!(
                t,
                "  {:<10} {:>8} {:>7} {:>12} {:>9} {:>9} {:>11} {:>8}",
                p.name,
                p.opened,
                p.failed,
                human(p.handshakes_per_sec),
                lat(|l| l.p50),
                lat(|l| l.p99),
                p.server_cpu_us_per_handshake
                    .map_or("-".into(), |c| format!("{c:.0} µs")),
                p.tls_resumed.map_or("-".into(), |n| n.to_string()),
            );
        }
        if let Some(l) = &self.probe_echo_us {
            let _ = writeln!(
                t,
                "  probes     echo p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms during the storm ({} round trips, {} errors)",
                l.p50 as f64 / 1000.0,
                l.p99 as f64 / 1000.0,
                l.max as f64 / 1000.0,
                l.samples,
                self.probe_errors
            );
        }
        if self.errors > 0 {
            let _ = writeln!(t, "  errors     {} {:?}", self.errors, self.error_samples);
        }
        t
    }
}

fn summary(h: &Histogram<u64>) -> Option<LatencySummary> {
    (!h.is_empty()).then(|| LatencySummary {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
        mean: h.mean(),
        samples: h.len(),
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn server_cpu(args: &BenchArgs) -> Option<CpuTimes> {
    args.server_pid.and_then(|p| cpu_times(&p.to_string()))
}

/// Each storm connection is its own client: with TLS, its own session
/// cache, so that the first phase makes full handshakes and the second
/// resumes each client's own session (one shared cache would let the
/// first phase resume too, and keeps only a few tickets per server).
fn tls_per_client(args: &BenchArgs) -> Option<Vec<Arc<ClientConfig>>> {
    let base = super::TLS
        .get()
        .filter(|_| args.url.starts_with("wss://"))?;
    let resumption = || match args.no_tls_resumption {
        true => Resumption::disabled(),
        false => Resumption::in_memory_sessions(4),
    };
    Some(
        (0..args.connections)
            .map(|_| {
                let mut config = (**base).clone();
                config.resumption = resumption();
                Arc::new(config)
            })
            .collect(),
    )
}

/// Open `n` connections, at most `concurrency` at a time; time each.
async fn open_all(
    args: &Arc<BenchArgs>,
    name: &'static str,
    tls: Option<&[Arc<ClientConfig>]>,
    errors: &Arc<Errors>,
) -> (Phase, Vec<WebSocket<MaybeTlsStream>>) {
    let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let cpu_before = server_cpu(args);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let limit = limit.clone();
        let mut builder = client_builder(args, &args.url);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls[i].clone());
        }
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            let t0 = Instant::now();
            let r = builder.connect().await;
            (t0.elapsed(), r)
        });
    }
    let mut hist = histogram();
    let mut open = Vec::with_capacity(args.connections);
    let mut resumed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((took, Ok((ws, _)))) => {
                let _ = hist.record(took.as_micros().max(1) as u64);
                if let MaybeTlsStream::Tls(tls) = ws.get_ref() {
                    let (_, conn) = tls.get_ref();
                    if conn.handshake_kind() == Some(tokio_rustls::rustls::HandshakeKind::Resumed) {
                        resumed += 1;
                    }
                }
                open.push(ws);
            }
            Ok((_, Err(e))) => errors.record(format!("{name}: {e}")),
            Err(e) => errors.record(format!("{name} task: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, server_cpu(args)) {
        (Some(a), Some(b)) if !open.is_empty() => {
            let used = (b.user + b.system).saturating_sub(a.user + a.system);
            Some(used.as_secs_f64() * 1e6 / open.len() as f64)
        }
        _ => None,
    };
    let phase = Phase {
        name,
        attempted: args.connections,
        opened: open.len(),
        failed: args.connections - open.len(),
        secs,
        handshakes_per_sec: open.len() as f64 / secs.max(1e-9),
        handshake_us: summary(&hist),
        server_cpu_us_per_handshake: cpu,
        tls_resumed: args.url.starts_with("wss://").then_some(resumed),
    };
    (phase, open)
}

/// Close every connection (closing handshakes in parallel).
async fn close_all(open: Vec<WebSocket<MaybeTlsStream>>, timeout: Duration) {
    let mut tasks = tokio::task::JoinSet::new();
    for mut ws in open {
        tasks.spawn(async move {
            let _ = tokio::time::timeout(timeout, ws.close(None)).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One probe: an echo every [`PROBE_EVERY`] until `stop`.
async fn probe(
    mut ws: WebSocket<MaybeTlsStream>,
    stop: Arc<AtomicBool>,
    hist: Arc<Mutex<Histogram<u64>>>,
) -> Result<(), tether::Error> {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let t0 = Instant::now();
        ws.send(Message::binary(&b"probe"[..])).await?;
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_data() => break,
                Some(Ok(Message::Close(f))) => return Err(tether::Error::Closed(f)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(tether::Error::Closed(None)),
            }
        }
        let us = t0.elapsed().as_micros().max(1) as u64;
        let _ = hist.lock().unwrap_or_else(|e| e.into_inner()).record(us);
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Run storm mode.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<StormReport> {
    let errors = Arc::new(Errors::default());
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(histogram()));
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..args.probes {
        let (ws, _) = client_builder(&args, &args.url)
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("probe cannot connect to {}: {e}", args.url))?;
        probes.spawn(probe(ws, stop.clone(), hist.clone()));
    }
    // A quiet moment for the probes' baseline before the storm.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let tls = tls_per_client(&args);
    let (connect, open) = open_all(&args, "connect", tls.as_deref(), &errors).await;
    close_all(open, args.close_timeout).await;
    let (reconnect, open) = open_all(&args, "reconnect", tls.as_deref(), &errors).await;
    close_all(open, args.close_timeout).await;

    stop.store(true, Ordering::Relaxed);
    let mut probe_errors = 0;
    while let Some(joined) = probes.join_next().await {
        if !matches!(joined, Ok(Ok(()))) {
            probe_errors += 1;
        }
    }
    let probe_echo_us = summary(&hist.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(StormReport {
        mode: "storm",
        url: args.url.clone(),
        connections: args.connections,
        concurrency: args.connect_concurrency,
        tls: args.url.starts_with("wss://"),
        phases: vec![connect, reconnect],
        probe_echo_us,
        probe_errors,
        errors: errors.count(),
        error_samples: errors.samples(),
    })
}
