//! [`State`]: what every connection of one configuration generation serves
//! with, shared by the accept loop, the HTTP phase, admission and the
//! sessions.

use super::config::ServerConfig;
use super::engine;
use super::hub::{self, Hub};
use super::metrics::{Metrics, RouteMetrics};
use super::policy::ConnLimiter;
use super::reload;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tether::ServerBuilder;
use tokio::sync::watch;

/// What a connection serves with: one generation of the configuration
/// (made at startup and by each reload, see [`reload`]; a connection keeps
/// the one it started with) and handles on what all generations share.
pub struct State {
    /// The validated configuration.
    pub config: ServerConfig,
    /// Handshake reading and the WebSocket settings of this generation.
    pub builder: ServerBuilder,
    /// Per listener, in `config.listeners` order: its TLS acceptor.
    pub acceptors: Vec<Option<tokio_rustls::TlsAcceptor>>,
    /// Per route id: the hub of room and pubsub routes.
    pub hubs: Vec<Option<Arc<Hub>>>,
    /// Per route id: its counters.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// WebSocket connections, total and per IP.
    pub limiter: Arc<ConnLimiter>,
    /// Per route id: the engine of pubsub routes.
    pub engines: Vec<Option<Arc<dyn engine::Engine>>>,
    /// Connections in the HTTP phase (plain HTTP, keep-alive, handshakes).
    pub http_limiter: Arc<ConnLimiter>,
    /// Set once on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// WebSocket connections being served (for the shutdown wait).
    pub active: Arc<AtomicUsize>,
    /// Bytes held by every room and channel.
    pub budget: Arc<hub::Budget>,
}

impl State {
    /// The parts every generation shares.
    pub fn shared(&self) -> reload::Shared {
        reload::Shared {
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
            http_limiter: self.http_limiter.clone(),
            shutdown: self.shutdown.clone(),
            active: self.active.clone(),
            budget: self.budget.clone(),
        }
    }
}

/// Counts a WebSocket connection as active for the shutdown wait.
pub struct ActiveGuard<'a>(&'a AtomicUsize);

impl<'a> ActiveGuard<'a> {
    /// Count one more active connection until the guard is dropped.
    pub fn enter(active: &'a AtomicUsize) -> ActiveGuard<'a> {
        active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(active)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
