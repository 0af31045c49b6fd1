//! Rooms and pub/sub channels: one shared ring of messages per group and a
//! cursor per member.
//!
//! # Why a ring per group, not a queue per subscriber
//!
//! A broadcast is encoded once; a [`Message`] holds `Bytes`, so every copy
//! of it is a reference count, not the bytes. A queue per subscriber (a
//! tokio `mpsc`) would touch three cold cache lines per subscriber per
//! message (the queue's semaphore, its tail and its waker). Instead a
//! broadcast appends once to its group's ring and wakes the members that
//! wait; each member's task takes what lies past its cursor when it runs,
//! under one short lock, as many messages as are there, and writes them
//! with one flush. (The measured difference is in `docs/performance.md`.)
//!
//! # Slow consumers and memory
//!
//! The ring keeps at most `queue` messages (`limits.send_queue`). Each entry
//! counts the members that have yet to take it and is dropped once all
//! have, so a group whose members keep up holds nothing. A member is a slow
//! consumer, closed with **1008 (policy violation), reason "slow consumer:
//! send queue full"** and counted in `tether_slow_consumer_closes_total`,
//! when
//!
//! * it falls `queue` messages behind in one group (its next entry was
//!   dropped), or
//! * while blocked on a full socket, more than `member_bytes`
//!   (`limits.max_queued_bytes_per_connection`) wait for it across all its
//!   groups and its own replies, or
//! * the bytes held by every ring of every hub ([`Budget`],
//!   `limits.max_queued_bytes`) pass their limit: a broadcast then drops its
//!   ring's oldest entries, and whoever had not taken them is behind.
//!
//! A member blocked on a full socket still hears every broadcast
//! ([`Member::poll_lagged`]), so it is cut off as soon as it is over, not
//! when its socket drains.
//!
//! # Order
//!
//! Each broadcast takes a number from the hub's counter, and a member's own
//! replies (pub/sub acks and errors) are numbered from the same counter when
//! queued. A member that has several sources (channels, replies) delivers
//! the lowest number first, so a publisher subscribed to its own channel sees
//! its message before the ack that counts it.
//!
//! # One group or many
//!
//! A member of one group (a room, the common case) takes from its one ring
//! and waits with its task's waker: nothing else per message. A member of
//! several groups gives each subscription its own waker, which marks that
//! subscription for a look and wakes the task, and keeps the subscriptions
//! that have something in a set ordered by their next entry's number: a
//! message costs a few locks and a set operation whatever the number of
//! subscriptions, and the bytes waiting are kept up to date per
//! subscription as they change.

use super::engine::{Interest, Recovery};
use slab::Slab;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tether::Message;

/// What a hub keeps beyond what its members still have to take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per group for history and recovery (0: none).
    pub history_size: usize,
    /// How long they are kept (`None`: until pushed out).
    pub history_ttl: Option<Duration>,
    /// Keep who is in each group, for presence.
    pub presence: bool,
}

/// A group's stream position: its epoch and the offset of its last
/// message (0 before the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Random per group, new whenever the group is made again (its history
    /// and offsets were lost).
    pub epoch: Arc<str>,
    /// Offsets count 1, 2, 3, ... in publish order.
    pub offset: u64,
}

/// What joining a group with a resume position gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The group's position when joined: everything up to it was either
    /// replayed (recovered) or is not delivered.
    pub position: Position,
    /// With a resume position: whether everything after it follows.
    pub recovered: Option<bool>,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Members it was queued for (nodes it reached, with a shared engine).
    pub delivered: usize,
    /// Its position, if it was kept (the group had members or history).
    pub position: Option<Position>,
    /// The idempotency key was seen before: this is the first publish's
    /// position, and nothing was published again.
    pub duplicate: bool,
}

impl Published {
    /// Not kept, not delivered.
    const NOTHING: Published = Published {
        delivered: 0,
        position: None,
        duplicate: false,
    };
}

/// Recent messages of a group.
#[derive(Debug, Clone)]
pub struct History {
    /// The group's position now (`None`: no such group).
    pub position: Option<Position>,
    /// Oldest first, each as delivered.
    pub messages: Vec<Message>,
}

/// Budget charge for a group itself, beyond its messages.
const GROUP_COST: usize = 256;

/// Idempotency keys of HTTP publishes are remembered this long...
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);
/// ...and at most this many per hub (the oldest are forgotten first).
const IDEMPOTENCY_KEYS: usize = 10_000;

/// Recently seen idempotency keys (per channel) and their positions.
#[derive(Debug, Default)]
struct Idempotency {
    seen: HashMap<(String, String), Position>,
    order: VecDeque<(Instant, (String, String))>,
}

impl Idempotency {
    fn forget_old(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if self.order.len() <= IDEMPOTENCY_KEYS && now.duration_since(*t) < IDEMPOTENCY_WINDOW {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
            }
        }
    }
}

/// Bytes held by the rings of every hub of a server, against
/// `limits.max_queued_bytes`.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    /// No limit.
    #[cfg(test)]
    pub fn unlimited() -> Arc<Budget> {
        Budget::new(usize::MAX)
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// A new limit (a configuration reload).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.used() > self.limit.load(Ordering::Relaxed)
    }
}

/// A group no client can name (it starts with a control character): an
/// internal feed, such as a channel's presence events, that keeps no
/// history.
pub fn internal(name: &str) -> bool {
    name.starts_with(char::is_control)
}

/// Groups (rooms, channels) of members, each with its ring.
#[derive(Debug)]
pub struct Hub {
    groups: Mutex<HashMap<String, Arc<Group>>>,
    next_id: AtomicU64,
    /// Numbers broadcasts and replies, for the order of a member's sources.
    order: AtomicU64,
    /// How far behind a member may fall (ring length, own replies queued).
    queue: usize,
    /// Most bytes that may wait for a member blocked on a full socket.
    member_bytes: usize,
    budget: Arc<Budget>,
    retention: Retention,
    idempotency: Mutex<Idempotency>,
    /// Positions come from a shared engine ([`Hub::deliver`]): a group
    /// lives only while it has members or joiners, since without them the
    /// engine stops feeding it and its ring would go stale.
    fed: bool,
}

#[derive(Debug)]
struct Group {
    ring: Mutex<Ring>,
}

/// A group's recent messages and who waits for the next one.
#[derive(Debug)]
struct Ring {
    entries: VecDeque<Entry>,
    /// The group's epoch: random, or the engine's.
    epoch: Arc<str>,
    /// Position of the first entry of the current epoch (the entry after
    /// the last reset): resuming looks only from there.
    epoch_start: u64,
    /// Fed by an engine: the position came from it (else it is a
    /// placeholder until the first delivery or subscriber sets it).
    synced: bool,
    /// Subscribers between registering with the engine and attaching:
    /// the group stays and keeps what arrives for them.
    joining: usize,
    /// Position of the next entry; positions count up for the group's life.
    end: u64,
    /// Bytes appended over the group's life: an entry's `at` subtracted
    /// from it is what waits from that entry on.
    bytes_end: u64,
    /// Offset of the last message appended.
    top: u64,
    /// Messages kept after every member has taken them (history).
    keep: usize,
    /// Removed from its hub: a publish that still holds it looks again.
    dead: bool,
    /// With presence: who is in the group (member id, user).
    clients: HashMap<u64, Option<Arc<str>>>,
    members: usize,
    /// Members waiting for the next entry. Emptied (all woken) by each
    /// broadcast, which bumps `generation`.
    waiters: Vec<Waker>,
    generation: u64,
    /// An empty list with capacity, swapped in for `waiters` by a broadcast
    /// so that waking 10,000 members allocates nothing.
    spare: Vec<Waker>,
    budget: Arc<Budget>,
}

#[derive(Debug)]
struct Entry {
    order: u64,
    /// The member that sent it, who does not get it back (rooms).
    from: Option<u64>,
    /// Members that have yet to take it.
    remaining: usize,
    /// `Ring::bytes_end` before it was appended.
    at: u64,
    /// Its offset in the group's stream.
    offset: u64,
    /// When it was appended (only with a history TTL).
    time: Option<Instant>,
    msg: Message,
}

impl Ring {
    fn new(budget: Arc<Budget>, keep: usize) -> Ring {
        budget.add(GROUP_COST);
        Ring {
            entries: VecDeque::new(),
            epoch: format!("{:016x}", rand::random::<u64>()).into(),
            epoch_start: 0,
            synced: false,
            joining: 0,
            end: 0,
            bytes_end: 0,
            top: 0,
            keep,
            dead: false,
            clients: HashMap::new(),
            members: 0,
            waiters: Vec::new(),
            generation: 0,
            spare: Vec::new(),
            budget,
        }
    }

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

    /// Bytes from position `cursor` to the end (all of them once `cursor`
    /// fell off the start).
    fn behind(&self, cursor: u64) -> u64 {
        if cursor >= self.end {
            return 0;
        }
        self.entry(cursor)
            .map_or(u64::MAX, |e| self.bytes_end - e.at)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.budget.sub(e.msg.len());
        }
    }

    /// Drop entries every member has taken, beyond the history kept
    /// (everything stays while a subscriber is joining).
    fn trim(&mut self) {
        while self.joining == 0
            && self.entries.len() > self.keep
            && self.entries.front().is_some_and(|e| e.remaining == 0)
        {
            self.pop_front();
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

impl Ring {
    /// Drop history older than `ttl` (what members still have to take
    /// stays).
    fn expire(&mut self, ttl: Option<Duration>, now: Instant) {
        let Some(ttl) = ttl else { return };
        while self.entries.front().is_some_and(|e| {
            e.remaining == 0 && e.time.is_some_and(|t| now.duration_since(t) >= ttl)
        }) {
            self.pop_front();
        }
    }

    fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.top,
        }
    }

    /// Where a cursor goes to deliver what follows offset `k` of the
    /// current epoch, if the ring still holds all of it.
    fn after(&self, k: u64) -> Option<u64> {
        if k == self.top {
            return Some(self.end);
        }
        if k > self.top {
            return None;
        }
        // Offsets are contiguous within an epoch.
        let from = self.epoch_start.max(self.start());
        let first = self.entry(from)?.offset;
        let pos = from + (k + 1).checked_sub(first)?;
        (self.entry(pos)?.offset == k + 1).then_some(pos)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        while !self.entries.is_empty() {
            self.pop_front();
        }
        self.budget.sub(GROUP_COST);
    }
}

#[cfg(test)]
thread_local! {
    /// Ring locks taken on this thread (tests count work with it).
    static RING_LOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Group {
    fn new(budget: Arc<Budget>, keep: usize) -> Group {
        Group {
            ring: Mutex::new(Ring::new(budget, keep)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        #[cfg(test)]
        RING_LOCKS.with(|n| n.set(n.get() + 1));
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a member's next outgoing item is.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A message to write.
    Message(Message),
    /// The member fell too far behind: close it with 1008.
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
    /// With several subscriptions: this one's waker ([`SubWake`]).
    waker: Option<Waker>,
    /// With several: the number of its next entry, as kept in
    /// [`Multi::ready`].
    head: Option<u64>,
    /// With several: bytes waiting in this group, as last seen.
    behind: u64,
    /// Entries are delivered as if numbered at least this: what a resumed
    /// subscription replays follows the ack queued when it joined.
    floor: u64,
    /// Its registration with a shared engine (dropped with it).
    interest: Option<Interest>,
}

/// What a subscription has next.
enum Peek {
    Order(u64),
    Empty,
    Lagged,
}

impl Subscription {
    fn new(name: &str, group: Arc<Group>, cursor: u64) -> Subscription {
        Subscription {
            name: name.to_owned(),
            group,
            cursor,
            registered: None,
            waker: None,
            head: None,
            behind: 0,
            floor: 0,
            interest: None,
        }
    }

    /// Skip the member's own messages, then look at the next entry. With
    /// `cx`, an empty ring wakes the task on the next broadcast.
    fn peek(
        cursor: &mut u64,
        registered: &mut Option<(u64, usize)>,
        ring: &mut Ring,
        me: u64,
        floor: u64,
        cx: Option<&mut Context<'_>>,
    ) -> Peek {
        if *cursor < ring.start() {
            return Peek::Lagged;
        }
        while let Some(e) = ring.entry(*cursor) {
            if e.from == Some(me) {
                *cursor += 1;
            } else {
                return Peek::Order(e.order.max(floor));
            }
        }
        if let Some(cx) = cx {
            ring.register(registered, cx);
        }
        Peek::Empty
    }

    /// Take the entry at the cursor (which [`Subscription::peek`] found).
    fn take_locked(cursor: &mut u64, ring: &mut Ring) -> Option<Next> {
        if *cursor < ring.start() {
            return Some(Next::SlowConsumer);
        }
        let e = ring.entry_mut(*cursor)?;
        debug_assert!(e.remaining > 0, "taken by more members than it was for");
        e.remaining = e.remaining.saturating_sub(1);
        let msg = e.msg.clone();
        *cursor += 1;
        ring.trim();
        Some(Next::Message(msg))
    }

    /// Take the next entry for member `me`.
    fn take(&mut self, me: u64, cx: Option<&mut Context<'_>>) -> Option<Next> {
        let mut ring = self.group.lock();
        match Self::peek(
            &mut self.cursor,
            &mut self.registered,
            &mut ring,
            me,
            self.floor,
            cx,
        ) {
            Peek::Lagged => Some(Next::SlowConsumer),
            Peek::Empty => None,
            Peek::Order(_) => Self::take_locked(&mut self.cursor, &mut ring),
        }
    }

    /// With several subscriptions: look at this one again (it was marked),
    /// wait on it with its own waker, and bring its place in `multi.ready`
    /// and its bytes waiting up to date. `Err` once it fell behind.
    fn refresh(&mut self, key: usize, multi: &mut Multi, me: u64) -> Result<(), ()> {
        let mut ring = self.group.lock();
        let head = match Self::peek(
            &mut self.cursor,
            &mut self.registered,
            &mut ring,
            me,
            self.floor,
            None,
        ) {
            Peek::Lagged => return Err(()),
            Peek::Empty => None,
            Peek::Order(o) => Some(o),
        };
        if let Some(w) = &self.waker {
            ring.register(&mut self.registered, &mut Context::from_waker(w));
        }
        let behind = ring.behind(self.cursor);
        drop(ring);
        multi.behind = multi.behind - self.behind + behind;
        self.behind = behind;
        if head != self.head {
            if let Some(o) = self.head {
                multi.ready.remove(&(o, key));
            }
            if let Some(o) = head {
                multi.ready.insert((o, key));
            }
            self.head = head;
        }
        Ok(())
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
        ring.clients.remove(&me);
        ring.members
    }
}

/// The state of a member of several groups.
#[derive(Debug)]
struct Multi {
    signal: Arc<Signal>,
    /// Subscriptions by name.
    names: HashMap<String, usize>,
    /// (number of its next entry, key) of each subscription that has one.
    ready: BTreeSet<(u64, usize)>,
    /// Bytes waiting across the subscriptions (sum of their `behind`).
    behind: u64,
    /// Keys taken from the signal, looked at outside its lock.
    scratch: Vec<usize>,
}

/// Which subscriptions of a member heard a broadcast, and its task.
#[derive(Debug, Default)]
struct Signal(Mutex<SignalState>);

#[derive(Debug, Default)]
struct SignalState {
    task: Option<Waker>,
    marked: Vec<usize>,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_task(&self, waker: &Waker) {
        let mut s = self.lock();
        if !s.task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            s.task = Some(waker.clone());
        }
    }

    fn mark(&self, key: usize) {
        let mut s = self.lock();
        s.marked.push(key);
        if let Some(t) = &s.task {
            t.wake_by_ref();
        }
    }
}

/// The waker one subscription leaves in its ring.
struct SubWake {
    signal: Arc<Signal>,
    key: usize,
}

impl Wake for SubWake {
    fn wake(self: Arc<Self>) {
        self.signal.mark(self.key);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal.mark(self.key);
    }
}

impl Hub {
    /// A hub whose members may fall `queue` messages behind (at least 1),
    /// with no byte limits and no history.
    #[cfg(test)]
    pub fn new(queue: usize) -> Hub {
        Hub::with_limits(queue, usize::MAX, Budget::unlimited())
    }

    /// A hub whose members may fall `queue` messages behind (at least 1),
    /// or have `member_bytes` waiting while blocked, and whose rings draw
    /// on `budget`.
    pub fn with_limits(queue: usize, member_bytes: usize, budget: Arc<Budget>) -> Hub {
        Hub {
            groups: Mutex::default(),
            next_id: AtomicU64::new(0),
            order: AtomicU64::new(0),
            queue: queue.max(1),
            member_bytes,
            budget,
            retention: Retention::default(),
            idempotency: Mutex::default(),
            fed: false,
        }
    }

    /// Positions and messages come from a shared engine through
    /// [`Hub::deliver`] and [`Hub::reset`], not from [`Hub::publish_at`].
    pub fn fed_by_engine(mut self) -> Hub {
        self.fed = true;
        self
    }

    /// Keep history and presence as `retention` says.
    pub fn retaining(mut self, retention: Retention) -> Hub {
        self.retention = retention;
        self
    }

    /// What the hub keeps.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// A new member, in no group yet.
    pub fn member(self: &Arc<Self>) -> Member {
        self.member_as(None)
    }

    /// A new member that presence shows as `user`.
    pub fn member_as(self: &Arc<Self>, user: Option<Arc<str>>) -> Member {
        Member {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            hub: self.clone(),
            subs: Slab::new(),
            own: VecDeque::new(),
            own_bytes: 0,
            kicked: false,
            multi: None,
            user,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_group(&self, name: &str) -> Arc<Group> {
        let keep = if internal(name) {
            0
        } else {
            self.retention.history_size
        };
        Arc::new(Group::new(self.budget.clone(), keep))
    }

    /// Deliver `msg` to every member of `group`. Returns how many members
    /// it was queued for.
    #[cfg(test)]
    pub fn publish(&self, group: &str, msg: &Message) -> usize {
        self.append(group, |_| msg.clone(), None).delivered
    }

    /// Deliver the message `encode` makes from its offset to every member of
    /// `group`, and keep it in the group's history.
    pub fn publish_at(&self, group: &str, encode: impl FnOnce(u64) -> Message) -> Published {
        self.append(group, encode, None)
    }

    /// [`Hub::publish_at`], at most once per `key` (per group, within
    /// ten minutes and the last 10,000 keys): a retry answers the first
    /// publish's position.
    pub fn publish_once(
        &self,
        group: &str,
        key: &str,
        encode: impl FnOnce(u64) -> Message,
    ) -> Published {
        let mut seen = self.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        seen.forget_old(now);
        let k = (group.to_owned(), key.to_owned());
        if let Some(p) = seen.seen.get(&k) {
            return Published {
                delivered: 0,
                position: Some(p.clone()),
                duplicate: true,
            };
        }
        let published = self.append(group, encode, None);
        if let Some(p) = &published.position {
            seen.seen.insert(k.clone(), p.clone());
            seen.order.push_back((now, k));
        }
        published
    }

    /// Append to `group`'s ring for every member but `from` (which must be
    /// one of them) and wake those waiting. A group with no members is
    /// appended to only to keep history.
    fn append(
        &self,
        name: &str,
        encode: impl FnOnce(u64) -> Message,
        from: Option<u64>,
    ) -> Published {
        let keep = self.retention.history_size > 0 && !internal(name);
        let group = {
            let mut groups = self.lock();
            match groups.get(name) {
                Some(g) => g.clone(),
                None if keep => groups
                    .entry(name.to_owned())
                    .or_insert_with(|| self.new_group(name))
                    .clone(),
                None => return Published::NOTHING,
            }
        };
        let ring = group.lock();
        if ring.dead {
            // Removed from the hub since it was looked up: the hub has
            // (or will make) another one for this name.
            drop(ring);
            return self.append(name, encode, from);
        }
        let remaining = ring.members - usize::from(from.is_some());
        if remaining == 0 && !keep {
            return Published::NOTHING;
        }
        let offset = ring.top + 1;
        let msg = encode(offset);
        // Rooms do not show positions: no epoch to share.
        let position = from.is_none().then(|| Position {
            epoch: ring.epoch.clone(),
            offset,
        });
        let delivered = self.push(ring, &group, from, offset, msg);
        Published {
            delivered,
            position,
            duplicate: false,
        }
    }

    /// Append `msg` (offset `offset`) to the locked `ring` of `group` for
    /// every member but `from`, wake those waiting, and answer how many it
    /// was queued for.
    fn push(
        &self,
        mut ring: MutexGuard<'_, Ring>,
        group: &Group,
        from: Option<u64>,
        offset: u64,
        msg: Message,
    ) -> usize {
        let remaining = ring.members - usize::from(from.is_some());
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let time = self.retention.history_ttl.map(|ttl| {
            let now = Instant::now();
            ring.expire(Some(ttl), now);
            now
        });
        let at = ring.bytes_end;
        ring.top = offset;
        ring.bytes_end += msg.len() as u64;
        self.budget.add(msg.len());
        ring.entries.push_back(Entry {
            order,
            from,
            remaining,
            at,
            offset,
            time,
            msg,
        });
        ring.end += 1;
        // Whoever has not taken what is dropped here is now behind.
        let most = self.queue.max(ring.keep);
        while ring.entries.len() > most || (ring.entries.len() > 1 && self.budget.over()) {
            ring.pop_front();
        }
        ring.trim();
        ring.generation += 1;
        let spare = std::mem::take(&mut ring.spare);
        let mut woken = std::mem::replace(&mut ring.waiters, spare);
        drop(ring);
        // Outside the lock: members woken first can take the entry at once.
        for w in woken.drain(..) {
            w.wake();
        }
        let mut ring = group.lock();
        if ring.spare.capacity() < woken.capacity() {
            ring.spare = woken;
        }
        remaining
    }

    /// Append a publication a shared engine delivered for `name`, at the
    /// offset it assigned (the next one of `epoch`). Only groups with
    /// members or joiners receive it.
    pub fn deliver(&self, name: &str, epoch: &str, offset: u64, msg: Message) {
        let Some(group) = self.lock().get(name).cloned() else {
            return;
        };
        let mut ring = group.lock();
        if ring.dead {
            return;
        }
        if !ring.synced || *ring.epoch != *epoch {
            // The first delivery of a new group (or, defensively, an
            // epoch that came without a reset): it sets the position.
            ring.epoch = epoch.into();
            ring.epoch_start = ring.end;
            ring.synced = true;
        }
        self.push(ring, &group, None, offset, msg);
    }

    /// Continuity of `name` was lost: queue `msg` (a `reset`) to every
    /// member and carry on at `epoch`/`offset`. What the ring keeps from
    /// before cannot be resumed from any more.
    pub fn reset(&self, name: &str, epoch: &str, offset: u64, msg: Message) {
        let Some(group) = self.lock().get(name).cloned() else {
            return;
        };
        let mut ring = group.lock();
        if ring.dead {
            return;
        }
        ring.epoch = epoch.into();
        ring.synced = true;
        let end = ring.end;
        ring.epoch_start = end + 1;
        self.push(ring, &group, None, offset, msg);
    }

    /// `name`'s position now (a fresh placeholder for an unknown group).
    pub fn position(&self, name: &str) -> Position {
        match self.lock().get(name).cloned() {
            Some(g) => g.lock().position(),
            None => Position {
                epoch: "".into(),
                offset: 0,
            },
        }
    }

    /// Take `sub` (member `me`'s) out of its group, and the group out of
    /// the hub once it has no members and no history.
    fn detach(&self, mut sub: Subscription, me: u64) {
        // Hub before ring, as in `join`: a group is removed only while no
        // one can be joining it.
        let mut groups = self.lock();
        if sub.detach(me) == 0 {
            let mut ring = sub.group.lock();
            if ring.entries.is_empty() || (self.fed && ring.joining == 0) {
                ring.dead = true;
                drop(ring);
                if let Some(g) = groups.get(&sub.name) {
                    if Arc::ptr_eq(g, &sub.group) {
                        groups.remove(&sub.name);
                    }
                }
            }
        }
    }

    /// Drop history past its TTL, and groups left with neither members nor
    /// history. Run now and then by the server.
    pub fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.retention.history_ttl;
        self.lock().retain(|_, g| {
            let mut ring = g.lock();
            ring.expire(ttl, now);
            let keep =
                ring.members > 0 || ring.joining > 0 || (!self.fed && !ring.entries.is_empty());
            ring.dead = !keep;
            keep
        });
    }

    /// Members of `group` now.
    pub fn count(&self, group: &str) -> usize {
        let group = self.lock().get(group).cloned();
        group.map_or(0, |g| g.lock().members)
    }

    /// The last `limit` messages kept for `group`, at most `max_bytes`
    /// of them (the oldest are left out first), and its position.
    pub fn history(&self, group: &str, limit: usize, max_bytes: usize) -> History {
        let Some(group) = self.lock().get(group).cloned() else {
            return History {
                position: None,
                messages: Vec::new(),
            };
        };
        let mut ring = group.lock();
        ring.expire(self.retention.history_ttl, Instant::now());
        let mut bytes = 0usize;
        let mut messages: Vec<Message> = ring
            .entries
            .iter()
            .rev()
            .take(limit)
            .take_while(|e| {
                bytes += e.msg.len();
                bytes <= max_bytes
            })
            .map(|e| e.msg.clone())
            .collect();
        messages.reverse();
        History {
            position: Some(ring.position()),
            messages,
        }
    }

    /// Who is in `group` (member id, user), if presence is kept.
    pub fn presence(&self, group: &str) -> Vec<(u64, Option<Arc<str>>)> {
        let Some(group) = self.lock().get(group).cloned() else {
            return Vec::new();
        };
        let ring = group.lock();
        let mut clients: Vec<_> = ring.clients.iter().map(|(k, v)| (*k, v.clone())).collect();
        clients.sort_by_key(|c| c.0);
        clients
    }
}

/// Drop `hub`'s expired history and forgotten groups now and then, until
/// the hub is dropped (a reload removed its route).
pub async fn sweep(hub: std::sync::Weak<Hub>) {
    let Some(every) = hub.upgrade().map(|h| {
        h.retention
            .history_ttl
            .map_or(Duration::from_secs(10), |ttl| ttl / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(10))
    }) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match hub.upgrade() {
            Some(h) => h.sweep(),
            None => return,
        }
    }
}

/// A group held open for a subscriber while a shared engine registers it:
/// what arrives meanwhile stays in the ring for it.
#[derive(Debug)]
pub struct Joining {
    hub: Arc<Hub>,
    name: String,
    group: Arc<Group>,
}

impl Hub {
    /// Hold `name` open for a subscriber about to register with the engine.
    pub fn joining(self: &Arc<Self>, name: &str) -> Joining {
        let mut groups = self.lock();
        let group = groups
            .entry(name.to_owned())
            .or_insert_with(|| self.new_group(name))
            .clone();
        group.lock().joining += 1;
        drop(groups);
        Joining {
            hub: self.clone(),
            name: name.to_owned(),
            group,
        }
    }
}

impl Joining {
    /// Has the ring received everything up to `target` (or moved to
    /// another epoch)? `delivered` stands for the ring's position until
    /// its first delivery. A history read can be ahead of the ring: what
    /// it holds is still on its way to the node.
    pub fn caught_up(&self, delivered: &Position, target: &Position) -> bool {
        let ring = self.group.lock();
        let (epoch, top) = if ring.synced {
            (&ring.epoch, ring.top)
        } else {
            (&delivered.epoch, delivered.offset)
        };
        *epoch != target.epoch || top >= target.offset
    }

    /// Can the ring alone resume a subscriber from `since`?
    pub fn resumable(&self, since: &Position) -> bool {
        let ring = self.group.lock();
        ring.synced && ring.epoch == since.epoch && ring.after(since.offset).is_some()
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        let mut groups = self.hub.lock();
        let mut ring = self.group.lock();
        ring.joining -= 1;
        if ring.joining == 0 {
            ring.trim();
            if ring.members == 0 && (self.hub.fed || ring.entries.is_empty()) {
                ring.dead = true;
                drop(ring);
                if groups
                    .get(&self.name)
                    .is_some_and(|g| Arc::ptr_eq(g, &self.group))
                {
                    groups.remove(&self.name);
                }
            }
        }
    }
}

/// How a subscriber joins a group fed by a shared engine.
#[derive(Debug)]
pub struct FedJoin {
    /// The position the engine had handed to the hub when it registered
    /// the subscriber: what follows it is (or will be) in the ring.
    pub delivered: Position,
    /// The resume position asked for, and what the engine's history
    /// recovered after it (read when the ring alone could not resume).
    pub since: Option<(Position, Option<Recovery>)>,
    /// The registration, kept with the subscription.
    pub interest: Interest,
}

/// A connection's membership: its groups, its cursors, its own replies.
#[derive(Debug)]
pub struct Member {
    /// Unique within the hub.
    pub id: u64,
    hub: Arc<Hub>,
    subs: Slab<Subscription>,
    /// Replies to this member alone, numbered like broadcasts.
    own: VecDeque<(u64, Message)>,
    /// Their bytes.
    own_bytes: usize,
    /// Fell behind: close it as a slow consumer.
    kicked: bool,
    /// Present while the member is in two groups or more.
    multi: Option<Box<Multi>>,
    /// Who it is, for presence.
    user: Option<Arc<str>>,
}

impl Member {
    /// Join a group; false if already a member. Only messages broadcast
    /// from now on are delivered.
    pub fn join(&mut self, name: &str) -> bool {
        if self.find(name).is_some() {
            return false;
        }
        self.attach(name, None, None::<fn(&Joined) -> Message>);
        true
    }

    /// Join a group as a subscriber, and queue the reply `ack` makes from
    /// the group's position. With `since` (an epoch and the offset of the
    /// last message the subscriber had), every message after it follows
    /// the reply, then live ones, when the group still has them all
    /// (`recovered: true`); otherwise only live ones (`recovered: false`).
    /// Already a member: the reply has the position and nothing else.
    pub fn subscribe(
        &mut self,
        name: &str,
        since: Option<(&str, u64)>,
        ack: impl FnOnce(&Joined) -> Message,
    ) {
        if let Some(key) = self.find(name) {
            let position = self.subs[key].group.lock().position();
            let reply = ack(&Joined {
                position,
                recovered: None,
            });
            self.send_self(reply);
            return;
        }
        self.attach(name, since, Some(ack));
    }

    fn attach(
        &mut self,
        name: &str,
        since: Option<(&str, u64)>,
        ack: Option<impl FnOnce(&Joined) -> Message>,
    ) {
        let hub = self.hub.clone();
        let mut groups = hub.lock();
        let group = groups
            .entry(name.to_owned())
            .or_insert_with(|| self.hub.new_group(name))
            .clone();
        let mut ring = group.lock();
        ring.expire(self.hub.retention.history_ttl, Instant::now());
        let end = ring.end;
        let (cursor, recovered) = match since {
            None => (end, None),
            // The first message after `k` must be there, with nothing
            // missing before the end.
            Some((epoch, k)) if epoch == &*ring.epoch => match ring.after(k) {
                Some(cursor) => (cursor, Some(true)),
                None => (end, Some(false)),
            },
            Some(_) => (end, Some(false)),
        };
        let joined = Joined {
            position: ring.position(),
            recovered,
        };
        self.place(
            name,
            group.clone(),
            ring,
            groups,
            cursor,
            joined,
            ack,
            Vec::new(),
            None,
        );
    }

    /// Join a group fed by a shared engine, held open by `joining` while
    /// the engine registered the subscriber (see [`FedJoin`]), and queue
    /// the reply `ack` makes.
    pub fn subscribe_fed(
        &mut self,
        joining: Joining,
        join: FedJoin,
        ack: impl FnOnce(&Joined) -> Message,
    ) {
        let name = joining.name.clone();
        if self.is_in(&name) {
            // Subscribed meanwhile: this registration is not needed.
            drop(join.interest);
            self.subscribe(&name, None, ack);
            return;
        }
        let hub = self.hub.clone();
        let groups = hub.lock();
        let group = joining.group.clone();
        let mut ring = group.lock();
        ring.expire(self.hub.retention.history_ttl, Instant::now());
        let delivered = join.delivered;
        if !ring.synced {
            // Nothing arrived since the registration: it is the position.
            ring.epoch = delivered.epoch.clone();
            ring.top = delivered.offset;
            ring.epoch_start = ring.end;
            ring.synced = true;
        }
        // Where this subscriber's live stream starts: after the position
        // the engine had delivered (what arrived since is in the ring).
        let live = if ring.epoch == delivered.epoch {
            ring.after(delivered.offset).map(|c| (c, delivered.clone()))
        } else {
            None
        };
        let (live, live_position) = live.unwrap_or((ring.end, ring.position()));
        let mut replay = Vec::new();
        let (cursor, joined) = match join.since {
            None => (
                live,
                Joined {
                    position: live_position,
                    recovered: None,
                },
            ),
            Some((since, recovery)) => {
                let from_ring = (since.epoch == ring.epoch)
                    .then(|| ring.after(since.offset))
                    .flatten();
                let from_engine = recovery.and_then(|r| {
                    let missed = r.missed?;
                    let cursor = (r.top.epoch == ring.epoch)
                        .then(|| ring.after(r.top.offset))
                        .flatten()?;
                    Some((cursor, r.top, missed))
                });
                match (from_ring, from_engine) {
                    (Some(cursor), _) => (
                        cursor,
                        Joined {
                            position: ring.position(),
                            recovered: Some(true),
                        },
                    ),
                    (None, Some((cursor, top, missed))) => {
                        replay = missed;
                        (
                            cursor,
                            Joined {
                                position: top,
                                recovered: Some(true),
                            },
                        )
                    }
                    (None, None) => (
                        live,
                        Joined {
                            position: live_position,
                            recovered: Some(false),
                        },
                    ),
                }
            }
        };
        self.place(
            &name,
            group.clone(),
            ring,
            groups,
            cursor,
            joined,
            Some(ack),
            replay,
            Some(join.interest),
        );
        drop(joining);
    }

    /// Attach a subscription to the locked `ring` at `cursor`, queue the
    /// reply `ack` makes from `joined`, then the `replay` messages, ahead
    /// of everything the subscription delivers.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        name: &str,
        group: Arc<Group>,
        mut ring: MutexGuard<'_, Ring>,
        groups: MutexGuard<'_, HashMap<String, Arc<Group>>>,
        cursor: u64,
        joined: Joined,
        ack: Option<impl FnOnce(&Joined) -> Message>,
        replay: Vec<Message>,
        interest: Option<Interest>,
    ) {
        let end = ring.end;
        for pos in cursor..end {
            if let Some(e) = ring.entry_mut(pos) {
                if e.from != Some(self.id) {
                    e.remaining += 1;
                }
            }
        }
        ring.members += 1;
        if self.hub.retention.presence {
            ring.clients.insert(self.id, self.user.clone());
        }
        // Numbered while no broadcast can reach the group: whatever the
        // subscription delivers comes after the reply.
        let floor = self.hub.order.load(Ordering::Relaxed);
        drop(ring);
        drop(groups);
        if let Some(ack) = ack {
            let reply = ack(&joined);
            self.queue_own(floor, reply);
        }
        for msg in replay {
            // A recovery is bounded by the history kept, not the queue.
            self.own_bytes += msg.len();
            self.own.push_back((floor, msg));
        }
        let mut sub = Subscription::new(name, group, cursor);
        sub.floor = floor;
        sub.interest = interest;
        let key = self.subs.insert(sub);
        match &mut self.multi {
            Some(multi) => {
                multi.names.insert(name.to_owned(), key);
                arm(multi, &mut self.subs[key], key);
            }
            None if self.subs.len() >= 2 => self.enter_multi(),
            None => {}
        }
    }

    /// Leave a group; false if not a member.
    pub fn leave(&mut self, name: &str) -> bool {
        let Some(key) = self.find(name) else {
            return false;
        };
        let sub = self.subs.remove(key);
        if let Some(multi) = &mut self.multi {
            multi.names.remove(name);
            if let Some(o) = sub.head {
                multi.ready.remove(&(o, key));
            }
            multi.behind -= sub.behind;
        }
        self.hub.detach(sub, self.id);
        if self.subs.len() <= 1 && self.multi.is_some() {
            self.leave_multi();
        }
        true
    }

    /// How many groups the member is in.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Who it is (a JWT's `sub`), for presence.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// The groups the member is in.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.subs.iter().map(|(_, s)| s.name.as_str())
    }

    /// Is the member in `name`?
    pub fn is_in(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<usize> {
        match &self.multi {
            Some(multi) => multi.names.get(name).copied(),
            None => self
                .subs
                .iter()
                .find(|(_, s)| s.name == name)
                .map(|(k, _)| k),
        }
    }

    /// From one group to two: every subscription gets its own waker and is
    /// looked at on the next poll.
    fn enter_multi(&mut self) {
        let mut multi = Box::new(Multi {
            signal: Arc::default(),
            names: HashMap::with_capacity(self.subs.len()),
            ready: BTreeSet::new(),
            behind: 0,
            scratch: Vec::new(),
        });
        for (key, sub) in &mut self.subs {
            multi.names.insert(sub.name.clone(), key);
            arm(&mut multi, sub, key);
        }
        self.multi = Some(multi);
    }

    /// Back to one group (or none): the single-source path takes over. The
    /// slab is rebuilt so that iterating it skips no emptied slots.
    fn leave_multi(&mut self) {
        self.multi = None;
        let rest: Vec<Subscription> = self.subs.drain().collect();
        for mut sub in rest {
            sub.waker = None;
            sub.head = None;
            sub.behind = 0;
            self.subs.insert(sub);
        }
        self.subs.shrink_to_fit();
    }

    /// Deliver `msg` to every other member of `group`, which this member
    /// must have joined (else nothing is sent). Returns how many members
    /// it was queued for.
    pub fn broadcast_others(&self, group: &str, msg: &Message) -> usize {
        if !self.is_in(group) {
            return 0;
        }
        self.hub
            .append(group, |_| msg.clone(), Some(self.id))
            .delivered
    }

    /// Queue a message to this member itself (acks, errors), under the same
    /// slow-consumer rule as broadcasts.
    pub fn send_self(&mut self, msg: Message) {
        let order = self.hub.order.load(Ordering::Relaxed);
        self.queue_own(order, msg);
    }

    fn queue_own(&mut self, order: u64, msg: Message) {
        if self.own.len() >= self.hub.queue {
            self.kicked = true;
            return;
        }
        self.own_bytes += msg.len();
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

    /// Ready once the member has fallen too far behind (in messages in a
    /// group, or in bytes across them); otherwise the task is woken by the
    /// next broadcast to check again. For a task blocked writing to a full
    /// socket.
    pub fn poll_lagged(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.kicked {
            return Poll::Ready(());
        }
        let limit = self.hub.member_bytes as u64;
        let own = self.own_bytes as u64;
        if let Some(multi) = &mut self.multi {
            multi.signal.set_task(cx.waker());
            if look_at_marked(multi, &mut self.subs, self.id).is_err() {
                self.kicked = true;
                return Poll::Ready(());
            }
            return if multi.behind.saturating_add(own) > limit {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        let mut behind = own;
        for (_, sub) in &mut self.subs {
            let mut ring = sub.group.lock();
            if sub.cursor < ring.start() {
                return Poll::Ready(());
            }
            behind = behind.saturating_add(ring.behind(sub.cursor));
            ring.register(&mut sub.registered, cx);
        }
        if behind > limit {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn next(&mut self, cx: Option<&mut Context<'_>>) -> Option<Next> {
        if self.kicked {
            return Some(Next::SlowConsumer);
        }
        if self.multi.is_some() {
            return self.next_of_many(cx);
        }
        if self.own.is_empty() {
            // One source (a room): one lock per message, no comparing.
            let (_, sub) = self.subs.iter_mut().next()?;
            return sub.take(self.id, cx);
        }
        // A group and own replies: the lowest number goes first, own
        // replies on ties.
        let own = self.own.front().map(|&(order, _)| order);
        if let Some((_, sub)) = self.subs.iter_mut().next() {
            let mut ring = sub.group.lock();
            let peek = Subscription::peek(
                &mut sub.cursor,
                &mut sub.registered,
                &mut ring,
                self.id,
                sub.floor,
                cx,
            );
            match peek {
                Peek::Lagged => return Some(Next::SlowConsumer),
                Peek::Order(order) if own.is_none_or(|o| order < o) => {
                    return Subscription::take_locked(&mut sub.cursor, &mut ring);
                }
                _ => {}
            }
        }
        self.pop_own()
    }

    fn pop_own(&mut self) -> Option<Next> {
        let (_, m) = self.own.pop_front()?;
        self.own_bytes -= m.len();
        Some(Next::Message(m))
    }

    /// [`Member::next`] for a member of several groups.
    fn next_of_many(&mut self, cx: Option<&mut Context<'_>>) -> Option<Next> {
        let multi = self.multi.as_mut()?;
        if let Some(cx) = cx {
            multi.signal.set_task(cx.waker());
        }
        if look_at_marked(multi, &mut self.subs, self.id).is_err() {
            self.kicked = true;
            return Some(Next::SlowConsumer);
        }
        let own = self.own.front().map(|&(order, _)| order);
        let key = match multi.ready.first() {
            Some(&(order, key)) if own.is_none_or(|o| order < o) => key,
            _ => return self.pop_own(),
        };
        let sub = &mut self.subs[key];
        let next = {
            let mut ring = sub.group.lock();
            Subscription::take_locked(&mut sub.cursor, &mut ring)
        };
        if sub.refresh(key, multi, self.id).is_err() {
            self.kicked = true;
        }
        next
    }
}

/// Give a subscription of a member of several groups its own waker and
/// mark it for a look.
fn arm(multi: &mut Multi, sub: &mut Subscription, key: usize) {
    sub.waker = Some(Waker::from(Arc::new(SubWake {
        signal: multi.signal.clone(),
        key,
    })));
    multi.signal.lock().marked.push(key);
}

/// Look at the subscriptions whose rings had a broadcast since the last
/// look. `Err` when one fell behind.
fn look_at_marked(multi: &mut Multi, subs: &mut Slab<Subscription>, me: u64) -> Result<(), ()> {
    std::mem::swap(&mut multi.signal.lock().marked, &mut multi.scratch);
    let mut marked = std::mem::take(&mut multi.scratch);
    let mut result = Ok(());
    for &key in &marked {
        // A key may be stale (left, or reused by a later subscription):
        // looking again is harmless.
        if let Some(sub) = subs.get_mut(key) {
            if sub.refresh(key, multi, me).is_err() {
                result = Err(());
                break;
            }
        }
    }
    marked.clear();
    multi.scratch = marked;
    result
}

impl Drop for Member {
    fn drop(&mut self) {
        for (_, sub) in std::mem::take(&mut self.subs) {
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
        ) -> super::super::engine::Op<Result<Published, super::super::cluster::EngineError>>
        {
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
        ) -> super::super::engine::Op<Result<Position, super::super::cluster::EngineError>>
        {
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
        ) -> super::super::engine::Op<Result<Recovery, super::super::cluster::EngineError>>
        {
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
}
