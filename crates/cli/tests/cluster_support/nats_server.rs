//! A real `nats-server` for tests, started on a free loopback port and
//! stopped by PID. The binary comes from `TETHER_TEST_NATS_SERVER`
//! (`scripts/test cluster` installs Debian's package and sets it); without
//! it, [`NatsServer::start`] returns `None` and the test says it skipped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` child process.
pub struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl NatsServer {
    /// Start one (core NATS, no JetStream).
    pub fn start(test: &str) -> Option<NatsServer> {
        let Some(binary) = std::env::var_os("TETHER_TEST_NATS_SERVER") else {
            eprintln!("{test}: skipped: TETHER_TEST_NATS_SERVER is not set (scripts/test cluster sets it)");
            return None;
        };
        let mut server = NatsServer {
            binary: binary.into(),
            child: None,
            port: 0,
        };
        // A free port can be taken between the check and the start: retry.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("nats-server did not start");
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            // No monitoring or cluster ports: only the client port is opened.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).is_ok() {
                return true;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// Kill it (SIGKILL, by PID) and wait for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port after [`NatsServer::stop`].
    pub fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "nats-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
