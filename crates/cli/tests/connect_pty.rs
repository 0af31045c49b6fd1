//! `tether connect` used interactively, as a person would: under a
//! pseudo-terminal (Python's `pty` module drives it), typing lines and
//! `/` commands, reading what is shown.

use futures_util::StreamExt;
use std::process::Stdio;
use std::time::Duration;
use tether::Message;
use tokio::net::TcpListener;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Runs `argv` under a pty; sends each step's text once the expected text
/// has appeared; prints the whole transcript then `EXIT <status>`.
const DRIVER: &str = r#"
import os, pty, sys, time, json
argv = json.loads(sys.argv[1])
steps = json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    os.execv(argv[0], argv)
out = b""
def read_until(needle, limit=20.0):
    global out
    end = time.time() + limit
    while needle.encode() not in out:
        if time.time() > end:
            sys.stdout.write(out.decode(errors="replace"))
            sys.stdout.write("\nTIMEOUT waiting for %r\n" % needle)
            sys.exit(3)
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
for expect, send in steps:
    read_until(expect)
    os.write(fd, send.encode())
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nEXIT %d\n" % os.waitstatus_to_exitcode(status))
"#;

async fn echo_server() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tether::accept(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            let _ = tx.send(m.clone());
            if m.is_data() {
                ws.send(m).await.unwrap();
            }
        }
    });
    (port, rx)
}

#[tokio::test]
async fn connect_interactive_session_under_a_pty() {
    let (port, mut seen) = echo_server().await;
    let home = std::env::temp_dir().join(format!("tether-pty-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let argv = serde_json::json!([
        BIN,
        "connect",
        "--proxy",
        "none",
        format!("ws://127.0.0.1:{port}/")
    ]);
    let steps = serde_json::json!([
        ["> ", "hello there\r"],
        ["hello there\r\n", ""],
        ["< ", "/binary AB\r"],
        ["[binary, 2 bytes] 41 42", "/ping probe\r"],
        ["[pong] probe", "/close 4000 done typing\r"],
    ]);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("python3")
            .arg("-c")
            .arg(DRIVER)
            .arg(argv.to_string())
            .arg(steps.to_string())
            .env("HOME", &home)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the session ended within 60 s")
    .expect("python3 runs");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains("connected to ws://127.0.0.1"),
        "{transcript}"
    );
    // Received text is shown with direction and a HH:MM:SS.mmm time.
    let shown = transcript
        .lines()
        .find(|l| l.contains("< ") && l.ends_with("hello there"))
        .unwrap_or_else(|| panic!("no received line in:\n{transcript}"));
    let after = &shown[shown.find("< ").unwrap() + 2..];
    assert_eq!(after.as_bytes()[2], b':', "time stamp in {shown:?}");
    assert!(transcript.contains("[close] 4000"), "{transcript}");
    // The server echoed our 4000: a clean close with a non-1000 code is 3.
    assert!(transcript.trim_end().ends_with("EXIT 3"), "{transcript}");

    assert_eq!(seen.recv().await.unwrap(), Message::text("hello there"));
    assert_eq!(seen.recv().await.unwrap(), Message::binary(&b"AB"[..]));
    assert_eq!(
        seen.recv().await.unwrap(),
        Message::Ping(bytes::Bytes::from_static(b"probe"))
    );
    match seen.recv().await.unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!((f.code.as_u16(), f.reason.as_str()), (4000, "done typing"))
        }
        other => panic!("{other:?}"),
    }
    let history = std::fs::read_to_string(home.join(".tether_history")).unwrap();
    assert!(history.contains("hello there"), "{history}");
    std::fs::remove_dir_all(&home).unwrap();
}
