//! A member: one connection's subscriptions to groups, the cursor into
//! each ring, and the wakeups that bring its task back.

use super::*;

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
pub(super) struct Subscription {
    pub(super) name: String,
    pub(super) group: Arc<Group>,
    /// Position of the next entry to take.
    pub(super) cursor: u64,
    /// Where this member's waker is in the ring's list (generation, index).
    pub(super) registered: Option<(u64, usize)>,
    /// With several subscriptions: this one's waker ([`SubWake`]).
    pub(super) waker: Option<Waker>,
    /// With several: the number of its next entry, as kept in
    /// [`Multi::ready`].
    pub(super) head: Option<u64>,
    /// With several: bytes waiting in this group, as last seen.
    pub(super) behind: u64,
    /// Entries are delivered as if numbered at least this: what a resumed
    /// subscription replays follows the ack queued when it joined.
    pub(super) floor: u64,
    /// Its registration with a shared engine (dropped with it).
    pub(super) interest: Option<Interest>,
}

/// What a subscription has next.
pub(super) enum Peek {
    Order(u64),
    Empty,
    Lagged,
}

impl Subscription {
    pub(super) fn new(name: &str, group: Arc<Group>, cursor: u64) -> Subscription {
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
    pub(super) fn peek(
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
    pub(super) fn take_locked(cursor: &mut u64, ring: &mut Ring) -> Option<Next> {
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
    pub(super) fn take(&mut self, me: u64, cx: Option<&mut Context<'_>>) -> Option<Next> {
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
    pub(super) fn refresh(&mut self, key: usize, multi: &mut Multi, me: u64) -> Result<(), ()> {
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
    pub(super) fn detach(&mut self, me: u64) -> usize {
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
pub(super) struct Multi {
    pub(super) signal: Arc<Signal>,
    /// Subscriptions by name.
    pub(super) names: HashMap<String, usize>,
    /// (number of its next entry, key) of each subscription that has one.
    pub(super) ready: BTreeSet<(u64, usize)>,
    /// Bytes waiting across the subscriptions (sum of their `behind`).
    pub(super) behind: u64,
    /// Keys taken from the signal, looked at outside its lock.
    pub(super) scratch: Vec<usize>,
}

/// Which subscriptions of a member heard a broadcast, and its task.
#[derive(Debug, Default)]
pub(super) struct Signal(Mutex<SignalState>);

#[derive(Debug, Default)]
pub(super) struct SignalState {
    pub(super) task: Option<Waker>,
    pub(super) marked: Vec<usize>,
}

impl Signal {
    pub(super) fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_task(&self, waker: &Waker) {
        let mut s = self.lock();
        if !s.task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            s.task = Some(waker.clone());
        }
    }

    pub(super) fn mark(&self, key: usize) {
        let mut s = self.lock();
        s.marked.push(key);
        if let Some(t) = &s.task {
            t.wake_by_ref();
        }
    }
}

/// The waker one subscription leaves in its ring.
pub(super) struct SubWake {
    pub(super) signal: Arc<Signal>,
    pub(super) key: usize,
}

impl Wake for SubWake {
    fn wake(self: Arc<Self>) {
        self.signal.mark(self.key);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal.mark(self.key);
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
    pub(super) hub: Arc<Hub>,
    pub(super) subs: Slab<Subscription>,
    /// Replies to this member alone, numbered like broadcasts.
    pub(super) own: VecDeque<(u64, Message)>,
    /// Their bytes.
    pub(super) own_bytes: usize,
    /// Fell behind: close it as a slow consumer.
    pub(super) kicked: bool,
    /// Present while the member is in two groups or more.
    pub(super) multi: Option<Box<Multi>>,
    /// Who it is, for presence.
    pub(super) user: Option<Arc<str>>,
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

    pub(super) fn attach(
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
    pub(super) fn place(
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

    pub(super) fn find(&self, name: &str) -> Option<usize> {
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
    pub(super) fn enter_multi(&mut self) {
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
    pub(super) fn leave_multi(&mut self) {
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

    pub(super) fn queue_own(&mut self, order: u64, msg: Message) {
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

    pub(super) fn next(&mut self, cx: Option<&mut Context<'_>>) -> Option<Next> {
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

    pub(super) fn pop_own(&mut self) -> Option<Next> {
        let (_, m) = self.own.pop_front()?;
        self.own_bytes -= m.len();
        Some(Next::Message(m))
    }

    /// [`Member::next`] for a member of several groups.
    pub(super) fn next_of_many(&mut self, cx: Option<&mut Context<'_>>) -> Option<Next> {
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
pub(super) fn arm(multi: &mut Multi, sub: &mut Subscription, key: usize) {
    sub.waker = Some(Waker::from(Arc::new(SubWake {
        signal: multi.signal.clone(),
        key,
    })));
    multi.signal.lock().marked.push(key);
}

/// Look at the subscriptions whose rings had a broadcast since the last
/// look. `Err` when one fell behind.
pub(super) fn look_at_marked(
    multi: &mut Multi,
    subs: &mut Slab<Subscription>,
    me: u64,
) -> Result<(), ()> {
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
