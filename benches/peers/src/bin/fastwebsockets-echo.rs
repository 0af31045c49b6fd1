//! Echo server on fastwebsockets, as in its `echo_server` example:
//! `FragmentCollector` over `WebSocket::after_handshake`, echoing each
//! text/binary frame with `write_frame`.
//!
//! With `--tls CERT KEY`, over tokio-rustls: the `WebSocket` itself, with a
//! `flush` after each `write_frame` (fastwebsockets' documented need on a
//! buffered stream such as `TlsStream`, which `FragmentCollector` does not
//! offer; the benchmark's clients send no fragmented messages).

use fastwebsockets::{FragmentCollector, Frame, OpCode, Role, WebSocket};
use tether_bench_peers::TlsStream;

fn main() {
    match tether_bench_peers::tls_acceptor() {
        None => tether_bench_peers::serve("fastwebsockets", |mut tcp| async move {
            if tether_bench_peers::handshake(&mut tcp).await.is_err() {
                return;
            }
            let mut ws = WebSocket::after_handshake(tcp, Role::Server);
            ws.set_auto_close(true);
            ws.set_auto_pong(true);
            ws.set_max_message_size(64 << 20);
            let mut ws = FragmentCollector::new(ws);
            loop {
                let frame = match ws.read_frame().await {
                    Ok(f) => f,
                    Err(_) => return,
                };
                let echo = match frame.opcode {
                    OpCode::Close => return,
                    OpCode::Text | OpCode::Binary => true,
                    _ => false,
                };
                if echo && ws.write_frame(frame).await.is_err() {
                    return;
                }
            }
        }),
        Some(tls) => tether_bench_peers::serve_tls("fastwebsockets", tls, echo_tls),
    }
}

async fn echo_tls(mut tls: TlsStream) {
    if tether_bench_peers::handshake(&mut tls).await.is_err() {
        return;
    }
    let mut ws = WebSocket::after_handshake(tls, Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(64 << 20);
    loop {
        let frame = match ws.read_frame().await {
            Ok(f) => f,
            Err(_) => return,
        };
        let echo = match frame.opcode {
            OpCode::Close => return,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => true,
            _ => false,
        };
        if !echo {
            continue;
        }
        // The frame read keeps the client's masking key; the echo has none.
        let frame = Frame::new(frame.fin, frame.opcode, None, frame.payload);
        if ws.write_frame(frame).await.is_err() || ws.flush().await.is_err() {
            return;
        }
    }
}
