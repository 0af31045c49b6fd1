//! Connected pairs over TCP and in-memory pipes, a frame builder, and a
//! "raw" peer that speaks bytes directly so tests can send what no
//! conforming endpoint would.

use bytes::{Buf, BytesMut};
use tether::proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use tether::proto::handshake::accept_key;
use tether::{ClientBuilder, MaybeTlsStream, ServerBuilder, WebSocket, WebSocketConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};

/// The RFC 6455 §1.3 sample key and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A complete, valid client handshake request using [`KEY`].
pub const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Capacity of in-memory pipes (bytes buffered per direction).
pub const PIPE: usize = 64 * 1024;

/// A server and a client connected over real TCP on 127.0.0.1.
pub async fn tcp_pair(
    server: ServerBuilder,
    client: impl FnOnce(String) -> ClientBuilder,
) -> (
    WebSocket<TcpStream>,
    WebSocket<MaybeTlsStream>,
    http::Response<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    let accept = async {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.expect("server handshake")
    };
    let (server, (client, response)) = tokio::join!(accept, async {
        client(url).connect().await.expect("client handshake")
    });
    (server, client, response)
}

/// A server and a client with default settings over TCP.
pub async fn default_tcp_pair() -> (WebSocket<TcpStream>, WebSocket<MaybeTlsStream>) {
    let (s, c, _) = tcp_pair(ServerBuilder::new(), ClientBuilder::new).await;
    (s, c)
}

/// A server and a client over an in-memory pipe (works with paused time).
pub async fn duplex_pair(
    server_config: WebSocketConfig,
    client_config: WebSocketConfig,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(PIPE);
    let server = ServerBuilder::new().config(server_config);
    let client = ClientBuilder::new("ws://localhost/chat").config(client_config);
    let (s, c) = tokio::join!(server.accept(b), client.connect_on(a));
    (s.expect("server handshake"), c.expect("client handshake").0)
}

/// A tether server whose client is the raw pipe end returned: the handshake
/// is done by hand, and the response head has been read off the pipe.
pub async fn server_with_raw_client(
    config: WebSocketConfig,
) -> (WebSocket<DuplexStream>, RawPeer<DuplexStream>) {
    let (a, b) = tokio::io::duplex(PIPE);
    let server = ServerBuilder::new().config(config);
    let mut raw = RawPeer::new(a, true);
    let (ws, head) = tokio::join!(server.accept(b), async {
        raw.io.write_all(REQUEST).await.unwrap();
        raw.read_head().await
    });
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (ws.expect("server handshake"), raw)
}

/// A tether client whose server is the raw pipe end returned: the raw side
/// read the request and answered 101 by hand.
pub async fn client_with_raw_server(
    config: WebSocketConfig,
) -> (WebSocket<DuplexStream>, RawPeer<DuplexStream>) {
    let (a, b) = tokio::io::duplex(PIPE);
    let client = ClientBuilder::new("ws://localhost/chat").config(config);
    let mut raw = RawPeer::new(b, false);
    let (ws, ()) = tokio::join!(client.connect_on(a), async {
        let head = raw.read_head().await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("request carries a key")
            .trim()
            .to_owned();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        raw.io.write_all(response.as_bytes()).await.unwrap();
    });
    (ws.expect("client handshake").0, raw)
}

/// One frame as the raw peer saw it, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: OpCode,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The status code of a Close frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OpCode::Close);
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A peer that writes and reads raw bytes.
pub struct RawPeer<S> {
    pub io: S,
    /// Mask what it sends (it plays a client).
    pub mask: bool,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawPeer<S> {
    pub fn new(io: S, mask: bool) -> Self {
        RawPeer {
            io,
            mask,
            buf: BytesMut::new(),
        }
    }

    /// Read an HTTP head (up to the empty line); keeps what follows.
    pub async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.buf.split_to(end + 4);
                return String::from_utf8(head.to_vec()).expect("ASCII head");
            }
            let n = self.io.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "EOF before the end of the head: {:?}", self.buf);
        }
    }

    /// Encode a frame the way this peer would send it.
    pub fn encode(&self, fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        encode_frame(
            fin,
            0,
            opcode,
            self.mask.then_some([0x37, 0xfa, 0x21, 0x3d]),
            payload,
        )
    }

    /// Send one frame.
    pub async fn send(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let bytes = self.encode(fin, opcode, payload);
        self.io.write_all(&bytes).await.unwrap();
    }

    /// The next frame, or `None` at end of file.
    pub async fn recv(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((h, hlen)) = FrameHeader::decode(&self.buf).expect("valid frame header") {
                let total = hlen + h.payload_len as usize;
                if self.buf.len() >= total {
                    self.buf.advance(hlen);
                    let mut payload = self.buf.split_to(h.payload_len as usize).to_vec();
                    if let Some(key) = h.mask {
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= key[i % 4];
                        }
                    }
                    return Some(RawFrame {
                        fin: h.fin,
                        opcode: h.opcode,
                        masked: h.mask.is_some(),
                        payload,
                    });
                }
            }
            self.buf.reserve(4096);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "EOF inside a frame");
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    /// Frames until the first Close (inclusive); panics at EOF before one.
    pub async fn recv_until_close(&mut self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        loop {
            let f = self.recv().await.expect("EOF before a Close frame");
            let close = f.opcode == OpCode::Close;
            frames.push(f);
            if close {
                return frames;
            }
        }
    }

    /// True once the other side closed its end (EOF), discarding any data.
    pub async fn reaches_eof(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match self.io.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
}

/// Encode a frame with the given header fields.
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

/// A close payload: code then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Send `request` (a raw HTTP/1.1 head) to `addr` and return the response
/// head and whatever body arrives before the server closes or 5 s pass.
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        // A complete response with Content-Length: stop without waiting for close.
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A client for `url` that never uses a proxy from the environment.
pub fn client(url: String) -> ClientBuilder {
    ClientBuilder::new(url).no_proxy()
}
