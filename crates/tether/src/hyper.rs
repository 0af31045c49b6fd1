//! Upgrading requests served by hyper 1.x into a [`WebSocket`] (feature
//! `hyper`): HTTP/1.1 upgrades, and HTTP/2 extended CONNECTs (RFC 8441).
//!
//! hyper reads the request head itself, so the handshake limits and timeout
//! of [`WebSocketConfig`] are hyper's business here; the request is checked
//! with the same rules as [`ServerBuilder`](crate::ServerBuilder)'s
//! (`tether_proto::handshake::validate_request`), and the application
//! decides with the same [`Accept`] and [`Reject`] types. An HTTP/1.1
//! connection must be served with upgrades enabled
//! (`hyper::server::conn::http1::Builder::serve_connection(..).with_upgrades()`).
//!
//! Over HTTP/2 a WebSocket is a stream opened by `CONNECT` with `:protocol
//! websocket`, which hyper passes on only when the connection is served
//! with `hyper::server::conn::http2::Builder::enable_connect_protocol()`
//! (the server then sends `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`, which
//! browsers wait for). The same [`Upgrade`] takes it
//! (`tether_proto::handshake::validate_extended_connect`), answers `200`
//! instead of `101`, and the socket is the stream: many WebSockets, and the
//! page's other requests, share one connection. Route `CONNECT` as well as
//! `GET` to the handler.
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures_util::{SinkExt, StreamExt};
//! use http_body_util::Full;
//! use tether::hyper::Upgrade;
//! use tether::{Accept, WebSocketConfig};
//!
//! async fn handle(req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
//!     let upgrade = match Upgrade::new(req, WebSocketConfig::default()) {
//!         Ok(u) => u,
//!         Err(refusal) => return refusal.into_http_response(), // 400 / 426
//!     };
//!     let (response, socket) = upgrade.accept(Accept::default());
//!     tokio::spawn(async move {
//!         let mut ws = socket.await?;
//!         while let Some(msg) = ws.next().await {
//!             let msg = msg?;
//!             if msg.is_data() { ws.send(msg).await?; }
//!         }
//!         Ok::<_, tether::Error>(())
//!     });
//!     response
//! }
//! ```

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::origin::OriginPolicy;
use crate::server::{unoffered_protocol, Accept, Reject};
use crate::socket::WebSocket;
use ::hyper::upgrade::{OnUpgrade, Upgraded};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tether_proto::handshake::{
    accept_response, extended_connect_response, validate_extended_connect, validate_request,
    UpgradeRequest,
};
use tether_proto::Role;

/// The response body type of this module's responses.
pub type Body = Full<Bytes>;

/// A WebSocket on a connection upgraded by hyper.
pub type HyperWebSocket = WebSocket<TokioIo<Upgraded>>;

/// A valid WebSocket upgrade request served by hyper, waiting for the
/// application's decision ([`accept`](Self::accept) or
/// [`reject`](Self::reject)).
#[derive(Debug)]
pub struct Upgrade {
    request: http::Request<()>,
    upgrade: UpgradeRequest,
    on_upgrade: Option<OnUpgrade>,
    config: WebSocketConfig,
    /// Opened by an HTTP/2 extended CONNECT (answered `200`), not an
    /// HTTP/1.1 upgrade (`101`).
    extended_connect: bool,
}

impl Upgrade {
    /// Check `request`: an HTTP/1.1 upgrade (RFC 6455 §4.2.1), or, for a
    /// `CONNECT`, an HTTP/2 extended CONNECT (RFC 8441 §4, §5). An invalid
    /// one comes back as the refusal to send: `426 Upgrade Required` with
    /// `Sec-WebSocket-Version: 13` for a plain HTTP request or another
    /// protocol version, `501` for a CONNECT whose `:protocol` is not
    /// `websocket`, `400` for the rest.
    pub fn new<B>(request: http::Request<B>, config: WebSocketConfig) -> Result<Upgrade, Reject> {
        let (mut parts, _body) = request.into_parts();
        Self::from_parts(&mut parts, config)
    }

    /// [`new`](Self::new) for the head of a request, taking hyper's upgrade
    /// handle out of its extensions.
    pub fn from_parts(
        parts: &mut http::request::Parts,
        config: WebSocketConfig,
    ) -> Result<Upgrade, Reject> {
        let mut request = http::Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        let extended_connect = parts.method == http::Method::CONNECT;
        let upgrade = if extended_connect {
            let protocol = parts.extensions.get::<::hyper::ext::Protocol>();
            validate_extended_connect(&request, protocol.map(|p| p.as_ref()))
        } else {
            validate_request(&request)
        }
        .map_err(|e| Reject::from_handshake_error(&e))?;
        Ok(Upgrade {
            request,
            upgrade,
            on_upgrade: parts.extensions.remove::<OnUpgrade>(),
            config,
            extended_connect,
        })
    }

    /// Whether this is an HTTP/2 extended CONNECT (answered `200`, the
    /// socket is one stream of the connection) rather than an HTTP/1.1
    /// upgrade.
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect
    }

    /// Whether hyper can hand over the connection (false when it was served
    /// without `.with_upgrades()` or the request came through something
    /// that strips hyper's upgrade handle).
    pub fn is_upgradable(&self) -> bool {
        self.on_upgrade.is_some()
    }

    /// The request head as received.
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The validated WebSocket fields (key, host, origin, subprotocols, extensions).
    pub fn upgrade(&self) -> &UpgradeRequest {
        &self.upgrade
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.upgrade.protocols
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.upgrade.origin.as_deref()
    }

    /// Apply an origin policy: `Err` is the `403` to send.
    pub fn check_origin(&self, policy: &OriginPolicy) -> Result<(), Reject> {
        policy.check(&self.upgrade)
    }

    /// The settings the connection will use.
    pub fn config_mut(&mut self) -> &mut WebSocketConfig {
        &mut self.config
    }

    /// Accept: the `101` response (`200` for an HTTP/2 extended CONNECT)
    /// to return from the service, and the socket, ready once hyper has
    /// sent the response and handed over the connection (or the stream). permessage-deflate is agreed when the client offers it
    /// and `config.protocol.deflate` is set.
    ///
    /// Choosing a subprotocol the client did not offer answers `500` and
    /// the socket resolves to [`Error::Rejected`].
    pub fn accept(mut self, accept: Accept) -> (http::Response<Body>, PendingWebSocket) {
        if unoffered_protocol(&self.upgrade, &accept) {
            let refusal = Reject::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server chose a subprotocol the client did not offer\n",
            );
            return (refusal.into_http_response(), PendingWebSocket::failed());
        }
        let extensions = crate::extensions::server_negotiate(&mut self.config, &self.upgrade);
        let protocol = accept.protocol.as_deref();
        let (mut head, ()) = if self.extended_connect {
            extended_connect_response(protocol, extensions.as_deref())
        } else {
            accept_response(&self.upgrade.key, protocol, extensions.as_deref())
        }
        .into_parts();
        for (name, value) in &accept.headers {
            if !head.headers.contains_key(name)
                && name != CONTENT_LENGTH
                && name != TRANSFER_ENCODING
                && !(self.extended_connect && is_connection_specific(name))
            {
                head.headers.append(name, value.clone());
            }
        }
        let pending = match self.on_upgrade {
            Some(on_upgrade) => PendingWebSocket {
                on_upgrade: Some(on_upgrade),
                config: Some(self.config),
            },
            None => PendingWebSocket::failed(),
        };
        (http::Response::from_parts(head, Body::default()), pending)
    }

    /// Refuse: the response to return from the service.
    pub fn reject(self, reject: Reject) -> http::Response<Body> {
        reject.into_http_response()
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2): a response carrying one is
/// malformed.
fn is_connection_specific(name: &http::HeaderName) -> bool {
    use http::header::{CONNECTION, TE, UPGRADE};
    [CONNECTION, UPGRADE, TE].contains(name)
        || ["keep-alive", "proxy-connection"].contains(&name.as_str())
}

/// The socket of an accepted [`Upgrade`]: resolves once hyper has sent the
/// `101` and handed over the connection.
#[derive(Debug)]
#[must_use = "the socket is only available by awaiting this"]
pub struct PendingWebSocket {
    on_upgrade: Option<OnUpgrade>,
    config: Option<WebSocketConfig>,
}

impl PendingWebSocket {
    fn failed() -> Self {
        PendingWebSocket {
            on_upgrade: None,
            config: None,
        }
    }

    /// The socket, on the upgraded connection (or stream) wrapped by
    /// `wrap`: for a server that keeps sockets of several transports in
    /// one type.
    pub async fn wrapped<T>(self, wrap: impl FnOnce(TokioIo<Upgraded>) -> T) -> Result<WebSocket<T>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Some(on_upgrade) = self.on_upgrade else {
            return Err(Error::Rejected(StatusCode::INTERNAL_SERVER_ERROR));
        };
        let upgraded = on_upgrade.await.map_err(not_handed_over)?;
        let config = self.config.unwrap_or_default();
        Ok(WebSocket::from_raw(
            wrap(TokioIo::new(upgraded)),
            Role::Server,
            config,
            &[],
        ))
    }
}

/// hyper could not hand the connection over.
fn not_handed_over(e: ::hyper::Error) -> Error {
    Error::Io(std::io::Error::other(format!(
        "hyper did not hand over the connection (is it served with `.with_upgrades()`?): {e}"
    )))
}

impl Future for PendingWebSocket {
    type Output = Result<HyperWebSocket>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(on_upgrade) = this.on_upgrade.as_mut() else {
            return Poll::Ready(Err(Error::Rejected(StatusCode::INTERNAL_SERVER_ERROR)));
        };
        let upgraded = ready!(Pin::new(on_upgrade).poll(cx));
        this.on_upgrade = None;
        let upgraded = upgraded.map_err(not_handed_over)?;
        let config = this.config.take().unwrap_or_default();
        // hyper keeps any bytes read past the head inside `Upgraded`.
        Poll::Ready(Ok(WebSocket::from_raw(
            TokioIo::new(upgraded),
            Role::Server,
            config,
            &[],
        )))
    }
}

impl Reject {
    /// This refusal as an `http::Response` for hyper.
    pub fn into_http_response(self) -> http::Response<Body> {
        let mut response = http::Response::new(Body::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if !response.headers().contains_key(http::header::CONTENT_TYPE) {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        response
    }
}
