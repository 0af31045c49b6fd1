//! The connection's one deadline: keepalive pings, the deferred Close
//! reply and the closing handshake, driven by the time the transport passes
//! in ([`Connection::poll_timeout`], [`Connection::handle_timeout`]).
//!
//! The connection has no clock. Input only sets a flag ([`Timers::heard`]);
//! the time is looked at when the deadline passes, so receiving never costs
//! a clock read. A deadline that starts with a state change (our Close
//! queued, the peer's Close awaiting its reply) is armed by the next
//! `handle_timeout`, which `poll_timeout` asks for at once.

use super::Connection;
use crate::close::CloseFrame;
use crate::error::Timeout;
use bytes::Bytes;
use std::time::Instant;

/// The payload of a keepalive ping.
pub(super) const KEEPALIVE_PING: &[u8] = b"tether-keepalive";

/// What the deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Keepalive: ping then, unless something arrived since the last check.
    Silence,
    /// Keepalive: a ping is out; the peer is dead then, unless something
    /// arrived since the ping (any byte, not only the pong).
    Pong,
    /// The peer's Close awaits the application's reply
    /// (`defer_close_reply`); the connection answers it then.
    Reply,
    /// Our Close is queued (or the peer went silent); the transport is to be
    /// closed then, whatever the closing handshake has reached.
    Closing,
}

impl Purpose {
    /// The purpose the connection's state calls for first: armed when the
    /// deadline armed serves another.
    fn serves(self, wanted: Purpose) -> bool {
        self == wanted || (self, wanted) == (Purpose::Pong, Purpose::Silence)
    }
}

/// The deadline's state (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The last time passed in; `None` until the first `handle_timeout`
    /// (a connection never given the time has no deadlines).
    now: Option<Instant>,
    /// The armed deadline and what it is for.
    deadline: Option<(Purpose, Instant)>,
    /// Bytes arrived since the last keepalive check.
    pub(super) heard: bool,
    /// The keepalive found the peer dead: only the closing deadline is left.
    peer_silent: bool,
}

impl Connection {
    /// When [`handle_timeout`](Self::handle_timeout) is to be called next:
    /// `None` when nothing is timed. An instant already passed means at
    /// once (a deadline starts from the current time, which the
    /// connection learns from that call). Cheap: a transport may ask after
    /// every call, and arms its one timer with the answer.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.timers.now?;
        let wanted = self.wanted_deadline()?;
        match self.timers.deadline {
            Some((armed, at)) if armed.serves(wanted) => Some(at),
            _ => Some(now),
        }
    }

    /// Give the connection the current time: once when it starts (this
    /// arms the keepalive), then whenever [`poll_timeout`](Self::poll_timeout)'s
    /// instant has passed. It acts on the deadline that passed:
    ///
    /// * keepalive (`Config::keepalive`): after `interval` with nothing
    ///   received since the last check, a ping is queued (so after one to two
    ///   intervals of silence); the permessage-deflate send history is freed
    ///   if quiet ([`release_quiet_deflate`](Self::release_quiet_deflate));
    /// * nothing received within `keepalive.timeout` of that ping:
    ///   [`Timeout::KeepalivePong`]. The peer is taken for dead; the
    ///   transport stops reading and winds down, bounded by `close_timeout`;
    /// * the peer's Close left unanswered (`defer_close_reply`) for
    ///   `close_timeout`: the reply is queued, echoing the peer's code;
    /// * our Close queued `close_timeout` ago and the transport still open:
    ///   [`Timeout::ClosingHandshake`], returned by every later call too:
    ///   the transport is to be closed now.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Timeout> {
        self.timers.now = Some(now);
        self.arm_deadline(now);
        let Some((purpose, at)) = self.timers.deadline else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        let result = self.deadline_passed(purpose, now);
        self.arm_deadline(now);
        result
    }

    /// The deadline the connection's state calls for.
    #[inline]
    fn wanted_deadline(&self) -> Option<Purpose> {
        if self.tx.close_sent || self.failed.is_some() || self.timers.peer_silent {
            Some(Purpose::Closing)
        } else if self.close_received {
            Some(Purpose::Reply)
        } else if self.config.keepalive.is_some() {
            Some(Purpose::Silence)
        } else {
            None
        }
    }

    /// Arm the deadline the state calls for, from `now`, unless the one armed
    /// serves it.
    fn arm_deadline(&mut self, now: Instant) {
        let wanted = self.wanted_deadline();
        self.timers.deadline = match (wanted, self.timers.deadline) {
            (None, _) => None,
            (Some(wanted), Some((armed, at))) if armed.serves(wanted) => Some((armed, at)),
            (Some(wanted), _) => {
                let after = match (wanted, self.config.keepalive) {
                    (Purpose::Silence | Purpose::Pong, Some(k)) => k.interval,
                    _ => self.config.close_timeout,
                };
                Some((wanted, now + after))
            }
        };
    }

    /// Act on the deadline for `purpose`, which passed.
    fn deadline_passed(&mut self, purpose: Purpose, now: Instant) -> Result<(), Timeout> {
        let keepalive = self.config.keepalive;
        match (purpose, keepalive) {
            (Purpose::Silence, Some(k)) => {
                self.release_quiet_deflate();
                self.timers.deadline = Some(if std::mem::take(&mut self.timers.heard) {
                    (Purpose::Silence, now + k.interval)
                } else {
                    // Refused only once our Close is queued; the closing
                    // deadline then takes over.
                    let _ = self.send_ping(Bytes::from_static(KEEPALIVE_PING));
                    (Purpose::Pong, now + k.timeout)
                });
                Ok(())
            }
            (Purpose::Pong, Some(k)) => {
                if std::mem::take(&mut self.timers.heard) {
                    self.timers.deadline = Some((Purpose::Silence, now + k.interval));
                    return Ok(());
                }
                self.timers.peer_silent = true;
                Err(Timeout::KeepalivePong { after: k.timeout })
            }
            (Purpose::Reply, _) => {
                // As without `defer_close_reply`: echo the code (RFC 6455
                // §5.5.1). The closing deadline starts from here.
                let reply = self
                    .peer_close
                    .as_ref()
                    .map(|f| CloseFrame::new(f.code, ""));
                self.tx.write_close(reply.as_ref());
                Ok(())
            }
            // Stays armed and passed: the transport is over.
            (Purpose::Closing, _) => Err(Timeout::ClosingHandshake {
                after: self.config.close_timeout,
            }),
            // Keepalive purposes without keepalive cannot be armed.
            (Purpose::Silence | Purpose::Pong, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::close::CloseCode;
    use crate::config::{Config, Keepalive};
    use crate::error::Timeout;
    use crate::message::{Event, Message};
    use crate::{CloseFrame, CloseState, Connection, Role};
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    const INTERVAL: Duration = Duration::from_secs(10);
    const PONG_TIMEOUT: Duration = Duration::from_secs(4);
    const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A server with keepalive (10 s, 4 s) and a 3 s close timeout, started
    /// at `t0`, and the client it talks to.
    fn started(config: Config, t0: Instant) -> (Connection, Connection) {
        let config = config
            .with_keepalive(Some(Keepalive::new(INTERVAL, PONG_TIMEOUT)))
            .with_close_timeout(CLOSE_TIMEOUT);
        let mut server = Connection::new(Role::Server, config);
        assert_eq!(server.handle_timeout(t0), Ok(()));
        (server, Connection::new(Role::Client, Config::default()))
    }

    /// Every event the peer reads from what `from` queued.
    fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
        to.receive(&from.take_output());
        std::iter::from_fn(|| to.poll_event().unwrap()).collect()
    }

    fn keepalive_ping() -> Event {
        Event::Ping(Bytes::from_static(super::KEEPALIVE_PING))
    }

    #[test]
    fn a_connection_never_given_the_time_has_no_deadline() {
        let config = Config::default().with_keepalive(Some(Keepalive::new(INTERVAL, PONG_TIMEOUT)));
        let mut c = Connection::new(Role::Server, config);
        assert_eq!(c.poll_timeout(), None);
        c.close(None).unwrap();
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn without_keepalive_an_open_connection_has_no_deadline() {
        let mut c = Connection::new(Role::Server, Config::default());
        let t0 = Instant::now();
        assert_eq!(c.handle_timeout(t0), Ok(()));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.handle_timeout(t0 + secs(3600)), Ok(()));
        assert_eq!(c.buffered_amount(), 0);
    }

    #[test]
    fn idle_connection_sends_ping_after_interval() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        assert_eq!(server.poll_timeout(), Some(t0 + INTERVAL));
        // Early calls (a spurious wakeup) change nothing.
        assert_eq!(server.handle_timeout(t0 + secs(9)), Ok(()));
        assert_eq!(server.buffered_amount(), 0);
        assert_eq!(server.handle_timeout(t0 + INTERVAL), Ok(()));
        assert_eq!(deliver(&mut server, &mut client), [keepalive_ping()]);
        assert_eq!(server.poll_timeout(), Some(t0 + INTERVAL + PONG_TIMEOUT));
    }

    #[test]
    fn traffic_within_the_interval_puts_the_ping_off() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        client.send(Message::text("hi")).unwrap();
        deliver(&mut client, &mut server);
        assert_eq!(server.handle_timeout(t0 + INTERVAL), Ok(()));
        assert_eq!(server.buffered_amount(), 0, "no ping to a peer just heard");
        assert_eq!(server.poll_timeout(), Some(t0 + 2 * INTERVAL));
        // A whole interval of silence since that check: now it pings.
        assert_eq!(server.handle_timeout(t0 + 2 * INTERVAL), Ok(()));
        assert_eq!(deliver(&mut server, &mut client), [keepalive_ping()]);
    }

    #[test]
    fn bytes_read_into_the_buffer_count_as_life() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        client.send(Message::text("hi")).unwrap();
        let wire = client.take_output();
        server.read_into(|buf| buf.extend_from_slice(&wire));
        assert_eq!(server.handle_timeout(t0 + INTERVAL), Ok(()));
        assert_eq!(server.buffered_amount(), 0);
        // A read that brought nothing is no sign of life.
        server.read_into(|_| ());
        assert_eq!(server.handle_timeout(t0 + 2 * INTERVAL), Ok(()));
        assert_ne!(server.buffered_amount(), 0, "pinged");
    }

    #[test]
    fn missing_pong_fails_after_timeout() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        server.handle_timeout(t0 + INTERVAL).unwrap();
        deliver(&mut server, &mut client);
        let dead = t0 + INTERVAL + PONG_TIMEOUT;
        assert_eq!(server.handle_timeout(dead - secs(1)), Ok(()));
        let err = server.handle_timeout(dead).unwrap_err();
        assert_eq!(
            err,
            Timeout::KeepalivePong {
                after: PONG_TIMEOUT
            }
        );
        assert!(err.to_string().contains("keepalive.timeout"), "{err}");
        assert_eq!(err.what(), "keepalive pong");
        // No Close (nothing would carry it); the wind-down is bounded.
        assert_eq!(server.buffered_amount(), 0);
        assert_eq!(server.poll_timeout(), Some(dead + CLOSE_TIMEOUT));
        assert_eq!(
            server.handle_timeout(dead + secs(1)),
            Ok(()),
            "reported once"
        );
        assert_eq!(
            server.handle_timeout(dead + CLOSE_TIMEOUT),
            Err(Timeout::ClosingHandshake {
                after: CLOSE_TIMEOUT
            })
        );
    }

    #[test]
    fn a_pong_keeps_the_connection_alive() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        for round in 0..5u32 {
            let ping_at = t0 + INTERVAL * (round + 1) + PONG_TIMEOUT * round;
            assert_eq!(server.poll_timeout(), Some(ping_at));
            server.handle_timeout(ping_at).unwrap();
            // The client answers automatically.
            assert_eq!(deliver(&mut server, &mut client), [keepalive_ping()]);
            let pong = deliver(&mut client, &mut server);
            assert!(matches!(&pong[..], [Event::Pong(p)] if &p[..] == super::KEEPALIVE_PING));
            assert_eq!(server.handle_timeout(ping_at + PONG_TIMEOUT), Ok(()));
        }
        assert_eq!(server.close_state(), CloseState::Open);
    }

    #[test]
    fn any_byte_after_the_ping_proves_the_peer_alive() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default(), t0);
        server.handle_timeout(t0 + INTERVAL).unwrap();
        server.take_output();
        client.send(Message::binary(vec![1, 2, 3])).unwrap();
        deliver(&mut client, &mut server);
        let checked = t0 + INTERVAL + PONG_TIMEOUT;
        assert_eq!(server.handle_timeout(checked), Ok(()));
        assert_eq!(server.poll_timeout(), Some(checked + INTERVAL));
    }

    #[test]
    fn close_deadline_expires_without_peer_close() {
        let t0 = Instant::now();
        let (mut server, _client) = started(Config::default(), t0);
        server
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
            .unwrap();
        // The deadline starts from the next time given: asked for at once.
        let t1 = t0 + secs(2);
        assert!(server.poll_timeout().unwrap() <= t1);
        assert_eq!(server.handle_timeout(t1), Ok(()));
        assert_eq!(server.poll_timeout(), Some(t1 + CLOSE_TIMEOUT));
        // No keepalive ping while closing, however long it takes.
        assert_eq!(server.handle_timeout(t1 + secs(2)), Ok(()));
        let expired = Err(Timeout::ClosingHandshake {
            after: CLOSE_TIMEOUT,
        });
        assert_eq!(server.handle_timeout(t1 + CLOSE_TIMEOUT), expired);
        // It stays passed: every later call says the transport is over.
        assert_eq!(server.poll_timeout(), Some(t1 + CLOSE_TIMEOUT));
        assert_eq!(server.handle_timeout(t1 + secs(60)), expired);
        server.take_output(); // only our Close
    }

    #[test]
    fn a_failed_connection_is_bounded_by_the_close_deadline() {
        let t0 = Instant::now();
        let (mut server, _) = started(Config::default(), t0);
        // An unmasked frame from a client: the connection fails.
        server.receive(&[0x81, 0x02, b'h', b'i']);
        assert!(server.poll_event().is_err());
        server.handle_timeout(t0 + secs(1)).unwrap();
        assert_eq!(server.poll_timeout(), Some(t0 + secs(1) + CLOSE_TIMEOUT));
    }

    #[test]
    fn deferred_close_reply_is_sent_after_close_timeout() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default().with_defer_close_reply(true), t0);
        client.close(Some(CloseFrame::new(4000u16, "bye"))).unwrap();
        let events = deliver(&mut client, &mut server);
        assert!(matches!(&events[..], [Event::Close(Some(_))]));
        assert!(!server.close_sent());
        let t1 = t0 + secs(1);
        server.handle_timeout(t1).unwrap();
        assert_eq!(server.poll_timeout(), Some(t1 + CLOSE_TIMEOUT));
        assert_eq!(server.handle_timeout(t1 + CLOSE_TIMEOUT), Ok(()));
        assert!(server.close_sent());
        match &deliver(&mut server, &mut client)[..] {
            [Event::Close(Some(f))] => assert_eq!(f.code.as_u16(), 4000),
            other => panic!("expected the echoed Close, got {other:?}"),
        }
        // Sending the reply takes its own close_timeout.
        assert_eq!(server.poll_timeout(), Some(t1 + 2 * CLOSE_TIMEOUT));
    }

    #[test]
    fn a_deferred_reply_sent_in_time_starts_the_close_deadline() {
        let t0 = Instant::now();
        let (mut server, mut client) = started(Config::default().with_defer_close_reply(true), t0);
        client.close(None).unwrap();
        deliver(&mut client, &mut server);
        server.handle_timeout(t0 + secs(1)).unwrap();
        server.send(Message::text("last words")).unwrap();
        server.close(None).unwrap();
        let t2 = t0 + secs(2);
        assert!(server.poll_timeout().unwrap() <= t2, "re-armed at once");
        server.handle_timeout(t2).unwrap();
        assert_eq!(server.poll_timeout(), Some(t2 + CLOSE_TIMEOUT));
        let events = deliver(&mut server, &mut client);
        assert_eq!(events.len(), 2, "{events:?}");
    }
}
