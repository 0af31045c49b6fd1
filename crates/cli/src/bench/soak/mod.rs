//! Soak mode (`tether bench --soak ws://HOST:PORT --server-pid PID`): many
//! connections with churn against one `tether serve` for a long time, then
//! checks that nothing leaked.
//!
//! Each of `-c` slots opens a connection of a kind drawn from `--mix`, runs
//! it for a random lifetime (uniform around `--lifetime`), ends it and opens
//! the next, until `-t` is over:
//!
//! * **echo**: messages of mixed sizes and types, each checked against its echo;
//! * **room**: a member of one of `--rooms` rooms, talking and listening;
//! * **pubsub**: one to three channels, publishing (`--client-publish`) and
//!   swapping channels; an HTTP publisher (`--publish-token`) feeds channels;
//! * **exec**: lines through the exec route's program (`cat`), checked;
//! * **slow**: a reader that stops reading (after flooding an echo, on the
//!   busy channel, or in a room), then drops the socket or drains and closes;
//! * **reset**: talks, then drops the socket with a reset (SO_LINGER 0) or in
//!   the middle of a frame (on echo, a room, or an exec session).
//!
//! The server's RSS and open descriptors are sampled every
//! `--sample-every`; after the load its connections and child processes
//! must be gone within `--drain-timeout`, and its `/metrics` close counters
//! must account for every connection (see [`conn`] for how). The verdicts
//! are in [`report`]; any failed check makes the run fail.

mod conn;
mod probe;
mod report;

use super::parse_duration;
use super::BenchArgs;
use conn::{Slot, Tally, HOT_CHANNEL};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
pub use report::SoakReport;
use report::{Sample, Totals};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::WebSocketConfig;
use tokio::sync::Semaphore;

/// HTTP publishes waiting for their answer at once.
const PUBLISHES_IN_FLIGHT: usize = 16;

/// Options of `tether bench --soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Soak mode: -c connections with churn for -t against a `tether serve`
    /// at URL (ws://HOST:PORT), then leak checks (needs --server-pid).
    #[arg(long, conflicts_with_all = ["raw_tcp", "broadcast", "idle"], requires = "server_pid")]
    pub soak: bool,

    /// Share of each kind of connection (echo, room, pubsub, exec, slow, reset).
    #[arg(long, default_value = "echo=35,room=15,pubsub=20,exec=2,slow=8,reset=20",
          value_parser = Mix::parse, requires = "soak")]
    pub mix: Mix,

    /// Mean lifetime of a connection (each lives 0.1x to 1.9x of it).
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "soak")]
    pub lifetime: Duration,

    /// Mean time between two messages of a connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "soak")]
    pub interval: Duration,

    /// Echo route.
    #[arg(long, default_value = "/echo", requires = "soak")]
    pub echo_path: String,

    /// Room route; `{room}` is replaced by a room name.
    #[arg(long, default_value = "/chat/{room}", requires = "soak")]
    pub room_path: String,

    /// Rooms the room connections spread over.
    #[arg(long, default_value_t = 200, requires = "soak")]
    pub rooms: usize,

    /// Pub/sub route.
    #[arg(long, default_value = "/pubsub", requires = "soak")]
    pub pubsub_path: String,

    /// Channels the pub/sub connections spread over.
    #[arg(long, default_value_t = 200, requires = "soak")]
    pub channels: usize,

    /// Pub/sub connections also publish over WebSocket (the route must allow it).
    #[arg(long, requires = "soak")]
    pub client_publish: bool,

    /// Exec route (a program that echoes lines, such as `cat`).
    #[arg(long, default_value = "/exec", requires = "soak")]
    pub exec_path: String,

    /// Bearer token of the HTTP publish endpoint; without it nothing is published over HTTP.
    #[arg(long, requires = "soak")]
    pub publish_token: Option<String>,

    /// HTTP publish endpoint.
    #[arg(long, default_value = "/api/publish", requires = "soak")]
    pub publish_path: String,

    /// HTTP publishes per second (half of them to the busy channel of the slow readers).
    #[arg(long, default_value_t = 20, requires = "soak")]
    pub publish_rate: u64,

    /// How often the server's memory, descriptors and connections are sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "soak")]
    pub sample_every: Duration,

    /// Samples before this are warm-up (default: four mean lifetimes, at
    /// least a fifth of -t, at most half of it).
    #[arg(long, value_parser = parse_duration, requires = "soak")]
    pub warmup: Option<Duration>,

    /// Growth (percent) allowed between the first and last third of the
    /// samples after warm-up, for RSS and for descriptors.
    #[arg(long, default_value_t = 10.0, requires = "soak")]
    pub tolerance: f64,

    /// After the load: time the server has to close every connection and reap every child.
    #[arg(long, default_value = "20s", value_parser = parse_duration, requires = "soak")]
    pub drain_timeout: Duration,

    /// The server's metrics endpoint.
    #[arg(long, default_value = "/metrics", requires = "soak")]
    pub metrics_path: String,

    /// Seed of the random choices (slot i uses seed + i).
    #[arg(long, default_value_t = 1, requires = "soak")]
    pub seed: u64,
}

/// Kinds of connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Echo,
    Room,
    Pubsub,
    Exec,
    Slow,
    Reset,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Echo,
        Kind::Room,
        Kind::Pubsub,
        Kind::Exec,
        Kind::Slow,
        Kind::Reset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Room => "room",
            Kind::Pubsub => "pubsub",
            Kind::Exec => "exec",
            Kind::Slow => "slow",
            Kind::Reset => "reset",
        }
    }
}

/// Weights of the kinds, in [`Kind::ALL`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix([u32; Kind::ALL.len()]);

impl Mix {
    /// `echo=35,room=15,...`: kinds left out get no connections.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut w = [0u32; Kind::ALL.len()];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` in --mix is not KIND=WEIGHT"))?;
            let kind = Kind::ALL
                .iter()
                .position(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown kind `{name}` in --mix (echo, room, pubsub, exec, slow, reset)"
                    )
                })?;
            w[kind] = weight.trim().parse().map_err(|_| {
                format!("weight `{weight}` of {name} in --mix is not a whole number")
            })?;
        }
        if w.iter().all(|&x| x == 0) {
            return Err("--mix gives every kind a weight of 0".into());
        }
        Ok(Mix(w))
    }

    fn pick(&self, rng: &mut SmallRng) -> Kind {
        let total: u32 = self.0.iter().sum();
        let mut x = rng.random_range(0..total);
        for (kind, &w) in Kind::ALL.iter().zip(&self.0) {
            if x < w {
                return *kind;
            }
            x -= w;
        }
        unreachable!("x < total")
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .zip(&self.0)
            .filter(|(_, &w)| w > 0)
            .map(|(k, w)| format!("{}={w}", k.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Where and how connections go.
pub struct Targets {
    pub echo: String,
    pub room: String,
    pub rooms: usize,
    pub pubsub: String,
    pub channels: usize,
    pub ws_publish: bool,
    pub exec: String,
    pub interval: Duration,
    pub config: WebSocketConfig,
    /// Handshakes in progress at once.
    pub connecting: Semaphore,
}

/// `ws://HOST:PORT[/...]` -> (`HOST:PORT`, port).
fn authority_of(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("`{url}` is not a URL: {e}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("ws"),
        "--soak needs a ws:// URL of the server (got `{url}`)"
    );
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("`{url}` has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    Ok((authority.as_str().to_owned(), port))
}

/// Warm-up: long enough for every slot to have replaced its connection a
/// few times (slow readers, the longest-lived and largest, reach their
/// steady share only then), and at least a fifth of the run; at most half
/// of it, so that the checks have samples to compare.
fn default_warmup(duration: Duration, lifetime: Duration) -> Duration {
    (lifetime * 4).max(duration / 5).min(duration / 2)
}

/// Read the server's state now.
fn sample(pid: u32, port: u16, t: f64, phase: &'static str, tally: &Tally) -> Sample {
    Sample {
        t,
        phase,
        open: tally.open.load(Relaxed),
        server_sockets: probe::server_sockets(port),
        rss_kib: super::stats::rss_kib(&pid.to_string()),
        fds: probe::fd_count(pid),
        children: probe::child_count(pid),
    }
}

/// Run the soak; the report's checks say whether it passed.
pub async fn run(args: Arc<BenchArgs>) -> anyhow::Result<SoakReport> {
    let soak = &args.soak;
    let pid = args
        .server_pid
        .ok_or_else(|| anyhow::anyhow!("--soak needs --server-pid"))?;
    let (authority, port) = authority_of(&args.url)?;
    let duration = args.measure_for();
    let warmup = soak
        .warmup
        .unwrap_or_else(|| default_warmup(duration, soak.lifetime));
    let base = format!("ws://{authority}");
    let config = WebSocketConfig::default().with_close_timeout(args.close_timeout);
    let targets = Arc::new(Targets {
        echo: format!("{base}{}", soak.echo_path),
        room: format!("{base}{}", soak.room_path),
        rooms: soak.rooms,
        pubsub: format!("{base}{}", soak.pubsub_path),
        channels: soak.channels,
        ws_publish: soak.client_publish,
        exec: format!("{base}{}", soak.exec_path),
        interval: soak.interval,
        config,
        connecting: Semaphore::new(args.connect_concurrency as usize),
    });
    let tally = Arc::new(Tally::default());
    let metrics_before = probe::metrics(&authority, &soak.metrics_path)
        .await
        .map_err(|e| anyhow::anyhow!("reading the server's metrics before the load: {e}"))?;
    let start = Instant::now();
    let deadline = start + duration;
    let samples = Arc::new(Mutex::new(vec![sample(pid, port, 0.0, "before", &tally)]));
    eprintln!(
        "soak: {} connections for {duration:?} against {authority} (server pid {pid}), mix {}",
        args.connections, soak.mix
    );

    let sampler = {
        let (samples, tally) = (samples.clone(), tally.clone());
        let every = soak.sample_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((start + every).into(), every);
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    return;
                }
                let s = sample(pid, port, start.elapsed().as_secs_f64(), "load", &tally);
                eprintln!("{}", s.progress_line(&tally));
                samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        })
    };
    let publisher = soak.publish_token.clone().map(|token| {
        let (authority, path) = (authority.clone(), soak.publish_path.clone());
        let (rate, channels) = (soak.publish_rate.max(1), soak.channels.max(1));
        tokio::spawn(http_publisher(
            authority, path, token, rate, channels, deadline,
        ))
    });

    let mut slots = tokio::task::JoinSet::new();
    for id in 0..args.connections {
        let (targets, tally, args) = (targets.clone(), tally.clone(), args.clone());
        slots.spawn(async move {
            let mut slot = Slot {
                id,
                rng: SmallRng::seed_from_u64(args.soak.seed.wrapping_add(id as u64)),
                targets: &targets,
                tally: &tally,
                deadline,
                seq: 0,
            };
            while Instant::now() < deadline {
                let kind = args.soak.mix.pick(&mut slot.rng);
                let lifetime = args.soak.lifetime.mul_f64(slot.rng.random_range(0.1..1.9));
                slot.run_one(kind, lifetime).await;
            }
        });
    }
    // Connections end by the deadline; a slow reader's close may take a while more.
    let finish_by = deadline + conn::SLOW_CLOSE_LIMIT + Duration::from_secs(30);
    let all_done = async { while slots.join_next().await.is_some() {} };
    let stuck = match tokio::time::timeout_at(finish_by.into(), all_done).await {
        Ok(()) => 0,
        Err(_) => {
            let n = slots.len();
            slots.abort_all();
            n
        }
    };
    let _ = sampler.await;
    let publishes = match publisher {
        Some(p) => p.await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let load_ended = start.elapsed().as_secs_f64();
    samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sample(pid, port, load_ended, "load end", &tally));

    // Everything the generator opened is closed: the server must follow.
    let drain_started = Instant::now();
    let drained = loop {
        let gone = probe::server_sockets(port) == 0 && probe::child_count(pid) == 0;
        if gone {
            break Some(drain_started.elapsed());
        }
        if drain_started.elapsed() >= soak.drain_timeout {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let after = sample(pid, port, start.elapsed().as_secs_f64(), "drained", &tally);
    eprintln!("{}", after.progress_line(&tally));
    let metrics_after = probe::metrics(&authority, &soak.metrics_path).await;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));

    let totals = Totals::from_tally(&tally, stuck, publishes);
    Ok(SoakReport::build(report::Inputs {
        args: &args,
        duration,
        warmup,
        totals,
        samples,
        after,
        drained,
        metrics_before,
        metrics_after,
    }))
}

/// POST to the publish endpoint `rate` times a second until `deadline`
/// (up to [`PUBLISHES_IN_FLIGHT`] at once, so a slow answer does not lower
/// the rate): half to the busy channel the slow readers sit on (2 KiB
/// each), half to the others. Returns the answers by HTTP status (`error`
/// for none).
async fn http_publisher(
    authority: String,
    path: String,
    token: String,
    rate: u64,
    channels: usize,
    deadline: Instant,
) -> BTreeMap<String, u64> {
    let mut rng = SmallRng::seed_from_u64(rate);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = Arc::new(Semaphore::new(PUBLISHES_IN_FLIGHT));
    let (authority, path) = (Arc::new(authority), Arc::new(path));
    let auth = Arc::new(format!("Bearer {token}"));
    let mut requests = tokio::task::JoinSet::new();
    let mut answers = BTreeMap::new();
    let mut count = |joined: Result<String, tokio::task::JoinError>| {
        let key = joined.unwrap_or_else(|_| "error".to_owned());
        *answers.entry(key).or_insert(0u64) += 1;
    };
    let mut n = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let body = if n.is_multiple_of(2) {
            serde_json::json!({"channel": HOT_CHANNEL, "data": {"n": n, "pad": "x".repeat(2048)}})
        } else {
            let c = rng.random_range(0..channels);
            serde_json::json!({"channel": format!("soak-{c}"), "data": {"n": n}})
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (authority, path, auth) = (authority.clone(), path.clone(), auth.clone());
        requests.spawn(async move {
            let _permit = permit;
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let body = body.to_string();
            let answer = probe::http_request(
                &authority,
                "POST",
                &path,
                &headers,
                body.as_bytes(),
                Duration::from_secs(10),
            )
            .await;
            match answer {
                Ok((status, _)) => status.to_string(),
                Err(_) => "error".to_owned(),
            }
        });
        while let Some(joined) = requests.try_join_next() {
            count(joined);
        }
    }
    while let Some(joined) = requests.join_next().await {
        count(joined);
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_names_its_errors() {
        let m = Mix::parse("echo=3, reset=1").unwrap();
        assert_eq!(m.0, [3, 0, 0, 0, 0, 1]);
        assert_eq!(m.to_string(), "echo=3,reset=1");
        assert!(Mix::parse("echo").unwrap_err().contains("KIND=WEIGHT"));
        assert!(Mix::parse("chat=1")
            .unwrap_err()
            .contains("unknown kind `chat`"));
        assert!(Mix::parse("echo=x").unwrap_err().contains("whole number"));
        assert!(Mix::parse("echo=0").unwrap_err().contains("weight of 0"));
    }

    #[test]
    fn mix_picks_only_kinds_with_weight_in_proportion() {
        let m = Mix::parse("echo=3,exec=1").unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let picks: Vec<Kind> = (0..4000).map(|_| m.pick(&mut rng)).collect();
        let echo = picks.iter().filter(|&&k| k == Kind::Echo).count();
        let exec = picks.iter().filter(|&&k| k == Kind::Exec).count();
        assert_eq!(echo + exec, 4000);
        assert!((2800..3200).contains(&echo), "{echo}");
    }

    #[test]
    fn warmup_covers_a_few_lifetimes_within_a_fifth_and_a_half_of_the_run() {
        let s = Duration::from_secs;
        assert_eq!(default_warmup(s(600), s(30)), s(120));
        assert_eq!(default_warmup(s(60), s(8)), s(30));
        assert_eq!(default_warmup(s(600), s(5)), s(120));
        assert_eq!(default_warmup(s(10), s(30)), s(5));
    }

    #[test]
    fn authority_comes_from_a_ws_url() {
        assert_eq!(
            authority_of("ws://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".to_owned(), 8080)
        );
        assert!(authority_of("wss://127.0.0.1:8080").is_err());
    }
}
