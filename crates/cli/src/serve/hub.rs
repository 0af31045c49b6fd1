//! Rooms and pub/sub channels: one shared ring of messages per group and a
//! cursor per member.
//!
//! # Why a ring per group, not a queue per subscriber
//!
//! A broadcast is encoded once; a [`Message`] holds `Bytes`, so every copy
//! of it is a reference count, not the bytes. The hub used to push such a
//! copy into each subscriber's own bounded queue (a tokio `mpsc`). With
//! 10,000 subscribers that was three cold cache lines per subscriber per
//! message (the queue's semaphore, its tail and its waker), about 40% of the
//! server's CPU in a broadcast profile. Now a broadcast appends once to its
//! group's ring and wakes the members that wait; each member's task takes
//! what lies past its cursor when it runs, under one short lock, as many
//! messages as are there, and writes them with one flush.
//!
//! # Slow consumers
//!
//! The ring keeps at most `queue` messages (`limits.send_queue`). Each entry
//! counts the members that have yet to take it and is dropped once all
//! have, so a group whose members keep up holds nothing. A member that falls
//! `queue` messages behind (its next entry was overwritten) is a slow
//! consumer: its connection closes with **1008 (policy violation), reason
//! "slow consumer: send queue full"**, counted in
//! `tether_slow_consumer_closes_total`. A member blocked on a full socket
//! still hears every broadcast ([`Member::poll_lagged`]), so it is cut off
//! as soon as it falls behind, not when its socket drains. Memory per group
//! is therefore bounded by the ring, whatever the publishers do, and a
//! member's own queue of replies is bounded the same way.
//!
//! # Order
//!
//! Each broadcast takes a number from the hub's counter, and a member's own
//! replies (pub/sub acks and errors) are numbered from the same counter when
//! queued. A member that has several sources (channels, replies) delivers
//! the lowest number first, so a publisher subscribed to its own channel sees
//! its message before the ack that counts it. (A member of one room, the
//! common case, takes from its one ring without comparing; a member of k
//! channels looks at k heads per message.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tether::Message;

/// Groups (rooms, channels) of members, each with its ring.
#[derive(Debug)]
pub struct Hub {
    groups: Mutex<HashMap<String, Arc<Group>>>,
    next_id: AtomicU64,
    /// Numbers broadcasts and replies, for the order of a member's sources.
    order: AtomicU64,
    /// How far behind a member may fall (ring length, own replies queued).
    queue: usize,
}

#[derive(Debug, Default)]
struct Group {
    ring: Mutex<Ring>,
}

/// A group's recent messages and who waits for the next one.
#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Entry>,
    /// Position of the next entry; positions count up for the group's life.
    end: u64,
    members: usize,
    /// Members waiting for the next entry. Emptied (all woken) by each
    /// broadcast, which bumps `generation`.
    waiters: Vec<Waker>,
    generation: u64,
    /// An empty list with capacity, swapped in for `waiters` by a broadcast
    /// so that waking 10,000 members allocates nothing.
    spare: Vec<Waker>,
}

#[derive(Debug)]
struct Entry {
    order: u64,
    /// The member that sent it, who does not get it back (rooms).
    from: Option<u64>,
    /// Members that have yet to take it.
    remaining: usize,
    msg: Message,
}

impl Ring {
    /// Position of the oldest entry kept.
    fn start(&self) -> u64 {
        self.end - self.entries.len() as u64
    }

    fn entry(&self, pos: u64) -> Option<&Entry> {
        let i = pos.checked_sub(self.start())?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    fn entry_mut(&mut self, pos: u64) -> Option<&mut Entry> {
        let i = pos.checked_sub(self.start())?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }

    /// Drop entries every member has taken.
    fn trim(&mut self) {
        while self.entries.front().is_some_and(|e| e.remaining == 0) {
            self.entries.pop_front();
        }
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            // A burst is over: give its memory back.
            self.entries = VecDeque::new();
        }
    }

    /// Wake `cx`'s task on the next broadcast. A member registers at most
    /// once per generation: `slot` remembers where its waker went.
    fn register(&mut self, slot: &mut Option<(u64, usize)>, cx: &mut Context<'_>) {
        if let Some((generation, i)) = *slot {
            if generation == self.generation {
                if !self.waiters[i].will_wake(cx.waker()) {
                    self.waiters[i] = cx.waker().clone();
                }
                return;
            }
        }
        if self.waiters.len() >= 2 * self.members + 64 {
            // Members that left keep their (emptied) place until the next
            // broadcast; under heavy churn without broadcasts, start over.
            // Everyone waiting is woken once and registers again.
            self.generation += 1;
            for w in self.waiters.drain(..) {
                w.wake();
            }
        }
        *slot = Some((self.generation, self.waiters.len()));
        self.waiters.push(cx.waker().clone());
    }
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a member's next outgoing item is.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A message to write.
    Message(Message),
    /// The member fell `queue` messages behind: close it with 1008.
    SlowConsumer,
}

/// A member's place in one group.
#[derive(Debug)]
struct Subscription {
    name: String,
    group: Arc<Group>,
    /// Position of the next entry to take.
    cursor: u64,
    /// Where this member's waker is in the ring's list (generation, index).
    registered: Option<(u64, usize)>,
}

/// What a subscription has next.
enum Peek {
    Order(u64),
    Empty,
    Lagged,
}

impl Subscription {
    /// Skip the member's own messages, then look at the next entry. With
    /// `cx`, an empty ring wakes the task on the next broadcast.
    fn peek(
        cursor: &mut u64,
        registered: &mut Option<(u64, usize)>,
        ring: &mut Ring,
        me: u64,
        cx: Option<&mut Context<'_>>,
    ) -> Peek {
        if *cursor < ring.start() {
            return Peek::Lagged;
        }
        while let Some(e) = ring.entry(*cursor) {
            if e.from == Some(me) {
                *cursor += 1;
            } else {
                return Peek::Order(e.order);
            }
        }
        if let Some(cx) = cx {
            ring.register(registered, cx);
        }
        Peek::Empty
    }

    /// Take the next entry for member `me`.
    fn take(&mut self, me: u64, cx: Option<&mut Context<'_>>) -> Option<Next> {
        let mut ring = self.group.lock();
        match Self::peek(&mut self.cursor, &mut self.registered, &mut ring, me, cx) {
            Peek::Lagged => Some(Next::SlowConsumer),
            Peek::Empty => None,
            Peek::Order(_) => {
                let e = ring.entry_mut(self.cursor)?;
                debug_assert!(e.remaining > 0, "taken by more members than it was for");
                e.remaining = e.remaining.saturating_sub(1);
                let msg = e.msg.clone();
                self.cursor += 1;
                ring.trim();
                Some(Next::Message(msg))
            }
        }
    }

    /// Give up this member's share of every entry it has not taken, and its
    /// place among the waiters. Returns the members left.
    fn detach(&mut self, me: u64) -> usize {
        let mut ring = self.group.lock();
        let from = self.cursor.max(ring.start());
        for pos in from..ring.end {
            if let Some(e) = ring.entry_mut(pos) {
                if e.from != Some(me) {
                    e.remaining = e.remaining.saturating_sub(1);
                }
            }
        }
        ring.trim();
        if let Some((generation, i)) = self.registered.take() {
            if generation == ring.generation {
                ring.waiters[i] = Waker::noop().clone();
            }
        }
        ring.members -= 1;
        ring.members
    }
}

impl Hub {
    /// A hub whose members may fall `queue` messages behind (at least 1).
    pub fn new(queue: usize) -> Hub {
        Hub {
            groups: Mutex::default(),
            next_id: AtomicU64::new(0),
            order: AtomicU64::new(0),
            queue: queue.max(1),
        }
    }

    /// A new member, in no group yet.
    pub fn member(self: &Arc<Self>) -> Member {
        Member {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            hub: self.clone(),
            subs: Vec::new(),
            own: VecDeque::new(),
            kicked: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliver `msg` to every member of `group`. Returns how many members
    /// it was queued for.
    pub fn publish(&self, group: &str, msg: &Message) -> usize {
        self.append(group, msg, None)
    }

    /// Append to `group`'s ring for every member but `from` (which must be
    /// one of them) and wake those waiting.
    fn append(&self, group: &str, msg: &Message, from: Option<u64>) -> usize {
        let Some(group) = self.lock().get(group).cloned() else {
            return 0;
        };
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let (delivered, mut woken) = {
            let mut ring = group.lock();
            let remaining = ring.members - usize::from(from.is_some());
            if remaining == 0 {
                return 0;
            }
            if ring.entries.len() >= self.queue {
                // Whoever has not taken the oldest is now `queue` behind.
                ring.entries.pop_front();
            }
            ring.entries.push_back(Entry {
                order,
                from,
                remaining,
                msg: msg.clone(),
            });
            ring.end += 1;
            ring.generation += 1;
            let spare = std::mem::take(&mut ring.spare);
            (remaining, std::mem::replace(&mut ring.waiters, spare))
        };
        // Outside the lock: members woken first can take the entry at once.
        for w in woken.drain(..) {
            w.wake();
        }
        let mut ring = group.lock();
        if ring.spare.capacity() < woken.capacity() {
            ring.spare = woken;
        }
        delivered
    }

    /// Take `sub` (member `me`'s) out of its group, and the group out of
    /// the hub once it is empty.
    fn detach(&self, mut sub: Subscription, me: u64) {
        // Hub before ring, as in `join`: a group is removed only while no
        // one can be joining it.
        let mut groups = self.lock();
        if sub.detach(me) == 0 {
            if let Some(g) = groups.get(&sub.name) {
                if Arc::ptr_eq(g, &sub.group) {
                    groups.remove(&sub.name);
                }
            }
        }
    }

    /// Members of `group` now.
    pub fn count(&self, group: &str) -> usize {
        let group = self.lock().get(group).cloned();
        group.map_or(0, |g| g.lock().members)
    }
}

/// A connection's membership: its groups, its cursors, its own replies.
#[derive(Debug)]
pub struct Member {
    /// Unique within the hub.
    pub id: u64,
    hub: Arc<Hub>,
    subs: Vec<Subscription>,
    /// Replies to this member alone, numbered like broadcasts.
    own: VecDeque<(u64, Message)>,
    /// Its own replies overflowed: close it as a slow consumer.
    kicked: bool,
}

impl Member {
    /// Join a group (idempotent). Only messages broadcast from now on are
    /// delivered.
    pub fn join(&mut self, name: &str) {
        if self.subs.iter().any(|s| s.name == name) {
            return;
        }
        let mut groups = self.hub.lock();
        let group = groups.entry(name.to_owned()).or_default().clone();
        let cursor = {
            let mut ring = group.lock();
            ring.members += 1;
            ring.end
        };
        drop(groups);
        self.subs.push(Subscription {
            name: name.to_owned(),
            group,
            cursor,
            registered: None,
        });
    }

    /// Leave a group; false if not a member.
    pub fn leave(&mut self, name: &str) -> bool {
        let Some(pos) = self.subs.iter().position(|s| s.name == name) else {
            return false;
        };
        let sub = self.subs.swap_remove(pos);
        self.hub.detach(sub, self.id);
        true
    }

    /// Deliver `msg` to every other member of `group`, which this member
    /// must have joined (else nothing is sent). Returns how many members
    /// it was queued for.
    pub fn broadcast_others(&self, group: &str, msg: &Message) -> usize {
        if !self.subs.iter().any(|s| s.name == group) {
            return 0;
        }
        self.hub.append(group, msg, Some(self.id))
    }

    /// Queue a message to this member itself (acks, errors), under the same
    /// slow-consumer rule as broadcasts.
    pub fn send_self(&mut self, msg: Message) {
        if self.own.len() >= self.hub.queue {
            self.kicked = true;
            return;
        }
        let order = self.hub.order.load(Ordering::Relaxed);
        self.own.push_back((order, msg));
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The next item to write; when there is none, the task is woken by the
    /// next broadcast to any of the member's groups.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        match self.next(Some(cx)) {
            Some(next) => Poll::Ready(next),
            None => Poll::Pending,
        }
    }

    /// The next item to write, if one is there now.
    pub fn try_next(&mut self) -> Option<Next> {
        self.next(None)
    }

    /// Ready once the member has fallen too far behind; otherwise the task
    /// is woken by the next broadcast to check again. For a task blocked
    /// writing to a full socket.
    pub fn poll_lagged(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.kicked {
            return Poll::Ready(());
        }
        for sub in &mut self.subs {
            let mut ring = sub.group.lock();
            if sub.cursor < ring.start() {
                return Poll::Ready(());
            }
            ring.register(&mut sub.registered, cx);
        }
        Poll::Pending
    }

    fn next(&mut self, mut cx: Option<&mut Context<'_>>) -> Option<Next> {
        if self.kicked {
            return Some(Next::SlowConsumer);
        }
        if self.own.is_empty() && self.subs.len() == 1 {
            // One source (a room): one lock per message, no comparing.
            return self.subs[0].take(self.id, cx);
        }
        // Several sources: the lowest number goes first, own replies on ties.
        let mut best = self.own.front().map(|&(order, _)| (order, None));
        for (i, sub) in self.subs.iter_mut().enumerate() {
            let mut ring = sub.group.lock();
            let peek = Subscription::peek(
                &mut sub.cursor,
                &mut sub.registered,
                &mut ring,
                self.id,
                cx.as_deref_mut(),
            );
            match peek {
                Peek::Lagged => return Some(Next::SlowConsumer),
                Peek::Empty => {}
                Peek::Order(order) => {
                    if best.is_none_or(|(b, _)| order < b) {
                        best = Some((order, Some(i)));
                    }
                }
            }
        }
        match best? {
            (_, None) => self.own.pop_front().map(|(_, m)| Next::Message(m)),
            (_, Some(i)) => self.subs[i].take(self.id, None),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for sub in std::mem::take(&mut self.subs) {
            self.hub.detach(sub, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
