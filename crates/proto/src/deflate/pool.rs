//! Per-thread pools of zlib states shared by the connections on a thread.
//!
//! A zlib-rs deflate state is 250-370 KiB (a fixed 128 KiB hash table, the
//! window, the pending buffers) and an inflate state about 45 KiB; kept per
//! connection they dominate a compressing connection's memory. Instead each
//! thread keeps a few of each, and a connection keeps only the tail of its
//! own stream ([`History`](super::history::History)). A state remembers
//! whose stream it last carried and how far (its [`Owner`]): when the same
//! connection comes back with nothing sent or received elsewhere in between,
//! it continues at once; otherwise the least recently used state is reset
//! and primed with the connection's history, which costs a reset and, for a
//! compressor, hashing the history.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use zlib_rs::{Deflate, DeflateConfig, Inflate};

/// Whose stream a pooled state carries, and how many messages of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) id: u64,
    pub(crate) seq: u64,
}

/// A process-unique id for one direction of one connection.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How a deflate state was made; states are reused only for equal settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeflateKey {
    pub(crate) window_bits: u8,
    pub(crate) level: u8,
    pub(crate) mem_level: u8,
}

impl DeflateKey {
    fn make(&self) -> Box<Deflate> {
        Box::new(Deflate::new_with_config(DeflateConfig {
            level: i32::from(self.level),
            window_bits: -i32::from(self.window_bits),
            mem_level: i32::from(self.mem_level),
            ..DeflateConfig::default()
        }))
    }
}

struct Slot<S, K> {
    state: Box<S>,
    key: K,
    owner: Option<Owner>,
    used: u64,
}

/// A small LRU set of states.
struct Pool<S, K> {
    slots: Vec<Slot<S, K>>,
    clock: u64,
}

impl<S, K: PartialEq + Copy> Pool<S, K> {
    const fn new() -> Self {
        Pool {
            slots: Vec::new(),
            clock: 0,
        }
    }

    /// Take the state that carries `owner`'s stream (`Ok`), or else one to
    /// reset (`Err`): an idle one of the same settings, or a new one while
    /// fewer than `limit` exist. The caller puts it back with [`Pool::put`].
    fn take(
        &mut self,
        key: K,
        owner: Option<Owner>,
        limit: usize,
        make: impl FnOnce() -> Box<S>,
    ) -> Result<Box<S>, Box<S>> {
        if let Some(owner) = owner {
            if let Some(i) = self
                .slots
                .iter()
                .position(|s| s.owner == Some(owner) && s.key == key)
            {
                return Ok(self.slots.swap_remove(i).state);
            }
        }
        if self.slots.len() >= limit.max(1) {
            let lru = (0..self.slots.len()).min_by_key(|&i| self.slots[i].used);
            if let Some(i) = lru {
                let slot = self.slots.swap_remove(i);
                if slot.key == key {
                    return Err(slot.state);
                }
            }
        }
        Err(make())
    }

    /// Return a state, recording whose stream it now carries. A pool over
    /// `limit` drops its least recently used states.
    fn put(&mut self, state: Box<S>, key: K, owner: Option<Owner>, limit: usize) {
        self.clock += 1;
        self.slots.push(Slot {
            state,
            key,
            owner,
            used: self.clock,
        });
        while self.slots.len() > limit.max(1) {
            let lru = (0..self.slots.len())
                .min_by_key(|&i| self.slots[i].used)
                .expect("pool is not empty");
            self.slots.swap_remove(lru);
        }
    }
}

thread_local! {
    static DEFLATE: RefCell<Pool<Deflate, DeflateKey>> = const { RefCell::new(Pool::new()) };
    static INFLATE: RefCell<Pool<Inflate, ()>> = const { RefCell::new(Pool::new()) };
}

/// A deflate state for `key`: `Ok` carries `owner`'s stream as it was,
/// `Err` must be reset (and primed) first.
pub(crate) fn take_deflate(
    key: DeflateKey,
    owner: Option<Owner>,
    limit: usize,
) -> Result<Box<Deflate>, Box<Deflate>> {
    DEFLATE.with(|p| p.borrow_mut().take(key, owner, limit, || key.make()))
}

pub(crate) fn put_deflate(
    state: Box<Deflate>,
    key: DeflateKey,
    owner: Option<Owner>,
    limit: usize,
) {
    DEFLATE.with(|p| p.borrow_mut().put(state, key, owner, limit));
}

/// An inflate state (15-bit window, which decodes any smaller window):
/// `Ok` carries `owner`'s stream as it was, `Err` must be reset first.
pub(crate) fn take_inflate(
    owner: Option<Owner>,
    limit: usize,
) -> Result<Box<Inflate>, Box<Inflate>> {
    INFLATE.with(|p| {
        p.borrow_mut()
            .take((), owner, limit, || Box::new(Inflate::new(false, 15)))
    })
}

pub(crate) fn put_inflate(state: Box<Inflate>, owner: Option<Owner>, limit: usize) {
    INFLATE.with(|p| p.borrow_mut().put(state, (), owner, limit));
}

/// Free the states pooled on this thread (a thread whose connections went
/// quiet; the next message makes new ones).
pub fn release_thread_states() {
    DEFLATE.with(|p| p.borrow_mut().slots.clear());
    INFLATE.with(|p| p.borrow_mut().slots.clear());
}

/// States pooled on this thread (deflate, inflate), for tests and benches.
pub fn pooled_on_this_thread() -> (usize, usize) {
    (
        DEFLATE.with(|p| p.borrow().slots.len()),
        INFLATE.with(|p| p.borrow().slots.len()),
    )
}
