//! An axum extractor for WebSocket upgrades (feature `axum`, axum 0.8).
//!
//! [`WebSocketUpgrade`] has the shape of axum's own: take it as a handler
//! argument, choose a subprotocol, then return
//! [`on_upgrade`](WebSocketUpgrade::on_upgrade)'s response and get a
//! [`tether::WebSocket`](crate::WebSocket) in the callback. A request that
//! is not a valid upgrade is refused by the extractor (`426 Upgrade
//! Required` with `Sec-WebSocket-Version: 13` for plain HTTP or another
//! protocol version, `400` for a malformed handshake). The request is
//! checked by the same rules, and accepted with the same settings
//! ([`WebSocketConfig`]: limits, keepalive, permessage-deflate), as
//! [`ServerBuilder`](crate::ServerBuilder)'s.
//!
//! Over HTTP/2 the same extractor takes an RFC 8441 extended CONNECT and
//! answers `200`: route `CONNECT` too (`get(ws).connect(ws)` or `any(ws)`),
//! and serve the router through hyper-util's builder with
//! `http2().enable_connect_protocol()` (`axum::serve` does not enable it; see
//! [`crate::hyper`] and the `hyper_http2` example).
//!
//! ```no_run
//! use axum::{routing::get, Router, response::Response};
//! use futures_util::{SinkExt, StreamExt};
//! use tether::axum::WebSocketUpgrade;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.protocols(["chat.v1"]).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() { break; }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/ws", get(ws));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use crate::config::WebSocketConfig;
use crate::error::Error;
use crate::hyper::{HyperWebSocket, Upgrade};
use crate::origin::OriginPolicy;
use crate::server::{Accept, Reject};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use std::future::Future;
use tether_proto::deflate::DeflateConfig;

/// The WebSocket upgrade of a request, extracted by axum.
///
/// Settings default to [`WebSocketConfig::default`]; change them with
/// [`config`](Self::config) and friends before
/// [`on_upgrade`](Self::on_upgrade).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    upgrade: Upgrade,
    accept: Accept,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reject> {
        let upgrade = Upgrade::from_parts(parts, WebSocketConfig::default())?;
        if !upgrade.is_upgradable() {
            return Err(Reject::new(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (served without HTTP/1.1 upgrades)\n",
            ));
        }
        Ok(WebSocketUpgrade {
            upgrade,
            accept: Accept::default(),
        })
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this endpoint speaks: the first one in the client's
    /// order of preference that is listed here is chosen. When none
    /// matches, the connection is accepted without a subprotocol (check
    /// [`selected_protocol`](Self::selected_protocol) to refuse instead).
    pub fn protocols<I>(mut self, supported: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let supported: Vec<I::Item> = supported.into_iter().collect();
        self.accept.protocol = self
            .upgrade
            .protocols()
            .iter()
            .find(|offered| supported.iter().any(|s| s.as_ref() == offered.as_str()))
            .cloned();
        self
    }

    /// The subprotocol chosen by [`protocols`](Self::protocols), if any.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.accept.protocol.as_deref()
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> &[String] {
        self.upgrade.protocols()
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.upgrade.origin()
    }

    /// Refuse (`403`) unless the request's `Origin` passes `policy`; the
    /// error is a response, so a handler can use `?`-style early returns.
    pub fn check_origin(self, policy: &OriginPolicy) -> Result<Self, Reject> {
        self.upgrade.check_origin(policy)?;
        Ok(self)
    }

    /// The request head (path, query, headers such as cookies).
    pub fn request(&self) -> &http::Request<()> {
        self.upgrade.request()
    }

    /// Use these settings (limits, keepalive, timeouts, permessage-deflate).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        *self.upgrade.config_mut() = config;
        self
    }

    /// The largest message accepted from the peer, in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.upgrade.config_mut().protocol.max_message_size = bytes;
        self
    }

    /// Agree to permessage-deflate (RFC 7692) when the client offers it.
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.upgrade.config_mut().protocol.deflate = Some(deflate);
        self
    }

    /// Add a header to the `101` response (e.g. `Set-Cookie`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.accept.headers.append(name, value);
        self
    }

    /// Accept: returns the `101` response for the handler to return, and
    /// runs `callback` with the socket once hyper has handed over the
    /// connection. A failed hand-over is logged at `debug` and the callback
    /// is not run.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_upgrade_or(callback, |error| {
            tracing::debug!(%error, "WebSocket upgrade failed");
        })
    }

    /// [`on_upgrade`](Self::on_upgrade), calling `on_failure` when the
    /// connection cannot be handed over.
    pub fn on_upgrade_or<F, Fut, E>(self, callback: F, on_failure: E) -> Response
    where
        F: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let (response, socket) = self.upgrade.accept(self.accept);
        tokio::spawn(async move {
            match socket.await {
                Ok(ws) => callback(ws).await,
                Err(e) => on_failure(e),
            }
        });
        response.map(axum::body::Body::new)
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        self.into_http_response().map(axum::body::Body::new)
    }
}
