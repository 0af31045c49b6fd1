//! HTTP/2 connections of a listener with `http2 = true` (ALPN `h2` over
//! TLS, prior knowledge in cleartext), served by hyper's HTTP/2 server.
//!
//! Each request stream is answered like its HTTP/1.1 twin: the `Host`
//! check (`:authority`), then plain requests through [`http::answer`] (the
//! same function as HTTP/1.1), event streams through [`sse`], and
//! WebSockets through the extended CONNECT ([`upgrade_h2`], RFC 8441), which
//! meets the same [`policy::admit`] and runs the same session code.
//!
//! Streams and flow control come from `[http2]` (`Http2Settings`): by
//! default every stream may have 128 KiB in flight towards the server and
//! the connection every stream's window, so a stream whose session stops
//! reading holds its own window and never the others'. hyper's defaults against rapid resets (a client
//! resetting streams faster than they are accepted: RUSTSEC-2024-0003,
//! CVE-2023-44487) stay on, stated here. Shutdown: the sessions close with
//! 1001 over their streams, then the connection gets a GOAWAY. A
//! connection with no request and no session open for `handshake_timeout`
//! gets a GOAWAY too, as an idle HTTP/1.1 keep-alive connection is closed.

use super::body::ResponseBody;
use super::http::{self, BodyRead, RequestBody};
use super::policy::{self, host};
use super::proxy_addr;
use super::shutdown::wait_shutdown;
use super::sse;
use super::state::{ActiveGuard, State};
use super::transport::Conn;
use super::upgrade_h2;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http2::Builder;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tracing::debug;

/// Streams a client may reset before the server accepted them; more is a
/// rapid-reset attack and ends the connection (hyper's default).
const MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for the client's protocol errors before it
/// ends the connection (hyper's default).
const MAX_ERROR_RESETS: usize = 1024;

/// How a client starts HTTP/2 by prior knowledge (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection starts with the HTTP/2 preface; what was read
/// is pushed back, so HTTP/1.1 reads the same bytes. Only as many bytes
/// as still match are read. `None`: the client sent nothing within
/// `timeout`, or the connection failed.
pub async fn starts_with_preface(conn: &mut Conn, timeout: Duration) -> Option<bool> {
    let mut seen = BytesMut::with_capacity(PREFACE.len());
    let read = async {
        while seen.len() < PREFACE.len() {
            let mut piece = [0u8; PREFACE.len()];
            let want = PREFACE.len() - seen.len();
            let n = conn.read(&mut piece[..want]).await.ok()?;
            seen.extend_from_slice(&piece[..n]);
            if n == 0 || !PREFACE.starts_with(&seen) {
                return Some(false);
            }
        }
        Some(true)
    };
    let found = tokio::time::timeout(timeout, read).await.ok().flatten();
    conn.unread(seen);
    found
}

/// What the streams of one HTTP/2 connection are served with.
pub struct Http2Conn {
    /// The configuration generation the connection started with.
    pub state: Arc<State>,
    /// Its listener (`listen[N]`).
    pub listener: usize,
    /// The TCP peer (or the PROXY protocol's client).
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The local address of the connection.
    pub local: SocketAddr,
    /// WebSocket and event-stream sessions open on it.
    sessions: AtomicUsize,
    /// Requests being answered (their service futures).
    requests: AtomicUsize,
    /// When it was last busy: milliseconds after `opened`.
    last_busy: AtomicU64,
    opened: Instant,
}

impl Http2Conn {
    /// A WebSocket or event stream opened on the connection.
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::AcqRel);
    }

    /// A session of [`session_opened`](Self::session_opened) ended.
    pub fn session_closed(&self) {
        self.busy();
        self.sessions.fetch_sub(1, Ordering::AcqRel);
    }

    /// Note that the connection is busy now.
    fn busy(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_busy.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long it has had no request and no session open.
    fn idle_for(&self) -> Duration {
        if self.requests.load(Ordering::Acquire) > 0 || self.sessions.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_busy.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// Counts a request as being answered for as long as it lives.
struct Answering<'a>(&'a Http2Conn);

impl<'a> Answering<'a> {
    fn enter(conn: &'a Http2Conn) -> Answering<'a> {
        conn.requests.fetch_add(1, Ordering::AcqRel);
        conn.busy();
        Answering(conn)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.busy();
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve an HTTP/2 connection until it ends, or until shutdown has closed
/// its sessions and sent GOAWAY.
pub async fn serve(state: Arc<State>, listener: usize, conn: Conn, peer: SocketAddr, tls: bool) {
    state
        .metrics
        .http2_connections
        .fetch_add(1, Ordering::Relaxed);
    let local = conn
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let limits = &state.config.limits;
    let settings = state.config.http2;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_send_buf_size(settings.send_buffer)
        .max_frame_size(settings.max_frame_size())
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.ping_interval)
        .keep_alive_timeout(limits.idle_timeout);
    let shutdown_timeout = limits.shutdown_timeout;
    let idle_limit = limits.handshake_timeout;
    let ctx = Arc::new(Http2Conn {
        state: state.clone(),
        listener,
        peer,
        tls,
        local,
        sessions: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
        last_busy: AtomicU64::new(0),
        opened: Instant::now(),
    });
    let service = {
        let ctx = ctx.clone();
        service_fn(move |req| {
            let ctx = ctx.clone();
            async move {
                let _answering = Answering::enter(&ctx);
                Ok::<_, Infallible>(respond(ctx.clone(), req).await)
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(connection);
    // Counted until its GOAWAY is out: the process waits for it.
    let _active = ActiveGuard::enter(&state.active);
    let mut shutdown = state.shutdown.clone();
    // Like an HTTP/1.1 keep-alive connection waiting for its next request,
    // a connection with nothing open is closed after `handshake_timeout`.
    let idle = async {
        loop {
            let idle_for = ctx.idle_for();
            if idle_for >= idle_limit {
                break;
            }
            tokio::time::sleep(idle_limit - idle_for).await;
        }
    };
    tokio::select! {
        ended = connection.as_mut() => {
            if let Err(e) = ended {
                debug!(%peer, "HTTP/2 connection ended: {e}");
            }
            return;
        }
        _ = idle => {
            debug!(%peer, "idle HTTP/2 connection: GOAWAY");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(idle_limit, connection).await;
            return;
        }
        _ = wait_shutdown(&mut shutdown) => {}
    }
    // The sessions heard the same signal: their 1001 Closes go out over
    // this connection, which keeps being driven until they are done.
    let deadline = Instant::now() + shutdown_timeout;
    let drained = async {
        while ctx.sessions.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = drained => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
}

/// Answer one request stream.
async fn respond(
    ctx: Arc<Http2Conn>,
    req: ::http::Request<Incoming>,
) -> ::http::Response<ResponseBody> {
    let state = &*ctx.state;
    let (parts, body) = req.into_parts();
    // `:authority` stands in for `Host` (RFC 9113 §8.3.1).
    let host = match parts.uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => parts
            .headers
            .get(::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned(),
    };
    let listener = &state.config.listeners[ctx.listener];
    let client =
        proxy_addr::client_of(&listener.trusted_proxies, ctx.peer, ctx.tls, &parts.headers);
    if let Err(refused) = policy::check_host(state, ctx.listener, &host) {
        refused.record(&state.metrics, "request", client.addr, parts.uri.path());
        return http::Response::refused(&refused).into_http(false);
    }
    if parts.method == ::http::Method::CONNECT {
        return upgrade_h2::open(ctx.clone(), parts, client, host).await;
    }
    let mut head = ::http::Request::new(());
    *head.method_mut() = parts.method;
    *head.uri_mut() = parts.uri;
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers;
    let (name, _) = host::split_host(&host);
    let routes = state.config.routes_for(&name);
    if let Some((route, events)) = sse::route_for(routes, head.uri().path()) {
        return sse::serve_http2(&ctx, head, &host, route, events, client);
    }
    let head_only = head.method() == ::http::Method::HEAD;
    let declared = head
        .headers()
        .get(::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut body = Http2Body {
        body,
        declared,
        timeout: state.config.limits.handshake_timeout,
    };
    match http::answer(state, &head, &mut body, routes).await {
        Some(resp) => resp.into_http(head_only),
        // The body did not arrive in time.
        None => http::Response::text(
            ::http::StatusCode::REQUEST_TIMEOUT,
            "request body timed out\n",
        )
        .into_http(false),
    }
}

/// The body of an HTTP/2 request: its DATA frames, however many, up to
/// the limit (a `Content-Length` is optional and, if sent, checked first).
struct Http2Body {
    body: Incoming,
    declared: Option<u64>,
    timeout: Duration,
}

impl RequestBody for Http2Body {
    fn read(&mut self, max: usize) -> Pin<Box<dyn Future<Output = BodyRead> + Send + '_>> {
        Box::pin(async move {
            if self.declared.is_some_and(|n| n > max as u64) {
                return BodyRead::TooLarge;
            }
            let mut out = Vec::new();
            let read = async {
                while let Some(frame) = self.body.frame().await {
                    let Ok(frame) = frame else {
                        return BodyRead::Failed;
                    };
                    if let Some(data) = frame.data_ref() {
                        if out.len() + data.len() > max {
                            return BodyRead::TooLarge;
                        }
                        out.extend_from_slice(data);
                    }
                }
                BodyRead::Read(std::mem::take(&mut out))
            };
            tokio::time::timeout(self.timeout, read)
                .await
                .unwrap_or(BodyRead::Failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::transport::Transport;
    use tokio::io::AsyncWriteExt;

    /// The server's end of a loopback connection whose client sent `sent`.
    async fn conn_with(sent: &[u8]) -> (Conn, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(sent).await.unwrap();
        (Conn::new(Transport::Plain(server)), client)
    }

    #[tokio::test]
    async fn the_preface_is_found_and_http11_is_left_as_it_was_sent() {
        let t = Duration::from_secs(5);
        let (mut conn, _client) = conn_with(PREFACE).await;
        assert_eq!(starts_with_preface(&mut conn, t).await, Some(true));
        // A request starting with the preface's first letter.
        let request = b"POST /api/publish HTTP/1.1\r\nHost: x\r\n\r\n";
        let (mut conn, _client) = conn_with(request).await;
        assert_eq!(starts_with_preface(&mut conn, t).await, Some(false));
        let mut again = vec![0u8; request.len()];
        conn.read_exact(&mut again).await.unwrap();
        assert_eq!(&again[..], &request[..]);
        // A client that closes at once.
        let (mut conn, client) = conn_with(b"PRI").await;
        drop(client);
        assert_eq!(starts_with_preface(&mut conn, t).await, Some(false));
    }
}
