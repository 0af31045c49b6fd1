//! `tether connect`: a WebSocket client for people and for scripts.
//!
//! * On a terminal it is interactive: a line editor with history
//!   (rustyline), received messages printed above the prompt with their
//!   direction and time, and `/` commands (`/ping`, `/close`, `/binary`).
//! * Otherwise it is a filter: each stdin line is a message, each received
//!   message a stdout line (or a JSON object with `--jsonl`). At the end of
//!   stdin it waits for the replies (see [`session::AtEof`]), then sends a
//!   Close and keeps reading until the closing handshake is complete, so
//!   nothing the server sent before its Close is lost. The exit status says
//!   how the connection ended (see [`exit`]).
//! * `--listen ADDR` turns it around: accept one WebSocket connection and
//!   pipe it the same way.

mod interactive;
mod output;
mod session;

use crate::size::parse_size;
use output::{Output, OutputMode};
use session::{AtEof, Input, Outcome};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;
use tether::http2::ClientStream;
use tether::reconnect::{connect_with_backoff, connect_with_backoff_by, Backoff};
use tether::tls::TlsOptions;
use tether::{ClientBuilder, Keepalive, WebSocketConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// Exit statuses of `tether connect` (also in `--help`).
pub mod exit {
    /// The connection closed cleanly with 1000 (normal), 1001 (going away)
    /// or no status code (1005).
    pub const CLEAN: i32 = 0;
    /// Could not connect: DNS, TCP, proxy, TLS, or the handshake was refused.
    pub const CONNECT_FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    #[allow(dead_code)] // clap exits with it itself; listed for completeness
    pub const USAGE: i32 = 2;
    /// Closed cleanly, but the peer's close code was not 1000/1001/1005.
    pub const CLOSED_WITH_ERROR_CODE: i32 = 3;
    /// Abnormal closure (1006): the transport ended without a closing
    /// handshake, or a timeout expired.
    pub const ABNORMAL: i32 = 4;
    /// The peer broke the protocol; we failed the connection (1002, 1007,
    /// 1009, ...).
    pub const PROTOCOL_ERROR: i32 = 5;
    /// Closed cleanly, but our Close went out before every message sent
    /// had a reply (`--linger 0`, `/close`) and the server's Close ended the
    /// connection with fewer replies than messages sent.
    pub const REPLIES_CUT_OFF: i32 = 6;
}

const LONG_ABOUT: &str = "\
Open a WebSocket connection and talk to it.

On a terminal, `tether connect` is interactive: type a line to send it as a
text message; received messages are shown with direction and time. Commands:
  /ping [DATA]          send a ping (the pong is shown)
  /close [CODE [REASON]] start the closing handshake (default 1000)
  /binary TEXT          send TEXT as a binary message
  /text TEXT            send TEXT as text (for lines starting with /)
  /sleep SECS           pause input while messages keep arriving
  /help                 list the commands
Ctrl-D or Ctrl-C closes the connection with 1000.

When stdin is not a terminal, each input line is sent as one message and each
received message is written as one stdout line (binary messages raw, followed
by a newline); status goes to stderr. At the end of input, tether connect
waits for the replies: once as many messages have arrived as were sent (and
0.1 s passed without another), or once nothing has arrived for 1 s (--linger),
it sends a Close (1000) and output continues until the server completes the
closing handshake. Servers may answer a Close at once and drop replies not yet
sent, so closing at the end of input (--linger 0) can lose them; --no-close
never sends a Close and waits for the server's.
With --jsonl every event is a JSON object on stdout instead; with --commands
input lines starting with / are the commands above.

Proxies: --proxy, else the http_proxy / https_proxy / all_proxy / no_proxy
environment variables (HTTP CONNECT, socks5://, socks5h://).";

const AFTER_LONG_HELP: &str = "\
Exit status:
  0  closed cleanly with 1000, 1001 or no status code
  1  could not connect (DNS, TCP, proxy, TLS, handshake refused)
  2  bad command line
  3  closed cleanly with another close code (e.g. 1008, 4000)
  4  abnormal closure (1006: connection lost without a Close, or a timeout)
  5  the peer broke the WebSocket protocol (we closed with 1002/1007/1009...)
  6  closed cleanly, but our Close went out before every message had a reply
     (--linger 0 or /close) and fewer replies than messages arrived; stderr
     says how many were sent and received

Examples:
  # Chat interactively with an echo server
  tether connect ws://127.0.0.1:8080/echo

  # Every reply to every input line (closes once each line has its reply)
  seq 1 100 | tether connect ws://127.0.0.1:8080/echo

  # One request, its answers, in a script (wait for 0.5 s of quiet before closing)
  echo '{\"op\":\"subscribe\"}' | tether connect --linger 0.5 wss://example.com/feed

  # Structured events for jq
  printf 'a\\nb\\n' | tether connect --jsonl ws://127.0.0.1:8080/echo | jq .

  # A private CA, a subprotocol, an auth header, through a proxy
  tether connect --cacert ca.pem --protocol chat.v1 -H 'Authorization: Bearer T' \\
      --proxy http://proxy.local:3128 wss://internal.example/chat

  # Accept one connection and pipe it to stdin/stdout (like websocat -s)
  tether connect --listen 127.0.0.1:9000";

/// Options of `tether connect`.
#[derive(clap::Args, Debug, Clone)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct ConnectArgs {
    /// WebSocket URL: ws://, wss://, http(s):// (mapped to ws(s)://), or
    /// HOST:PORT[/PATH] without a scheme (taken as ws://).
    #[arg(required_unless_present = "listen")]
    pub url: Option<String>,

    /// Instead of connecting, accept one WebSocket connection on ADDR
    /// (e.g. 127.0.0.1:9000, localhost:9000) and pipe it to stdin/stdout.
    #[arg(long, value_name = "ADDR", conflicts_with = "url")]
    pub listen: Option<String>,

    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The Origin header to send.
    #[arg(long)]
    pub origin: Option<String>,

    /// Offer a subprotocol (repeatable, in preference order).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,

    /// Send input lines as binary messages instead of text.
    #[arg(long)]
    pub binary: bool,

    /// Open the WebSocket over HTTP/2 (RFC 8441) when the server offers it
    /// (ALPN `h2` for wss://, prior knowledge for ws://) with the extended
    /// CONNECT; HTTP/1.1 otherwise.
    #[arg(long)]
    pub http2: bool,

    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub jsonl: bool,

    /// In scripts too, treat input lines starting with `/` as the
    /// interactive commands (`/ping`, `/close 4000 bye`, `/binary`, `/text`).
    #[arg(long)]
    pub commands: bool,

    /// Ping after this many seconds without hearing from the peer; fail the
    /// connection if it stays silent as long again.
    #[arg(long, value_name = "SECS")]
    pub ping_interval: Option<f64>,

    /// Proxy URL (http://[user:pass@]host:port, socks5://, socks5h://), or
    /// `none` to ignore the *_proxy environment variables.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// Trust the CA certificate(s) in this PEM file (repeatable). A server
    /// certificate in it (self-signed, e.g. from `openssl req -x509`) is
    /// trusted as that server's, for the names it lists.
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,

    /// Client certificate chain (PEM) for servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// INSECURE: do not verify the server's TLS certificate. Anyone on the
    /// network path can then read and modify the connection. Testing only.
    #[arg(long)]
    pub insecure: bool,

    /// Largest message accepted (e.g. 64K, 16M).
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Seconds allowed for TCP connect (and proxy tunnel).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Seconds to wait for the peer's part of the closing handshake.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub close_timeout: f64,

    /// Close (1000) after this many seconds without any traffic.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,

    /// After the end of input, keep receiving until nothing has arrived for
    /// SECS, then close (0: close at once). Without it: close once every
    /// message sent has a reply, or after 1 s without any message. Servers
    /// (e.g. Python `websockets`) drop replies not yet sent when our Close
    /// arrives.
    #[arg(long, value_name = "SECS")]
    pub linger: Option<f64>,

    /// Never send a Close at the end of input; keep receiving until the
    /// server closes (or --idle-timeout).
    #[arg(long, conflicts_with = "linger")]
    pub no_close: bool,

    /// Reconnect with jittered exponential backoff when the connection
    /// fails or drops abnormally (not after a clean close).
    #[arg(long)]
    pub reconnect: bool,
}

/// Without --linger: after the end of input, close once nothing has arrived
/// for this long.
const DEFAULT_LINGER: Duration = Duration::from_secs(1);
/// Without --linger: once every message sent has a reply, close after this
/// long without another (servers that answer one message with several).
const REPLY_SETTLE: Duration = Duration::from_millis(100);

fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| anyhow::anyhow!("{flag}: `{v}` is not a duration"))
}

/// Run `tether connect`; exits the process with the status documented in
/// [`exit`].
pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && !args.jsonl;
    let code = match run_inner(args, interactive).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether connect: {e:#}");
            exit::CONNECT_FAILED
        }
    };
    // Exit here rather than return: a blocking stdin read (tokio's, or the
    // line editor's) would otherwise hold the runtime's shutdown.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

async fn run_inner(args: ConnectArgs, interactive: bool) -> anyhow::Result<i32> {
    let keepalive = match args.ping_interval {
        Some(p) => {
            let interval = secs(p, "--ping-interval")?;
            Some(Keepalive::new(interval, interval))
        }
        None => None,
    };
    let config = WebSocketConfig::default()
        .with_protocol(
            tether::proto::Config::default()
                .with_max_message_size(args.max_message_size)
                .with_max_frame_size(args.max_message_size),
        )
        .with_close_timeout(secs(args.close_timeout, "--close-timeout")?)
        .with_keepalive(keepalive);
    let at_eof = match (args.no_close, args.linger) {
        (true, _) => AtEof::NoClose,
        (false, Some(s)) => AtEof::Linger(secs(s, "--linger")?),
        (false, None) => AtEof::Replies {
            settle: REPLY_SETTLE,
            quiet: DEFAULT_LINGER,
        },
    };
    let idle = session::Timing {
        idle: args
            .idle_timeout
            .map(|s| secs(s, "--idle-timeout"))
            .transpose()?,
        at_eof,
    };

    let (input_tx, mut input) = mpsc::channel::<Input>(64);
    let (output, editor) = if interactive {
        let (out, handle) = interactive::start(input_tx)?;
        (out, Some(handle))
    } else {
        tokio::spawn(read_stdin(input_tx, args.binary, args.commands));
        let mode = if args.jsonl {
            OutputMode::Jsonl
        } else {
            OutputMode::Plain
        };
        (Output::new(mode), None)
    };

    let code = if let Some(addr) = args.listen {
        listen_once(addr.as_str(), config, &mut input, &output, idle).await?
    } else {
        let builder = client_builder(&args, config)?;
        connect_loop(builder, &args, &mut input, &output, idle).await
    };
    if let Some(editor) = editor {
        editor.finish();
    }
    Ok(code)
}

/// A URL as people type it: without a scheme (`localhost:8080/echo`) it
/// is taken as `ws://`; the second value is a note saying so.
fn with_scheme(url: &str) -> (String, Option<String>) {
    if url.contains("://") {
        return (url.to_owned(), None);
    }
    let mapped = format!("ws://{url}");
    let note = format!("no scheme in `{url}`: using {mapped} (write wss:// for TLS)");
    (mapped, Some(note))
}

fn client_builder(args: &ConnectArgs, config: WebSocketConfig) -> anyhow::Result<ClientBuilder> {
    let typed = args
        .url
        .as_deref()
        .expect("clap requires URL without --listen");
    let (url, note) = with_scheme(typed);
    if let Some(note) = note {
        eprintln!("tether connect: {note}");
    }
    let mut b = ClientBuilder::new(url)
        .config(config)
        .connect_timeout(secs(args.connect_timeout, "--connect-timeout")?);
    b.target()
        .map_err(|e| anyhow::anyhow!("cannot use this URL: {e}"))?;
    if let Some(origin) = &args.origin {
        b = b.origin(origin.clone());
    }
    for p in &args.protocols {
        b = b.protocol(p.clone());
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("-H `{h}`: expected `Name: value`"))?;
        let name = http::HeaderName::try_from(name.trim())
            .map_err(|_| anyhow::anyhow!("-H `{h}`: `{}` is not a header name", name.trim()))?;
        let value = http::HeaderValue::try_from(value.trim())
            .map_err(|_| anyhow::anyhow!("-H `{h}`: the value is not a valid header value"))?;
        b = b.header(name, value);
    }
    match args.proxy.as_deref() {
        None => {}
        Some("none") => b = b.no_proxy(),
        Some(p) => b = b.proxy(tether::proxy::Proxy::parse(p)?),
    }
    let mut tls = TlsOptions::new();
    for ca in &args.cacert {
        tls = tls.ca_file(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        tls = tls.client_cert(cert.clone(), key.clone());
    }
    if args.insecure {
        eprintln!(
            "WARNING: --insecure: the server's TLS certificate is NOT verified. \
             Anyone on the network path can read and modify this connection."
        );
        tls = tls.danger_accept_invalid_certs(true);
    }
    Ok(b.tls(tls))
}

async fn connect_loop(
    builder: ClientBuilder,
    args: &ConnectArgs,
    input: &mut mpsc::Receiver<Input>,
    output: &Output,
    idle: session::Timing,
) -> i32 {
    let mut backoff = Backoff::default();
    if !args.reconnect {
        backoff = backoff.max_attempts(0);
    }
    loop {
        let on_retry = |e: &tether::Error, delay: Duration| {
            output.status(&format!(
                "connection failed: {e}; retrying in {:.1}s",
                delay.as_secs_f64()
            ));
        };
        let outcome = if args.http2 {
            let connected = connect_with_backoff_by(
                &builder,
                &mut backoff,
                on_retry,
                ClientBuilder::connect_http2,
            )
            .await;
            match connected {
                Ok((ws, response)) => {
                    let (tls, http2) = match ws.get_ref() {
                        ClientStream::Http1(s) => (tls_details(s), false),
                        ClientStream::Http2(_) => (None, true),
                    };
                    let protocol = subprotocol(&response);
                    output.open(builder.url(), protocol, tls.as_deref(), http2);
                    session::run(ws, input, output, idle).await
                }
                Err(e) => {
                    output.error(&format!("cannot connect to {}: {e}", builder.url()));
                    return exit::CONNECT_FAILED;
                }
            }
        } else {
            match connect_with_backoff(&builder, &mut backoff, on_retry).await {
                Ok((ws, response)) => {
                    let tls = tls_details(ws.get_ref());
                    let protocol = subprotocol(&response);
                    output.open(builder.url(), protocol, tls.as_deref(), false);
                    session::run(ws, input, output, idle).await
                }
                Err(e) => {
                    output.error(&format!("cannot connect to {}: {e}", builder.url()));
                    return exit::CONNECT_FAILED;
                }
            }
        };
        let code = outcome.exit_code();
        output.closed(&outcome);
        let stdin_over = matches!(
            outcome,
            Outcome::Closed {
                input_done: true,
                ..
            }
        );
        if args.reconnect && code == exit::ABNORMAL && !stdin_over {
            let delay = backoff.next_delay();
            output.status(&format!(
                "connection lost; reconnecting in {:.1}s",
                delay.as_secs_f64()
            ));
            tokio::time::sleep(delay).await;
            continue;
        }
        return code;
    }
}

/// The subprotocol the server chose.
fn subprotocol(response: &http::Response<()>) -> Option<&str> {
    response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
}

/// `TLSv1_3 TLS13_AES_256_GCM_SHA384` for a TLS connection.
fn tls_details(stream: &tether::MaybeTlsStream) -> Option<String> {
    stream.tls_session().map(|s| {
        let version = s
            .protocol_version()
            .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
        match s.negotiated_cipher_suite() {
            Some(c) => format!("{version} {:?}", c.suite()),
            None => version,
        }
    })
}

async fn listen_once(
    addr: &str,
    config: WebSocketConfig,
    input: &mut mpsc::Receiver<Input>,
    output: &Output,
    idle: session::Timing,
) -> anyhow::Result<i32> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    output.status(&format!("listening on ws://{local}/ (one connection)"));
    let (tcp, peer) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    drop(listener);
    let ws = tether::ServerBuilder::new()
        .config(config)
        .accept(tcp)
        .await
        .map_err(|e| anyhow::anyhow!("handshake with {peer} failed: {e}"))?;
    output.open(&format!("ws://{peer} (accepted)"), None, None, false);
    let outcome = session::run(ws, input, output, idle).await;
    output.closed(&outcome);
    Ok(outcome.exit_code())
}

/// Scriptable input: one message per stdin line (without its line ending).
async fn read_stdin(tx: mpsc::Sender<Input>, binary: bool, commands: bool) {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let msg = if commands && line.first() == Some(&b'/') {
            match interactive::parse_line(&String::from_utf8_lossy(&line)) {
                Ok(Some(Input::Sleep(d))) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                Ok(Some(input)) => input,
                Ok(None) => continue,
                Err(msg) => {
                    eprintln!("tether connect: {msg}");
                    continue;
                }
            }
        } else if binary {
            Input::Binary(line.clone())
        } else {
            match String::from_utf8(line.clone()) {
                Ok(s) => Input::Text(s),
                Err(_) => {
                    eprintln!(
                        "tether connect: skipping an input line that is not UTF-8 (use --binary)"
                    );
                    continue;
                }
            }
        };
        let last = matches!(msg, Input::Close(_) | Input::Eof);
        if tx.send(msg).await.is_err() || last {
            return;
        }
    }
    let _ = tx.send(Input::Eof).await;
}

#[cfg(test)]
mod tests {
    use super::with_scheme;

    #[test]
    fn urls_without_a_scheme_are_ws_with_a_note() {
        let (url, note) = with_scheme("localhost:8080/echo");
        assert_eq!(url, "ws://localhost:8080/echo");
        assert!(note.unwrap().contains("using ws://localhost:8080/echo"));
        assert_eq!(with_scheme("127.0.0.1:9000").0, "ws://127.0.0.1:9000");
        for full in ["ws://h/", "wss://h:1/x", "http://h/"] {
            assert_eq!(with_scheme(full), (full.to_owned(), None));
        }
    }
}
