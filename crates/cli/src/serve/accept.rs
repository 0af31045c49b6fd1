//! Connections of the `[[listen]]` sockets: accepted, counted against the
//! HTTP-phase limits, optionally a PROXY protocol header and TLS, then HTTP
//! requests with keep-alive until one upgrades to a WebSocket
//! ([`super::upgrade`]) whose session then runs in the same task
//! ([`super::session`]). On a listener with `http2 = true`, a connection
//! that chose `h2` by ALPN, or (cleartext) starts with the HTTP/2 preface,
//! is served by [`super::http2`] instead, for its whole life.

use super::config::ListenerConfig;
use super::logsafe::esc;
use super::policy::{self, host, LimitError, Refusal};
use super::reload;
use super::session::{run_session, Session};
use super::shutdown::wait_shutdown;
use super::state::State;
use super::transport::{Conn, Transport};
use super::{http, http2, proxy_addr, sse, upgrade};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// Accept on listener `idx`; each connection is served with the
/// generation current when it was accepted.
pub async fn accept_loop(live: Arc<reload::Live>, idx: usize, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let state = live.state();
                state.metrics.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                let acceptor = state.acceptors[idx].clone();
                tokio::spawn(handle_connection(state, idx, tcp, peer, acceptor));
            }
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub fn is_upgrade(req: &::http::Request<()>) -> bool {
    req.headers()
        .get_all(::http::header::UPGRADE)
        .iter()
        .any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
                })
                .unwrap_or(false)
        })
}

/// Most plain HTTP requests served on one connection.
const MAX_KEEPALIVE_REQUESTS: usize = 1000;

// Not `async fn`: its arguments would be stored twice (idle memory).
#[allow(clippy::manual_async_fn)]
fn handle_connection(
    state: Arc<State>,
    idx: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> impl Future<Output = ()> + Send {
    // Two phases, so that an open WebSocket's task holds only what its
    // session needs (idle memory per connection): the HTTP phase (TLS,
    // requests, routing, policy, handshake) runs boxed and is freed when it
    // hands over the WebSocket; the session then runs inline in the task.
    // (An `async move` block rather than an `async fn`: the arguments of an
    // `async fn` are stored twice in its future, as arguments and as locals.)
    async move {
        // No named local for the session: it would stay in this future
        // beside the session future's own copy.
        run_session(
            &state,
            Box::pin(http_phase(&state, idx, tcp, peer, acceptor)).await,
        )
        .await;
    }
}

/// Serve HTTP on a new connection until it upgrades to a WebSocket (the
/// session to run is returned) or ends (`None`).
async fn http_phase(
    state: &Arc<State>,
    idx: usize,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Option<Session<'_>> {
    // Handshake latency counts from here, the task's start just after
    // accept (an `Instant` taken in the accept loop would be stored for the
    // connection's whole life: idle memory).
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let listener = &state.config.listeners[idx];
    // Held until the connection ends or becomes a WebSocket (which takes a
    // WebSocket slot). A trusted proxy's connection carries many clients:
    // it counts in the total only.
    let by_ip = (!proxy_addr::trusted(&listener.trusted_proxies, peer.ip())).then_some(peer.ip());
    let http_slot = match state.http_limiter.acquire_for(by_ip) {
        Ok(slot) => slot,
        Err(e) => {
            refuse_http_connection(state, listener, acceptor.is_some(), &mut tcp, peer, e).await;
            return None;
        }
    };
    if listener.proxy_protocol {
        let trusted = &listener.trusted_proxies;
        if !trusted.is_empty() && !proxy_addr::trusted(trusted, peer.ip()) {
            info!(%peer, "refused: PROXY protocol from a peer not in listen[{idx}].trusted_proxies");
            return None;
        }
        let timeout = state.config.limits.handshake_timeout;
        // Boxed: the HTTP phase's future stays the size of its request reading.
        match Box::pin(proxy_addr::read_proxy_header(&mut tcp, timeout)).await {
            Ok(Some(client)) => peer = client,
            Ok(None) => {}
            Err(e) => {
                info!(%peer, "refused: {e} (listen[{idx}].proxy_protocol = true)");
                return None;
            }
        }
    }
    let tls = acceptor.is_some();
    let transport = match acceptor {
        None => Transport::Plain(tcp),
        Some(acc) => {
            match tokio::time::timeout(
                state.config.limits.handshake_timeout,
                Box::pin(acc.accept(tcp)),
            )
            .await
            {
                Ok(Ok(s)) => Transport::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    let h2_by_alpn = match &transport {
        Transport::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        _ => false,
    };
    let mut conn = Conn::new(transport);
    if listener.http2 {
        let h2 = h2_by_alpn
            || !tls
                && match http2::starts_with_preface(
                    &mut conn,
                    state.config.limits.handshake_timeout,
                )
                .await
                {
                    Some(found) => found,
                    None => return None,
                };
        if h2 {
            // The HTTP-phase slot is held for the connection's life: it
            // stays an HTTP connection, its WebSockets are streams.
            let _http_slot = http_slot;
            Box::pin(http2::serve(state.clone(), idx, conn, peer, tls)).await;
            return None;
        }
    }
    let mut shutdown = state.shutdown.clone();
    for served in 0..MAX_KEEPALIVE_REQUESTS {
        // The request, response and upgrade futures are boxed, so that a
        // keep-alive connection waiting for its next request holds only the
        // reading state, not the largest of them.
        let read = Box::pin(state.builder.read_http_request(&mut conn));
        let result = if served == 0 {
            read.await
        } else {
            tokio::select! {
                r = read => r,
                _ = wait_shutdown(&mut shutdown) => return None,
            }
        };
        let (req, leftover) = match result {
            Ok(r) => r,
            Err(e) => {
                if served == 0 {
                    debug!(%peer, "bad request: {}", esc(&e.to_string()));
                }
                return None;
            }
        };
        // Framing first: a request whose end is ambiguous cannot be
        // followed by another on this connection.
        let length = match http::body_length(&req) {
            Ok(n) => n,
            Err((status, why)) => {
                info!(%peer, status = status.as_u16(), "refused: ambiguous or unsupported request framing");
                let r = http::Response::text(status, why);
                let _ = Box::pin(http::write_response(&mut conn, r, false, false)).await;
                let _ = conn.shutdown().await;
                return None;
            }
        };
        let host = req
            .headers()
            .get(::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // Per request: a proxy's keep-alive connection carries many clients.
        let client = proxy_addr::client_of(&listener.trusted_proxies, peer, tls, req.headers());
        if let Err(refused) = policy::check_host(state, idx, &host) {
            refused.record(&state.metrics, "request", client.addr, req.uri().path());
            let r = http::Response::refused(&refused);
            let _ = Box::pin(http::write_response(&mut conn, r, false, false)).await;
            let _ = conn.shutdown().await;
            return None;
        }
        let (name, _) = host::split_host(&host);
        let routes = state.config.routes_for(&name);
        if let Some((route, sse)) = sse::route_for(routes, req.uri().path()) {
            let served = sse::serve(state, idx, conn, req, route, sse, client, http_slot);
            Box::pin(served).await;
            return None;
        }
        if is_upgrade(&req) {
            let opened = Box::pin(upgrade::open_websocket(
                state, idx, conn, req, leftover, client,
            ))
            .await;
            if opened.is_some() {
                state.metrics.handshake_latency.observe(started.elapsed());
                state
                    .metrics
                    .handshakes_http1
                    .fetch_add(1, Ordering::Relaxed);
            }
            return opened;
        }
        match Box::pin(http::serve(state, &mut conn, req, length, leftover, routes)).await {
            Some(rest) => conn.unread(rest),
            None => {
                // Bounded: after a response timed out, a TLS close_notify
                // waits on the same peer that stopped reading.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
                return None;
            }
        }
    }
    None
}

/// A connection over `max_http_connections` (503) or
/// `max_http_connections_per_ip` (429): counted, answered with one
/// small write (bounded in time) where the listener speaks plain HTTP, and
/// closed. Nothing is read.
async fn refuse_http_connection(
    state: &State,
    listener: &ListenerConfig,
    tls: bool,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    e: LimitError,
) {
    let limits = &state.config.limits;
    let refused = Refusal::of_limit(
        e,
        limits.max_http_connections,
        limits.max_http_connections_per_ip,
        peer.ip(),
    );
    state.metrics.http_refused(refused.label());
    if !tls && !listener.proxy_protocol {
        let answer = refused.http1_response();
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&answer)).await;
    }
}
