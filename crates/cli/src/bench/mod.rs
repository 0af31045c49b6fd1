//! `tether bench`: a load generator for any WebSocket server.
//!
//! Six workloads share one set of flags and one summary:
//!
//! * **echo** (default): `-c` connections each keep `-d` messages of `-s`
//!   bytes in flight against an echo endpoint; every echoed message is
//!   replaced by a new one. Latency is the time from queueing a message to
//!   receiving its echo (echo servers answer in order, so a FIFO of send
//!   times per connection is enough; the payload carries nothing extra).
//! * **raw TCP** (`--raw-tcp`): the same bytes a WebSocket client would send
//!   (masked frames, pre-encoded once) written to a plain TCP echo server
//!   with no handshake; echoed frames are counted. This measures the
//!   transport's ceiling with identical bytes, the baseline the WebSocket
//!   numbers are compared against. `--raw-mask` adds the masking every
//!   WebSocket client must do (a fresh key per frame), to measure the floor
//!   it sets. Against a `tls://host:port` target the bytes go over TLS to a
//!   TLS echo server (**raw TLS**), the baseline for `wss://` servers.
//! * **broadcast** (`--broadcast`): `-c` subscribers join a room URL and one
//!   publisher sends into it; each payload starts with a send timestamp, so
//!   subscribers measure fan-out latency and the delivered message rate.
//!   With `--channel` they subscribe to a pub/sub channel instead, and
//!   `--subscribe-url` spreads them over several nodes (the publisher on
//!   `--publish-url`): cross-node fan-out and latency (see [`pubsub`]).
//! * **recovery storm** (`--recovery-storm --channel`): every subscriber
//!   resubscribes with `since` at once after missing `--backlog`
//!   messages; reports the time until all have recovered.
//! * **sse** (`--sse`): fan-out from a pub/sub channel to `-c` WebSocket
//!   subscribers, then to `-c` Server-Sent Events readers of the same
//!   route, in one run, with the two delivery rates side by side.
//! * **idle** (`--idle`): open `-c` connections, exchange one message on
//!   each, then hold them and report the server's resident memory per
//!   connection (`--server-pid`), read from `/proc/PID/status`.
//! * **soak** (`--soak`): `-c` connections of mixed kinds with churn
//!   against one `tether serve` for `-t`, then leak checks (see [`soak`]).
//!
//! The generator is built to not be the bottleneck: one task per
//! connection, a single poll loop per connection that queues replacements
//! and flushes once per batch of echoes (feed-then-flush), payloads shared
//! by reference, and a current-thread runtime by default (`--threads` for
//! more). Its own CPU use is reported, so a saturated generator is visible.

mod broadcast;
mod echo;
mod idle;
mod pubsub;
mod raw;
mod report;
mod soak;
mod sse;
mod stats;
mod storm;

use crate::size::parse_size;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether::http2::{ClientStream, Http2Connection};
use tether::{ClientBuilder, WebSocket, WebSocketConfig};
use tokio::sync::Semaphore;

pub use report::Summary;

/// Options of `tether bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Target: a ws:// or wss:// URL (echo, broadcast, idle), or with
    /// --raw-tcp host:port (raw TCP) or tls://host:port (raw TLS, trusting
    /// --cacert).
    pub url: String,

    /// Connections (subscribers in --broadcast mode).
    #[arg(short = 'c', long, default_value_t = 10)]
    pub connections: usize,

    /// Message payload size (e.g. 20, 16K, 1M).
    #[arg(short = 's', long, default_value = "20", value_parser = parse_size)]
    pub size: usize,

    /// Messages in flight per connection (pipelining depth).
    #[arg(short = 'd', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub depth: u32,

    /// How long to measure (e.g. 10s, 500ms, 2m). Default 10s unless -n is given.
    #[arg(short = 't', long, value_parser = parse_duration, conflicts_with = "messages")]
    pub duration: Option<Duration>,

    /// Total messages to exchange, spread over the connections, instead of a duration.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,

    /// Send text messages (ASCII) instead of binary.
    #[arg(long)]
    pub text: bool,

    /// Runtime threads: 1 runs everything on one current-thread runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Send pre-encoded masked frames to a plain TCP echo server (no
    /// handshake); to a TLS echo server, the same bytes over TLS, if the
    /// target is tls://host:port (the baseline for wss:// servers).
    #[arg(long, conflicts_with_all = ["broadcast", "idle"])]
    pub raw_tcp: bool,

    /// With --raw-tcp: mask every frame with a fresh key as it is written, as
    /// a WebSocket client must (against `tcp-echo --unmask`: the floor masking
    /// sets for any WebSocket implementation).
    #[arg(long, requires = "raw_tcp")]
    pub raw_mask: bool,

    /// Broadcast mode: the connections subscribe to URL and one publisher sends into it.
    #[arg(long, conflicts_with = "idle")]
    pub broadcast: bool,

    /// URL the publisher connects to in --broadcast and --sse modes (default: the same URL).
    #[arg(long)]
    pub publish_url: Option<String>,

    /// Messages per second the publisher sends in --broadcast and --sse modes (0: as fast as it can).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Publisher connections in --broadcast mode, each sending --rate / N
    /// (or as fast as it can): several publishers measure how many publishes
    /// per second the server (and its cluster engine) takes, with few
    /// subscribers reporting what was delivered.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub publishers: u32,

    /// More URLs the subscribers are spread over, round-robin with URL
    /// (--broadcast, --recovery-storm): subscribers on other nodes than the
    /// publisher's measure cross-node delivery. Repeatable.
    #[arg(long = "subscribe-url", value_name = "URL")]
    pub subscribe_urls: Vec<String>,

    /// Speak the pub/sub protocol on CHANNEL (a `kind = "pubsub"` route):
    /// subscribers subscribe to it, the publisher publishes to it (the route
    /// must let clients publish). Without it, --broadcast uses a room.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,

    /// Recovery storm on --channel: every connection subscribes, then
    /// unsubscribes; --backlog messages are published; then all resubscribe
    /// with `since` at once. Reports the time until all have recovered.
    #[arg(long, requires = "channel", conflicts_with_all = ["broadcast", "idle", "raw_tcp"])]
    pub recovery_storm: bool,

    /// Messages published while the storm's subscribers are away (the
    /// route's `history_size` must keep them).
    #[arg(long, default_value_t = 20, requires = "recovery_storm")]
    pub backlog: u64,
    /// SSE mode: URL is a pub/sub route with `sse = true` that lets clients
    /// publish to --channel (default `bench`); the connections read the channel first over
    /// WebSocket, then as Server-Sent Events, with the same publisher.
    #[arg(long, conflicts_with_all = ["idle", "broadcast", "raw_tcp", "compress"])]
    pub sse: bool,

    /// Idle mode: open the connections, exchange one message each, hold them, report memory.
    #[arg(long)]
    pub idle: bool,

    /// PID of the server process, to report its CPU use and resident memory.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Storm mode: open -c connections as fast as --connect-concurrency
    /// allows, close them, and open them all again at once (TLS sessions
    /// resumed); handshakes/s, handshake latency, the server's CPU per
    /// handshake (--server-pid), and the echo latency of --probes
    /// connections during the storm. URL is an echo route.
    #[arg(long, conflicts_with_all = ["broadcast", "idle", "sse", "recovery_storm", "raw_tcp", "http2"])]
    pub storm: bool,

    /// With --storm: connections that echo a message every 10 ms throughout.
    #[arg(long, default_value_t = 10, requires = "storm")]
    pub probes: usize,

    /// Trust this CA (or self-signed server) certificate, PEM, for wss://
    /// URLs and tls:// targets.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,

    /// For wss:// URLs: never resume a TLS session (every handshake full).
    #[arg(long)]
    pub no_tls_resumption: bool,

    /// Connection attempts in progress at once while connecting.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,

    /// Offer permessage-deflate (RFC 7692) with default settings; the summary
    /// counts the connections where the server accepted it.
    #[arg(long, conflicts_with = "raw_tcp")]
    pub compress: bool,

    /// Open the WebSockets over HTTP/2 (RFC 8441): ALPN `h2` for wss://,
    /// prior knowledge for ws://. The server must offer it (no fallback).
    #[arg(long, conflicts_with = "raw_tcp")]
    pub http2: bool,

    /// With --http2: WebSockets per HTTP/2 connection (1: one connection
    /// each, as over HTTP/1.1).
    #[arg(long, default_value_t = 1, requires = "http2", value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_streams: u32,

    /// Give up on the closing handshake of a connection after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    #[command(flatten)]
    pub soak: soak::SoakArgs,
}

impl BenchArgs {
    /// Messages each connection must complete, in count mode.
    fn quota(&self, index: usize) -> Option<u64> {
        let n = self.messages?;
        let c = self.connections as u64;
        let i = index as u64;
        Some(n / c + u64::from(i < n % c))
    }

    fn measure_for(&self) -> Duration {
        self.duration.unwrap_or(Duration::from_secs(10))
    }

    /// Where subscribers connect: URL, then every --subscribe-url.
    fn subscriber_urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.subscribe_urls.iter().cloned())
            .collect()
    }

    fn mode(&self) -> &'static str {
        let tls = raw::is_tls(&self.url);
        if self.raw_tcp && self.raw_mask {
            if tls {
                "raw-tls-masked"
            } else {
                "raw-tcp-masked"
            }
        } else if self.raw_tcp {
            if tls {
                "raw-tls"
            } else {
                "raw-tcp"
            }
        } else if self.recovery_storm {
            "recovery-storm"
        } else if self.broadcast {
            "broadcast"
        } else if self.sse {
            "sse"
        } else if self.idle {
            "idle"
        } else if self.storm {
            "storm"
        } else {
            "echo"
        }
    }
}

/// Parse `10s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 10s, 500ms or 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Run `tether bench` on its own runtime (blocking the calling thread).
pub fn run_blocking(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()?
    };
    if args.soak.soak {
        let report = runtime.block_on(soak::run(Arc::new(args.clone())))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        anyhow::ensure!(failed.is_empty(), "soak failed: {}", failed.join(", "));
        return Ok(());
    }
    anyhow::ensure!(
        args.channel.is_none() || args.broadcast || args.recovery_storm || args.sse,
        "--channel needs --broadcast, --recovery-storm or --sse"
    );
    init_tls(&args)?;
    if args.storm {
        let report = runtime.block_on(storm::run(Arc::new(args.clone())))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        anyhow::ensure!(report.errors == 0, "{} connections failed", report.errors);
        return Ok(());
    }
    if args.sse {
        let both = runtime.block_on(sse::run(Arc::new(args.clone())))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&both)?);
        } else {
            print!("{}", both.table());
        }
        return Ok(());
    }
    let summary = runtime.block_on(run(args.clone()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

/// Run the benchmark described by `args` on the current runtime.
pub async fn run(args: BenchArgs) -> anyhow::Result<Summary> {
    let args = Arc::new(args);
    match args.mode() {
        "raw-tcp" | "raw-tcp-masked" | "raw-tls" | "raw-tls-masked" => raw::run(args).await,
        "broadcast" => broadcast::run(args).await,
        "recovery-storm" => pubsub::storm(args).await,
        "idle" => idle::run(args).await,
        _ => echo::run(args).await,
    }
}

/// The TLS client settings of every wss:// connection of the run, built
/// once so that connections share one session cache (resumption).
static TLS: std::sync::OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> =
    std::sync::OnceLock::new();

/// Build [`TLS`] from `--cacert` and `--no-tls-resumption`.
fn init_tls(args: &BenchArgs) -> anyhow::Result<()> {
    let mut options = tether::tls::TlsOptions::new();
    if let Some(ca) = &args.cacert {
        options = options.ca_file(ca);
    }
    let mut config = (*options.build()?).clone();
    config.resumption = if args.no_tls_resumption {
        tokio_rustls::rustls::client::Resumption::disabled()
    } else {
        // Room for every connection of a storm to resume.
        tokio_rustls::rustls::client::Resumption::in_memory_sessions(args.connections.max(256))
    };
    let _ = TLS.set(Arc::new(config));
    Ok(())
}

/// A client for `url` with the run's WebSocket and TLS settings.
fn client_builder(args: &BenchArgs, url: &str) -> ClientBuilder {
    let builder = ClientBuilder::new(url).config(client_config(args));
    match TLS.get() {
        Some(tls) => builder.tls_config(tls.clone()),
        None => builder,
    }
}

/// Client settings that accept whatever size is being measured.
fn client_config(args: &BenchArgs) -> WebSocketConfig {
    let defaults = WebSocketConfig::default();
    let limit = args.size.max(defaults.protocol.max_message_size);
    let deflate = args
        .compress
        .then(tether::proto::deflate::DeflateConfig::default);
    // Keep `depth` messages queued without waiting on the socket.
    let window = args.size.saturating_mul(args.depth as usize + 1);
    let write_buffer_limit = defaults.write_buffer_limit.max(window);
    defaults
        .with_protocol(
            tether::proto::Config::default()
                .with_max_message_size(limit)
                .with_max_frame_size(limit)
                .with_deflate(deflate),
        )
        .with_close_timeout(args.close_timeout)
        .with_write_buffer_limit(write_buffer_limit)
}

/// Open `args.connections` WebSocket connections to `url`, at most
/// `connect_concurrency` at a time (a burst of thousands would overflow the
/// server's accept backlog and stall on SYN retransmits). Failures are
/// counted, not fatal. Also returns how many connections agreed to
/// permessage-deflate.
async fn connect_all(
    args: &Arc<BenchArgs>,
    url: &str,
    errors: &stats::Errors,
) -> (Vec<(usize, WebSocket<BenchStream>)>, u64) {
    connect_over(args, &[url.to_owned()], errors).await
}

/// [`connect_all`] spread over `urls`: connection `i` goes to
/// `urls[i % urls.len()]` (with `--http2-streams`, the streams of one
/// HTTP/2 connection go to its first one's).
async fn connect_over(
    args: &Arc<BenchArgs>,
    urls: &[String],
    errors: &stats::Errors,
) -> (Vec<(usize, WebSocket<BenchStream>)>, u64) {
    let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    // Over HTTP/2, one task per connection opens its streams in turn.
    let per = if args.http2 {
        args.http2_streams as usize
    } else {
        1
    };
    for first in (0..args.connections).step_by(per) {
        let limit = limit.clone();
        let builder = client_builder(args, &urls[first % urls.len()]);
        let ids = first..(first + per).min(args.connections);
        let http2 = args.http2;
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            if !http2 {
                return vec![(first, builder.connect_http1().await)];
            }
            let connection = match Http2Connection::connect(&builder).await {
                Ok(c) => c,
                Err(e) => return vec![(first, Err(e))],
            };
            let mut opened = Vec::with_capacity(ids.len());
            for i in ids {
                let result = connection
                    .open_as(builder.clone(), ClientStream::Http2)
                    .await;
                opened.push((i, result));
            }
            opened
        });
    }
    let mut out = Vec::with_capacity(args.connections);
    let mut compressed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(opened) => {
                for (i, result) in opened {
                    match result {
                        Ok((ws, response)) => {
                            compressed += u64::from(deflate_accepted(&response));
                            out.push((i, ws));
                        }
                        Err(e) => errors.record(format!("connect: {e}")),
                    }
                }
            }
            Err(e) => errors.record(format!("connect task: {e}")),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    (out, compressed)
}

/// The transport of a benchmark's WebSocket: HTTP/1.1 (TCP or TLS) or a
/// stream of an HTTP/2 connection (`--http2`).
pub(super) type BenchStream = ClientStream;

/// The server's handshake response agreed to permessage-deflate.
fn deflate_accepted(response: &http::Response<()>) -> bool {
    response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"))
}

/// Messages received so far by all connections (for the progress display).
#[derive(Default)]
struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The progress display; [`ProgressDisplay::finish`] stops it and clears the bar.
struct ProgressDisplay {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressDisplay {
    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Show progress until finished: a bar on a terminal, plain lines otherwise.
fn spawn_progress(progress: Arc<Progress>, total: Option<Duration>) -> ProgressDisplay {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let bar = tty.then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t.as_millis() as u64),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        let tick = if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let mut last = (0u64, 0u64, Instant::now());
        let mut interval = tokio::time::interval(tick);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = &mut stopped => break,
            }
            let m = progress.messages.load(Ordering::Relaxed);
            let b = progress.bytes.load(Ordering::Relaxed);
            let now = Instant::now();
            let dt = now.duration_since(last.2).as_secs_f64().max(1e-9);
            let rate = (m - last.0) as f64 / dt;
            let mbps = (b - last.1) as f64 / dt / 1e6;
            last = (m, b, now);
            let line = format!(
                "{} msgs, {}/s, {mbps:.1} MB/s",
                report::human(m as f64),
                report::human(rate)
            );
            match &bar {
                Some(bar) => {
                    bar.set_message(line);
                    bar.set_position(start.elapsed().as_millis() as u64);
                }
                // Lines go to stderr, so --json output on stdout stays parseable.
                None => eprintln!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64()),
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    ProgressDisplay { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn quota_spreads_the_remainder_over_the_first_connections() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: BenchArgs,
        }
        let t = T::parse_from(["t", "ws://x/echo", "-c", "3", "-n", "10"]);
        let q: Vec<_> = (0..3).map(|i| t.a.quota(i).unwrap()).collect();
        assert_eq!(q, [4, 3, 3]);
    }
}
