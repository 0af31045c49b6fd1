use super::*;
use std::sync::atomic::AtomicUsize;
use std::task::Wake;

/// A waker that counts its wakes.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn text(next: Option<Next>) -> String {
    match next {
        Some(Next::Message(m)) => m.as_text().unwrap().to_owned(),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn ring_len(hub: &Hub, group: &str) -> usize {
    hub.lock().get(group).map_or(0, |g| g.lock().entries.len())
}

#[test]
fn a_member_that_falls_behind_is_a_slow_consumer_and_only_it() {
    let hub = Arc::new(Hub::new(2));
    let mut slow = hub.member();
    let mut fast = hub.member();
    slow.join("r");
    fast.join("r");
    for i in 0..3 {
        assert_eq!(hub.publish("r", &Message::text(i.to_string())), 2);
        assert_eq!(text(fast.try_next()), i.to_string());
    }
    // The ring keeps 2: "0" is gone, which slow had not taken.
    assert_eq!(slow.try_next(), Some(Next::SlowConsumer));
    assert_eq!(fast.try_next(), None);
    drop(slow);
    assert_eq!(hub.count("r"), 1);
    // Nothing is kept once every member has taken it.
    assert_eq!(ring_len(&hub, "r"), 0);
    drop(fast);
    assert_eq!(hub.count("r"), 0);
    assert!(hub.lock().is_empty(), "an empty group is removed");
}

#[test]
fn entries_are_dropped_once_every_member_has_taken_them() {
    let hub = Arc::new(Hub::new(8));
    let mut a = hub.member();
    let mut b = hub.member();
    a.join("r");
    b.join("r");
    hub.publish("r", &Message::text("x"));
    hub.publish("r", &Message::text("y"));
    assert_eq!(text(a.try_next()), "x");
    assert_eq!(ring_len(&hub, "r"), 2);
    assert_eq!(text(b.try_next()), "x");
    assert_eq!(ring_len(&hub, "r"), 1);
    // Leaving gives up b's share of "y".
    assert!(b.leave("r"));
    assert!(!b.leave("r"));
    assert_eq!(ring_len(&hub, "r"), 1);
    assert_eq!(text(a.try_next()), "y");
    assert_eq!(ring_len(&hub, "r"), 0);
}

#[test]
fn a_room_broadcast_skips_the_sender() {
    let hub = Arc::new(Hub::new(4));
    let mut a = hub.member();
    let mut b = hub.member();
    a.join("r");
    assert_eq!(a.broadcast_others("r", &Message::text("alone")), 0);
    b.join("r");
    assert_eq!(a.broadcast_others("r", &Message::text("hi")), 1);
    assert_eq!(a.try_next(), None);
    assert_eq!(text(b.try_next()), "hi");
    assert_eq!(ring_len(&hub, "r"), 0);
    // Not a member: nothing is sent.
    assert_eq!(b.broadcast_others("elsewhere", &Message::text("no")), 0);
}

#[test]
fn a_joiner_gets_only_later_messages() {
    let hub = Arc::new(Hub::new(4));
    let mut a = hub.member();
    a.join("r");
    hub.publish("r", &Message::text("before"));
    let mut b = hub.member();
    b.join("r");
    b.join("r"); // idempotent
    assert_eq!(hub.count("r"), 2);
    hub.publish("r", &Message::text("after"));
    assert_eq!(text(b.try_next()), "after");
    assert_eq!(b.try_next(), None);
    assert_eq!(text(a.try_next()), "before");
    assert_eq!(text(a.try_next()), "after");
}

#[test]
fn own_replies_and_channels_keep_the_order_they_were_queued_in() {
    let hub = Arc::new(Hub::new(8));
    let mut m = hub.member();
    m.join("a");
    m.join("b");
    m.send_self(Message::text("ack subscribe"));
    hub.publish("b", &Message::text("b1"));
    hub.publish("a", &Message::text("a1"));
    m.send_self(Message::text("ack publish"));
    hub.publish("b", &Message::text("b2"));
    let got: Vec<String> = std::iter::from_fn(|| m.try_next().map(|n| text(Some(n)))).collect();
    assert_eq!(got, ["ack subscribe", "b1", "a1", "ack publish", "b2"]);
}

#[test]
fn too_many_own_replies_make_a_slow_consumer() {
    let hub = Arc::new(Hub::new(2));
    let mut m = hub.member();
    m.send_self(Message::text("1"));
    m.send_self(Message::text("2"));
    m.send_self(Message::text("3"));
    assert_eq!(m.try_next(), Some(Next::SlowConsumer));
}

#[test]
fn a_waiting_member_is_woken_once_per_broadcast_and_registers_once() {
    let hub = Arc::new(Hub::new(4));
    let mut m = hub.member();
    m.join("r");
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..10 {
        assert!(m.poll_next(&mut cx).is_pending());
    }
    assert_eq!(hub.lock()["r"].lock().waiters.len(), 1);
    hub.publish("r", &Message::text("x"));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        m.poll_next(&mut cx),
        Poll::Ready(Next::Message(Message::text("x")))
    );
    // Taking without a context does not register.
    assert_eq!(m.try_next(), None);
    hub.publish("r", &Message::text("y"));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn a_member_blocked_writing_hears_that_it_fell_behind() {
    let hub = Arc::new(Hub::new(1));
    let mut m = hub.member();
    m.join("r");
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    assert!(m.poll_lagged(&mut cx).is_pending());
    hub.publish("r", &Message::text("1"));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(m.poll_lagged(&mut cx).is_pending(), "one behind is allowed");
    hub.publish("r", &Message::text("2"));
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert!(m.poll_lagged(&mut cx).is_ready());
}

#[test]
fn members_that_leave_do_not_grow_the_waiter_list() {
    let hub = Arc::new(Hub::new(4));
    let mut stay = hub.member();
    stay.join("r");
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    assert!(stay.poll_next(&mut cx).is_pending());
    for _ in 0..1000 {
        let mut m = hub.member();
        m.join("r");
        assert!(m.poll_next(&mut cx).is_pending());
    }
    assert!(hub.lock()["r"].lock().waiters.len() <= 2 + 64);
    // Starting the list over woke the member that stays; it registers
    // again and still hears the next broadcast.
    assert!(stay.poll_next(&mut cx).is_pending());
    let before = count.0.load(Ordering::SeqCst);
    hub.publish("r", &Message::text("x"));
    assert!(count.0.load(Ordering::SeqCst) > before);
    assert_eq!(text(stay.try_next()), "x");
}

#[test]
fn a_member_blocked_writing_is_cut_off_once_too_many_bytes_wait_for_it() {
    // Four channels, each far below the message count limit; the bytes
    // waiting across them are what counts.
    let hub = Arc::new(Hub::with_limits(256, 10_000, Budget::unlimited()));
    let mut m = hub.member();
    for ch in ["a", "b", "c", "d"] {
        m.join(ch);
    }
    let (_count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let kb = Message::binary(vec![0u8; 1000]);
    for i in 0..10 {
        assert!(m.poll_lagged(&mut cx).is_pending(), "{i} KB waiting");
        hub.publish(["a", "b", "c", "d"][i % 4], &kb);
    }
    assert!(m.poll_lagged(&mut cx).is_pending(), "10 KB is the limit");
    hub.publish("c", &kb);
    assert!(m.poll_lagged(&mut cx).is_ready(), "11 KB waiting");
    // One channel alone (the single-room path) counts the same way.
    let mut one = hub.member();
    one.join("solo");
    for _ in 0..10 {
        hub.publish("solo", &kb);
    }
    assert!(one.poll_lagged(&mut cx).is_pending());
    hub.publish("solo", &kb);
    assert!(one.poll_lagged(&mut cx).is_ready());
}

#[test]
fn the_bytes_queued_in_all_hubs_are_bounded_by_the_global_budget() {
    let budget = Budget::new(10_000);
    let a = Arc::new(Hub::with_limits(256, usize::MAX, budget.clone()));
    let b = Arc::new(Hub::with_limits(256, usize::MAX, budget.clone()));
    let mut slow_a = a.member();
    let mut slow_b = b.member();
    slow_a.join("x");
    slow_b.join("x");
    let kb = Message::binary(vec![0u8; 1000]);
    for _ in 0..8 {
        a.publish("x", &kb);
    }
    // Each group is charged for itself too.
    assert_eq!(budget.used(), 8000 + 2 * GROUP_COST);
    for _ in 0..8 {
        b.publish("x", &kb);
        assert!(budget.used() <= 10_000, "{} bytes queued", budget.used());
    }
    // b's ring gave up its oldest entries, which slow_b had not taken.
    assert_eq!(slow_b.try_next(), Some(Next::SlowConsumer));
    assert!(matches!(slow_a.try_next(), Some(Next::Message(_))));
    drop(slow_a);
    drop(slow_b);
    assert_eq!(budget.used(), 0, "every byte is given back");
}

#[test]
fn a_member_of_many_channels_does_not_scan_them_per_message() {
    const CHANNELS: usize = 10_000;
    let hub = Arc::new(Hub::new(8));
    let mut m = hub.member();
    let (_count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let started = std::time::Instant::now();
    // What a pub/sub client does: subscribe, get the ack, many times.
    for i in 0..CHANNELS {
        m.join(&format!("ch{i}"));
        m.send_self(Message::text("ack"));
        assert!(matches!(
            m.poll_next(&mut cx),
            Poll::Ready(Next::Message(_))
        ));
        assert!(m.poll_next(&mut cx).is_pending());
    }
    // A message on one channel is found without looking at the others.
    RING_LOCKS.with(|n| n.set(0));
    hub.publish("ch5000", &Message::text("x"));
    assert_eq!(text(m.try_next()), "x");
    assert!(m.poll_next(&mut cx).is_pending());
    assert!(m.poll_lagged(&mut cx).is_pending());
    let locks = RING_LOCKS.with(|n| n.get());
    assert!(locks < 10, "{locks} ring locks for one message");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{CHANNELS} subscribes took {:?}",
        started.elapsed()
    );
}

#[test]
fn every_channel_of_a_member_of_many_can_be_found_and_left() {
    let hub = Arc::new(Hub::new(8));
    let mut m = hub.member();
    for i in 0..5 {
        assert!(m.join(&format!("c{i}")));
    }
    for i in 0..5 {
        assert!(!m.join(&format!("c{i}")), "c{i} joined twice");
        assert!(m.is_in(&format!("c{i}")));
    }
    assert_eq!(m.subscriptions(), 5);
    for i in (0..5).rev() {
        assert!(m.leave(&format!("c{i}")), "c{i} could not be left");
    }
    assert_eq!(m.subscriptions(), 0);
    assert!(hub.lock().is_empty());
}

#[test]
fn leaving_channels_keeps_the_rest_in_order() {
    let hub = Arc::new(Hub::new(8));
    let mut m = hub.member();
    for ch in ["a", "b", "c"] {
        m.join(ch);
    }
    hub.publish("a", &Message::text("a1"));
    hub.publish("b", &Message::text("b1"));
    hub.publish("c", &Message::text("c1"));
    assert!(m.leave("b"));
    assert_eq!(text(m.try_next()), "a1");
    assert!(m.leave("a"));
    // One channel left: the single-source path takes over.
    assert_eq!(text(m.try_next()), "c1");
    m.join("d");
    hub.publish("d", &Message::text("d1"));
    hub.publish("c", &Message::text("c2"));
    assert_eq!(text(m.try_next()), "d1");
    assert_eq!(text(m.try_next()), "c2");
    assert_eq!(m.try_next(), None);
    assert_eq!(m.subscriptions(), 2);
}

fn history_hub(size: usize) -> Arc<Hub> {
    Arc::new(Hub::new(64).retaining(Retention {
        history_size: size,
        history_ttl: None,
        presence: true,
    }))
}

/// Publish `text` with its offset in front ("3:x").
fn publish_n(hub: &Hub, group: &str, text: &str) -> Published {
    hub.publish_at(group, |o| Message::text(format!("{o}:{text}")))
}

fn drain(m: &mut Member) -> Vec<String> {
    std::iter::from_fn(|| m.try_next().map(|n| text(Some(n)))).collect()
}

fn ack(j: &Joined) -> Message {
    Message::text(format!("ack {} {:?}", j.position.offset, j.recovered))
}

#[test]
fn offsets_count_per_group_in_publish_order() {
    let hub = history_hub(0);
    let mut m = hub.member();
    m.join("a");
    m.join("b");
    let p1 = publish_n(&hub, "a", "x");
    let p2 = publish_n(&hub, "a", "y");
    let q1 = publish_n(&hub, "b", "z");
    let o = |p: &Published| p.position.as_ref().unwrap().offset;
    assert_eq!((o(&p1), o(&p2), o(&q1)), (1, 2, 1));
    assert_eq!(drain(&mut m), ["1:x", "2:y", "1:z"]);
    // No member and no history: nothing is kept, so no position.
    assert_eq!(publish_n(&hub, "nobody", "x").position, None);
}

#[test]
fn resuming_replays_exactly_what_was_missed_after_the_ack() {
    let hub = history_hub(100);
    let mut first = hub.member();
    first.subscribe("news", None, ack);
    for i in 0..10 {
        publish_n(&hub, "news", &i.to_string());
    }
    let got = drain(&mut first);
    assert_eq!(got.len(), 11);
    let epoch = hub.history("news", 1, usize::MAX).position.unwrap().epoch;
    drop(first);
    // Gone at offset 4; 6 more were published meanwhile (5..10).
    let mut back = hub.member();
    back.subscribe("news", Some((&epoch, 4)), ack);
    publish_n(&hub, "news", "live");
    let got = drain(&mut back);
    assert_eq!(
        got,
        [
            "ack 10 Some(true)",
            "5:4",
            "6:5",
            "7:6",
            "8:7",
            "9:8",
            "10:9",
            "11:live"
        ]
    );
    // Up to date: recovered, nothing replayed.
    let mut current = hub.member();
    current.subscribe("news", Some((&epoch, 11)), ack);
    assert_eq!(drain(&mut current), ["ack 11 Some(true)"]);
    // Another epoch, or an offset from the future: not recovered.
    let mut other = hub.member();
    other.subscribe("news", Some(("elsewhere", 4)), ack);
    other.subscribe("news", Some((&epoch, 4)), ack);
    assert_eq!(drain(&mut other), ["ack 11 Some(false)", "ack 11 None"]);
    let mut future = hub.member();
    future.subscribe("news", Some((&epoch, 99)), ack);
    assert_eq!(drain(&mut future), ["ack 11 Some(false)"]);
}

#[test]
fn resuming_beyond_the_history_kept_replays_nothing() {
    let hub = history_hub(5);
    for i in 0..10 {
        publish_n(&hub, "news", &i.to_string());
    }
    let epoch = hub.history("news", 100, usize::MAX).position.unwrap().epoch;
    let mut m = hub.member();
    // 5..10 are kept; after 4 everything is there, after 3 not.
    m.subscribe("news", Some((&epoch, 3)), ack);
    assert_eq!(drain(&mut m), ["ack 10 Some(false)"]);
    let mut n = hub.member();
    n.subscribe("news", Some((&epoch, 5)), ack);
    assert_eq!(
        drain(&mut n),
        ["ack 10 Some(true)", "6:5", "7:6", "8:7", "9:8", "10:9"]
    );
}

#[test]
fn history_is_kept_without_members_and_bounded() {
    let hub = history_hub(3);
    for i in 0..5 {
        publish_n(&hub, "log", &i.to_string());
    }
    let h = hub.history("log", 10, usize::MAX);
    let texts: Vec<_> = h.messages.iter().map(|m| m.as_text().unwrap()).collect();
    assert_eq!(texts, ["3:2", "4:3", "5:4"]);
    assert_eq!(h.position.unwrap().offset, 5);
    let h = hub.history("log", 2, usize::MAX);
    assert_eq!(h.messages.len(), 2);
    // A byte cap leaves the oldest out.
    assert_eq!(hub.history("log", 10, 7).messages.len(), 2);
    assert!(hub.history("none", 10, 100).position.is_none());
}

#[test]
fn history_older_than_its_ttl_is_dropped() {
    let hub = Arc::new(Hub::new(64).retaining(Retention {
        history_size: 10,
        history_ttl: Some(Duration::from_millis(1)),
        presence: false,
    }));
    publish_n(&hub, "t", "old");
    std::thread::sleep(Duration::from_millis(5));
    assert!(hub.history("t", 10, usize::MAX).messages.is_empty());
    hub.sweep();
    assert!(hub.lock().is_empty(), "an empty group without members goes");
}

#[test]
fn an_idempotent_publish_is_kept_once() {
    let hub = history_hub(10);
    let mut m = hub.member();
    m.join("news");
    let first = hub.publish_once("news", "k1", |o| Message::text(format!("{o}")));
    let again = hub.publish_once("news", "k1", |o| Message::text(format!("{o}")));
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.position, again.position);
    assert_eq!(drain(&mut m), ["1"]);
    // The same key on another channel is another publish.
    let other = hub.publish_once("other", "k1", |o| Message::text(format!("{o}")));
    assert!(!other.duplicate);
}

#[test]
fn presence_lists_members_until_they_leave() {
    let hub = history_hub(0);
    let mut ann = hub.member_as(Some("ann".into()));
    let mut anon = hub.member();
    ann.subscribe("room", None, ack);
    anon.subscribe("room", None, ack);
    let users: Vec<_> = hub.presence("room").into_iter().map(|c| c.1).collect();
    assert_eq!(users, [Some("ann".into()), None]);
    assert!(ann.leave("room"));
    assert_eq!(hub.presence("room").len(), 1);
    drop(anon);
    assert!(hub.presence("room").is_empty());
}

#[test]
fn members_on_many_threads_get_every_message_in_publish_order() {
    const PUBLISHERS: u32 = 4;
    const EACH: u32 = 2000;
    const MEMBERS: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    // Room for everything: nobody can fall behind, so nothing may be lost.
    let hub = Arc::new(Hub::new((PUBLISHERS * EACH) as usize));
    let mut joined = Vec::new();
    for _ in 0..MEMBERS {
        let mut m = hub.member();
        m.join("r");
        joined.push(m);
    }
    let got = rt.block_on(async {
        let readers: Vec<_> = joined
            .into_iter()
            .map(|mut m| {
                tokio::spawn(async move {
                    let mut last = [None::<u32>; PUBLISHERS as usize];
                    for _ in 0..PUBLISHERS * EACH {
                        let next = std::future::poll_fn(|cx| m.poll_next(cx)).await;
                        let Next::Message(msg) = next else {
                            panic!("fell behind with room for everything");
                        };
                        let b = msg.as_bytes();
                        let (p, i) = (
                            b[0] as usize,
                            u32::from_be_bytes(b[1..5].try_into().unwrap()),
                        );
                        assert!(
                            last[p].is_none_or(|l| i == l + 1),
                            "publisher {p}: {last:?} then {i}"
                        );
                        last[p] = Some(i);
                    }
                    assert_eq!(m.try_next(), None);
                    last
                })
            })
            .collect();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let hub = hub.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let mut b = vec![p as u8];
                        b.extend_from_slice(&i.to_be_bytes());
                        assert_eq!(hub.publish("r", &Message::binary(b)), MEMBERS);
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for p in publishers {
            p.await.unwrap();
        }
        let mut got = Vec::new();
        for r in readers {
            // A lost wakeup would leave a reader waiting forever.
            let r = tokio::time::timeout(std::time::Duration::from_secs(30), r);
            got.push(r.await.expect("every reader finishes").unwrap());
        }
        got
    });
    for last in got {
        assert_eq!(last, [Some(EACH - 1); PUBLISHERS as usize]);
    }
    assert_eq!(hub.count("r"), 0, "members dropped with their tasks");
}

/// An engine that only counts unsubscribes (the hub tests feed the
/// hub by hand).
#[derive(Debug, Default)]
struct Fake {
    unsubscribed: AtomicUsize,
}

impl super::super::engine::Engine for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn local(&self) -> bool {
        false
    }
    fn publish(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> super::super::engine::Op<Result<Published, super::super::cluster::EngineError>> {
        unreachable!()
    }
    fn history(
        &self,
        _: &str,
        _: usize,
        _: usize,
    ) -> super::super::engine::Op<Result<History, super::super::cluster::EngineError>> {
        unreachable!()
    }
    fn presence(
        &self,
        _: &str,
    ) -> super::super::engine::Op<
        Result<Vec<super::super::engine::Present>, super::super::cluster::EngineError>,
    > {
        unreachable!()
    }
    fn subscribe(
        &self,
        _: &str,
    ) -> super::super::engine::Op<Result<Position, super::super::cluster::EngineError>> {
        unreachable!()
    }
    fn unsubscribe(&self, _: &str) {
        self.unsubscribed.fetch_add(1, Ordering::Relaxed);
    }
    fn recover(
        &self,
        _: &str,
        _: &Position,
        _: &Position,
    ) -> super::super::engine::Op<Result<Recovery, super::super::cluster::EngineError>> {
        unreachable!()
    }
    fn presence_join(&self, _: &str, _: u64, _: Option<&str>) {}
    fn presence_leave(&self, _: &str, _: u64) {}
    fn healthy(&self) -> bool {
        true
    }
    fn metrics(&self) -> Option<&super::super::cluster::EngineMetrics> {
        None
    }
}

fn at(epoch: &str, offset: u64) -> Position {
    Position {
        epoch: epoch.into(),
        offset,
    }
}

fn fed_join(
    engine: &Arc<Fake>,
    delivered: Position,
    since: Option<(Position, Option<Recovery>)>,
) -> FedJoin {
    let engine: Arc<dyn super::super::engine::Engine> = engine.clone();
    FedJoin {
        delivered,
        since,
        interest: Interest::new(engine, "news", None),
    }
}

#[test]
fn a_fed_subscriber_gets_what_arrived_after_its_registration_once() {
    let hub = Arc::new(Hub::new(64).fed_by_engine());
    let engine = Arc::new(Fake::default());
    let mut m = hub.member();
    let joining = hub.joining("news");
    // Delivered while the engine registered the subscriber: 5 was
    // already delivered (the engine's answer), 6 and 7 came after.
    for o in 5..=7 {
        hub.deliver("news", "e1", o, Message::text(format!("m{o}")));
    }
    m.subscribe_fed(joining, fed_join(&engine, at("e1", 5), None), ack);
    assert_eq!(drain(&mut m), ["ack 5 None", "m6", "m7"]);
    hub.deliver("news", "e1", 8, Message::text("m8"));
    assert_eq!(drain(&mut m), ["m8"]);
    // Deliveries for channels nobody here subscribes to are dropped.
    hub.deliver("other", "e1", 1, Message::text("x"));
    assert_eq!(hub.count("other"), 0);
    // The last subscriber leaving drops the group and tells the engine.
    assert!(m.leave("news"));
    assert_eq!(engine.unsubscribed.load(Ordering::Relaxed), 1);
    assert_eq!(hub.count("news"), 0);
    assert!(hub.lock().get("news").is_none(), "no stale ring is kept");
}

#[test]
fn a_fed_resume_uses_the_ring_then_the_engines_history() {
    let hub = Arc::new(Hub::new(64).fed_by_engine());
    let engine = Arc::new(Fake::default());
    let mut first = hub.member();
    let joining = hub.joining("news");
    first.subscribe_fed(joining, fed_join(&engine, at("e1", 10), None), ack);
    for o in 11..=13 {
        hub.deliver("news", "e1", o, Message::text(format!("m{o}")));
    }
    // From the ring: 12 and 13.
    let mut again = hub.member();
    let join = fed_join(&engine, at("e1", 13), Some((at("e1", 11), None)));
    again.subscribe_fed(hub.joining("news"), join, ack);
    assert_eq!(drain(&mut again), ["ack 13 Some(true)", "m12", "m13"]);
    // From the engine's history: 8..10 precede the ring.
    let mut older = hub.member();
    let recovery = Recovery {
        top: at("e1", 10),
        missed: Some(vec![
            Message::text("m8"),
            Message::text("m9"),
            Message::text("m10"),
        ]),
    };
    let join = fed_join(&engine, at("e1", 13), Some((at("e1", 7), Some(recovery))));
    older.subscribe_fed(hub.joining("news"), join, ack);
    assert_eq!(
        drain(&mut older),
        ["ack 10 Some(true)", "m8", "m9", "m10", "m11", "m12", "m13"]
    );
    // Neither has it: nothing partial.
    let mut lost = hub.member();
    let join = fed_join(&engine, at("e1", 13), Some((at("e1", 2), None)));
    lost.subscribe_fed(hub.joining("news"), join, ack);
    assert_eq!(drain(&mut lost), ["ack 13 Some(false)"]);
}

#[test]
fn a_reset_reaches_every_subscriber_and_ends_resuming_the_old_epoch() {
    let retention = Retention {
        history_size: 8,
        ..Retention::default()
    };
    let hub = Arc::new(Hub::new(64).retaining(retention).fed_by_engine());
    let engine = Arc::new(Fake::default());
    let mut m = hub.member();
    m.subscribe_fed(
        hub.joining("news"),
        fed_join(&engine, at("e1", 0), None),
        ack,
    );
    hub.deliver("news", "e1", 1, Message::text("m1"));
    hub.reset("news", "e2", 0, Message::text("reset e2 0"));
    hub.deliver("news", "e2", 1, Message::text("n1"));
    assert_eq!(drain(&mut m), ["ack 0 None", "m1", "reset e2 0", "n1"]);
    // The old epoch's entries are not a resume source any more.
    let mut late = hub.member();
    let join = fed_join(&engine, at("e2", 1), Some((at("e1", 0), None)));
    late.subscribe_fed(hub.joining("news"), join, ack);
    assert_eq!(drain(&mut late), ["ack 1 Some(false)"]);
    let mut current = hub.member();
    let join = fed_join(&engine, at("e2", 1), Some((at("e2", 0), None)));
    current.subscribe_fed(hub.joining("news"), join, ack);
    assert_eq!(drain(&mut current), ["ack 1 Some(true)", "n1"]);
}
