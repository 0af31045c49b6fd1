//! `tether connect` driven by a script: piped stdin, stdout lines, `--jsonl`,
//! exit statuses, `--listen`. The servers are in-process Tether servers,
//! and `tether serve` for its own echo and exec routes.

use futures_util::StreamExt;
use std::time::Duration;
use test_support::connect::run;
use test_support::serve::Server;
use tether::{CloseCode, CloseFrame, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A server whose behaviour depends on the request path (see the match).
async fn server() -> u16 {
    test_support::peer::ws_server("chat.v1", |mut ws, req| async move {
        let path = req.uri().path().to_owned();
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        if path == "/whoami" {
            ws.send(Message::text(auth.unwrap_or_default()))
                .await
                .unwrap();
        }
        while let Some(Ok(m)) = ws.next().await {
            if !m.is_data() {
                continue;
            }
            match path.as_str() {
                "/burst" => {
                    for i in 0..200 {
                        ws.send(Message::text(format!("burst {i}"))).await.unwrap();
                    }
                }
                "/close4000" => {
                    let _ = ws
                        .close(Some(CloseFrame::new(CloseCode(4000), "bye")))
                        .await;
                    return;
                }
                "/drop" => return,
                "/sink" => {}
                "/paced" => return paced_echo(ws, m).await,
                "/late-close" => {
                    // Answer and close 1.5 s later, unless the client closed meanwhile.
                    let late = tokio::time::sleep(Duration::from_millis(1500));
                    tokio::select! {
                        _ = late => {
                            ws.send(Message::text("late answer")).await.unwrap();
                            let _ = ws.close(None).await;
                            while ws.next().await.is_some() {}
                            return;
                        }
                        _ = ws.next() => return,
                    }
                }
                "/late" => {
                    // Answer 100 ms later, unless the client closed meanwhile.
                    let late = tokio::time::sleep(Duration::from_millis(100));
                    tokio::select! {
                        _ = late => ws.send(Message::text("late answer")).await.unwrap(),
                        _ = ws.next() => return,
                    }
                }
                _ => ws.send(m).await.unwrap(),
            }
        }
    })
    .await
}

/// Echo like a server whose reader runs ahead of its handler (Python
/// `websockets`): messages are queued as they arrive and echoed one every
/// 5 ms; the client's Close is answered at once and the queue dropped.
async fn paced_echo<S>(mut ws: tether::WebSocket<S>, first: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut queue = std::collections::VecDeque::from([first]);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(m)) if m.is_data() => queue.push_back(m),
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = tick.tick(), if !queue.is_empty() => {
                if ws.send(queue.pop_front().unwrap()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A server that completes the handshake and then sends text that is not
/// UTF-8 (the client must fail the connection with 1007).
async fn bad_utf8_server() -> u16 {
    test_support::peer::raw_server("", &[0x81, 0x02, 0xff, 0xfe]).await
}

#[tokio::test]
async fn connect_pipes_lines_and_exits_zero_on_clean_close() {
    let port = server().await;
    let run = run(
        &[&format!("ws://127.0.0.1:{port}/echo")],
        b"one\ntwo\r\nthree",
    )
    .await;
    assert_eq!(run.stdout, "one\ntwo\nthree\n", "stderr: {}", run.stderr);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
}

#[tokio::test]
async fn connect_keeps_printing_after_end_of_input_until_the_close_handshake() {
    let port = server().await;
    let run = run(&[&format!("ws://127.0.0.1:{port}/burst")], b"go\n").await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 200, "stderr: {}", run.stderr);
    assert_eq!(lines[199], "burst 199");
    assert_eq!(run.code, 0);
}

#[tokio::test]
async fn connect_jsonl_reports_open_messages_and_close() {
    let port = server().await;
    let run = run(
        &[
            "--jsonl",
            "--protocol",
            "chat.v1",
            "--binary",
            &format!("ws://127.0.0.1:{port}/echo"),
        ],
        b"bin\n",
    )
    .await;
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "open");
    assert_eq!(events[0]["protocol"], "chat.v1");
    assert_eq!(events[1]["event"], "message");
    assert_eq!(events[1]["type"], "binary");
    assert_eq!(events[1]["base64"], "Ymlu");
    let close = events.last().unwrap();
    assert_eq!(close["event"], "close");
    assert_eq!(close["code"], 1000);
    assert_eq!(close["clean"], true);
    assert_eq!(run.code, 0);
}

#[tokio::test]
async fn connect_linger_waits_for_late_answers_before_closing() {
    let port = server().await;
    let run = run(
        &["--linger", "3", &format!("ws://127.0.0.1:{port}/late")],
        b"question\n",
    )
    .await;
    assert_eq!(run.stdout, "late answer\n", "stderr: {}", run.stderr);
    assert_eq!(run.code, 0);
}

fn hundred_lines() -> String {
    (1..=100).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test]
async fn connect_returns_every_reply_of_a_server_that_answers_the_close_at_once() {
    let port = server().await;
    let input = hundred_lines();
    let run = run(&[&format!("ws://127.0.0.1:{port}/paced")], input.as_bytes()).await;
    assert_eq!(run.stdout.lines().count(), 100, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, input);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
}

#[tokio::test]
async fn connect_linger_0_closes_at_once_and_reports_replies_cut_off() {
    let port = server().await;
    let run = run(
        &["--linger", "0", &format!("ws://127.0.0.1:{port}/paced")],
        hundred_lines().as_bytes(),
    )
    .await;
    let got = run.stdout.lines().count();
    assert!(got < 100, "the server answered our Close at once: {got}");
    assert_eq!(run.code, 6, "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("sent 100 messages, received {got} replies")),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn connect_closes_after_a_quiet_second_when_the_server_never_answers() {
    let port = server().await;
    let started = std::time::Instant::now();
    let run = run(&[&format!("ws://127.0.0.1:{port}/sink")], b"a\nb\n").await;
    assert_eq!(run.stdout, "");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_no_close_waits_for_the_server_to_close() {
    let port = server().await;
    let run = run(
        &["--no-close", &format!("ws://127.0.0.1:{port}/late-close")],
        b"question\n",
    )
    .await;
    assert_eq!(run.stdout, "late answer\n", "stderr: {}", run.stderr);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
}

#[tokio::test]
async fn connect_pipe_gets_every_reply_from_tether_serve_echo_and_exec_routes() {
    let server = Server::with_config(
        r#"
[[route]]
path = "/echo"
kind = "echo"

[[route]]
path = "/cat"
kind = "exec"
command = ["cat"]
"#,
    );
    let input = hundred_lines();
    for path in ["/echo", "/cat"] {
        let url = server.ws_url(path);
        let run = run(&[&url], input.as_bytes()).await;
        assert_eq!(
            run.stdout.lines().count(),
            100,
            "{path}: stderr: {}",
            run.stderr
        );
        assert_eq!(run.stdout, input, "{path}");
        assert_eq!(run.code, 0, "{path}: stderr: {}", run.stderr);
    }
}

#[tokio::test]
async fn connect_takes_urls_without_a_scheme_as_ws() {
    let port = server().await;
    for url in [
        format!("127.0.0.1:{port}/echo"),
        format!("localhost:{port}"),
    ] {
        let run = run(&[&url], b"plain\n").await;
        assert_eq!(run.stdout, "plain\n", "{url}: stderr: {}", run.stderr);
        assert_eq!(run.code, 0, "{url}: stderr: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("using ws://{url}")),
            "{url}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn connect_listen_accepts_a_host_name() {
    use tokio::io::AsyncBufReadExt;
    let mut child = test_support::connect::spawn(&["--listen", "localhost:0"]);
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), stderr.next_line())
        .await
        .expect("a line within 10 s")
        .unwrap()
        .unwrap_or_default();
    let url = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let (mut ws, _) = tether::ClientBuilder::new(&url)
        .no_proxy()
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("hello listener")).await.unwrap();
    drop(child.stdin.take());
    while ws.next().await.is_some() {}
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello listener\n");
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn connect_sends_extra_headers() {
    let port = server().await;
    let run = run(
        &[
            "-H",
            "Authorization: Bearer t0ken",
            &format!("ws://127.0.0.1:{port}/whoami"),
        ],
        b"",
    )
    .await;
    assert_eq!(run.stdout, "Bearer t0ken\n", "stderr: {}", run.stderr);
}

#[tokio::test]
async fn connect_exit_status_distinguishes_how_the_connection_ended() {
    let port = server().await;
    let closed = run(&[&format!("ws://127.0.0.1:{port}/close4000")], b"x\n").await;
    assert_eq!(
        closed.code, 3,
        "4000 is a clean close with an error code: {}",
        closed.stderr
    );
    assert!(closed.stderr.contains("4000"), "{}", closed.stderr);

    let dropped = run(&[&format!("ws://127.0.0.1:{port}/drop")], b"x\n").await;
    assert_eq!(dropped.code, 4, "abnormal closure: {}", dropped.stderr);

    let bad = bad_utf8_server().await;
    let violated = run(&[&format!("ws://127.0.0.1:{bad}/")], b"").await;
    assert_eq!(violated.code, 5, "protocol error: {}", violated.stderr);

    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = run(&[&format!("ws://127.0.0.1:{free}/")], b"").await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot connect"),
        "{}",
        refused.stderr
    );

    let usage = run(&["ws://h/#fragment"], b"").await;
    assert_eq!(usage.code, 1, "{}", usage.stderr);
    assert!(usage.stderr.contains("fragment"), "{}", usage.stderr);
}

#[tokio::test]
async fn connect_listen_mode_pipes_one_accepted_connection() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = test_support::connect::spawn(&["--listen", &format!("127.0.0.1:{port}")]);
    let url = format!("ws://127.0.0.1:{port}/");
    let mut ws = loop {
        match tether::ClientBuilder::new(&url).no_proxy().connect().await {
            Ok((ws, _)) => break ws,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    ws.send(Message::text("to the listener")).await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"from the listener\n").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("from the listener")
    );
    drop(stdin);
    // End of input: the listener closes with 1000.
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("{other:?}"),
    }
    while ws.next().await.is_some() {}
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to the listener\n");
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn connect_help_documents_exit_statuses_and_examples() {
    let out = Command::new(BIN)
        .args(["connect", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit status:",
        "abnormal closure",
        "Examples:",
        "--insecure",
        "--jsonl",
        "/close",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[tokio::test]
async fn connect_reconnects_after_an_abnormal_closure() {
    // The first connection is dropped right after the handshake; the second
    // one echoes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (reconnected_tx, reconnected_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        drop(tether::accept(tcp).await.unwrap());
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tether::accept(tcp).await.unwrap();
        // Input is written only now, so none can be lost with the first one.
        reconnected_tx.send(()).unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_data() {
                ws.send(m).await.unwrap();
            }
        }
    });
    let mut child =
        test_support::connect::spawn(&["--reconnect", &format!("ws://127.0.0.1:{port}/")]);
    reconnected_rx.await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"after reconnect\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "after reconnect\n",
        "{stderr}"
    );
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
