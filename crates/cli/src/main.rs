//! `tether`: a WebSocket server, client and load generator.
#![forbid(unsafe_code)]

mod bench;
mod connect;
mod serve;
mod size;

use clap::{Parser, Subcommand};

/// Tether: WebSocket tools (RFC 6455).
///
/// `tether serve` starts a real-time server on 127.0.0.1:8080: open it in a
/// browser for a demo page (chat room, live ticker, echo); add a TOML config
/// for static files, rooms, pub/sub channels and program-per-connection
/// endpoints. `tether connect URL` talks to any WebSocket server from the
/// terminal or a script. `tether bench URL` measures one.
///
/// Examples:
///   tether serve
///   tether serve -- ./script.sh arg      (one ./script.sh per WebSocket at ws://127.0.0.1:8080/)
///   tether connect ws://127.0.0.1:8080/echo
///   printf 'a\nb\n' | tether connect --jsonl ws://127.0.0.1:8080/echo
///   tether bench -c 100 -s 20 -d 16 -t 5s ws://127.0.0.1:8080/echo
///   tether serve --example-config > tether.toml   (the annotated reference configuration)
#[derive(Parser, Debug)]
// verbatim: the examples keep one command per line.
#[command(
    name = "tether",
    version,
    about,
    propagate_version = true,
    verbatim_doc_comment
)]
struct Cli {
    /// Log filter (e.g. `info`, `debug`, `tether=trace`). Also `RUST_LOG`.
    #[arg(long, global = true, env = "TETHER_LOG", default_value = "info")]
    log: String,

    /// Log line format: `text` (for people; colours only on a terminal) or
    /// `json` (one object per line, for log collectors).
    #[arg(long, global = true, env = "TETHER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// How log lines are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a WebSocket server.
    Serve(serve::ServeArgs),
    // `about` rather than a doc comment, which would replace the long help
    // (examples, exit statuses) defined on ConnectArgs.
    #[command(
        about = "Connect to a WebSocket server (interactive on a terminal, a filter in scripts)."
    )]
    Connect(connect::ConnectArgs),
    /// Load-test a WebSocket server (echo, broadcast, idle memory) or a raw TCP echo baseline.
    Bench(Box<bench::BenchArgs>),
}

/// Log to stderr with the filter and format chosen; colours only when
/// stderr is a terminal and `NO_COLOR` is unset (a file, pipe or journal
/// gets plain text).
fn init_logging(cli: &Cli) {
    use std::io::IsTerminal;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            // The load generator runs on its own runtime (--threads) on a plain thread.
            Command::Bench(args) => {
                tokio::task::spawn_blocking(move || bench::run_blocking(*args)).await?
            }
        }
    })
}
