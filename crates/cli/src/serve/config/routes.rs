//! `[[route]]` tables to [`Route`]s: each field checked against the route's
//! kind, errors prefixed with where the route is configured
//! (`route[2] (/chat/{room}): ...`).

use super::pattern::PathPattern;
use super::raw::{ClientPublish, DurationValue, OneOrMany, RawAuth, RawRoute};
use super::resolved::{AuthConfig, ExecRoute, Route, RouteKind, SseRoute};
use super::values::duration_at;
use super::MAX_NAME;
use crate::serve::auth::{ClaimRules, JwtVerifier, KeySource};
use std::sync::Arc;
use tether::OriginPolicy;

pub(super) fn validate_routes(
    raw: &[RawRoute],
    table: &str,
    next_id: &mut usize,
) -> Result<Vec<Route>, String> {
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("{table}[{i}] ({})", r.path);
        // A second route on one path could never be reached.
        if let Some(first) = routes.iter().find(|f| f.path == r.path) {
            return Err(format!(
                "{at}: `path` {} is already the path of {}; each path is one route",
                r.path, first.name
            ));
        }
        let route = validate_route(r).map_err(|e| format!("{at}: {e}"))?;
        routes.push(Route {
            id: *next_id,
            name: at,
            ..route
        });
        *next_id += 1;
    }
    Ok(routes)
}

/// The exec-only keys of a route whose `command` and `mode` are known.
fn validate_exec(r: &RawRoute, command: Vec<String>, binary: bool) -> Result<ExecRoute, String> {
    crate::serve::exec::find_program(&command[0], std::env::var_os("PATH").as_deref())
        .map_err(|e| format!("`command`: {e}"))?;
    let max_processes = r.max_processes.ok_or("`max_processes` is missing")?;
    if max_processes == 0 {
        return Err("`max_processes` must be at least 1".into());
    }
    let dur = |v: &Option<DurationValue>, key: &str| match v {
        Some(v) => duration_at(v, key),
        None => Err(format!("`{key}` is missing")),
    };
    let stdin_timeout = dur(&r.stdin_timeout, "stdin_timeout")?;
    if stdin_timeout.is_zero() {
        return Err("`stdin_timeout` must be more than 0".into());
    }
    let pass_env = r.pass_env.clone().unwrap_or_default();
    if let Some(bad) = pass_env
        .iter()
        .find(|n| n.is_empty() || n.contains(['=', '\0']))
    {
        return Err(format!(
            "`pass_env`: `{bad}` is not an environment variable name"
        ));
    }
    Ok(ExecRoute {
        command,
        binary,
        max_processes,
        stdin_timeout,
        exit_grace: dur(&r.exit_grace, "exit_grace")?,
        pass_env,
    })
}

fn validate_route(r: &RawRoute) -> Result<Route, String> {
    let only = |present: bool, key: &str, kinds: &str| {
        if present {
            Err(format!(
                "`{key}` only applies to kind = {kinds}, not \"{}\"",
                r.kind
            ))
        } else {
            Ok(())
        }
    };
    let kind = r.kind.as_str();
    only(r.dir.is_some() && kind != "static", "dir", "\"static\"")?;
    only(r.command.is_some() && kind != "exec", "command", "\"exec\"")?;
    only(r.mode.is_some() && kind != "exec", "mode", "\"exec\"")?;
    let exec_only = r.max_processes.is_some()
        || r.stdin_timeout.is_some()
        || r.exit_grace.is_some()
        || r.pass_env.is_some();
    only(
        exec_only && kind != "exec",
        "max_processes/stdin_timeout/exit_grace/pass_env",
        "\"exec\"",
    )?;
    let pubsub_only = r.publish_path.is_some()
        || r.publish_token.is_some()
        || r.demo_ticker.is_some()
        || r.client_publish.is_some()
        || r.history_size.is_some()
        || r.history_ttl.is_some()
        || r.presence.is_some()
        || r.sse.is_some();
    only(
        pubsub_only && kind != "pubsub",
        "publish_path/publish_token/demo_ticker/client_publish/history_size/history_ttl/presence/sse",
        "\"pubsub\"",
    )?;
    let kind = match kind {
        "demo" => RouteKind::Demo,
        "static" => {
            let dir = r
                .dir
                .as_ref()
                .ok_or("`dir` is required for kind = \"static\"")?;
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("`dir` {}: {e}", dir.display()))?;
            if !dir.is_dir() {
                return Err(format!("`dir` {} is not a directory", dir.display()));
            }
            RouteKind::Static { dir }
        }
        "echo" => RouteKind::Echo,
        "room" => RouteKind::Room,
        "pubsub" => {
            let publish_path = match (&r.publish_path, &r.publish_token) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(_)) => Some("/api/publish".to_owned()),
                (None, None) => None,
            };
            if let Some(p) = &publish_path {
                if !p.starts_with('/') {
                    return Err(format!("`publish_path` must start with `/` (got `{p}`)"));
                }
            }
            if matches!(&r.publish_token, Some(t) if t.is_empty()) {
                return Err("`publish_token` is empty".into());
            }
            let client_publish = match &r.client_publish {
                None | Some(ClientPublish::All(false)) => Vec::new(),
                Some(ClientPublish::All(true)) => vec!["*".to_owned()],
                Some(ClientPublish::Patterns(p)) => {
                    if let Some(bad) = p.iter().find(|p| p.is_empty() || p.len() > MAX_NAME) {
                        return Err(format!(
                            "`client_publish`: `{bad}` is not a channel name or prefix (1 to {MAX_NAME} bytes)"
                        ));
                    }
                    p.clone()
                }
            };
            let history_ttl = match &r.history_ttl {
                None => None,
                Some(v) => {
                    let ttl = duration_at(v, "history_ttl")?;
                    if ttl.is_zero() {
                        return Err("`history_ttl` must be more than 0 (leave it out to keep history until it is pushed out)".into());
                    }
                    Some(ttl)
                }
            };
            let history_size = r.history_size.unwrap_or(0);
            if history_ttl.is_some() && history_size == 0 {
                return Err(
                    "`history_ttl` needs `history_size` (messages kept per channel)".into(),
                );
            }
            RouteKind::Pubsub {
                publish_path,
                publish_token: r.publish_token.clone(),
                demo_ticker: r.demo_ticker.clone(),
                client_publish,
                history_size,
                history_ttl,
                presence: r.presence.unwrap_or(false),
                sse: validate_sse(r)?,
            }
        }
        "exec" => {
            let command = r
                .command
                .clone()
                .ok_or("`command` is required for kind = \"exec\"")?;
            if command.is_empty() || command[0].is_empty() {
                return Err("`command` needs at least the program".into());
            }
            let binary = match r.mode.as_deref() {
                None | Some("lines") => false,
                Some("binary") => true,
                Some(m) => {
                    return Err(format!(
                        "`mode` must be \"lines\" or \"binary\", not \"{m}\""
                    ))
                }
            };
            RouteKind::Exec(validate_exec(r, command, binary)?)
        }
        other => {
            return Err(format!(
                "unknown `kind` \"{other}\" (one of demo, static, echo, room, pubsub, exec)"
            ))
        }
    };
    let pattern = PathPattern::parse(&r.path, matches!(kind, RouteKind::Static { .. }))?;
    let origins = match &r.origins {
        None => OriginPolicy::SameOrigin,
        Some(list) if list.iter().any(|o| o == "*") => OriginPolicy::Any,
        Some(list) => {
            let mut out = Vec::new();
            for o in list {
                let o = o.trim_end_matches('/').to_ascii_lowercase();
                if o != "null" && !o.contains("://") {
                    return Err(format!(
                        "`origins`: `{o}` is not an origin like https://example.com"
                    ));
                }
                out.push(o);
            }
            OriginPolicy::List(out)
        }
    };
    let auth = match &r.auth {
        None => None,
        Some(a) => {
            let jwt = validate_jwt(a)?;
            if a.tokens.is_empty() && jwt.is_none() {
                return Err(
                    "`auth` needs `tokens`, `jwt_secret`, `jwt_public_key` or `jwks`".into(),
                );
            }
            if a.tokens.iter().any(|t| t.is_empty()) {
                return Err("`auth.tokens` contains an empty token".into());
            }
            Some(AuthConfig {
                tokens: a.tokens.clone(),
                jwt: jwt.map(Arc::new),
                cookie: a.cookie.clone(),
                query_param: a
                    .query_param
                    .clone()
                    .unwrap_or_else(|| "access_token".into()),
            })
        }
    };
    for p in &r.protocols {
        if !tether::proto::handshake::is_token(p) {
            return Err(format!(
                "`protocols`: `{p}` is not a valid subprotocol token"
            ));
        }
    }
    Ok(Route {
        id: 0,
        name: String::new(),
        path: r.path.clone(),
        pattern,
        kind,
        protocols: r.protocols.clone(),
        origins,
        auth,
    })
}

/// The JWT settings of a route's `auth`: one key source (files read here,
/// so a reload re-reads them) and the claim rules.
fn validate_jwt(a: &RawAuth) -> Result<Option<JwtVerifier>, String> {
    let sources = [
        a.jwt_secret.as_deref().map(KeySource::Secret),
        a.jwt_public_key.as_deref().map(KeySource::PemFile),
        a.jwks.as_deref().map(KeySource::JwksFile),
    ];
    let mut sources = sources.into_iter().flatten();
    let Some(source) = sources.next() else {
        let jwt_only = a.issuer.is_some()
            || a.audience.is_some()
            || a.leeway.is_some()
            || a.max_lifetime.is_some();
        if jwt_only {
            return Err(
                "`auth.issuer`/`audience`/`leeway`/`max_lifetime` need a JWT key: \
                 `jwt_secret`, `jwt_public_key` or `jwks`"
                    .into(),
            );
        }
        return Ok(None);
    };
    if sources.next().is_some() {
        return Err("`auth`: set only one of `jwt_secret`, `jwt_public_key`, `jwks`".into());
    }
    let key = match &source {
        KeySource::Secret("") => return Err("`auth.jwt_secret` is empty".into()),
        KeySource::Secret(_) => "auth.jwt_secret",
        KeySource::PemFile(_) => "auth.jwt_public_key",
        KeySource::JwksFile(_) => "auth.jwks",
    };
    let leeway = match &a.leeway {
        Some(v) => duration_at(v, "auth.leeway")?.as_secs(),
        None => 30,
    };
    let max_lifetime = match &a.max_lifetime {
        Some(v) => Some(duration_at(v, "auth.max_lifetime")?.as_secs()),
        None => None,
    };
    let audience = a.audience.as_ref().map(OneOrMany::to_vec);
    if matches!(&audience, Some(v) if v.is_empty() || v.iter().any(String::is_empty)) {
        return Err("`auth.audience` is empty".into());
    }
    if matches!(&a.issuer, Some(i) if i.is_empty()) {
        return Err("`auth.issuer` is empty".into());
    }
    let rules = ClaimRules {
        leeway,
        max_lifetime,
        issuer: a.issuer.clone(),
        audience,
    };
    JwtVerifier::load(source, rules)
        .map(Some)
        .map_err(|e| format!("`{key}`: {e}"))
}

/// The `sse*` keys of a pubsub route.
fn validate_sse(r: &RawRoute) -> Result<Option<SseRoute>, String> {
    if r.sse != Some(true) {
        let set = [
            ("sse_retry", r.sse_retry.is_some()),
            ("sse_heartbeat", r.sse_heartbeat.is_some()),
            ("sse_max_lifetime", r.sse_max_lifetime.is_some()),
        ];
        return match set.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(format!("`{key}` needs `sse = true`")),
            None => Ok(None),
        };
    }
    if r.path.contains('{') {
        return Err(format!(
            "`sse` needs a path without `{{name}}` captures (got `{}`)",
            r.path
        ));
    }
    let dur = |v: &Option<DurationValue>, key: &str| match v {
        Some(v) => duration_at(v, key),
        None => Err(format!("`{key}` is missing")),
    };
    let retry = dur(&r.sse_retry, "sse_retry")?;
    let heartbeat = dur(&r.sse_heartbeat, "sse_heartbeat")?;
    if heartbeat.is_zero() {
        return Err("`sse_heartbeat` must be more than 0 (proxies close silent streams)".into());
    }
    let max_lifetime = dur(&r.sse_max_lifetime, "sse_max_lifetime")?;
    Ok(Some(SseRoute {
        path: format!("{}/events", r.path.trim_end_matches('/')),
        retry,
        heartbeat,
        max_lifetime: (!max_lifetime.is_zero()).then_some(max_lifetime),
    }))
}
