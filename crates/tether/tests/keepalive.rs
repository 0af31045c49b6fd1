//! Keepalive pings (`WebSocketConfig::keepalive`), on paused tokio time so
//! the tests take no real time and assert nothing about speed.

use common::*;
use std::time::Duration;
use test_support::raw as common;
use tether::proto::frame::OpCode;
use tether::{Error, Keepalive, Message, WebSocketConfig};
use tokio::time::{timeout_at, Instant};

fn keepalive(interval: u64, timeout: u64) -> WebSocketConfig {
    WebSocketConfig::default().with_keepalive(Some(Keepalive::new(
        Duration::from_secs(interval),
        Duration::from_secs(timeout),
    )))
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_a_silent_peer_and_times_out_without_an_answer() {
    let (mut ws, mut raw) = client_with_raw_server(keepalive(1, 2)).await;
    let started = Instant::now();
    let client = tokio::spawn(async move {
        match ws.recv().await {
            Some(Err(e)) => e,
            other => panic!("expected a timeout, got {other:?}"),
        }
    });
    let ping = raw.recv().await.unwrap();
    assert_eq!(ping.opcode, OpCode::Ping);
    assert!(ping.masked);
    // No ping before the interval of silence passed.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let err = client.await.unwrap();
    assert!(
        matches!(err, Error::Timeout { what: "keepalive pong", after } if after == Duration::from_secs(2)),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_a_responsive_peer_connected() {
    let (mut server, mut client) = duplex_pair(WebSocketConfig::default(), keepalive(1, 1)).await;
    // The server only reads (and so answers pings automatically).
    let server_task = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(msg) = server.recv().await {
            match msg.unwrap() {
                Message::Ping(_) => pings += 1,
                // Keep polling: that flushes the Close echo and winds down.
                Message::Close(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        pings
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pongs = 0;
    while let Ok(msg) = timeout_at(deadline, client.recv()).await {
        match msg.expect("connection stays open").expect("no error") {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"tether-keepalive");
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pongs >= 5, "only {pongs} keepalive round trips in 20 s");
    client.close(None).await.unwrap();
    assert!(server_task.await.unwrap() >= pongs);
}

#[tokio::test(start_paused = true)]
async fn incoming_data_counts_as_liveness() {
    // The raw server talks every 500 ms and never answers pings: with a 1 s
    // interval no ping is ever needed, so the connection lives on.
    let (mut ws, mut raw) = client_with_raw_server(keepalive(1, 1)).await;
    let talker = tokio::spawn(async move {
        for _ in 0..20 {
            raw.send(true, OpCode::Text, b"tick").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        raw
    });
    for _ in 0..20 {
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("tick"));
    }
    let mut raw = talker.await.unwrap();
    // Nothing but data was sent to the peer.
    drop(ws);
    assert!(raw.recv().await.is_none());
}
