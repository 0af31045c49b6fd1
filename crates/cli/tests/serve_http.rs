//! `tether serve` as an HTTP server: the demo page, static files, health,
//! metrics, Host checks, keep-alive, and configuration errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use test_support::serve::{status_of, Server};

const STATIC: &str = r#"
[[route]]
path = "/"
kind = "static"
dir = "$DIR/www"

[[route]]
path = "/echo"
kind = "echo"
"#;

fn static_server() -> Server {
    Server::with_setup(STATIC, &[], |dir| {
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("docs")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(www.join("app.js"), "console.log(1)").unwrap();
        std::fs::write(www.join("style.css"), "body{}").unwrap();
        std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>").unwrap();
        std::fs::write(www.join(".secret"), "hidden").unwrap();
        std::fs::write(dir.join("outside.txt"), "outside the root").unwrap();
        std::os::unix::fs::symlink(dir.join("outside.txt"), www.join("link.txt")).unwrap();
    })
}

#[test]
fn no_config_serves_demo_page_health_and_echo_hint() {
    let server = Server::with_args(&[]);
    let page = server.get("/");
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(
        page.contains("new WebSocket("),
        "the page uses the browser WebSocket API"
    );
    assert!(page.contains("readyState"));
    let health = server.get("/healthz");
    assert_eq!(status_of(&health), 200);
    assert!(health.ends_with("ok\n"));
    let echo = server.get("/echo");
    assert_eq!(status_of(&echo), 426);
    assert!(echo.to_ascii_lowercase().contains("upgrade: websocket"));
    assert_eq!(status_of(&server.get("/nothing-here")), 404);
}

#[test]
fn wrong_host_is_refused_with_421() {
    let server = Server::with_args(&[]);
    for host in ["evil.example", "evil.example:8080", "127.0.0.1.nip.io"] {
        let resp = server.raw_http(&format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(status_of(&resp), 421, "Host {host}: {resp}");
    }
    for host in ["localhost", "localhost:1234", "127.0.0.1", "[::1]:8080"] {
        let resp = server.raw_http(&format!(
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(status_of(&resp), 200, "Host {host}: {resp}");
    }
    assert_eq!(
        server.metric("tether_handshakes_rejected_total{reason=\"host\"}"),
        3
    );
}

#[test]
fn static_files_have_content_types_and_index() {
    let server = static_server();
    let root = server.get("/");
    assert_eq!(status_of(&root), 200);
    assert!(root.ends_with("<h1>home</h1>"));
    let js = server.get("/app.js");
    assert!(
        js.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{js}"
    );
    let css = server.get("/style.css");
    assert!(css.to_ascii_lowercase().contains("content-type: text/css"));
    let docs = server.get("/docs");
    assert_eq!(status_of(&docs), 301);
    assert!(docs.to_ascii_lowercase().contains("location: /docs/"));
    assert!(server.get("/docs/").ends_with("<h1>docs</h1>"));
    let head = server.raw_http(&format!(
        "HEAD /app.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    ));
    assert_eq!(status_of(&head), 200);
    assert!(
        head.contains("content-length: 14") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
}

#[test]
fn static_traversal_and_hidden_files_are_blocked() {
    let server = static_server();
    for path in [
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/docs/%2E%2E/%2E%2E/outside.txt",
        "/..%2foutside.txt",
        "/.secret",
        "/docs/..\\..\\outside.txt",
        "/link.txt",
    ] {
        let resp = server.get(path);
        assert!(
            !resp.contains("outside the root") && !resp.contains("hidden"),
            "{path}: {resp}"
        );
        let code = status_of(&resp);
        assert!(code == 404 || code == 400, "{path}: {code}");
    }
}

#[test]
fn other_methods_get_405_and_keep_alive_serves_several_requests() {
    let server = static_server();
    let resp = server.raw_http(&format!(
        "DELETE /app.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    ));
    assert_eq!(status_of(&resp), 405);
    assert!(resp.to_ascii_lowercase().contains("allow: get, head"));
    // Two pipelined requests on one connection, the second closing it.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = server.addr;
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {h}\r\n\r\nGET /app.js HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.ends_with("console.log(1)"));
}

#[test]
fn many_pipelined_requests_are_answered_in_order() {
    let server = Server::with_args(&[]);
    let h = server.addr;
    let mut batch = String::new();
    for i in 0..200 {
        batch.push_str(&format!(
            "GET /healthz?n={i} HTTP/1.1\r\nHost: {h}\r\nX-Padding: {}\r\n\r\n",
            "p".repeat(40)
        ));
    }
    batch.push_str(&format!(
        "GET /nope HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
    ));
    let out = server.raw_http(&batch);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 200);
    assert!(out.rfind("HTTP/1.1 404").unwrap() > out.rfind("HTTP/1.1 200").unwrap());
}

#[test]
fn print_config_shows_the_effective_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--print-config", "--max-message-size", "64K"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("addr = \"127.0.0.1:8080\""), "{text}");
    assert!(text.contains("max_message_size = \"64K\""), "{text}");
    assert!(text.contains("kind = \"room\""), "{text}");
}

#[test]
fn example_config_prints_the_documented_reference() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--example-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/serve/assets/example.toml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), reference);
}

#[test]
fn top_level_help_shows_one_example_per_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for example in [
        "tether serve",
        "tether connect ws://127.0.0.1:8080/echo",
        "printf 'a\\nb\\n' | tether connect --jsonl ws://127.0.0.1:8080/echo",
    ] {
        assert!(
            help.lines().any(|l| l.trim() == example),
            "no line {example:?} in:\n{help}"
        );
    }
}

#[test]
fn bad_config_fails_naming_the_key() {
    let dir = test_support::serve::TempDir::new();
    let cfg = dir.write("bad.toml", "[[route]]\npath = \"/x\"\nkind = \"exec\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route[0] (/x)") && err.contains("`command`"),
        "{err}"
    );
    let cfg = dir.write("typo.toml", "[limits]\nmax_conections = 5\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_conections"));
}

#[test]
fn post_body_rules() {
    let server = Server::with_args(&["--publish-token", "tok"]);
    let h = server.addr;
    let no_len = server.raw_http(&format!(
        "POST /api/publish HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status_of(&no_len), 411);
    // Refused before the body is read (none is sent, so no reset can eat the answer).
    let too_big = server.raw_http(&format!(
        "POST /api/publish HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer tok\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status_of(&too_big), 413);
    let get = server.get("/api/publish");
    assert_eq!(status_of(&get), 405);
}

/// The answer to `request` sent on a fresh connection, which the server
/// must then close (read to the end, bounded by the read timeout).
fn answer_then_close(server: &Server, request: &str) -> String {
    let resp = server.raw_http(request);
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "the connection is not closed after:\n{resp}"
    );
    resp
}

#[test]
fn ambiguous_request_framing_is_refused_and_the_connection_closed() {
    let server = Server::with_args(&["--publish-token", "tok"]);
    let h = server.addr;
    // No `Connection: close` from the client: the server must close by itself.
    let post = |headers: &str| {
        format!("POST /api/publish HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer tok\r\n{headers}\r\n{{\"channel\":\"c\",\"data\":1}}")
    };
    let len = r#"{"channel":"c","data":1}"#.len();
    for (headers, want) in [
        // RFC 9112 §6.3: two lengths (the first one used to win).
        (
            format!("Content-Length: {len}\r\nContent-Length: 5\r\n"),
            400,
        ),
        (
            format!("Content-Length: {len}\r\nContent-Length: {len}\r\n"),
            400,
        ),
        (format!("Content-Length: {len}, {len}\r\n"), 400),
        // 1*DIGIT only.
        (format!("Content-Length: +{len}\r\n"), 400),
        (format!("Content-Length: -{len}\r\n"), 400),
        (format!("Content-Length: 0x{len:x}\r\n"), 400),
        (
            "Content-Length: 99999999999999999999999\r\n".to_owned(),
            400,
        ),
        // Transfer-Encoding with Content-Length (§6.1, §6.3).
        (
            format!("Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n"),
            400,
        ),
        // A coding the server does not implement.
        ("Transfer-Encoding: gzip\r\n".to_owned(), 501),
        ("Transfer-Encoding: gzip, chunked\r\n".to_owned(), 501),
        // Chunked: the server asks for a length instead.
        ("Transfer-Encoding: chunked\r\n".to_owned(), 411),
    ] {
        let resp = answer_then_close(&server, &post(&headers));
        assert_eq!(status_of(&resp), want, "{headers:?}:\n{resp}");
    }
    // The same rules hold on a page request.
    let resp = answer_then_close(
        &server,
        &format!("GET / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"),
    );
    assert_eq!(status_of(&resp), 400, "{resp}");
    // Transfer-Encoding in HTTP/1.0 is faulty framing (§6.1).
    let resp = answer_then_close(
        &server,
        &format!("GET / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n"),
    );
    assert_eq!(status_of(&resp), 400, "{resp}");
    // One well-formed length still works.
    let ok = server.raw_http(&post(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n"
    )));
    assert_eq!(status_of(&ok), 200, "{ok}");
}

#[test]
fn bare_lf_line_endings_are_refused_for_pages_and_handshakes() {
    let server = Server::with_args(&[]);
    let h = server.addr;
    let page = server.raw_http(&format!("GET / HTTP/1.1\nHost: {h}\nConnection: close\n\n"));
    assert_eq!(status_of(&page), 400, "{page}");
    let mixed = server.raw_http(&format!(
        "GET / HTTP/1.1\r\nHost: {h}\nX-Smuggled: 1\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status_of(&mixed), 400, "{mixed}");
    let upgrade = server.raw_http(&format!(
        "GET /echo HTTP/1.1\nHost: {h}\nUpgrade: websocket\nConnection: Upgrade\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n"
    ));
    assert_eq!(status_of(&upgrade), 400, "{upgrade}");
}

#[test]
fn a_doubled_slash_never_redirects_to_another_host() {
    let server = static_server();
    for path in ["//docs", "///docs", "//docs?x=1"] {
        let resp = server.get(path);
        assert_eq!(status_of(&resp), 301, "{path}: {resp}");
        let location = resp
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("location: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("{path}: no Location:\n{resp}"));
        assert_eq!(location.trim(), "/docs/", "{path}");
    }
}

#[test]
fn metrics_has_one_content_type() {
    let server = Server::with_args(&[]);
    let resp = server.get("/metrics");
    let types: Vec<&str> = resp
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .collect();
    assert_eq!(
        types,
        ["content-type: text/plain; version=0.0.4; charset=utf-8"],
        "{resp}"
    );
}

#[test]
fn a_fifo_in_the_static_root_is_not_served() {
    let server = Server::with_setup(STATIC, &[], |dir| {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let ok = Command::new("mkfifo")
            .arg(www.join("pipe"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo failed");
    });
    let started = std::time::Instant::now();
    let resp = server.get("/pipe");
    assert_eq!(status_of(&resp), 404, "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server still answers.
    assert_eq!(status_of(&server.get("/healthz")), 200);
}

/// `tether serve ARGS`: exit success, stdout and stderr (for runs that end
/// by themselves: a refused configuration, `--check-config`).
fn serve_once(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("serve")
        .args(args)
        .env_remove("TETHER_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_public_listener_needs_allowed_hosts() {
    // DNS rebinding: a page on evil.example resolving to this address
    // would otherwise be answered as same-origin.
    // `--check-config`: validates as starting would, without listening.
    let (ok, out) = serve_once(&["--listen", "0.0.0.0:0", "--check-config"]);
    assert!(!ok, "started without allowed hosts:\n{out}");
    for needed in [
        "listen[0]",
        "0.0.0.0:0",
        "allowed_hosts",
        "--allowed-host",
        "\"*\"",
    ] {
        assert!(out.contains(needed), "{needed:?} missing from:\n{out}");
    }
    let dir = test_support::serve::TempDir::new();
    let cfg = dir.write(
        "public.toml",
        "[[listen]]\naddr = \"127.0.0.1:0\"\n[[listen]]\naddr = \"[::]:0\"\n[[route]]\npath = \"/e\"\nkind = \"echo\"\n",
    );
    let (ok, out) = serve_once(&["--config", cfg.to_str().unwrap(), "--check-config"]);
    assert!(
        !ok && out.contains("listen[1]") && out.contains("[::]:0"),
        "{out}"
    );
    // Named hosts, or an explicit "*", are accepted.
    let (ok, out) = serve_once(&[
        "--listen",
        "0.0.0.0:0",
        "--allowed-host",
        "chat.example.com",
        "--allowed-host",
        "www.example.com",
        "--check-config",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = serve_once(&[
        "--listen",
        "0.0.0.0:0",
        "--allowed-host",
        "chat.example.com",
        "--print-config",
    ]);
    assert!(
        ok && out.contains("allowed_hosts = [\"chat.example.com\"]"),
        "{out}"
    );
    let (ok, out) = serve_once(&[
        "--listen",
        "0.0.0.0:0",
        "--allowed-host",
        "*",
        "--check-config",
    ]);
    assert!(ok, "{out}");
}

#[test]
fn allowed_host_flag_applies_to_a_loopback_listener_too() {
    let server = Server::with_args(&["--allowed-host", "app.test"]);
    let h = server.addr;
    let named = server.raw_http(&format!(
        "GET /healthz HTTP/1.1\r\nHost: app.test:{}\r\nConnection: close\r\n\r\n",
        h.port()
    ));
    assert_eq!(status_of(&named), 200, "{named}");
    let other =
        server.raw_http("GET /healthz HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&other), 421, "{other}");
}

#[test]
fn a_reader_that_never_reads_a_large_file_is_cut_off() {
    const SIZE: usize = 64 << 20;
    let server = Server::with_setup(
        r#"
[limits]
http_response_timeout = "1s"
min_send_rate = "1G"

[[route]]
path = "/"
kind = "static"
dir = "$DIR/www"
"#,
        &[],
        |dir| {
            std::fs::create_dir_all(dir.join("www")).unwrap();
            std::fs::write(dir.join("www/big.bin"), vec![0u8; SIZE]).unwrap();
        },
    );
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(s, "GET /big.bin HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).unwrap();
    // Read nothing until the server has given up.
    assert!(
        test_support::serve::eventually(Duration::from_secs(15), || server
            .log()
            .contains("HTTP response not taken")),
        "the slow reader was kept; log:\n{}",
        server.log()
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < SIZE, "the whole file arrived after the deadline");
}

#[test]
fn plain_http_connections_are_limited_per_ip() {
    let server = Server::with_config(
        r#"
[limits]
max_http_connections_per_ip = 2

[[route]]
path = "/echo"
kind = "echo"
"#,
    );
    let h = server.addr;
    // A keep-alive connection that was answered, and one that sent nothing:
    // both hold a slot.
    let mut kept = TcpStream::connect(h).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(kept, "GET /healthz HTTP/1.1\r\nHost: {h}\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Two more that send nothing: one of them (whichever the server starts
    // on second) is answered on arrival and closed, the other waits.
    let answers: Vec<(TcpStream, String)> = (0..2)
        .map(|_| TcpStream::connect(h).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            (s, String::from_utf8_lossy(&out).into_owned())
        })
        .collect();
    let refused: Vec<&String> = answers
        .iter()
        .map(|(_, a)| a)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(status_of(refused[0]), 429, "{}", refused[0]);
    assert!(
        refused[0].to_ascii_lowercase().contains("retry-after: "),
        "{}",
        refused[0]
    );
    drop(kept);
    drop(answers);
    assert!(test_support::serve::eventually(
        Duration::from_secs(10),
        || server.metric("tether_http_connections_refused_total{reason=\"limit_ip\"}") >= 1
    ));
}
