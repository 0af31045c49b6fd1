//! `reconnect::connect_with_backoff`: retries what a retry can fix (503),
//! gives up at once on what it cannot (403).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::reconnect::{connect_with_backoff, Backoff};
use tether::{ClientBuilder, Error, Reject};
use tokio::net::TcpListener;

/// Refuses the first `fail` handshakes with `status`, then accepts.
async fn flaky_server(fail: usize, status: http::StatusCode) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let incoming = tether::ServerBuilder::new()
                .read_request(tcp)
                .await
                .unwrap();
            if n < fail {
                incoming
                    .reject(Reject::new(status, "not now"))
                    .await
                    .unwrap();
            } else {
                let mut ws = incoming.accept(tether::Accept::default()).await.unwrap();
                while ws.recv().await.is_some() {}
            }
        }
    });
    (port, attempts)
}

#[tokio::test]
async fn connect_with_backoff_retries_service_unavailable() {
    let (port, attempts) = flaky_server(2, http::StatusCode::SERVICE_UNAVAILABLE).await;
    let builder = ClientBuilder::new(format!("ws://127.0.0.1:{port}/")).no_proxy();
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    let mut retries = Vec::new();
    let (mut ws, _) =
        connect_with_backoff(&builder, &mut backoff, |e, _| retries.push(e.to_string()))
            .await
            .unwrap();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0].contains("503"), "{retries:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(backoff.attempts(), 0, "success resets the schedule");
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn connect_with_backoff_does_not_retry_forbidden() {
    let (port, attempts) = flaky_server(usize::MAX, http::StatusCode::FORBIDDEN).await;
    let builder = ClientBuilder::new(format!("ws://127.0.0.1:{port}/")).no_proxy();
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    let err = connect_with_backoff(&builder, &mut backoff, |e, _| panic!("retried after {e}"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { status, .. } if status == 403),
        "{err:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connect_with_backoff_stops_after_max_attempts() {
    let (port, attempts) = flaky_server(usize::MAX, http::StatusCode::SERVICE_UNAVAILABLE).await;
    let builder = ClientBuilder::new(format!("ws://127.0.0.1:{port}/")).no_proxy();
    let mut backoff =
        Backoff::new(Duration::from_millis(1), Duration::from_millis(5)).max_attempts(3);
    let err = connect_with_backoff(&builder, &mut backoff, |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "one try plus three retries"
    );
}
