//! A server binary run as a child process on a free loopback port, stopped
//! by PID (SIGKILL) when asked and when dropped.
#![allow(dead_code)]

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The arguments for a port.
type Args = Box<dyn Fn(u16) -> Vec<OsString> + Send + Sync>;

/// One server process.
pub struct Process {
    name: &'static str,
    binary: PathBuf,
    args: Args,
    child: Option<Child>,
    port: u16,
}

impl Process {
    /// Start `binary` with `args(port)` on a free port and wait until the
    /// port accepts connections (a port taken between the check and the
    /// start is retried with another).
    pub fn start(
        name: &'static str,
        binary: PathBuf,
        args: impl Fn(u16) -> Vec<OsString> + Send + Sync + 'static,
    ) -> Process {
        let mut p = Process {
            name,
            binary,
            args: Box::new(args),
            child: None,
            port: 0,
        };
        for _ in 0..5 {
            p.port = free_port();
            if p.spawn() {
                return p;
            }
        }
        panic!("{name} did not start");
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .args((self.args)(self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.name));
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

    /// Kill it (SIGKILL, by PID) and wait for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill it and start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "{} did not restart", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
