//! A real `nats-server` for tests, started on a free loopback port and
//! stopped by PID. The binary comes from `TETHER_TEST_NATS_SERVER`
//! (`scripts/test cluster` installs Debian's package and sets it); without
//! it, [`NatsServer::start`] returns `None` and the test says it skipped.
#![allow(dead_code)]

use super::process::Process;
use std::net::SocketAddr;

/// A `nats-server` child process.
pub struct NatsServer {
    process: Process,
}

impl NatsServer {
    /// Start one (core NATS, no JetStream; no monitoring or cluster ports).
    pub fn start(test: &str) -> Option<NatsServer> {
        let Some(binary) = std::env::var_os("TETHER_TEST_NATS_SERVER") else {
            eprintln!("{test}: skipped: TETHER_TEST_NATS_SERVER is not set (scripts/test cluster sets it)");
            return None;
        };
        let process = Process::start("nats-server", binary.into(), |port| {
            ["-a", "127.0.0.1", "-p", &port.to_string()]
                .iter()
                .map(Into::into)
                .collect()
        });
        Some(NatsServer { process })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// Kill it (SIGKILL, by PID) and wait for it to be gone.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Start it again on the same port after [`NatsServer::stop`].
    pub fn start_again(&mut self) {
        self.process.restart();
    }
}
