//! `exec` routes: a program per connection, its environment and lifecycle.

mod serve_support;

use futures_util::StreamExt;
use serve_support::{eventually, Server};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
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
path = "/missing"
kind = "exec"
command = ["/nonexistent/program"]
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
    })
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
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/missing"))
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
