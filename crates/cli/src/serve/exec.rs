//! `exec` routes: one program per connection, websocketd-style.
//!
//! * **lines** mode: each received message is written to the program's
//!   stdin followed by `\n`; each stdout line (without its `\n`, at most
//!   `max_message_size` bytes: longer lines are split) is sent as a text
//!   message (invalid UTF-8 replaced).
//! * **binary** mode: message payloads go to stdin as they are; stdout is
//!   sent as binary messages, one per read (at most 64 KiB).
//!
//! The program gets CGI-style variables: `REMOTE_ADDR`, `REMOTE_PORT`,
//! `REQUEST_METHOD`, `PATH_INFO` (the request path), `SCRIPT_NAME` (the
//! route path), `QUERY_STRING`, `SERVER_PROTOCOL`, `SERVER_PORT`, `HTTPS`,
//! `HTTP_HOST`, `HTTP_ORIGIN`, `HTTP_USER_AGENT`, `HTTP_COOKIE`,
//! `SEC_WEBSOCKET_PROTOCOL` (the chosen subprotocol), `REMOTE_USER` (JWT
//! subject), `GATEWAY_INTERFACE=CGI/1.1`; stderr lines go to the log.
//!
//! Lifecycle: when the program closes its stdout (normally: it exits), the
//! socket is closed with 1000 (exit status 0) or 1011 (anything else). When
//! the socket closes first, the program's stdin is closed; if it has not
//! exited 2 seconds later it is killed (SIGKILL). Either way the child is
//! always waited for, so no zombie is left; `kill_on_drop` covers a panic.
//! The program runs in its own process group, and when the session ends
//! whatever is left of that group (background jobs the program started) is
//! killed too, so no orphan outlives its connection.

use super::metrics::RouteMetrics;
use super::session::{close_with, wait_shutdown, Outcome, SHUTTING_DOWN};
use futures_util::StreamExt;
use std::process::Stdio;
use std::time::Duration;
use tether::{Message, WebSocket};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, watch};

/// Grace period between closing stdin and killing the program.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What to run and how.
pub struct ExecSpec<'a> {
    /// Program and arguments.
    pub command: &'a [String],
    /// Binary mode.
    pub binary: bool,
    /// CGI variables.
    pub env: Vec<(&'static str, String)>,
    /// Longest stdout line sent as one message.
    pub max_message_size: usize,
}

/// Run the program for this connection.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    spec: ExecSpec<'_>,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Outcome {
    let mut out = Outcome::default();
    let mut cmd = Command::new(&spec.command[0]);
    cmd.args(&spec.command[1..])
        .envs(spec.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(program = %spec.command[0], "cannot start program: {e}");
            close_with(ws, &mut out, (1011, "cannot start the program")).await;
            return out.finish();
        }
    };
    let pid = child.id().unwrap_or(0);
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    if let Some(stderr) = child.stderr.take() {
        let program = spec.command[0].clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(%program, pid, "stderr: {}", super::logsafe::esc(&line));
            }
        });
    }
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let reader = tokio::spawn(read_stdout(stdout, spec.binary, spec.max_message_size, tx));
    loop {
        // Not `biased`: a program that writes without pause must not keep
        // the client's messages (or its Close) from being read.
        tokio::select! {
            _ = wait_shutdown(shutdown) => {
                close_with(ws, &mut out, SHUTTING_DOWN).await;
                break;
            }
            m = rx.recv() => match m {
                Some(msg) => {
                    let len = msg.len() as u64;
                    // A client that stops reading must not hold up shutdown.
                    let sent = tokio::select! {
                        biased;
                        r = ws.send(msg) => Some(r),
                        _ = wait_shutdown(shutdown) => None,
                    };
                    match sent {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            out.failed(&e);
                            break;
                        }
                        None => {
                            close_with(ws, &mut out, SHUTTING_DOWN).await;
                            break;
                        }
                    }
                    out.messages_out += 1;
                    out.bytes_out += len;
                    metrics.sent(1, len);
                }
                None => {
                    // stdout closed: the program is done (or about to be).
                    let why = match reap(&mut child, pid).await {
                        Some(0) => (1000, "program exited".to_owned()),
                        Some(code) => (1011, format!("program exited with status {code}")),
                        None => (1011, "program was killed".to_owned()),
                    };
                    close_with(ws, &mut out, (why.0, &why.1)).await;
                    break;
                }
            },
            m = ws.next() => match m {
                None => break,
                Some(Err(e)) => {
                    out.failed(&e);
                    break;
                }
                Some(Ok(Message::Close(f))) => {
                    out.peer_closed(&f);
                    // Let the program see end of input right away, and
                    // answer the Close now: output the program writes from
                    // here on has nowhere to go (RFC 6455 §5.5.1), and
                    // waiting for it to stop would leave our Close reply
                    // unsent behind it.
                    stdin = None;
                    close_with(ws, &mut out, (1000, "")).await;
                    break;
                }
                Some(Ok(msg)) if msg.is_data() => {
                    out.messages_in += 1;
                    out.bytes_in += msg.len() as u64;
                    metrics.received(1, msg.len() as u64);
                    if let Some(pipe) = stdin.as_mut() {
                        let mut ok = pipe.write_all(msg.as_bytes()).await.is_ok();
                        if ok && !spec.binary {
                            ok = pipe.write_all(b"\n").await.is_ok();
                        }
                        if ok {
                            ok = pipe.flush().await.is_ok();
                        }
                        if !ok {
                            // The program stopped reading; its exit will close the socket.
                            stdin = None;
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin);
    reap(&mut child, pid).await;
    // Background jobs the program left behind (its group outlives it).
    kill_group(pid).await;
    reader.abort();
    out.finish()
}

/// SIGKILL every process in the program's process group (its id is the
/// program's pid). Without `unsafe` there is no `killpg` here, so this
/// runs `kill -KILL -- -PGID`; "no such process" (nothing left) is fine.
async fn kill_group(pgid: u32) {
    #[cfg(unix)]
    if pgid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Wait for the program (closing nothing itself); kill it after the grace
/// period. Returns the exit code, `None` if it was killed by a signal.
async fn reap(child: &mut Child, pid: u32) -> Option<i32> {
    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => status.code(),
        Ok(Err(e)) => {
            tracing::warn!(pid, "waiting for program: {e}");
            None
        }
        Err(_) => {
            tracing::info!(
                pid,
                "program still running {EXIT_GRACE:?} after its session ended: killing it"
            );
            // The group first, while its leader (not yet reaped) holds the id.
            kill_group(pid).await;
            // kill() sends SIGKILL and waits, so no zombie is left behind.
            let _ = child.kill().await;
            None
        }
    }
}

async fn read_stdout(stdout: ChildStdout, binary: bool, max: usize, tx: mpsc::Sender<Message>) {
    let mut reader = BufReader::new(stdout);
    if binary {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(max as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                let text = match String::from_utf8(line) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                if tx.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        }
    }
}
