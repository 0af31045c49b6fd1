//! Echo: every text and binary message goes back to the peer as it came.
//!
//! The canonical WebSocket server (`tether serve`'s `/echo`, Autobahn's
//! peer, the benchmark harness's reference), written once at the poll level
//! so that it batches: every message already buffered is queued, then the
//! whole batch is flushed with one write. Written with `async`/`.await` over
//! `Stream` and `Sink` the same loop is just as correct, but each message
//! then lives in the future's state across the `.await`, and copying it in
//! and out of there cost a pipelined echo server about 10% of its CPU time.
//! Backpressure holds: no message is read while the output is over
//! `write_buffer_limit`.

use crate::error::Result;
use crate::message::Message;
use crate::socket::WebSocket;
use std::task::{Context, Poll};
use tether_proto::{CloseFrame, InPlace};
use tokio::io::{AsyncRead, AsyncWrite};

/// What an echo has done so far (see [`WebSocket::poll_echo`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Echoed {
    /// Text and binary messages received (and sent back).
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// The peer's Close, once it arrived (`Some(None)`: a Close without a
    /// status code).
    pub peer_close: Option<Option<CloseFrame>>,
}

/// Why the batching loop stopped taking messages.
enum Stopped {
    /// Nothing more to read for now (the read waker is registered).
    Reading,
    /// The output is over its limit (the write waker is registered).
    Writing,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Send every text and binary message back, until the connection ends
    /// (`Ok` after a closing handshake, or when the transport ends cleanly).
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
    /// while let Ok((tcp, _)) = listener.accept().await {
    ///     tokio::spawn(async move {
    ///         let echoed = tether::accept(tcp).await?.echo().await?;
    ///         println!("echoed {} messages", echoed.messages);
    ///         Ok::<_, tether::Error>(())
    ///     });
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn echo(&mut self) -> Result<Echoed> {
        let mut echoed = Echoed::default();
        std::future::poll_fn(|cx| self.poll_echo(cx, &mut echoed)).await?;
        Ok(echoed)
    }

    /// Poll form of [`echo`](Self::echo), for callers that watch progress
    /// (`echoed` grows with every batch) or race it against something else.
    /// `Ready(Ok(()))` once the connection is over.
    pub fn poll_echo(&mut self, cx: &mut Context<'_>, echoed: &mut Echoed) -> Poll<Result<()>> {
        loop {
            let stopped = loop {
                match self.poll_ready_inner(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break Stopped::Writing,
                }
                // A small message goes straight from the read buffer to
                // the output (no `Message` made: no allocation, one copy);
                // anything else takes the general way.
                match self.echo_in_place() {
                    InPlace::Read(len) => {
                        echoed.messages += 1;
                        echoed.bytes += len? as u64;
                        continue;
                    }
                    // Nothing whole is buffered: read, so that a small
                    // message arriving now takes the same way (one message
                    // in flight would otherwise always take the general one).
                    InPlace::NeedInput => match self.poll_read_ahead(cx) {
                        Poll::Ready(true) => continue,
                        Poll::Ready(false) => {}
                        Poll::Pending => break Stopped::Reading,
                    },
                    InPlace::PollEvent => {}
                }
                match self.poll_next_fast(cx) {
                    Poll::Ready(Some(Ok(m))) if m.is_data() => {
                        echoed.messages += 1;
                        echoed.bytes += m.len() as u64;
                        self.start_send_inner(m)?;
                    }
                    Poll::Ready(Some(Ok(Message::Close(f)))) => echoed.peer_close = Some(f),
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break Stopped::Reading,
                }
            };
            match self.poll_flush_inner(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if let Stopped::Reading = stopped {
                return Poll::Pending;
            }
            // The output drained after all: take more messages.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebSocketConfig;
    use futures_util::{SinkExt, StreamExt};
    use tether_proto::{CloseCode, Role};

    fn pair(
        limit: usize,
    ) -> (
        WebSocket<tokio::io::DuplexStream>,
        WebSocket<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 10);
        let config = WebSocketConfig {
            write_buffer_limit: limit,
            ..WebSocketConfig::default()
        };
        (
            WebSocket::from_raw(a, Role::Client, config.clone(), &[]),
            WebSocket::from_raw(b, Role::Server, config, &[]),
        )
    }

    #[tokio::test]
    async fn reading_in_place_and_recv_together_keep_every_message_in_order() {
        let (mut client, mut server) = pair(64 << 10);
        let sent = vec![
            Message::text("small"),
            Message::binary(vec![1u8; 300]),
            Message::Ping(bytes::Bytes::from_static(b"p")),
            Message::binary(vec![2u8; 3]),
            Message::text("é"),
        ];
        for m in &sent {
            client.feed(m.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        let (mut got, mut in_place) = (vec![], 0);
        while got.len() < sent.len() {
            if let Some(m) = server.recv_buffered_ref(|m| m.to_message()) {
                got.push(m.into());
                in_place += 1;
                continue;
            }
            got.push(server.recv().await.unwrap().unwrap());
        }
        assert_eq!(got, sent);
        assert!(in_place >= 1, "the small messages can be read in place");
    }

    #[tokio::test]
    async fn echo_returns_every_message_in_order_and_counts_them() {
        let (client, mut server) = pair(64 << 10);
        let echo = tokio::spawn(async move { server.echo().await });
        let sent: Vec<Message> = (0..300)
            .map(|i| match i % 3 {
                0 => Message::text(format!("message {i}")),
                1 => Message::binary(vec![i as u8; i * 37]),
                _ => Message::Ping(bytes::Bytes::from_static(b"not echoed")),
            })
            .collect();
        // Write and read at once: a client that only writes while the echo
        // answers would fill both directions' limits and stall (backpressure).
        let (mut tx, mut rx) = client.split();
        let to_send = sent.clone();
        let writer = tokio::spawn(async move {
            for m in to_send {
                tx.feed(m).await.unwrap();
            }
            tx.flush().await.unwrap();
            tx
        });
        let mut got = vec![];
        while got.len() < 200 {
            match rx.next().await.unwrap().unwrap() {
                m if m.is_data() => got.push(m),
                _ => {}
            }
        }
        let mut client = writer.await.unwrap().reunite(rx).unwrap();
        let want: Vec<Message> = sent.iter().filter(|m| m.is_data()).cloned().collect();
        assert_eq!(got, want);
        client
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
            .await
            .unwrap();
        let echoed = echo.await.unwrap().unwrap();
        assert_eq!(echoed.messages, 200);
        assert_eq!(
            echoed.bytes,
            want.iter().map(|m| m.len() as u64).sum::<u64>()
        );
        assert_eq!(
            echoed.peer_close,
            Some(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
        );
    }

    #[tokio::test]
    async fn echo_answers_one_message_at_a_time_whatever_its_kind() {
        // Depth 1: the echo finds an empty buffer every time and reads
        // ahead; small messages go in place, everything else the general
        // way, and a ping between them is answered, not echoed.
        let (mut client, mut server) = pair(64 << 10);
        let echo = tokio::spawn(async move { server.echo().await });
        for i in 0..120usize {
            let m = match i % 4 {
                0 => Message::text(format!("small {i}")),
                1 => Message::binary(vec![i as u8; 125 + i % 3]),
                2 => Message::binary(vec![i as u8; 3000 + i]),
                _ => Message::text("é".repeat(i)),
            };
            client.send(m.clone()).await.unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), m, "message {i}");
            if i % 10 == 0 {
                let ping = bytes::Bytes::from_static(b"?");
                client.send(Message::Ping(ping.clone())).await.unwrap();
                let pong = client.next().await.unwrap().unwrap();
                assert_eq!(pong, Message::Pong(ping));
            }
        }
        client.close(None).await.unwrap();
        let echoed = echo.await.unwrap().unwrap();
        assert_eq!(echoed.messages, 120);
    }

    #[tokio::test]
    async fn echo_fails_on_invalid_utf8_before_the_rest_of_a_small_frame_arrives() {
        // Autobahn 6.4.3: a 21-byte text frame whose bytes 12-15 are not
        // UTF-8, sent in pieces. The echo reads ahead while a small frame is
        // incomplete, but not past text it can already check.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, b) = tokio::io::duplex(1 << 10);
        let mut server = WebSocket::from_raw(b, Role::Server, WebSocketConfig::default(), &[]);
        let echo = tokio::spawn(async move { server.echo().await });
        let key = [0x11, 0x22, 0x33, 0x44];
        let mut payload =
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited".to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        let mut first = vec![0x81, 0x80 | payload.len() as u8];
        first.extend_from_slice(&key);
        first.extend_from_slice(&payload[..16]);
        peer.write_all(&first).await.unwrap();
        // The rest is never sent: the echo must fail on what it has.
        let mut head = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            peer.read_exact(&mut head),
        )
        .await
        .expect("the echo waited for the rest of the frame")
        .unwrap();
        assert_eq!(head[0], 0x88, "a Close");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1007);
        drop(peer);
        assert!(matches!(
            echo.await.unwrap(),
            Err(crate::Error::Protocol(
                tether_proto::ProtocolError::InvalidUtf8
            ))
        ));
    }

    #[tokio::test]
    async fn echo_stops_reading_while_the_peer_does_not_read() {
        // A 1 KiB pipe and a 4 KiB output limit: a client that only writes
        // fills both, and the echo must stop taking its messages rather
        // than buffer them.
        let (mut client, mut server) = pair(4 << 10);
        let echo = tokio::spawn(async move {
            let mut echoed = Echoed::default();
            let r = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                std::future::poll_fn(|cx| server.poll_echo(cx, &mut echoed)),
            )
            .await;
            (r.is_err(), echoed, server.buffered_amount())
        });
        let payload = Message::binary(vec![1u8; 1000]);
        let writer = tokio::spawn(async move {
            for _ in 0..1000 {
                if client.send(payload.clone()).await.is_err() {
                    break;
                }
            }
            client
        });
        let (timed_out, echoed, buffered) = echo.await.unwrap();
        assert!(timed_out, "the echo ended early");
        assert!(buffered < (4 << 10) + 1100, "{buffered} bytes queued");
        assert!(echoed.messages < 20, "{} messages taken", echoed.messages);
        writer.abort();
    }
}
