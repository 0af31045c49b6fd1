//! A peer that breaks RFC 6455 gets a Close frame with the code §7.4.1 asks
//! for, and the application sees `Error::Protocol` naming the rule.

use common::*;
use test_support::raw as common;
use tether::proto::frame::OpCode;
use tether::proto::ProtocolError;
use tether::{Error, WebSocketConfig};
use tokio::io::AsyncWriteExt;

/// Read until the stream yields an error; a clean end is a test failure.
async fn first_error<S>(ws: &mut tether::WebSocket<S>) -> Error
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.recv().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return e,
            None => panic!("stream ended without an error"),
        }
    }
}

/// Feed `bytes` to a tether server from a raw client; return the error the
/// server reports and the close code the raw client received.
async fn server_fails_on(config: WebSocketConfig, bytes: Vec<u8>) -> (Error, Option<u16>) {
    let (mut ws, mut raw) = server_with_raw_client(config).await;
    let server = tokio::spawn(async move { first_error(&mut ws).await });
    raw.io.write_all(&bytes).await.unwrap();
    let frames = raw.recv_until_close().await;
    let code = frames.last().unwrap().close_code();
    // After failing, the server closes its side; we close ours.
    assert!(raw.reaches_eof().await);
    drop(raw);
    (server.await.unwrap(), code)
}

/// The same for a tether client and a raw server.
async fn client_fails_on(config: WebSocketConfig, bytes: Vec<u8>) -> (Error, Option<u16>) {
    let (mut ws, mut raw) = client_with_raw_server(config).await;
    let client = tokio::spawn(async move { first_error(&mut ws).await });
    raw.io.write_all(&bytes).await.unwrap();
    let frames = raw.recv_until_close().await;
    let code = frames.last().unwrap().close_code();
    drop(raw);
    (client.await.unwrap(), code)
}

fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_frame(true, 0, opcode, Some([1, 2, 3, 4]), payload)
}

#[tokio::test]
async fn server_receives_unmasked_frame() {
    let frame = encode_frame(true, 0, OpCode::Text, None, b"hello");
    let (err, code) = server_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::UnmaskedClientFrame)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
    assert_eq!(err.close_code().0, 1002);
}

#[tokio::test]
async fn client_receives_masked_frame() {
    let (err, code) =
        client_fails_on(WebSocketConfig::default(), masked(OpCode::Text, b"hi")).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::MaskedServerFrame)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn server_receives_invalid_utf8_text() {
    // "κόσμε" followed by an encoded surrogate (Autobahn 6.3.1).
    let bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
    let (err, code) = server_fails_on(WebSocketConfig::default(), masked(OpCode::Text, bad)).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err:?}"
    );
    assert_eq!(code, Some(1007));
}

#[tokio::test]
async fn client_receives_invalid_utf8_split_across_fragments() {
    let mut bytes = encode_frame(false, 0, OpCode::Text, None, b"ok \xe2\x82");
    bytes.extend(encode_frame(
        true,
        0,
        OpCode::Continuation,
        None,
        b"\x28 not a euro",
    ));
    let (err, code) = client_fails_on(WebSocketConfig::default(), bytes).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err:?}"
    );
    assert_eq!(code, Some(1007));
}

#[tokio::test]
async fn server_receives_oversized_message() {
    let mut config = WebSocketConfig::default();
    config.protocol.max_message_size = 1024;
    let (err, code) = server_fails_on(config, masked(OpCode::Binary, &[0u8; 2000])).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::MessageTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn server_receives_oversized_fragmented_message() {
    let mut config = WebSocketConfig::default();
    config.protocol.max_message_size = 1024;
    let mut bytes = Vec::new();
    bytes.extend(encode_frame(
        false,
        0,
        OpCode::Binary,
        Some([9, 9, 9, 9]),
        &[1; 600],
    ));
    bytes.extend(encode_frame(
        true,
        0,
        OpCode::Continuation,
        Some([9, 9, 9, 9]),
        &[1; 600],
    ));
    let (err, code) = server_fails_on(config, bytes).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::MessageTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn server_receives_frame_declaring_an_oversized_length() {
    // Only the header arrives: the limit applies before any payload.
    let mut config = WebSocketConfig::default();
    config.protocol.max_frame_size = 4096;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let (err, code) = server_fails_on(config, header).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::FrameTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn server_receives_reserved_bits() {
    let frame = encode_frame(true, 0b100, OpCode::Text, Some([1, 2, 3, 4]), b"x");
    let (err, code) = server_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::ReservedBitsSet)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn server_receives_reserved_opcode() {
    let (err, code) =
        server_fails_on(WebSocketConfig::default(), vec![0x83, 0x80, 0, 0, 0, 0]).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::ReservedOpcode(3))),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn server_receives_continuation_without_a_message() {
    let frame = masked(OpCode::Continuation, b"orphan");
    let (err, code) = server_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::UnexpectedContinuation)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn server_receives_close_with_invalid_code() {
    let frame = masked(OpCode::Close, &close_payload(1005, ""));
    let (err, code) = server_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidCloseCode(1005))),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn messages_before_the_violation_are_still_delivered() {
    let (mut ws, mut raw) = server_with_raw_client(WebSocketConfig::default()).await;
    let mut bytes = masked(OpCode::Text, b"fine");
    bytes.extend(encode_frame(true, 0, OpCode::Text, None, b"unmasked"));
    raw.io.write_all(&bytes).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        tether::Message::text("fine")
    );
    let server = tokio::spawn(async move { ws.recv().await });
    assert_eq!(
        raw.recv_until_close().await.last().unwrap().close_code(),
        Some(1002)
    );
    drop(raw);
    let err = server.await.unwrap().unwrap().unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::UnmaskedClientFrame)
    ));
}

#[tokio::test]
async fn server_receives_oversized_ping() {
    // 126 bytes of ping payload: control frames carry at most 125 (§5.5).
    let mut frame = vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0];
    frame.extend_from_slice(&[0u8; 126]);
    let (err, code) = server_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::ControlFrameTooLong)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn client_receives_fragmented_ping() {
    let frame = encode_frame(false, 0, OpCode::Ping, None, b"half");
    let (err, code) = client_fails_on(WebSocketConfig::default(), frame).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::FragmentedControlFrame)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test]
async fn client_receives_new_message_inside_a_fragmented_one() {
    let mut bytes = encode_frame(false, 0, OpCode::Text, None, b"first ");
    bytes.extend(encode_frame(true, 0, OpCode::Binary, None, b"second"));
    let (err, code) = client_fails_on(WebSocketConfig::default(), bytes).await;
    assert!(
        matches!(err, Error::Protocol(ProtocolError::ExpectedContinuation)),
        "{err:?}"
    );
    assert_eq!(code, Some(1002));
}

#[tokio::test(start_paused = true)]
async fn failing_towards_a_peer_that_never_reads_ends_after_close_timeout() {
    // The raw client never reads: fill the pipe so our Close cannot be
    // flushed, then break the protocol. The failure must still be reported,
    // bounded by close_timeout rather than hanging on the full pipe.
    let (mut ws, mut raw) = server_with_raw_client(WebSocketConfig::default()).await;
    let payload = vec![0u8; 16 * 1024];
    for _ in 0..1000 {
        let send = ws.send(tether::Message::binary(payload.clone()));
        if tokio::time::timeout(std::time::Duration::from_secs(1), send)
            .await
            .is_err()
        {
            break;
        }
    }
    raw.io
        .write_all(&encode_frame(true, 0, OpCode::Text, None, b"unmasked"))
        .await
        .unwrap();
    let err = ws.recv().await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::UnmaskedClientFrame)),
        "{err:?}"
    );
    assert!(ws.recv().await.is_none());
}
