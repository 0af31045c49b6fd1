//! How a WebSocket connection ends: who closed it ([`ClosedBy`]), why the
//! server closes one ([`CloseReason`], each one close code and reason), and
//! the [`Summary`] logged and counted when it is over.

use std::time::Duration;
use tether::{CloseCode, CloseFrame, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client's Close frame, or its transport ending without one.
    Client,
    /// The server's Close frame ([`CloseReason`]).
    Server,
    /// A protocol violation or I/O failure.
    Error,
}

impl ClosedBy {
    /// The `closed_by` value of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Server => "server",
            ClosedBy::Error => "error",
        }
    }
}

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Graceful shutdown: 1001.
    Shutdown,
    /// A room or pub/sub subscriber fell too far behind: 1008.
    SlowConsumer,
    /// The answer to the client's Close (which is what is recorded): 1000.
    Reply,
    /// An exec route's program could not be started: 1011.
    ProgramNotStarted,
    /// The program exited with this status (0: 1000, else 1011), or was
    /// killed by a signal (`None`: 1011).
    ProgramExited(Option<i32>),
    /// The program read none of its input for this long (`stdin_timeout`):
    /// 1011.
    StdinStalled(Duration),
}

impl CloseReason {
    /// The close code sent.
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::Shutdown => 1001,
            CloseReason::SlowConsumer => 1008,
            CloseReason::Reply | CloseReason::ProgramExited(Some(0)) => 1000,
            CloseReason::ProgramNotStarted
            | CloseReason::ProgramExited(_)
            | CloseReason::StdinStalled(_) => 1011,
        }
    }

    /// The close reason sent.
    pub fn reason(&self) -> String {
        match self {
            CloseReason::Shutdown => "server shutting down".into(),
            CloseReason::SlowConsumer => "slow consumer: send queue full".into(),
            CloseReason::Reply => String::new(),
            CloseReason::ProgramNotStarted => "cannot start the program".into(),
            CloseReason::ProgramExited(Some(0)) => "program exited".into(),
            CloseReason::ProgramExited(Some(status)) => {
                format!("program exited with status {status}")
            }
            CloseReason::ProgramExited(None) => "program was killed".into(),
            CloseReason::StdinStalled(after) => {
                format!("program stopped reading its input (stdin_timeout {after:?})")
            }
        }
    }
}

/// How a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Who.
    pub by: ClosedBy,
    /// The close code of the closing handshake (1005: a Close without
    /// one; 1006: none).
    pub code: u16,
    /// Its reason.
    pub reason: String,
    /// The failure, for [`ClosedBy::Error`].
    pub error: Option<String>,
}

impl Closed {
    /// The transport ended without a Close.
    fn abnormal() -> Closed {
        Closed {
            by: ClosedBy::Client,
            code: CloseCode::ABNORMAL.as_u16(),
            reason: String::new(),
            error: None,
        }
    }
}

/// A connection's traffic and close, for the log line and metrics.
#[derive(Debug, Default)]
pub struct Summary {
    /// Data messages received.
    pub messages_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// How it closed; the first close recorded stands.
    pub closed: Option<Closed>,
}

impl Summary {
    /// Record the peer's Close frame.
    pub fn peer_closed(&mut self, frame: &Option<CloseFrame>) {
        self.closed.get_or_insert_with(|| {
            let (code, reason) = match frame {
                Some(f) => (f.code.as_u16(), f.reason.to_string()),
                None => (CloseCode::NO_STATUS.as_u16(), String::new()),
            };
            Closed {
                by: ClosedBy::Client,
                code,
                reason,
                error: None,
            }
        });
    }

    /// Record a failure.
    pub fn failed(&mut self, e: &tether::Error) {
        self.closed.get_or_insert_with(|| Closed {
            by: ClosedBy::Error,
            code: e.close_code().as_u16(),
            reason: String::new(),
            error: Some(e.to_string()),
        });
    }

    /// Record the server's close.
    fn server_closed(&mut self, why: &CloseReason) {
        self.closed.get_or_insert_with(|| Closed {
            by: ClosedBy::Server,
            code: why.code(),
            reason: why.reason(),
            error: None,
        });
    }

    /// Fill in a missing close (the transport just ended).
    pub fn finish(mut self) -> Summary {
        self.closed.get_or_insert_with(Closed::abnormal);
        self
    }

    /// How it closed (the transport's end, if nothing was recorded).
    pub fn close(&self) -> Closed {
        self.closed.clone().unwrap_or_else(Closed::abnormal)
    }
}

/// Close with `why` (bounded by the close timeout) and record it. After
/// the peer's Close, this only completes the handshake: the reply already
/// queued stands and the peer's close is what is recorded.
pub async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    out: &mut Summary,
    why: CloseReason,
) {
    out.server_closed(&why);
    let limit = ws.config().close_timeout * 2 + Duration::from_secs(1);
    let frame = CloseFrame::new(CloseCode::from(why.code()), why.reason());
    let _ = tokio::time::timeout(limit, ws.close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_close_recorded_stands() {
        let mut out = Summary::default();
        out.peer_closed(&Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
        out.server_closed(&CloseReason::Shutdown);
        let c = out.finish().close();
        assert_eq!(
            (c.by, c.code, c.reason.as_str()),
            (ClosedBy::Client, 1000, "bye")
        );
        let mut out = Summary::default();
        out.server_closed(&CloseReason::SlowConsumer);
        out.peer_closed(&None);
        let c = out.close();
        assert_eq!(
            (c.by, c.code, c.reason.as_str()),
            (ClosedBy::Server, 1008, "slow consumer: send queue full")
        );
        let c = Summary::default().finish().close();
        assert_eq!((c.by, c.code), (ClosedBy::Client, 1006));
    }

    #[test]
    fn program_exits_close_with_their_status() {
        assert_eq!(CloseReason::ProgramExited(Some(0)).code(), 1000);
        let failed = CloseReason::ProgramExited(Some(3));
        assert_eq!(
            (failed.code(), failed.reason().as_str()),
            (1011, "program exited with status 3")
        );
        assert_eq!(
            CloseReason::ProgramExited(None).reason(),
            "program was killed"
        );
        let stalled = CloseReason::StdinStalled(Duration::from_secs(10));
        assert!(stalled.reason().contains("stdin_timeout 10s"));
    }
}
