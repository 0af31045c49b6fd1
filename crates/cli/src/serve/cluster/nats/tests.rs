//! The NATS engine against a real `nats-server` (skipped, with a message,
//! when `TETHER_TEST_NATS_SERVER` is unset; `scripts/test cluster` sets it).

#[path = "../../../../tests/cluster_support/nats_server.rs"]
mod nats_server;
use super::super::test_process as process;

use super::*;
use nats_server::NatsServer;
use std::time::Instant;
use tokio::sync::Notify;

/// What a node's engine delivered.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Pub(String, String, u64, Bytes),
    Reset(String, Position),
}

/// A [`Deliver`] that records everything.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

impl Deliver for Recorder {
    fn publication(&self, channel: &str, epoch: &str, p: Publication) {
        lock(&self.events).push(Event::Pub(channel.into(), epoch.into(), p.offset, p.data));
        self.changed.notify_waiters();
    }

    fn reset(&self, channel: &str, position: &Position) {
        lock(&self.events).push(Event::Reset(channel.into(), position.clone()));
        self.changed.notify_waiters();
    }
}

impl Recorder {
    /// Wait (at most 10 s) until the events satisfy `done`.
    async fn wait(&self, what: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let events = lock(&self.events);
                if done(&events) {
                    return events.clone();
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let events = lock(&self.events);
                let tail = &events[events.len().saturating_sub(5)..];
                panic!(
                    "timed out waiting for {what}; got {} events, the last {tail:?}",
                    events.len()
                );
            }
        }
    }
}

/// The (epoch, offset, data) delivered for `channel`, in order.
fn pubs(events: &[Event], channel: &str) -> Vec<(String, u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Pub(c, e, o, d) if c == channel => {
                Some((e.clone(), *o, String::from_utf8_lossy(d).into_owned()))
            }
            _ => None,
        })
        .collect()
}

fn config(url: String, node: &str) -> NatsConfig {
    NatsConfig {
        url,
        prefix: "tt".into(),
        node: node.into(),
        io_timeout: Duration::from_secs(2),
        probe_interval: Duration::from_millis(500),
    }
}

async fn node(url: String, name: &str) -> (NatsEngine, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let engine = NatsEngine::start(config(url, name), rec.clone()).expect("engine starts");
    eventually("connected", Duration::from_secs(10), || engine.healthy()).await;
    (engine, rec)
}

/// Wait (at most `within`) until `cond` holds, checking every 10 ms; for
/// states that have no event (health).
async fn eventually(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn channel_names_become_one_subject_token() {
    assert_eq!(token("chat.lobby"), "chat%2Elobby");
    assert_eq!(token("a b*>"), "a%20b%2A%3E");
    assert_eq!(token("Zz_0-9"), "Zz_0-9");
    assert_eq!(token("é"), "%C3%A9");
}

#[test]
fn options_it_cannot_honour_are_named_with_why() {
    assert!(refused_options(0, false).is_empty());
    let r = refused_options(10, true);
    assert_eq!(r.len(), 2);
    assert!(
        r[0].contains("`history_size`") && r[0].contains("keeps no history"),
        "{r:?}"
    );
    assert!(
        r[1].contains("`presence`") && r[1].contains("no shared state"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_bad_prefix_or_url_is_refused_naming_the_key() {
    let rec: Arc<dyn Deliver> = Arc::new(Recorder::default());
    let mut c = config("nats://127.0.0.1:1".into(), "a");
    c.prefix = "tether.>".into();
    let e = NatsEngine::start(c, rec.clone()).err().expect("refused");
    assert!(e.contains("`cluster.prefix`"), "{e}");
    let mut c = config("http://[::1".into(), "a");
    c.prefix = "tether".into();
    let e = NatsEngine::start(c, rec).err().expect("refused");
    assert!(e.contains("`cluster.nats_url`"), "{e}");
}

#[tokio::test]
async fn two_nodes_exchange_publications_in_order() {
    let Some(server) = NatsServer::start("two_nodes_exchange_publications_in_order") else {
        return;
    };
    let (a, rec_a) = node(server.url(), "a").await;
    let (b, rec_b) = node(server.url(), "b").await;
    let start_a = a.subscribe("chat.lobby").await.expect("a subscribes");
    let start_b = b.subscribe("chat.lobby").await.expect("b subscribes");
    assert_eq!(start_a.offset, 0);
    assert_eq!(start_b.offset, 0);
    // A second local subscriber shares the subscription and its position.
    assert_eq!(b.subscribe("chat.lobby").await.unwrap(), start_b);
    // A channel nobody subscribed travels nowhere.
    b.publish("other", Bytes::from_static(b"x")).await.unwrap();
    let n = 200;
    let from_a = async {
        for i in 1..=n {
            a.publish("chat.lobby", Bytes::from(format!("a{i}")))
                .await
                .expect("publish on a");
        }
    };
    let from_b = async {
        for i in 1..=n {
            b.publish("chat.lobby", Bytes::from(format!("b{i}")))
                .await
                .expect("publish on b");
        }
    };
    tokio::join!(from_a, from_b);
    for (rec, start) in [(&rec_a, &start_a), (&rec_b, &start_b)] {
        let events = rec
            .wait("every publication", |e| {
                pubs(e, "chat.lobby").len() >= 2 * n as usize
            })
            .await;
        let got = pubs(&events, "chat.lobby");
        assert_eq!(got.len(), 2 * n as usize, "each once");
        // Offsets are this node's: contiguous from its start, one epoch.
        for (i, (epoch, offset, _)) in got.iter().enumerate() {
            assert_eq!(epoch, &start.epoch);
            assert_eq!(*offset, i as u64 + 1);
        }
        // Each publisher's publications arrive in the order published.
        for who in ["a", "b"] {
            let seq: Vec<u64> = got
                .iter()
                .filter_map(|(_, _, d)| d.strip_prefix(who)?.parse().ok())
                .collect();
            assert_eq!(seq, (1..=n).collect::<Vec<u64>>(), "{who}'s order");
        }
        assert!(!events.iter().any(|e| matches!(e, Event::Reset(..))));
        assert!(pubs(&events, "other").is_empty());
    }
    assert!(a.metrics().round_trips.load(Relaxed) >= n);
    assert_eq!(a.metrics().errors.load(Relaxed), 0);
    // After the last local subscriber of a leaves, a no longer receives it.
    a.unsubscribe("chat.lobby");
    // Requests are handled in order: once this one is answered, the
    // unsubscribe is done.
    a.subscribe("sync").await.unwrap();
    b.publish("chat.lobby", Bytes::from_static(b"late"))
        .await
        .unwrap();
    rec_b
        .wait("the late one on b", |e| {
            pubs(e, "chat.lobby").len() > 2 * n as usize
        })
        .await;
    a.publish("sync", Bytes::from_static(b"marker"))
        .await
        .unwrap();
    let events = rec_a
        .wait("the marker", |e| !pubs(e, "sync").is_empty())
        .await;
    assert_eq!(pubs(&events, "chat.lobby").len(), 2 * n as usize);
}

#[tokio::test]
async fn a_restarted_server_resets_channels_and_delivery_resumes() {
    let Some(mut server) =
        NatsServer::start("a_restarted_server_resets_channels_and_delivery_resumes")
    else {
        return;
    };
    let (a, _) = node(server.url(), "a").await;
    let (b, rec_b) = node(server.url(), "b").await;
    let before = b.subscribe("news").await.unwrap();
    a.publish("news", Bytes::from_static(b"1")).await.unwrap();
    rec_b
        .wait("the first", |e| pubs(e, "news").len() == 1)
        .await;

    server.stop();
    eventually("unhealthy", Duration::from_secs(5), || {
        !a.healthy() && !b.healthy()
    })
    .await;
    // Publishing and subscribing fail at once while NATS is away.
    let t = Instant::now();
    let e = a
        .publish("news", Bytes::from_static(b"lost"))
        .await
        .expect_err("publish fails while down");
    assert!(e.to_string().contains("unreachable"), "{e}");
    assert!(b.subscribe("weather").await.is_err());
    assert!(t.elapsed() < a.inner.config.io_timeout, "{:?}", t.elapsed());
    // The subscriber learns that continuity was lost.
    let events = rec_b
        .wait("a reset", |e| {
            e.iter().any(|e| matches!(e, Event::Reset(..)))
        })
        .await;
    let Some(Event::Reset(channel, reset)) = events.last().cloned() else {
        panic!("the reset comes last: {events:?}");
    };
    assert_eq!(channel, "news");
    assert_ne!(reset.epoch, before.epoch);
    assert_eq!(reset.offset, 0);

    server.start_again();
    eventually("reconnected", Duration::from_secs(10), || {
        a.healthy() && b.healthy()
    })
    .await;
    // The client resubscribes by itself; wait until the server has b's
    // interest again by publishing until one arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    loop {
        sent += 1;
        a.publish("news", Bytes::from(format!("after{sent}")))
            .await
            .expect("publish after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if pubs(&lock(&rec_b.events), "news").len() > 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing delivered after the restart"
        );
    }
    let events = rec_b
        .wait("one after the restart", |e| pubs(e, "news").len() >= 2)
        .await;
    let got = pubs(&events, "news");
    assert_eq!(got[0], (before.epoch.clone(), 1, "1".into()));
    // In the reset's epoch, from offset 1.
    assert_eq!(got[1].0, reset.epoch);
    assert_eq!(got[1].1, 1);
    assert!(got[1].2.starts_with("after"));
    assert!(a.metrics().reconnects.load(Relaxed) >= 1);
    assert!(b.metrics().resets.load(Relaxed) >= 1);
}
