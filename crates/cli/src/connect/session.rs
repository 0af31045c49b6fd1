//! One connection's life: input to messages, messages to output, and the
//! closing handshake at the end of input.

use super::exit;
use super::output::Output;
use std::time::Duration;
use tether::{CloseCode, CloseFrame, Error, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// What the user (or stdin) asks for.
#[derive(Debug)]
pub enum Input {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    /// Start the closing handshake with this frame.
    Close(Option<CloseFrame>),
    /// End of input: close with 1000.
    Eof,
    /// Pause reading input for a while (`/sleep`); handled by the readers,
    /// so the connection keeps receiving meanwhile.
    Sleep(Duration),
}

/// How a connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// The transport is closed. `peer_close` is the server's Close frame
    /// (`Some(None)`: a Close without status), `error` what went wrong.
    Closed {
        peer_close: Option<Option<CloseFrame>>,
        error: Option<Error>,
        /// Input was over (EOF, `/close`) when the connection ended.
        input_done: bool,
    },
}

impl Outcome {
    /// The exit status that describes this outcome (see `exit`).
    pub fn exit_code(&self) -> i32 {
        let Outcome::Closed {
            peer_close, error, ..
        } = self;
        if let Some(Error::Protocol(_)) = error {
            return exit::PROTOCOL_ERROR;
        }
        match peer_close {
            Some(None) => exit::CLEAN,
            Some(Some(f)) if f.code == CloseCode::NORMAL || f.code == CloseCode::GOING_AWAY => {
                exit::CLEAN
            }
            Some(Some(_)) => exit::CLOSED_WITH_ERROR_CODE,
            None => exit::ABNORMAL,
        }
    }

    /// The close code a browser would report (1005 none, 1006 abnormal).
    pub fn close_code(&self) -> u16 {
        let Outcome::Closed { peer_close, .. } = self;
        match peer_close {
            Some(Some(f)) => f.code.as_u16(),
            Some(None) => 1005,
            None => 1006,
        }
    }
}

/// Optional deadlines of a session.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// Close (1000) after this long without any traffic.
    pub idle: Option<Duration>,
    /// After the end of input, wait until nothing has arrived for this
    /// long before sending the Close (for servers that stop echoing once
    /// they see our Close).
    pub linger: Option<Duration>,
}

/// Pump messages both ways until the connection is closed.
pub async fn run<S>(
    mut ws: WebSocket<S>,
    input: &mut mpsc::Receiver<Input>,
    output: &Output,
    timing: Timing,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut input_done = false;
    let mut peer_close = None;
    let mut error = None;
    let idle = timing.idle;
    let idle_sleep = tokio::time::sleep(idle.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_sleep);
    let mut idle_fired = false;
    let linger_sleep = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(linger_sleep);
    let mut lingering = false;
    let bump = |sleep: std::pin::Pin<&mut tokio::time::Sleep>| {
        if let Some(d) = idle {
            sleep.reset(tokio::time::Instant::now() + d);
        }
    };
    loop {
        tokio::select! {
            item = ws.recv() => {
                bump(idle_sleep.as_mut());
                if let (true, Some(l)) = (lingering, timing.linger) {
                    linger_sleep.as_mut().reset(tokio::time::Instant::now() + l);
                }
                match item {
                    None => break,
                    Some(Ok(Message::Close(frame))) => {
                        output.close_received(frame.as_ref());
                        peer_close = Some(frame);
                    }
                    Some(Ok(m)) => output.message(&m),
                    Some(Err(e)) => {
                        error.get_or_insert(e);
                    }
                }
            }
            cmd = input.recv(), if !input_done => {
                bump(idle_sleep.as_mut());
                let msg = match cmd {
                    Some(Input::Text(t)) => Message::text(t),
                    Some(Input::Binary(b)) => Message::binary(b),
                    Some(Input::Ping(p)) => Message::Ping(p.into()),
                    Some(Input::Close(f)) => {
                        input_done = true;
                        Message::Close(f)
                    }
                    Some(Input::Sleep(_)) => continue,
                    Some(Input::Eof) | None => {
                        input_done = true;
                        if let Some(l) = timing.linger {
                            lingering = true;
                            linger_sleep.as_mut().reset(tokio::time::Instant::now() + l);
                            continue;
                        }
                        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
                    }
                };
                if peer_close.is_some() {
                    // The server already closed; nothing more can be sent.
                    continue;
                }
                if let Err(e) = ws.send(msg).await {
                    match e {
                        Error::ConnectionClosed => {}
                        e @ Error::Send(_) => output.error(&format!("not sent: {e}")),
                        e => {
                            error.get_or_insert(e);
                        }
                    }
                }
            }
            _ = &mut linger_sleep, if lingering => {
                lingering = false;
                if peer_close.is_none() {
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))))
                        .await;
                }
            }
            _ = &mut idle_sleep, if idle.is_some() && !idle_fired => {
                idle_fired = true;
                output.status("idle timeout: closing");
                input_done = true;
                let _ = ws
                    .send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "idle"))))
                    .await;
            }
        }
    }
    Outcome::Closed {
        peer_close,
        error,
        input_done,
    }
}
