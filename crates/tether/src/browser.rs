//! The browser's `WebSocket` object, in Rust: [`BrowserSocket`].
//!
//! This follows the WHATWG WebSockets standard (the living standard behind
//! `new WebSocket(url, protocols)`) so that code ported from JavaScript, or
//! tests that must behave like a browser, get the same answers:
//!
//! * **Constructor** ([`BrowserSocket::open`]): the URL is parsed with the
//!   URL standard, `http`/`https` map to `ws`/`wss`, other schemes and any
//!   fragment are a `SyntaxError`; every protocol must be an HTTP token and
//!   none may repeat (case-sensitively), else `SyntaxError`. Connecting
//!   happens in the background: the state starts as `CONNECTING`.
//! * **States** ([`ReadyState`]): `CONNECTING` (0) → `OPEN` (1) → `CLOSING`
//!   (2) → `CLOSED` (3), or `CONNECTING` → `CLOSED` when the connection
//!   fails.
//! * **`send()`**: `InvalidStateError` while `CONNECTING`; when `OPEN` the
//!   data is queued and `bufferedAmount` grows by its size until it has been
//!   written to the socket; when `CLOSING`/`CLOSED` the data is discarded
//!   but `bufferedAmount` still grows (as the standard says, so scripts can
//!   notice they are sending into the void).
//! * **`close(code, reason)`**: the code must be 1000 or 3000–4999
//!   (`InvalidAccessError`), the reason at most 123 bytes of UTF-8
//!   (`SyntaxError`); a reason without a code sends 1000. While
//!   `CONNECTING`, `close()` *fails the connection*; when already
//!   `CLOSING`/`CLOSED` it does nothing.
//! * **Events** ([`BrowserEvent`]): `open`, then `message`s (only while
//!   `OPEN`: messages arriving after `close()` was called are dropped, as in
//!   the standard), then — if the connection *failed* (handshake refused,
//!   protocol error, transport lost without a Close frame) — `error`, and
//!   always exactly one `close` last.
//! * **The close event** ([`CloseEvent`]): `code` is the code of the Close
//!   frame received from the server, 1005 if it had none, 1006 if none was
//!   received (abnormal closure, including after a protocol error: as in
//!   browsers, the script does not learn the internal reason); `reason` is
//!   the server's; `was_clean` is true only when the closing handshake
//!   completed and the transport closed in order.
//! * **Closing handshake timeout**: the client waits `close_timeout` (see
//!   [`WebSocketConfig`](crate::WebSocketConfig)) for the server's Close
//!   and its TCP close; then the connection is closed uncleanly.
//! * **Dropping** an open socket starts the closing handshake with no status
//!   code, like a garbage-collected browser `WebSocket`.
//!
//! [`BrowserPolicy::browser_like`] adds the user agent's own safety rules:
//! the Fetch standard's *bad ports* (e.g. 25, 6667) fail the connection
//! before any byte is sent, and at most one connection per host may be
//! `CONNECTING` at a time (RFC 6455 §4.1 step 2; keyed by host name here,
//! since the address may be a proxy's).

use crate::client::ClientBuilder;
use crate::error::Error;
use crate::message::Message;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tether_proto::close::MAX_REASON_LEN;
use tether_proto::handshake::{is_token, parse_target};
use tether_proto::{CloseCode, CloseFrame, Utf8Bytes};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The Fetch standard's bad ports: a user agent never connects to these,
/// because a WebSocket (or any fetch) aimed at them could be used to talk
/// to SMTP, IRC, and similar line-based services.
pub const BAD_PORTS: &[u16] = &[
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
    103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
    512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
    995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
    6669, 6679, 6697, 10080,
];

/// `readyState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ReadyState {
    /// 0: the connection is not yet open.
    Connecting = 0,
    /// 1: open; messages can be sent and received.
    Open = 1,
    /// 2: the closing handshake has started.
    Closing = 2,
    /// 3: closed, or could not be opened.
    Closed = 3,
}

impl ReadyState {
    fn from_u8(v: u8) -> ReadyState {
        match v {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }
}

/// The `DOMException`s the browser API throws, with the rule broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrowserError {
    /// `SyntaxError`: a bad URL, protocol list, or close reason.
    #[error("SyntaxError: {0}")]
    Syntax(String),
    /// `InvalidAccessError`: a close code scripts may not send.
    #[error("InvalidAccessError: {0}")]
    InvalidAccess(String),
    /// `InvalidStateError`: `send()` while `CONNECTING`.
    #[error("InvalidStateError: {0}")]
    InvalidState(String),
}

/// The `close` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The server's close code; 1005 if its Close had none, 1006 if no
    /// Close frame was received.
    pub code: u16,
    /// The server's close reason (empty if none).
    pub reason: String,
    /// Whether the closing handshake completed cleanly.
    pub was_clean: bool,
}

/// What a [`BrowserSocket`] reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowserEvent {
    /// `open`: the handshake succeeded.
    Open {
        /// The subprotocol the server selected (`""` if none).
        protocol: String,
        /// The extensions the server accepted (the raw header value).
        extensions: String,
    },
    /// `message`: a text or binary message.
    Message(Message),
    /// `error`: the connection failed (no details, as in the browser; see
    /// [`BrowserSocket::failure`] for them).
    Error,
    /// `close`: always the last event.
    Close(CloseEvent),
}

/// The user agent's own rules, beyond the protocol (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrowserPolicy {
    /// Refuse the Fetch standard's [`BAD_PORTS`].
    pub block_bad_ports: bool,
    /// Allow at most one `CONNECTING` connection per host at a time.
    pub one_connecting_per_host: bool,
}

impl BrowserPolicy {
    /// Both rules on, as in a browser.
    pub fn browser_like() -> Self {
        BrowserPolicy {
            block_bad_ports: true,
            one_connecting_per_host: true,
        }
    }
}

enum Command {
    Send(Message, usize),
    Close(Option<CloseFrame>),
}

struct Shared {
    state: AtomicU8,
    buffered: AtomicUsize,
    protocol: Mutex<String>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn state(&self) -> ReadyState {
        ReadyState::from_u8(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: ReadyState) {
        self.state.store(s as u8, Ordering::Release);
    }
    fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(why);
    }
}

/// A WebSocket with the browser's API and rules (see the module docs).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tether::browser::{BrowserEvent, BrowserSocket};
/// let mut ws = BrowserSocket::new("ws://127.0.0.1:8080/echo", &["chat"])?;
/// while let Some(event) = ws.next_event().await {
///     match event {
///         BrowserEvent::Open { .. } => ws.send_text("hello")?,
///         BrowserEvent::Message(m) => { println!("{m:?}"); ws.close(Some(1000), "bye")?; }
///         BrowserEvent::Error => eprintln!("error: {:?}", ws.failure()),
///         BrowserEvent::Close(c) => println!("closed {} clean={}", c.code, c.was_clean),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct BrowserSocket {
    url: String,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<BrowserEvent>,
}

impl std::fmt::Debug for BrowserSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSocket")
            .field("url", &self.url)
            .field("ready_state", &self.ready_state())
            .field("buffered_amount", &self.buffered_amount())
            .finish()
    }
}

impl BrowserSocket {
    /// `new WebSocket(url, protocols)` with the default (protocol-only)
    /// policy. Must be called within a tokio runtime.
    pub fn new(url: &str, protocols: &[&str]) -> Result<BrowserSocket, BrowserError> {
        let mut builder = ClientBuilder::new(url);
        for p in protocols {
            builder = builder.protocol(*p);
        }
        Self::open(builder, BrowserPolicy::default())
    }

    /// Open with a configured client (origin, headers, TLS, proxy, the
    /// protocols added with [`ClientBuilder::protocol`]) and a policy.
    pub fn open(
        builder: ClientBuilder,
        policy: BrowserPolicy,
    ) -> Result<BrowserSocket, BrowserError> {
        let target =
            parse_target(builder.url()).map_err(|e| BrowserError::Syntax(e.to_string()))?;
        let protocols = builder.offered_protocols();
        for (i, p) in protocols.iter().enumerate() {
            if !is_token(p) {
                return Err(BrowserError::Syntax(format!(
                    "protocol {p:?} is not a valid token (RFC 7230 tchar only, non-empty)"
                )));
            }
            if protocols[..i].contains(p) {
                return Err(BrowserError::Syntax(format!(
                    "protocol {p:?} appears more than once"
                )));
            }
        }
        let shared = Arc::new(Shared {
            state: AtomicU8::new(ReadyState::Connecting as u8),
            buffered: AtomicUsize::new(0),
            protocol: Mutex::new(String::new()),
            failure: Mutex::new(None),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let url = builder.url().to_owned();
        tokio::spawn(run(
            builder,
            target.host.to_ascii_lowercase(),
            target.port,
            policy,
            shared.clone(),
            cmd_rx,
            ev_tx,
        ));
        Ok(BrowserSocket {
            url,
            shared,
            commands: cmd_tx,
            events: ev_rx,
        })
    }

    /// `url`, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `readyState`.
    pub fn ready_state(&self) -> ReadyState {
        self.shared.state()
    }

    /// `bufferedAmount`: bytes of application data passed to `send` and not
    /// yet written to the network (never decreasing once `CLOSING`).
    pub fn buffered_amount(&self) -> usize {
        self.shared.buffered.load(Ordering::Acquire)
    }

    /// `protocol`: the selected subprotocol, `""` until open or if none.
    pub fn protocol(&self) -> String {
        self.shared
            .protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the connection failed, if it did (what the browser only logs to
    /// the console).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `send(string)`.
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), BrowserError> {
        self.send(Message::Text(text.into()))
    }

    /// `send(ArrayBuffer)`.
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), BrowserError> {
        self.send(Message::Binary(data.into()))
    }

    /// `send(data)`, for a text or binary message (control frames are not
    /// the script's business: they are `InvalidAccessError`).
    pub fn send(&self, msg: Message) -> Result<(), BrowserError> {
        if !msg.is_data() {
            return Err(BrowserError::InvalidAccess(
                "only text and binary messages can be sent".into(),
            ));
        }
        let len = msg.len();
        match self.ready_state() {
            ReadyState::Connecting => Err(BrowserError::InvalidState(
                "send() while the connection is still CONNECTING".into(),
            )),
            ReadyState::Open => {
                self.shared.buffered.fetch_add(len, Ordering::AcqRel);
                if self.commands.send(Command::Send(msg, len)).is_err() {
                    // The connection task already ended: nothing will be sent.
                    return Ok(());
                }
                Ok(())
            }
            ReadyState::Closing | ReadyState::Closed => {
                self.shared.buffered.fetch_add(len, Ordering::AcqRel);
                Ok(())
            }
        }
    }

    /// `close(code, reason)` (see the module docs for the rules).
    pub fn close(&self, code: Option<u16>, reason: &str) -> Result<(), BrowserError> {
        if let Some(c) = code {
            if c != 1000 && !(3000..=4999).contains(&c) {
                return Err(BrowserError::InvalidAccess(format!(
                    "close code {c} is neither 1000 nor in 3000-4999"
                )));
            }
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(BrowserError::Syntax(format!(
                "close reason is {} bytes of UTF-8; at most {MAX_REASON_LEN} fit in a Close frame",
                reason.len()
            )));
        }
        let frame = match (code, reason.is_empty()) {
            (None, true) => None,
            (code, _) => Some(CloseFrame::new(
                CloseCode(code.unwrap_or(1000)),
                reason.to_owned(),
            )),
        };
        loop {
            let state = self.shared.state.load(Ordering::Acquire);
            if state >= ReadyState::Closing as u8 {
                return Ok(());
            }
            if self
                .shared
                .state
                .compare_exchange(
                    state,
                    ReadyState::Closing as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                let _ = self.commands.send(Command::Close(frame));
                return Ok(());
            }
        }
    }

    /// The next event; `None` after the `close` event.
    pub async fn next_event(&mut self) -> Option<BrowserEvent> {
        self.events.recv().await
    }
}

/// Hosts with a connection in `CONNECTING`, for the one-per-host rule.
fn connecting_gate(host: &str) -> Arc<Semaphore> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let mut gates = GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Forget hosts nobody is connecting to, so the map stays small.
    gates.retain(|_, s| Arc::strong_count(s) > 1);
    gates
        .entry(host.to_owned())
        .or_insert_with(|| Arc::new(Semaphore::new(1)))
        .clone()
}

async fn run(
    builder: ClientBuilder,
    host: String,
    port: u16,
    policy: BrowserPolicy,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<BrowserEvent>,
) {
    let failed = |why: String| {
        shared.fail(why);
        shared.set_state(ReadyState::Closed);
        let _ = events.send(BrowserEvent::Error);
        let _ = events.send(BrowserEvent::Close(CloseEvent {
            code: 1006,
            reason: String::new(),
            was_clean: false,
        }));
    };
    if policy.block_bad_ports && BAD_PORTS.contains(&port) {
        return failed(format!("port {port} is a bad port (Fetch standard)"));
    }
    // CONNECTING: wait for our turn on this host, then connect; close() or
    // dropping the socket meanwhile fails the connection.
    let connecting = async {
        let _permit: Option<OwnedSemaphorePermit> = if policy.one_connecting_per_host {
            connecting_gate(&host).acquire_owned().await.ok()
        } else {
            None
        };
        builder.connect().await
    };
    let (mut ws, response) = tokio::select! {
        r = connecting => match r {
            Ok(ok) => ok,
            Err(e) => return failed(e.to_string()),
        },
        _ = wait_for_close(&mut commands) => {
            return failed("close() was called before the connection opened".into());
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let protocol = header("sec-websocket-protocol");
    // close() may have raced with the handshake: it fails the connection
    // while CONNECTING, so there is no open event then.
    if shared
        .state
        .compare_exchange(
            ReadyState::Connecting as u8,
            ReadyState::Open as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        drop(ws);
        return failed("close() was called before the connection opened".into());
    }
    *shared.protocol.lock().unwrap_or_else(|e| e.into_inner()) = protocol.clone();
    let _ = events.send(BrowserEvent::Open {
        protocol,
        extensions: header("sec-websocket-extensions"),
    });

    let mut peer_close: Option<Option<CloseFrame>> = None;
    let mut error: Option<Error> = None;
    let mut commands_open = true;
    loop {
        tokio::select! {
            item = ws.recv() => match item {
                None => break,
                Some(Ok(Message::Close(frame))) => {
                    shared.set_state(ReadyState::Closing);
                    peer_close = Some(frame);
                }
                Some(Ok(m)) if m.is_data() => {
                    if shared.state() == ReadyState::Open {
                        let _ = events.send(BrowserEvent::Message(m));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    error = Some(e);
                }
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Command::Send(msg, len)) => {
                    // Queued while OPEN, so it counts until written.
                    let result = ws.send(msg).await;
                    shared.buffered.fetch_sub(len, Ordering::AcqRel);
                    if let Err(e) = result {
                        error.get_or_insert(e);
                    }
                }
                Some(Command::Close(frame)) => {
                    if let Err(e) = ws.send(Message::Close(frame)).await {
                        error.get_or_insert(e);
                    }
                }
                None => {
                    // Dropped: "garbage collected" while open.
                    commands_open = false;
                    if shared.state() == ReadyState::Open {
                        shared.set_state(ReadyState::Closing);
                        let _ = ws.send(Message::Close(None)).await;
                    }
                }
            },
        }
    }
    shared.set_state(ReadyState::Closed);
    let event = match (peer_close, error) {
        (Some(frame), None) => CloseEvent {
            code: frame.as_ref().map_or(1005, |f| f.code.as_u16()),
            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            was_clean: true,
        },
        (Some(frame), Some(e)) => {
            shared.fail(e.to_string());
            CloseEvent {
                code: frame.as_ref().map_or(1005, |f| f.code.as_u16()),
                reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                was_clean: false,
            }
        }
        (None, e) => {
            shared.fail(e.map_or_else(
                || "the connection ended without a Close frame".to_owned(),
                |e| e.to_string(),
            ));
            let _ = events.send(BrowserEvent::Error);
            CloseEvent {
                code: 1006,
                reason: String::new(),
                was_clean: false,
            }
        }
    };
    let _ = events.send(BrowserEvent::Close(event));
}

/// Resolves when a Close command arrives or the socket is dropped (Send
/// cannot be queued while `CONNECTING`).
async fn wait_for_close(commands: &mut mpsc::UnboundedReceiver<Command>) {
    loop {
        match commands.recv().await {
            Some(Command::Close(_)) | None => return,
            Some(Command::Send(..)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn constructor_rejects_bad_urls_and_protocols() {
        let syntax =
            |r: Result<BrowserSocket, BrowserError>| matches!(r, Err(BrowserError::Syntax(_)));
        assert!(syntax(BrowserSocket::new("ws://h/#frag", &[])));
        assert!(syntax(BrowserSocket::new("ftp://h/", &[])));
        assert!(syntax(BrowserSocket::new("/relative", &[])));
        assert!(syntax(BrowserSocket::new("ws://h/", &["a b"])));
        assert!(syntax(BrowserSocket::new("ws://h/", &[""])));
        assert!(syntax(BrowserSocket::new("ws://h/", &["chat", "chat"])));
        // Case-sensitive: these differ.
        assert!(BrowserSocket::new("ws://127.0.0.1:9/", &["chat", "Chat"]).is_ok());
    }
}
