//! `tether serve`: the server people run.
//!
//! With no arguments it serves a demo on `http://127.0.0.1:8080`: a page
//! with a chat room and a live ticker, plus `/echo`. A TOML file
//! (`--config`) describes listeners, virtual hosts and routes; see
//! [`config`] for the format and `--print-config` for the effective one.
//!
//! Each connection ([`accept`]): optional PROXY protocol header
//! ([`proxy_addr`]) and TLS ([`tls`]), then the request head is read with
//! the protocol core's bounded parser. The `Host` check ([`policy`]) comes
//! first, for every request. WebSocket upgrades ([`upgrade`]) are decided
//! by [`policy::admit`] (route, origin, auth, limits) and run as a
//! [`session`] of their route's handler ([`echo`], [`room`], [`pubsub`],
//! [`exec`]); other requests are plain HTTP ([`http`]), with keep-alive.
//! A listener with `http2 = true` also speaks HTTP/2 ([`http2`]): the same
//! requests through the same functions, WebSockets as extended CONNECT
//! streams ([`upgrade_h2`]) through the same admission and sessions.
//! Refused requests always get an HTTP answer, counted in `/metrics` by
//! reason ([`metrics`]). What a connection serves with is one [`state`]
//! generation; how it ends is its [`close`] summary.
//!
//! Shutdown (SIGINT/SIGTERM): stop accepting, close every WebSocket with
//! 1001, wait at most `limits.shutdown_timeout`.
//!
//! Reload (SIGHUP): read and validate the configuration and its TLS files
//! again; new connections use it, open ones keep theirs ([`reload`]).

mod accept;
mod admin;
mod auth;
mod body;
// The server's routes do not use the cluster engine: only its tests do.
mod close;
#[cfg_attr(not(test), allow(dead_code))]
mod cluster;
pub mod config;
mod echo;
mod engine;
mod exec;
mod http;
mod http2;
mod hub;
mod logsafe;
mod metrics;
mod policy;
mod presence;
mod procfs;
mod proxy_addr;
mod pubsub;
mod query;
mod reload;
mod room;
mod session;
mod shutdown;
mod signals;
mod sse;
mod state;
mod tls;
mod transport;
mod upgrade;
mod upgrade_h2;

pub use config::ServeArgs;

use config::{HostRule, ListenerConfig, RawConfig, ServerConfig};
use metrics::Metrics;
use policy::ConnLimiter;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// The annotated reference configuration (`--example-config`).
const EXAMPLE_CONFIG: &str = include_str!("assets/example.toml");

/// Run the server until SIGINT/SIGTERM; SIGHUP reloads the configuration.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.example_config {
        print!("{}", EXAMPLE_CONFIG);
        return Ok(());
    }
    let raw = load_raw(&args)?;
    if args.print_config {
        print!("{}", raw.to_toml());
        return Ok(());
    }
    let (config, acceptors) = prepare(&raw)?;
    if args.check_config {
        println!("{}", summary(&config));
        return Ok(());
    }
    let mut signals = signals::Signals::install()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = reload::Shared {
        metrics: Arc::new(Metrics::default()),
        limiter: ConnLimiter::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        ),
        http_limiter: ConnLimiter::new(
            config.limits.max_http_connections,
            config.limits.max_http_connections_per_ip,
        ),
        shutdown: shutdown_rx,
        active: Arc::new(AtomicUsize::new(0)),
        budget: hub::Budget::new(config.limits.max_queued_bytes),
    };
    let state = reload::build(&shared, config, acceptors, None);
    // Bind everything before announcing anything.
    let mut bound = Vec::new();
    for (i, l) in state.config.listeners.iter().enumerate() {
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", l.addr))?;
        bound.push((i, listener));
    }
    let admin = match state.config.admin.addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (`admin.addr`): {e}"))?,
        ),
        None => None,
    };
    warn_risky_routes(&state.config);
    for (i, listener) in &bound {
        let addr = listener.local_addr()?;
        announce(
            &state.config.listeners[*i],
            addr,
            state.acceptors[*i].is_some(),
            &state.config,
            args.config.is_none() && args.command.is_empty(),
            args.publish_token.is_none(),
            &raw,
        );
    }
    let live = Arc::new(reload::Live::new(state, args, raw));
    let mut tasks = Vec::new();
    for (i, listener) in bound {
        tasks.push(tokio::spawn(accept::accept_loop(live.clone(), i, listener)));
    }
    if let Some(listener) = admin {
        let addr = listener.local_addr()?;
        println!("admin listening on http://{addr}");
        let _ = std::io::stdout().flush();
        info!("/metrics and /healthz on http://{addr} (`admin.addr`) only");
        tasks.push(tokio::spawn(admin::accept_loop(live.clone(), listener)));
    }
    while signals.next().await == signals::Request::Reload {
        live.reload();
    }
    info!("shutting down: closing WebSocket connections with 1001");
    shutdown::signal_shutdown(&shutdown_tx);
    for t in &tasks {
        t.abort();
    }
    let state = live.state();
    let deadline = Instant::now() + state.config.limits.shutdown_timeout;
    while state.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.active.load(Ordering::Acquire);
    if left > 0 {
        warn!("{left} connections still open after the shutdown timeout; exiting anyway");
    } else {
        info!("all connections closed");
    }
    Ok(())
}

/// Read the configuration the flags point at (or the built-in one), with
/// the flags applied: what `--print-config` prints.
fn load_raw(args: &ServeArgs) -> anyhow::Result<RawConfig> {
    if args.binary && args.command.is_empty() {
        anyhow::bail!(
            "--binary applies to a program given after `--` (tether serve --binary -- PROGRAM)"
        );
    }
    Ok(match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None if !args.command.is_empty() => RawConfig::program(args.command.clone(), args.binary),
        None => RawConfig::builtin(args.publish_token.clone().unwrap_or_else(random_token)),
    }
    .with_args(args))
}

/// Validate an effective configuration and load what it refers to (TLS
/// certificates), as starting needs: what `--check-config` checks.
fn prepare(
    raw: &RawConfig,
) -> anyhow::Result<(ServerConfig, Vec<Option<tokio_rustls::TlsAcceptor>>)> {
    let config =
        ServerConfig::from_raw(raw).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let acceptors = config
        .listeners
        .iter()
        .map(|l| match &l.tls {
            Some((cert, key)) => tls::acceptor(cert, key, l.http2).map(Some),
            None => Ok(None),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((config, acceptors))
}

/// One line describing a valid configuration (`--check-config`).
fn summary(config: &ServerConfig) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| format!("{}{}", l.addr, if l.tls.is_some() { " (TLS)" } else { "" }))
        .collect();
    let admin = match config.admin.addr {
        Some(a) => format!(", metrics on {a}"),
        None => String::new(),
    };
    format!(
        "configuration OK: {} ({}), {}, {}{admin}",
        plural(listeners.len(), "listener"),
        listeners.join(", "),
        plural(config.route_count, "route"),
        plural(config.vhosts.len(), "virtual host"),
    )
}

/// Warn about routes whose settings together defeat their purpose.
fn warn_risky_routes(config: &ServerConfig) {
    for r in config.all_routes() {
        let cookie = r.auth.as_ref().is_some_and(|a| a.cookie.is_some());
        if cookie && r.origins == tether::OriginPolicy::Any {
            warn!("{}: cookie auth with origins = [\"*\"]: a page on any site can open this WebSocket with a visitor's cookie (cross-site WebSocket hijacking); list the allowed `origins`, or drop `auth.cookie`", r.name);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn announce(
    l: &ListenerConfig,
    addr: SocketAddr,
    tls: bool,
    config: &ServerConfig,
    builtin: bool,
    random_token: bool,
    raw: &RawConfig,
) {
    let scheme = if tls { "https" } else { "http" };
    // A stable, parseable line on stdout (tests and scripts read it).
    println!("listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    let ws = if tls { "wss" } else { "ws" };
    info!("tether serve listening on {scheme}://{addr}");
    if builtin {
        info!("demo page: {scheme}://{addr}/   echo: {ws}://{addr}/echo   chat: {ws}://{addr}/chat/ROOM   pub/sub: {ws}://{addr}/pubsub");
        announce_publish_token(raw, random_token, &format!("{scheme}://{addr}/api/publish"));
    } else {
        for r in config.all_routes() {
            info!(route = %r.path, kind = r.kind.name(), "route");
        }
    }
    if l.hosts == HostRule::Any {
        warn!("{addr}: no allowed host names configured: any Host header is accepted (set `allowed_hosts` to defend against DNS rebinding)");
    }
}

/// How to publish into the demo. The token is a secret and never goes to
/// the log: a random one is shown once on stdout when that is a terminal
/// (someone is watching), else the log says how to choose one.
fn announce_publish_token(raw: &RawConfig, random: bool, url: &str) {
    let Some(tok) = raw.route.iter().find_map(|r| r.publish_token.as_deref()) else {
        return;
    };
    let body = r#"-d '{"channel":"news","data":"hi"}'"#;
    if !random {
        info!("publish: curl -H \"Authorization: Bearer $TETHER_PUBLISH_TOKEN\" {body} {url} (the token set with --publish-token or TETHER_PUBLISH_TOKEN)");
    } else if std::io::stdout().is_terminal() {
        println!("publish: curl -H 'Authorization: Bearer {tok}' {body} {url}");
        let _ = std::io::stdout().flush();
    } else {
        info!("publish: POST {url} needs a bearer token; a random one was generated and is not logged: set one with --publish-token or TETHER_PUBLISH_TOKEN");
    }
}

/// 128 random bits as hex, from `rand`'s CSPRNG (seeded from the OS).
fn random_token() -> String {
    let buf: [u8; 16] = rand::random();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
