//! The closing handshake (RFC 6455 §7) initiated by either side, `close()`
//! and `Sink::close` completing, and a transport that just vanishes.

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use test_support::raw as common;
use tether::proto::frame::OpCode;
use tether::{CloseCode, CloseFrame, Error, Message, WebSocketConfig};

#[tokio::test]
async fn client_initiated_close_surfaces_code_and_reason_on_both_sides() {
    let (mut server, mut client) = default_tcp_pair().await;
    let server_task = tokio::spawn(async move {
        let msg = server.recv().await.unwrap().unwrap();
        assert_eq!(
            msg,
            Message::Close(Some(CloseFrame::new(CloseCode(4000), "client done")))
        );
        assert_eq!(
            server.peer_close(),
            Some(&CloseFrame::new(CloseCode(4000), "client done"))
        );
        // After the Close the stream ends (the server closes the TCP connection).
        assert!(server.recv().await.is_none());
        server
    });
    client
        .close(Some(CloseFrame::new(CloseCode(4000), "client done")))
        .await
        .unwrap();
    // The server echoed the code (RFC 6455 §5.5.1).
    assert_eq!(client.peer_close().map(|f| f.code), Some(CloseCode(4000)));
    assert!(client.recv().await.is_none());
    server_task.await.unwrap();
}

#[tokio::test]
async fn server_initiated_close_surfaces_code_and_reason_on_both_sides() {
    let (mut server, mut client) = default_tcp_pair().await;
    let client_task = tokio::spawn(async move {
        let msg = client.recv().await.unwrap().unwrap();
        assert_eq!(
            msg,
            Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restarting")))
        );
        // The client waits for the server to close the TCP connection.
        assert!(client.recv().await.is_none());
        client
    });
    server
        .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restarting")))
        .await
        .unwrap();
    assert_eq!(
        server.peer_close().map(|f| f.code),
        Some(CloseCode::GOING_AWAY)
    );
    client_task.await.unwrap();
    // Sending after the close is refused, not silently dropped.
    assert!(server.send(Message::text("late")).await.is_err());
}

#[tokio::test]
async fn close_without_status_code_is_reported_as_none() {
    let (mut server, mut client) =
        duplex_pair(WebSocketConfig::default(), WebSocketConfig::default()).await;
    let server_task = tokio::spawn(async move {
        assert_eq!(server.recv().await.unwrap().unwrap(), Message::Close(None));
        assert!(server.recv().await.is_none());
    });
    client.close(None).await.unwrap();
    assert_eq!(client.peer_close(), None);
    server_task.await.unwrap();
}

#[tokio::test]
async fn data_sent_before_the_close_is_delivered_first() {
    let (mut server, mut client) = default_tcp_pair().await;
    client.feed(Message::text("one")).await.unwrap();
    client.feed(Message::text("two")).await.unwrap();
    client
        .feed(Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye",
        ))))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("one"));
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("two"));
    assert!(matches!(
        server.recv().await,
        Some(Ok(Message::Close(Some(_))))
    ));
    assert!(server.recv().await.is_none());
    // The client sees the echo, then the end.
    assert!(
        matches!(client.recv().await, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::NORMAL)
    );
    assert!(client.recv().await.is_none());
}

#[tokio::test]
async fn data_arriving_while_closing_is_discarded_by_close() {
    let (mut ws, mut raw) = client_with_raw_server(WebSocketConfig::default()).await;
    let peer = tokio::spawn(async move {
        // The raw server keeps talking before it answers the Close.
        let frames = raw.recv_until_close().await;
        assert_eq!(frames.last().unwrap().close_code(), Some(1000));
        raw.send(true, OpCode::Text, b"still talking").await;
        raw.send(true, OpCode::Close, &close_payload(1000, ""))
            .await;
        drop(raw);
    });
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .await
        .unwrap();
    assert_eq!(ws.peer_close().map(|f| f.code), Some(CloseCode::NORMAL));
    peer.await.unwrap();
}

#[tokio::test]
async fn sink_close_sends_a_close_frame_and_completes() {
    let (mut ws, mut raw) = client_with_raw_server(WebSocketConfig::default()).await;
    SinkExt::close(&mut ws).await.unwrap();
    let frames = raw.recv_until_close().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1000));
    // The raw server answers and closes; the stream then ends cleanly.
    raw.send(true, OpCode::Close, &close_payload(1000, ""))
        .await;
    drop(raw);
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(Some(_))))));
    assert!(ws.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn close_gives_up_after_close_timeout_when_the_peer_never_answers() {
    let config = WebSocketConfig::default().with_close_timeout(Duration::from_secs(3));
    let (mut ws, mut raw) = client_with_raw_server(config).await;
    let started = tokio::time::Instant::now();
    let result = ws.close(None).await;
    // Virtual time: the whole closing handshake is bounded by one
    // close_timeout, not one per stage.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "close() gave up after {waited:?}"
    );
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                what: "closing handshake",
                ..
            })
        ),
        "{result:?}"
    );
    // Our Close did go out.
    assert_eq!(raw.recv().await.unwrap().opcode, OpCode::Close);
}

#[tokio::test]
async fn abrupt_tcp_close_is_an_abnormal_closure() {
    let (server, mut client) = default_tcp_pair().await;
    drop(server);
    let err = client.recv().await.unwrap().unwrap_err();
    assert!(is_abnormal_closure(&err), "{err:?}");
    assert!(err.is_io() && !err.is_closed(), "{err:?}");
    assert_eq!(err.close_code(), CloseCode::ABNORMAL);
    // The stream is over after that.
    assert!(client.recv().await.is_none());
}

#[tokio::test]
async fn transport_closed_mid_frame_is_an_abnormal_closure() {
    let (mut ws, mut raw) = server_with_raw_client(WebSocketConfig::default()).await;
    let frame = raw.encode(true, OpCode::Binary, &[7u8; 100]);
    use tokio::io::AsyncWriteExt;
    raw.io.write_all(&frame[..50]).await.unwrap();
    drop(raw);
    let err = ws.recv().await.unwrap().unwrap_err();
    assert!(is_abnormal_closure(&err), "{err:?}");
}

#[tokio::test]
async fn frames_after_the_peers_close_are_ignored() {
    let (mut ws, mut raw) = server_with_raw_client(WebSocketConfig::default()).await;
    let mut bytes = raw.encode(true, OpCode::Close, &close_payload(1000, "done"));
    bytes.extend(raw.encode(true, OpCode::Text, b"after the close"));
    use tokio::io::AsyncWriteExt;
    raw.io.write_all(&bytes).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
    );
    assert!(
        ws.recv().await.is_none(),
        "data after the Close was delivered"
    );
    // The echo went out, and nothing after it.
    let frames = raw.recv_until_close().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1000));
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn split_halves_both_finish_when_the_sink_half_closes() {
    // The read half waits in its own task while the write half closes.
    // Whichever half then reads the transport to its end, the other must
    // learn that the connection is over: neither may be left parked.
    for _ in 0..20 {
        let (mut server, client) = default_tcp_pair().await;
        let echo = tokio::spawn(async move { server.echo().await });
        let (mut tx, mut rx) = client.split();
        let reader = tokio::spawn(async move {
            let mut seen = vec![];
            while let Some(Ok(m)) = rx.next().await {
                seen.push(m);
            }
            seen
        });
        tx.send(Message::text("last words")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        tokio::time::timeout(Duration::from_secs(10), tx.close())
            .await
            .expect("the write half's close finished")
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the read half was told the connection ended")
            .unwrap();
        assert_eq!(seen.first(), Some(&Message::text("last words")));
        echo.await.unwrap().unwrap();
    }
}

fn is_abnormal_closure(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
}

#[tokio::test]
async fn sending_after_the_peer_closed_is_closed_with_the_peers_frame() {
    let (mut server, mut client) = default_tcp_pair().await;
    let server = tokio::spawn(async move {
        server
            .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
            .await
    });
    assert!(matches!(client.recv().await, Some(Ok(Message::Close(_)))));
    assert!(client.recv().await.is_none());
    let err = client.send(Message::text("late")).await.unwrap_err();
    assert!(err.is_closed() && err.is_application(), "{err:?}");
    assert_eq!(
        err.close_frame(),
        Some(&CloseFrame::new(CloseCode::GOING_AWAY, "restart"))
    );
    assert_eq!(err.close_code(), CloseCode::GOING_AWAY);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn sending_after_our_own_close_is_the_same_closed_error() {
    let (_server, mut client) = default_tcp_pair().await;
    client.send(Message::Close(None)).await.unwrap();
    // Our Close is out but the peer has not answered: closing, not closed.
    let err = client.send(Message::text("late")).await.unwrap_err();
    assert!(matches!(err, Error::Closed(None)), "{err:?}");
}
