//! A real `redis-server` for tests, started on a free loopback port and
//! stopped by PID. The binary comes from `TETHER_TEST_REDIS_SERVER`
//! (`scripts/test cluster` installs Debian's package and sets it); without
//! it, [`RedisServer::start`] returns `None` and the test says it skipped.
#![allow(dead_code)]

use super::process::Process;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A `redis-server` child process.
pub struct RedisServer {
    process: Process,
    dir: PathBuf,
}

impl RedisServer {
    /// Start one: without persistence, or with an append-only file fsynced
    /// on every write (`aof`), so that a restart keeps everything.
    pub fn start(test: &str, aof: bool) -> Option<RedisServer> {
        let Some(binary) = std::env::var_os("TETHER_TEST_REDIS_SERVER") else {
            eprintln!("{test}: skipped: TETHER_TEST_REDIS_SERVER is not set (scripts/test cluster sets it)");
            return None;
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tether-redis-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let in_dir = dir.clone();
        let process = Process::start("redis-server", binary.into(), move |port| {
            let mut args: Vec<OsString> = ["--port", &port.to_string()]
                .iter()
                .chain(&[
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--logfile",
                    "redis.log",
                ])
                .map(OsString::from)
                .collect();
            args.extend(["--dir".into(), in_dir.clone().into_os_string()]);
            let persistence: &[&str] = match aof {
                true => &["--appendonly", "yes", "--appendfsync", "always"],
                false => &["--appendonly", "no"],
            };
            args.extend(persistence.iter().map(OsString::from));
            args
        });
        Some(RedisServer { process, dir })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr())
    }

    /// Kill it (SIGKILL, by PID) and wait for it to be gone.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kill it and start it again on the same port and directory: without
    /// persistence everything is gone, with `aof` everything is kept (the
    /// script cache is gone either way).
    pub fn restart(&mut self) {
        self.process.restart();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
