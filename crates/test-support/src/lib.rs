//! Fixtures shared by the workspace's integration tests (a dev-dependency,
//! never published):
//!
//! * [`tls`]: a private CA with server and client certificates, written to
//!   a temporary directory.
//! * [`raw`]: connected pairs, a frame builder and a raw peer that sends
//!   bytes no conforming endpoint would.
//! * [`peer`]: hand-written WebSocket servers that answer the handshake and
//!   then send whatever a test needs, and a TLS echo server.
//! * [`serve`]: the real `tether serve` binary on a free port with a
//!   temporary configuration, and the raw HTTP, WebSocket and event-stream
//!   requests the `serve_*` tests make against it.
//! * [`connect`]: `tether connect` run with arguments and input.
//! * [`jwt`]: HS256 tokens for routes with `auth`.
//! * [`ws`]: reading text, JSON and the Close frame with deadlines.
//! * [`eventually`]: polling a condition with a deadline.

pub mod connect;
pub mod jwt;
pub mod peer;
pub mod raw;
pub mod serve;
pub mod tls;
pub mod ws;

use std::time::{Duration, Instant};

/// Poll `f` until it is true or `limit` passes; returns the last result.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A fresh temporary directory's path, unique in this process:
/// `tether-<tag>-<pid>-<n>`.
pub(crate) fn temp_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tether-{tag}-{}-{n}", std::process::id()))
}
