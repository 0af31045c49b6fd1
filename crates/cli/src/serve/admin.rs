//! `/metrics` and `/healthz`. By default the `[[listen]]` ports answer
//! them; with `[admin] addr` only a separate plain-HTTP listener does (keep
//! it on loopback or a private network), and `[admin] metrics_token` puts
//! `/metrics` behind a bearer token wherever it is served. `/healthz`
//! never needs the token: it says nothing but `ok`. The admin listener
//! serves at most [`MAX_CONNECTIONS`] connections at once.

use super::auth::constant_time_eq;
use super::engine;
use super::http::{write_response, Response};
use super::policy::host;
use super::reload::Live;
use super::state::State;
use super::transport::{Conn, Transport};
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Most requests served on one admin connection (a scraper keeps one open).
const MAX_KEEPALIVE_REQUESTS: usize = 10_000;

/// The answer for `/metrics` or `/healthz` on a `[[listen]]` port; `None`
/// for other paths, and for these when an admin listener serves them.
pub fn answer_public(state: &State, req: &http::Request<()>) -> Option<Response> {
    if state.config.admin.addr.is_some() {
        return None;
    }
    answer(state, req)
}

/// The answer for `/metrics` or `/healthz`; `None` for other paths.
fn answer(state: &State, req: &http::Request<()>) -> Option<Response> {
    let path = req.uri().path();
    if path != "/healthz" && path != "/metrics" {
        return None;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(
            Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                .header("allow", "GET, HEAD"),
        );
    }
    if path == "/healthz" {
        return Some(match unhealthy_engine(state) {
            None => Response::text(StatusCode::OK, "ok\n"),
            Some(name) => Response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the {name} cluster engine is unreachable\n"),
            ),
        });
    }
    if let Some(want) = &state.config.admin.metrics_token {
        let ok = bearer(req).is_some_and(|got| constant_time_eq(want.as_bytes(), got.as_bytes()));
        if !ok {
            return Some(
                Response::text(
                    StatusCode::UNAUTHORIZED,
                    "/metrics needs `Authorization: Bearer` with `admin.metrics_token`\n",
                )
                .header("www-authenticate", "Bearer"),
            );
        }
    }
    Some(Response::typed(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        {
            let mut body = state.metrics.render();
            engine::render_metrics(state.engines.iter().flatten(), &mut body);
            body.into_bytes()
        },
    ))
}

/// The name of an engine that cannot serve, if any (`/healthz` is 503
/// while one cannot).
fn unhealthy_engine(state: &State) -> Option<&'static str> {
    state
        .engines
        .iter()
        .flatten()
        .find(|e| !e.healthy())
        .map(|e| e.name())
}

/// The token of an `Authorization: Bearer` header.
fn bearer(req: &http::Request<()>) -> Option<&str> {
    req.headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// Most admin connections served at once (scrapers and health checks need
/// a few); more are closed unanswered.
const MAX_CONNECTIONS: usize = 32;

/// Serve the admin listener until the task is dropped; each connection
/// with the configuration current when it was accepted.
pub async fn accept_loop(live: Arc<Live>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let state = live.state();
                    tokio::spawn(async move {
                        serve_connection(state, tcp, peer).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    debug!(%peer, "admin listener: {MAX_CONNECTIONS} connections open; closed unanswered");
                }
            },
            Err(e) => {
                warn!("admin listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Plain HTTP/1.1 with keep-alive: `/metrics`, `/healthz`, else 404.
async fn serve_connection(state: Arc<State>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::new(Transport::Plain(tcp));
    for _ in 0..MAX_KEEPALIVE_REQUESTS {
        let (req, leftover) = match state.builder.read_http_request(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                debug!(%peer, "admin listener: {e}");
                return;
            }
        };
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let headers = req.headers();
        let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        let keep_alive = req.version() == http::Version::HTTP_11
            && !has_body
            && !headers.get_all(http::header::CONNECTION).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
            });
        let resp = if !host::host_allowed(&state.config.admin.hosts, host) {
            info!(%peer, %host, "admin listener: refused: Host not allowed (421); a loopback admin address answers loopback names only");
            Response::text(
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that Host name\n",
            )
        } else {
            answer(&state, &req)
                .unwrap_or_else(|| Response::text(StatusCode::NOT_FOUND, "not found\n"))
        };
        let keep_alive = keep_alive && resp.status() != StatusCode::MISDIRECTED_REQUEST;
        let head_only = req.method() == Method::HEAD;
        if write_response(&mut conn, resp, keep_alive, head_only)
            .await
            .is_err()
            || !keep_alive
        {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn).await;
            return;
        }
        conn.unread(leftover);
    }
}
