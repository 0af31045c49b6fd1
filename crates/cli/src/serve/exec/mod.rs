//! `exec` routes: one program per connection, websocketd-style.
//!
//! * **lines** mode: each received message is written to the program's
//!   stdin followed by `\n`; each stdout line (without its `\n`, at most
//!   `max_message_size` bytes: longer lines are split) is sent as a text
//!   message (invalid UTF-8 replaced).
//! * **binary** mode: message payloads go to stdin as they are; stdout is
//!   sent as binary messages, one per read (at most 64 KiB).
//!
//! Every direction moves on its own ([`pipes`]): a task writes stdin from a
//! queue bounded in bytes, another reads stdout, a third logs stderr lines
//! (at most 4 KiB each, control characters escaped). While the stdin queue
//! is full the socket is not read (backpressure), but stdout is still
//! forwarded and shutdown still heard; a stdin write that makes no progress
//! for `stdin_timeout` closes the socket with 1011. At most `max_processes`
//! programs of a route run at once; further upgrades get 503 before anything
//! is started.
//!
//! The program's environment is PATH, the CGI variables ([`env`]) and the
//! route's `pass_env` list, nothing else of the server's.
//!
//! Lifecycle ([`process`]): the program runs in its own process group.
//! * It closes its stdout (normally: it exits): the socket is closed with
//!   1000 (exit status 0) or 1011 (anything else).
//! * The client sends a Close: stdin is closed (after the input already
//!   queued), and the program's output keeps being delivered until it
//!   closes stdout or `exit_grace` passes; only then is the Close answered
//!   (the route's connections defer their Close reply:
//!   `tether_proto::Config::defer_close_reply`).
//! * The connection ends otherwise (shutdown: 1001; a stalled stdin: 1011;
//!   the client vanished): stdin is closed and, except when the client
//!   vanished, SIGTERM goes out at once.
//!
//! A program still running `exit_grace` after its stdin closed gets SIGTERM
//! (its whole group), and SIGKILL `exit_grace` after that. It is always
//! waited for (no zombie), whatever is left of its group is killed, and
//! only then does the connection count as closed and its process slot free.

mod env;
mod pipes;
mod process;

pub use env::RequestFacts;
pub use process::{find_program, ProcessSlot};

use super::close::{close_with, CloseReason, Summary};
use super::config::ExecRoute;
use super::metrics::RouteMetrics;
use super::shutdown::wait_shutdown;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pipes::{Input, StdinEnd};
use process::Program;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tether::{CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Stdout messages written per flush.
const BATCH: usize = 64;

/// An admitted exec connection: its request and its place among the
/// route's running programs.
pub struct Admitted<'a> {
    /// What the program is told about the request.
    pub request: RequestFacts,
    /// Held until the program has been waited for.
    pub _slot: ProcessSlot<'a>,
}

/// What to run and how.
pub struct ExecSpec<'a> {
    /// The route.
    pub route: &'a ExecRoute,
    /// The request.
    pub request: &'a RequestFacts,
    /// Longest stdout line sent as one message.
    pub max_message_size: usize,
}

/// Why the running phase of a session ended.
enum End {
    Shutdown,
    PeerClosed(Option<CloseFrame>),
    ProgramDone,
    StdinStalled,
    /// The socket failed or its transport ended (recorded in the outcome).
    SocketGone,
}

/// Run the program for this connection.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    spec: ExecSpec<'_>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Summary {
    let mut out = Summary::default();
    let route = spec.route;
    let env = env::environment(spec.request, &route.pass_env);
    let spawned = Program::spawn(
        &route.command,
        env,
        route.binary,
        spec.max_message_size,
        route.stdin_timeout,
    );
    let mut program = match spawned {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(program = %route.command[0], "cannot start program: {e}");
            close_with(ws, &mut out, CloseReason::ProgramNotStarted).await;
            return out.finish();
        }
    };
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    let grace = route.exit_grace;
    let end = pump(
        ws,
        &mut program,
        route.binary,
        stop.as_mut(),
        metrics,
        &mut out,
    )
    .await;
    match end {
        End::PeerClosed(frame) => {
            program.close_stdin_after_queued();
            let deadline = Instant::now() + grace;
            drain(ws, &mut program, deadline, stop.as_mut(), metrics, &mut out).await;
            // Answer the Close as it was sent: the code echoed (RFC 6455
            // §5.5.1), none if it had none.
            let reply = frame.map(|f| CloseFrame::new(f.code, ""));
            let limit = ws.config().close_timeout * 2 + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, ws.close(reply)).await;
            program.finish(deadline, grace).await;
        }
        End::ProgramDone => {
            let status = program.finish(Instant::now() + grace, grace).await;
            close_with(ws, &mut out, CloseReason::ProgramExited(status)).await;
        }
        End::Shutdown => {
            tokio::join!(
                close_with(ws, &mut out, CloseReason::Shutdown),
                program.finish(Instant::now(), grace)
            );
        }
        End::StdinStalled => {
            tracing::info!(program = %program.name, "program did not read its input for {:?}: closing", route.stdin_timeout);
            tokio::join!(
                close_with(ws, &mut out, CloseReason::StdinStalled(route.stdin_timeout)),
                program.finish(Instant::now(), grace)
            );
        }
        End::SocketGone => {
            program.finish(Instant::now() + grace, grace).await;
        }
    }
    out.finish()
}

/// The running phase: socket to stdin, stdout to socket, each moving on
/// its own, until one side ends, stdin stalls or shutdown.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    program: &mut Program,
    binary: bool,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    metrics: &RouteMetrics,
    out: &mut Summary,
) -> End {
    // The message being queued for stdin; the socket is not read meanwhile.
    let mut input: Option<Input> = None;
    loop {
        let (writer, queue) = match program.stdin.as_mut() {
            Some(feed) => {
                let (writer, queue) = feed.parts();
                (Some(writer), queue)
            }
            None => (None, None),
        };
        // Not `biased`: a program that writes without pause must not keep
        // the client's messages (or its Close) from being read.
        let step = tokio::select! {
            _ = stop.as_mut() => return End::Shutdown,
            ended = stdin_ended(writer) => Step::StdinEnded(ended),
            m = program.stdout.recv() => Step::Stdout(m),
            permit = reserve(queue), if input.is_some() => {
                match (permit, input.as_mut().and_then(Input::next)) {
                    (Some(permit), Some(piece)) => permit.send(piece),
                    _ => input = None,
                }
                if input.as_ref().is_some_and(Input::is_done) {
                    input = None;
                }
                continue;
            }
            m = ws.next(), if input.is_none() => Step::Socket(m),
        };
        match step {
            Step::StdinEnded(StdinEnd::Stalled) => return End::StdinStalled,
            Step::StdinEnded(_) => {
                // The program closed its stdin: further input is dropped;
                // its exit will close the socket.
                program.stdin = None;
                input = None;
            }
            Step::Stdout(None) => return End::ProgramDone,
            Step::Stdout(Some(first)) => {
                let sent = forward(ws, first, &mut program.stdout, stop.as_mut(), metrics, out);
                if let Err(end) = sent.await {
                    return end;
                }
            }
            Step::Socket(None) => return End::SocketGone,
            Step::Socket(Some(Err(e))) => {
                out.failed(&e);
                return End::SocketGone;
            }
            Step::Socket(Some(Ok(Message::Close(frame)))) => {
                out.peer_closed(&frame);
                return End::PeerClosed(frame);
            }
            Step::Socket(Some(Ok(msg))) if msg.is_data() => {
                let len = msg.len() as u64;
                out.messages_in += 1;
                out.bytes_in += len;
                metrics.received(1, len);
                let payload = match msg {
                    Message::Text(t) => t.into_bytes(),
                    Message::Binary(b) => b,
                    _ => Bytes::new(),
                };
                if program.stdin.is_some() {
                    input = Some(Input::new(payload, !binary));
                }
            }
            Step::Socket(Some(Ok(_))) => {}
        }
    }
}

/// What woke the running phase.
enum Step {
    StdinEnded(StdinEnd),
    Stdout(Option<Message>),
    Socket(Option<tether::Result<Message>>),
}

/// After the client's Close: deliver the program's output until it closes
/// stdout, `deadline` passes or shutdown.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    program: &mut Program,
    deadline: Instant,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    metrics: &RouteMetrics,
    out: &mut Summary,
) {
    let late = tokio::time::sleep_until(deadline);
    tokio::pin!(late);
    loop {
        tokio::select! {
            _ = stop.as_mut() => return,
            _ = late.as_mut() => return,
            m = program.stdout.recv() => match m {
                Some(first) => {
                    let sent = forward(ws, first, &mut program.stdout, stop.as_mut(), metrics, out);
                    let in_time = tokio::time::timeout_at(deadline, sent).await;
                    if !matches!(in_time, Ok(Ok(()))) {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

/// Send `first` and whatever else stdout has ready (up to [`BATCH`]), then
/// flush once; shutdown interrupts a socket that does not take it.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    first: Message,
    stdout: &mut mpsc::Receiver<Message>,
    stop: Pin<&mut impl Future<Output = ()>>,
    metrics: &RouteMetrics,
    out: &mut Summary,
) -> Result<(), End> {
    let (mut count, mut bytes) = (0u64, 0u64);
    let send = async {
        let mut next = Some(first);
        while let Some(m) = next {
            count += 1;
            bytes += m.len() as u64;
            ws.feed(m).await?;
            next = if count < BATCH as u64 {
                stdout.try_recv().ok()
            } else {
                None
            };
        }
        ws.flush().await
    };
    let sent = tokio::select! {
        biased;
        r = send => r,
        _ = stop => return Err(End::Shutdown),
    };
    match sent {
        Ok(()) => {
            out.messages_out += count;
            out.bytes_out += bytes;
            metrics.sent(count, bytes);
            Ok(())
        }
        Err(e) => {
            out.failed(&e);
            Err(End::SocketGone)
        }
    }
}

/// How the stdin writer ended; never, while there is none.
async fn stdin_ended(writer: Option<&mut JoinHandle<StdinEnd>>) -> StdinEnd {
    match writer {
        Some(w) => w.await.unwrap_or(StdinEnd::Closed),
        None => std::future::pending().await,
    }
}

/// Room in the stdin queue for one piece; `None` once there is no stdin.
async fn reserve(queue: Option<&mpsc::Sender<Bytes>>) -> Option<mpsc::Permit<'_, Bytes>> {
    queue?.reserve().await.ok()
}
