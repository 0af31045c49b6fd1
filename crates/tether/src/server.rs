//! The server side of the opening handshake, with a policy hook.
//!
//! [`accept`] takes any stream and performs the handshake with default
//! settings. For policy (origin checks, subprotocol choice, authentication),
//! read the request first with [`ServerBuilder::read_request`], inspect the
//! [`Incoming`] request, then [`Incoming::accept`] or [`Incoming::reject`] it —
//! the decision may be async (a database lookup, say). [`ServerBuilder::accept_with`]
//! is the same with a synchronous callback.
//!
//! Malformed requests never get a silent drop: they are answered with the
//! status the RFC asks for (400, 426 with `Sec-WebSocket-Version: 13`, 431).

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::head::read_head;
use crate::origin::OriginPolicy;
use crate::socket::WebSocket;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tether_proto::handshake::{
    build_accept_response, build_reject_response, parse_request, validate_request, HandshakeError,
    UpgradeRequest,
};
use tether_proto::Role;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Accept a WebSocket connection on `stream` with default settings.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use futures_util::{SinkExt, StreamExt};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut ws = tether::accept(tcp).await?;
///         while let Some(msg) = ws.next().await {
///             let msg = msg?;
///             if msg.is_data() { ws.send(msg).await?; }
///         }
///         Ok::<_, tether::Error>(())
///     });
/// }
/// # }
/// ```
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ServerBuilder::new().accept(stream).await
}

/// Server-side settings and the entry points of the handshake.
#[derive(Clone, Debug, Default)]
pub struct ServerBuilder {
    config: WebSocketConfig,
}

impl ServerBuilder {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use these settings.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// The settings.
    pub fn get_config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// Accept any valid WebSocket request (no subprotocol, no policy).
    pub async fn accept<S>(&self, stream: S) -> Result<WebSocket<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Boxed so the caller's future does not carry the handshake's state
        // for the connection's whole life (idle memory per connection).
        let incoming = Box::pin(self.read_request(stream)).await?;
        Box::pin(incoming.accept(Accept::default())).await
    }

    /// Read the request and let `policy` decide.
    pub async fn accept_with<S, F>(&self, stream: S, policy: F) -> Result<WebSocket<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Incoming<S>) -> Result<Accept, Reject>,
    {
        let incoming = Box::pin(self.read_request(stream)).await?;
        match policy(&incoming) {
            Ok(a) => Box::pin(incoming.accept(a)).await,
            Err(r) => {
                let status = r.status;
                incoming.reject(r).await?;
                Err(Error::Rejected(status))
            }
        }
    }

    /// Read and validate the opening request, within the handshake timeout.
    /// An invalid request is answered with the matching HTTP error and
    /// returned as [`Error::Handshake`].
    pub async fn read_request<S>(&self, mut stream: S) -> Result<Incoming<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (request, leftover) = self.read_http_request(&mut stream).await?;
        Incoming::from_request(stream, request, leftover, self.config.clone()).await
    }

    /// Read any HTTP/1.1 request head (bounded in size and by the handshake
    /// timeout), for servers that answer plain HTTP on the same port. A
    /// malformed or oversized head is answered (400/431) and returned as an
    /// error. The returned buffer holds the bytes that followed the head.
    pub async fn read_http_request<S>(
        &self,
        stream: &mut S,
    ) -> Result<(http::Request<()>, BytesMut)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let timeout = self.config.handshake_timeout;
        let mut buf = BytesMut::new();
        let read = read_head(
            stream,
            &mut buf,
            &self.config.handshake_limits,
            parse_request,
        );
        match tokio::time::timeout(timeout, read).await {
            Err(_) => {
                let resp = build_reject_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &HeaderMap::new(),
                    b"handshake timed out\n",
                );
                let _ = stream.write_all(&resp).await;
                let _ = stream.shutdown().await;
                Err(Error::Timeout {
                    what: "opening handshake",
                    after: timeout,
                })
            }
            Ok(Err(Error::Handshake(e))) => {
                let _ = stream.write_all(&e.to_response()).await;
                let _ = stream.shutdown().await;
                Err(Error::Handshake(e))
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok(r)) => Ok((r, buf)),
        }
    }
}

/// A valid WebSocket upgrade request, waiting for the application's decision.
#[derive(Debug)]
pub struct Incoming<S> {
    stream: S,
    request: http::Request<()>,
    upgrade: UpgradeRequest,
    leftover: BytesMut,
    config: WebSocketConfig,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Incoming<S> {
    /// Validate a request read by [`ServerBuilder::read_http_request`] (or
    /// by any HTTP server). An invalid one is answered with the matching
    /// HTTP error (400, or 426 with `Sec-WebSocket-Version: 13`).
    pub async fn from_request(
        mut stream: S,
        request: http::Request<()>,
        leftover: BytesMut,
        config: WebSocketConfig,
    ) -> Result<Incoming<S>> {
        match validate_request(&request) {
            Ok(upgrade) => Ok(Incoming {
                stream,
                request,
                upgrade,
                leftover,
                config,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "refused opening handshake");
                let _ = stream.write_all(&e.to_response()).await;
                let _ = stream.shutdown().await;
                Err(Error::Handshake(e))
            }
        }
    }

    /// The HTTP request as received.
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The validated WebSocket fields (key, host, origin, subprotocols, extensions).
    pub fn upgrade(&self) -> &UpgradeRequest {
        &self.upgrade
    }

    /// The request path and query, as sent.
    pub fn path(&self) -> &str {
        &self.upgrade.path
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        &self.upgrade.host
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.upgrade.origin.as_deref()
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.upgrade.protocols
    }

    /// A request header.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.request.headers().get(name)
    }

    /// Apply an origin policy: `Err` is the `403` to [`reject`](Self::reject) with.
    pub fn check_origin(&self, policy: &OriginPolicy) -> Result<(), Reject> {
        policy.check(&self.upgrade)
    }

    /// The settings the connection will have once accepted, to adjust them
    /// for this request (e.g. by the route its path leads to).
    pub fn config_mut(&mut self) -> &mut WebSocketConfig {
        &mut self.config
    }

    /// The underlying stream (e.g. for the peer address).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Complete the handshake and start speaking WebSocket.
    pub async fn accept(mut self, accept: Accept) -> Result<WebSocket<S>> {
        if unoffered_protocol(&self.upgrade, &accept) {
            let resp = build_reject_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                b"server chose a subprotocol the client did not offer\n",
            );
            let _ = self.stream.write_all(&resp).await;
            return Err(Error::Rejected(StatusCode::INTERNAL_SERVER_ERROR));
        }
        let extensions = crate::extensions::server_negotiate(&mut self.config, &self.upgrade);
        let response = build_accept_response(
            &self.upgrade.key,
            accept.protocol.as_deref(),
            extensions.as_deref(),
            &accept.headers,
        );
        self.stream.write_all(&response).await?;
        self.stream.flush().await?;
        Ok(WebSocket::from_raw(
            self.stream,
            Role::Server,
            self.config,
            &self.leftover,
        ))
    }

    /// Refuse the handshake with an HTTP response.
    pub async fn reject(mut self, reject: Reject) -> Result<()> {
        let resp = build_reject_response(reject.status, &reject.headers, &reject.body);
        self.stream.write_all(&resp).await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}

/// Whether `accept` names a subprotocol the client did not offer (which the
/// client would fail the connection for, RFC 6455 §4.1).
pub(crate) fn unoffered_protocol(upgrade: &UpgradeRequest, accept: &Accept) -> bool {
    accept
        .protocol
        .as_ref()
        .is_some_and(|p| !upgrade.protocols.iter().any(|o| o == p))
}

/// How to accept: the chosen subprotocol and extra response headers.
///
/// Built from [`Accept::default`] with [`protocol`](Self::protocol) and
/// [`header`](Self::header).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Accept {
    /// The subprotocol, which must be one the client offered.
    pub protocol: Option<String>,
    /// Extra headers for the 101 response (e.g. `Set-Cookie`).
    pub headers: HeaderMap,
}

impl Accept {
    /// Choose a subprotocol.
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocol = Some(p.into());
        self
    }

    /// Add a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// How to refuse: status, headers and a body.
///
/// Built with [`Reject::new`] (or [`forbidden`](Self::forbidden),
/// [`unauthorized`](Self::unauthorized)) and [`header`](Self::header).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reject {
    /// The HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

impl Reject {
    /// Refuse with a status and a short text body.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reject {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// The answer to an invalid upgrade request: its status (400, or 426
    /// with `Upgrade: websocket` and `Sec-WebSocket-Version: 13`) and the
    /// broken rule as the body.
    pub fn from_handshake_error(error: &HandshakeError) -> Self {
        let mut r = Self::new(error.status(), format!("{error}\n"));
        if r.status == StatusCode::UPGRADE_REQUIRED {
            r.headers
                .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            r.headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
            r.headers.insert(
                HeaderName::from_static("sec-websocket-version"),
                HeaderValue::from_static("13"),
            );
        }
        r
    }

    /// 403 Forbidden (e.g. a disallowed Origin).
    pub fn forbidden(why: impl Into<Bytes>) -> Self {
        Self::new(StatusCode::FORBIDDEN, why)
    }

    /// 401 Unauthorized with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(why: impl Into<Bytes>) -> Self {
        let mut r = Self::new(StatusCode::UNAUTHORIZED, why);
        r.headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        r
    }

    /// Add a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}
