//! Operating `tether serve`: logs, `--check-config`, `/metrics` and the
//! admin listener, reloading with SIGHUP.

use std::process::{Command, Stdio};
use test_support::serve::{status_of, Server};

#[test]
fn logs_to_a_pipe_have_no_ansi_escapes() {
    let server = Server::with_args(&[]);
    assert_eq!(status_of(&server.get("/healthz")), 200);
    // The log is a file (not a terminal): plain text only.
    let log = server.log();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escape in a log written to a file:\n{log:?}"
    );
    drop(server);
    // And on a pipe: start, wait for the first line, stop, read the log.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shutting down"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "ANSI escape in a log written to a pipe:\n{err:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::with_args(&["--log-format", "json"]);
    assert_eq!(status_of(&server.get("/healthz")), 200);
    let log = server.log();
    let mut saw_listening = false;
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        saw_listening |= msg.contains("listening on");
    }
    assert!(saw_listening, "{log}");
}

fn check_config(toml: &str) -> (bool, String, String) {
    let dir = test_support::serve::TempDir::new();
    let toml = toml.replace("$DIR", dir.path().to_str().unwrap());
    let cfg = dir.write("tether.toml", &toml);
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--check-config", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_good_file_with_a_one_line_summary() {
    let (ok, out, err) = check_config(
        "[[listen]]\naddr = \"127.0.0.1:0\"\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n\
         [[route]]\npath = \"/chat/{room}\"\nkind = \"room\"\n",
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("configuration OK"), "{out}");
    assert!(out.contains("2 routes"), "{out}");
    // The built-in setup checks too, and nothing is bound.
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_config_fails_on_every_kind_of_problem() {
    let cases = [
        // Validation: a missing key of the route's kind.
        ("[[route]]\npath = \"/x\"\nkind = \"exec\"\n", "`command`"),
        // Parsing: a typo.
        ("[limits]\nmax_conections = 5\n", "max_conections"),
        // Not TOML at all.
        ("[[route]\n", "config"),
        // Startup checks: TLS files that cannot be loaded.
        (
            "[[listen]]\naddr = \"127.0.0.1:0\"\ntls_cert = \"$DIR/nope.pem\"\ntls_key = \"$DIR/nope.key\"\n",
            "nope.pem",
        ),
        ("[[listen]]\naddr = \"localhost\"\n", "listen[0].addr"),
    ];
    for (toml, want) in cases {
        let (ok, out, err) = check_config(toml);
        assert!(!ok, "accepted:\n{toml}\nstdout: {out}");
        assert!(err.contains(want), "{toml}\nstderr: {err}");
        assert!(!out.contains("configuration OK"), "{out}");
    }
}

/// The samples of a Prometheus text exposition: series (name and labels as
/// written) to value.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn metrics_have_help_process_build_info_and_handshake_latency() {
    let server = Server::with_args(&[]);
    let (_ws, _) = tether::ClientBuilder::new(server.ws_url("/echo"))
        .connect()
        .await
        .unwrap();
    // Counted just after the 101 is written, so possibly after the client
    // has read it.
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(10),
        || server.metric("tether_handshake_duration_seconds_count") == 1
    ));
    let resp = server.get("/metrics");
    assert_eq!(status_of(&resp), 200);
    let text = body(&resp);
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    let s = samples(text);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no {k}:\n{text}"));
    assert_eq!(get("tether_handshake_duration_seconds_count"), 1.0);
    assert_eq!(
        get("tether_handshake_duration_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    let sum = get("tether_handshake_duration_seconds_sum");
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        get(&format!("tether_build_info{{version=\"{version}\"}}")),
        1.0
    );
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") >= 4.0);
    assert!(get("process_max_fds") >= get("process_open_fds"));
    assert!(get("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = get("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "{start} vs {now}"
    );
}

#[test]
fn admin_listener_serves_metrics_and_health_and_the_public_one_does_not() {
    let server = Server::with_config(
        "[admin]\naddr = \"127.0.0.1:0\"\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
    );
    let admin: std::net::SocketAddr = server
        .stdout_line("admin listening on http://")
        .parse()
        .unwrap();
    assert_ne!(admin, server.addr);
    let metrics = test_support::serve::get_from(admin, "/metrics", "");
    assert_eq!(status_of(&metrics), 200, "{metrics}");
    assert!(body(&metrics).contains("tether_connections_open 0"));
    assert_eq!(
        status_of(&test_support::serve::get_from(admin, "/healthz", "")),
        200
    );
    assert_eq!(
        status_of(&test_support::serve::get_from(admin, "/echo", "")),
        404
    );
    // The public port no longer answers them.
    assert_eq!(status_of(&server.get("/metrics")), 404);
    assert_eq!(status_of(&server.get("/healthz")), 404);
    // The admin listener checks Host like a loopback listener.
    let evil = server_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&evil), 421, "{evil}");
}

fn server_raw(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn metrics_token_guards_metrics_but_not_health() {
    let server = Server::with_config(
        "[admin]\nmetrics_token = \"sekrit\"\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
    );
    let none = server.get("/metrics");
    assert_eq!(status_of(&none), 401, "{none}");
    assert!(none
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert!(!none.contains("tether_connections_open"));
    let wrong =
        test_support::serve::get_from(server.addr, "/metrics", "Authorization: Bearer nope\r\n");
    assert_eq!(status_of(&wrong), 401);
    let right =
        test_support::serve::get_from(server.addr, "/metrics", "Authorization: Bearer sekrit\r\n");
    assert_eq!(status_of(&right), 200, "{right}");
    assert!(body(&right).contains("tether_connections_open 0"));
    assert_eq!(status_of(&server.get("/healthz")), 200);
}

async fn echo_once<S>(ws: &mut tether::WebSocket<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    ws.send(tether::Message::text(text)).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("the socket is open")
        .unwrap();
    assert_eq!(got, tether::Message::text(text));
}

/// Wait until the server's log has `n` lines containing `what`.
fn wait_log(server: &Server, what: &str, n: usize) -> String {
    let ok = test_support::serve::eventually(std::time::Duration::from_secs(10), || {
        server.log().matches(what).count() >= n
    });
    let log = server.log();
    assert!(ok, "no {n}x {what:?} in the log:\n{log}");
    log
}

const ROUTE_A: &str = "[[route]]\npath = \"/a\"\nkind = \"echo\"\n\
                       [[route]]\npath = \"/chat/{room}\"\nkind = \"room\"\n";

#[tokio::test]
async fn sighup_reloads_routes_and_keeps_open_connections() {
    use futures_util::StreamExt;
    let mut server = Server::with_config(ROUTE_A);
    let (mut a, _) = tether::ClientBuilder::new(server.ws_url("/a"))
        .connect()
        .await
        .unwrap();
    echo_once(&mut a, "before").await;
    let (mut member, _) = tether::ClientBuilder::new(server.ws_url("/chat/lobby"))
        .connect()
        .await
        .unwrap();
    let refused = tether::ClientBuilder::new(server.ws_url("/b"))
        .connect()
        .await;
    assert_eq!(
        test_support::serve::rejected_status(&refused.unwrap_err()),
        404
    );

    // Route B added (and the room route moved after it: hubs follow the
    // route, not its position).
    let config = server.dir.path().join("tether.toml");
    std::fs::write(
        &config,
        "[[route]]\npath = \"/a\"\nkind = \"echo\"\n[[route]]\npath = \"/b\"\nkind = \"echo\"\n\
         [[route]]\npath = \"/chat/{room}\"\nkind = \"room\"\n",
    )
    .unwrap();
    server.signal("HUP");
    wait_log(&server, "configuration reloaded", 1);
    assert!(
        server.is_running(),
        "SIGHUP stopped the server:\n{}",
        server.log()
    );
    assert_eq!(
        server.metric("tether_config_reloads_total{result=\"applied\"}"),
        1
    );
    assert_eq!(server.metric("tether_config_last_reload_successful"), 1);
    echo_once(&mut a, "after the reload").await;
    let (mut b, _) = tether::ClientBuilder::new(server.ws_url("/b"))
        .connect()
        .await
        .unwrap();
    echo_once(&mut b, "route b").await;
    // A member who joined after the reload is in the same room as one from before.
    let (mut late, _) = tether::ClientBuilder::new(server.ws_url("/chat/lobby"))
        .connect()
        .await
        .unwrap();
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(10),
        || server.metric("tether_route_connections_open{route=\"/chat/{room}\",kind=\"room\"}")
            == 2
    ));
    late.send(tether::Message::text("hello from after"))
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), member.next())
        .await
        .expect("the room message within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(got, tether::Message::text("hello from after"));

    // An invalid file is refused, with the reason, and B keeps working.
    std::fs::write(&config, "[[route]]\npath = \"/b\"\nkind = \"exec\"\n").unwrap();
    server.signal("HUP");
    let log = wait_log(&server, "reload refused", 1);
    assert!(
        log.contains("route[0] (/b)") && log.contains("`command`"),
        "{log}"
    );
    assert!(server.is_running());
    assert_eq!(
        server.metric("tether_config_reloads_total{result=\"refused\"}"),
        1
    );
    assert_eq!(server.metric("tether_config_last_reload_successful"), 0);
    let (mut b2, _) = tether::ClientBuilder::new(server.ws_url("/b"))
        .connect()
        .await
        .unwrap();
    echo_once(&mut b2, "still b").await;
    echo_once(&mut a, "a too").await;
}

fn write_cert(dir: &std::path::Path) -> rustls::RootCertStore {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    roots
}

use tokio_rustls::rustls;

fn connector(roots: rustls::RootCertStore) -> tokio_rustls::TlsConnector {
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test]
async fn sighup_reloads_tls_certificates() {
    let tls_dir = test_support::serve::TempDir::new();
    let old_roots = write_cert(tls_dir.path());
    let cert = tls_dir.path().join("cert.pem");
    let key = tls_dir.path().join("key.pem");
    let server = Server::with_config_and_args(
        "[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let open = |roots: rustls::RootCertStore| {
        let name = name.clone();
        let url = url.clone();
        let addr = server.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = connector(roots).connect(name, tcp).await?;
            let (ws, _) = tether::ClientBuilder::new(url)
                .connect_on(tls)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(ws)
        }
    };
    let mut before = open(old_roots.clone()).await.unwrap();
    echo_once(&mut before, "old cert").await;

    let new_roots = write_cert(tls_dir.path());
    server.signal("HUP");
    wait_log(&server, "configuration reloaded", 1);
    let mut after = open(new_roots)
        .await
        .expect("the new certificate is served");
    echo_once(&mut after, "new cert").await;
    assert!(
        open(old_roots).await.is_err(),
        "a new handshake still got the old certificate"
    );
    // The connection made with the old certificate is still served.
    echo_once(&mut before, "still open").await;

    // A key that does not load is refused; the current certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    server.signal("HUP");
    let log = wait_log(&server, "reload refused", 1);
    assert!(log.contains("key.pem"), "{log}");
}

#[test]
fn admin_listener_serves_a_bounded_number_of_connections() {
    use std::io::Read;
    let server = Server::with_config(
        "[admin]\naddr = \"127.0.0.1:0\"\n[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
    );
    let admin: std::net::SocketAddr = server
        .stdout_line("admin listening on http://")
        .parse()
        .unwrap();
    // Idle connections take every slot (accepted in order)...
    let mut idle: Vec<std::net::TcpStream> = (0..32)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    // ...so the next one is closed unanswered.
    let mut extra = std::net::TcpStream::connect(admin).unwrap();
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = extra.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // A slot freed is a slot for the next scraper.
    drop(idle.pop());
    assert!(test_support::serve::eventually(
        std::time::Duration::from_secs(10),
        || status_of(&test_support::serve::get_from(admin, "/healthz", "")) == 200
    ));
}
