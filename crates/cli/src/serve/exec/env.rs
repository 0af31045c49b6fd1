//! The environment of an exec route's program: PATH, the CGI variables of
//! its request and the variables the route passes on (`pass_env`); nothing
//! else of the server's environment (which may hold secrets).

use crate::serve::policy::Upgrade;
use std::ffi::OsString;
use std::net::SocketAddr;

/// PATH for the program when the server has none.
pub(super) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the program is told about its request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The port the request arrived on.
    pub server_port: Option<u16>,
    /// The request path.
    pub path: String,
    /// The route's path as configured.
    pub route_path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Arrived over TLS.
    pub https: bool,
    /// `Host`.
    pub host: String,
    /// `Origin`.
    pub origin: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Cookie`.
    pub cookie: Option<String>,
    /// The subprotocol chosen.
    pub protocol: Option<String>,
    /// The authenticated subject (JWT `sub`).
    pub user: Option<String>,
}

impl RequestFacts {
    /// The facts of an admitted handshake: `route_path` is the route's path
    /// as configured, `server_port` the port it arrived on, `protocol` the
    /// subprotocol chosen, `user` the authenticated subject.
    pub fn new(
        up: &Upgrade<'_>,
        route_path: &str,
        server_port: Option<u16>,
        protocol: Option<String>,
        user: Option<String>,
    ) -> RequestFacts {
        let header = |name: http::HeaderName| {
            up.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        RequestFacts {
            remote: Some(up.client),
            server_port,
            path: up.path.to_owned(),
            route_path: route_path.to_owned(),
            query: up.query.to_owned(),
            https: up.https,
            host: up.host.to_owned(),
            origin: up.origin.map(str::to_owned),
            user_agent: header(http::header::USER_AGENT),
            cookie: header(http::header::COOKIE),
            protocol,
            user,
        }
    }
}

/// The program's whole environment: PATH (the server's, or a default), the
/// CGI variables, then each `pass_env` name the server's environment has.
pub fn environment(req: &RequestFacts, pass_env: &[String]) -> Vec<(OsString, OsString)> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut env: Vec<(OsString, OsString)> = [
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        ("REQUEST_METHOD", "GET".to_owned()),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_owned()),
        (
            "REMOTE_ADDR",
            req.remote.map(|a| a.ip().to_string()).unwrap_or_default(),
        ),
        (
            "REMOTE_PORT",
            req.remote.map(|a| a.port().to_string()).unwrap_or_default(),
        ),
        (
            "SERVER_PORT",
            req.server_port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("PATH_INFO", req.path.clone()),
        ("SCRIPT_NAME", req.route_path.clone()),
        ("QUERY_STRING", req.query.clone()),
        ("HTTPS", if req.https { "on" } else { "off" }.to_owned()),
        ("HTTP_HOST", req.host.clone()),
        ("HTTP_ORIGIN", or_empty(&req.origin)),
        ("HTTP_USER_AGENT", or_empty(&req.user_agent)),
        ("HTTP_COOKIE", or_empty(&req.cookie)),
        ("SEC_WEBSOCKET_PROTOCOL", or_empty(&req.protocol)),
        ("REMOTE_USER", or_empty(&req.user)),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    env.push(("PATH".into(), path));
    for name in pass_env {
        if let Some(v) = std::env::var_os(name) {
            env.push((name.into(), v));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_path_cgi_variables_and_the_pass_list_are_set() {
        let req = RequestFacts {
            remote: Some("127.0.0.1:4000".parse().unwrap()),
            path: "/ws".into(),
            query: "a=1".into(),
            ..Default::default()
        };
        // Every test process has HOME and PATH; CARGO is set by cargo.
        let env = environment(&req, &["HOME".to_owned(), "NOT_SET_ANYWHERE_X".to_owned()]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1".into()));
        assert_eq!(get("REMOTE_PORT"), Some("4000".into()));
        assert_eq!(get("QUERY_STRING"), Some("a=1".into()));
        assert_eq!(get("PATH"), std::env::var_os("PATH"));
        assert_eq!(get("HOME"), std::env::var_os("HOME"));
        assert_eq!(get("NOT_SET_ANYWHERE_X"), None);
        assert_eq!(get("CARGO"), None);
    }

    #[test]
    fn the_request_facts_come_from_the_admitted_handshake() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::USER_AGENT, "probe/1".parse().unwrap());
        headers.insert(http::header::COOKIE, "a=b".parse().unwrap());
        let up = Upgrade {
            host: "example.com",
            path: "/x/y",
            query: "q=1",
            origin: Some("https://example.com"),
            headers: &headers,
            client: "192.0.2.7:5555".parse().unwrap(),
            https: true,
        };
        let facts = RequestFacts::new(&up, "/x/{id}", Some(443), Some("chat".into()), None);
        let env = environment(&facts, &[]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        for (k, v) in [
            ("REMOTE_ADDR", "192.0.2.7"),
            ("SERVER_PORT", "443"),
            ("PATH_INFO", "/x/y"),
            ("SCRIPT_NAME", "/x/{id}"),
            ("QUERY_STRING", "q=1"),
            ("HTTPS", "on"),
            ("HTTP_HOST", "example.com"),
            ("HTTP_ORIGIN", "https://example.com"),
            ("HTTP_USER_AGENT", "probe/1"),
            ("HTTP_COOKIE", "a=b"),
            ("SEC_WEBSOCKET_PROTOCOL", "chat"),
            ("REMOTE_USER", ""),
        ] {
            assert_eq!(get(k), Some(v.into()), "{k}");
        }
    }
}
