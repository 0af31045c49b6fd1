//! `tether bench` against servers started inside the test: the JSON summary
//! must account for every message and report errors and close codes
//! faithfully. No timing is asserted.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use tether::{CloseCode, CloseFrame, Message};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Run `tether bench ARGS --json` and parse its summary.
async fn bench(args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("bench")
        .args(args)
        .args(["--json", "--log", "warn"])
        .output()
        .await
        .expect("run tether bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tether bench failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// An echo server; if `close_after` is set, each connection closes with
/// 1001 after echoing that many messages.
async fn echo_server(close_after: Option<u64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tether::accept(tcp).await else {
                    return;
                };
                let mut echoed = 0;
                while let Some(Ok(msg)) = ws.next().await {
                    if !msg.is_data() {
                        continue;
                    }
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                    echoed += 1;
                    if Some(echoed) == close_after {
                        let bye = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
                        let _ = ws.close(Some(bye)).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A room: every message from any connection goes to all the others.
async fn room_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<(usize, Message)>(4096);
    tokio::spawn(async move {
        let mut id = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            id += 1;
            let (me, tx) = (id, tx.clone());
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let Ok(ws) = tether::accept(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let forward = tokio::spawn(async move {
                    while let Ok((from, msg)) = rx.recv().await {
                        if from != me && sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(Ok(msg)) = stream.next().await {
                    if msg.is_data() {
                        let _ = tx.send((me, msg));
                    }
                }
                forward.abort();
            });
        }
    });
    addr
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v:#}"))
}

#[tokio::test]
async fn bench_counts_every_echoed_message_in_count_mode() {
    let addr = echo_server(None).await;
    let url = format!("ws://{addr}/echo");
    let s = bench(&[&url, "-c", "4", "-d", "4", "-s", "100", "-n", "1002"]).await;
    assert_eq!(s["mode"], "echo");
    assert_eq!(count(&s, "connected"), 4);
    assert_eq!(count(&s, "messages_sent"), 1002);
    assert_eq!(count(&s, "messages_received"), 1002);
    assert_eq!(count(&s, "bytes_received"), 1002 * 100);
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
    assert_eq!(s["close_codes"]["1000"], 4, "{s:#}");
    assert_eq!(s["latency_us"]["samples"], 1002);
}

#[tokio::test]
async fn bench_sends_text_messages_larger_than_the_default_window() {
    let addr = echo_server(None).await;
    let url = format!("ws://{addr}/");
    let s = bench(&[
        &url, "-c", "2", "-s", "200K", "-d", "2", "-n", "20", "--text",
    ])
    .await;
    assert_eq!(s["text"], true);
    assert_eq!(count(&s, "messages_received"), 20);
    assert_eq!(count(&s, "bytes_received"), 20 * 200 * 1024);
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn bench_reports_the_servers_close_code() {
    let addr = echo_server(Some(3)).await;
    let url = format!("ws://{addr}/");
    let s = bench(&[&url, "-c", "2", "-n", "100"]).await;
    assert_eq!(count(&s, "messages_received"), 6, "{s:#}");
    assert_eq!(s["close_codes"]["1001"], 2, "{s:#}");
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn bench_counts_connection_failures_as_errors() {
    // Bind then drop: nothing listens on this port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", &format!("ws://{addr}/"), "-c", "2", "-n", "10"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no connection"), "{stderr}");
}

#[tokio::test]
async fn raw_tcp_mode_counts_echoed_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let target = addr.to_string();
    let s = bench(&[
        "--raw-tcp",
        &target,
        "-c",
        "3",
        "-d",
        "5",
        "-s",
        "1K",
        "-n",
        "301",
    ])
    .await;
    assert_eq!(s["mode"], "raw-tcp");
    assert_eq!(count(&s, "messages_sent"), 301);
    assert_eq!(count(&s, "messages_received"), 301);
    assert_eq!(count(&s, "bytes_received"), 301 * 1024);
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn idle_mode_reports_server_memory_per_connection() {
    let addr = echo_server(None).await;
    let url = format!("ws://{addr}/");
    let pid = std::process::id().to_string();
    let s = bench(&[
        &url,
        "--idle",
        "-c",
        "20",
        "-t",
        "100ms",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(s["mode"], "idle");
    assert_eq!(count(&s, "connected"), 20);
    assert_eq!(count(&s, "messages_received"), 20);
    assert_eq!(s["close_codes"]["1000"], 20, "{s:#}");
    let server = &s["server"];
    assert_eq!(server["pid"].as_u64(), Some(std::process::id() as u64));
    if cfg!(target_os = "linux") {
        assert!(server["rss_after_kib"].as_u64().unwrap() > 0, "{s:#}");
        assert!(server["rss_per_connection_bytes"].is_number(), "{s:#}");
    }
}

#[tokio::test]
async fn broadcast_mode_delivers_published_messages_to_subscribers() {
    let addr = room_server().await;
    let url = format!("ws://{addr}/room");
    let s = bench(&[
        &url,
        "--broadcast",
        "-c",
        "3",
        "-s",
        "64",
        "-t",
        "500ms",
        "--rate",
        "2000",
    ])
    .await;
    assert_eq!(s["mode"], "broadcast");
    assert_eq!(count(&s, "connected"), 3);
    let published = count(&s, "messages_sent");
    let delivered = count(&s, "messages_received");
    assert!(published > 0, "{s:#}");
    assert!(delivered > 0 && delivered <= 3 * published, "{s:#}");
    assert_eq!(count(&s, "bytes_received"), delivered * 64);
    assert!(
        s["latency_us"]["samples"].as_u64().unwrap() == delivered,
        "{s:#}"
    );
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn compress_flag_negotiates_permessage_deflate() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = tether::WebSocketConfig::default();
    config.protocol.deflate = Some(tether::proto::deflate::DeflateConfig::default());
    let server = std::sync::Arc::new(tether::ServerBuilder::new().config(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = server.accept(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let url = format!("ws://{addr}/");
    let s = bench(&[
        &url,
        "--compress",
        "-c",
        "2",
        "-s",
        "4K",
        "--text",
        "-n",
        "50",
    ])
    .await;
    assert_eq!(count(&s, "compressed_connections"), 2, "{s:#}");
    assert_eq!(count(&s, "messages_received"), 50);
    assert_eq!(count(&s, "bytes_received"), 50 * 4096);
    assert_eq!(count(&s, "errors"), 0, "{s:#}");

    // Without the flag nothing is offered.
    let s = bench(&[&url, "-c", "2", "-n", "10"]).await;
    assert_eq!(count(&s, "compressed_connections"), 0, "{s:#}");
}

/// A `tether serve` with a pub/sub route whose clients may publish.
fn pubsub_server() -> test_support::serve::Server {
    test_support::serve::Server::with_config(
        "[[route]]\npath = \"/pubsub\"\nkind = \"pubsub\"\nclient_publish = true\nhistory_size = 50\n",
    )
}

#[tokio::test]
async fn broadcast_mode_on_a_channel_spreads_subscribers_over_urls() {
    let server = pubsub_server();
    let url = server.ws_url("/pubsub");
    let s = bench(&[
        &url,
        "--broadcast",
        "--channel",
        "bench",
        "--subscribe-url",
        &url,
        "--publish-url",
        &url,
        "-c",
        "4",
        "-s",
        "64",
        "-t",
        "500ms",
        "--rate",
        "1000",
    ])
    .await;
    assert_eq!(s["mode"], "broadcast");
    assert_eq!(count(&s, "connected"), 4);
    let published = count(&s, "messages_sent");
    let delivered = count(&s, "messages_received");
    assert!(published > 0, "{s:#}");
    assert!(delivered > 0 && delivered <= 4 * published, "{s:#}");
    // Every delivery carried its stamp, inside the pub/sub message.
    assert_eq!(
        s["latency_us"]["samples"].as_u64(),
        Some(delivered),
        "{s:#}"
    );
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn several_publishers_share_the_rate_and_every_publication_is_delivered() {
    let server = pubsub_server();
    let url = server.ws_url("/pubsub");
    let s = bench(&[
        &url,
        "--broadcast",
        "--channel",
        "many",
        "--publishers",
        "3",
        "-c",
        "2",
        "-s",
        "64",
        "-t",
        "1s",
        "--rate",
        "600",
    ])
    .await;
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
    // --rate is the total over the publishers, not each one's.
    let published = count(&s, "messages_sent");
    assert!((300..=700).contains(&published), "{s:#}");
    // Both subscribers see the publications of all three publishers.
    let delivered = count(&s, "messages_received");
    assert!(delivered > published, "{s:#}");
    assert!(delivered <= 2 * published, "{s:#}");
}

#[tokio::test]
async fn recovery_storm_recovers_every_subscriber_exactly() {
    let server = pubsub_server();
    let url = server.ws_url("/pubsub");
    let s = bench(&[
        &url,
        "--recovery-storm",
        "--channel",
        "storm",
        "--subscribe-url",
        &url,
        "-c",
        "40",
        "--backlog",
        "10",
    ])
    .await;
    assert_eq!(s["mode"], "recovery-storm");
    assert_eq!(count(&s, "connected"), 40);
    assert_eq!(count(&s, "messages_sent"), 10);
    // Each subscriber got exactly the 10 it missed (checked in order by the
    // tool: any gap, duplicate or `recovered: false` is an error).
    assert_eq!(count(&s, "messages_received"), 400, "{s:#}");
    assert_eq!(s["latency_us"]["samples"].as_u64(), Some(40), "{s:#}");
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
}

#[tokio::test]
async fn recovery_storm_beyond_history_reports_every_subscriber_unrecovered() {
    let server = pubsub_server();
    let url = server.ws_url("/pubsub");
    // 60 missed, 50 kept: nothing can be recovered.
    let s = bench(&[
        &url,
        "--recovery-storm",
        "--channel",
        "storm",
        "-c",
        "5",
        "--backlog",
        "60",
    ])
    .await;
    assert_eq!(count(&s, "errors"), 5, "{s:#}");
    assert_eq!(count(&s, "messages_received"), 0, "{s:#}");
}

fn storm_phase<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no {name} phase: {s:#}"))
}

#[tokio::test]
async fn storm_mode_opens_closes_and_reopens_every_connection() {
    let server =
        test_support::serve::Server::with_config("[[route]]\npath = \"/echo\"\nkind = \"echo\"\n");
    let pid = server.pid().to_string();
    let s = bench(&[
        &server.ws_url("/echo"),
        "--storm",
        "-c",
        "60",
        "--probes",
        "2",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(s["mode"], "storm");
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
    for name in ["connect", "reconnect"] {
        let p = storm_phase(&s, name);
        assert_eq!(p["opened"], 60, "{s:#}");
        assert_eq!(p["failed"], 0, "{s:#}");
        assert_eq!(p["handshake_us"]["samples"], 60, "{s:#}");
        assert!(p["handshakes_per_sec"].as_f64().unwrap() > 0.0, "{s:#}");
        assert!(p["server_cpu_us_per_handshake"].is_number(), "{s:#}");
        assert!(p["tls_resumed"].is_null(), "plain ws has no TLS: {s:#}");
    }
    // The probes echoed throughout.
    assert!(s["probe_echo_us"]["samples"].as_u64().unwrap() > 0, "{s:#}");
    assert_eq!(count(&s, "probe_errors"), 0, "{s:#}");
}

#[tokio::test]
async fn storm_over_tls_resumes_every_session_on_reconnect() {
    // More connections than rustls's default server session cache (256):
    // every one resumes only with the server's session tickets.
    let pki = test_support::tls::Pki::new();
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    let server = test_support::serve::Server::with_config_and_args(
        "[[route]]\npath = \"/echo\"\nkind = \"echo\"\n",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let ca = pki.path("ca.pem");
    let s = bench(&[
        &url,
        "--storm",
        "-c",
        "300",
        "--probes",
        "1",
        "--cacert",
        ca.to_str().unwrap(),
    ])
    .await;
    assert_eq!(count(&s, "errors"), 0, "{s:#}");
    assert_eq!(s["tls"], true);
    assert_eq!(storm_phase(&s, "connect")["opened"], 300, "{s:#}");
    assert_eq!(storm_phase(&s, "connect")["tls_resumed"], 0, "{s:#}");
    assert_eq!(storm_phase(&s, "reconnect")["opened"], 300, "{s:#}");
    assert_eq!(storm_phase(&s, "reconnect")["tls_resumed"], 300, "{s:#}");

    let full = bench(&[
        &url,
        "--storm",
        "-c",
        "20",
        "--probes",
        "1",
        "--cacert",
        ca.to_str().unwrap(),
        "--no-tls-resumption",
    ])
    .await;
    assert_eq!(storm_phase(&full, "reconnect")["opened"], 20, "{full:#}");
    assert_eq!(
        storm_phase(&full, "reconnect")["tls_resumed"],
        0,
        "{full:#}"
    );
}
