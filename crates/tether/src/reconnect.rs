//! Reconnecting with jittered exponential backoff.
//!
//! When a server restarts, every client notices at the same moment; if they
//! all retry on the same schedule they arrive in synchronized waves. Each
//! delay is therefore drawn uniformly from `[0, cap]` where the cap doubles
//! per failure up to a maximum ("full jitter"), which spreads retries out
//! and keeps the expected load on the server flat.
//!
//! Only failures that a retry can fix are retried ([`is_retryable`]):
//! network errors, timeouts, proxy failures, abnormal closure, and HTTP 5xx
//! / 429 answers. A handshake the server rejects on principle (403, a
//! missing subprotocol, a bad `Sec-WebSocket-Accept`) or a URL/TLS
//! configuration error fails at once: retrying would only hammer the server.

use crate::client::ClientBuilder;
use crate::error::{Error, Result};
use crate::socket::WebSocket;
use crate::stream::MaybeTlsStream;
use std::time::Duration;
use tether_proto::handshake::HandshakeError;

/// A jittered exponential backoff schedule.
///
/// ```
/// use std::time::Duration;
/// let mut b = tether::reconnect::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
/// let first = b.next_delay();
/// assert!(first <= Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// 250 ms doubling up to 30 s, retrying forever.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Start at `initial`, double per attempt, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            max_attempts: None,
        }
    }

    /// Give up after this many failed attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// The failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Whether another attempt is allowed.
    pub fn can_retry(&self) -> bool {
        match self.max_attempts {
            None => true,
            Some(m) => self.attempt < m,
        }
    }

    /// Forget past failures (call after a connection worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The upper bound of the next delay (without jitter).
    pub fn current_cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Record a failure and return how long to wait: uniform in `[0, cap]`.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.current_cap();
        self.attempt = self.attempt.saturating_add(1);
        let r = random_u64();
        let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { r % (nanos + 1) })
    }
}

/// A random number for the jitter, from the workspace's one source
/// (`rand`'s thread-local CSPRNG, through `tether_proto::Randomness`).
fn random_u64() -> u64 {
    tether_proto::Randomness::ThreadRng.u64()
}

/// Whether retrying could fix this error (see the module docs).
pub fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Io(_) | Error::Timeout { .. } | Error::Proxy(_) => true,
        Error::Refused { status: s, .. }
        | Error::Handshake(HandshakeError::UnexpectedStatus(s)) => {
            s.is_server_error() || *s == http::StatusCode::TOO_MANY_REQUESTS
        }
        _ => false,
    }
}

/// Connect, retrying retryable failures on `backoff`'s schedule. `on_retry`
/// sees each failure and the delay before the next attempt (for logging).
pub async fn connect_with_backoff(
    builder: &ClientBuilder,
    backoff: &mut Backoff,
    on_retry: impl FnMut(&Error, Duration),
) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>)> {
    connect_with_backoff_by(builder, backoff, on_retry, ClientBuilder::connect).await
}

/// [`connect_with_backoff`] with another way to connect, e.g.
/// `ClientBuilder::connect_http2` (feature `http2`).
pub async fn connect_with_backoff_by<S, F, Fut>(
    builder: &ClientBuilder,
    backoff: &mut Backoff,
    mut on_retry: impl FnMut(&Error, Duration),
    connect: F,
) -> Result<(WebSocket<S>, http::Response<()>)>
where
    F: Fn(ClientBuilder) -> Fut,
    Fut: std::future::Future<Output = Result<(WebSocket<S>, http::Response<()>)>>,
{
    loop {
        match connect(builder.clone()).await {
            Ok(ok) => {
                backoff.reset();
                return Ok(ok);
            }
            Err(e) if is_retryable(&e) && backoff.can_retry() => {
                let delay = backoff.next_delay();
                on_retry(&e, delay);
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_cap_doubles_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let caps: Vec<_> = (0..5)
            .map(|_| {
                let cap = b.current_cap();
                let d = b.next_delay();
                assert!(d <= cap);
                cap.as_millis()
            })
            .collect();
        assert_eq!(caps, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.current_cap(), Duration::from_millis(100));
    }

    #[test]
    fn backoff_stops_after_max_attempts() {
        let mut b = Backoff::default().max_attempts(2);
        assert!(b.can_retry());
        b.next_delay();
        b.next_delay();
        assert!(!b.can_retry());
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(is_retryable(&Error::abnormal_closure()));
        let refused = |status| Error::Refused {
            status,
            body: String::new(),
        };
        assert!(is_retryable(&refused(
            http::StatusCode::SERVICE_UNAVAILABLE
        )));
        assert!(!is_retryable(&refused(http::StatusCode::FORBIDDEN)));
        assert!(!is_retryable(&Error::Tls("bad cert".into())));
    }
}
