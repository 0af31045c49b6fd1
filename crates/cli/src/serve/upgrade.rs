//! The HTTP/1.1 WebSocket handshake: the request validated by the library,
//! decided by [`policy::admit`], then accepted with the route's subprotocol
//! (or refused with the [`Refusal`](policy::Refusal)'s answer). Part of the
//! HTTP phase, which is freed once the session starts.

use super::config::RouteKind;
use super::exec;
use super::logsafe::esc;
use super::policy::{self, Endpoint, Refusal, Upgrade};
use super::proxy_addr::Client;
use super::session::Session;
use super::state::State;
use super::transport::Conn;
use tether::Incoming;
use tracing::info;

/// Validate an upgrade request that arrived on listener `listener`, admit
/// it and complete the handshake; `None` when it was refused (answered,
/// counted and logged) or the handshake failed.
pub async fn open_websocket(
    state: &State,
    listener: usize,
    conn: Conn,
    req: http::Request<()>,
    leftover: bytes::BytesMut,
    client: Client,
) -> Option<Session<'_>> {
    let peer = client.addr;
    let path = req.uri().path().to_owned();
    let config = state.builder.get_config().clone();
    let mut incoming = match Box::pin(Incoming::from_request(conn, req, leftover, config)).await {
        Ok(i) => i,
        Err(e) => {
            // The library has answered it.
            Refusal::Handshake(e.to_string()).record(&state.metrics, "WebSocket", peer, &path);
            return None;
        }
    };
    let request = incoming.request();
    let up = Upgrade {
        host: incoming.host(),
        path: &path,
        query: request.uri().query().unwrap_or(""),
        origin: incoming.origin(),
        headers: request.headers(),
        client: peer,
        https: client.https,
    };
    let admission = match policy::admit(state, listener, &up, Endpoint::WebSocket) {
        Ok(a) => a,
        Err(refused) => {
            refused.record(&state.metrics, "WebSocket", peer, &path);
            let _ = Box::pin(incoming.reject(refused.reject())).await;
            return None;
        }
    };
    let route = admission.route;
    let protocol = {
        let supported: Vec<&str> = route.protocols.iter().map(String::as_str).collect();
        incoming
            .upgrade()
            .select_protocol(&supported)
            .map(str::to_owned)
    };
    let exec = admission.process.map(|slot| {
        let server_port = incoming.stream().local_addr().ok().map(|a| a.port());
        let request = exec::RequestFacts::new(
            &up,
            &route.path,
            server_port,
            protocol.clone(),
            admission.grants.subject.clone(),
        );
        Box::new(exec::Admitted {
            request,
            _slot: slot,
        })
    });
    if let RouteKind::Exec(_) = route.kind {
        // The program's last output goes out before the Close reply.
        incoming.config_mut().protocol.defer_close_reply = true;
    }
    let accept = match protocol {
        Some(p) => tether::Accept::default().protocol(p),
        None => tether::Accept::default(),
    };
    let ws = match Box::pin(incoming.accept(accept)).await {
        Ok(ws) => ws,
        Err(e) => {
            info!(%peer, path = %esc(&path), "handshake failed: {}", esc(&e.to_string()));
            return None;
        }
    };
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
