//! Data flowing both ways: text and binary, large messages, fragmentation,
//! split halves used from two tasks, automatic pongs.

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use test_support::raw as common;
use tether::proto::frame::OpCode;
use tether::{Message, WebSocketConfig};

#[tokio::test]
async fn text_and_binary_echo_both_directions_over_tcp() {
    let (mut server, mut client) = default_tcp_pair().await;

    client
        .send(Message::text("hello from the client"))
        .await
        .unwrap();
    let got = server.recv().await.unwrap().unwrap();
    assert_eq!(got, Message::text("hello from the client"));
    server.send(got).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("hello from the client")
    );

    server
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let got = client.recv().await.unwrap().unwrap();
    assert_eq!(got, Message::binary(vec![0u8, 1, 2, 255]));
    client.send(got).await.unwrap();
    assert_eq!(
        server.recv().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );

    // Empty messages are messages too.
    client.send(Message::text("")).await.unwrap();
    client.send(Message::binary(Vec::new())).await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text(""));
    assert_eq!(
        server.recv().await.unwrap().unwrap(),
        Message::binary(Vec::new())
    );
}

#[tokio::test]
async fn many_small_messages_arrive_in_order() {
    let (mut server, mut client) =
        duplex_pair(WebSocketConfig::default(), WebSocketConfig::default()).await;
    let sender = tokio::spawn(async move {
        for i in 0..1000u32 {
            client.feed(Message::text(i.to_string())).await.unwrap();
        }
        client.flush().await.unwrap();
        client
    });
    for i in 0..1000u32 {
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Message::text(i.to_string())
        );
    }
    sender.await.unwrap();
}

/// A pseudo-random payload, so a misplaced byte cannot go unnoticed.
fn pattern(len: usize) -> Bytes {
    seeded_pattern(len, 0x2545_f491)
}

fn seeded_pattern(len: usize, seed: u32) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Large messages one at a time, as a request/response peer sends them:
/// between messages each side's read buffer goes back to the thread's pool
/// and the next large frame reuses a kept large buffer (client and server
/// share one thread here, so they even trade buffers). Every byte must
/// still arrive where it belongs, whatever the sizes' order.
#[tokio::test]
async fn large_messages_in_turn_reuse_buffers_and_arrive_intact() {
    let (mut server, mut client) = default_tcp_pair().await;
    let echo = tokio::spawn(async move { server.echo().await });
    let sizes = [
        300 << 10,
        1 << 20,
        700 << 10,
        (1 << 20) + 3,
        2 << 20,
        100 << 10,
        1 << 20,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let payload = seeded_pattern(len, i as u32 * 7919);
        client.send(Message::Binary(payload.clone())).await.unwrap();
        let back = client.recv().await.unwrap().unwrap();
        assert_eq!(back, Message::Binary(payload), "message {i} ({len} bytes)");
    }
    client.close(None).await.unwrap();
    let echoed = echo.await.unwrap().unwrap();
    assert_eq!(echoed.messages, sizes.len() as u64);
}

#[tokio::test]
async fn eight_mib_messages_round_trip_both_ways() {
    let (mut server, client) = default_tcp_pair().await;
    let big = pattern(8 << 20);
    let text: String = "é€𝄞 tether ".repeat((8 << 20) / 16);

    let expected = big.clone();
    let expected_text = text.clone();
    let echo = tokio::spawn(async move {
        for _ in 0..2 {
            let msg = server.recv().await.unwrap().unwrap();
            server.send(msg).await.unwrap();
        }
        server
    });
    // Send and receive concurrently (split halves): the echo may start
    // answering before the second message is written, and neither side's
    // buffers hold 8 MiB.
    let (mut sink, mut stream) = client.split();
    let (_, (first, second)) = tokio::join!(
        async {
            sink.send(Message::Binary(big)).await.unwrap();
            sink.send(Message::text(text)).await.unwrap();
        },
        async {
            let first = stream.next().await.unwrap().unwrap();
            let second = stream.next().await.unwrap().unwrap();
            (first, second)
        }
    );
    assert_eq!(first, Message::Binary(expected));
    assert_eq!(second.as_text(), Some(expected_text.as_str()));
    echo.await.unwrap();
}

#[tokio::test]
async fn fragment_size_splits_outgoing_messages_into_frames() {
    let mut config = WebSocketConfig::default();
    config.protocol.fragment_size = Some(1000);
    let (mut ws, mut raw) = client_with_raw_server(config).await;

    let payload = pattern(4500);
    ws.send(Message::Binary(payload.clone())).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let f = raw.recv().await.unwrap();
        let fin = f.fin;
        frames.push(f);
        if fin {
            break;
        }
    }
    let opcodes: Vec<_> = frames.iter().map(|f| f.opcode).collect();
    assert_eq!(
        opcodes,
        [
            OpCode::Binary,
            OpCode::Continuation,
            OpCode::Continuation,
            OpCode::Continuation,
            OpCode::Continuation
        ]
    );
    assert!(frames.iter().all(|f| f.masked && f.payload.len() <= 1000));
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(joined, payload);

    // Text split between the bytes of a multi-byte character still arrives
    // whole at a real peer.
    ws.send(Message::text("€".repeat(1000))).await.unwrap();
    let mut text = Vec::new();
    loop {
        let f = raw.recv().await.unwrap();
        text.extend_from_slice(&f.payload);
        if f.fin {
            break;
        }
    }
    assert_eq!(String::from_utf8(text).unwrap(), "€".repeat(1000));
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_by_a_tether_peer() {
    let mut config = WebSocketConfig::default();
    config.protocol.fragment_size = Some(7);
    let (mut server, mut client) = duplex_pair(config.clone(), config).await;
    let text = "fragmented ✓ message, ".repeat(50);
    client.send(Message::text(text.as_str())).await.unwrap();
    assert_eq!(
        server.recv().await.unwrap().unwrap().as_text(),
        Some(text.as_str())
    );
    server.send(Message::Binary(pattern(777))).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Binary(pattern(777))
    );
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let (server, client) = default_tcp_pair().await;

    // The server echoes with its halves forwarded into each other.
    let echo = tokio::spawn(async move {
        let (mut sink, mut stream) = server.split();
        while let Some(msg) = stream.next().await {
            match msg.unwrap() {
                m @ (Message::Text(_) | Message::Binary(_)) => sink.send(m).await.unwrap(),
                Message::Close(_) => break,
                _ => {}
            }
        }
        // Flushes the Close echo and winds the connection down.
        let _ = stream.next().await;
    });

    let (mut sink, mut stream) = client.split();
    let writer = tokio::spawn(async move {
        for i in 0..200u32 {
            sink.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        sink
    });
    let reader = tokio::spawn(async move {
        for i in 0..200u32 {
            let msg = stream.next().await.unwrap().unwrap();
            assert_eq!(msg, Message::text(format!("message {i}")));
        }
        stream
    });
    let sink = writer.await.unwrap();
    let stream = reader.await.unwrap();
    let mut ws = sink.reunite(stream).expect("halves of one socket");
    ws.close(None).await.unwrap();
    echo.await.unwrap();
}

#[tokio::test]
async fn pings_are_answered_with_pongs_automatically() {
    let (mut ws, mut raw) = client_with_raw_server(WebSocketConfig::default()).await;
    raw.send(true, OpCode::Ping, b"are you there").await;
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"are you there"))
    );
    let pong = raw.recv().await.unwrap();
    assert_eq!(pong.opcode, OpCode::Pong);
    assert_eq!(pong.payload, b"are you there");
    assert!(pong.masked, "a client masks its pongs");

    // Between the fragments of a message, too (RFC 6455 §5.4).
    raw.send(false, OpCode::Text, b"hel").await;
    raw.send(true, OpCode::Ping, b"mid").await;
    raw.send(true, OpCode::Continuation, b"lo").await;
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"mid"))
    );
    assert_eq!(raw.recv().await.unwrap().payload, b"mid");
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hello"));
}

#[tokio::test]
async fn pongs_and_pings_sent_by_the_application_arrive() {
    let (mut server, mut client) =
        duplex_pair(WebSocketConfig::default(), WebSocketConfig::default()).await;
    client
        .send(Message::Ping(Bytes::from_static(b"p1")))
        .await
        .unwrap();
    assert_eq!(
        server.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"p1"))
    );
    // The server's automatic pong reaches the client.
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"p1"))
    );
    server
        .send(Message::Pong(Bytes::from_static(b"beat")))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"beat"))
    );
}
