//! Configuration of `tether serve`, in two stages (as ripgrep does it):
//!
//! 1. [`RawConfig`]: what the TOML file says, deserialized with serde and
//!    `deny_unknown_fields` (a typo is an error naming the key), with the
//!    command-line flags and environment variables applied on top. This is
//!    also what `--print-config` prints, so the printed file can be saved and
//!    loaded back.
//! 2. [`ServerConfig`]: the validated form the server runs on: addresses
//!    parsed, sizes and durations converted, every route's fields checked
//!    against its kind. Every error names the key that is wrong
//!    (`route[2] (/chat/{room}): ...`).
//!
//! An annotated example is `serve/assets/example.toml`.
//!
//! With no file at all, [`RawConfig::builtin`] gives the demo setup: the
//! page at `/`, `/echo`, chat rooms at `/chat/{room}` and a pub/sub endpoint
//! at `/pubsub` that a simulated stock ticker publishes into, with the
//! page's chat rooms on its `chat.*` channels (history kept, clients may
//! publish there and only there).

use super::auth::{ClaimRules, JwtVerifier, KeySource};
use crate::size::parse_size;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest room or channel name, in bytes.
pub const MAX_NAME: usize = 128;

/// Options of `tether serve` that can also come from flags and env vars.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file (`--example-config` prints every option).
    /// SIGHUP reads it again (and the TLS files): new connections use it,
    /// open ones keep theirs; one that fails to load is refused.
    #[arg(long, env = "TETHER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Check the configuration (the file, flags, TLS certificates) as
    /// starting would, print a one-line summary and exit: status 0 if the
    /// server would start with it, 1 with the error otherwise. Binds nothing.
    #[arg(long, conflicts_with = "print_config")]
    pub check_config: bool,

    /// Print the annotated reference configuration (every option with its
    /// default and meaning) and exit; a starting point for `--config`.
    #[arg(long, conflicts_with_all = ["print_config", "check_config"])]
    pub example_config: bool,

    /// Address to listen on (replaces the file's listeners); port 0 picks a
    /// free port, printed as `listening on http://ADDR`.
    #[arg(long, env = "TETHER_LISTEN")]
    pub listen: Option<String>,

    /// A `Host` name the listeners answer (repeatable; replaces their
    /// `allowed_hosts`). Required on a non-loopback address unless virtual
    /// hosts name the hosts; `*` accepts any Host (no DNS-rebinding defence).
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,

    /// Largest message accepted (e.g. 1M, 64K, 16MiB); larger ones close the
    /// connection with 1009. Default 1M.
    #[arg(long, env = "TETHER_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<String>,

    /// Seconds a client may take to send its opening handshake. Default 10.
    #[arg(long)]
    pub handshake_timeout: Option<u64>,

    /// Most WebSocket connections open at once. Default 10000.
    #[arg(long, env = "TETHER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most WebSocket connections open at once from one IP address. Default 1000.
    #[arg(long, env = "TETHER_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// Certificate chain (PEM) for wss:// and https:// (with --tls-key).
    #[arg(long, env = "TETHER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "TETHER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Do not negotiate permessage-deflate compression (RFC 7692), which is
    /// otherwise accepted whenever a client offers it (browsers always do).
    #[arg(long, env = "TETHER_NO_DEFLATE")]
    pub no_deflate: bool,

    /// Serve this program (and its arguments), given after `--`, without a
    /// config file: each WebSocket connection to `/` runs one copy, its
    /// stdin fed by the messages and its stdout lines sent back, like
    /// websocketd (`tether serve -- ./script.sh arg`).
    #[arg(last = true, value_name = "PROGRAM", conflicts_with = "config")]
    pub command: Vec<String>,

    /// With a program after `--`: binary messages, its stdin and stdout
    /// passed through as they are, instead of lines.
    #[arg(long)]
    pub binary: bool,

    /// Bearer token for `POST /api/publish` of the built-in pub/sub route
    /// (without a config file). If unset, a random one is made (shown on
    /// stdout when that is a terminal, never logged).
    #[arg(long, env = "TETHER_PUBLISH_TOKEN")]
    pub publish_token: Option<String>,
}

/// A size: a number of bytes or a string like `64K`, `1M`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

/// A duration: seconds, or a string like `500ms`, `10s`, `2m`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum DurationValue {
    /// Seconds.
    Secs(u64),
    /// With a unit.
    Text(String),
}

/// The file, as written.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Reverse proxies whose forwarding headers are believed (CIDRs), for
    /// every listener without its own list. First: a TOML file has its
    /// top-level keys before its tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// `[[listen]]` tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<RawListener>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[[route]]` tables of the default virtual host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RawRoute>,
    /// `[[vhost]]` tables: routes for requests whose `Host` matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost: Vec<RawVhost>,
    /// `[admin]`: where `/metrics` and `/healthz` are served, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<RawAdmin>,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: RawCluster,
}

/// `[admin]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `IP:PORT` of a separate plain-HTTP listener for `/metrics` and
    /// `/healthz`, which the `[[listen]]` ports then no longer answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Bearer token that `/metrics` requires (wherever it is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// Accepted `Host` names on a non-loopback `addr` (`["*"]`: any).
    /// Required there unless `metrics_token` is set (DNS rebinding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
}

/// `[cluster]`: where pub/sub positions, history and presence live.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `memory` (the default: this process alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// `[[listen]]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `IP:PORT`.
    pub addr: String,
    /// PEM certificate chain; with `tls_key`, the listener speaks TLS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Accepted `Host` names (DNS-rebinding defence); `["*"]`: any. Default:
    /// loopback names on a loopback address, else the virtual hosts' names;
    /// a non-loopback address without either is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For`,
    /// `X-Forwarded-Proto` and `Forwarded` headers give the client's
    /// address and scheme. Default: the top-level `trusted_proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header,
    /// which gives the client's address (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
}

/// `[limits]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Negotiate permessage-deflate when a client offers it (default true).
    /// Compressor state is allocated only once a connection compresses
    /// (about 300-400 KiB with the default 15-bit windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permessage_deflate: Option<bool>,
    /// Largest message (default 1M).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<SizeValue>,
    /// Most WebSocket connections at once (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most WebSocket connections per client IP (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<usize>,
    /// Time allowed for the TLS and HTTP handshake (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<DurationValue>,
    /// Silence after which the server pings (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval: Option<DurationValue>,
    /// Time to answer that ping before the connection is dropped (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationValue>,
    /// How many messages a room/pubsub subscriber may fall behind (and
    /// replies it may have queued) before it is closed with 1008 as a slow
    /// consumer (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_queue: Option<usize>,
    /// Most bytes that may wait for one room/pubsub connection, across its
    /// rooms, channels and replies, while its socket is full; more: closed
    /// with 1008 as a slow consumer (default 8M, or twice
    /// `max_message_size` if that is more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_bytes_per_connection: Option<SizeValue>,
    /// Most bytes held for subscribers by all rooms and channels together;
    /// beyond it a broadcast drops its group's oldest messages, and whoever
    /// had not taken them is closed with 1008 (default 256M, or twice
    /// `max_message_size` if that is more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_bytes: Option<SizeValue>,
    /// Most channels one pubsub connection may subscribe to; more are
    /// answered with an `error` op (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<usize>,
    /// Bytes buffered for one socket before sending waits (default 128K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_buffer: Option<SizeValue>,
    /// A WebSocket whose peer accepts none of the queued output for this
    /// long is dropped (default 30s; 0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<DurationValue>,
    /// Most connections in the HTTP phase at once (plain HTTP, keep-alive
    /// included, and upgrades until they are WebSockets); default 10000.
    /// Beyond: closed with 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_connections: Option<usize>,
    /// The same per client IP (default 1000); beyond: 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_connections_per_ip: Option<usize>,
    /// Time allowed to send one HTTP response, plus one second per
    /// `min_send_rate` bytes of its body (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_response_timeout: Option<DurationValue>,
    /// Slowest HTTP response delivery allowed, in bytes per second (default 16K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_send_rate: Option<SizeValue>,
    /// Largest HTTP request body (POST /api/publish; default 64K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<SizeValue>,
    /// How long a graceful shutdown waits for sockets to close (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<DurationValue>,
}

/// `[[vhost]]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawVhost {
    /// Host names (without port) this virtual host answers.
    pub hosts: Vec<String>,
    /// Its routes.
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// `[[route]]`: the fields of every kind; validation checks which apply.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `/echo`, `/chat/{room}` (a `{name}` segment matches one segment);
    /// for `static`, a prefix.
    pub path: String,
    /// `demo`, `static`, `echo`, `room`, `pubsub` or `exec`.
    pub kind: String,
    /// static: the directory served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// exec: program and arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// exec: `lines` (default) or `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// exec: most programs of this route running at once; beyond, upgrades
    /// get 503 (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<usize>,
    /// exec: a write to the program's stdin that makes no progress for this
    /// long closes the connection with 1011 (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_timeout: Option<DurationValue>,
    /// exec: after stdin is closed, time the program has to exit (its output
    /// still delivered) before SIGTERM, and again before SIGKILL (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_grace: Option<DurationValue>,
    /// exec: variables of the server's environment passed to the program
    /// (besides PATH and the CGI variables, which it always gets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_env: Option<Vec<String>>,
    /// pubsub: path of the HTTP publish endpoint (default `/api/publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_path: Option<String>,
    /// pubsub: bearer token required by the publish endpoint (no token: the
    /// endpoint is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_token: Option<String>,
    /// pubsub: publish simulated stock prices into this channel every second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_ticker: Option<String>,
    /// pubsub: messages kept per channel for history and recovery (default
    /// 0: none; a resume is then possible only with nothing missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_size: Option<usize>,
    /// pubsub: how long history is kept (default: until pushed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_ttl: Option<DurationValue>,
    /// pubsub: keep who is subscribed, for the `presence` op and
    /// `GET /api/presence` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<bool>,
    /// pubsub: channels every client may publish to over the WebSocket:
    /// `true` (all), `false` (none, the default) or patterns (`["chat.*"]`).
    /// A JWT's `publish` claim adds to these; an opaque token allows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_publish: Option<ClientPublish>,
    /// Subprotocols the route speaks (the client's first match is chosen).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// Allowed `Origin`s: absent = same origin as `Host`; `["*"]` = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// Authentication; absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawAuth>,
}

/// A string or a list of strings.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `client_publish` of a pubsub route: all, none, or channel patterns.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum ClientPublish {
    /// `true`: every channel; `false`: none.
    All(bool),
    /// Names, or prefixes ending in `*`.
    Patterns(Vec<String>),
}

/// `auth = { ... }` of a route.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accepted opaque tokens (full access).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
    /// HS256 secret for signed JWTs (`exp` required; pubsub permissions
    /// from the `subscribe` / `publish` claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// PEM file with the public key of RS256/ES256/EdDSA JWTs (instead of
    /// `jwt_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file whose keys verify JWTs, chosen by the token's `kid`
    /// (instead of `jwt_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
    /// Required JWT `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted JWT `aud` values (the token's must include one); without
    /// it, `aud` is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<OneOrMany>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<DurationValue>,
    /// Longest JWT lifetime (`exp - iat`) accepted; tokens then need `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<DurationValue>,
    /// Also read the token from this cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Also read the token from this query parameter (browsers cannot set
    /// headers on a WebSocket). Default `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
}

impl RawConfig {
    /// The demo setup used when no file is given.
    pub fn builtin(publish_token: String) -> RawConfig {
        let route = |path: &str, kind: &str| RawRoute {
            path: path.into(),
            kind: kind.into(),
            ..Default::default()
        };
        RawConfig {
            trusted_proxies: Vec::new(),
            listen: vec![RawListener {
                addr: "127.0.0.1:8080".into(),
                ..Default::default()
            }],
            limits: RawLimits::default(),
            route: vec![
                route("/", "demo"),
                route("/echo", "echo"),
                route("/chat/{room}", "room"),
                RawRoute {
                    publish_path: Some("/api/publish".into()),
                    publish_token: Some(publish_token),
                    demo_ticker: Some("ticker".into()),
                    // The page's chat rooms; the ticker stays the server's.
                    client_publish: Some(ClientPublish::Patterns(vec!["chat.*".into()])),
                    history_size: Some(50),
                    history_ttl: Some(DurationValue::Text("1h".into())),
                    ..route("/pubsub", "pubsub")
                },
            ],
            vhost: Vec::new(),
            admin: None,
            cluster: RawCluster::default(),
        }
    }

    /// One exec route at `/` running `command` (`tether serve -- PROGRAM`).
    pub fn program(command: Vec<String>, binary: bool) -> RawConfig {
        RawConfig {
            route: vec![RawRoute {
                path: "/".into(),
                kind: "exec".into(),
                command: Some(command),
                mode: binary.then(|| "binary".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Read and parse a file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<RawConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        RawConfig::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The effective file: flags and env vars applied over `self`, defaults
    /// filled in.
    pub fn with_args(mut self, args: &ServeArgs) -> RawConfig {
        if let Some(l) = &args.listen {
            let tls_cert = args.tls_cert.clone();
            let tls_key = args.tls_key.clone();
            // The first listener's other settings stay.
            let first = self.listen.first().cloned().unwrap_or_default();
            self.listen = vec![RawListener {
                addr: l.clone(),
                tls_cert,
                tls_key,
                ..first
            }];
        } else if args.tls_cert.is_some() {
            for l in &mut self.listen {
                l.tls_cert = args.tls_cert.clone();
                l.tls_key = args.tls_key.clone();
            }
        }
        if self.listen.is_empty() {
            self.listen.push(RawListener {
                addr: "127.0.0.1:8080".into(),
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
                ..Default::default()
            });
        }
        if !args.allowed_hosts.is_empty() {
            for l in &mut self.listen {
                l.allowed_hosts = Some(args.allowed_hosts.clone());
            }
        }
        let l = &mut self.limits;
        if let Some(v) = &args.max_message_size {
            l.max_message_size = Some(SizeValue::Text(v.clone()));
        }
        if let Some(v) = args.handshake_timeout {
            l.handshake_timeout = Some(DurationValue::Secs(v));
        }
        if args.no_deflate {
            l.permessage_deflate = Some(false);
        }
        l.permessage_deflate.get_or_insert(true);
        if let Some(v) = args.max_connections {
            l.max_connections = Some(v);
        }
        if let Some(v) = args.max_connections_per_ip {
            l.max_connections_per_ip = Some(v);
        }
        let fill_size = |v: &mut Option<SizeValue>, d: &str| {
            v.get_or_insert_with(|| SizeValue::Text(d.into()));
        };
        let fill_dur = |v: &mut Option<DurationValue>, d: &str| {
            v.get_or_insert_with(|| DurationValue::Text(d.into()));
        };
        fill_size(&mut l.max_message_size, "1M");
        fill_size(&mut l.write_buffer, "128K");
        fill_size(&mut l.max_body_size, "64K");
        fill_dur(&mut l.handshake_timeout, "10s");
        fill_dur(&mut l.ping_interval, "30s");
        fill_dur(&mut l.idle_timeout, "30s");
        fill_dur(&mut l.shutdown_timeout, "5s");
        fill_dur(&mut l.send_timeout, "30s");
        fill_dur(&mut l.http_response_timeout, "30s");
        fill_size(&mut l.min_send_rate, "16K");
        l.max_connections.get_or_insert(10_000);
        l.max_connections_per_ip.get_or_insert(1_000);
        l.max_http_connections.get_or_insert(10_000);
        l.max_http_connections_per_ip.get_or_insert(1_000);
        l.send_queue.get_or_insert(256);
        // Room for at least two of the largest messages, so that raising
        // `max_message_size` alone never makes the defaults invalid.
        let largest = l
            .max_message_size
            .as_ref()
            .and_then(|v| parse_size_value(v, "max_message_size").ok())
            .map_or(0, |n| n as u64);
        l.max_queued_bytes_per_connection
            .get_or_insert(SizeValue::Bytes((8 << 20).max(2 * largest)));
        l.max_queued_bytes
            .get_or_insert(SizeValue::Bytes((256 << 20).max(2 * largest)));
        l.max_subscriptions.get_or_insert(128);
        let routes = self
            .route
            .iter_mut()
            .chain(self.vhost.iter_mut().flat_map(|v| v.route.iter_mut()));
        for r in routes.filter(|r| r.kind == "exec") {
            r.max_processes.get_or_insert(256);
            fill_dur(&mut r.stdin_timeout, "10s");
            fill_dur(&mut r.exit_grace, "2s");
        }
        self.cluster.engine.get_or_insert_with(|| "memory".into());
        self
    }

    /// The effective file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// This process alone.
    Memory,
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
    /// Origin policy.
    pub origins: OriginRule,
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
    },
    /// A program per connection.
    Exec(ExecRoute),
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

/// Which origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// The page's origin must match the `Host` the request was sent to.
    SameOrigin,
    /// Any origin (`["*"]`).
    Any,
    /// Exactly these (lowercase, no trailing slash).
    List(Vec<String>),
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

/// A route path: literal segments and `{name}` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

impl PathPattern {
    /// Parse `/a/{b}`; `prefix` patterns also match anything below.
    pub fn parse(path: &str, prefix: bool) -> Result<PathPattern, String> {
        if !path.starts_with('/') {
            return Err(format!("`path` must start with `/` (got `{path}`)"));
        }
        let mut segments = Vec::new();
        for seg in path.split('/').skip(1).filter(|s| !s.is_empty()) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || prefix {
                    return Err(format!(
                        "`path` `{path}`: captures need a name and are not allowed in static routes"
                    ));
                }
                segments.push(Segment::Capture(name.to_owned()));
            } else if seg.contains(['{', '}']) {
                return Err(format!("`path` `{path}`: `{seg}` is not `{{name}}`"));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(PathPattern { segments, prefix })
    }

    /// Match a request path; returns the captured values in order, and for
    /// prefix patterns the remainder after the prefix.
    pub fn matches<'a>(&self, path: &'a str) -> Option<(Vec<&'a str>, &'a str)> {
        let mut rest = path.strip_prefix('/')?;
        let mut caps = Vec::new();
        for seg in &self.segments {
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match seg {
                Segment::Literal(l) if l == head => {}
                Segment::Capture(_) if !head.is_empty() => caps.push(head),
                _ => return None,
            }
            rest = tail;
        }
        if self.prefix || rest.is_empty() {
            Some((caps, rest))
        } else {
            None
        }
    }
}

fn parse_duration(v: &DurationValue, key: &str) -> Result<Duration, String> {
    duration_at(v, &format!("limits.{key}"))
}

/// A duration; errors name `key` (the full key, e.g. `route[0] auth.leeway`).
fn duration_at(v: &DurationValue, key: &str) -> Result<Duration, String> {
    match v {
        DurationValue::Secs(s) => Ok(Duration::from_secs(*s)),
        DurationValue::Text(t) => {
            let t = t.trim();
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (n, unit) = t.split_at(end);
            let n: u64 = n
                .parse()
                .map_err(|_| format!("`{key}`: `{t}` is not a duration (try 500ms, 10s, 2m)"))?;
            match unit.trim() {
                "ms" => Ok(Duration::from_millis(n)),
                "" | "s" => Ok(Duration::from_secs(n)),
                "m" => Ok(Duration::from_secs(n * 60)),
                "h" => Ok(Duration::from_secs(n * 3600)),
                u => Err(format!("`{key}`: unknown unit `{u}` (use ms, s, m or h)")),
            }
        }
    }
}

fn parse_size_value(v: &SizeValue, key: &str) -> Result<usize, String> {
    match v {
        SizeValue::Bytes(b) => {
            usize::try_from(*b).map_err(|_| format!("`limits.{key}` is too large"))
        }
        SizeValue::Text(t) => parse_size(t).map_err(|e| format!("`limits.{key}`: {e}")),
    }
}

impl ServerConfig {
    /// Validate an effective raw config (see [`RawConfig::with_args`]).
    pub fn from_raw(raw: &RawConfig) -> Result<ServerConfig, String> {
        let l = &raw.limits;
        let req = |o: Option<usize>, k: &str| o.ok_or_else(|| format!("`limits.{k}` is missing"));
        let size = |o: &Option<SizeValue>, k: &str| match o {
            Some(v) => parse_size_value(v, k),
            None => Err(format!("`limits.{k}` is missing")),
        };
        let dur = |o: &Option<DurationValue>, k: &str| match o {
            Some(v) => parse_duration(v, k),
            None => Err(format!("`limits.{k}` is missing")),
        };
        let limits = Limits {
            permessage_deflate: l.permessage_deflate.unwrap_or(true),
            max_message_size: size(&l.max_message_size, "max_message_size")?,
            max_connections: req(l.max_connections, "max_connections")?,
            max_connections_per_ip: req(l.max_connections_per_ip, "max_connections_per_ip")?,
            handshake_timeout: dur(&l.handshake_timeout, "handshake_timeout")?,
            ping_interval: dur(&l.ping_interval, "ping_interval")?,
            idle_timeout: dur(&l.idle_timeout, "idle_timeout")?,
            send_queue: req(l.send_queue, "send_queue")?,
            max_queued_bytes_per_connection: size(
                &l.max_queued_bytes_per_connection,
                "max_queued_bytes_per_connection",
            )?,
            max_queued_bytes: size(&l.max_queued_bytes, "max_queued_bytes")?,
            max_subscriptions: req(l.max_subscriptions, "max_subscriptions")?,
            write_buffer: size(&l.write_buffer, "write_buffer")?,
            send_timeout: Some(dur(&l.send_timeout, "send_timeout")?).filter(|d| !d.is_zero()),
            max_http_connections: req(l.max_http_connections, "max_http_connections")?,
            max_http_connections_per_ip: req(
                l.max_http_connections_per_ip,
                "max_http_connections_per_ip",
            )?,
            http_response_timeout: dur(&l.http_response_timeout, "http_response_timeout")?,
            min_send_rate: size(&l.min_send_rate, "min_send_rate")?,
            max_body_size: size(&l.max_body_size, "max_body_size")?,
            shutdown_timeout: dur(&l.shutdown_timeout, "shutdown_timeout")?,
        };
        if limits.send_queue == 0 {
            return Err("`limits.send_queue` must be at least 1".into());
        }
        if limits.min_send_rate == 0 {
            return Err("`limits.min_send_rate` must be at least 1 (bytes per second)".into());
        }
        if limits.max_message_size == 0 {
            return Err("`limits.max_message_size` must be at least 1".into());
        }
        for (key, bytes) in [
            (
                "max_queued_bytes_per_connection",
                limits.max_queued_bytes_per_connection,
            ),
            ("max_queued_bytes", limits.max_queued_bytes),
        ] {
            if bytes < limits.max_message_size {
                return Err(format!(
                    "`limits.{key}` ({bytes} bytes) must be at least `limits.max_message_size` ({} bytes): one message could never be queued",
                    limits.max_message_size
                ));
            }
        }
        if limits.max_subscriptions == 0 {
            return Err("`limits.max_subscriptions` must be at least 1".into());
        }
        let mut next_id = 0;
        let routes = validate_routes(&raw.route, "route", &mut next_id)?;
        let mut vhosts = Vec::new();
        for (i, v) in raw.vhost.iter().enumerate() {
            if v.hosts.is_empty() {
                return Err(format!("`vhost[{i}].hosts` is empty"));
            }
            vhosts.push(VHost {
                hosts: v.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                routes: validate_routes(&v.route, &format!("vhost[{i}].route"), &mut next_id)?,
            });
        }
        let vhost_names: Vec<String> = vhosts.iter().flat_map(|v| v.hosts.clone()).collect();
        let global_proxies = cidrs(&raw.trusted_proxies, "trusted_proxies")?;
        let mut listeners = Vec::new();
        for (i, raw_l) in raw.listen.iter().enumerate() {
            let addr: SocketAddr = raw_l.addr.parse().map_err(|_| {
                format!(
                    "`listen[{i}].addr`: `{}` is not IP:PORT (e.g. 127.0.0.1:8080)",
                    raw_l.addr
                )
            })?;
            let tls = match (&raw_l.tls_cert, &raw_l.tls_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                _ => return Err(format!("`listen[{i}]`: set both `tls_cert` and `tls_key`")),
            };
            let hosts = match &raw_l.allowed_hosts {
                Some(h) if h.iter().any(|h| h == "*") => HostRule::Any,
                Some(h) => HostRule::Names(h.iter().map(|h| h.to_ascii_lowercase()).collect()),
                None if addr.ip().is_loopback() => HostRule::Loopback,
                None if !vhost_names.is_empty() => HostRule::Names(vhost_names.clone()),
                None => {
                    return Err(format!(
                        "`listen[{i}]` ({addr}) is not a loopback address, so it needs `allowed_hosts`: \
                         answering any Host lets a web page on any domain that resolves here read it \
                         as same-origin (DNS rebinding). Set `listen[{i}].allowed_hosts = [\"your.host.name\"]` \
                         (or [\"*\"] to accept any Host), or pass --allowed-host NAME (repeatable; \
                         --allowed-host '*' for any)"
                    ))
                }
            };
            let trusted_proxies = match &raw_l.trusted_proxies {
                Some(list) => cidrs(list, &format!("listen[{i}].trusted_proxies"))?,
                None => global_proxies.clone(),
            };
            listeners.push(ListenerConfig {
                addr,
                tls,
                hosts,
                trusted_proxies,
                proxy_protocol: raw_l.proxy_protocol.unwrap_or(false),
            });
        }
        if listeners.is_empty() {
            return Err("no `[[listen]]` address".into());
        }
        let admin = validate_admin(raw.admin.as_ref(), &listeners)?;
        let engine = match raw.cluster.engine.as_deref().unwrap_or("memory") {
            "memory" => EngineKind::Memory,
            other => {
                return Err(format!(
                    "`cluster.engine`: \"{other}\" is not available in this build (only \"memory\")"
                ))
            }
        };
        Ok(ServerConfig {
            listeners,
            limits,
            routes,
            vhosts,
            route_count: next_id,
            admin,
            engine,
        })
    }

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

fn validate_admin(
    raw: Option<&RawAdmin>,
    listeners: &[ListenerConfig],
) -> Result<AdminConfig, String> {
    let Some(raw) = raw else {
        return Ok(AdminConfig::default());
    };
    let addr = match &raw.addr {
        None => None,
        Some(a) => {
            let addr: SocketAddr = a
                .parse()
                .map_err(|_| format!("`admin.addr`: `{a}` is not IP:PORT (e.g. 127.0.0.1:9090)"))?;
            if let Some(i) = listeners
                .iter()
                .position(|l| l.addr == addr && addr.port() != 0)
            {
                return Err(format!(
                    "`admin.addr` {addr} is also `listen[{i}].addr`: give the admin listener its own port"
                ));
            }
            Some(addr)
        }
    };
    if matches!(&raw.metrics_token, Some(t) if t.is_empty()) {
        return Err("`admin.metrics_token` is empty (leave it out for no token)".into());
    }
    let hosts = match (&raw.allowed_hosts, addr) {
        (Some(h), _) if h.iter().any(|h| h == "*") => HostRule::Any,
        (Some(h), _) => HostRule::Names(h.iter().map(|h| h.to_ascii_lowercase()).collect()),
        (None, Some(a)) if a.ip().is_loopback() => HostRule::Loopback,
        (None, None) => HostRule::Loopback,
        (None, Some(_)) if raw.metrics_token.is_some() => HostRule::Any,
        (None, Some(a)) => {
            return Err(format!(
                "`admin.addr` ({a}) is not a loopback address, so it needs `admin.allowed_hosts` \
                 (the names or addresses scrapers use, or [\"*\"]) or `admin.metrics_token`: \
                 otherwise a web page on any domain that resolves here can read /metrics \
                 (DNS rebinding)"
            ))
        }
    };
    Ok(AdminConfig {
        addr,
        hosts,
        metrics_token: raw.metrics_token.clone(),
    })
}

/// A list of networks (`10.0.0.0/8`) or addresses (`192.0.2.1`, meaning
/// that one address).
fn cidrs(list: &[String], key: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    format!("`{key}`: `{s}` is not an address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)")
                })
        })
        .collect()
}

fn validate_routes(
    raw: &[RawRoute],
    table: &str,
    next_id: &mut usize,
) -> Result<Vec<Route>, String> {
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("{table}[{i}] ({})", r.path);
        // A second route on one path could never be reached.
        if let Some(first) = routes.iter().find(|f| f.path == r.path) {
            return Err(format!(
                "{at}: `path` {} is already the path of {}; each path is one route",
                r.path, first.name
            ));
        }
        let route = validate_route(r).map_err(|e| format!("{at}: {e}"))?;
        routes.push(Route {
            id: *next_id,
            name: at,
            ..route
        });
        *next_id += 1;
    }
    Ok(routes)
}

/// The exec-only keys of a route whose `command` and `mode` are known.
fn validate_exec(r: &RawRoute, command: Vec<String>, binary: bool) -> Result<ExecRoute, String> {
    super::exec::find_program(&command[0], std::env::var_os("PATH").as_deref())
        .map_err(|e| format!("`command`: {e}"))?;
    let max_processes = r.max_processes.ok_or("`max_processes` is missing")?;
    if max_processes == 0 {
        return Err("`max_processes` must be at least 1".into());
    }
    let dur = |v: &Option<DurationValue>, key: &str| match v {
        Some(v) => duration_at(v, key),
        None => Err(format!("`{key}` is missing")),
    };
    let stdin_timeout = dur(&r.stdin_timeout, "stdin_timeout")?;
    if stdin_timeout.is_zero() {
        return Err("`stdin_timeout` must be more than 0".into());
    }
    let pass_env = r.pass_env.clone().unwrap_or_default();
    if let Some(bad) = pass_env
        .iter()
        .find(|n| n.is_empty() || n.contains(['=', '\0']))
    {
        return Err(format!(
            "`pass_env`: `{bad}` is not an environment variable name"
        ));
    }
    Ok(ExecRoute {
        command,
        binary,
        max_processes,
        stdin_timeout,
        exit_grace: dur(&r.exit_grace, "exit_grace")?,
        pass_env,
    })
}

fn validate_route(r: &RawRoute) -> Result<Route, String> {
    let only = |present: bool, key: &str, kinds: &str| {
        if present {
            Err(format!(
                "`{key}` only applies to kind = {kinds}, not \"{}\"",
                r.kind
            ))
        } else {
            Ok(())
        }
    };
    let kind = r.kind.as_str();
    only(r.dir.is_some() && kind != "static", "dir", "\"static\"")?;
    only(r.command.is_some() && kind != "exec", "command", "\"exec\"")?;
    only(r.mode.is_some() && kind != "exec", "mode", "\"exec\"")?;
    let exec_only = r.max_processes.is_some()
        || r.stdin_timeout.is_some()
        || r.exit_grace.is_some()
        || r.pass_env.is_some();
    only(
        exec_only && kind != "exec",
        "max_processes/stdin_timeout/exit_grace/pass_env",
        "\"exec\"",
    )?;
    let pubsub_only = r.publish_path.is_some()
        || r.publish_token.is_some()
        || r.demo_ticker.is_some()
        || r.client_publish.is_some()
        || r.history_size.is_some()
        || r.history_ttl.is_some()
        || r.presence.is_some();
    only(
        pubsub_only && kind != "pubsub",
        "publish_path/publish_token/demo_ticker/client_publish/history_size/history_ttl/presence",
        "\"pubsub\"",
    )?;
    let kind = match kind {
        "demo" => RouteKind::Demo,
        "static" => {
            let dir = r
                .dir
                .as_ref()
                .ok_or("`dir` is required for kind = \"static\"")?;
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("`dir` {}: {e}", dir.display()))?;
            if !dir.is_dir() {
                return Err(format!("`dir` {} is not a directory", dir.display()));
            }
            RouteKind::Static { dir }
        }
        "echo" => RouteKind::Echo,
        "room" => RouteKind::Room,
        "pubsub" => {
            let publish_path = match (&r.publish_path, &r.publish_token) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(_)) => Some("/api/publish".to_owned()),
                (None, None) => None,
            };
            if let Some(p) = &publish_path {
                if !p.starts_with('/') {
                    return Err(format!("`publish_path` must start with `/` (got `{p}`)"));
                }
            }
            if matches!(&r.publish_token, Some(t) if t.is_empty()) {
                return Err("`publish_token` is empty".into());
            }
            let client_publish = match &r.client_publish {
                None | Some(ClientPublish::All(false)) => Vec::new(),
                Some(ClientPublish::All(true)) => vec!["*".to_owned()],
                Some(ClientPublish::Patterns(p)) => {
                    if let Some(bad) = p.iter().find(|p| p.is_empty() || p.len() > MAX_NAME) {
                        return Err(format!(
                            "`client_publish`: `{bad}` is not a channel name or prefix (1 to {MAX_NAME} bytes)"
                        ));
                    }
                    p.clone()
                }
            };
            let history_ttl = match &r.history_ttl {
                None => None,
                Some(v) => {
                    let ttl = duration_at(v, "history_ttl")?;
                    if ttl.is_zero() {
                        return Err("`history_ttl` must be more than 0 (leave it out to keep history until it is pushed out)".into());
                    }
                    Some(ttl)
                }
            };
            let history_size = r.history_size.unwrap_or(0);
            if history_ttl.is_some() && history_size == 0 {
                return Err(
                    "`history_ttl` needs `history_size` (messages kept per channel)".into(),
                );
            }
            RouteKind::Pubsub {
                publish_path,
                publish_token: r.publish_token.clone(),
                demo_ticker: r.demo_ticker.clone(),
                client_publish,
                history_size,
                history_ttl,
                presence: r.presence.unwrap_or(false),
            }
        }
        "exec" => {
            let command = r
                .command
                .clone()
                .ok_or("`command` is required for kind = \"exec\"")?;
            if command.is_empty() || command[0].is_empty() {
                return Err("`command` needs at least the program".into());
            }
            let binary = match r.mode.as_deref() {
                None | Some("lines") => false,
                Some("binary") => true,
                Some(m) => {
                    return Err(format!(
                        "`mode` must be \"lines\" or \"binary\", not \"{m}\""
                    ))
                }
            };
            RouteKind::Exec(validate_exec(r, command, binary)?)
        }
        other => {
            return Err(format!(
                "unknown `kind` \"{other}\" (one of demo, static, echo, room, pubsub, exec)"
            ))
        }
    };
    let pattern = PathPattern::parse(&r.path, matches!(kind, RouteKind::Static { .. }))?;
    let origins = match &r.origins {
        None => OriginRule::SameOrigin,
        Some(list) if list.iter().any(|o| o == "*") => OriginRule::Any,
        Some(list) => {
            let mut out = Vec::new();
            for o in list {
                let o = o.trim_end_matches('/').to_ascii_lowercase();
                if o != "null" && !o.contains("://") {
                    return Err(format!(
                        "`origins`: `{o}` is not an origin like https://example.com"
                    ));
                }
                out.push(o);
            }
            OriginRule::List(out)
        }
    };
    let auth = match &r.auth {
        None => None,
        Some(a) => {
            let jwt = validate_jwt(a)?;
            if a.tokens.is_empty() && jwt.is_none() {
                return Err(
                    "`auth` needs `tokens`, `jwt_secret`, `jwt_public_key` or `jwks`".into(),
                );
            }
            if a.tokens.iter().any(|t| t.is_empty()) {
                return Err("`auth.tokens` contains an empty token".into());
            }
            Some(AuthConfig {
                tokens: a.tokens.clone(),
                jwt: jwt.map(Arc::new),
                cookie: a.cookie.clone(),
                query_param: a
                    .query_param
                    .clone()
                    .unwrap_or_else(|| "access_token".into()),
            })
        }
    };
    for p in &r.protocols {
        if !tether::proto::handshake::is_token(p) {
            return Err(format!(
                "`protocols`: `{p}` is not a valid subprotocol token"
            ));
        }
    }
    Ok(Route {
        id: 0,
        name: String::new(),
        path: r.path.clone(),
        pattern,
        kind,
        protocols: r.protocols.clone(),
        origins,
        auth,
    })
}

/// The JWT settings of a route's `auth`: one key source (files read here,
/// so a reload re-reads them) and the claim rules.
fn validate_jwt(a: &RawAuth) -> Result<Option<JwtVerifier>, String> {
    let sources = [
        a.jwt_secret.as_deref().map(KeySource::Secret),
        a.jwt_public_key.as_deref().map(KeySource::PemFile),
        a.jwks.as_deref().map(KeySource::JwksFile),
    ];
    let mut sources = sources.into_iter().flatten();
    let Some(source) = sources.next() else {
        let jwt_only = a.issuer.is_some()
            || a.audience.is_some()
            || a.leeway.is_some()
            || a.max_lifetime.is_some();
        if jwt_only {
            return Err(
                "`auth.issuer`/`audience`/`leeway`/`max_lifetime` need a JWT key: \
                 `jwt_secret`, `jwt_public_key` or `jwks`"
                    .into(),
            );
        }
        return Ok(None);
    };
    if sources.next().is_some() {
        return Err("`auth`: set only one of `jwt_secret`, `jwt_public_key`, `jwks`".into());
    }
    let key = match &source {
        KeySource::Secret("") => return Err("`auth.jwt_secret` is empty".into()),
        KeySource::Secret(_) => "auth.jwt_secret",
        KeySource::PemFile(_) => "auth.jwt_public_key",
        KeySource::JwksFile(_) => "auth.jwks",
    };
    let leeway = match &a.leeway {
        Some(v) => duration_at(v, "auth.leeway")?.as_secs(),
        None => 30,
    };
    let max_lifetime = match &a.max_lifetime {
        Some(v) => Some(duration_at(v, "auth.max_lifetime")?.as_secs()),
        None => None,
    };
    let audience = a.audience.as_ref().map(OneOrMany::to_vec);
    if matches!(&audience, Some(v) if v.is_empty() || v.iter().any(String::is_empty)) {
        return Err("`auth.audience` is empty".into());
    }
    if matches!(&a.issuer, Some(i) if i.is_empty()) {
        return Err("`auth.issuer` is empty".into());
    }
    let rules = ClaimRules {
        leeway,
        max_lifetime,
        issuer: a.issuer.clone(),
        audience,
    };
    JwtVerifier::load(source, rules)
        .map(Some)
        .map_err(|e| format!("`{key}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effective(text: &str) -> Result<ServerConfig, String> {
        let raw = RawConfig::parse(text)?.with_args(&ServeArgs::default());
        ServerConfig::from_raw(&raw)
    }

    #[test]
    fn builtin_config_validates_and_round_trips() {
        let raw = RawConfig::builtin("t".into()).with_args(&ServeArgs::default());
        let printed = raw.to_toml();
        let again = RawConfig::parse(&printed).unwrap();
        let cfg = ServerConfig::from_raw(&again).unwrap();
        assert_eq!(cfg.routes.len(), 4);
        assert_eq!(cfg.listeners[0].hosts, HostRule::Loopback);
        assert_eq!(cfg.limits.max_message_size, 1 << 20);
    }

    #[test]
    fn example_file_validates() {
        let text = include_str!("assets/example.toml").replace("./public", ".");
        let cfg = effective(&text).unwrap();
        assert_eq!(cfg.routes.len(), 5);
        assert_eq!(cfg.vhosts[0].routes.len(), 1);
        assert_eq!(cfg.route_count, 6);
        assert!(matches!(
            cfg.routes[4].kind,
            RouteKind::Exec(ExecRoute { binary: false, .. })
        ));
        assert_eq!(
            cfg.routes[2].origins,
            OriginRule::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
    }

    #[test]
    fn queue_limits_have_defaults_and_are_checked_against_the_message_size() {
        let cfg = effective("").unwrap();
        assert_eq!(cfg.limits.max_queued_bytes_per_connection, 8 << 20);
        assert_eq!(cfg.limits.max_queued_bytes, 256 << 20);
        assert_eq!(cfg.limits.max_subscriptions, 128);
        let e = effective("[limits]\nmax_queued_bytes_per_connection = \"64K\"\n").unwrap_err();
        assert!(
            e.contains("limits.max_queued_bytes_per_connection")
                && e.contains("limits.max_message_size"),
            "{e}"
        );
        // Raising the message size alone keeps the defaults valid.
        let big = effective("[limits]\nmax_message_size = \"64M\"\n").unwrap();
        assert_eq!(big.limits.max_queued_bytes_per_connection, 128 << 20);
        assert_eq!(big.limits.max_queued_bytes, 256 << 20);
        let e = effective("[limits]\nmax_subscriptions = 0\n").unwrap_err();
        assert!(e.contains("limits.max_subscriptions"), "{e}");
    }

    #[test]
    fn history_and_presence_are_pubsub_route_options() {
        let cfg = effective(
            "[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_size = 100\nhistory_ttl = \"10m\"\npresence = true\n",
        )
        .unwrap();
        match &cfg.routes[0].kind {
            RouteKind::Pubsub {
                history_size,
                history_ttl,
                presence,
                ..
            } => {
                assert_eq!(*history_size, 100);
                assert_eq!(*history_ttl, Some(Duration::from_secs(600)));
                assert!(*presence);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.engine, EngineKind::Memory);
        let e = effective("[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_ttl = \"soon\"\nhistory_size = 1\n")
            .unwrap_err();
        assert!(
            e.contains("route[0] (/p)") && e.contains("`history_ttl`"),
            "{e}"
        );
        let e = effective("[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_ttl = \"1m\"\n")
            .unwrap_err();
        assert!(e.contains("history_size"), "{e}");
        let e =
            effective("[[route]]\npath = \"/r\"\nkind = \"room\"\npresence = true\n").unwrap_err();
        assert!(e.contains("presence"), "{e}");
        let e = effective("[cluster]\nengine = \"redis\"\n").unwrap_err();
        assert!(e.contains("cluster.engine") && e.contains("memory"), "{e}");
    }

    #[test]
    fn client_publish_is_off_unless_allowed() {
        let kind = |extra: &str| {
            let cfg = effective(&format!(
                "[[route]]\npath = \"/p\"\nkind = \"pubsub\"\n{extra}"
            ))
            .unwrap();
            match &cfg.routes[0].kind {
                RouteKind::Pubsub { client_publish, .. } => client_publish.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert!(kind("").is_empty());
        assert!(kind("client_publish = false\n").is_empty());
        assert_eq!(kind("client_publish = true\n"), ["*"]);
        assert_eq!(kind("client_publish = [\"chat.*\"]\n"), ["chat.*"]);
        let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\nclient_publish = true\n")
            .unwrap_err();
        assert!(e.contains("client_publish"), "{e}");
        // The built-in demo lets clients publish into its chat rooms only
        // (its ticker is the server's own).
        let raw = RawConfig::builtin("t".into()).with_args(&ServeArgs::default());
        let builtin = ServerConfig::from_raw(&raw).unwrap();
        assert!(builtin.routes.iter().all(|r| match &r.kind {
            RouteKind::Pubsub { client_publish, .. } => client_publish == &["chat.*"],
            _ => true,
        }));
    }

    #[test]
    fn the_same_route_path_twice_in_a_host_is_refused_naming_both() {
        let routes = "[[route]]\npath = \"/a\"\nkind = \"echo\"\n\
                      [[route]]\npath = \"/b\"\nkind = \"echo\"\n\
                      [[route]]\npath = \"/a\"\nkind = \"room\"\n";
        let e = effective(routes).unwrap_err();
        assert!(
            e.contains("route[0] (/a)") && e.contains("route[2] (/a)"),
            "{e}"
        );
        // One path in two virtual hosts is two routes.
        let vhost = "[[route]]\npath = \"/a\"\nkind = \"echo\"\n\
                     [[vhost]]\nhosts = [\"a.example\"]\n\
                     [[vhost.route]]\npath = \"/a\"\nkind = \"echo\"\n";
        effective(vhost).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn field_of_another_kind_is_refused_with_route_named() {
        let e =
            effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\ndir = \"/tmp\"\n").unwrap_err();
        assert!(e.contains("route[0] (/e)") && e.contains("`dir`"), "{e}");
    }

    #[test]
    fn jwt_key_errors_name_the_key_and_file() {
        let route = |auth: &str| {
            format!("[[route]]\npath = \"/k\"\nkind = \"echo\"\nauth = {{ {auth} }}\n")
        };
        let e = effective(&route("jwks = \"/nonexistent/keys.json\"")).unwrap_err();
        assert!(
            e.contains("route[0] (/k): `auth.jwks`: cannot read /nonexistent/keys.json"),
            "{e}"
        );
        let e = effective(&route("jwt_secret = \"a\", jwks = \"k.json\"")).unwrap_err();
        assert!(e.contains("only one of"), "{e}");
        let e = effective(&route("tokens = [\"t\"], issuer = \"x\"")).unwrap_err();
        assert!(e.contains("need a JWT key"), "{e}");
        let e = effective(&route("jwt_secret = \"a\", leeway = \"soon\"")).unwrap_err();
        assert!(e.contains("`auth.leeway`"), "{e}");
        let cfg = effective(&route(
            "jwt_secret = \"a\", audience = \"api\", max_lifetime = \"1h\"",
        ))
        .unwrap();
        assert!(cfg.routes[0].auth.as_ref().unwrap().jwt.is_some());
    }

    #[test]
    fn trusted_proxies_per_listener_or_global() {
        let cfg = effective(
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n[[listen]]\naddr = \"127.0.0.1:1\"\n[[listen]]\naddr = \"127.0.0.1:2\"\ntrusted_proxies = []\nproxy_protocol = true\n",
        )
        .unwrap();
        let l = &cfg.listeners;
        assert_eq!(l[0].trusted_proxies.len(), 2);
        assert!(l[0].trusted_proxies[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(l[1].trusted_proxies.is_empty() && l[1].proxy_protocol && !l[0].proxy_protocol);
        let e =
            effective("[[listen]]\naddr = \"127.0.0.1:1\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
                .unwrap_err();
        assert!(
            e.contains("`listen[0].trusted_proxies`: `10.0.0.0/33`"),
            "{e}"
        );
        // Printed and read back.
        let raw = RawConfig::parse(
            "trusted_proxies = [\"10.0.0.0/8\"]\n[[route]]\npath = \"/e\"\nkind = \"echo\"\n",
        )
        .unwrap()
        .with_args(&ServeArgs::default());
        let again = RawConfig::parse(&raw.to_toml()).unwrap();
        assert_eq!(again.trusted_proxies, vec!["10.0.0.0/8".to_owned()]);
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = effective("[limits]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("limits.idle_timeout"), "{e}");
    }

    #[test]
    fn send_timeout_defaults_to_30s_and_0_turns_it_off() {
        assert_eq!(
            effective("").unwrap().limits.send_timeout,
            Some(Duration::from_secs(30))
        );
        let off = effective("[limits]\nsend_timeout = 0\n").unwrap();
        assert_eq!(off.limits.send_timeout, None);
        let e = effective("[limits]\nsend_timeout = \"1 week\"\n").unwrap_err();
        assert!(e.contains("limits.send_timeout"), "{e}");
    }

    #[test]
    fn http_connection_limits_are_their_own() {
        // A low WebSocket limit does not refuse plain HTTP (nor handshakes
        // before the WebSocket limit answers them).
        let l = effective("[limits]\nmax_connections = 7\nmax_connections_per_ip = 3\n")
            .unwrap()
            .limits;
        assert_eq!(
            (l.max_http_connections, l.max_http_connections_per_ip),
            (10_000, 1_000)
        );
        let l = effective("[limits]\nmax_http_connections = 5\nmax_http_connections_per_ip = 2\n")
            .unwrap()
            .limits;
        assert_eq!(
            (l.max_http_connections, l.max_http_connections_per_ip),
            (5, 2)
        );
        assert_eq!(
            (l.max_connections, l.max_connections_per_ip),
            (10_000, 1_000)
        );
    }

    #[test]
    fn http_response_deadline_grows_with_the_body() {
        let l = effective("[limits]\nhttp_response_timeout = \"10s\"\nmin_send_rate = \"1K\"\n")
            .unwrap()
            .limits;
        assert_eq!(l.http_response_deadline(0), Duration::from_secs(10));
        assert_eq!(l.http_response_deadline(5 * 1024), Duration::from_secs(15));
        assert!(l.http_response_deadline(u64::MAX).as_secs() > 1 << 40);
        let e = effective("[limits]\nmin_send_rate = 0\n").unwrap_err();
        assert!(e.contains("limits.min_send_rate"), "{e}");
    }

    #[test]
    fn public_listener_without_allowed_hosts_is_refused() {
        let e = effective("[[listen]]\naddr = \"0.0.0.0:80\"\n").unwrap_err();
        for key in [
            "`listen[0]`",
            "0.0.0.0:80",
            "allowed_hosts",
            "--allowed-host",
            "[\"*\"]",
        ] {
            assert!(e.contains(key), "{key} missing: {e}");
        }
        let any = effective("[[listen]]\naddr = \"[::]:80\"\nallowed_hosts = [\"*\"]\n").unwrap();
        assert_eq!(any.listeners[0].hosts, HostRule::Any);
        let loopback = effective("[[listen]]\naddr = \"[::1]:80\"\n").unwrap();
        assert_eq!(loopback.listeners[0].hosts, HostRule::Loopback);
    }

    #[test]
    fn allowed_host_flags_replace_every_listeners_list() {
        let args = ServeArgs {
            listen: Some("0.0.0.0:80".into()),
            allowed_hosts: vec!["Chat.Example".into()],
            ..Default::default()
        };
        let raw = RawConfig::parse("").unwrap().with_args(&args);
        let cfg = ServerConfig::from_raw(&raw).unwrap();
        assert_eq!(
            cfg.listeners[0].hosts,
            HostRule::Names(vec!["chat.example".into()])
        );
    }

    #[test]
    fn public_listener_defaults_to_vhost_names() {
        let cfg = effective(
            "[[listen]]\naddr = \"0.0.0.0:80\"\n[[vhost]]\nhosts = [\"A.example\"]\n[[vhost.route]]\npath = \"/e\"\nkind = \"echo\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.listeners[0].hosts,
            HostRule::Names(vec!["a.example".into()])
        );
        assert_eq!(cfg.routes_for("a.example").len(), 1);
        assert_eq!(cfg.routes_for("b.example").len(), 0);
    }

    const EXEC: &str = "[[route]]\npath = \"/x\"\nkind = \"exec\"\ncommand = [\"sh\"]\n";

    #[test]
    fn exec_routes_get_their_defaults_printed_and_validated() {
        let raw = RawConfig::parse(EXEC)
            .unwrap()
            .with_args(&ServeArgs::default());
        let printed = raw.to_toml();
        for key in [
            "max_processes = 256",
            "stdin_timeout = \"10s\"",
            "exit_grace = \"2s\"",
        ] {
            assert!(printed.contains(key), "{key} missing from:\n{printed}");
        }
        let cfg = ServerConfig::from_raw(&raw).unwrap();
        let RouteKind::Exec(e) = &cfg.routes[0].kind else {
            panic!("not exec")
        };
        assert_eq!(e.max_processes, 256);
        assert_eq!(e.stdin_timeout, Duration::from_secs(10));
        assert_eq!(e.exit_grace, Duration::from_secs(2));
        assert!(e.pass_env.is_empty());
    }

    #[test]
    fn exec_options_are_checked_and_errors_name_route_and_key() {
        let with = |extra: &str| effective(&format!("{EXEC}{extra}\n")).unwrap_err();
        let e = with("stdin_timeout = \"soon\"");
        assert!(
            e.contains("route[0] (/x)") && e.contains("`stdin_timeout`"),
            "{e}"
        );
        let e = with("exit_grace = \"2 weeks\"");
        assert!(e.contains("`exit_grace`"), "{e}");
        let e = with("max_processes = 0");
        assert!(e.contains("`max_processes` must be at least 1"), "{e}");
        let e = with("pass_env = [\"A=B\"]");
        assert!(e.contains("`pass_env`") && e.contains("A=B"), "{e}");
        let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\nexit_grace = \"1s\"\n")
            .unwrap_err();
        assert!(e.contains("only applies to kind = \"exec\""), "{e}");
        let e =
            effective("[[route]]\npath = \"/m\"\nkind = \"exec\"\ncommand = [\"/no/such/prog\"]\n")
                .unwrap_err();
        assert!(
            e.contains("route[0] (/m): `command`: program `/no/such/prog`"),
            "{e}"
        );
    }

    #[test]
    fn a_program_after_double_dash_is_an_exec_route_at_the_root() {
        let raw = RawConfig::program(vec!["cat".into()], true).with_args(&ServeArgs::default());
        let cfg = ServerConfig::from_raw(&raw).unwrap();
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(cfg.routes[0].path, "/");
        assert!(matches!(
            &cfg.routes[0].kind,
            RouteKind::Exec(ExecRoute { binary: true, command, .. }) if command == &["cat"]
        ));
    }

    #[test]
    fn admin_settings_are_checked() {
        let cfg = effective("[admin]\naddr = \"127.0.0.1:9090\"\nmetrics_token = \"t\"\n").unwrap();
        assert_eq!(cfg.admin.addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(cfg.admin.hosts, HostRule::Loopback);
        assert_eq!(cfg.admin.metrics_token.as_deref(), Some("t"));
        let e = effective("[admin]\naddr = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(e.contains("admin.allowed_hosts"), "{e}");
        let named =
            effective("[admin]\naddr = \"0.0.0.0:9090\"\nallowed_hosts = [\"Mon.Example\"]\n")
                .unwrap();
        assert_eq!(
            named.admin.hosts,
            HostRule::Names(vec!["mon.example".into()])
        );
        let any = effective("[admin]\naddr = \"0.0.0.0:9090\"\nallowed_hosts = [\"*\"]\n").unwrap();
        assert_eq!(any.admin.hosts, HostRule::Any);
        let token = effective("[admin]\naddr = \"0.0.0.0:9090\"\nmetrics_token = \"t\"\n").unwrap();
        assert_eq!(token.admin.hosts, HostRule::Any);
        let e = effective("[admin]\naddr = \"9090\"\n").unwrap_err();
        assert!(e.contains("`admin.addr`"), "{e}");
        let e = effective("[admin]\naddr = \"127.0.0.1:8080\"\n").unwrap_err();
        assert!(e.contains("listen[0].addr"), "{e}");
        let e = effective("[admin]\nmetrics_token = \"\"\n").unwrap_err();
        assert!(e.contains("admin.metrics_token"), "{e}");
        let e = effective("[admin]\nport = 1\n").unwrap_err();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn path_patterns_capture_segments() {
        let p = PathPattern::parse("/chat/{room}", false).unwrap();
        assert_eq!(p.matches("/chat/lobby"), Some((vec!["lobby"], "")));
        assert_eq!(p.matches("/chat/"), None);
        assert_eq!(p.matches("/chat/a/b"), None);
        let s = PathPattern::parse("/static", true).unwrap();
        assert_eq!(s.matches("/static/css/a.css"), Some((vec![], "css/a.css")));
        assert_eq!(s.matches("/other"), None);
        let root = PathPattern::parse("/", true).unwrap();
        assert_eq!(root.matches("/index.html"), Some((vec![], "index.html")));
        let exact = PathPattern::parse("/", false).unwrap();
        assert_eq!(exact.matches("/"), Some((vec![], "")));
        assert_eq!(exact.matches("/x"), None);
    }
}
