//! Raw TCP mode: the bytes of a WebSocket client, without WebSocket.
//!
//! One masked frame (header and payload masked with a fixed key, exactly as
//! a client's `Connection` would encode it) is built once and sent over
//! plain TCP to an echo server that copies bytes back. Since every frame is
//! identical, the echoed stream is a repetition of it and complete echoes
//! are counted as `bytes received / frame length`. No handshake, no parsing,
//! no masking per message: what is left is the cost of the transport itself,
//! which makes this the baseline for the WebSocket numbers.
//!
//! With `--raw-mask` the frames are masked as a real client must mask them:
//! each with a fresh key, while being copied into a staging buffer just
//! before it is written (one pass, [`extend_masked`]), in pieces of at most
//! [`STAGE_SIZE`] as Tether's client does. Against `tcp-echo --unmask` (which
//! XORs every byte it echoes, as a server's unmasking touches every byte),
//! this measures the floor RFC 6455's masking puts under any WebSocket
//! client and server pair: what no implementation can get below.
//!
//! With a `tls://` (or `wss://`) target the same bytes go over TLS, with
//! the run's TLS settings (`--cacert`), to a TLS echo server: the limit
//! for `wss://` servers, as plain raw TCP is for `ws://` ones.

use super::echo::{collect, ConnCounts, Shared};
use super::report::{Summary, Window};
use super::stats::LocalLatencies;
use super::{spawn_progress, BenchArgs, Progress, TLS};
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tether::proto::bench::{extend_masked, STAGE_SIZE};
use tether::proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use tether::proto::mask::{apply_mask, new_key};
use tether::proto::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// The masking key of the pre-encoded frame (any key is as costly as another).
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One complete client frame carrying `size` payload bytes, masked.
pub fn encode_frame(size: usize, text: bool) -> Vec<u8> {
    let (mut frame, payload) = frame_parts(size, text);
    let start = frame.len();
    frame.extend_from_slice(&payload);
    apply_mask(&mut frame[start..], KEY, 0);
    frame
}

/// A client frame's header (key `KEY`, last) and its payload, unmasked.
fn frame_parts(size: usize, text: bool) -> (Vec<u8>, Vec<u8>) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        mask: Some(KEY),
        payload_len: size as u64,
    };
    let mut h = [0u8; MAX_HEADER_LEN];
    let hlen = header.encode(&mut h);
    let payload = if text {
        (0..size).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        (0..size).map(|i| i as u8).collect()
    };
    (h[..hlen].to_vec(), payload)
}

/// `host:port` from `host:port`, `tcp://host:port/...` or `ws://host:port/...`.
fn socket_addr(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The TLS server name of a `tls://` or `wss://` target (its host), or
/// `None` for a plain TCP one.
fn tls_host(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    if !matches!(scheme, "tls" | "wss") {
        return None;
    }
    let addr = socket_addr(url);
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => &addr,
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

/// Whether `url` asks for raw TLS rather than raw TCP.
pub(super) fn is_tls(url: &str) -> bool {
    tls_host(url).is_some()
}

/// A raw connection: plain TCP, or TLS over it.
enum RawStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Open one raw connection to `addr`, TLS to `tls_name` if given.
async fn open(addr: &str, tls_name: Option<ServerName<'static>>) -> std::io::Result<RawStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let Some(name) = tls_name else {
        return Ok(RawStream::Tcp(tcp));
    };
    let config = TLS
        .get()
        .ok_or_else(|| std::io::Error::other("TLS settings not initialised"))?
        .clone();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(RawStream::Tls(Box::new(tls)))
}

/// Where the bytes written come from. Cloned for each connection: clones
/// share the frames or the payload (as a client's messages share theirs:
/// the generator sends one payload throughout).
#[derive(Clone)]
enum Source {
    /// `depth + 1` copies of the masked frame, so any run of up to `depth`
    /// frames starting anywhere inside a frame is one contiguous slice.
    Repeated(Bytes),
    /// Frames masked with a fresh key each as they are staged (`--raw-mask`).
    Masking(Masker),
}

/// Stages the stream of frames, each masked with its own key.
#[derive(Clone)]
struct Masker {
    /// The frame's header, its key bytes last (overwritten per frame).
    header: Vec<u8>,
    /// The payload, unmasked.
    payload: Bytes,
    /// The key of the frame being staged.
    key: [u8; 4],
    /// Masked bytes ready to write; `staged_at` of them are written.
    stage: BytesMut,
    staged_at: usize,
}

impl Masker {
    fn new(size: usize, text: bool) -> Self {
        let (header, payload) = frame_parts(size, text);
        Masker {
            header,
            payload: payload.into(),
            key: KEY,
            stage: BytesMut::new(),
            staged_at: 0,
        }
    }

    fn frame_len(&self) -> u64 {
        (self.header.len() + self.payload.len()) as u64
    }

    /// Stage the next `n` bytes of the stream, which start `pos` bytes in
    /// (at a frame boundary or where the last staging stopped).
    fn stage(&mut self, pos: u64, n: usize) {
        let (hlen, frame_len) = (self.header.len(), self.frame_len());
        self.stage.clear();
        self.staged_at = 0;
        let (mut pos, end) = (pos, pos + n as u64);
        while pos < end {
            let p = (pos % frame_len) as usize;
            let left = (end - pos) as usize;
            let take = if p < hlen {
                if p == 0 {
                    self.key = new_key();
                    self.header[hlen - 4..].copy_from_slice(&self.key);
                }
                let take = left.min(hlen - p);
                self.stage.extend_from_slice(&self.header[p..p + take]);
                take
            } else {
                let q = p - hlen;
                let take = left.min(self.payload.len() - q);
                extend_masked(&mut self.stage, &self.payload[q..q + take], self.key, q);
                take
            };
            pos += take as u64;
        }
    }

    /// The staged bytes not yet written.
    fn unwritten(&self) -> &[u8] {
        &self.stage[self.staged_at..]
    }
}

struct RawConn<'a, S> {
    stream: S,
    source: Source,
    frame_len: u64,
    size: u64,
    allowed: u64,
    quota: Option<u64>,
    owed: u64,
    /// Bytes queued but not yet written.
    to_write: u64,
    written: u64,
    /// Written bytes the stream may still hold (TLS records not yet sent).
    unflushed: bool,
    read_total: u64,
    inflight: VecDeque<Instant>,
    buf: Box<[u8]>,
    counts: ConnCounts,
    latencies: LocalLatencies<'a>,
    progress: &'a Progress,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConn<'_, S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if self.owed > 0 {
                let now = Instant::now();
                for _ in 0..self.owed {
                    self.inflight.push_back(now);
                }
                self.to_write += self.owed * self.frame_len;
                self.counts.sent += self.owed;
                self.owed = 0;
            }
            while self.to_write > 0 {
                let chunk = match &mut self.source {
                    Source::Repeated(frames) => {
                        let p = (self.written % self.frame_len) as usize;
                        let n = (self.to_write as usize).min(frames.len() - p);
                        &frames[p..p + n]
                    }
                    Source::Masking(m) => {
                        if m.unwritten().is_empty() {
                            let n = (self.to_write as usize).min(STAGE_SIZE);
                            m.stage(self.written, n);
                        }
                        m.unwritten()
                    }
                };
                match Pin::new(&mut self.stream).poll_write(cx, chunk) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(k)) => {
                        self.unflushed = true;
                        self.written += k as u64;
                        self.to_write -= k as u64;
                        if let Source::Masking(m) = &mut self.source {
                            m.staged_at += k;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            // TLS keeps the tail of a write as records until flushed; TCP
            // flushes at once.
            if self.to_write == 0 && self.unflushed {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            let mut got = 0u64;
            loop {
                let mut rb = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut self.stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                        return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()))
                    }
                    Poll::Ready(Ok(())) => {
                        let before = self.read_total / self.frame_len;
                        self.read_total += rb.filled().len() as u64;
                        let new = self.read_total / self.frame_len - before;
                        if new > 0 {
                            let now = Instant::now();
                            for _ in 0..new {
                                if let Some(t) = self.inflight.pop_front() {
                                    self.latencies.push(now.duration_since(t));
                                }
                            }
                            let more = new.min(self.allowed);
                            self.allowed -= more;
                            self.owed += more;
                            got += new;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if got > 0 {
                self.counts.received += got;
                self.counts.bytes += got * self.size;
                self.progress.add(got, got * self.size);
            }
            if let Some(q) = self.quota {
                if self.counts.received >= q {
                    return Poll::Ready(Ok(()));
                }
            }
            if got == 0 || self.owed == 0 {
                return Poll::Pending;
            }
        }
    }
}

/// What every connection of a run shares.
struct Plan {
    args: Arc<BenchArgs>,
    shared: Arc<Shared>,
    source: Source,
    frame_len: u64,
    read_size: usize,
    deadline: Option<Instant>,
}

/// Run raw TCP (or raw TLS) mode.
pub(super) async fn run(args: Arc<BenchArgs>) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared::new());
    let addr = socket_addr(&args.url);
    let tls_name = match tls_host(&args.url) {
        Some(host) => Some(
            ServerName::try_from(host.clone())
                .map_err(|_| anyhow::anyhow!("`{host}` is not a valid TLS server name"))?,
        ),
        None => None,
    };
    let frame = encode_frame(args.size, args.text);
    let frame_len = frame.len() as u64;
    let source = if args.raw_mask {
        Source::Masking(Masker::new(args.size, args.text))
    } else {
        Source::Repeated(Bytes::from(frame.repeat(args.depth as usize + 1)))
    };

    let limit = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let (limit, addr, tls_name) = (limit.clone(), addr.clone(), tls_name.clone());
        connecting.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            Ok::<_, std::io::Error>((i, open(&addr, tls_name).await?))
        });
    }
    let mut conns = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => shared.errors.record(format!("connect: {e}")),
            Err(e) => shared.errors.record(format!("connect task: {e}")),
        }
    }
    if conns.is_empty() {
        let what = if tls_name.is_some() { "TLS" } else { "TCP" };
        anyhow::bail!(
            "no {what} connection to {addr} could be opened: {:?}",
            shared.errors.samples()
        );
    }
    let connected = conns.len();
    let window = Window::start(&args);
    let deadline = args
        .messages
        .is_none()
        .then(|| window.start + args.measure_for());
    let progress = spawn_progress(
        shared.progress.clone(),
        deadline.map(|_| args.measure_for()),
    );
    let plan = Arc::new(Plan {
        args: args.clone(),
        shared: shared.clone(),
        source,
        frame_len,
        read_size: ((frame_len as usize) * args.depth as usize).clamp(4 << 10, 64 << 10),
        deadline,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in conns {
        match stream {
            RawStream::Tcp(s) => tasks.spawn(drive(i, s, plan.clone())),
            RawStream::Tls(s) => tasks.spawn(drive(i, s, plan.clone())),
        };
    }
    let (total, elapsed, cpu) = collect(&mut tasks, deadline, &window, &args, &shared).await;
    progress.finish().await;
    Ok(shared.summary(&args, total.counts(connected, elapsed), cpu))
}

/// Drive connection `i` until the deadline or its quota; its counts and
/// when it stopped.
async fn drive<S>(i: usize, stream: S, plan: Arc<Plan>) -> (ConnCounts, Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (args, shared) = (&plan.args, &plan.shared);
    let depth = u64::from(args.depth);
    let quota = args.quota(i);
    let (allowed, owed) = match quota {
        Some(q) => (q - depth.min(q), depth.min(q)),
        None => (u64::MAX, depth),
    };
    let mut conn = RawConn {
        stream,
        source: plan.source.clone(),
        frame_len: plan.frame_len,
        size: args.size as u64,
        allowed,
        quota,
        owed,
        to_write: 0,
        written: 0,
        unflushed: false,
        read_total: 0,
        inflight: VecDeque::with_capacity(depth as usize),
        buf: vec![0u8; plan.read_size].into_boxed_slice(),
        counts: ConnCounts::default(),
        latencies: LocalLatencies::new(&shared.latencies, i),
        progress: &shared.progress,
    };
    let result = if quota == Some(0) {
        Some(Ok(()))
    } else {
        let drive = std::future::poll_fn(|cx| conn.poll_drive(cx));
        match plan.deadline {
            Some(d) => tokio::select! {
                r = drive => Some(r),
                _ = tokio::time::sleep_until(d.into()) => None,
            },
            None => Some(drive.await),
        }
    };
    let done_at = Instant::now();
    if let Some(Err(e)) = result {
        shared.errors.record(e.to_string());
    }
    // TLS sends close_notify, which can wait on a full socket: bounded.
    let _ = tokio::time::timeout(args.close_timeout, conn.stream.shutdown()).await;
    (conn.counts, done_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::proto::{Config, Connection, Event, Message, Role};

    #[test]
    fn pre_encoded_frames_decode_as_client_messages() {
        for (size, text) in [(0, false), (20, true), (200, false), (70_000, true)] {
            let frame = encode_frame(size, text);
            let mut server = Connection::new(Role::Server, Config::default());
            server.receive(&frame);
            server.receive(&frame);
            for _ in 0..2 {
                match server.poll_event().unwrap() {
                    Some(Event::Message(Message::Binary(b))) if !text => assert_eq!(b.len(), size),
                    Some(Event::Message(Message::Text(t))) if text => assert_eq!(t.len(), size),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    /// The stream `--raw-mask` writes, staged in pieces of `piece` bytes
    /// (cutting headers and payloads anywhere), is a valid run of client
    /// frames, each under a key of its own.
    #[test]
    fn masked_stream_staged_in_any_pieces_decodes_as_client_messages() {
        for (size, text, piece) in [
            (20, true, 7),
            (20, false, 22),
            (300, false, 1),
            (70_000, true, 4093),
        ] {
            let mut m = Masker::new(size, text);
            let frames = 5u64;
            let total = frames * m.frame_len();
            let (mut stream, mut pos) = (Vec::new(), 0u64);
            while pos < total {
                let n = piece.min((total - pos) as usize);
                m.stage(pos, n);
                assert_eq!(m.unwritten().len(), n);
                stream.extend_from_slice(m.unwritten());
                pos += n as u64;
            }
            let frame_len = m.frame_len() as usize;
            let keys: std::collections::HashSet<_> = stream
                .chunks(frame_len)
                .map(|f| f[frame_len - size - 4..frame_len - size].to_vec())
                .collect();
            assert_eq!(keys.len(), frames as usize, "one fresh key per frame");
            let mut server = Connection::new(Role::Server, Config::default());
            server.receive(&stream);
            for _ in 0..frames {
                match server.poll_event().unwrap() {
                    Some(Event::Message(Message::Binary(b))) if !text => {
                        assert!(b.iter().enumerate().all(|(i, &x)| x == i as u8))
                    }
                    Some(Event::Message(Message::Text(t))) if text => {
                        assert!(t
                            .bytes()
                            .enumerate()
                            .all(|(i, x)| x == b'a' + (i % 26) as u8))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(server.poll_event().unwrap(), None);
        }
    }

    #[test]
    fn tls_targets_are_told_from_plain_ones() {
        assert_eq!(
            tls_host("tls://localhost:9000").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            tls_host("wss://127.0.0.1:9000/echo").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(tls_host("tls://[::1]:9000").as_deref(), Some("::1"));
        assert_eq!(tls_host("127.0.0.1:9000"), None);
        assert_eq!(tls_host("tcp://127.0.0.1:9000"), None);
        assert_eq!(tls_host("ws://127.0.0.1:9000/"), None);
    }

    /// Raw TLS mode: every frame goes through TLS to a TLS echo server and
    /// every echo is counted, for small pipelined frames and large ones.
    #[tokio::test]
    async fn raw_tls_mode_counts_echoed_frames() {
        use clap::Parser;
        use tokio::io::AsyncReadExt;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: BenchArgs,
        }
        let pki = test_support::tls::Pki::new();
        let acceptor = pki.acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = tls.read(&mut buf).await {
                        if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let target = format!("tls://localhost:{port}");
        let ca = pki.path("ca.pem");
        for (size, depth, n) in [("1K", "5", 301u64), ("100K", "1", 20)] {
            let t = T::parse_from([
                "t",
                "--raw-tcp",
                &target,
                "--cacert",
                ca.to_str().unwrap(),
                "-c",
                "3",
                "-d",
                depth,
                "-s",
                size,
                "-n",
                &n.to_string(),
            ]);
            assert_eq!(t.a.mode(), "raw-tls");
            super::super::init_tls(&t.a).unwrap();
            let s = run(Arc::new(t.a)).await.unwrap();
            let json = serde_json::to_value(&s).unwrap();
            assert_eq!(json["errors"], 0, "{json:#}");
            assert_eq!(json["connected"], 3, "{json:#}");
            assert_eq!(json["messages_received"], n, "{json:#}");
        }
    }

    #[test]
    fn socket_address_is_taken_from_any_url_form() {
        assert_eq!(socket_addr("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(socket_addr("tcp://127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(socket_addr("ws://127.0.0.1:9000/echo"), "127.0.0.1:9000");
    }
}
