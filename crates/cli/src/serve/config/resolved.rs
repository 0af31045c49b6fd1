//! [`ServerConfig`]: the validated configuration the server runs on.

use super::pattern::PathPattern;
use crate::serve::auth::JwtVerifier;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether::proto::deflate::DeflateConfig;
use tether::OriginPolicy;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Sockets to listen on.
    pub listeners: Vec<ListenerConfig>,
    /// Limits.
    pub limits: Limits,
    /// Routes of requests that match no virtual host.
    pub routes: Vec<Route>,
    /// Virtual hosts.
    pub vhosts: Vec<VHost>,
    /// Number of routes in all (route ids are `0..route_count`).
    pub route_count: usize,
    /// `/metrics` and `/healthz`.
    pub admin: AdminConfig,
    /// The pub/sub engine.
    pub engine: EngineKind,
    /// permessage-deflate settings, `None` when `limits.permessage_deflate`
    /// is off.
    pub deflate: Option<DeflateConfig>,
    /// HTTP/2 streams and windows (listeners with `http2 = true`).
    pub http2: super::http2::Http2Settings,
}

/// Where and how `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// A separate listener for them (else the `[[listen]]` ports answer
    /// them).
    pub addr: Option<SocketAddr>,
    /// `Host` names its listener answers (loopback names on a loopback
    /// address, else any).
    pub hosts: HostRule,
    /// Bearer token `/metrics` requires.
    pub metrics_token: Option<String>,
}

/// Which engine keeps pub/sub positions, history and presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineKind {
    /// This process alone.
    Memory,
    /// Redis, shared by every node that uses the same server and prefix.
    Redis(RedisSettings),
    /// NATS, a broker only: publications cross nodes, nothing is stored.
    Nats(NatsSettings),
}

/// `[cluster]` with `engine = "nats"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// `nats://HOST:PORT`, comma-separated for several.
    pub url: String,
    /// First token(s) of every subject; each pub/sub route adds its own.
    pub prefix: String,
    /// This node's name.
    pub node: String,
    /// Longest wait for a publish or subscribe to be confirmed.
    pub io_timeout: Duration,
    /// How often the server is pinged.
    pub probe_interval: Duration,
}

/// `[cluster]` with `engine = "redis"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// First part of every key; each pub/sub route adds its host and path.
    pub prefix: String,
    /// This node's name.
    pub node: String,
    /// Longest wait for any request.
    pub io_timeout: Duration,
    /// How often the PUB/SUB connection is probed.
    pub probe_interval: Duration,
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where.
    pub addr: SocketAddr,
    /// Certificate and key for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Which `Host` names are answered.
    pub hosts: HostRule,
    /// Peers whose forwarding headers give the client's address.
    pub trusted_proxies: Vec<IpNet>,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// HTTP/2 served beside HTTP/1.1 (ALPN `h2` with TLS, prior knowledge
    /// without).
    pub http2: bool,
}

/// The DNS-rebinding defence of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostRule {
    /// `localhost`, `127.0.0.1`, `[::1]` (any port).
    #[default]
    Loopback,
    /// These names (any port), lowercase.
    Names(Vec<String>),
    /// Anything (a public listener with no names configured).
    Any,
}

/// Validated limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Negotiate permessage-deflate.
    pub permessage_deflate: bool,
    /// Largest message.
    pub max_message_size: usize,
    /// Most WebSocket connections.
    pub max_connections: usize,
    /// Most WebSocket connections per IP.
    pub max_connections_per_ip: usize,
    /// TLS + HTTP head deadline.
    pub handshake_timeout: Duration,
    /// Ping after this much silence.
    pub ping_interval: Duration,
    /// Drop if the ping is not answered within this.
    pub idle_timeout: Duration,
    /// How far a subscriber may fall behind (messages).
    pub send_queue: usize,
    /// Bytes that may wait for a blocked room/pubsub connection.
    pub max_queued_bytes_per_connection: usize,
    /// Bytes all rooms and channels may hold.
    pub max_queued_bytes: usize,
    /// Channels per pubsub connection.
    pub max_subscriptions: usize,
    /// Per-socket write buffer.
    pub write_buffer: usize,
    /// Drop a WebSocket whose peer takes no queued byte for this long.
    pub send_timeout: Option<Duration>,
    /// Most connections in the HTTP phase.
    pub max_http_connections: usize,
    /// The same per IP.
    pub max_http_connections_per_ip: usize,
    /// An HTTP response's deadline: this, plus its body at `min_send_rate`.
    pub http_response_timeout: Duration,
    /// Bytes per second an HTTP response body is given.
    pub min_send_rate: usize,
    /// Largest HTTP body.
    pub max_body_size: usize,
    /// Graceful shutdown deadline.
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// How long sending an HTTP response with a `body`-byte body may take:
    /// `http_response_timeout`, plus the body at `min_send_rate`. A reader
    /// slower than that (or one that stopped) is cut off.
    pub fn http_response_deadline(&self, body: u64) -> Duration {
        let rate = self.min_send_rate.max(1) as f64;
        self.http_response_timeout
            .saturating_add(Duration::from_secs_f64((body as f64 / rate).min(1e15)))
    }
}

/// A virtual host.
#[derive(Debug, Clone)]
pub struct VHost {
    /// Lowercase names.
    pub hosts: Vec<String>,
    /// Routes.
    pub routes: Vec<Route>,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index into per-route state (metrics, hubs).
    pub id: usize,
    /// Where it is configured, for messages: `route[2] (/chat/{room})`.
    pub name: String,
    /// The path as configured (metrics label).
    pub path: String,
    /// Parsed path.
    pub pattern: PathPattern,
    /// What it does.
    pub kind: RouteKind,
    /// Subprotocols spoken.
    pub protocols: Vec<String>,
    /// Which origins may open a WebSocket: the same origin (absent), any
    /// (`["*"]`) or a list (lowercase, no trailing slash).
    pub origins: OriginPolicy,
    /// Authentication.
    pub auth: Option<AuthConfig>,
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum RouteKind {
    /// The embedded demo page.
    Demo,
    /// Files from a directory.
    Static {
        /// Root directory (canonical).
        dir: PathBuf,
    },
    /// Echo every message.
    Echo,
    /// Broadcast to the others in the same room.
    Room,
    /// Channels with a JSON protocol.
    Pubsub {
        /// HTTP publish endpoint path.
        publish_path: Option<String>,
        /// Its bearer token.
        publish_token: Option<String>,
        /// Channel fed by the simulated ticker.
        demo_ticker: Option<String>,
        /// Channel patterns any client may publish to over the WebSocket.
        client_publish: Vec<String>,
        /// Messages kept per channel.
        history_size: usize,
        /// How long they are kept.
        history_ttl: Option<Duration>,
        /// Keep who is subscribed.
        presence: bool,
        /// Server-Sent Events for the channels, if offered.
        sse: Option<SseRoute>,
    },
    /// A program per connection.
    Exec(ExecRoute),
}

/// How a pubsub route serves its channels as Server-Sent Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRoute {
    /// `GET` this path (`PATH/events`) with `channel` parameters.
    pub path: String,
    /// Sent as `retry:`, the client's reconnection delay.
    pub retry: Duration,
    /// A comment goes out after this much silence.
    pub heartbeat: Duration,
    /// Streams end after this long (`None`: never).
    pub max_lifetime: Option<Duration>,
}

/// What an `exec` route runs, and how.
#[derive(Debug, Clone)]
pub struct ExecRoute {
    /// Program and arguments (the program checked at startup).
    pub command: Vec<String>,
    /// Binary instead of lines.
    pub binary: bool,
    /// Most programs running at once.
    pub max_processes: usize,
    /// A stdin write without progress for this long ends the session.
    pub stdin_timeout: Duration,
    /// Time to exit after stdin closes, and again after SIGTERM.
    pub exit_grace: Duration,
    /// Server environment variables the program also gets.
    pub pass_env: Vec<String>,
}

impl RouteKind {
    /// The name used in the file.
    pub fn name(&self) -> &'static str {
        match self {
            RouteKind::Demo => "demo",
            RouteKind::Static { .. } => "static",
            RouteKind::Echo => "echo",
            RouteKind::Room => "room",
            RouteKind::Pubsub { .. } => "pubsub",
            RouteKind::Exec(_) => "exec",
        }
    }

    /// True for kinds reached by a WebSocket upgrade.
    pub fn is_websocket(&self) -> bool {
        !matches!(self, RouteKind::Demo | RouteKind::Static { .. })
    }
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Opaque tokens.
    pub tokens: Vec<String>,
    /// JWT keys (loaded from their files) and claim rules.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Query parameter name.
    pub query_param: String,
}

impl ServerConfig {
    /// The routes for a `Host` name (lowercase, without port).
    pub fn routes_for(&self, host: &str) -> &[Route] {
        self.vhosts
            .iter()
            .find(|v| v.hosts.iter().any(|h| h == host))
            .map_or(&self.routes, |v| &v.routes)
    }

    /// All routes, across virtual hosts.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes
            .iter()
            .chain(self.vhosts.iter().flat_map(|v| v.routes.iter()))
    }
}
