//! Raw TCP echo: bytes in, the same bytes out, with `tokio::io::copy_buf`
//! through a 256 KiB buffer. The buffer size decides how many bytes each
//! syscall moves, and on loopback that decides the large-message numbers:
//! at 4 x 1 MiB this echo measured 2,340 msgs/s with 64 KiB (tokio's plain
//! `copy` uses 8 KiB), 2,780-2,950 with 256 KiB, 2,480-2,970 with 1 MiB and
//! about 2,760 with 4 MiB. The baseline should be the best a raw echo can do.
//! No handshake, no framing: `tether bench --raw-tcp` sends it pre-encoded
//! WebSocket frames.
//!
//! `--unmask`: XOR every byte with a masking key before echoing it, through
//! the same 256 KiB buffer. A WebSocket server must unmask every payload
//! byte it receives (RFC 6455 §5.3); with `tether bench --raw-tcp
//! --raw-mask` (a fresh key per frame on the client) this is the floor that
//! masking sets under any WebSocket implementation. The echoed bytes are
//! not valid frames any more; the raw client only counts them.

use tether::proto::mask::apply_mask;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

const BUF: usize = 256 << 10;

fn main() {
    if std::env::args().any(|a| a == "--unmask") {
        tether_bench_peers::serve("raw TCP (unmasking)", |mut tcp| async move {
            let mut buf = vec![0u8; BUF];
            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                apply_mask(&mut buf[..n], [0x37, 0xfa, 0x21, 0x3d], 0);
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    } else {
        tether_bench_peers::serve("raw TCP", |mut tcp| async move {
            let (r, mut w) = tcp.split();
            let mut r = BufReader::with_capacity(BUF, r);
            let _ = tokio::io::copy_buf(&mut r, &mut w).await;
        });
    }
}
