//! permessage-deflate on a realistic stream: compression ratio, CPU per
//! message and heap per connection for the memory settings.
//!
//! `cargo bench -p tether-proto --bench deflate_stream` sends a JSON
//! chat/ticker stream both ways over pairs of in-memory connections: one
//! pair (each message continues on the state that compressed the previous
//! one) and 1,000 pairs taking turns (a broadcast: every message is
//! compressed on a state primed from the connection's history). Heap is
//! counted by a counting allocator and includes the per-thread pools.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;
use tether_proto::deflate::{release_thread_states, CodecMemory, DeflateConfig, DeflateParams};
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

/// A deterministic JSON chat/ticker stream: chat messages (users, rooms,
/// free text from a vocabulary) interleaved with price ticks.
pub fn chat_ticker_stream(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "deploy",
        "is",
        "done",
        "can",
        "you",
        "check",
        "latency",
        "on",
        "eu-west",
        "looks",
        "good",
        "to",
        "me",
        "merging",
        "now",
        "thanks",
        "who",
        "broke",
        "build",
        "again",
        "lunch",
        "at",
        "noon",
        "price",
        "alert",
        "BTC",
        "just",
        "moved",
        "ok",
        "see",
        "dashboard",
        "ship",
        "it",
        "rollback",
        "please",
        "ticket",
        "1234",
        "reviewed",
        "LGTM",
    ];
    const SYMBOLS: &[&str] = &["BTC-USD", "ETH-USD", "SOL-USD", "AAPL", "MSFT", "EUR-USD"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::with_capacity(n);
    let mut ts = 1_733_600_000_000u64;
    for i in 0..n {
        ts += rnd() % 250;
        if rnd() % 3 == 0 {
            let words = 3 + rnd() % 18;
            let text: Vec<&str> = (0..words)
                .map(|_| WORDS[(rnd() % WORDS.len() as u64) as usize])
                .collect();
            out.push(format!(
                r#"{{"type":"chat","id":"m{:016x}","room":"room-{}","user":{{"id":{},"name":"user{}"}},"text":"{}","ts":{}}}"#,
                rnd(),
                rnd() % 20,
                rnd() % 5000,
                rnd() % 5000,
                text.join(" "),
                ts
            ));
        } else {
            let sym = SYMBOLS[(rnd() % SYMBOLS.len() as u64) as usize];
            let price = 1000 + rnd() % 60_000;
            out.push(format!(
                r#"{{"type":"ticker","seq":{i},"symbol":"{sym}","price":"{}.{:02}","bid":"{}.{:02}","ask":"{}.{:02}","volume_24h":"{}","ts":{ts}}}"#,
                price,
                rnd() % 100,
                price - 1,
                rnd() % 100,
                price + 1,
                rnd() % 100,
                rnd() % 10_000_000
            ));
        }
    }
    out
}

struct Run {
    wire: usize,
    plain: usize,
    send_us: f64,
    recv_us: f64,
    heap_per_conn: f64,
    pools: isize,
}

fn run(
    pairs: usize,
    messages: usize,
    memory: CodecMemory,
    params: DeflateParams,
    level: u32,
) -> Run {
    let stream = chat_ticker_stream(messages);
    let config = Config::default()
        .with_deflate(Some(
            DeflateConfig::default()
                .with_level(level)
                .with_memory(memory),
        ))
        .with_negotiated_deflate(Some(params));
    release_thread_states();
    let before = LIVE.load(Ordering::Relaxed);
    let mut conns: Vec<(Connection, Connection)> = (0..pairs)
        .map(|_| {
            (
                Connection::new(Role::Server, config.clone()),
                Connection::new(Role::Client, config.clone()),
            )
        })
        .collect();
    let (mut wire, mut plain) = (0usize, 0usize);
    let (mut send, mut recv) = (0f64, 0f64);
    // Each message goes to every pair in turn, both ways.
    for text in &stream {
        for (server, client) in conns.iter_mut() {
            for dir in 0..2 {
                let (from, to) = if dir == 0 {
                    (&mut *server, &mut *client)
                } else {
                    (&mut *client, &mut *server)
                };
                let t = Instant::now();
                from.send(Message::text(text.clone())).unwrap();
                let bytes = from.take_output();
                let t1 = Instant::now();
                to.receive(&bytes);
                match to.poll_event().unwrap() {
                    Some(Event::Message(m)) => assert_eq!(m.len(), text.len()),
                    other => panic!("expected a message, got {other:?}"),
                }
                recv += t1.elapsed().as_secs_f64();
                send += (t1 - t).as_secs_f64();
                wire += bytes.len();
                plain += text.len() + 2;
            }
        }
    }
    for (s, c) in conns.iter_mut() {
        s.shrink_buffers();
        c.shrink_buffers();
    }
    let after = LIVE.load(Ordering::Relaxed);
    release_thread_states();
    let pools = after - LIVE.load(Ordering::Relaxed);
    let n = (messages * pairs * 2) as f64;
    drop(conns);
    let empty = {
        let b = LIVE.load(Ordering::Relaxed);
        let c: Vec<_> = (0..pairs)
            .map(|_| {
                (
                    Connection::new(Role::Server, config.clone()),
                    Connection::new(Role::Client, config.clone()),
                )
            })
            .collect();
        let a = LIVE.load(Ordering::Relaxed);
        drop(c);
        a - b
    };
    Run {
        wire,
        plain,
        send_us: send / n * 1e6,
        recv_us: recv / n * 1e6,
        heap_per_conn: (after - before - empty - pools) as f64 / (2 * pairs) as f64,
        pools,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let takeover = DeflateParams::default();
    let nct = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let own = |history| {
        CodecMemory::default()
            .with_states_per_thread(1_000_000)
            .with_send_history(history)
    };
    let shared = |history, mem_level| {
        CodecMemory::default()
            .with_send_history(history)
            .with_mem_level(mem_level)
    };
    let bits = |b| DeflateParams {
        server_max_window_bits: b,
        client_max_window_bits: b,
        ..DeflateParams::default()
    };
    let cases: Vec<(&str, CodecMemory, DeflateParams, u32)> = vec![
        ("state per connection (old)", own(32 * 1024), takeover, 6),
        (
            "shared, 32 KiB history (default)",
            CodecMemory::default(),
            takeover,
            6,
        ),
        ("shared, 16 KiB history", shared(16 * 1024, 8), takeover, 6),
        ("shared, 8 KiB history", shared(8 * 1024, 8), takeover, 6),
        ("shared, 4 KiB history", shared(4 * 1024, 8), takeover, 6),
        (
            "shared, 32 KiB, level 1",
            CodecMemory::default(),
            takeover,
            1,
        ),
        (
            "shared, 32 KiB, memLevel 4",
            shared(32 * 1024, 4),
            takeover,
            6,
        ),
        (
            "shared, window bits 12",
            CodecMemory::default(),
            bits(12),
            6,
        ),
        (
            "shared, no context takeover",
            CodecMemory::default(),
            nct,
            6,
        ),
    ];
    for (pairs, messages) in [(1usize, 20_000usize), (100, 300)] {
        println!("{pairs} pair(s), {messages} messages each way per pair:");
        println!(
            "  {:<34} {:>7} {:>10} {:>10} {:>14} {:>12}",
            "settings", "ratio", "send µs", "recv µs", "heap/conn", "pools"
        );
        for (name, memory, params, level) in &cases {
            let r = run(pairs, messages, *memory, *params, *level);
            println!(
                "  {:<34} {:>7.3} {:>10.2} {:>10.2} {:>10.1} KiB {:>8} KiB",
                name,
                r.wire as f64 / r.plain as f64,
                r.send_us,
                r.recv_us,
                r.heap_per_conn / 1024.0,
                r.pools / 1024
            );
        }
    }
}
