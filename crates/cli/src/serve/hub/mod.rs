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

mod member;
mod ring;

use member::*;
pub use member::{FedJoin, Member, Next};
use ring::*;

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

#[cfg(test)]
mod tests;
