//! [`RawConfig`] to [`ServerConfig`]: limits, listeners, virtual hosts and
//! the admin listener checked; every error names the key that is wrong.

use super::raw::{DurationValue, RawAdmin, RawConfig, SizeValue};
use super::resolved::{AdminConfig, HostRule, Limits, ListenerConfig, ServerConfig, VHost};
use super::routes::validate_routes;
use super::values::{parse_duration, parse_size_value};
use ipnet::IpNet;
use std::net::SocketAddr;

impl ServerConfig {
    /// Validate an effective raw config (see [`RawConfig::with_args`]).
    pub fn from_raw(raw: &RawConfig) -> Result<ServerConfig, String> {
        let l = &raw.limits;
        let req = |o: Option<usize>, k: &str| o.ok_or_else(|| format!("`limits.{k}` is missing"));
        let size = |o: &Option<SizeValue>, k: &str| match o {
            Some(v) => parse_size_value(v, &format!("limits.{k}")),
            None => Err(format!("`limits.{k}` is missing")),
        };
        let dur = |o: &Option<DurationValue>, k: &str| match o {
            Some(v) => parse_duration(v, k),
            None => Err(format!("`limits.{k}` is missing")),
        };
        let limits = Limits {
            permessage_deflate: l.permessage_deflate.unwrap_or(true),
            max_message_size: size(&l.max_message_size, "max_message_size")?,
            max_connections: req(l.max_connections, "max_connections")?,
            max_connections_per_ip: req(l.max_connections_per_ip, "max_connections_per_ip")?,
            handshake_timeout: dur(&l.handshake_timeout, "handshake_timeout")?,
            ping_interval: dur(&l.ping_interval, "ping_interval")?,
            idle_timeout: dur(&l.idle_timeout, "idle_timeout")?,
            send_queue: req(l.send_queue, "send_queue")?,
            max_queued_bytes_per_connection: size(
                &l.max_queued_bytes_per_connection,
                "max_queued_bytes_per_connection",
            )?,
            max_queued_bytes: size(&l.max_queued_bytes, "max_queued_bytes")?,
            max_subscriptions: req(l.max_subscriptions, "max_subscriptions")?,
            write_buffer: size(&l.write_buffer, "write_buffer")?,
            send_timeout: Some(dur(&l.send_timeout, "send_timeout")?).filter(|d| !d.is_zero()),
            max_http_connections: req(l.max_http_connections, "max_http_connections")?,
            max_http_connections_per_ip: req(
                l.max_http_connections_per_ip,
                "max_http_connections_per_ip",
            )?,
            http_response_timeout: dur(&l.http_response_timeout, "http_response_timeout")?,
            min_send_rate: size(&l.min_send_rate, "min_send_rate")?,
            max_body_size: size(&l.max_body_size, "max_body_size")?,
            shutdown_timeout: dur(&l.shutdown_timeout, "shutdown_timeout")?,
        };
        if limits.send_queue == 0 {
            return Err("`limits.send_queue` must be at least 1".into());
        }
        if limits.min_send_rate == 0 {
            return Err("`limits.min_send_rate` must be at least 1 (bytes per second)".into());
        }
        if limits.max_message_size == 0 {
            return Err("`limits.max_message_size` must be at least 1".into());
        }
        for (key, bytes) in [
            (
                "max_queued_bytes_per_connection",
                limits.max_queued_bytes_per_connection,
            ),
            ("max_queued_bytes", limits.max_queued_bytes),
        ] {
            if bytes < limits.max_message_size {
                return Err(format!(
                    "`limits.{key}` ({bytes} bytes) must be at least `limits.max_message_size` ({} bytes): one message could never be queued",
                    limits.max_message_size
                ));
            }
        }
        if limits.max_subscriptions == 0 {
            return Err("`limits.max_subscriptions` must be at least 1".into());
        }
        let mut next_id = 0;
        let routes = validate_routes(&raw.route, "route", &mut next_id)?;
        let mut vhosts = Vec::new();
        for (i, v) in raw.vhost.iter().enumerate() {
            if v.hosts.is_empty() {
                return Err(format!("`vhost[{i}].hosts` is empty"));
            }
            vhosts.push(VHost {
                hosts: v.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                routes: validate_routes(&v.route, &format!("vhost[{i}].route"), &mut next_id)?,
            });
        }
        let vhost_names: Vec<String> = vhosts.iter().flat_map(|v| v.hosts.clone()).collect();
        let global_proxies = cidrs(&raw.trusted_proxies, "trusted_proxies")?;
        let mut listeners = Vec::new();
        for (i, raw_l) in raw.listen.iter().enumerate() {
            let addr: SocketAddr = raw_l.addr.parse().map_err(|_| {
                format!(
                    "`listen[{i}].addr`: `{}` is not IP:PORT (e.g. 127.0.0.1:8080)",
                    raw_l.addr
                )
            })?;
            let tls = match (&raw_l.tls_cert, &raw_l.tls_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                _ => return Err(format!("`listen[{i}]`: set both `tls_cert` and `tls_key`")),
            };
            let hosts = match &raw_l.allowed_hosts {
                Some(h) if h.iter().any(|h| h == "*") => HostRule::Any,
                Some(h) => HostRule::Names(h.iter().map(|h| h.to_ascii_lowercase()).collect()),
                None if addr.ip().is_loopback() => HostRule::Loopback,
                None if !vhost_names.is_empty() => HostRule::Names(vhost_names.clone()),
                None => {
                    return Err(format!(
                        "`listen[{i}]` ({addr}) is not a loopback address, so it needs `allowed_hosts`: \
                         answering any Host lets a web page on any domain that resolves here read it \
                         as same-origin (DNS rebinding). Set `listen[{i}].allowed_hosts = [\"your.host.name\"]` \
                         (or [\"*\"] to accept any Host), or pass --allowed-host NAME (repeatable; \
                         --allowed-host '*' for any)"
                    ))
                }
            };
            let trusted_proxies = match &raw_l.trusted_proxies {
                Some(list) => cidrs(list, &format!("listen[{i}].trusted_proxies"))?,
                None => global_proxies.clone(),
            };
            listeners.push(ListenerConfig {
                addr,
                tls,
                hosts,
                trusted_proxies,
                proxy_protocol: raw_l.proxy_protocol.unwrap_or(false),
                http2: raw_l.http2.unwrap_or(false),
            });
        }
        if listeners.is_empty() {
            return Err("no `[[listen]]` address".into());
        }
        let admin = validate_admin(raw.admin.as_ref(), &listeners)?;
        let engine = super::cluster::validate_cluster(&raw.cluster)?;
        let deflate = match limits.permessage_deflate {
            true => Some(raw.deflate.validate()?),
            false => None,
        };
        let config = ServerConfig {
            listeners,
            limits,
            routes,
            vhosts,
            route_count: next_id,
            admin,
            engine,
            deflate,
            http2: raw.http2.validate()?,
        };
        super::cluster::check_routes_for_engine(&config.engine, config.all_routes())?;
        Ok(config)
    }
}

fn validate_admin(
    raw: Option<&RawAdmin>,
    listeners: &[ListenerConfig],
) -> Result<AdminConfig, String> {
    let Some(raw) = raw else {
        return Ok(AdminConfig::default());
    };
    let addr = match &raw.addr {
        None => None,
        Some(a) => {
            let addr: SocketAddr = a
                .parse()
                .map_err(|_| format!("`admin.addr`: `{a}` is not IP:PORT (e.g. 127.0.0.1:9090)"))?;
            if let Some(i) = listeners
                .iter()
                .position(|l| l.addr == addr && addr.port() != 0)
            {
                return Err(format!(
                    "`admin.addr` {addr} is also `listen[{i}].addr`: give the admin listener its own port"
                ));
            }
            Some(addr)
        }
    };
    if matches!(&raw.metrics_token, Some(t) if t.is_empty()) {
        return Err("`admin.metrics_token` is empty (leave it out for no token)".into());
    }
    let hosts = match (&raw.allowed_hosts, addr) {
        (Some(h), _) if h.iter().any(|h| h == "*") => HostRule::Any,
        (Some(h), _) => HostRule::Names(h.iter().map(|h| h.to_ascii_lowercase()).collect()),
        (None, Some(a)) if a.ip().is_loopback() => HostRule::Loopback,
        (None, None) => HostRule::Loopback,
        (None, Some(_)) if raw.metrics_token.is_some() => HostRule::Any,
        (None, Some(a)) => {
            return Err(format!(
                "`admin.addr` ({a}) is not a loopback address, so it needs `admin.allowed_hosts` \
                 (the names or addresses scrapers use, or [\"*\"]) or `admin.metrics_token`: \
                 otherwise a web page on any domain that resolves here can read /metrics \
                 (DNS rebinding)"
            ))
        }
    };
    Ok(AdminConfig {
        addr,
        hosts,
        metrics_token: raw.metrics_token.clone(),
    })
}

/// A list of networks (`10.0.0.0/8`) or addresses (`192.0.2.1`, meaning
/// that one address).
fn cidrs(list: &[String], key: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    format!("`{key}`: `{s}` is not an address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)")
                })
        })
        .collect()
}
