//! permessage-deflate: compression/decompression throughput and memory per
//! connection.
//!
//! `cargo bench -p tether-ws-proto --bench deflate` prints, before the criterion
//! runs, the heap held by a connection's deflate state (compressor +
//! decompressor, after one message each way, so lazily allocated windows are
//! counted) for several settings, measured with a counting allocator.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use tether_proto::deflate::{Compressor, Decompressor, DeflateParams};
use tether_proto::{Config, Connection, Message, Role};

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

/// JSON-like text: what WebSocket applications mostly send.
fn json_payload(len: usize) -> Vec<u8> {
    json_payload_from(len, 0)
}

/// JSON-like text starting at record `first` (distinct messages).
fn json_payload_from(len: usize, first: u64) -> Vec<u8> {
    let mut s = String::new();
    let mut i = first;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"id":{i},"user":"user{}","event":"update","price":{}.{:02},"tags":["a","b"]}},"#,
            i % 97,
            (i * 7919) % 1000,
            i % 100
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn connection_bytes(params: Option<DeflateParams>) -> isize {
    let config = Config::default().with_negotiated_deflate(params);
    let msg = Message::Binary(json_payload(4096).into());
    let keep = msg.clone(); // the payload stays allocated throughout
    let before = LIVE.load(Ordering::Relaxed);
    let mut server = Connection::new(Role::Server, config.clone());
    let mut client = Connection::new(Role::Client, config);
    // One message each way so inflate windows are allocated, then drop
    // buffers that are not deflate state.
    client.send(msg.clone()).unwrap();
    server.receive(&client.take_output());
    let _ = server.poll_event().unwrap();
    server.send(msg).unwrap();
    client.receive(&server.take_output());
    let _ = client.poll_event().unwrap();
    server.shrink_buffers();
    client.shrink_buffers();
    let after = LIVE.load(Ordering::Relaxed);
    drop((server, client, keep));
    (after - before) / 2
}

/// Heap held by a compressor and a decompressor alone, after one message.
fn codec_bytes(bits: u8, no_context_takeover: bool) -> (isize, isize) {
    let data = json_payload(4096);
    let before = LIVE.load(Ordering::Relaxed);
    let mut c = Compressor::new(bits, 6, no_context_takeover);
    let z = c.compress(&data);
    let mid = LIVE.load(Ordering::Relaxed);
    let mut d = Decompressor::new(bits);
    let mut out = Vec::new();
    d.decompress(&z, true, &mut out, usize::MAX, |_| Ok(()))
        .unwrap();
    drop(out);
    let after = LIVE.load(Ordering::Relaxed);
    let z_len = z.len() as isize;
    drop((c, d, z));
    (mid - before - z_len, after - mid)
}

fn report_memory() {
    println!("deflate state alone (heap):");
    for bits in [15u8, 12, 10, 9, 8] {
        for nct in [false, true] {
            let (c, d) = codec_bytes(bits, nct);
            println!(
                "  window bits {bits:>2}, no_context_takeover {nct:<5}: compressor {c:>7} B, decompressor {d:>6} B"
            );
        }
    }
    let base = connection_bytes(None);
    println!("memory per connection (heap, after one message each way):");
    println!("  no deflate:                         {:>7} B", base);
    for (name, p) in [
        ("deflate 15/15, context takeover", DeflateParams::default()),
        (
            "deflate 15/15, no context takeover",
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateParams::default()
            },
        ),
        (
            "deflate 12/12",
            DeflateParams {
                server_max_window_bits: 12,
                client_max_window_bits: 12,
                ..DeflateParams::default()
            },
        ),
        (
            "deflate 9/9",
            DeflateParams {
                server_max_window_bits: 9,
                client_max_window_bits: 9,
                ..DeflateParams::default()
            },
        ),
    ] {
        let b = connection_bytes(Some(p));
        println!("  {name:<35}{:>7} B (+{} B)", b, b - base);
    }
}

fn bench(c: &mut Criterion) {
    report_memory();
    let mut g = c.benchmark_group("deflate");
    for &len in &[256usize, 16 * 1024, 1 << 20] {
        let data = json_payload(len);
        g.throughput(Throughput::Bytes(len as u64));
        // Distinct messages, so that context takeover cannot simply refer
        // back to an identical previous message.
        let distinct: Vec<Vec<u8>> = (0..16)
            .map(|k| json_payload_from(len, k * 1_000_003))
            .collect();
        for level in [1u32, 6] {
            for nct in [false, true] {
                let mut comp = Compressor::new(15, level, nct);
                let mut k = 0;
                let name = if nct { "no_takeover" } else { "takeover" };
                g.bench_function(format!("compress/json/{len}/level{level}/{name}"), |b| {
                    b.iter(|| {
                        k = (k + 1) % distinct.len();
                        black_box(comp.compress(black_box(&distinct[k])))
                    })
                });
            }
        }
        let mut comp = Compressor::new(15, 6, true);
        let compressed = comp.compress(&data);
        let mut de = Decompressor::new(15);
        let mut out = Vec::new();
        g.bench_function(format!("decompress/json/{len}"), |b| {
            b.iter(|| {
                out.clear();
                de.decompress(&compressed, true, &mut out, usize::MAX, |_| Ok(()))
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
