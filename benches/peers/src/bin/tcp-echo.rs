//! Raw TCP echo: bytes in, the same bytes out, with `tokio::io::copy_buf`
//! through a 64 KiB buffer (tokio's plain `copy` uses 8 KiB, which would
//! handicap the baseline on large messages). No handshake, no framing:
//! `tether bench --raw-tcp` sends it pre-encoded WebSocket frames.

use tokio::io::BufReader;

fn main() {
    tether_bench_peers::serve("raw TCP", |mut tcp| async move {
        let (r, mut w) = tcp.split();
        let mut r = BufReader::with_capacity(64 << 10, r);
        let _ = tokio::io::copy_buf(&mut r, &mut w).await;
    });
}
