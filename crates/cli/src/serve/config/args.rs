//! The command-line flags and environment variables of `tether serve`.

use std::path::PathBuf;

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

    /// Serve HTTP/2 beside HTTP/1.1 on every listener (`http2 = true`):
    /// offered by ALPN with TLS, by prior knowledge without.
    #[arg(long, env = "TETHER_HTTP2")]
    pub http2: bool,

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
