//! The signals `tether serve` acts on: SIGINT and SIGTERM shut it down
//! gracefully, SIGHUP reloads the configuration. All three handlers are
//! installed before the server announces itself, so that a signal sent as
//! soon as `listening on` appears never meets the default action (exit).

/// What a signal asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGINT, SIGTERM.
    Shutdown,
    /// SIGHUP.
    Reload,
}

/// Installed handlers.
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers (within a tokio runtime).
    pub fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let handler = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| anyhow::anyhow!("cannot handle {name}: {e}"))
            };
            Ok(Signals {
                interrupt: handler(SignalKind::interrupt(), "SIGINT")?,
                terminate: handler(SignalKind::terminate(), "SIGTERM")?,
                hangup: handler(SignalKind::hangup(), "SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's request.
    pub async fn next(&mut self) -> Request {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Request::Shutdown,
                _ = self.terminate.recv() => Request::Shutdown,
                _ = self.hangup.recv() => Request::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Request::Shutdown
        }
    }
}
