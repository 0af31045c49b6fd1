//! `[cluster]`: which engine keeps pub/sub positions, history and
//! presence, and the Redis and NATS engines' settings.

use super::raw::{DurationValue, RawCluster};
use super::resolved::{EngineKind, NatsSettings, RedisSettings, Route, RouteKind};
use super::values::duration_at;
use std::time::Duration;

/// A node name when `cluster.node` is not set: the host name and the
/// process id.
pub(super) fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}", std::process::id())
}

/// Validate `[cluster]`.
pub(super) fn validate_cluster(c: &RawCluster) -> Result<EngineKind, String> {
    let redis_only = [
        ("redis_url", c.redis_url.is_some()),
        ("nats_url", c.nats_url.is_some()),
        ("prefix", c.prefix.is_some()),
        ("node", c.node.is_some()),
        ("io_timeout", c.io_timeout.is_some()),
        ("probe_interval", c.probe_interval.is_some()),
    ];
    match c.engine.as_deref().unwrap_or("memory") {
        "memory" => match redis_only.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(format!(
                "`cluster.{key}` applies to `cluster.engine = \"redis\"` or \"nats\", not \"memory\""
            )),
            None => Ok(EngineKind::Memory),
        },
        "redis" if c.nats_url.is_some() => {
            Err("`cluster.nats_url` applies to `cluster.engine = \"nats\"`, not \"redis\"".into())
        }
        "redis" => redis(c).map(EngineKind::Redis),
        "nats" if c.redis_url.is_some() => {
            Err("`cluster.redis_url` applies to `cluster.engine = \"redis\"`, not \"nats\"".into())
        }
        "nats" => nats(c).map(EngineKind::Nats),
        other => Err(format!(
            "`cluster.engine`: \"{other}\" is not an engine (\"memory\", \"redis\" or \"nats\")"
        )),
    }
}

fn redis(c: &RawCluster) -> Result<RedisSettings, String> {
    let url = c.redis_url.clone().ok_or(
        "`cluster.redis_url` is required with `cluster.engine = \"redis\"` (e.g. \"redis://127.0.0.1:6379/0\")",
    )?;
    if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
        return Err(format!(
            "`cluster.redis_url`: \"{url}\" is not a redis:// URL (e.g. \"redis://127.0.0.1:6379/0\")"
        ));
    }
    let prefix = c.prefix.clone().unwrap_or_else(|| "tether".into());
    let bad_prefix_char =
        |ch: char| ch.is_control() || ch.is_whitespace() || matches!(ch, '{' | '}');
    if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(bad_prefix_char) {
        return Err(format!(
            "`cluster.prefix`: \"{prefix}\" must be 1 to 64 bytes without spaces, control characters or braces (braces are Redis Cluster hash tags)"
        ));
    }
    let node = c.node.clone().unwrap_or_else(default_node);
    let node_char = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_');
    if node.is_empty() || node.len() > 64 || !node.chars().all(node_char) {
        return Err(format!(
            "`cluster.node`: \"{node}\" must be 1 to 64 letters, digits, '.', '-' or '_'"
        ));
    }
    let positive = |v: &Option<DurationValue>, key: &str, default: Duration| {
        let d = match v {
            Some(v) => duration_at(v, &format!("cluster.{key}"))?,
            None => default,
        };
        if d.is_zero() {
            return Err(format!("`cluster.{key}` must be more than 0"));
        }
        Ok::<_, String>(d)
    };
    Ok(RedisSettings {
        url,
        prefix,
        node,
        io_timeout: positive(&c.io_timeout, "io_timeout", Duration::from_secs(2))?,
        probe_interval: positive(&c.probe_interval, "probe_interval", Duration::from_secs(1))?,
    })
}

fn nats(c: &RawCluster) -> Result<NatsSettings, String> {
    let url = c.nats_url.clone().ok_or(
        "`cluster.nats_url` is required with `cluster.engine = \"nats\"` (e.g. \"nats://127.0.0.1:4222\")",
    )?;
    if url
        .split(',')
        .any(|a| a.trim().parse::<async_nats::ServerAddr>().is_err())
    {
        return Err(format!(
            "`cluster.nats_url`: \"{url}\" is not a nats:// URL or a comma-separated list of them (e.g. \"nats://127.0.0.1:4222\")"
        ));
    }
    let prefix = c.prefix.clone().unwrap_or_else(|| "tether".into());
    if prefix.len() > 64
        || prefix.split('.').any(|t| {
            t.is_empty()
                || t.contains(['*', '>'])
                || t.contains(|ch: char| ch.is_whitespace() || ch.is_control())
        })
    {
        return Err(format!(
            "`cluster.prefix`: \"{prefix}\" must be 1 to 64 bytes of dot-separated NATS subject tokens, without spaces, `*` or `>`"
        ));
    }
    // The Redis checks of the shared keys (node, timeouts) apply as they are.
    let shared = redis(&RawCluster {
        redis_url: Some("redis://127.0.0.1:6379/0".into()),
        prefix: Some("tether".into()),
        nats_url: None,
        ..c.clone()
    })?;
    Ok(NatsSettings {
        url,
        prefix,
        node: shared.node,
        io_timeout: shared.io_timeout,
        probe_interval: shared.probe_interval,
    })
}

/// The route options a broker-only engine cannot honour, each named with
/// its key and why.
pub(super) fn check_routes_for_engine<'a>(
    engine: &EngineKind,
    routes: impl Iterator<Item = &'a Route>,
) -> Result<(), String> {
    if !matches!(engine, EngineKind::Nats(_)) {
        return Ok(());
    }
    for r in routes {
        if let RouteKind::Pubsub {
            history_size,
            presence,
            ..
        } = &r.kind
        {
            let refused = crate::serve::cluster::nats::refused_options(*history_size, *presence);
            if !refused.is_empty() {
                return Err(format!("{}: {}", r.name, refused.join("; ")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{RawConfig, ServeArgs, ServerConfig};
    use super::*;

    fn effective(text: &str) -> Result<ServerConfig, String> {
        let raw = RawConfig::parse(text)?.with_args(&ServeArgs::default());
        ServerConfig::from_raw(&raw)
    }

    #[test]
    fn the_redis_engine_needs_a_url_and_checks_each_setting() {
        let e = effective("[cluster]\nengine = \"redis\"\n").unwrap_err();
        assert!(e.contains("`cluster.redis_url` is required"), "{e}");
        let e = effective("[cluster]\nengine = \"kafka\"\n").unwrap_err();
        assert!(e.contains("cluster.engine") && e.contains("redis"), "{e}");
        let e = effective("[cluster]\nredis_url = \"redis://h/0\"\n").unwrap_err();
        assert!(e.contains("`cluster.redis_url` applies to"), "{e}");
        let redis = |extra: &str| {
            effective(&format!(
                "[cluster]\nengine = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n{extra}"
            ))
        };
        for (extra, key) in [
            ("prefix = \"a{b}\"", "cluster.prefix"),
            ("node = \"a b\"", "cluster.node"),
            ("io_timeout = \"0s\"", "cluster.io_timeout"),
            ("probe_interval = \"often\"", "cluster.probe_interval"),
        ] {
            let e = redis(extra).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = effective("[cluster]\nengine = \"redis\"\nredis_url = \"http://x\"\n").unwrap_err();
        assert!(
            e.contains("cluster.redis_url") && e.contains("redis://"),
            "{e}"
        );
        let cfg = redis("node = \"n1\"\nio_timeout = \"500ms\"").unwrap();
        assert_eq!(
            cfg.engine,
            EngineKind::Redis(RedisSettings {
                url: "redis://127.0.0.1:6379/0".into(),
                prefix: "tether".into(),
                node: "n1".into(),
                io_timeout: Duration::from_millis(500),
                probe_interval: Duration::from_secs(1),
            })
        );
    }

    #[test]
    fn the_defaults_of_a_redis_cluster_print_and_load_back() {
        let raw = RawConfig::parse(
            "[cluster]\nengine = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n",
        )
        .unwrap()
        .with_args(&ServeArgs::default());
        let again = RawConfig::parse(&raw.to_toml()).unwrap();
        let EngineKind::Redis(s) = ServerConfig::from_raw(&again).unwrap().engine else {
            panic!("redis");
        };
        assert_eq!(
            (s.io_timeout, s.probe_interval),
            (Duration::from_secs(2), Duration::from_secs(1))
        );
        assert!(!s.node.is_empty());
    }
}
