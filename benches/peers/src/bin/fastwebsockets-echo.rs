//! Echo server on fastwebsockets, as in its `echo_server` example:
//! `FragmentCollector` over `WebSocket::after_handshake`, echoing each
//! text/binary frame with `write_frame`.

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};

fn main() {
    tether_bench_peers::serve("fastwebsockets", |mut tcp| async move {
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
    });
}
