//! A group's ring: its recent messages, who waits for the next one, and
//! the accounting of what they hold.

use super::*;

#[derive(Debug)]
pub(super) struct Group {
    pub(super) ring: Mutex<Ring>,
}

/// A group's recent messages and who waits for the next one.
#[derive(Debug)]
pub(super) struct Ring {
    pub(super) entries: VecDeque<Entry>,
    /// The group's epoch: random, or the engine's.
    pub(super) epoch: Arc<str>,
    /// Position of the first entry of the current epoch (the entry after
    /// the last reset): resuming looks only from there.
    pub(super) epoch_start: u64,
    /// Fed by an engine: the position came from it (else it is a
    /// placeholder until the first delivery or subscriber sets it).
    pub(super) synced: bool,
    /// Subscribers between registering with the engine and attaching:
    /// the group stays and keeps what arrives for them.
    pub(super) joining: usize,
    /// Position of the next entry; positions count up for the group's life.
    pub(super) end: u64,
    /// Bytes appended over the group's life: an entry's `at` subtracted
    /// from it is what waits from that entry on.
    pub(super) bytes_end: u64,
    /// Offset of the last message appended.
    pub(super) top: u64,
    /// Messages kept after every member has taken them (history).
    pub(super) keep: usize,
    /// Removed from its hub: a publish that still holds it looks again.
    pub(super) dead: bool,
    /// With presence: who is in the group (member id, user).
    pub(super) clients: HashMap<u64, Option<Arc<str>>>,
    pub(super) members: usize,
    /// Members waiting for the next entry. Emptied (all woken) by each
    /// broadcast, which bumps `generation`.
    pub(super) waiters: Vec<Waker>,
    pub(super) generation: u64,
    /// An empty list with capacity, swapped in for `waiters` by a broadcast
    /// so that waking 10,000 members allocates nothing.
    pub(super) spare: Vec<Waker>,
    pub(super) budget: Arc<Budget>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) order: u64,
    /// The member that sent it, who does not get it back (rooms).
    pub(super) from: Option<u64>,
    /// Members that have yet to take it.
    pub(super) remaining: usize,
    /// `Ring::bytes_end` before it was appended.
    pub(super) at: u64,
    /// Its offset in the group's stream.
    pub(super) offset: u64,
    /// When it was appended (only with a history TTL).
    pub(super) time: Option<Instant>,
    pub(super) msg: Message,
}

impl Ring {
    pub(super) fn new(budget: Arc<Budget>, keep: usize) -> Ring {
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
    pub(super) fn start(&self) -> u64 {
        self.end - self.entries.len() as u64
    }

    pub(super) fn entry(&self, pos: u64) -> Option<&Entry> {
        let i = pos.checked_sub(self.start())?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    pub(super) fn entry_mut(&mut self, pos: u64) -> Option<&mut Entry> {
        let i = pos.checked_sub(self.start())?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }

    /// Bytes from position `cursor` to the end (all of them once `cursor`
    /// fell off the start).
    pub(super) fn behind(&self, cursor: u64) -> u64 {
        if cursor >= self.end {
            return 0;
        }
        self.entry(cursor)
            .map_or(u64::MAX, |e| self.bytes_end - e.at)
    }

    pub(super) fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.budget.sub(e.msg.len());
        }
    }

    /// Drop entries every member has taken, beyond the history kept
    /// (everything stays while a subscriber is joining).
    pub(super) fn trim(&mut self) {
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
    pub(super) fn register(&mut self, slot: &mut Option<(u64, usize)>, cx: &mut Context<'_>) {
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
    pub(super) fn expire(&mut self, ttl: Option<Duration>, now: Instant) {
        let Some(ttl) = ttl else { return };
        while self.entries.front().is_some_and(|e| {
            e.remaining == 0 && e.time.is_some_and(|t| now.duration_since(t) >= ttl)
        }) {
            self.pop_front();
        }
    }

    pub(super) fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.top,
        }
    }

    /// Where a cursor goes to deliver what follows offset `k` of the
    /// current epoch, if the ring still holds all of it.
    pub(super) fn after(&self, k: u64) -> Option<u64> {
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
    pub(super) static RING_LOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Group {
    pub(super) fn new(budget: Arc<Budget>, keep: usize) -> Group {
        Group {
            ring: Mutex::new(Ring::new(budget, keep)),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Ring> {
        #[cfg(test)]
        RING_LOCKS.with(|n| n.set(n.get() + 1));
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}
