//! Raw TCP echo: bytes in, the same bytes out, with `tokio::io::copy_buf`
//! through a 256 KiB buffer. The buffer size decides how many bytes each
//! syscall moves, and on loopback that decides the large-message numbers:
//! at 4 x 1 MiB this echo measured 2,340 msgs/s with 64 KiB (tokio's plain
//! `copy` uses 8 KiB), 2,780-2,950 with 256 KiB, 2,480-2,970 with 1 MiB and
//! about 2,760 with 4 MiB. The baseline should be the best a raw echo can do.
//! No handshake, no framing: `tether bench --raw-tcp` sends it pre-encoded
//! WebSocket frames.

use tokio::io::BufReader;

fn main() {
    tether_bench_peers::serve("raw TCP", |mut tcp| async move {
        let (r, mut w) = tcp.split();
        let mut r = BufReader::with_capacity(256 << 10, r);
        let _ = tokio::io::copy_buf(&mut r, &mut w).await;
    });
}
