//! A TCP proxy for tests that puts faults between a client and a server:
//! it passes traffic, black-holes it (connections stay open, nothing gets
//! through in either direction, as when a network path silently drops
//! packets; what was sent is delivered once traffic passes again), or cuts
//! every open connection. Listens on 127.0.0.1 on a free port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    Pass,
    /// Hold everything: connections stay open, nothing gets through.
    Blackhole,
}

/// The proxy's state, watched by every connection.
#[derive(Debug, Clone, Copy)]
struct Mode {
    fault: Fault,
    /// Bumped by [`FaultProxy::cut`]: connections older than this close.
    cuts: u64,
}

/// A running proxy; stops (and closes its connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxy to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(Mode {
            fault: Fault::Pass,
            cuts: 0,
        });
        let mode = Arc::new(tx);
        let watched = mode.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = watched.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pipe(cr, sw, mode.clone()));
                    let down = tokio::spawn(pipe(sr, cw, mode));
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(FaultProxy { addr, mode, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pass or black-hole traffic, on open and new connections.
    pub fn set(&self, fault: Fault) {
        self.mode.send_modify(|m| m.fault = fault);
    }

    /// Close every open connection (new ones are proxied as before).
    pub fn cut(&self) {
        self.mode.send_modify(|m| m.cuts += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copy `from` to `to` while the mode passes traffic; stop at a cut or
/// when either side closes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let born = mode.borrow().cuts;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = *mode.borrow_and_update();
        if now.cuts != born {
            return;
        }
        if now.fault == Fault::Blackhole {
            // Read nothing: the bytes wait in the kernel's buffers.
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = mode.changed() => if changed.is_err() {
                return;
            },
        }
    }
}
