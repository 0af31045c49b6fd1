//! Micro benchmarks of the per-message hot path of `tether-proto`.
//!
//! `cargo bench -p tether-ws-proto --bench hot_path` (add `-- mask` etc. to
//! pick a group). Throughput is reported in bytes (GB/s) or elements
//! (messages/s) so the numbers compare across sizes:
//!
//! * `frame_header`: decoding and encoding headers of each length form;
//! * `mask`: `apply_mask` (word at a time) against `apply_mask_scalar`, at
//!   16 B, 1 KiB, 64 KiB and 1 MiB, plus an unaligned start offset;
//! * `utf8`: `Utf8Validator::feed` on ASCII and on multibyte text;
//! * `assemble`: a server `Connection` turning N masked client frames into
//!   messages, from one buffer and from 1 KiB chunks (as a socket delivers);
//! * `encode`: a client (masking) and a server encoding messages;
//! * `echo`: one steady-state batch of 16 messages through a server echoing
//!   them and through a client sending and receiving them.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tether_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use tether_proto::mask::apply_mask;
use tether_proto::utf8::Utf8Validator;
use tether_proto::{Buf, Config, Connection, Event, InPlace, Message, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    g.throughput(Throughput::Elements(1));
    for (name, len, masked) in [
        ("7bit_masked", 20u64, true),
        ("16bit_masked", 16 << 10, true),
        ("64bit_unmasked", 1 << 20, false),
    ] {
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: masked.then_some(KEY),
            payload_len: len,
        };
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut buf);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| FrameHeader::decode(black_box(&buf[..n])))
        });
        g.bench_function(format!("encode/{name}"), |b| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| black_box(&header).encode(black_box(&mut out)))
        });
    }
    g.finish();
}

/// The byte-at-a-time loop the word-at-a-time `apply_mask` is measured
/// against.
fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for (name, size) in [
        ("16B", 16usize),
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let mut data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("apply_mask/{name}"), |b| {
            b.iter(|| apply_mask(black_box(&mut data), KEY, 0))
        });
        g.bench_function(format!("apply_mask_offset3/{name}"), |b| {
            b.iter(|| apply_mask(black_box(&mut data[1..]), KEY, 3))
        });
        g.bench_function(format!("scalar/{name}"), |b| {
            b.iter(|| apply_mask_scalar(black_box(&mut data), KEY, 0))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii: Vec<u8> = (0..64 << 10).map(|i| b'a' + (i % 26) as u8).collect();
    // Mixed 2-, 3- and 4-byte characters with ASCII in between.
    let multi: Vec<u8> = "héllo wörld — ünïcødé 日本語テキスト 🦀🚀 "
        .repeat(1200)
        .into_bytes()[..64 << 10]
        .to_vec();
    let multi_len = std::str::from_utf8(&multi)
        .err()
        .map_or(multi.len(), |e| e.valid_up_to());
    let multi = &multi[..multi_len];
    for (name, data) in [("ascii", &ascii[..]), ("multibyte", multi)] {
        for (piece_name, piece) in [("64KiB", 64 << 10), ("1KiB", 1 << 10), ("20B", 20)] {
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.bench_function(format!("feed/{name}/{piece_name}_pieces"), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for p in data.chunks(piece) {
                        v.feed(black_box(p)).unwrap();
                    }
                    v.finish().unwrap()
                })
            });
        }
    }
    g.finish();
}

/// `n` masked client frames of `size` bytes each, back to back.
fn client_frames(n: usize, size: usize, text: bool) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Config::default());
    let payload = if text {
        Message::text("x".repeat(size))
    } else {
        Message::binary(vec![7u8; size])
    };
    for _ in 0..n {
        client.send(payload.clone()).unwrap();
    }
    client.take_output().to_vec()
}

fn drain(server: &mut Connection) -> usize {
    let mut n = 0;
    while let Some(e) = server.poll_event().unwrap() {
        if let Event::Message(m) = e {
            black_box(&m);
            n += 1;
        }
    }
    n
}

fn assemble(c: &mut Criterion) {
    let mut g = c.benchmark_group("assemble");
    for (name, n, size, text) in [
        ("1000x20B_binary", 1000usize, 20usize, false),
        ("1000x20B_text", 1000, 20, true),
        ("100x16KiB_binary", 100, 16 << 10, false),
        ("100x16KiB_text", 100, 16 << 10, true),
        ("4x1MiB_binary", 4, 1 << 20, false),
    ] {
        let wire = client_frames(n, size, text);
        g.throughput(Throughput::Bytes((n * size) as u64));
        g.bench_function(format!("one_chunk/{name}"), |b| {
            b.iter_batched_ref(
                || Connection::new(Role::Server, Config::default()),
                |server| {
                    server.receive(&wire);
                    assert_eq!(drain(server), n);
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("1KiB_chunks/{name}"), |b| {
            b.iter_batched_ref(
                || Connection::new(Role::Server, Config::default()),
                |server| {
                    let mut got = 0;
                    for chunk in wire.chunks(1024) {
                        server.receive(chunk);
                        got += drain(server);
                    }
                    assert_eq!(got, n);
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The same work counted in messages per second.
    let wire = client_frames(1000, 20, false);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("msgs/1000x20B_binary", |b| {
        b.iter_batched_ref(
            || Connection::new(Role::Server, Config::default()),
            |server| {
                server.receive(&wire);
                assert_eq!(drain(server), 1000);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The sending side: a client encoding (and masking) messages.
fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, size, n) in [
        ("20B", 20usize, 100),
        ("16KiB", 16 << 10, 100),
        ("1MiB", 1 << 20, 1),
    ] {
        let msg = Message::binary(vec![1u8; size]);
        g.throughput(Throughput::Bytes((n * size) as u64));
        for role in [Role::Client, Role::Server] {
            g.bench_function(format!("{role:?}/{n}x{name}"), |b| {
                let mut conn = Connection::new(role, Config::default());
                b.iter(|| {
                    for _ in 0..n {
                        conn.send(msg.clone()).unwrap();
                    }
                    // Drain as a transport would after writing: no copy.
                    written(&mut conn);
                })
            });
        }
    }
    g.finish();
}

/// `n` unmasked server frames of `size` bytes each, back to back.
fn server_frames(n: usize, size: usize) -> Vec<u8> {
    let mut server = Connection::new(Role::Server, Config::default());
    for _ in 0..n {
        server.send(Message::binary(vec![7u8; size])).unwrap();
    }
    server.take_output().to_vec()
}

/// Take everything a connection queued, as a transport's write would.
fn written(conn: &mut Connection) {
    let out = conn.output();
    black_box(out.chunk());
    let n = out.remaining();
    out.advance(n);
}

/// A client's half of an echo batch: 16 sends, then the write.
fn send_batch(client: &mut Connection, msg: &Message) {
    for _ in 0..16 {
        client.send(msg.clone()).unwrap();
    }
    written(client);
}

/// One steady-state batch of an echo, as a connection under load sees it:
/// a server reads 16 small client frames, echoes each message, and its
/// output is drained; a client sends 16 messages and reads 16 echoes. The
/// connections live across iterations (buffers are reused as in a real
/// connection), so this measures the per-message cost of the whole
/// protocol path: header, unmasking, splitting, message, encoding.
fn echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo");
    for (name, size) in [("20B", 20usize), ("256B", 256), ("1KiB", 1024)] {
        g.throughput(Throughput::Elements(16));
        let wire = client_frames(16, size, false);
        g.bench_function(format!("server/16x{name}"), |b| {
            let mut server = Connection::new(Role::Server, Config::default());
            b.iter(|| {
                server.read_buf().extend_from_slice(&wire);
                while let Some(e) = server.poll_event().unwrap() {
                    if let Event::Message(m) = e {
                        server.send(m).unwrap();
                    }
                }
                written(&mut server);
            })
        });
        if size <= 125 {
            // The same batch echoed in place (`read_in_place` and
            // `send_ref`, as `tether`'s echo): no `Message`.
            g.bench_function(format!("server_fast_echo/16x{name}"), |b| {
                let mut server = Connection::new(Role::Server, Config::default());
                b.iter(|| {
                    server.read_buf().extend_from_slice(&wire);
                    while let InPlace::Read(sent) = server.read_in_place(|m, tx| tx.send_ref(m)) {
                        sent.unwrap();
                    }
                    written(&mut server);
                })
            });
        }
        let wire = server_frames(16, size);
        // Static, as a load generator's payload: cloning it costs nothing.
        let payload: &'static [u8] = Vec::leak(vec![1u8; size]);
        let msg = Message::Binary(tether_proto::Bytes::from_static(payload));
        g.bench_function(format!("client/16x{name}"), |b| {
            let mut client = Connection::new(Role::Client, Config::default());
            b.iter(|| {
                send_batch(&mut client, &msg);
                client.read_buf().extend_from_slice(&wire);
                while let Some(e) = client.poll_event().unwrap() {
                    black_box(&e);
                }
            })
        });
        if size <= 125 {
            // The same, reading the echoes in place (`tether bench`'s way).
            g.bench_function(format!("client_in_place/16x{name}"), |b| {
                let mut client = Connection::new(Role::Client, Config::default());
                b.iter(|| {
                    send_batch(&mut client, &msg);
                    client.read_buf().extend_from_slice(&wire);
                    while let InPlace::Read(n) = client.read_in_place(|m, _| m.len()) {
                        black_box(n);
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, frame_header, mask, utf8, assemble, encode, echo);
criterion_main!(benches);
