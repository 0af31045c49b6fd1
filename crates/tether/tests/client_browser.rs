//! `BrowserSocket` against the WHATWG WebSockets standard: states, events,
//! close codes and `wasClean`, `bufferedAmount`, the exceptions, and the
//! browser-like policy (bad ports, one CONNECTING connection per host).

use futures_util::StreamExt;
use std::time::Duration;
use tether::browser::{
    BrowserError, BrowserEvent, BrowserPolicy, BrowserSocket, CloseEvent, ReadyState,
};
use tether::{ClientBuilder, CloseCode, CloseFrame, Message};
use tokio::net::TcpListener;

/// What the test server does after the handshake.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Echo data messages; answer the client's Close.
    Echo,
    /// Close with this code and reason after the first message.
    CloseWith(u16, &'static str),
    /// Send a Close frame without a status code after the first message.
    CloseWithoutStatus,
    /// Drop the TCP connection after the first message.
    Drop,
}

async fn server(behaviour: Behaviour) -> u16 {
    test_support::peer::ws_server("chat", move |mut ws, _| async move {
        while let Some(Ok(m)) = ws.next().await {
            if !m.is_data() {
                continue;
            }
            match behaviour {
                Behaviour::Echo => ws.send(m).await.unwrap(),
                Behaviour::CloseWith(code, reason) => {
                    let _ = ws
                        .close(Some(CloseFrame::new(CloseCode(code), reason)))
                        .await;
                    return;
                }
                Behaviour::CloseWithoutStatus => {
                    let _ = ws.close(None).await;
                    return;
                }
                Behaviour::Drop => return,
            }
        }
    })
    .await
}

async fn next(ws: &mut BrowserSocket) -> BrowserEvent {
    tokio::time::timeout(Duration::from_secs(10), ws.next_event())
        .await
        .expect("an event within 10 s")
        .expect("an event before the end")
}

async fn open(port: u16, protocols: &[&str]) -> BrowserSocket {
    let mut ws = BrowserSocket::new(&format!("ws://127.0.0.1:{port}/"), protocols).unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    match next(&mut ws).await {
        BrowserEvent::Open { .. } => {}
        other => panic!("expected open, got {other:?}"),
    }
    assert_eq!(ws.ready_state(), ReadyState::Open);
    ws
}

#[tokio::test]
async fn open_message_close_with_clean_close_event() {
    let port = server(Behaviour::Echo).await;
    let mut ws =
        BrowserSocket::new(&format!("http://127.0.0.1:{port}/"), &["chat", "other"]).unwrap();
    assert_eq!(
        ws.send_text("too early"),
        Err(BrowserError::InvalidState(
            "send() while the connection is still CONNECTING".into()
        ))
    );
    match next(&mut ws).await {
        BrowserEvent::Open { protocol, .. } => assert_eq!(protocol, "chat"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.protocol(), "chat");
    ws.send_text("hello").unwrap();
    ws.send_binary(vec![1u8, 2, 3]).unwrap();
    assert_eq!(
        next(&mut ws).await,
        BrowserEvent::Message(Message::text("hello"))
    );
    assert_eq!(
        next(&mut ws).await,
        BrowserEvent::Message(Message::binary(vec![1u8, 2, 3]))
    );
    assert_eq!(ws.buffered_amount(), 0);
    ws.close(Some(3000), "done").unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    // A second close() does nothing.
    ws.close(Some(1000), "").unwrap();
    match next(&mut ws).await {
        BrowserEvent::Close(c) => {
            assert!(c.was_clean);
            assert_eq!(c.code, 3000, "the server echoes our code");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(ws.next_event().await, None);
}

#[tokio::test]
async fn server_close_code_and_reason_reach_the_close_event() {
    let port = server(Behaviour::CloseWith(4001, "custom reason")).await;
    let mut ws = open(port, &[]).await;
    ws.send_text("trigger").unwrap();
    assert_eq!(
        next(&mut ws).await,
        BrowserEvent::Close(CloseEvent {
            code: 4001,
            reason: "custom reason".into(),
            was_clean: true
        })
    );
}

#[tokio::test]
async fn close_frame_without_status_is_reported_as_1005() {
    let port = server(Behaviour::CloseWithoutStatus).await;
    let mut ws = open(port, &[]).await;
    ws.send_text("trigger").unwrap();
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!((c.code, c.was_clean), (1005, true)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lost_connection_fires_error_then_close_1006_not_clean() {
    let port = server(Behaviour::Drop).await;
    let mut ws = open(port, &[]).await;
    ws.send_text("trigger").unwrap();
    assert_eq!(next(&mut ws).await, BrowserEvent::Error);
    assert_eq!(
        next(&mut ws).await,
        BrowserEvent::Close(CloseEvent {
            code: 1006,
            reason: String::new(),
            was_clean: false
        })
    );
    assert!(ws.failure().is_some());
}

#[tokio::test]
async fn protocol_error_by_the_server_is_an_abnormal_closure() {
    // After the handshake the server sends a masked frame (servers must not
    // mask: RFC 6455 §5.1).
    let port = test_support::peer::raw_server("", &[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1]).await;
    let mut ws = open(port, &[]).await;
    assert_eq!(next(&mut ws).await, BrowserEvent::Error);
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!((c.code, c.was_clean), (1006, false)),
        other => panic!("{other:?}"),
    }
    assert!(
        ws.failure().unwrap().contains("protocol"),
        "{:?}",
        ws.failure()
    );
}

#[tokio::test]
async fn unrequested_subprotocol_fails_the_connection_without_open() {
    // WHATWG/RFC 6455 §4.1: a protocol the client did not offer fails the
    // connection: error, then close 1006, and never an open event.
    let port = test_support::peer::raw_server("Sec-WebSocket-Protocol: evil\r\n", b"").await;
    let mut ws = BrowserSocket::new(&format!("ws://127.0.0.1:{port}/"), &["chat"]).unwrap();
    assert_eq!(next(&mut ws).await, BrowserEvent::Error);
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!((c.code, c.was_clean), (1006, false)),
        other => panic!("{other:?}"),
    }
    assert!(ws.failure().unwrap().contains("evil"), "{:?}", ws.failure());
    assert_eq!(ws.protocol(), "");
}

#[tokio::test]
async fn close_arguments_are_validated_like_the_dom() {
    let port = server(Behaviour::Echo).await;
    let ws = open(port, &[]).await;
    for code in [999, 1001, 1005, 1006, 2999, 5000] {
        assert!(
            matches!(
                ws.close(Some(code), ""),
                Err(BrowserError::InvalidAccess(_))
            ),
            "{code}"
        );
    }
    let long = "é".repeat(62); // 124 bytes
    assert!(matches!(
        ws.close(Some(1000), &long),
        Err(BrowserError::Syntax(_))
    ));
    assert_eq!(
        ws.ready_state(),
        ReadyState::Open,
        "failed calls change nothing"
    );
    assert!(matches!(
        ws.send(Message::Ping(Default::default())),
        Err(BrowserError::InvalidAccess(_))
    ));
    ws.close(None, &"é".repeat(61)).unwrap();
}

#[tokio::test]
async fn send_after_close_grows_buffered_amount_and_sends_nothing() {
    let port = server(Behaviour::Echo).await;
    let mut ws = open(port, &[]).await;
    ws.close(Some(1000), "").unwrap();
    ws.send_text("12345").unwrap();
    ws.send_binary(vec![0u8; 10]).unwrap();
    assert_eq!(ws.buffered_amount(), 15);
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!((c.code, c.was_clean), (1000, true)),
        other => panic!("expected only the close event, got {other:?}"),
    }
    ws.send_text("x").unwrap();
    assert_eq!(ws.buffered_amount(), 16);
}

#[tokio::test]
async fn close_while_connecting_fails_the_connection() {
    // A server that accepts TCP but never answers the handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tcp);
    });
    let mut ws = BrowserSocket::new(&format!("ws://127.0.0.1:{port}/"), &[]).unwrap();
    ws.close(None, "").unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    assert_eq!(next(&mut ws).await, BrowserEvent::Error);
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!((c.code, c.was_clean), (1006, false)),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    hold.abort();
}

#[tokio::test]
async fn browser_like_policy_refuses_bad_ports() {
    let builder = ClientBuilder::new("ws://127.0.0.1:6667/");
    let mut ws = BrowserSocket::open(builder, BrowserPolicy::browser_like()).unwrap();
    assert_eq!(next(&mut ws).await, BrowserEvent::Error);
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert_eq!(c.code, 1006),
        other => panic!("{other:?}"),
    }
    assert!(ws.failure().unwrap().contains("bad port"));
}

#[tokio::test]
async fn browser_like_policy_allows_one_connecting_connection_per_host() {
    // The server answers nothing until told to; with the rule, the second
    // socket must not even open its TCP connection before the first is open.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let policy = BrowserPolicy::browser_like();
    let mut first = BrowserSocket::open(ClientBuilder::new(&url).no_proxy(), policy).unwrap();
    let mut second = BrowserSocket::open(ClientBuilder::new(&url).no_proxy(), policy).unwrap();
    let (tcp1, _) = listener.accept().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "a second connection was attempted while the first was CONNECTING"
    );
    let serve = |tcp| async move {
        let mut ws = tether::accept(tcp).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    };
    tokio::spawn(serve(tcp1));
    assert!(matches!(next(&mut first).await, BrowserEvent::Open { .. }));
    let (tcp2, _) = listener.accept().await.unwrap();
    tokio::spawn(serve(tcp2));
    assert!(matches!(next(&mut second).await, BrowserEvent::Open { .. }));
}

#[tokio::test]
async fn messages_after_close_call_are_not_delivered() {
    let port = server(Behaviour::Echo).await;
    let mut ws = open(port, &[]).await;
    ws.send_text("echoed after close()").unwrap();
    ws.close(Some(1000), "").unwrap();
    // The echo may arrive after close(); it must then be dropped.
    match next(&mut ws).await {
        BrowserEvent::Close(c) => assert!(c.was_clean),
        other => panic!("expected only the close event while CLOSING, got {other:?}"),
    }
}
