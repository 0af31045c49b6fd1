//! Generations of the running configuration, and `SIGHUP`.
//!
//! A [`State`] is one loaded configuration with what it needs to serve
//! (TLS acceptors, the WebSocket settings, hubs, route counters). The
//! accept loops read the current one once per new connection ([`Live`]);
//! a connection keeps the one it started with to its end, so a reload
//! never changes or drops an open connection.
//!
//! A reload reads the file again (with the same flags), validates it and
//! loads its TLS certificates and key files; any error refuses the whole
//! reload, logged, and the running configuration stays. What a reload
//! cannot change is kept and reported: the addresses listened on (bound
//! once at startup) and the admin address. Rooms and channels survive for
//! routes that still exist: a hub is found again by virtual host, path and
//! kind, not by the route's position in the file.

use super::cluster::nats::{NatsConfig, NatsEngine, NatsRoute};
use super::cluster::redis::{RedisConfig, RedisEngine, RedisRoute};
use super::cluster::PublishOptions;
use super::config::{EngineKind, NatsSettings, RedisSettings};
use super::config::{ListenerConfig, RawConfig, Route, RouteKind, ServerConfig};
use super::engine::{Engine, HubFeed, Memory};
use super::hub::{self, Budget, Hub, Retention};
use super::metrics::{Metrics, RouteMetrics};
use super::policy::ConnLimiter;
use super::state::State;
use super::{prepare, pubsub, ServeArgs};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tether::{Keepalive, ServerBuilder, WebSocketConfig};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// What every generation shares: counters, connection limits, shutdown.
#[derive(Clone)]
pub struct Shared {
    /// All counters.
    pub metrics: Arc<Metrics>,
    /// WebSocket connection counts (its limits follow the configuration).
    pub limiter: Arc<ConnLimiter>,
    /// Connections in the HTTP phase.
    pub http_limiter: Arc<ConnLimiter>,
    /// Set once at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// WebSocket connections being served (for the shutdown wait).
    pub active: Arc<AtomicUsize>,
    /// Bytes held by every room and channel (its limit follows the
    /// configuration).
    pub budget: Arc<Budget>,
}

/// The generation new connections get, and how to make the next one.
pub struct Live {
    current: ArcSwap<State>,
    args: ServeArgs,
    /// The configuration started with, reused when there is no file to
    /// read again (the built-in setup keeps its publish token).
    started_with: RawConfig,
}

impl Live {
    /// Serve `state`; reloads read `args.config` again.
    pub fn new(state: State, args: ServeArgs, started_with: RawConfig) -> Live {
        Live {
            current: ArcSwap::from_pointee(state),
            args,
            started_with,
        }
    }

    /// The current generation.
    pub fn state(&self) -> Arc<State> {
        self.current.load_full()
    }

    /// Reload (`SIGHUP`): new connections use the new configuration if it
    /// loads; otherwise log why and keep serving the current one.
    pub fn reload(&self) {
        let from = match &self.args.config {
            Some(p) => p.display().to_string(),
            None => "the built-in configuration".to_owned(),
        };
        info!("SIGHUP: reloading {from}");
        let raw = match &self.args.config {
            Some(_) => super::load_raw(&self.args),
            None => Ok(self.started_with.clone()),
        };
        let (config, acceptors) = match raw.and_then(|raw| prepare(&raw)) {
            Ok(p) => p,
            Err(e) => {
                warn!("reload refused, still serving the previous configuration: {e:#}");
                let metrics = &self.state().metrics;
                metrics.reloads_refused.fetch_add(1, Relaxed);
                metrics.last_reload_refused.store(1, Relaxed);
                return;
            }
        };
        let old = self.state();
        old.metrics.reloads_applied.fetch_add(1, Relaxed);
        old.metrics.last_reload_refused.store(0, Relaxed);
        let next = build(&old.shared(), config, acceptors, Some(&old));
        super::warn_risky_routes(&next.config);
        let routes = next.config.route_count;
        self.current.store(Arc::new(next));
        info!(
            routes,
            "configuration reloaded: new connections use it, open ones keep theirs"
        );
    }
}

/// WebSocket settings from the configured limits.
fn ws_config(config: &ServerConfig) -> WebSocketConfig {
    let limits = &config.limits;
    let deflate = config.deflate.clone();
    WebSocketConfig::default()
        .with_protocol(
            tether::proto::Config::default()
                .with_max_message_size(limits.max_message_size)
                .with_max_frame_size(limits.max_message_size)
                .with_deflate(deflate),
        )
        .with_handshake_timeout(limits.handshake_timeout)
        .with_write_buffer_limit(limits.write_buffer)
        .with_send_timeout(limits.send_timeout)
        .with_keepalive(Some(Keepalive::new(
            limits.ping_interval,
            limits.idle_timeout,
        )))
}

/// What identifies a route's hub across reloads: its virtual host's
/// names (empty for the default host), its path and its kind.
type HubKey = (String, String, &'static str);

/// A hub of the previous generation and its engine.
type OldHub = (HubKey, Arc<Hub>, Option<Arc<dyn Engine>>);

/// The Redis engine of one pub/sub route: its keys start with the
/// configured prefix, then the route's virtual hosts and path, so routes
/// (and nodes with the same configuration) share channels exactly when
/// they are the same route.
fn redis_route(
    settings: &RedisSettings,
    key: &HubKey,
    hub: &Arc<Hub>,
) -> Result<Arc<dyn Engine>, String> {
    let retention = hub.retention();
    // Unbounded history in a process is bounded by its TTL in Redis.
    let history_ttl = retention
        .history_ttl
        .unwrap_or(Duration::from_secs(24 * 3600));
    let config = RedisConfig {
        url: settings.url.clone(),
        prefix: format!("{}:{}{}", settings.prefix, key.0, key.1),
        node: settings.node.clone(),
        io_timeout: settings.io_timeout,
        probe_interval: settings.probe_interval,
        meta_ttl: history_ttl.max(Duration::from_secs(7 * 24 * 3600)),
        presence_ttl: Duration::from_secs(60),
    };
    let feed = Arc::new(HubFeed(Arc::downgrade(hub)));
    let engine = RedisEngine::start(config, feed)?;
    let options = PublishOptions {
        history_size: retention.history_size,
        history_ttl,
        ..PublishOptions::default()
    };
    Ok(Arc::new(RedisRoute::new(engine, options)))
}

/// The NATS engine of one pub/sub route: its subjects start with the
/// configured prefix, then a token made of the route's virtual hosts and
/// path, so routes share channels exactly when they are the same route.
fn nats_route(
    settings: &NatsSettings,
    key: &HubKey,
    hub: &Arc<Hub>,
) -> Result<Arc<dyn Engine>, String> {
    let config = NatsConfig {
        url: settings.url.clone(),
        prefix: format!(
            "{}.{}",
            settings.prefix,
            super::cluster::nats::token(&format!("{}{}", key.0, key.1))
        ),
        node: settings.node.clone(),
        io_timeout: settings.io_timeout,
        probe_interval: settings.probe_interval,
    };
    let feed = Arc::new(HubFeed(Arc::downgrade(hub)));
    let engine = NatsEngine::start(config, feed)?;
    Ok(Arc::new(NatsRoute::new(engine)))
}

/// Every route with its [`HubKey`].
fn keyed_routes(config: &ServerConfig) -> impl Iterator<Item = (HubKey, &Route)> {
    let default = config.routes.iter().map(|r| (String::new(), r));
    let vhosts = config
        .vhosts
        .iter()
        .flat_map(|v| v.routes.iter().map(move |r| (v.hosts.join(","), r)));
    default
        .chain(vhosts)
        .map(|(host, r)| ((host, r.path.clone(), r.kind.name()), r))
}

/// Make a generation from a loaded configuration: hubs of `previous` are
/// kept for the routes that still exist, new ones made (and their demo
/// tickers started); listeners are matched to the ones already bound.
pub fn build(
    shared: &Shared,
    mut config: ServerConfig,
    mut acceptors: Vec<Option<TlsAcceptor>>,
    previous: Option<&State>,
) -> State {
    if let Some(old) = previous {
        (config.listeners, acceptors) = align_listeners(
            &old.config.listeners,
            &old.acceptors,
            std::mem::take(&mut config.listeners),
            acceptors,
        );
        if config.admin.addr != old.config.admin.addr {
            warn!(
                "`admin.addr` changed from {:?} to {:?}: a reload cannot move a listener; restart to apply it",
                old.config.admin.addr, config.admin.addr
            );
            config.admin.addr = old.config.admin.addr;
            config.admin.hosts = old.config.admin.hosts.clone();
        }
    }
    let mut hubs = vec![None; config.route_count];
    let mut engines = vec![None; config.route_count];
    let old_hubs: Vec<OldHub> = previous
        .map(|old| {
            keyed_routes(&old.config)
                .filter_map(|(k, r)| Some((k, old.hubs[r.id].clone()?, old.engines[r.id].clone())))
                .collect()
        })
        .unwrap_or_default();
    if previous.is_some_and(|old| old.config.engine != config.engine) {
        warn!("`[cluster]` changed: a reload keeps the running engine; restart to apply it");
        if let Some(old) = previous {
            config.engine = old.config.engine.clone();
        }
    }
    for (key, r) in keyed_routes(&config) {
        if !matches!(r.kind, RouteKind::Room | RouteKind::Pubsub { .. }) {
            continue;
        }
        let retention = match &r.kind {
            RouteKind::Pubsub {
                history_size,
                history_ttl,
                presence,
                ..
            } => Retention {
                history_size: *history_size,
                history_ttl: *history_ttl,
                presence: *presence,
            },
            _ => Retention::default(),
        };
        let fed = matches!(r.kind, RouteKind::Pubsub { .. })
            && !matches!(config.engine, EngineKind::Memory);
        let (hub, old_engine, made) = match old_hubs.iter().find(|(k, _, _)| *k == key) {
            Some((_, h, e)) => {
                if *h.retention() != retention {
                    warn!(route = %r.path, "`history_size`, `history_ttl` and `presence` changed: a reload keeps the route's channels as they are; restart to apply them");
                }
                (h.clone(), e.clone(), false)
            }
            None => {
                let limits = &config.limits;
                let hub = Hub::with_limits(
                    limits.send_queue,
                    limits.max_queued_bytes_per_connection,
                    shared.budget.clone(),
                )
                .retaining(retention);
                let hub = if fed { hub.fed_by_engine() } else { hub };
                (Arc::new(hub), None, true)
            }
        };
        if let RouteKind::Pubsub { demo_ticker, .. } = &r.kind {
            let engine: Arc<dyn Engine> = match (old_engine, &config.engine) {
                (Some(e), _) => e,
                (None, EngineKind::Memory) => Arc::new(Memory(hub.clone())),
                (None, EngineKind::Redis(settings)) => {
                    redis_route(settings, &key, &hub).map_err(|e| {
                        tracing::error!(route = %r.path, "{e}: this route is served by the in-memory engine");
                    }).unwrap_or_else(|()| Arc::new(Memory(hub.clone())))
                }
                (None, EngineKind::Nats(settings)) => {
                    nats_route(settings, &key, &hub).map_err(|e| {
                        tracing::error!(route = %r.path, "{e}: this route is served by the in-memory engine");
                    }).unwrap_or_else(|()| Arc::new(Memory(hub.clone())))
                }
            };
            if made {
                if let Some(ch) = demo_ticker {
                    tokio::spawn(pubsub::demo_ticker(hub.clone(), engine.clone(), ch.clone()));
                }
                if hub.retention().history_size > 0 {
                    tokio::spawn(hub::sweep(Arc::downgrade(&hub)));
                }
            }
            engines[r.id] = Some(engine);
        }
        hubs[r.id] = Some(hub);
    }
    let mut route_metrics: Vec<Option<Arc<RouteMetrics>>> = vec![None; config.route_count];
    for r in config.all_routes() {
        route_metrics[r.id] = Some(shared.metrics.route(&r.path, r.kind.name()));
    }
    shared.limiter.set_limits(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    shared.http_limiter.set_limits(
        config.limits.max_http_connections,
        config.limits.max_http_connections_per_ip,
    );
    shared.budget.set_limit(config.limits.max_queued_bytes);
    State {
        builder: ServerBuilder::new().config(ws_config(&config)),
        acceptors,
        hubs,
        engines,
        route_metrics: route_metrics.into_iter().map(Option::unwrap).collect(),
        metrics: shared.metrics.clone(),
        limiter: shared.limiter.clone(),
        http_limiter: shared.http_limiter.clone(),
        shutdown: shared.shutdown.clone(),
        active: shared.active.clone(),
        budget: shared.budget.clone(),
        config,
    }
}

/// The new settings for the listeners already bound, in their order: a
/// bound address takes the new settings (allowed hosts, TLS certificate)
/// of the same address; one no longer configured keeps its old settings,
/// and one newly configured is not bound; both are warned about.
fn align_listeners(
    bound: &[ListenerConfig],
    bound_acceptors: &[Option<TlsAcceptor>],
    mut new: Vec<ListenerConfig>,
    mut new_acceptors: Vec<Option<TlsAcceptor>>,
) -> (Vec<ListenerConfig>, Vec<Option<TlsAcceptor>>) {
    let mut listeners = Vec::new();
    let mut acceptors = Vec::new();
    for (l, acc) in bound.iter().zip(bound_acceptors) {
        match new.iter().position(|n| n.addr == l.addr) {
            Some(i) => {
                listeners.push(new.remove(i));
                acceptors.push(new_acceptors.remove(i));
            }
            None => {
                warn!("`[[listen]]` {} is no longer configured, but a reload cannot close a listener: it keeps its previous settings until a restart", l.addr);
                listeners.push(l.clone());
                acceptors.push(acc.clone());
            }
        }
    }
    for n in new {
        warn!(
            "`[[listen]]` {} is new, but a reload cannot open a listener: restart to listen there",
            n.addr
        );
    }
    (listeners, acceptors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::HostRule;

    fn listener(addr: &str, hosts: &[&str]) -> ListenerConfig {
        ListenerConfig {
            addr: addr.parse().unwrap(),
            tls: None,
            hosts: HostRule::Names(hosts.iter().map(|h| h.to_string()).collect()),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            http2: false,
        }
    }

    #[test]
    fn listeners_keep_their_bound_order_and_only_bound_addresses() {
        let bound = [
            listener("127.0.0.1:1", &["a"]),
            listener("127.0.0.1:2", &["b"]),
        ];
        let new = vec![
            listener("127.0.0.1:3", &["new"]),
            listener("127.0.0.1:2", &["b2"]),
        ];
        let (l, acc) = align_listeners(&bound, &[None, None], new, vec![None, None]);
        assert_eq!(acc.len(), 2);
        // :1 is gone from the file but still bound: old settings.
        assert_eq!(l[0].hosts, HostRule::Names(vec!["a".into()]));
        // :2 takes its new settings; :3 cannot be bound by a reload.
        assert_eq!(l[1].addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(l[1].hosts, HostRule::Names(vec!["b2".into()]));
        assert_eq!(l.len(), 2);
    }
}
