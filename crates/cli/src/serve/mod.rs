//! `tether serve`: the server people run.
//!
//! With no arguments it serves a demo on `http://127.0.0.1:8080`: a page
//! with a chat room and a live ticker, plus `/echo`. A TOML file
//! (`--config`) describes listeners, virtual hosts and routes; see
//! [`config`] for the format and `--print-config` for the effective one.
//!
//! Each connection: optional TLS ([`tls`]), then the request head is read
//! with the protocol core's bounded parser. The `Host` check ([`policy`])
//! comes first, for every request. WebSocket upgrades then go through the
//! route's policy (origin, auth, connection limits) to their handler
//! ([`echo`], [`room`], [`pubsub`], [`exec`]); other requests are plain
//! HTTP ([`http`]), with keep-alive. Refused requests always get an HTTP
//! answer, counted in `/metrics` by reason ([`metrics`]).
//!
//! Shutdown (SIGINT/SIGTERM): stop accepting, close every WebSocket with
//! 1001, wait at most `limits.shutdown_timeout`.
//!
//! Reload (SIGHUP): read and validate the configuration and its TLS files
//! again; new connections use it, open ones keep theirs ([`reload`]).

mod admin;
mod auth;
// The server's routes do not use the cluster engine: only its tests do.
#[cfg_attr(not(test), allow(dead_code))]
mod cluster;
pub mod config;
mod echo;
mod engine;
mod exec;
mod http;
mod hub;
mod logsafe;
mod metrics;
mod policy;
mod procfs;
mod proxy_addr;
mod pubsub;
mod reload;
mod room;
mod session;
mod signals;
mod sse;
mod stream;
mod tls;

pub use config::ServeArgs;

use auth::AuthError;
use config::{HostRule, ListenerConfig, OriginRule, RawConfig, Route, RouteKind, ServerConfig};
use hub::Hub;
use logsafe::esc;
use metrics::{Metrics, RouteMetrics};
use policy::{ConnLimiter, Grants, LimitError};
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::{Conn, Transport};
use tether::{Incoming, Reject, ServerBuilder};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// What a connection serves with: one generation of the configuration
/// (made at startup and by each reload, see [`reload`]; a connection keeps
/// the one it started with) and handles on what all generations share.
pub struct State {
    config: ServerConfig,
    builder: ServerBuilder,
    /// Per listener, in `config.listeners` order: its TLS acceptor.
    acceptors: Vec<Option<tokio_rustls::TlsAcceptor>>,
    /// Per route id: the hub of room and pubsub routes.
    hubs: Vec<Option<Arc<Hub>>>,
    /// Per route id: its counters.
    route_metrics: Vec<Arc<RouteMetrics>>,
    metrics: Arc<Metrics>,
    limiter: Arc<ConnLimiter>,
    /// Per route id: the engine of pubsub routes.
    engines: Vec<Option<Arc<dyn engine::Engine>>>,
    /// Connections in the HTTP phase (plain HTTP, keep-alive, handshakes).
    http_limiter: Arc<ConnLimiter>,
    shutdown: watch::Receiver<bool>,
    /// WebSocket connections being served (for the shutdown wait).
    active: Arc<AtomicUsize>,
    /// Bytes held by every room and channel.
    budget: Arc<hub::Budget>,
}

impl State {
    /// The parts every generation shares.
    fn shared(&self) -> reload::Shared {
        reload::Shared {
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
            http_limiter: self.http_limiter.clone(),
            shutdown: self.shutdown.clone(),
            active: self.active.clone(),
            budget: self.budget.clone(),
        }
    }
}

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
        tasks.push(tokio::spawn(accept_loop(live.clone(), i, listener)));
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
    session::signal_shutdown(&shutdown_tx);
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
            Some((cert, key)) => tls::acceptor(cert, key).map(Some),
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
        if cookie && r.origins == OriginRule::Any {
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

/// 128 random bits as hex, from the OS.
fn random_token() -> String {
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok();
    if !ok {
        // Not a secret worth much, but never a constant.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        buf = (t ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Accept on listener `idx`; each connection is served with the
/// generation current when it was accepted.
async fn accept_loop(live: Arc<reload::Live>, idx: usize, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let state = live.state();
                state.metrics.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                let acceptor = state.acceptors[idx].clone();
                tokio::spawn(handle_connection(state, idx, tcp, peer, acceptor));
            }
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn is_upgrade(req: &::http::Request<()>) -> bool {
    req.headers()
        .get_all(::http::header::UPGRADE)
        .iter()
        .any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
                })
                .unwrap_or(false)
        })
}

/// Most plain HTTP requests served on one connection.
const MAX_KEEPALIVE_REQUESTS: usize = 1000;

// Not `async fn`: its arguments would be stored twice (idle memory).
#[allow(clippy::manual_async_fn)]
fn handle_connection(
    state: Arc<State>,
    idx: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> impl Future<Output = ()> + Send {
    // Two phases, so that an open WebSocket's task holds only what its
    // session needs (idle memory per connection): the HTTP phase (TLS,
    // requests, routing, policy, handshake) runs boxed and is freed when it
    // hands over the WebSocket; the session then runs inline in the task.
    // (An `async move` block rather than an `async fn`: the arguments of an
    // `async fn` are stored twice in its future, as arguments and as locals.)
    async move {
        // No named local for the session: it would stay in this future
        // beside the session future's own copy.
        run_session(
            &state,
            Box::pin(http_phase(&state, idx, tcp, peer, acceptor)).await,
        )
        .await;
    }
}

/// Serve HTTP on a new connection until it upgrades to a WebSocket (the
/// session to run is returned) or ends (`None`).
async fn http_phase(
    state: &State,
    idx: usize,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Option<Session<'_>> {
    // Handshake latency counts from here, the task's start just after
    // accept (an `Instant` taken in the accept loop would be stored for the
    // connection's whole life: idle memory).
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let listener = &state.config.listeners[idx];
    // Held until the connection ends or becomes a WebSocket (which takes a
    // WebSocket slot). A trusted proxy's connection carries many clients:
    // it counts in the total only.
    let by_ip = (!proxy_addr::trusted(&listener.trusted_proxies, peer.ip())).then_some(peer.ip());
    let http_slot = match state.http_limiter.acquire_for(by_ip) {
        Ok(slot) => slot,
        Err(e) => {
            refuse_http_connection(state, listener, acceptor.is_some(), &mut tcp, e).await;
            return None;
        }
    };
    if listener.proxy_protocol {
        let trusted = &listener.trusted_proxies;
        if !trusted.is_empty() && !proxy_addr::trusted(trusted, peer.ip()) {
            info!(%peer, "refused: PROXY protocol from a peer not in listen[{idx}].trusted_proxies");
            return None;
        }
        let timeout = state.config.limits.handshake_timeout;
        // Boxed: the HTTP phase's future stays the size of its request reading.
        match Box::pin(proxy_addr::read_proxy_header(&mut tcp, timeout)).await {
            Ok(Some(client)) => peer = client,
            Ok(None) => {}
            Err(e) => {
                info!(%peer, "refused: {e} (listen[{idx}].proxy_protocol = true)");
                return None;
            }
        }
    }
    let tls = acceptor.is_some();
    let transport = match acceptor {
        None => Transport::Plain(tcp),
        Some(acc) => {
            match tokio::time::timeout(
                state.config.limits.handshake_timeout,
                Box::pin(acc.accept(tcp)),
            )
            .await
            {
                Ok(Ok(s)) => Transport::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    let mut conn = Conn::new(transport);
    let mut shutdown = state.shutdown.clone();
    for served in 0..MAX_KEEPALIVE_REQUESTS {
        // The request, response and upgrade futures are boxed, so that a
        // keep-alive connection waiting for its next request holds only the
        // reading state, not the largest of them.
        let read = Box::pin(state.builder.read_http_request(&mut conn));
        let result = if served == 0 {
            read.await
        } else {
            tokio::select! {
                r = read => r,
                _ = session::wait_shutdown(&mut shutdown) => return None,
            }
        };
        let (req, leftover) = match result {
            Ok(r) => r,
            Err(e) => {
                if served == 0 {
                    debug!(%peer, "bad request: {}", esc(&e.to_string()));
                }
                return None;
            }
        };
        // Framing first: a request whose end is ambiguous cannot be
        // followed by another on this connection.
        let length = match http::body_length(&req) {
            Ok(n) => n,
            Err((status, why)) => {
                info!(%peer, status = status.as_u16(), "refused: ambiguous or unsupported request framing");
                let r = http::Response::text(status, why);
                let _ = Box::pin(http::write_response(&mut conn, r, false, false)).await;
                let _ = conn.shutdown().await;
                return None;
            }
        };
        let host = req
            .headers()
            .get(::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // Per request: a proxy's keep-alive connection carries many clients.
        let client = proxy_addr::client_of(&listener.trusted_proxies, peer, tls, req.headers());
        if !policy::host_allowed(&listener.hosts, &host) {
            state.metrics.rejected("host");
            let peer = client.addr;
            info!(%peer, "refused (421): {}", policy::host_refusal(&listener.hosts, &host, idx));
            let r = http::Response::text(
                ::http::StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that Host name\n",
            );
            let _ = Box::pin(http::write_response(&mut conn, r, false, false)).await;
            let _ = conn.shutdown().await;
            return None;
        }
        let (name, _) = policy::split_host(&host);
        let routes = state.config.routes_for(&name);
        if let Some((route, sse)) = sse::route_for(routes, req.uri().path()) {
            let peer = client.addr;
            let served = sse::serve(state, conn, req, route, sse, peer, client.https, http_slot);
            Box::pin(served).await;
            return None;
        }
        if is_upgrade(&req) {
            let opened = Box::pin(open_websocket(
                state,
                conn,
                req,
                leftover,
                client.addr,
                routes,
                client.https,
            ))
            .await;
            if opened.is_some() {
                state.metrics.handshake_latency.observe(started.elapsed());
            }
            return opened;
        }
        match Box::pin(http::serve(state, &mut conn, req, length, leftover, routes)).await {
            Some(rest) => conn.unread(rest),
            None => {
                // Bounded: after a response timed out, a TLS close_notify
                // waits on the same peer that stopped reading.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
                return None;
            }
        }
    }
    None
}

/// A connection over `max_http_connections` (503) or
/// `max_http_connections_per_ip` (429): counted, answered with one
/// small write (bounded in time) where the listener speaks plain HTTP, and
/// closed. Nothing is read.
async fn refuse_http_connection(
    state: &State,
    listener: &ListenerConfig,
    tls: bool,
    tcp: &mut TcpStream,
    e: LimitError,
) {
    let (reason, answer): (_, &[u8]) = match e {
        LimitError::Total => (
            "limit_total",
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-type: text/plain\r\n\
              connection: close\r\ncontent-length: 21\r\n\r\ntoo many connections\n",
        ),
        LimitError::PerIp => (
            "limit_ip",
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 5\r\ncontent-type: text/plain\r\n\
              connection: close\r\ncontent-length: 39\r\n\r\ntoo many connections from your address\n",
        ),
    };
    state.metrics.http_refused(reason);
    if !tls && !listener.proxy_protocol {
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer)).await;
    }
}

/// Counts a WebSocket connection as active for the shutdown wait.
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted WebSocket and what its route's session needs.
struct Session<'a> {
    ws: tether::WebSocket<Conn>,
    route: &'a Route,
    capture: Option<String>,
    grants: Grants,
    /// For an exec route: the request the program is told about, and its
    /// process slot (boxed: other routes pay one pointer).
    exec: Option<Box<exec::Admitted<'a>>>,
    /// Held for its `Drop`: frees the connection-limit slot.
    _slot: policy::ConnSlot,
    peer: SocketAddr,
    path: String,
}

/// Route an upgrade request, apply the route's policy (origin, auth, limits)
/// and complete the handshake. Part of the HTTP phase, which is freed once
/// the session starts (see `handle_connection`).
async fn open_websocket<'a>(
    state: &'a State,
    conn: Conn,
    req: ::http::Request<()>,
    leftover: bytes::BytesMut,
    peer: SocketAddr,
    routes: &'a [Route],
    tls: bool,
) -> Option<Session<'a>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let found = routes
        .iter()
        .filter(|r| r.kind.is_websocket())
        .find_map(|r| {
            r.pattern
                .matches(&path)
                .map(|(caps, _)| (r, caps.first().map(|c| policy::percent_decode(c))))
        });
    let mut config = state.builder.get_config().clone();
    if let Some((
        Route {
            kind: RouteKind::Exec(_),
            ..
        },
        _,
    )) = &found
    {
        // The program's last output goes out before the Close reply.
        config.protocol.defer_close_reply = true;
    }
    let incoming = match Box::pin(Incoming::from_request(conn, req, leftover, config)).await {
        Ok(i) => i,
        Err(e) => {
            state.metrics.rejected("bad_handshake");
            info!(%peer, path = %esc(&path), "refused handshake: {}", esc(&e.to_string()));
            return None;
        }
    };
    // One log line per refusal: what was received and the setting that
    // decides.
    let reject = |reason: &'static str, detail: &str, r: Reject| {
        state.metrics.rejected(reason);
        info!(%peer, path = %esc(&path), status = r.status.as_u16(), "refused WebSocket: {reason}: {detail}");
        r
    };
    let Some((route, capture)) = found else {
        let r = reject(
            "not_found",
            "no WebSocket route matches the path",
            Reject::new(
                ::http::StatusCode::NOT_FOUND,
                "no WebSocket endpoint here\n",
            ),
        );
        let _ = Box::pin(incoming.reject(r)).await;
        return None;
    };
    if !policy::origin_allowed(&route.origins, incoming.origin(), incoming.host(), tls) {
        let origin = incoming.origin().unwrap_or("");
        let detail = policy::origin_refusal(&route.origins, origin, incoming.host(), &route.name);
        let r = reject(
            "origin",
            &detail,
            Reject::forbidden("cross-origin WebSocket connections are not allowed here\n"),
        );
        let _ = Box::pin(incoming.reject(r)).await;
        return None;
    }
    if let (RouteKind::Room, Some(room)) = (&route.kind, &capture) {
        if room.len() > config::MAX_NAME {
            let detail = format!(
                "the room name is {} bytes; at most {} (a route's `{{room}}` capture)",
                room.len(),
                config::MAX_NAME
            );
            let r = reject(
                "bad_room",
                &detail,
                Reject::new(
                    ::http::StatusCode::BAD_REQUEST,
                    format!("room names are at most {} bytes\n", config::MAX_NAME),
                ),
            );
            let _ = Box::pin(incoming.reject(r)).await;
            return None;
        }
    }
    let grants = match &route.auth {
        None => Grants::anonymous(),
        Some(auth) => {
            let token = auth::find_token(auth, incoming.request());
            match auth::check_token(auth, token.as_deref()) {
                Ok(g) => g,
                Err(e) => {
                    // The client learns only that its token failed; why is
                    // for the operator (an attacker would use it to probe).
                    let (detail, body) = match e {
                        AuthError::Missing => (
                            format!(
                                "no token (Authorization: Bearer, cookie or `{}` query parameter)",
                                auth.query_param
                            ),
                            "authentication required\n",
                        ),
                        AuthError::Invalid(why) => {
                            (format!("token refused: {}", esc(&why)), "invalid token\n")
                        }
                    };
                    let r = reject("auth", &detail, Reject::unauthorized(body));
                    let _ = Box::pin(incoming.reject(r)).await;
                    return None;
                }
            }
        }
    };
    let grants = match &route.kind {
        RouteKind::Pubsub { client_publish, .. } => grants.with_client_publish(client_publish),
        _ => grants,
    };
    let slot = match state.limiter.acquire(peer.ip()) {
        Ok(s) => s,
        Err(LimitError::Total) => {
            let detail = format!(
                "limits.max_connections ({}) reached",
                state.config.limits.max_connections
            );
            let r = reject(
                "limit_total",
                &detail,
                Reject::new(
                    ::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too many connections\n",
                ),
            );
            let r = r.header(
                ::http::header::RETRY_AFTER,
                ::http::HeaderValue::from_static("5"),
            );
            let _ = Box::pin(incoming.reject(r)).await;
            return None;
        }
        Err(LimitError::PerIp) => {
            let detail = format!(
                "limits.max_connections_per_ip ({}) reached for {}",
                state.config.limits.max_connections_per_ip,
                peer.ip()
            );
            let r = reject(
                "limit_ip",
                &detail,
                Reject::new(
                    ::http::StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from your address\n",
                ),
            );
            let r = r.header(
                ::http::header::RETRY_AFTER,
                ::http::HeaderValue::from_static("5"),
            );
            let _ = Box::pin(incoming.reject(r)).await;
            return None;
        }
    };
    let process = match &route.kind {
        RouteKind::Exec(e) => {
            let running = &state.route_metrics[route.id].exec_processes;
            match exec::ProcessSlot::acquire(running, e.max_processes) {
                Some(p) => Some(p),
                None => {
                    let detail = format!(
                        "`max_processes` ({}) programs of {} already running",
                        e.max_processes, route.name
                    );
                    let r = reject(
                        "exec_processes",
                        &detail,
                        Reject::new(
                            ::http::StatusCode::SERVICE_UNAVAILABLE,
                            "too many programs running for this route (max_processes)\n",
                        ),
                    );
                    let r = r.header(
                        ::http::header::RETRY_AFTER,
                        ::http::HeaderValue::from_static("5"),
                    );
                    let _ = Box::pin(incoming.reject(r)).await;
                    return None;
                }
            }
        }
        _ => None,
    };
    let protocol = {
        let supported: Vec<&str> = route.protocols.iter().map(String::as_str).collect();
        incoming
            .upgrade()
            .select_protocol(&supported)
            .map(str::to_owned)
    };
    let exec = process.map(|slot| {
        let header = |n: ::http::HeaderName| {
            incoming
                .header(n.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Box::new(exec::Admitted {
            request: exec::RequestFacts {
                remote: Some(peer),
                server_port: incoming.stream().local_addr().ok().map(|a| a.port()),
                path: path.clone(),
                route_path: route.path.clone(),
                query,
                https: tls,
                host: incoming.host().to_owned(),
                origin: incoming.origin().map(str::to_owned),
                user_agent: header(::http::header::USER_AGENT),
                cookie: header(::http::header::COOKIE),
                protocol: protocol.clone(),
                user: grants.subject.clone(),
            },
            _slot: slot,
        })
    });
    let accept = tether::Accept {
        protocol,
        ..Default::default()
    };
    let ws = match Box::pin(incoming.accept(accept)).await {
        Ok(ws) => ws,
        Err(e) => {
            info!(%peer, path = %esc(&path), "handshake failed: {}", esc(&e.to_string()));
            return None;
        }
    };
    Some(Session {
        ws,
        route,
        capture,
        grants,
        exec,
        _slot: slot,
        peer,
        path,
    })
}

/// Run an accepted WebSocket's route until it closes; count and log it
/// (nothing to do for `None`).
// Not `async fn`: its arguments would be stored twice (idle memory).
#[allow(clippy::manual_async_fn)]
fn run_session<'a>(
    state: &'a State,
    mut opened: Option<Session<'a>>,
) -> impl Future<Output = ()> + Send + 'a {
    // An `async move` block: see `handle_connection`.
    async move {
        let Some(session) = opened.as_mut() else {
            return;
        };
        // Fields are used in place: moving them out (the WebSocket above all)
        // would store them twice in this future, once as the argument and once
        // as locals.
        let Session {
            ws,
            route,
            capture,
            grants,
            exec,
            _slot: _,
            peer,
            path,
        } = session;
        let (route, peer) = (*route, *peer);
        state.active.fetch_add(1, Ordering::AcqRel);
        let _active = ActiveGuard(&state.active);
        let metrics = &*state.route_metrics[route.id];
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        info!(%peer, path = %esc(path), kind = route.kind.name(), user = %esc(grants.subject.as_deref().unwrap_or("")), "open");
        let mut shutdown = state.shutdown.clone();
        // Each route's session is boxed: the task then holds only the running
        // route's state, not the largest of all of them.
        let outcome = match &route.kind {
            RouteKind::Echo => Box::pin(echo::run(ws, &mut shutdown, metrics)).await,
            RouteKind::Room => {
                let hub = state.hubs[route.id].as_ref().expect("room hub");
                let room = capture.take().unwrap_or_else(|| route.path.clone());
                Box::pin(room::run(ws, hub, &room, &mut shutdown, metrics)).await
            }
            RouteKind::Pubsub { .. } => {
                let hub = state.hubs[route.id].as_ref().expect("pubsub hub");
                let engine = state.engines[route.id].as_deref().expect("pubsub engine");
                let rights = pubsub::Rights {
                    grants,
                    max_subscriptions: state.config.limits.max_subscriptions,
                    max_reply: state.config.limits.max_message_size,
                    engine,
                };
                Box::pin(pubsub::run(ws, hub, &rights, &mut shutdown, metrics)).await
            }
            RouteKind::Exec(route) => {
                let admitted = exec
                    .as_ref()
                    .expect("exec routes are admitted with a request");
                let spec = exec::ExecSpec {
                    route,
                    request: &admitted.request,
                    max_message_size: state.config.limits.max_message_size,
                };
                Box::pin(exec::run(ws, spec, &mut shutdown, metrics)).await
            }
            RouteKind::Demo | RouteKind::Static { .. } => unreachable!("filtered above"),
        };
        metrics.open.fetch_sub(1, Ordering::Relaxed);
        state.metrics.closed(outcome.code);
        let path = std::mem::take(path);
        // Frees the connection slot (and the socket) before logging.
        drop(opened.take());
        info!(
            %peer,
            path = %esc(&path),
            duration_ms = started.elapsed().as_millis() as u64,
            messages_in = outcome.messages_in,
            bytes_in = outcome.bytes_in,
            messages_out = outcome.messages_out,
            bytes_out = outcome.bytes_out,
            code = outcome.code,
            reason = %esc(&outcome.reason),
            closed_by = outcome.closed_by,
            error = %esc(outcome.error.as_deref().unwrap_or("")),
            "close"
        );
    }
}
