//! A peer that never reads slows the sender down instead of growing memory.

use common::*;
use futures_util::SinkExt;
use std::time::Duration;
use test_support::raw as common;
use tether::{Message, WebSocketConfig};
use tokio::time::timeout;

const LIMIT: usize = 64 * 1024;
const MESSAGE: usize = 16 * 1024;
/// Largest frame header (8-byte length and mask).
const HEADER: usize = 14;

fn config() -> WebSocketConfig {
    WebSocketConfig::default().with_write_buffer_limit(LIMIT)
}

#[tokio::test(start_paused = true)]
async fn send_pends_when_the_peer_never_reads() {
    // The raw server never reads: the pipe (64 KiB) fills, then our buffer.
    let (mut ws, _raw) = client_with_raw_server(config()).await;
    let mut sent = 0usize;
    let pended = loop {
        assert!(sent < 1000, "sending never waited");
        match timeout(
            Duration::from_secs(1),
            ws.send(Message::binary(vec![7u8; MESSAGE])),
        )
        .await
        {
            Ok(result) => result.unwrap(),
            Err(_) => break sent,
        }
        sent += 1;
        assert!(ws.buffered_amount() <= LIMIT + MESSAGE + HEADER);
    };
    // At least the pipe's worth went through before it stalled.
    assert!(
        pended >= PIPE / (MESSAGE + HEADER),
        "stalled after {pended} messages"
    );
    assert!(ws.buffered_amount() <= LIMIT + MESSAGE + HEADER);
}

#[tokio::test(start_paused = true)]
async fn feeding_without_flushing_is_bounded_by_the_write_buffer_limit() {
    let (mut ws, _raw) = client_with_raw_server(config()).await;
    let mut fed = 0usize;
    loop {
        assert!(fed < 1000, "feeding never waited");
        match timeout(
            Duration::from_secs(1),
            ws.feed(Message::binary(vec![1u8; MESSAGE])),
        )
        .await
        {
            Ok(result) => result.unwrap(),
            Err(_) => break,
        }
        fed += 1;
        let queued = ws.buffered_amount();
        assert!(
            queued <= LIMIT + MESSAGE + HEADER,
            "{queued} bytes queued after {fed} messages"
        );
    }
    assert!(ws.buffered_amount() >= LIMIT, "waited with room to spare");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_sender_resumes_when_the_peer_reads_again() {
    let (mut ws, mut raw) = client_with_raw_server(config()).await;
    let mut sent = 0usize;
    loop {
        match timeout(
            Duration::from_secs(1),
            ws.send(Message::binary(vec![3u8; MESSAGE])),
        )
        .await
        {
            Ok(result) => result.unwrap(),
            Err(_) => break,
        }
        sent += 1;
    }
    // The cancelled send may or may not have queued its message; count the
    // frames the peer gets once it reads.
    let reader = tokio::spawn(async move {
        let mut frames = 0usize;
        while let Some(f) = raw.recv().await {
            assert_eq!(f.payload.len(), MESSAGE);
            frames += 1;
            if frames == sent + 2 {
                break;
            }
        }
        frames
    });
    // Two more sends complete now that the peer reads.
    ws.send(Message::binary(vec![3u8; MESSAGE])).await.unwrap();
    ws.send(Message::binary(vec![3u8; MESSAGE])).await.unwrap();
    assert!(reader.await.unwrap() >= sent + 2);
}

#[tokio::test(start_paused = true)]
async fn ping_flood_from_a_peer_that_never_reads_keeps_memory_bounded() {
    // The raw client sends pings but never reads our pongs.
    let mut config = config();
    config.protocol.control_backlog = 4096;
    let (mut ws, mut raw) = server_with_raw_client(config).await;
    let flood = tokio::spawn(async move {
        for _ in 0..20_000 {
            raw.send(true, tether::proto::frame::OpCode::Ping, &[b'p'; 125])
                .await;
        }
        raw
    });
    let mut pings = 0;
    while pings < 20_000 {
        match ws.recv().await.unwrap().unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
        // Pongs beyond the backlog are coalesced (RFC 6455 §5.5.3).
        assert!(
            ws.buffered_amount() <= 4096 + 2 * 131,
            "{}",
            ws.buffered_amount()
        );
    }
    flood.await.unwrap();
}

#[tokio::test]
async fn split_halves_in_two_tasks_never_lose_the_writers_wakeup() {
    // The read half flushes what the write half queued (and takes the
    // transport's single write waker when it would block); the write half,
    // waiting for room under the limit, must still be woken. 4 MB through a
    // 64 KiB pipe with 64 KiB limits: it stalled for good before the fix.
    let (mut server, client) = duplex_pair(config(), config()).await;
    let echo = tokio::spawn(async move { server.echo().await });
    let (mut tx, mut rx) = futures_util::StreamExt::split(client);
    const COUNT: usize = 250;
    let writer = tokio::spawn(async move {
        for i in 0..COUNT {
            tx.feed(Message::binary(vec![i as u8; MESSAGE]))
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < COUNT {
            match futures_util::StreamExt::next(&mut rx).await {
                Some(Ok(m)) if m.is_data() => {
                    assert_eq!(m.as_bytes()[0], got as u8, "in order");
                    got += 1;
                }
                Some(Ok(_)) => {}
                other => panic!("stream ended after {got} messages: {other:?}"),
            }
        }
        rx
    });
    let (tx, rx) = timeout(Duration::from_secs(20), async {
        (writer.await.unwrap(), reader.await.unwrap())
    })
    .await
    .expect("the halves stalled");
    let mut client = tx.reunite(rx).unwrap();
    client.close(None).await.unwrap();
    let echoed = echo.await.unwrap().unwrap();
    assert_eq!(echoed.messages, COUNT as u64);
}

#[tokio::test(start_paused = true)]
async fn a_parked_writer_hears_of_the_end_seen_by_the_read_half() {
    // The raw server never reads, so the writer parks on a full queue; the
    // read half (another task) then sees the transport end. The writer
    // must be woken with an error, not left waiting for room forever.
    let (ws, raw) = client_with_raw_server(config()).await;
    let (mut tx, mut rx) = futures_util::StreamExt::split(ws);
    let writer = tokio::spawn(async move {
        loop {
            if let Err(e) = tx.send(Message::binary(vec![3u8; MESSAGE])).await {
                return e;
            }
        }
    });
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut rx).await {}
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!writer.is_finished(), "the writer should be parked");
    drop(raw);
    let err = timeout(Duration::from_secs(10), writer)
        .await
        .expect("the parked writer was never woken")
        .unwrap();
    assert!(
        matches!(err, tether::Error::Io(_) | tether::Error::Closed(_)),
        "{err}"
    );
    reader.await.unwrap();
}
