//! The `tether serve` harness of the `serve_*` integration tests: run the
//! real binary on a free port with a temporary config, and talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tether::proto::frame::OpCode;

/// The `tether` binary of the test being run: `TETHER_BIN`, else
/// `target/<profile>/tether` beside the test executable (which cargo
/// builds in `target/<profile>/deps` together with the package's binary).
pub fn tether_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TETHER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile.join(format!("tether{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not built (set TETHER_BIN)", bin.display());
    bin
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory.
    pub fn new() -> TempDir {
        let dir = crate::temp_path("serve-test");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Default for TempDir {
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `tether serve`, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub scheme: &'static str,
    /// Lines printed on stdout after the first `listening on` line.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Start with this TOML config (the `[[listen]]` is replaced by a free port).
    pub fn with_config(toml: &str) -> Server {
        Self::with_config_and_args(toml, &[])
    }

    pub fn with_config_and_args(toml: &str, args: &[&str]) -> Server {
        Self::with_setup(toml, args, |_| {})
    }

    /// Like [`Server::with_config`], after `setup` prepared files in the
    /// server's temporary directory (`$DIR` in the TOML).
    pub fn with_setup(toml: &str, args: &[&str], setup: impl FnOnce(&Path)) -> Server {
        Self::with_env(toml, args, &[], setup)
    }

    /// Like [`Server::with_setup`], with these variables added to the
    /// server's environment.
    pub fn with_env(
        toml: &str,
        args: &[&str],
        env: &[(&str, &str)],
        setup: impl FnOnce(&Path),
    ) -> Server {
        let (dir, cfg) = Self::config_dir(toml, setup);
        let mut all = vec![
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        Self::spawn(dir, &all, env)
    }

    /// Start with command-line arguments only (plus `--listen 127.0.0.1:0`).
    pub fn with_args(args: &[&str]) -> Server {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(TempDir::new(), &all, &[])
    }

    /// A temporary directory prepared by `setup` holding the config
    /// (`$DIR` in the TOML replaced by the directory).
    fn config_dir(toml: &str, setup: impl FnOnce(&Path)) -> (TempDir, PathBuf) {
        let dir = TempDir::new();
        setup(dir.path());
        let toml = toml.replace("$DIR", dir.path().to_str().unwrap());
        let cfg = dir.write("tether.toml", &toml);
        (dir, cfg)
    }

    /// Run `tether serve` with a config it must refuse: its error output
    /// (panics if it starts listening or takes more than 20 s).
    pub fn refused_config(toml: &str, setup: impl FnOnce(&Path)) -> String {
        let (dir, cfg) = Self::config_dir(toml, setup);
        let mut child = Command::new(tether_bin())
            .args([
                "serve",
                "--config",
                cfg.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tether serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server accepted the configuration and ran");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "exited with success; stdout: {stdout}");
        assert!(
            !stdout.contains("listening on"),
            "the server started: {stdout}"
        );
        drop(dir);
        stderr
    }

    fn spawn(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(tether_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .env("TETHER_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tether serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .unwrap_or_else(|| {
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("server exited before listening; log:\n{log}")
            })
            .unwrap();
        let (scheme, addr) = line
            .strip_prefix("listening on ")
            .and_then(|u| u.split_once("://"))
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let scheme = if scheme == "https" { "https" } else { "http" };
        // Keep draining stdout so the server never blocks on a full pipe.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr: addr.parse().unwrap(),
            dir,
            scheme,
            stdout,
        }
    }

    /// The rest of the first stdout line after the first `listening on`
    /// line that starts with `prefix` (waits up to 10 s).
    pub fn stdout_line(&self, prefix: &str) -> String {
        let mut found = None;
        let ok = eventually(Duration::from_secs(10), || {
            found = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_owned));
            found.is_some()
        });
        assert!(
            ok,
            "no stdout line starting with {prefix:?}; log:\n{}",
            self.log()
        );
        found.unwrap()
    }

    /// Send a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn ws_url(&self, path: &str) -> String {
        let s = if self.scheme == "https" { "wss" } else { "ws" };
        format!("{s}://{}{path}", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Send a raw HTTP request (add `Connection: close`), return the whole answer.
    pub fn raw_http(&self, request: &str) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A raw TCP connection that completed a WebSocket handshake on `path`
    /// (the 101 head read off it), for tests that misbehave as a peer.
    pub fn raw_websocket(&self, path: &str) -> TcpStream {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("a response head");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        s
    }

    /// `GET path` with a loopback Host.
    pub fn get(&self, path: &str) -> String {
        get_from(self.addr, path, "")
    }

    /// `POST path` with a bearer token and a JSON body; the whole answer.
    pub fn post_json(&self, path: &str, token: &str, body: &str) -> String {
        self.raw_http(&format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        ))
    }

    /// The JSON body of a raw HTTP answer.
    pub fn json_body(resp: &str) -> serde_json::Value {
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
    }

    /// The value of a metric line (exact name with labels), 0 if absent.
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Wait for the process to exit (bounded); its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` from `addr` with a loopback Host and extra header lines
/// (each ending in `\r\n`); the whole answer.
pub fn get_from(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A masked binary frame as a client sends it (zero mask key).
pub fn client_frame(payload: &[u8]) -> Vec<u8> {
    crate::raw::encode_frame(true, 0, OpCode::Binary, Some([0; 4]), payload)
}

/// Write `chunk` over and over until the peer stops taking it (a write
/// blocks for `patience`); the bytes written. Panics if it never blocks
/// within `limit` bytes.
pub fn write_until_blocked(
    s: &mut TcpStream,
    chunk: &[u8],
    patience: Duration,
    limit: usize,
) -> usize {
    s.set_write_timeout(Some(patience)).unwrap();
    let mut written = 0;
    while written < limit {
        match s.write(chunk) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return written
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    panic!("the peer took {written} bytes without blocking");
}

/// Status line code of a raw HTTP answer.
pub fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The HTTP status a refused WebSocket handshake got.
pub fn rejected_status(e: &tether::Error) -> u16 {
    match e.refused_status() {
        Some(s) => s.as_u16(),
        None => panic!("expected an HTTP refusal, got {e}"),
    }
}

pub use crate::eventually;

/// The status and (for a refusal) the body of a raw WebSocket upgrade
/// request for `path` with `extra` header lines (each ending in `\r\n`).
/// A `101` answer is returned with an empty body, the socket closed.
pub fn upgrade_raw(addr: SocketAddr, host: &str, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            return (101, String::new());
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status_of(&text), body)
}

/// One Server-Sent Event block: its fields as received (comment lines
/// kept, `data` lines joined with `\n`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
    pub comment: Option<String>,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        let d = self.data.as_deref().unwrap_or("null");
        serde_json::from_str(d).unwrap_or_else(|e| panic!("data is not JSON ({e}): {d}"))
    }
}

/// An event stream read with a raw HTTP/1.1 GET: the response head, then
/// the chunked body decoded and split into events.
pub struct SseStream {
    pub s: TcpStream,
    /// Status line and headers (lowercase names).
    pub head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// The final chunk arrived.
    pub complete: bool,
}

impl SseStream {
    /// `GET path` with extra header lines (each ending in `\r\n`); panics
    /// unless the answer is a 200 event stream.
    pub fn open(addr: SocketAddr, path: &str, headers: &str) -> SseStream {
        let (status, stream) = Self::request(addr, path, headers);
        assert_eq!(status, 200, "{}", stream.head);
        assert!(
            stream.head.contains("content-type: text/event-stream"),
            "{}",
            stream.head
        );
        stream
    }

    /// `GET path`; the status and the stream (whose body, for a refusal,
    /// is read with [`SseStream::rest`]).
    pub fn request(addr: SocketAddr, path: &str, headers: &str) -> (u16, SseStream) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read(&mut buf).expect("a response head");
            assert!(n > 0, "closed before a response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        raw.drain(..end + 4);
        let status = status_of(&head);
        let stream = SseStream {
            s,
            head,
            raw,
            body: Vec::new(),
            complete: false,
        };
        (status, stream)
    }

    /// Everything left until the server closes (a refusal's body).
    pub fn rest(mut self) -> String {
        let _ = self.s.read_to_end(&mut self.raw);
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Decode whole chunks from `raw` into `body`.
    fn decode(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            if size == 0 {
                self.complete = true;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next event (or comment), waiting at most `limit`; `None` when
    /// the stream ended or nothing came in time.
    pub fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + limit;
        loop {
            self.decode();
            if let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.body.drain(..i + 2).collect();
                return Some(parse_sse_block(&String::from_utf8_lossy(&block)));
            }
            if self.complete {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16384];
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    /// The next event that is not a comment.
    pub fn next_event(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next(left)?;
            if e.comment.is_none() || e.data.is_some() || e.event.is_some() {
                return Some(e);
            }
        }
    }

    /// Read until the server ends the stream (within `limit`): true if
    /// it ended with the final chunk, then closed the connection.
    pub fn ends_within(&mut self, limit: Duration) -> bool {
        self.closes_within(limit) && self.complete
    }

    /// Read until the server closes the connection (within `limit`),
    /// with or without the final chunk.
    pub fn closes_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.next(deadline - Instant::now()).is_none() {
                break;
            }
        }
        let mut rest = Vec::new();
        self.s
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        let closed = self.s.read_to_end(&mut rest).is_ok();
        self.raw.extend_from_slice(&rest);
        self.decode();
        closed
    }
}

/// Fields of one event block.
pub fn parse_sse_block(block: &str) -> SseEvent {
    let mut e = SseEvent::default();
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "" => e.comment = Some(value),
            "event" => e.event = Some(value),
            "id" => e.id = Some(value),
            "retry" => e.retry = value.parse().ok(),
            "data" => {
                e.data = Some(match e.data.take() {
                    Some(d) => format!("{d}\n{value}"),
                    None => value,
                })
            }
            other => panic!("unknown field {other:?} in {block:?}"),
        }
    }
    e
}

/// Wait (at most 20 s, without blocking the runtime) until `/healthz` of
/// `server` answers `status`.
pub async fn health_becomes(server: &Server, status: u16) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = status_of(&server.get("/healthz"));
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz stayed {got}, expected {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
