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
        /// Messages sent and received.
        counts: Counts,
    },
}

impl Outcome {
    /// The exit status that describes this outcome (see `exit`).
    pub fn exit_code(&self) -> i32 {
        let Outcome::Closed {
            peer_close,
            error,
            counts,
            ..
        } = self;
        if let Some(Error::Protocol(_)) = error {
            return exit::PROTOCOL_ERROR;
        }
        let clean = if counts.cut_off() {
            exit::REPLIES_CUT_OFF
        } else {
            exit::CLEAN
        };
        match peer_close {
            Some(None) => clean,
            Some(Some(f)) if f.code == CloseCode::NORMAL || f.code == CloseCode::GOING_AWAY => {
                clean
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

/// What a session does at the end of input (EOF on stdin, Ctrl-D).
#[derive(Clone, Copy, Debug)]
pub enum AtEof {
    /// Send the Close once a reply has arrived for every message sent and
    /// `settle` has passed without another, or once nothing has arrived for
    /// `quiet`. A server may answer our Close at once and drop the replies it
    /// has not sent yet (RFC 6455 allows it), so closing at once loses them.
    Replies { settle: Duration, quiet: Duration },
    /// Send the Close once nothing has arrived for this long (zero: at once).
    Linger(Duration),
    /// Never send a Close; keep receiving until the server closes.
    NoClose,
}

impl AtEof {
    /// How long to wait for more before closing, given the counts so far;
    /// `None` means never close.
    fn wait(self, sent: u64, received: u64) -> Option<Duration> {
        match self {
            AtEof::Replies { settle, .. } if received >= sent => Some(settle),
            AtEof::Replies { quiet, .. } => Some(quiet),
            AtEof::Linger(d) => Some(d),
            AtEof::NoClose => None,
        }
    }
}

/// Optional deadlines of a session.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Close (1000) after this long without any traffic.
    pub idle: Option<Duration>,
    /// When to send the Close after the end of input.
    pub at_eof: AtEof,
}

/// Data messages sent and received, to tell whether replies were cut off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    /// Our Close went out while fewer messages had arrived than were sent,
    /// without waiting for the server to go quiet (`--linger 0`, `/close`).
    pub closed_early: bool,
}

impl Counts {
    /// The server's Close ended a run whose replies had not all arrived
    /// after we closed without waiting.
    pub fn cut_off(&self) -> bool {
        self.closed_early && self.received < self.sent
    }
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
    let mut counts = Counts::default();
    let idle = timing.idle;
    let idle_sleep = tokio::time::sleep(idle.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_sleep);
    let mut idle_fired = false;
    // Between the end of input and our Close: fires when it is time to close.
    let drain_sleep = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain_sleep);
    let mut draining = false;
    let bump = |sleep: std::pin::Pin<&mut tokio::time::Sleep>| {
        if let Some(d) = idle {
            sleep.reset(tokio::time::Instant::now() + d);
        }
    };
    let normal = || Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
    loop {
        tokio::select! {
            item = ws.recv() => {
                bump(idle_sleep.as_mut());
                match item {
                    None => break,
                    Some(Ok(Message::Close(frame))) => {
                        output.close_received(frame.as_ref());
                        peer_close = Some(frame);
                    }
                    Some(Ok(m)) => {
                        if m.is_data() {
                            counts.received += 1;
                        }
                        output.message(&m);
                    }
                    Some(Err(e)) => {
                        error.get_or_insert(e);
                    }
                }
                if draining {
                    if let Some(wait) = timing.at_eof.wait(counts.sent, counts.received) {
                        drain_sleep.as_mut().reset(tokio::time::Instant::now() + wait);
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
                        counts.closed_early = counts.received < counts.sent;
                        Message::Close(f)
                    }
                    Some(Input::Sleep(_)) => continue,
                    Some(Input::Eof) | None => {
                        input_done = true;
                        match timing.at_eof.wait(counts.sent, counts.received) {
                            None => continue,
                            Some(wait) if wait.is_zero() => {
                                counts.closed_early = counts.received < counts.sent;
                                normal()
                            }
                            Some(wait) => {
                                draining = true;
                                drain_sleep.as_mut().reset(tokio::time::Instant::now() + wait);
                                continue;
                            }
                        }
                    }
                };
                if peer_close.is_some() {
                    // The server already closed; nothing more can be sent.
                    continue;
                }
                let data = msg.is_data();
                match ws.send(msg).await {
                    Ok(()) if data => counts.sent += 1,
                    // The connection's end is reported once, when the session ends.
                    Ok(()) | Err(Error::Closed(_)) => {}
                    Err(e @ Error::Send(_)) => output.error(&format!("not sent: {e}")),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            _ = &mut drain_sleep, if draining => {
                draining = false;
                if peer_close.is_none() {
                    let _ = ws.send(normal()).await;
                }
            }
            _ = &mut idle_sleep, if idle.is_some() && !idle_fired => {
                idle_fired = true;
                output.status("idle timeout: closing");
                input_done = true;
                draining = false;
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
        counts,
    }
}
