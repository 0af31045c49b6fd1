//! The DNS-rebinding defence: which `Host` names a listener answers.

use crate::serve::config::HostRule;

/// Split a `Host` header value into lowercase name and optional port.
/// `[::1]:8080` gives `("[::1]", Some(8080))`.
pub fn split_host(host: &str) -> (String, Option<u16>) {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => {
                let rest = &host[end + 1..];
                (&host[..=end], rest.strip_prefix(':'))
            }
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    (name.to_ascii_lowercase(), port.and_then(|p| p.parse().ok()))
}

/// The DNS-rebinding check.
pub fn host_allowed(rule: &HostRule, host: &str) -> bool {
    let (name, _) = split_host(host);
    match rule {
        HostRule::Any => true,
        HostRule::Loopback => matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]"),
        HostRule::Names(names) => names.contains(&name),
    }
}

/// Why `host` is refused by `rule` on `listen[idx]`, naming the setting that
/// would allow it (for the log).
pub fn host_refusal(rule: &HostRule, host: &str, idx: usize) -> String {
    let (name, _) = split_host(host);
    match rule {
        HostRule::Loopback => format!(
            "Host {host:?} not allowed by listen[{idx}] (loopback names only: localhost, 127.0.0.1, [::1]); add {name:?} to listen[{idx}].allowed_hosts"
        ),
        HostRule::Names(names) => {
            format!("Host {host:?} not in listen[{idx}].allowed_hosts {names:?}")
        }
        HostRule::Any => format!("Host {host:?} refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_refuses_rebound_names() {
        assert!(host_allowed(&HostRule::Loopback, "localhost:8080"));
        assert!(host_allowed(&HostRule::Loopback, "127.0.0.1"));
        assert!(host_allowed(&HostRule::Loopback, "[::1]:80"));
        assert!(!host_allowed(&HostRule::Loopback, "evil.example:8080"));
        assert!(!host_allowed(&HostRule::Loopback, "127.0.0.1.evil.example"));
    }
}
