//! [`RawConfig`]: the TOML file as written, and the defaults and flags
//! applied over it ([`RawConfig::with_args`]), which is what `--print-config`
//! prints.

use super::args::ServeArgs;
pub use super::deflate::RawDeflate;
pub use super::http2::RawHttp2;
use super::values::parse_size_value;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// `[deflate]`: compression settings (`limits.permessage_deflate`
    /// switches it on and off).
    #[serde(default)]
    pub deflate: RawDeflate,
    /// `[http2]`: streams and windows of listeners with `http2 = true`.
    #[serde(default)]
    pub http2: RawHttp2,
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
    /// `memory` (the default: this process alone), `redis` or `nats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// `redis://HOST:PORT/DB` (engine `redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// `nats://HOST:PORT`, comma-separated for several (engine `nats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// First part of every Redis key and PUB/SUB channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// This node's name, unique in the cluster (presence, logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Longest wait for any request to the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_timeout: Option<DurationValue>,
    /// How often the engine's subscriber connection is probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval: Option<DurationValue>,
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
    /// Serve HTTP/2 beside HTTP/1.1 (default false): offered by ALPN with
    /// TLS, by prior knowledge without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
}

/// `[limits]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Negotiate permessage-deflate when a client offers it (default true;
    /// settings in `[deflate]`).
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
    /// pubsub: also serve the channels as Server-Sent Events at
    /// `PATH/events?channel=...` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<bool>,
    /// pubsub with `sse`: the reconnection delay sent to clients in
    /// `retry:` (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_retry: Option<DurationValue>,
    /// pubsub with `sse`: a comment line is sent after this much silence,
    /// so proxies keep the stream open (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_heartbeat: Option<DurationValue>,
    /// pubsub with `sse`: a stream is ended after this long (the client
    /// reconnects and resumes, perhaps on another server); default 0: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_max_lifetime: Option<DurationValue>,
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
                    sse: Some(true),
                    ..route("/pubsub", "pubsub")
                },
            ],
            vhost: Vec::new(),
            admin: None,
            cluster: RawCluster::default(),
            deflate: RawDeflate::default(),
            http2: RawHttp2::default(),
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
        if args.http2 {
            for l in &mut self.listen {
                l.http2 = Some(true);
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
            .and_then(|v| parse_size_value(v, "limits.max_message_size").ok())
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
        for r in routes {
            if r.kind == "exec" {
                r.max_processes.get_or_insert(256);
                fill_dur(&mut r.stdin_timeout, "10s");
                fill_dur(&mut r.exit_grace, "2s");
            }
            if r.sse == Some(true) {
                fill_dur(&mut r.sse_retry, "2s");
                fill_dur(&mut r.sse_heartbeat, "15s");
                r.sse_max_lifetime.get_or_insert(DurationValue::Secs(0));
            }
        }
        let c = &mut self.cluster;
        if matches!(
            c.engine.get_or_insert_with(|| "memory".into()).as_str(),
            "redis" | "nats"
        ) {
            c.prefix.get_or_insert_with(|| "tether".into());
            c.node.get_or_insert_with(super::cluster::default_node);
            fill_dur(&mut c.io_timeout, "2s");
            fill_dur(&mut c.probe_interval, "1s");
        }
        self.deflate = self.deflate.with_defaults();
        self.http2 = self.http2.with_defaults();
        self
    }

    /// The effective file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}
