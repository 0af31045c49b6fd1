use super::pattern::PathPattern;
use super::*;
use std::time::Duration;

fn effective(text: &str) -> Result<ServerConfig, String> {
    let raw = RawConfig::parse(text)?.with_args(&ServeArgs::default());
    ServerConfig::from_raw(&raw)
}

#[test]
fn builtin_config_validates_and_round_trips() {
    let raw = RawConfig::builtin("t".into()).with_args(&ServeArgs::default());
    let printed = raw.to_toml();
    let again = RawConfig::parse(&printed).unwrap();
    let cfg = ServerConfig::from_raw(&again).unwrap();
    assert_eq!(cfg.routes.len(), 4);
    assert_eq!(cfg.listeners[0].hosts, HostRule::Loopback);
    assert_eq!(cfg.limits.max_message_size, 1 << 20);
}

#[test]
fn example_file_validates() {
    let text = include_str!("../assets/example.toml").replace("./public", ".");
    let cfg = effective(&text).unwrap();
    assert_eq!(cfg.routes.len(), 5);
    assert_eq!(cfg.vhosts[0].routes.len(), 1);
    assert_eq!(cfg.route_count, 6);
    assert!(matches!(
        cfg.routes[4].kind,
        RouteKind::Exec(ExecRoute { binary: false, .. })
    ));
    assert_eq!(
        cfg.routes[2].origins,
        tether::OriginPolicy::List(vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into()
        ])
    );
}

#[test]
fn queue_limits_have_defaults_and_are_checked_against_the_message_size() {
    let cfg = effective("").unwrap();
    assert_eq!(cfg.limits.max_queued_bytes_per_connection, 8 << 20);
    assert_eq!(cfg.limits.max_queued_bytes, 256 << 20);
    assert_eq!(cfg.limits.max_subscriptions, 128);
    let e = effective("[limits]\nmax_queued_bytes_per_connection = \"64K\"\n").unwrap_err();
    assert!(
        e.contains("limits.max_queued_bytes_per_connection")
            && e.contains("limits.max_message_size"),
        "{e}"
    );
    // Raising the message size alone keeps the defaults valid.
    let big = effective("[limits]\nmax_message_size = \"64M\"\n").unwrap();
    assert_eq!(big.limits.max_queued_bytes_per_connection, 128 << 20);
    assert_eq!(big.limits.max_queued_bytes, 256 << 20);
    let e = effective("[limits]\nmax_subscriptions = 0\n").unwrap_err();
    assert!(e.contains("limits.max_subscriptions"), "{e}");
}

#[test]
fn sse_is_a_pubsub_route_option_with_defaults() {
    let sse_of = |cfg: &ServerConfig| match &cfg.routes[0].kind {
        RouteKind::Pubsub { sse, .. } => sse.clone(),
        other => panic!("{other:?}"),
    };
    let pubsub = "[[route]]\npath = \"/p/\"\nkind = \"pubsub\"\n";
    assert_eq!(sse_of(&effective(pubsub).unwrap()), None);
    let on = effective(&format!("{pubsub}sse = true\n")).unwrap();
    assert_eq!(
        sse_of(&on),
        Some(SseRoute {
            path: "/p/events".into(),
            retry: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            max_lifetime: None,
        })
    );
    let set = effective(&format!(
        "{pubsub}sse = true\nsse_retry = \"500ms\"\nsse_heartbeat = \"1s\"\nsse_max_lifetime = \"1h\"\n"
    ))
    .unwrap();
    let set = sse_of(&set).unwrap();
    assert_eq!(
        (set.retry, set.heartbeat, set.max_lifetime),
        (
            Duration::from_millis(500),
            Duration::from_secs(1),
            Some(Duration::from_secs(3600))
        )
    );
    let e = effective(&format!("{pubsub}sse_heartbeat = \"1s\"\n")).unwrap_err();
    assert!(e.contains("`sse_heartbeat` needs `sse = true`"), "{e}");
    let e = effective(&format!("{pubsub}sse = true\nsse_heartbeat = 0\n")).unwrap_err();
    assert!(
        e.contains("route[0] (/p/)") && e.contains("`sse_heartbeat`"),
        "{e}"
    );
    let e = effective("[[route]]\npath = \"/r\"\nkind = \"room\"\nsse = true\n").unwrap_err();
    assert!(e.contains("sse"), "{e}");
    let e = effective("[[route]]\npath = \"/p/{x}\"\nkind = \"pubsub\"\nsse = true\n").unwrap_err();
    assert!(e.contains("captures"), "{e}");
}

#[test]
fn history_and_presence_are_pubsub_route_options() {
    let cfg = effective(
        "[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_size = 100\nhistory_ttl = \"10m\"\npresence = true\n",
    )
    .unwrap();
    match &cfg.routes[0].kind {
        RouteKind::Pubsub {
            history_size,
            history_ttl,
            presence,
            ..
        } => {
            assert_eq!(*history_size, 100);
            assert_eq!(*history_ttl, Some(Duration::from_secs(600)));
            assert!(*presence);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.engine, EngineKind::Memory);
    let e = effective(
        "[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_ttl = \"soon\"\nhistory_size = 1\n",
    )
    .unwrap_err();
    assert!(
        e.contains("route[0] (/p)") && e.contains("`history_ttl`"),
        "{e}"
    );
    let e = effective("[[route]]\npath = \"/p\"\nkind = \"pubsub\"\nhistory_ttl = \"1m\"\n")
        .unwrap_err();
    assert!(e.contains("history_size"), "{e}");
    let e = effective("[[route]]\npath = \"/r\"\nkind = \"room\"\npresence = true\n").unwrap_err();
    assert!(e.contains("presence"), "{e}");
}

#[test]
fn client_publish_is_off_unless_allowed() {
    let kind = |extra: &str| {
        let cfg = effective(&format!(
            "[[route]]\npath = \"/p\"\nkind = \"pubsub\"\n{extra}"
        ))
        .unwrap();
        match &cfg.routes[0].kind {
            RouteKind::Pubsub { client_publish, .. } => client_publish.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert!(kind("").is_empty());
    assert!(kind("client_publish = false\n").is_empty());
    assert_eq!(kind("client_publish = true\n"), ["*"]);
    assert_eq!(kind("client_publish = [\"chat.*\"]\n"), ["chat.*"]);
    let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\nclient_publish = true\n")
        .unwrap_err();
    assert!(e.contains("client_publish"), "{e}");
    // The built-in demo lets clients publish into its chat rooms only
    // (its ticker is the server's own).
    let raw = RawConfig::builtin("t".into()).with_args(&ServeArgs::default());
    let builtin = ServerConfig::from_raw(&raw).unwrap();
    assert!(builtin.routes.iter().all(|r| match &r.kind {
        RouteKind::Pubsub { client_publish, .. } => client_publish == &["chat.*"],
        _ => true,
    }));
}

#[test]
fn the_same_route_path_twice_in_a_host_is_refused_naming_both() {
    let routes = "[[route]]\npath = \"/a\"\nkind = \"echo\"\n\
                  [[route]]\npath = \"/b\"\nkind = \"echo\"\n\
                  [[route]]\npath = \"/a\"\nkind = \"room\"\n";
    let e = effective(routes).unwrap_err();
    assert!(
        e.contains("route[0] (/a)") && e.contains("route[2] (/a)"),
        "{e}"
    );
    // One path in two virtual hosts is two routes.
    let vhost = "[[route]]\npath = \"/a\"\nkind = \"echo\"\n\
                 [[vhost]]\nhosts = [\"a.example\"]\n\
                 [[vhost.route]]\npath = \"/a\"\nkind = \"echo\"\n";
    effective(vhost).unwrap();
}

#[test]
fn unknown_key_is_named() {
    let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\ncolour = 1\n").unwrap_err();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn field_of_another_kind_is_refused_with_route_named() {
    let e = effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\ndir = \"/tmp\"\n").unwrap_err();
    assert!(e.contains("route[0] (/e)") && e.contains("`dir`"), "{e}");
}

#[test]
fn jwt_key_errors_name_the_key_and_file() {
    let route =
        |auth: &str| format!("[[route]]\npath = \"/k\"\nkind = \"echo\"\nauth = {{ {auth} }}\n");
    let e = effective(&route("jwks = \"/nonexistent/keys.json\"")).unwrap_err();
    assert!(
        e.contains("route[0] (/k): `auth.jwks`: cannot read /nonexistent/keys.json"),
        "{e}"
    );
    let e = effective(&route("jwt_secret = \"a\", jwks = \"k.json\"")).unwrap_err();
    assert!(e.contains("only one of"), "{e}");
    let e = effective(&route("tokens = [\"t\"], issuer = \"x\"")).unwrap_err();
    assert!(e.contains("need a JWT key"), "{e}");
    let e = effective(&route("jwt_secret = \"a\", leeway = \"soon\"")).unwrap_err();
    assert!(e.contains("`auth.leeway`"), "{e}");
    let cfg = effective(&route(
        "jwt_secret = \"a\", audience = \"api\", max_lifetime = \"1h\"",
    ))
    .unwrap();
    assert!(cfg.routes[0].auth.as_ref().unwrap().jwt.is_some());
}

#[test]
fn http2_is_off_unless_a_listener_opts_in() {
    let cfg = effective(
        "[[listen]]\naddr = \"127.0.0.1:1\"\n[[listen]]\naddr = \"127.0.0.1:2\"\nhttp2 = true\n",
    )
    .unwrap();
    assert!(!cfg.listeners[0].http2 && cfg.listeners[1].http2);
    let e = effective("[[listen]]\naddr = \"127.0.0.1:1\"\nhttp2 = \"yes\"\n").unwrap_err();
    assert!(e.contains("http2"), "{e}");
    // --http2 turns it on for every listener, --listen's included.
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        http2: true,
        ..Default::default()
    };
    let raw = RawConfig::builtin("t".into()).with_args(&args);
    let cfg = ServerConfig::from_raw(&raw).unwrap();
    assert!(cfg.listeners.iter().all(|l| l.http2));
}

#[test]
fn trusted_proxies_per_listener_or_global() {
    let cfg = effective(
        "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n[[listen]]\naddr = \"127.0.0.1:1\"\n[[listen]]\naddr = \"127.0.0.1:2\"\ntrusted_proxies = []\nproxy_protocol = true\n",
    )
    .unwrap();
    let l = &cfg.listeners;
    assert_eq!(l[0].trusted_proxies.len(), 2);
    assert!(l[0].trusted_proxies[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap()));
    assert!(l[1].trusted_proxies.is_empty() && l[1].proxy_protocol && !l[0].proxy_protocol);
    let e = effective("[[listen]]\naddr = \"127.0.0.1:1\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
        .unwrap_err();
    assert!(
        e.contains("`listen[0].trusted_proxies`: `10.0.0.0/33`"),
        "{e}"
    );
    // Printed and read back.
    let raw = RawConfig::parse(
        "trusted_proxies = [\"10.0.0.0/8\"]\n[[route]]\npath = \"/e\"\nkind = \"echo\"\n",
    )
    .unwrap()
    .with_args(&ServeArgs::default());
    let again = RawConfig::parse(&raw.to_toml()).unwrap();
    assert_eq!(again.trusted_proxies, vec!["10.0.0.0/8".to_owned()]);
}

#[test]
fn bad_duration_names_the_key() {
    let e = effective("[limits]\nidle_timeout = \"soon\"\n").unwrap_err();
    assert!(e.contains("limits.idle_timeout"), "{e}");
}

#[test]
fn send_timeout_defaults_to_30s_and_0_turns_it_off() {
    assert_eq!(
        effective("").unwrap().limits.send_timeout,
        Some(Duration::from_secs(30))
    );
    let off = effective("[limits]\nsend_timeout = 0\n").unwrap();
    assert_eq!(off.limits.send_timeout, None);
    let e = effective("[limits]\nsend_timeout = \"1 week\"\n").unwrap_err();
    assert!(e.contains("limits.send_timeout"), "{e}");
}

#[test]
fn http_connection_limits_are_their_own() {
    // A low WebSocket limit does not refuse plain HTTP (nor handshakes
    // before the WebSocket limit answers them).
    let l = effective("[limits]\nmax_connections = 7\nmax_connections_per_ip = 3\n")
        .unwrap()
        .limits;
    assert_eq!(
        (l.max_http_connections, l.max_http_connections_per_ip),
        (10_000, 1_000)
    );
    let l = effective("[limits]\nmax_http_connections = 5\nmax_http_connections_per_ip = 2\n")
        .unwrap()
        .limits;
    assert_eq!(
        (l.max_http_connections, l.max_http_connections_per_ip),
        (5, 2)
    );
    assert_eq!(
        (l.max_connections, l.max_connections_per_ip),
        (10_000, 1_000)
    );
}

#[test]
fn http_response_deadline_grows_with_the_body() {
    let l = effective("[limits]\nhttp_response_timeout = \"10s\"\nmin_send_rate = \"1K\"\n")
        .unwrap()
        .limits;
    assert_eq!(l.http_response_deadline(0), Duration::from_secs(10));
    assert_eq!(l.http_response_deadline(5 * 1024), Duration::from_secs(15));
    assert!(l.http_response_deadline(u64::MAX).as_secs() > 1 << 40);
    let e = effective("[limits]\nmin_send_rate = 0\n").unwrap_err();
    assert!(e.contains("limits.min_send_rate"), "{e}");
}

#[test]
fn public_listener_without_allowed_hosts_is_refused() {
    let e = effective("[[listen]]\naddr = \"0.0.0.0:80\"\n").unwrap_err();
    for key in [
        "`listen[0]`",
        "0.0.0.0:80",
        "allowed_hosts",
        "--allowed-host",
        "[\"*\"]",
    ] {
        assert!(e.contains(key), "{key} missing: {e}");
    }
    let any = effective("[[listen]]\naddr = \"[::]:80\"\nallowed_hosts = [\"*\"]\n").unwrap();
    assert_eq!(any.listeners[0].hosts, HostRule::Any);
    let loopback = effective("[[listen]]\naddr = \"[::1]:80\"\n").unwrap();
    assert_eq!(loopback.listeners[0].hosts, HostRule::Loopback);
}

#[test]
fn allowed_host_flags_replace_every_listeners_list() {
    let args = ServeArgs {
        listen: Some("0.0.0.0:80".into()),
        allowed_hosts: vec!["Chat.Example".into()],
        ..Default::default()
    };
    let raw = RawConfig::parse("").unwrap().with_args(&args);
    let cfg = ServerConfig::from_raw(&raw).unwrap();
    assert_eq!(
        cfg.listeners[0].hosts,
        HostRule::Names(vec!["chat.example".into()])
    );
}

#[test]
fn public_listener_defaults_to_vhost_names() {
    let cfg = effective(
        "[[listen]]\naddr = \"0.0.0.0:80\"\n[[vhost]]\nhosts = [\"A.example\"]\n[[vhost.route]]\npath = \"/e\"\nkind = \"echo\"\n",
    )
    .unwrap();
    assert_eq!(
        cfg.listeners[0].hosts,
        HostRule::Names(vec!["a.example".into()])
    );
    assert_eq!(cfg.routes_for("a.example").len(), 1);
    assert_eq!(cfg.routes_for("b.example").len(), 0);
}

const EXEC: &str = "[[route]]\npath = \"/x\"\nkind = \"exec\"\ncommand = [\"sh\"]\n";

#[test]
fn exec_routes_get_their_defaults_printed_and_validated() {
    let raw = RawConfig::parse(EXEC)
        .unwrap()
        .with_args(&ServeArgs::default());
    let printed = raw.to_toml();
    for key in [
        "max_processes = 256",
        "stdin_timeout = \"10s\"",
        "exit_grace = \"2s\"",
    ] {
        assert!(printed.contains(key), "{key} missing from:\n{printed}");
    }
    let cfg = ServerConfig::from_raw(&raw).unwrap();
    let RouteKind::Exec(e) = &cfg.routes[0].kind else {
        panic!("not exec")
    };
    assert_eq!(e.max_processes, 256);
    assert_eq!(e.stdin_timeout, Duration::from_secs(10));
    assert_eq!(e.exit_grace, Duration::from_secs(2));
    assert!(e.pass_env.is_empty());
}

#[test]
fn exec_options_are_checked_and_errors_name_route_and_key() {
    let with = |extra: &str| effective(&format!("{EXEC}{extra}\n")).unwrap_err();
    let e = with("stdin_timeout = \"soon\"");
    assert!(
        e.contains("route[0] (/x)") && e.contains("`stdin_timeout`"),
        "{e}"
    );
    let e = with("exit_grace = \"2 weeks\"");
    assert!(e.contains("`exit_grace`"), "{e}");
    let e = with("max_processes = 0");
    assert!(e.contains("`max_processes` must be at least 1"), "{e}");
    let e = with("pass_env = [\"A=B\"]");
    assert!(e.contains("`pass_env`") && e.contains("A=B"), "{e}");
    let e =
        effective("[[route]]\npath = \"/e\"\nkind = \"echo\"\nexit_grace = \"1s\"\n").unwrap_err();
    assert!(e.contains("only applies to kind = \"exec\""), "{e}");
    let e = effective("[[route]]\npath = \"/m\"\nkind = \"exec\"\ncommand = [\"/no/such/prog\"]\n")
        .unwrap_err();
    assert!(
        e.contains("route[0] (/m): `command`: program `/no/such/prog`"),
        "{e}"
    );
}

#[test]
fn a_program_after_double_dash_is_an_exec_route_at_the_root() {
    let raw = RawConfig::program(vec!["cat".into()], true).with_args(&ServeArgs::default());
    let cfg = ServerConfig::from_raw(&raw).unwrap();
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes[0].path, "/");
    assert!(matches!(
        &cfg.routes[0].kind,
        RouteKind::Exec(ExecRoute { binary: true, command, .. }) if command == &["cat"]
    ));
}

#[test]
fn admin_settings_are_checked() {
    let cfg = effective("[admin]\naddr = \"127.0.0.1:9090\"\nmetrics_token = \"t\"\n").unwrap();
    assert_eq!(cfg.admin.addr, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(cfg.admin.hosts, HostRule::Loopback);
    assert_eq!(cfg.admin.metrics_token.as_deref(), Some("t"));
    let e = effective("[admin]\naddr = \"0.0.0.0:9090\"\n").unwrap_err();
    assert!(e.contains("admin.allowed_hosts"), "{e}");
    let named =
        effective("[admin]\naddr = \"0.0.0.0:9090\"\nallowed_hosts = [\"Mon.Example\"]\n").unwrap();
    assert_eq!(
        named.admin.hosts,
        HostRule::Names(vec!["mon.example".into()])
    );
    let any = effective("[admin]\naddr = \"0.0.0.0:9090\"\nallowed_hosts = [\"*\"]\n").unwrap();
    assert_eq!(any.admin.hosts, HostRule::Any);
    let token = effective("[admin]\naddr = \"0.0.0.0:9090\"\nmetrics_token = \"t\"\n").unwrap();
    assert_eq!(token.admin.hosts, HostRule::Any);
    let e = effective("[admin]\naddr = \"9090\"\n").unwrap_err();
    assert!(e.contains("`admin.addr`"), "{e}");
    let e = effective("[admin]\naddr = \"127.0.0.1:8080\"\n").unwrap_err();
    assert!(e.contains("listen[0].addr"), "{e}");
    let e = effective("[admin]\nmetrics_token = \"\"\n").unwrap_err();
    assert!(e.contains("admin.metrics_token"), "{e}");
    let e = effective("[admin]\nport = 1\n").unwrap_err();
    assert!(e.contains("port"), "{e}");
}

#[test]
fn path_patterns_capture_segments() {
    let p = PathPattern::parse("/chat/{room}", false).unwrap();
    assert_eq!(p.matches("/chat/lobby"), Some((vec!["lobby"], "")));
    assert_eq!(p.matches("/chat/"), None);
    assert_eq!(p.matches("/chat/a/b"), None);
    let s = PathPattern::parse("/static", true).unwrap();
    assert_eq!(s.matches("/static/css/a.css"), Some((vec![], "css/a.css")));
    assert_eq!(s.matches("/other"), None);
    let root = PathPattern::parse("/", true).unwrap();
    assert_eq!(root.matches("/index.html"), Some((vec![], "index.html")));
    let exact = PathPattern::parse("/", false).unwrap();
    assert_eq!(exact.matches("/"), Some((vec![], "")));
    assert_eq!(exact.matches("/x"), None);
}
