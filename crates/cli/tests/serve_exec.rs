//! `exec` routes: a program per connection, its environment and lifecycle.

use futures_util::StreamExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use test_support::serve::{eventually, status_of, Server};
use tether::{ClientBuilder, CloseFrame, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

const CONFIG: &str = r#"
[[route]]
path = "/env"
kind = "exec"
command = ["sh", "$DIR/env.sh"]
protocols = ["lines.v1"]

[[route]]
path = "/bye"
kind = "exec"
command = ["sh", "-c", "echo bye; exit 0"]

[[route]]
path = "/fail"
kind = "exec"
command = ["sh", "-c", "echo oops; exit 3"]

[[route]]
path = "/stubborn"
kind = "exec"
command = ["sh", "-c", "echo $$ > $DIR/stubborn.pid; sleep 300 & echo $! > $DIR/background.pid; echo started; exec sleep 300"]

[[route]]
path = "/cat"
kind = "exec"
command = ["cat"]
mode = "binary"

[[route]]
path = "/chatty"
kind = "exec"
command = ["yes", "chatter"]

[[route]]
path = "/chatty-echo"
kind = "exec"
command = ["sh", "-c", "yes chatter & exec cat"]

[[route]]
path = "/vanished"
kind = "exec"
command = ["$DIR/vanished.sh"]
"#;

const ENV_SH: &str = r#"
echo "REMOTE_ADDR=$REMOTE_ADDR"
echo "PATH_INFO=$PATH_INFO"
echo "QUERY_STRING=$QUERY_STRING"
echo "HTTP_ORIGIN=$HTTP_ORIGIN"
echo "SEC_WEBSOCKET_PROTOCOL=$SEC_WEBSOCKET_PROTOCOL"
echo "$$" > "$(dirname "$0")/env.pid"
while read -r line; do echo "got: $line"; done
"#;

fn server() -> Server {
    Server::with_setup(CONFIG, &[], |dir| {
        std::fs::write(dir.join("env.sh"), ENV_SH).unwrap();
        write_script(&dir.join("vanished.sh"), "#!/bin/sh\necho here\n");
    })
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("no error")
}

async fn text(ws: &mut Ws) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match next(ws).await {
            Message::Close(Some(f)) => return (f.code.as_u16(), f.reason.to_string()),
            Message::Close(None) => return (1005, String::new()),
            _ => continue,
        }
    }
}

/// Is the process dead: gone, or a zombie waiting for *its* parent (for a
/// program's background job that parent is init, not the server)?
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Is the process gone (exited and reaped: a zombie still answers kill -0)?
fn gone(pid: u32) -> bool {
    !Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn program_gets_cgi_environment_and_lines_both_ways() {
    let server = server();
    let (mut ws, resp) = ClientBuilder::new(server.ws_url("/env?user=ann&x=1"))
        .origin(server.origin())
        .protocol("lines.v1")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "lines.v1"
    );
    assert_eq!(text(&mut ws).await, "REMOTE_ADDR=127.0.0.1");
    assert_eq!(text(&mut ws).await, "PATH_INFO=/env");
    assert_eq!(text(&mut ws).await, "QUERY_STRING=user=ann&x=1");
    assert_eq!(
        text(&mut ws).await,
        format!("HTTP_ORIGIN={}", server.origin())
    );
    assert_eq!(text(&mut ws).await, "SEC_WEBSOCKET_PROTOCOL=lines.v1");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&mut ws).await, "got: hello");
    ws.send(Message::text("second line")).await.unwrap();
    assert_eq!(text(&mut ws).await, "got: second line");
    // Closing the socket ends the program (stdin reaches end of file).
    let pid_file = server.dir.path().join("env.pid");
    let pid = read_pid(&pid_file).expect("program wrote its pid");
    ws.close(Some(CloseFrame::new(1000u16, "done")))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || gone(pid)),
        "program {pid} still exists"
    );
}

#[tokio::test]
async fn program_exit_closes_the_socket_with_its_status() {
    let server = server();
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/bye"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "bye");
    assert_eq!(close_of(&mut ws).await, (1000, "program exited".into()));
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/fail"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "oops");
    assert_eq!(
        close_of(&mut ws).await,
        (1011, "program exited with status 3".into())
    );
    // A program removed after startup is still reported to the client.
    std::fs::remove_file(server.dir.path().join("vanished.sh")).unwrap();
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/vanished"))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        close_of(&mut ws).await,
        (1011, "cannot start the program".into())
    );
}

#[tokio::test]
async fn program_ignoring_end_of_input_is_killed_and_reaped() {
    let server = server();
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/stubborn"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "started");
    let pid_file = server.dir.path().join("stubborn.pid");
    let pid = read_pid(&pid_file).expect("program wrote its pid");
    let background = read_pid(&server.dir.path().join("background.pid")).expect("background pid");
    assert!(!gone(pid) && !dead(background));
    ws.close(Some(CloseFrame::new(1000u16, "bye")))
        .await
        .unwrap();
    // Killed after the grace period and waited for: no zombie...
    assert!(
        eventually(Duration::from_secs(15), || gone(pid)),
        "program {pid} survived its socket"
    );
    // ...and its background job did not outlive it as an orphan.
    assert!(
        eventually(Duration::from_secs(15), || dead(background)),
        "background job {background} survived"
    );
}

#[tokio::test]
async fn binary_mode_passes_bytes_through() {
    let server = server();
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/cat"))
        .connect()
        .await
        .unwrap();
    let payload: Vec<u8> = (0..=255u8).collect();
    ws.send(Message::binary(payload.clone())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < payload.len() {
        match next(&mut ws).await {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    assert_eq!(got, payload);
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
}

#[tokio::test]
async fn a_program_writing_without_pause_still_gets_the_close_answered() {
    let server = server();
    for _ in 0..5 {
        let (mut ws, _) = ClientBuilder::new(server.ws_url("/chatty"))
            .connect()
            .await
            .unwrap();
        assert_eq!(text(&mut ws).await, "chatter");
        // The program keeps writing; the server must still answer the Close
        // (and only then end the connection).
        tokio::time::timeout(
            Duration::from_secs(20),
            ws.close(Some(CloseFrame::new(1000u16, "enough"))),
        )
        .await
        .expect("closed within 20 s")
        .expect("the server answered the Close");
        assert_eq!(ws.peer_close().map(|f| f.code.as_u16()), Some(1000));
    }
}

#[tokio::test]
async fn a_program_writing_without_pause_still_hears_the_client() {
    let server = server();
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/chatty-echo"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "chatter");
    // Output never pauses, yet each message the client sends must reach the
    // program (`cat` echoes it back among the chatter).
    for i in 0..5 {
        let token = format!("token {i}");
        ws.send(Message::text(token.clone())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), async {
            // `cat`'s 8-byte write is atomic on the pipe, but may land in
            // the middle of one of `yes`'s large writes (inside a line).
            while !text(&mut ws).await.contains(&token) {}
        })
        .await
        .unwrap_or_else(|_| panic!("{token:?} echoed within 20 s"));
    }
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
}

/// One text message of this many newlines: far more than a pipe holds
/// (64 KiB), so the program's output and the server's writes to its stdin
/// must flow at the same time.
const NEWLINES: usize = 300_000;

#[tokio::test]
async fn a_large_message_to_a_line_echoing_program_comes_back_whole() {
    let server =
        Server::with_config("[[route]]\npath = \"/lines\"\nkind = \"exec\"\ncommand = [\"cat\"]\n");
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/lines"))
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("\n".repeat(NEWLINES))).await.unwrap();
    // The message and the newline the server adds: one empty line each.
    let mut lines = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while lines < NEWLINES + 1 {
            assert_eq!(text(&mut ws).await, "");
            lines += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{lines} of {} lines came back within 60 s", NEWLINES + 1));
    tokio::time::timeout(
        Duration::from_secs(20),
        ws.close(Some(CloseFrame::new(1000u16, "done"))),
    )
    .await
    .expect("closed within 20 s")
    .expect("the server answered the Close");
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_connections_open")
        == 0));
}

/// A program that never reads its input.
const DEAF: &str = r#"
[[route]]
path = "/deaf"
kind = "exec"
command = ["sh", "-c", "echo $$ > $DIR/deaf.pid; echo ready; exec sleep 300"]
stdin_timeout = "1s"
exit_grace = "500ms"

[[route]]
path = "/deaf-long"
kind = "exec"
command = ["sh", "-c", "echo $$ > $DIR/deaf.pid; echo ready; exec sleep 300"]
stdin_timeout = "60s"
"#;

#[tokio::test]
async fn a_program_that_never_reads_its_input_is_closed_after_stdin_timeout() {
    let server = Server::with_config(DEAF);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/deaf"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "ready");
    let pid = read_pid(&server.dir.path().join("deaf.pid")).expect("program wrote its pid");
    ws.send(Message::text("\n".repeat(NEWLINES))).await.unwrap();
    let (code, reason) = tokio::time::timeout(Duration::from_secs(20), close_of(&mut ws))
        .await
        .expect("the server closed within 20 s");
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.contains("stdin_timeout"), "{reason}");
    assert!(
        eventually(Duration::from_secs(10), || gone(pid)),
        "program {pid} survived its session"
    );
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_connections_open")
        == 0));
}

#[tokio::test]
async fn shutdown_ends_a_session_blocked_on_the_programs_input() {
    let mut server = Server::with_config(DEAF);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/deaf-long"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "ready");
    let pid = read_pid(&server.dir.path().join("deaf.pid")).expect("program wrote its pid");
    ws.send(Message::text("\n".repeat(NEWLINES))).await.unwrap();
    server.terminate();
    let closed = tokio::time::timeout(Duration::from_secs(20), close_of(&mut ws))
        .await
        .expect("the server closed within 20 s");
    assert_eq!(closed, (1001, "server shutting down".to_owned()));
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server exited");
    assert!(status.success(), "{status}");
    let log = server.log();
    assert!(log.contains("all connections closed"), "{log}");
    assert!(gone(pid), "program {pid} survived the server");
}

#[tokio::test]
async fn connections_beyond_max_processes_are_refused_with_503() {
    let server = Server::with_config(
        "[[route]]\npath = \"/one\"\nkind = \"exec\"\ncommand = [\"cat\"]\nmax_processes = 1\n",
    );
    let (mut first, _) = ClientBuilder::new(server.ws_url("/one"))
        .connect()
        .await
        .unwrap();
    first.send(Message::text("hi")).await.unwrap();
    assert_eq!(text(&mut first).await, "hi");
    let refused = server.raw_http(&format!(
        "GET /one HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    ));
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after:"),
        "{refused}"
    );
    assert_eq!(
        server.metric("tether_handshakes_rejected_total{reason=\"exec_processes\"}"),
        1
    );
    // Once the first program is gone, its place is free again.
    first
        .close(Some(CloseFrame::new(1000u16, "")))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || server
        .metric("tether_connections_open")
        == 0));
    let (mut again, _) = ClientBuilder::new(server.ws_url("/one"))
        .connect()
        .await
        .unwrap();
    again.send(Message::text("again")).await.unwrap();
    assert_eq!(text(&mut again).await, "again");
}

/// Programs that keep running after their input closed.
const LINGERING: &str = r#"
[[route]]
path = "/term"
kind = "exec"
command = ["sh", "-c", "trap 'echo term > $DIR/term.txt; exit 0' TERM; echo ready; while :; do sleep 0.1; done"]

[[route]]
path = "/deaf-to-term"
kind = "exec"
command = ["sh", "-c", "trap '' TERM; echo $$ > $DIR/deaf-to-term.pid; echo ready; while :; do sleep 0.1; done"]
exit_grace = "300ms"
"#;

#[tokio::test]
async fn a_program_still_running_after_its_input_closed_gets_sigterm() {
    let server = Server::with_config(LINGERING);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/term"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "ready");
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
    let marker = server.dir.path().join("term.txt");
    assert!(
        eventually(Duration::from_secs(15), || std::fs::read_to_string(&marker)
            .is_ok_and(|t| t == "term\n")),
        "the program's TERM trap did not run"
    );
}

#[tokio::test]
async fn a_program_ignoring_sigterm_is_killed_after_exit_grace() {
    let server = Server::with_config(LINGERING);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/deaf-to-term"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "ready");
    let pid = read_pid(&server.dir.path().join("deaf-to-term.pid")).expect("pid");
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || gone(pid)),
        "program {pid} survived SIGTERM and the grace period"
    );
    let log = server.log();
    assert!(log.contains("SIGTERM") && log.contains("SIGKILL"), "{log}");
}

const SHOUT: &str = r#"
[[route]]
path = "/shout"
kind = "exec"
command = ["sh", "-c", "while read -r l; do echo \"$l\" | tr a-z A-Z; done"]
"#;

#[tokio::test]
async fn output_after_the_clients_close_is_delivered_before_the_servers_close() {
    let server = Server::with_config(SHOUT);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/shout"))
        .connect()
        .await
        .unwrap();
    // The Close follows at once: the answer is still being made.
    ws.send(Message::text("hello")).await.unwrap();
    ws.send(Message::Close(Some(CloseFrame::new(
        1000u16,
        "end of input",
    ))))
    .await
    .unwrap();
    assert_eq!(text(&mut ws).await, "HELLO");
    assert_eq!(close_of(&mut ws).await, (1000, String::new()));
}

#[test]
fn piping_into_tether_connect_prints_the_programs_answer() {
    let server = Server::with_config(SHOUT);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["connect", &server.ws_url("/shout")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "tether connect did not finish"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}", out.status);
}

#[test]
fn a_missing_program_is_refused_at_startup_naming_the_route_and_key() {
    let err = Server::refused_config(
        "[[route]]\npath = \"/e\"\nkind = \"echo\"\n\n[[route]]\npath = \"/missing\"\nkind = \"exec\"\ncommand = [\"/nonexistent/program\"]\n",
        |_| {},
    );
    assert!(
        err.contains("route[1] (/missing)") && err.contains("`command`"),
        "{err}"
    );
    assert!(err.contains("/nonexistent/program"), "{err}");
    let err = Server::refused_config(
        "[[route]]\npath = \"/nameless\"\nkind = \"exec\"\ncommand = [\"no-such-program-anywhere\"]\n",
        |_| {},
    );
    assert!(
        err.contains("route[0] (/nameless)") && err.contains("no-such-program-anywhere"),
        "{err}"
    );
}

#[test]
fn a_program_without_execute_permission_is_refused_at_startup() {
    let err = Server::refused_config(
        "[[route]]\npath = \"/script\"\nkind = \"exec\"\ncommand = [\"$DIR/script.sh\"]\n",
        |dir| std::fs::write(dir.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap(),
    );
    assert!(
        err.contains("route[0] (/script)") && err.contains("not executable"),
        "{err}"
    );
}

#[tokio::test]
async fn a_program_given_after_double_dash_is_served_without_a_config_file() {
    let server = Server::with_args(&[
        "--",
        "sh",
        "-c",
        "echo \"args: $0 $1\"; while read -r l; do echo \"got $l\"; done",
        "first",
        "second",
    ]);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "args: first second");
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(text(&mut ws).await, "got x");
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
    // --binary: bytes as they are.
    let server = Server::with_args(&["--binary", "--", "cat"]);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/"))
        .connect()
        .await
        .unwrap();
    ws.send(Message::binary(vec![0u8, 255, 10])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 255, 10]));
    ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
}

const ENV_PRINTER: &str = "echo \"secret=${TETHER_TEST_SECRET-unset}\"; echo \"passed=${TETHER_TEST_PASSED-unset}\"; echo \"path=${PATH:+set}\"";

#[tokio::test]
async fn the_servers_environment_reaches_programs_only_through_pass_env() {
    let config = format!(
        "[[route]]\npath = \"/plain\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", {ENV_PRINTER:?}]\n\n\
         [[route]]\npath = \"/passing\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", {ENV_PRINTER:?}]\n\
         pass_env = [\"TETHER_TEST_PASSED\"]\n"
    );
    let env = [
        ("TETHER_TEST_SECRET", "hunter2"),
        ("TETHER_TEST_PASSED", "yes"),
    ];
    let server = Server::with_env(&config, &[], &env, |_| {});
    for (path, passed) in [("/plain", "unset"), ("/passing", "yes")] {
        let (mut ws, _) = ClientBuilder::new(server.ws_url(path))
            .connect()
            .await
            .unwrap();
        assert_eq!(text(&mut ws).await, "secret=unset", "{path}");
        assert_eq!(text(&mut ws).await, format!("passed={passed}"), "{path}");
        assert_eq!(text(&mut ws).await, "path=set", "{path}");
    }
}

#[tokio::test]
async fn stderr_lines_are_logged_bounded_and_with_control_characters_escaped() {
    let config = r#"
[[route]]
path = "/noisy"
kind = "exec"
command = ["sh", "-c", "printf 'a\\033[31mred\\rINFO forged\\n' >&2; head -c 10000 /dev/zero | tr '\\000' x >&2; echo >&2; echo done"]
"#;
    // No colours: then no ESC in the log is the server's own.
    let server = Server::with_env(config, &[], &[("NO_COLOR", "1")], |_| {});
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/noisy"))
        .connect()
        .await
        .unwrap();
    assert_eq!(text(&mut ws).await, "done");
    assert_eq!(close_of(&mut ws).await.0, 1000);
    assert!(eventually(Duration::from_secs(10), || server
        .log()
        .contains("more bytes]")));
    let log = server.log();
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log:?}");
    assert!(log.contains("a\\u{1b}[31mred\\rINFO forged"), "{log}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096 + 300, "a log line of {longest} bytes");
    assert!(log.contains("[... 5904 more bytes]"), "{log}");
}

#[test]
fn a_client_that_stops_reading_a_programs_output_is_dropped_and_the_program_ended() {
    let server = Server::with_config(
        r#"
[limits]
send_timeout = "1s"
write_buffer = "16K"

[[route]]
path = "/flood"
kind = "exec"
command = ["yes", "a line the client never reads"]
"#,
    );
    // Handshake done, then nothing is ever read: the program's output fills
    // the socket, then the server's write buffer.
    let _s = server.raw_websocket("/flood");
    let series = r#"tether_exec_processes{route="/flood",kind="exec"}"#;
    assert!(
        eventually(Duration::from_secs(5), || server.metric(series) == 1),
        "the program never started; log:\n{}",
        server.log()
    );
    assert!(
        eventually(Duration::from_secs(15), || server
            .metric("tether_connections_open")
            == 0
            && server.metric(series) == 0),
        "the stalled exec session was kept; log:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("timed out: sending"),
        "{}",
        server.log()
    );
}
