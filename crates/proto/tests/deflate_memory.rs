//! Heap per compressing connection, measured with a counting allocator:
//! at the default settings a connection that sends and receives compressed
//! messages holds at most 96 KiB, per-thread shared states included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{Config, Connection, Event, Message, Role};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ticker(k: usize) -> Message {
    Message::text(format!(
        r#"{{"type":"ticker","seq":{k},"symbol":"BTC-USD","price":"{}.{:02}","volume_24h":"{}","ts":{}}}"#,
        40_000 + k * 37 % 5000,
        k % 100,
        k * 7919 % 10_000_000,
        1_733_600_000_000u64 + k as u64 * 131
    ))
}

/// The only test in this file: the counter is process-wide.
#[test]
fn a_compressing_connection_holds_at_most_96_kib() {
    let config = Config::default()
        .with_deflate(Some(DeflateConfig::default()))
        .with_negotiated_deflate(Some(DeflateParams::default()));
    const PAIRS: usize = 50;
    let empty = {
        let before = LIVE.load(Ordering::Relaxed);
        let plain: Vec<_> = (0..PAIRS)
            .map(|_| {
                (
                    Connection::new(Role::Server, config.clone()),
                    Connection::new(Role::Client, config.clone()),
                )
            })
            .collect();
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        drop(plain);
        bytes
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut pairs: Vec<_> = (0..PAIRS)
        .map(|_| {
            (
                Connection::new(Role::Server, config.clone()),
                Connection::new(Role::Client, config.clone()),
            )
        })
        .collect();
    // A broadcast: every message to every pair in turn, and a reply back.
    for k in 0..300 {
        let m = ticker(k);
        for (s, c) in pairs.iter_mut() {
            deliver(s, c, &m);
            deliver(c, s, &m);
        }
    }
    for (s, c) in pairs.iter_mut() {
        s.shrink_buffers();
        c.shrink_buffers();
    }
    let held = LIVE.load(Ordering::Relaxed) - before - empty;
    let per_connection = held / (2 * PAIRS as isize);
    assert!(
        per_connection <= 96 * 1024,
        "{per_connection} bytes of heap per compressing connection"
    );
}

fn deliver(from: &mut Connection, to: &mut Connection, m: &Message) {
    from.send(m.clone()).unwrap();
    let bytes = from.take_output();
    assert!(bytes.len() < m.len(), "compressed");
    to.receive(&bytes);
    match to.poll_event().unwrap() {
        Some(Event::Message(got)) => assert_eq!(&got, m),
        other => panic!("expected a message, got {other:?}"),
    }
}
