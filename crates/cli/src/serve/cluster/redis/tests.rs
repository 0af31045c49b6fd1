//! The Redis engine against a real `redis-server` (skipped, with a message,
//! when `TETHER_TEST_REDIS_SERVER` is unset; `scripts/test cluster` sets it).

#[path = "../../../../tests/cluster_support/fault_proxy.rs"]
mod fault_proxy;
use super::super::test_process as process;
#[path = "../../../../tests/cluster_support/redis_server.rs"]
mod redis_server;

use super::*;
use fault_proxy::{Fault, FaultProxy};
use redis_server::RedisServer;
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
    /// Publications recorded, on any channel (a cheap check before
    /// counting one channel's).
    publications: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

impl Deliver for Recorder {
    fn publication(&self, channel: &str, epoch: &str, p: Publication) {
        lock(&self.events).push(Event::Pub(channel.into(), epoch.into(), p.offset, p.data));
        self.publications.fetch_add(1, Relaxed);
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
                    "timed out waiting for {what}; got {} events, the last {tail:?}, resets {:?}",
                    events.len(),
                    resets(&events)
                );
            }
        }
    }

    /// Wait until `n` publications of `channel` arrived; returns all events.
    async fn wait_pubs(&self, channel: &str, n: usize) -> Vec<Event> {
        self.wait(&format!("{n} publications on {channel}"), |e| {
            self.publications.load(Relaxed) >= n && pubs(e, channel).len() >= n
        })
        .await
    }
}

/// The offsets delivered for `channel`, in order.
fn pubs(events: &[Event], channel: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Pub(c, _, o, _) if c == channel => Some(*o),
            _ => None,
        })
        .collect()
}

fn resets(events: &[Event]) -> Vec<Position> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reset(_, p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn config(url: String) -> RedisConfig {
    RedisConfig {
        url,
        prefix: "tt".into(),
        node: "test".into(),
        io_timeout: Duration::from_secs(1),
        probe_interval: Duration::from_millis(300),
        meta_ttl: Duration::from_secs(3600),
        presence_ttl: Duration::from_secs(60),
    }
}

fn node(config: RedisConfig) -> (RedisEngine, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let engine = RedisEngine::start(config, rec.clone()).expect("engine starts");
    (engine, rec)
}

fn kept(size: usize) -> PublishOptions {
    PublishOptions {
        history_size: size,
        ..Default::default()
    }
}

/// Wait (at most `within`) until `cond` holds, checking every 10 ms; for
/// states that have no event (health, Redis-side counts).
async fn eventually(what: &str, within: Duration, cond: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// A plain connection for checking what Redis holds.
async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_on_two_nodes_are_delivered_exactly_once_in_order_on_both() {
    let Some(server) = RedisServer::start("exactly_once", false) else {
        return;
    };
    let (a, rec_a) = node(config(server.url()));
    let (b, rec_b) = node(config(server.url()));
    let pa = a.subscribe("ch").await.unwrap();
    let pb = b.subscribe("ch").await.unwrap();
    assert_eq!(pa, pb, "both nodes start from the same position");
    assert_eq!(pa.offset, 0);
    const PUBLISHERS: usize = 4;
    const EACH: usize = 250;
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let engine = if p % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..EACH {
                    let data = format!("{p}-{i}");
                    let r = engine.publish("ch", data.as_bytes(), &kept(100)).await;
                    let r = r.expect("publish");
                    sent.push((r.position.offset, data));
                }
                sent
            })
        })
        .collect();
    let mut by_offset = std::collections::BTreeMap::new();
    for t in tasks {
        for (offset, data) in t.await.unwrap() {
            assert!(
                by_offset.insert(offset, data).is_none(),
                "offset {offset} twice"
            );
        }
    }
    let n = PUBLISHERS * EACH;
    assert_eq!(
        by_offset.keys().copied().collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    let ea = rec_a.wait_pubs("ch", n).await;
    let eb = rec_b.wait_pubs("ch", n).await;
    for events in [&ea, &eb] {
        assert!(resets(events).is_empty(), "{:?}", resets(events));
        assert_eq!(pubs(events, "ch"), (1..=n as u64).collect::<Vec<_>>());
        for e in events.iter() {
            let Event::Pub(_, epoch, offset, data) = e else {
                unreachable!()
            };
            assert_eq!(epoch, &pa.epoch);
            assert_eq!(&data[..], by_offset[offset].as_bytes());
        }
    }
    assert_eq!(ea, eb, "both nodes saw the same sequence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_recovers_what_it_missed_and_nothing_partial_beyond_history() {
    let Some(server) = RedisServer::start("recover", false) else {
        return;
    };
    let (a, _) = node(config(server.url()));
    let mut epoch = String::new();
    for i in 1..=20u64 {
        let p = a
            .publish("news", i.to_string().as_bytes(), &kept(10))
            .await
            .unwrap();
        assert_eq!(p.position.offset, i);
        epoch = p.position.epoch;
    }
    let at = |offset| Position {
        epoch: epoch.clone(),
        offset,
    };
    let r = a.recover("news", &at(14)).await.unwrap();
    assert_eq!(r.top, at(20));
    let missed = r.missed.expect("15..20 are kept");
    assert_eq!(
        missed.iter().map(|p| p.offset).collect::<Vec<_>>(),
        (15..=20).collect::<Vec<_>>()
    );
    assert_eq!(&missed[0].data[..], b"15");
    assert_eq!(
        a.recover("news", &at(20)).await.unwrap().missed,
        Some(vec![])
    );
    // 10 kept: 11..20. Since 9 needs 10, which is gone.
    assert_eq!(
        a.recover("news", &at(10))
            .await
            .unwrap()
            .missed
            .unwrap()
            .len(),
        10
    );
    assert_eq!(a.recover("news", &at(9)).await.unwrap().missed, None);
    let other = Position {
        epoch: "another".into(),
        offset: 14,
    };
    assert_eq!(a.recover("news", &other).await.unwrap().missed, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keys_stay_within_history_size_and_carry_ttls() {
    let Some(server) = RedisServer::start("bounded", false) else {
        return;
    };
    let (a, _) = node(config(server.url()));
    let opts = PublishOptions {
        history_size: 5,
        history_ttl: Duration::from_secs(120),
        ..Default::default()
    };
    for i in 0..50 {
        a.publish("b", format!("{i}").as_bytes(), &opts)
            .await
            .unwrap();
    }
    let mut admin = admin(&server).await;
    let xlen: usize = redis::cmd("XLEN")
        .arg("tt:{b}:s")
        .query_async(&mut admin)
        .await
        .unwrap();
    // Trimmed a whole stream node at a time (Redis's default
    // stream-node-max-entries is 100)...
    assert!((5..=105).contains(&xlen), "XLEN {xlen}");
    // ...but nothing older than the last 5 offsets is ever read back.
    let kept = a.history("b").await.unwrap();
    let offsets: Vec<u64> = kept.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (46..=50).collect::<Vec<_>>());
    let old = Position {
        epoch: kept.top.epoch.clone(),
        offset: 40,
    };
    assert_eq!(a.recover("b", &old).await.unwrap().missed, None);
    let stream_ttl: i64 = redis::cmd("TTL")
        .arg("tt:{b}:s")
        .query_async(&mut admin)
        .await
        .unwrap();
    let meta_ttl: i64 = redis::cmd("TTL")
        .arg("tt:{b}:m")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!((1..=120).contains(&stream_ttl), "stream TTL {stream_ttl}");
    assert!((3000..=3600).contains(&meta_ttl), "meta TTL {meta_ttl}");
    // Every key the engine wrote expires.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tt:*")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_publish_with_the_same_idempotency_key_is_stored_once() {
    let Some(server) = RedisServer::start("idempotent", false) else {
        return;
    };
    let (a, rec) = node(config(server.url()));
    a.subscribe("orders").await.unwrap();
    let opts = PublishOptions {
        history_size: 10,
        idempotency_key: Some("order-17".into()),
        ..Default::default()
    };
    let first = a.publish("orders", b"x", &opts).await.unwrap();
    let retry = a.publish("orders", b"x", &opts).await.unwrap();
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!(first.position, retry.position);
    let other = a.publish("orders", b"y", &kept(10)).await.unwrap();
    assert_eq!(other.position.offset, 2);
    let events = rec.wait_pubs("orders", 2).await;
    assert_eq!(pubs(&events, "orders"), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_gives_a_reset_into_a_new_epoch() {
    let Some(mut server) = RedisServer::start("restart_nosave", false) else {
        return;
    };
    let (a, rec) = node(config(server.url()));
    let start = a.subscribe("ch").await.unwrap();
    for i in 1..=3 {
        a.publish("ch", format!("{i}").as_bytes(), &kept(10))
            .await
            .unwrap();
    }
    rec.wait_pubs("ch", 3).await;
    server.restart();
    let events = rec.wait("a reset", |e| !resets(e).is_empty()).await;
    let reset = &resets(&events)[0];
    assert_ne!(reset.epoch, start.epoch, "history was lost: a new epoch");
    assert_eq!(reset.offset, 0);
    let p = a.publish("ch", b"after", &kept(10)).await.unwrap();
    assert_eq!(
        p.position,
        Position {
            epoch: reset.epoch.clone(),
            offset: 1
        }
    );
    let events = rec.wait_pubs("ch", 4).await;
    assert_eq!(pubs(&events, "ch"), [1, 2, 3, 1]);
    // No publication of the new epoch before the reset, none of the old after.
    let last = events.last().unwrap();
    assert_eq!(
        last,
        &Event::Pub("ch".into(), reset.epoch.clone(), 1, Bytes::from("after"))
    );
    assert_eq!(resets(&events).len(), 1);
    assert!(a.metrics().reconnects.load(Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_the_epoch_holds_across_a_restart_and_publishing_works_again() {
    let Some(mut server) = RedisServer::start("restart_aof", true) else {
        return;
    };
    let (a, rec) = node(config(server.url()));
    let start = a.subscribe("ch").await.unwrap();
    for i in 1..=3 {
        a.publish("ch", format!("{i}").as_bytes(), &kept(10))
            .await
            .unwrap();
    }
    rec.wait_pubs("ch", 3).await;
    let reconnects = a.metrics().reconnects.load(Relaxed);
    server.restart();
    eventually("reconnected", Duration::from_secs(10), || {
        a.metrics().reconnects.load(Relaxed) > reconnects && a.healthy()
    })
    .await;
    // The script cache is empty after a restart: EVALSHA fails with
    // NOSCRIPT and the script is loaded again.
    let p = a
        .publish("ch", b"4", &kept(10))
        .await
        .expect("publish after restart");
    assert_eq!(
        p.position,
        Position {
            epoch: start.epoch.clone(),
            offset: 4
        }
    );
    let events = rec.wait_pubs("ch", 4).await;
    assert_eq!(pubs(&events, "ch"), [1, 2, 3, 4]);
    assert!(resets(&events).is_empty(), "{events:?}");
    let since = Position {
        epoch: start.epoch.clone(),
        offset: 2,
    };
    let r = a.recover("ch", &since).await.unwrap();
    assert_eq!(
        r.missed
            .unwrap()
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        [3, 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pubsub_connection_is_reconnected_and_caught_up() {
    let Some(server) = RedisServer::start("client_kill", false) else {
        return;
    };
    let (a, rec) = node(config(server.url()));
    a.subscribe("ch").await.unwrap();
    for i in 1..=3 {
        a.publish("ch", format!("{i}").as_bytes(), &kept(100))
            .await
            .unwrap();
    }
    rec.wait_pubs("ch", 3).await;
    let mut admin = admin(&server).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // Published while the node has no PUB/SUB connection.
    for i in 4..=10 {
        a.publish("ch", format!("{i}").as_bytes(), &kept(100))
            .await
            .unwrap();
    }
    let events = rec.wait_pubs("ch", 10).await;
    assert_eq!(pubs(&events, "ch"), (1..=10).collect::<Vec<_>>());
    assert!(resets(&events).is_empty());
    let m = a.metrics();
    assert_eq!(m.reconnects.load(Relaxed), 1);
    assert!(m.recoveries.load(Relaxed) >= 1, "caught up from history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_pubsub_connection_is_detected_within_two_probe_intervals() {
    let Some(server) = RedisServer::start("blackhole", false) else {
        return;
    };
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let probe = Duration::from_millis(300);
    let (a, rec) = node(RedisConfig {
        probe_interval: probe,
        ..config(format!("redis://{}/0", proxy.addr()))
    });
    let (publisher, _) = node(config(server.url()));
    a.subscribe("ch").await.unwrap();
    for i in 1..=3 {
        publisher
            .publish("ch", format!("{i}").as_bytes(), &kept(100))
            .await
            .unwrap();
    }
    rec.wait_pubs("ch", 3).await;
    eventually("healthy", Duration::from_secs(5), || a.healthy()).await;
    proxy.set(Fault::Blackhole);
    let detected = eventually("black hole detected", Duration::from_secs(5), || {
        !a.healthy()
    })
    .await;
    eprintln!("black hole detected after {detected:?} (probe interval {probe:?})");
    assert!(
        detected <= 2 * probe + Duration::from_millis(200),
        "detected after {detected:?}"
    );
    for i in 4..=6 {
        publisher
            .publish("ch", format!("{i}").as_bytes(), &kept(100))
            .await
            .unwrap();
    }
    proxy.set(Fault::Pass);
    let events = rec.wait_pubs("ch", 6).await;
    assert_eq!(pubs(&events, "ch"), (1..=6).collect::<Vec<_>>());
    assert!(resets(&events).is_empty());
    eventually("healthy again", Duration::from_secs(5), || a.healthy()).await;
    let m = a.metrics();
    assert!(m.probe_failures.load(Relaxed) >= 1);
    assert!(m.reconnects.load(Relaxed) >= 1);
    assert!(m.recoveries.load(Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_local_subscriber_leaves_the_node_unsubscribes() {
    let Some(server) = RedisServer::start("numsub", false) else {
        return;
    };
    let (a, _) = node(config(server.url()));
    let mut admin = admin(&server).await;
    let numsub = |admin: &mut redis::aio::MultiplexedConnection| {
        let mut admin = admin.clone();
        async move {
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg(&["NUMSUB", "tt:{ch}:p"])
                .query_async(&mut admin)
                .await
                .unwrap();
            n
        }
    };
    a.subscribe("ch").await.unwrap();
    a.subscribe("ch").await.unwrap();
    assert_eq!(numsub(&mut admin).await, 1);
    a.unsubscribe("ch");
    // The other local subscriber keeps the node subscribed.
    let again = a.subscribe("other").await.unwrap();
    assert_eq!(again.offset, 0);
    assert_eq!(numsub(&mut admin).await, 1);
    a.unsubscribe("ch");
    let started = Instant::now();
    loop {
        if numsub(&mut admin).await == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still subscribed after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_crashed_node_expires_and_a_live_node_keeps_its_own() {
    let Some(server) = RedisServer::start("presence", false) else {
        return;
    };
    let short = |url| RedisConfig {
        presence_ttl: Duration::from_secs(2),
        ..config(url)
    };
    let (a, _) = node(short(server.url()));
    let (b, _) = node(short(server.url()));
    a.presence_add("room", "c1", r#"{"user":"ann"}"#)
        .await
        .unwrap();
    b.presence_add("room", "c2", r#"{"user":"bob"}"#)
        .await
        .unwrap();
    let both = b.presence("room").await.unwrap();
    assert_eq!(
        both,
        [
            ("c1".to_string(), r#"{"user":"ann"}"#.to_string()),
            ("c2".to_string(), r#"{"user":"bob"}"#.to_string())
        ]
    );
    // Node a crashes: nothing removes c1, which expires; b refreshes c2.
    drop(a);
    let started = Instant::now();
    loop {
        let now = b.presence("room").await.unwrap();
        if now.len() == 1 {
            assert_eq!(now[0].0, "c2");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.presence("room").await.unwrap().len(),
        1,
        "c2 outlives its TTL"
    );
    b.presence_remove("room", "c2").await.unwrap();
    assert!(b.presence("room").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_recovering_subscribers_share_one_history_read() {
    let Some(server) = RedisServer::start("singleflight", false) else {
        return;
    };
    let (a, _) = node(config(server.url()));
    let mut epoch = String::new();
    for i in 1..=50u64 {
        epoch = a
            .publish("hot", i.to_string().as_bytes(), &kept(100))
            .await
            .unwrap()
            .position
            .epoch;
    }
    let clients = 2000;
    let recoveries = (0..clients).map(|i| {
        let a = a.clone();
        let since = Position {
            epoch: epoch.clone(),
            offset: (i % 50) as u64,
        };
        async move { (since.offset, a.recover("hot", &since).await.unwrap()) }
    });
    let started = Instant::now();
    let results = futures_util::future::join_all(recoveries).await;
    let took = started.elapsed();
    for (since, r) in &results {
        let missed = r.missed.as_ref().expect("recovered");
        assert_eq!(missed.len() as u64, 50 - since);
    }
    let reads = a.metrics().history_reads.load(Relaxed);
    eprintln!("{clients} recoveries in {took:?} with {reads} history reads");
    assert!(
        reads <= 3,
        "{reads} history reads for {clients} recovering subscribers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_publishes_fail_fast_and_health_is_false() {
    let Some(mut server) = RedisServer::start("down", false) else {
        return;
    };
    let (a, _) = node(config(server.url()));
    a.subscribe("ch").await.unwrap();
    eventually("healthy", Duration::from_secs(5), || a.healthy()).await;
    server.stop();
    let started = Instant::now();
    let err = a.publish("ch", b"x", &kept(10)).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("publish failed after {took:?}: {err}");
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    eventually("unhealthy", Duration::from_secs(2), || !a.healthy()).await;
    assert!(
        a.subscribe("other").await.is_err(),
        "subscribe fails while down"
    );
    server.restart();
    eventually("healthy again", Duration::from_secs(10), || a.healthy()).await;
    a.publish("ch", b"y", &kept(10))
        .await
        .expect("publish after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_publishes_many_thousands_per_second_through_one_connection() {
    let Some(server) = RedisServer::start("throughput", false) else {
        return;
    };
    let (a, rec) = node(config(server.url()));
    a.subscribe("fast").await.unwrap();
    const TASKS: usize = 64;
    const EACH: usize = 300;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let a = a.clone();
            tokio::spawn(async move {
                let mut offsets = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let data = format!("{t}-{i}");
                    let p = a
                        .publish("fast", data.as_bytes(), &kept(100))
                        .await
                        .unwrap();
                    offsets.push((p.position.offset, data));
                }
                offsets
            })
        })
        .collect();
    let mut sent = std::collections::BTreeMap::new();
    for t in tasks {
        let offsets = t.await.unwrap();
        assert!(
            offsets.windows(2).all(|w| w[0].0 < w[1].0),
            "one publisher's messages keep their order"
        );
        sent.extend(offsets);
    }
    let took = started.elapsed();
    let n = TASKS * EACH;
    let events = rec.wait_pubs("fast", n).await;
    for e in &events {
        if let Event::Pub(_, _, offset, data) = e {
            assert_eq!(&data[..], sent[offset].as_bytes(), "offset {offset}");
        }
    }
    // Publishes that arrive while their channel's script call is in flight
    // share the next call.
    let batches = a.metrics().publish_batches.load(Relaxed);
    assert_eq!(a.metrics().batched_publishes.load(Relaxed), n as u64);
    eprintln!("{n} publishes in {batches} script calls");
    assert!(
        batches < n as u64 / 4,
        "{batches} script calls for {n} publishes"
    );
    eprintln!(
        "{n} publishes in {took:?}: {:.0}/s (delivered back: {})",
        n as f64 / took.as_secs_f64(),
        events.len()
    );
    assert_eq!(pubs(&events, "fast"), (1..=n as u64).collect::<Vec<_>>());
    // A connection busy with messages is not mistaken for a silent one, nor
    // messages still in flight for lost ones.
    assert!(resets(&events).is_empty());
    assert_eq!(a.metrics().reconnects.load(Relaxed), 0);
    // Requests share one multiplexed connection: the round trips counted
    // are the script calls (plus a few reads and probes).
    assert!(a.metrics().round_trips.load(Relaxed) < batches + 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_whose_message_never_arrived_is_delivered_by_the_position_check() {
    let Some(server) = RedisServer::start("position_check", false) else {
        return;
    };
    let probe = Duration::from_millis(100);
    let (a, rec) = node(RedisConfig {
        probe_interval: probe,
        ..config(server.url())
    });
    let start = a.subscribe("ch").await.unwrap();
    a.publish("ch", b"1", &kept(10)).await.unwrap();
    rec.wait_pubs("ch", 1).await;
    // Stored like a publish, but its PUB/SUB message is lost, and nothing
    // is published after it.
    let mut admin = admin(&server).await;
    let () = redis::pipe()
        .cmd("HINCRBY")
        .arg("tt:{ch}:m")
        .arg("s")
        .arg(1)
        .ignore()
        .cmd("XADD")
        .arg("tt:{ch}:s")
        .arg("2")
        .arg("d")
        .arg("lost")
        .ignore()
        .query_async(&mut admin)
        .await
        .unwrap();
    let started = Instant::now();
    let events = rec.wait_pubs("ch", 2).await;
    eprintln!("silent loss repaired after {:?}", started.elapsed());
    assert_eq!(
        events.last().unwrap(),
        &Event::Pub("ch".into(), start.epoch, 2, Bytes::from("lost"))
    );
    assert!(resets(&events).is_empty());
    assert!(a.metrics().recoveries.load(Relaxed) >= 1);
}
