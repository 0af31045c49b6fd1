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
//!
//! `--tls CERT KEY`: the same echo over TLS (tokio-rustls, rustls's `ring`
//! provider): read what has been decrypted, write it back, flush; the
//! limit for `wss://` servers (`tether bench --raw-tcp tls://HOST:PORT`).

use std::pin::Pin;
use std::task::Poll;
use tether::proto::mask::apply_mask;
use tether_bench_peers::TlsStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};

const BUF: usize = 256 << 10;

/// The TLS echo, unmasking each read first if `unmask`. Each write takes
/// all the plaintext that is ready (up to 256 KiB), so rustls writes many
/// records in one system call, as the TCP echo's buffer lets it.
async fn echo_tls(mut tls: TlsStream, unmask: bool) {
    let mut buf = vec![0u8; BUF];
    while let Ok(n @ 1..) = read_ready(&mut tls, &mut buf).await {
        if unmask {
            apply_mask(&mut buf[..n], [0x37, 0xfa, 0x21, 0x3d], 0);
        }
        if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
            break;
        }
    }
}

/// Wait for at least one byte, then read whatever else is ready without
/// waiting, up to `buf`'s size. Zero at end of stream.
async fn read_ready<S: AsyncRead + Unpin>(io: &mut S, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    std::future::poll_fn(|cx| loop {
        let mut rb = ReadBuf::new(&mut buf[n..]);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(n)),
            Poll::Ready(Ok(())) => {
                n += rb.filled().len();
                if n == buf.len() {
                    return Poll::Ready(Ok(n));
                }
            }
            Poll::Ready(Err(e)) if n == 0 => return Poll::Ready(Err(e)),
            Poll::Ready(Err(_)) => return Poll::Ready(Ok(n)),
            Poll::Pending if n == 0 => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Ok(n)),
        }
    })
    .await
}

fn main() {
    let unmask = std::env::args().any(|a| a == "--unmask");
    if let Some(acceptor) = tether_bench_peers::tls_acceptor() {
        let name = if unmask { "raw (unmasking)" } else { "raw" };
        tether_bench_peers::serve_tls(name, acceptor, move |tls| echo_tls(tls, unmask));
    } else if unmask {
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
