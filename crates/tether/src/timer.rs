//! The socket's two timers: the connection's deadline (keepalive and the
//! closing handshake, decided by the protocol core's
//! `Connection::poll_timeout`/`handle_timeout`) and the send timeout.
//!
//! Each is checked from poll functions on every wakeup, so checking must be
//! cheap: while the task's waker is the one the timer was registered with,
//! it is one atomic load (`Sleep::is_elapsed`), not a re-registration.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A tokio timer and the waker it was last polled with.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    waker: Option<Waker>,
}

impl Timer {
    fn new(at: Instant) -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            waker: None,
        }
    }

    fn reset(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        // Poll (register) it again before trusting `is_elapsed`.
        self.waker = None;
    }

    /// Whether it was last polled with this task's waker: it will wake the
    /// task when it expires.
    #[inline]
    fn registered(&self, cx: &Context<'_>) -> bool {
        self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
    }

    /// Whether it has expired; if not, the task is woken when it does.
    fn expired(&mut self, cx: &Context<'_>) -> bool {
        if self.registered(cx) {
            return self.sleep.is_elapsed();
        }
        let ready = self
            .sleep
            .as_mut()
            .poll(&mut Context::from_waker(cx.waker()))
            .is_ready();
        self.waker = Some(cx.waker().clone());
        ready
    }
}

/// The connection's deadline (`Connection::poll_timeout`) as one timer,
/// made the first time there is one.
#[derive(Default)]
pub(crate) struct DeadlineTimer {
    timer: Option<Timer>,
    /// The instant the timer is set for, if it is in use.
    armed: Option<std::time::Instant>,
}

impl DeadlineTimer {
    /// Whether there is nothing to do for the deadline `at`: nothing is
    /// timed and nothing armed, or the timer is set for `at`, registered
    /// with this task and not expired. Inlined: asked before every read.
    #[inline]
    pub(crate) fn quiet(&self, at: Option<std::time::Instant>, cx: &Context<'_>) -> bool {
        if self.armed != at {
            return false;
        }
        match &self.timer {
            _ if at.is_none() => true,
            Some(t) => t.registered(cx) && !t.sleep.is_elapsed(),
            None => false,
        }
    }

    /// Whether `at` has passed; if not, the task is woken when it does.
    pub(crate) fn passed(&mut self, at: std::time::Instant, cx: &Context<'_>) -> bool {
        if self.armed != Some(at) {
            let when = Instant::from_std(at);
            match &mut self.timer {
                Some(t) => t.reset(when),
                None => self.timer = Some(Timer::new(when)),
            }
            self.armed = Some(at);
        }
        self.timer.as_mut().is_some_and(|t| t.expired(cx))
    }

    /// Nothing is timed: stop looking at the timer.
    pub(crate) fn disarm(&mut self) {
        self.armed = None;
    }
}

/// The send timeout (`WebSocketConfig::send_timeout`): a write that would
/// block arms it, writes that move bytes set a flag (no clock read), and
/// when it expires with no byte accepted since it was armed the peer is
/// taken for one that stopped reading.
#[derive(Default)]
pub(crate) struct SendTimer {
    /// Made the first time a write would block (a connection that never
    /// blocks pays one pointer).
    timer: Option<Box<Timer>>,
    /// The socket accepted bytes since the timer was last armed.
    wrote: bool,
}

impl SendTimer {
    /// The socket accepted bytes.
    #[inline]
    pub(crate) fn wrote(&mut self) {
        self.wrote = true;
    }

    /// A write would block: arm the timer if it is not running, and say
    /// whether it expired with no byte accepted since it was armed.
    ///
    /// An expired timer whose period saw progress is re-armed, so a stall is
    /// detected after one to two periods. It is never disarmed: a write that
    /// blocks after a quiet spell finds it expired with progress seen, and
    /// re-arms it.
    pub(crate) fn stalled(&mut self, cx: &Context<'_>, after: Duration, progressed: bool) -> bool {
        let timer = match &mut self.timer {
            Some(t) => t,
            None => {
                self.wrote = false;
                self.timer
                    .insert(Box::new(Timer::new(Instant::now() + after)))
            }
        };
        self.wrote |= progressed;
        while timer.expired(cx) {
            if !std::mem::take(&mut self.wrote) {
                return true;
            }
            timer.reset(Instant::now() + after);
        }
        false
    }
}
