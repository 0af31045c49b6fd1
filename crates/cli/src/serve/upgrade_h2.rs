//! The HTTP/2 WebSocket handshake (RFC 8441): an extended CONNECT validated
//! by the library (`:protocol websocket`, version 13, no key; another
//! `:protocol` is 501), decided by the same [`policy::admit`] as an HTTP/1.1
//! upgrade (`:authority` as the host; the connection limits count streams),
//! answered `200` with the route's subprotocol and permessage-deflate, and
//! run by the same [`run_session`] on the stream.
//!
//! hyper needs the response before it hands the stream over, and a session
//! borrows the configuration it was admitted with, so each CONNECT runs in
//! a task of its own that owns both: it sends the response back to the
//! stream's service, then runs the session.

use super::body::ResponseBody;
use super::http2::Http2Conn;
use super::logsafe::esc;
use super::policy::{self, Endpoint, Refusal, Upgrade};
use super::proxy_addr::Client;
use super::session::{run_session, Session};
use super::transport::{Conn, Transport};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tether::hyper::Upgrade as HyperUpgrade;
use tokio::sync::oneshot;
use tracing::info;

/// Answer an extended CONNECT: the response for the stream (the session,
/// if admitted, runs in its own task).
pub async fn open(
    ctx: Arc<Http2Conn>,
    parts: http::request::Parts,
    client: Client,
    host: String,
) -> http::Response<ResponseBody> {
    let (answer, response) = oneshot::channel();
    tokio::spawn(stream_task(ctx, parts, client, host, answer));
    response.await.unwrap_or_else(|_| {
        let mut r = http::Response::new(ResponseBody::empty());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// The life of one WebSocket stream: the handshake (boxed, freed once the
/// session starts), then the session.
async fn stream_task(
    ctx: Arc<Http2Conn>,
    parts: http::request::Parts,
    client: Client,
    host: String,
    answer: oneshot::Sender<http::Response<ResponseBody>>,
) {
    let opened = Box::pin(handshake(&ctx, parts, client, host, answer)).await;
    if opened.is_none() {
        return;
    }
    ctx.session_opened();
    run_session(&ctx.state, opened).await;
    ctx.session_closed();
}

/// Validate, admit and accept the CONNECT; the response goes to `answer`.
/// `None` when it was refused (answered, counted and logged) or the stream
/// was not handed over.
async fn handshake(
    ctx: &Http2Conn,
    mut parts: http::request::Parts,
    client: Client,
    host: String,
    answer: oneshot::Sender<http::Response<ResponseBody>>,
) -> Option<Session<'_>> {
    let started = Instant::now();
    let state = &*ctx.state;
    let peer = client.addr;
    let path = parts.uri.path().to_owned();
    let config = state.builder.get_config().clone();
    let mut upgrade = match HyperUpgrade::from_parts(&mut parts, config) {
        Ok(u) => u,
        Err(reject) => {
            let why = String::from_utf8_lossy(&reject.body).trim_end().to_owned();
            Refusal::Handshake(format!("{} ({why})", reject.status)).record(
                &state.metrics,
                "WebSocket",
                peer,
                &path,
            );
            let _ = answer.send(rejected(reject));
            return None;
        }
    };
    let request = upgrade.request();
    let up = Upgrade {
        host: &host,
        path: &path,
        query: request.uri().query().unwrap_or(""),
        origin: upgrade.origin(),
        headers: request.headers(),
        client: peer,
        https: client.https,
    };
    let mut admission = match policy::admit(state, ctx.listener, &up, Endpoint::WebSocket) {
        Ok(a) => a,
        Err(refused) => {
            refused.record(&state.metrics, "WebSocket", peer, &path);
            let _ = answer.send(rejected(refused.reject()));
            return None;
        }
    };
    let route = admission.route;
    let accepting = super::upgrade::accepting(
        &mut admission,
        &up,
        || Some(ctx.local.port()),
        |supported| {
            upgrade
                .upgrade()
                .select_protocol(supported)
                .map(str::to_owned)
        },
    );
    upgrade.config_mut().protocol.defer_close_reply |= accepting.defer_close_reply;
    let (accept, exec) = (accepting.accept, accepting.exec);
    let (response, pending) = upgrade.accept(accept);
    if answer
        .send(response.map(|_| ResponseBody::empty()))
        .is_err()
    {
        // The stream is gone (reset by the client).
        return None;
    }
    let local = ctx.local;
    let ws = match pending
        .wrapped(|io| Conn::new(Transport::Http2(Box::new((io, local)))))
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            info!(%peer, path = %esc(&path), "HTTP/2 handshake failed: {}", esc(&e.to_string()));
            return None;
        }
    };
    state.metrics.handshake_latency.observe(started.elapsed());
    state
        .metrics
        .handshakes_http2
        .fetch_add(1, Ordering::Relaxed);
    Some(Session {
        ws,
        route,
        capture: admission.capture,
        grants: admission.grants,
        exec,
        _slot: admission.slot,
        peer,
        path,
    })
}

/// A refusal as the stream's response (HTTP/2 forbids connection-specific
/// fields, which a refusal never carries).
fn rejected(reject: tether::Reject) -> http::Response<ResponseBody> {
    let mut r = http::Response::new(ResponseBody::bytes(reject.body));
    *r.status_mut() = reject.status;
    *r.headers_mut() = reject.headers;
    if !r.headers().contains_key(http::header::CONTENT_TYPE) {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}
