//! Counters for `/metrics`, in the Prometheus text format.
//!
//! Hot counters are relaxed atomics, per route in a fixed array indexed by
//! route id (no map lookup, no lock); the rarer ones (closes by code,
//! rejections by reason) sit behind a mutex.
//!
//! The traffic counters (messages and bytes, in and out) are bumped after
//! every batch a connection handles, from every worker thread. One shared
//! set of atomics would bounce its cache line between cores on each update
//! (measured: 4 such updates per batch cost `tether serve` 4-5% of its echo
//! throughput against the library alone), so each route keeps [`SHARDS`]
//! cache-line-sized sets, a thread always updates the same one, and
//! `/metrics` adds them up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Traffic counter sets per route; threads beyond this many share sets
/// (still correct, just contended).
pub const SHARDS: usize = 16;

/// One thread's share of a route's traffic counters, alone on its cache
/// line (two lines: adjacent-line prefetch pairs them on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Traffic {
    /// Data messages received.
    pub messages_in: AtomicU64,
    /// Their payload bytes.
    pub bytes_in: AtomicU64,
    /// Data messages sent.
    pub messages_out: AtomicU64,
    /// Their payload bytes.
    pub bytes_out: AtomicU64,
}

/// This thread's shard index (assigned round-robin on first use).
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    INDEX.try_with(|i| *i).unwrap_or(0)
}

/// Per-route counters.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Route path (label).
    pub label: String,
    /// Route kind (label).
    pub kind: &'static str,
    /// WebSocket connections accepted.
    pub connections: AtomicU64,
    /// Open now.
    pub open: AtomicU64,
    /// Subscribers closed for not keeping up.
    pub slow_consumers: AtomicU64,
    /// Messages and bytes, one set per thread shard.
    traffic: [Traffic; SHARDS],
}

impl RouteMetrics {
    /// Count received messages.
    pub fn received(&self, messages: u64, bytes: u64) {
        let t = &self.traffic[shard()];
        t.messages_in.fetch_add(messages, Relaxed);
        t.bytes_in.fetch_add(bytes, Relaxed);
    }

    /// Count sent messages.
    pub fn sent(&self, messages: u64, bytes: u64) {
        let t = &self.traffic[shard()];
        t.messages_out.fetch_add(messages, Relaxed);
        t.bytes_out.fetch_add(bytes, Relaxed);
    }

    /// A traffic counter summed over the shards.
    pub fn total(&self, field: fn(&Traffic) -> &AtomicU64) -> u64 {
        self.traffic.iter().map(|t| field(t).load(Relaxed)).sum()
    }
}

/// All counters of the server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Indexed by route id.
    pub routes: Vec<RouteMetrics>,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// HTTP requests answered (not upgrades).
    pub http_requests: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counters for these routes (label, kind) in id order.
    pub fn new(routes: impl IntoIterator<Item = (String, &'static str)>) -> Metrics {
        Metrics {
            routes: routes
                .into_iter()
                .map(|(label, kind)| RouteMetrics {
                    label,
                    kind,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A WebSocket connection ended with this close code (1006 if none).
    pub fn closed(&self, code: u16) {
        *self
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// A handshake was refused.
    pub fn rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let open: u64 = self.routes.iter().map(|r| r.open.load(Relaxed)).sum();
        let total: u64 = self
            .routes
            .iter()
            .map(|r| r.connections.load(Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "# HELP tether_connections_open WebSocket connections open now."
        );
        let _ = writeln!(out, "# TYPE tether_connections_open gauge");
        let _ = writeln!(out, "tether_connections_open {open}");
        let _ = writeln!(
            out,
            "# HELP tether_connections_total WebSocket connections accepted."
        );
        let _ = writeln!(out, "# TYPE tether_connections_total counter");
        let _ = writeln!(out, "tether_connections_total {total}");
        let _ = writeln!(out, "# TYPE tether_tcp_accepted_total counter");
        let _ = writeln!(
            out,
            "tether_tcp_accepted_total {}",
            self.tcp_accepted.load(Relaxed)
        );
        let _ = writeln!(out, "# TYPE tether_http_requests_total counter");
        let _ = writeln!(
            out,
            "tether_http_requests_total {}",
            self.http_requests.load(Relaxed)
        );
        type Field = fn(&RouteMetrics) -> u64;
        let per_route: [(&str, &str, &str, Field); 7] = [
            (
                "tether_route_connections_open",
                "gauge",
                "WebSocket connections open now, per route.",
                |r| r.open.load(Relaxed),
            ),
            (
                "tether_route_connections_total",
                "counter",
                "WebSocket connections accepted, per route.",
                |r| r.connections.load(Relaxed),
            ),
            (
                "tether_messages_in_total",
                "counter",
                "Data messages received.",
                |r| r.total(|t| &t.messages_in),
            ),
            (
                "tether_bytes_in_total",
                "counter",
                "Payload bytes received.",
                |r| r.total(|t| &t.bytes_in),
            ),
            (
                "tether_messages_out_total",
                "counter",
                "Data messages sent.",
                |r| r.total(|t| &t.messages_out),
            ),
            (
                "tether_bytes_out_total",
                "counter",
                "Payload bytes sent.",
                |r| r.total(|t| &t.bytes_out),
            ),
            (
                "tether_slow_consumer_closes_total",
                "counter",
                "Subscribers closed (1008) because their send queue was full.",
                |r| r.slow_consumers.load(Relaxed),
            ),
        ];
        for (name, ty, help, field) in per_route {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {ty}");
            // Page routes (demo, static) carry no WebSocket traffic.
            for r in self
                .routes
                .iter()
                .filter(|r| !matches!(r.kind, "demo" | "static"))
            {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\",kind=\"{}\"}} {}",
                    escape(&r.label),
                    r.kind,
                    field(r)
                );
            }
        }
        let _ = writeln!(out, "# HELP tether_closes_total WebSocket connections ended, by close code (1006: no close frame).");
        let _ = writeln!(out, "# TYPE tether_closes_total counter");
        for (code, n) in self.closes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tether_closes_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP tether_handshakes_rejected_total Refused WebSocket handshakes, by reason."
        );
        let _ = writeln!(out, "# TYPE tether_handshakes_rejected_total counter");
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tether_handshakes_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_labels_and_counts() {
        let m = Metrics::new([("/chat/{room}".to_owned(), "room")]);
        m.routes[0].received(2, 10);
        m.closed(1000);
        m.closed(1000);
        m.rejected("origin");
        let text = m.render();
        assert!(
            text.contains("tether_messages_in_total{route=\"/chat/{room}\",kind=\"room\"} 2"),
            "{text}"
        );
        assert!(text.contains("tether_closes_total{code=\"1000\"} 2"));
        // Counts from other threads (other shards) add up.
        std::thread::scope(|s| {
            for _ in 0..SHARDS + 3 {
                s.spawn(|| m.routes[0].sent(1, 5));
            }
        });
        let text = m.render();
        let want = format!(
            "tether_bytes_out_total{{route=\"/chat/{{room}}\",kind=\"room\"}} {}",
            5 * (SHARDS + 3)
        );
        assert!(text.contains(&want), "{text}");
        assert!(text.contains("tether_handshakes_rejected_total{reason=\"origin\"} 1"));
    }
}
