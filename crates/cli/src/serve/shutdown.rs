//! Graceful shutdown: one signal that every connection of the process hears
//! ([`signal_shutdown`], [`wait_shutdown`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::sync::watch;

/// Bumped (before the watch is set) whenever a server in this process
/// starts shutting down; see [`WaitShutdown`].
static SHUTDOWN_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Tell every connection of this server to close with 1001.
pub fn signal_shutdown(tx: &watch::Sender<bool>) {
    SHUTDOWN_EPOCH.fetch_add(1, Ordering::Release);
    let _ = tx.send(true);
}

/// Wait until shutdown is signalled (never, if the sender is gone).
///
/// Every connection waits on the one watch channel beside its traffic, and
/// polling a registered watch future again takes the channel's lock, once
/// per wakeup of every connection. So once registered, this future is polled through only when the shutdown
/// epoch moved or the task's waker changed; otherwise it answers `Pending`
/// from one atomic load, and the watch's registration wakes the task.
pub fn wait_shutdown(
    rx: &mut watch::Receiver<bool>,
) -> WaitShutdown<impl Future<Output = ()> + '_> {
    WaitShutdown {
        inner: async move {
            if rx.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        registered: None,
    }
}

pin_project_lite::pin_project! {
    /// See [`wait_shutdown`].
    pub struct WaitShutdown<F> {
        #[pin]
        inner: F,
        // The epoch seen before the inner future last returned `Pending`,
        // and the waker it registered.
        registered: Option<(u64, Waker)>,
    }
}

impl<F: Future<Output = ()>> Future for WaitShutdown<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // Loaded before polling through: a signal during that poll either
        // shows in the watch or moves the epoch past this value.
        let epoch = SHUTDOWN_EPOCH.load(Ordering::Acquire);
        if let Some((seen, waker)) = this.registered {
            if *seen == epoch && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        match this.inner.poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                *this.registered = Some((epoch, cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_polled_many_times_still_wakes_on_shutdown() {
        let (tx, mut rx) = watch::channel(false);
        let (polled_tx, polled) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let stop = wait_shutdown(&mut rx);
            tokio::pin!(stop);
            // A busy connection polls it on every wakeup.
            for _ in 0..5 {
                assert!(futures_util::poll!(&mut stop).is_pending());
                tokio::task::yield_now().await;
            }
            polled_tx.send(()).unwrap();
            stop.await;
        });
        polled.await.unwrap();
        signal_shutdown(&tx);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the shutdown")
            .unwrap();
    }
}
