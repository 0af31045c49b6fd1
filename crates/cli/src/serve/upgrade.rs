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
    let mut admission = match policy::admit(state, listener, &up, Endpoint::WebSocket) {
        Ok(a) => a,
        Err(refused) => {
            refused.record(&state.metrics, "WebSocket", peer, &path);
            let _ = Box::pin(incoming.reject(refused.reject())).await;
            return None;
        }
    };
    let route = admission.route;
    let accepting = accepting(
        &mut admission,
        &up,
        || incoming.stream().local_addr().ok().map(|a| a.port()),
        |supported| {
            incoming
                .upgrade()
                .select_protocol(supported)
                .map(str::to_owned)
        },
    );
    incoming.config_mut().protocol.defer_close_reply |= accepting.defer_close_reply;
    let (accept, exec) = (accepting.accept, accepting.exec);
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

/// What both HTTP versions decide once a WebSocket is admitted.
pub(super) struct Accepting<'s> {
    /// The answer, with the subprotocol chosen from the route's.
    pub accept: tether::Accept,
    /// An exec route's request facts, holding its process slot.
    pub exec: Option<Box<exec::Admitted<'s>>>,
    /// An exec route's last output goes out before the Close reply.
    pub defer_close_reply: bool,
}

/// The subprotocol (`select` picks from the route's, in the client's
/// order), the exec program's facts (`server_port` is asked only for an
/// exec route) and the `Accept` for an admitted WebSocket; takes the
/// admission's process slot.
pub(super) fn accepting<'s>(
    admission: &mut policy::Admission<'s>,
    up: &Upgrade<'_>,
    server_port: impl FnOnce() -> Option<u16>,
    select: impl FnOnce(&[&str]) -> Option<String>,
) -> Accepting<'s> {
    let route = admission.route;
    let supported: Vec<&str> = route.protocols.iter().map(String::as_str).collect();
    let protocol = select(&supported);
    let exec = admission.process.take().map(|slot| {
        let request = exec::RequestFacts::new(
            up,
            &route.path,
            server_port(),
            protocol.clone(),
            admission.grants.subject.clone(),
        );
        Box::new(exec::Admitted {
            request,
            _slot: slot,
        })
    });
    Accepting {
        accept: match protocol {
            Some(p) => tether::Accept::default().protocol(p),
            None => tether::Accept::default(),
        },
        exec,
        defer_close_reply: matches!(route.kind, RouteKind::Exec(_)),
    }
}
