//! `room` routes: every message goes to everyone else in the same room. The
//! room is named by the path's capture (`/chat/{room}`), or is the route
//! itself when the path has none.

use super::close::Summary;
use super::hub::Hub;
use super::metrics::RouteMetrics;
use super::session::{hub_loop, Work};
use std::sync::Arc;
use tether::WebSocket;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Join `room` until the connection ends.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    hub: &Arc<Hub>,
    room: &str,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> Summary {
    let mut member = hub.member();
    member.join(room);
    hub_loop(ws, &mut member, shutdown, metrics, |m, msg, _busy| {
        // Appended once to the room's ring, shared by every member.
        m.broadcast_others(room, &msg);
        Work::Done
    })
    .await
}
