//! `send_timeout`: a peer that stops reading while output is queued fails
//! the connection instead of holding it (and its memory) for ever.

use common::*;
use std::time::Duration;
use test_support::raw as common;
use tether::{Error, Message, WebSocketConfig};
use tokio::time::{timeout, Instant};

const MESSAGE: usize = 16 * 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .with_write_buffer_limit(64 * 1024)
        .with_send_timeout(Some(SEND_TIMEOUT))
}

fn is_send_timeout(e: &Error) -> bool {
    matches!(e, Error::Timeout { what, after } if what.contains("send") && *after == SEND_TIMEOUT)
}

#[tokio::test(start_paused = true)]
async fn a_sender_whose_peer_never_reads_fails_with_a_timeout() {
    let (mut ws, _raw) = client_with_raw_server(config()).await;
    let start = Instant::now();
    let err = loop {
        match timeout(
            Duration::from_secs(60),
            ws.send(Message::binary(vec![7u8; MESSAGE])),
        )
        .await
        .expect("a blocked send never timed out")
        {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    assert!(is_send_timeout(&err), "{err}");
    // No progress for one to two timeouts.
    assert!(
        start.elapsed() >= SEND_TIMEOUT
            && start.elapsed() <= 2 * SEND_TIMEOUT + Duration::from_secs(1)
    );
    // The connection is over: nothing is queued, nothing more is accepted.
    assert_eq!(ws.buffered_amount(), 0);
    assert!(matches!(
        ws.send(Message::text("more")).await,
        Err(Error::Closed(None))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_echo_whose_peer_never_reads_fails_with_a_timeout() {
    // The raw client sends without ever reading the echoes: the server's
    // output fills and its echo loop parks on the write side.
    let (mut ws, mut raw) = server_with_raw_client(config()).await;
    let feed = tokio::spawn(async move {
        loop {
            let frame = raw.encode(true, tether::proto::frame::OpCode::Binary, &[1u8; MESSAGE]);
            if tokio::io::AsyncWriteExt::write_all(&mut raw.io, &frame)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let result = timeout(Duration::from_secs(60), ws.echo())
        .await
        .expect("a blocked echo never timed out");
    let err = result.expect_err("the echo ended without an error");
    assert!(is_send_timeout(&err), "{err}");
    feed.abort();
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_steady_reader_is_not_timed_out() {
    let (mut ws, mut raw) = client_with_raw_server(config()).await;
    // Reads one frame per second, faster than the 3 s timeout.
    let reader = tokio::spawn(async move {
        let mut frames = 0;
        while raw.recv().await.is_some() {
            frames += 1;
            if frames == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        frames
    });
    for _ in 0..20 {
        ws.send(Message::binary(vec![7u8; MESSAGE])).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), 20);
}

#[tokio::test(start_paused = true)]
async fn without_a_send_timeout_a_blocked_send_waits() {
    let config = config().with_send_timeout(None);
    let (mut ws, _raw) = client_with_raw_server(config).await;
    let mut sent = 0;
    loop {
        assert!(sent < 1000, "sending never waited");
        match timeout(
            Duration::from_secs(600),
            ws.send(Message::binary(vec![7u8; MESSAGE])),
        )
        .await
        {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        sent += 1;
    }
    assert!(ws.buffered_amount() > 0);
}
