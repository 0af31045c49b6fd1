//! Counters for `/metrics`, in the Prometheus text format.
//!
//! Hot counters are relaxed atomics, per route in a fixed array indexed by
//! route id (no map lookup, no lock); the rarer ones (closes by code,
//! rejections by reason) sit behind a mutex.
//!
//! The traffic counters (messages and bytes, in and out) are bumped after
//! every batch a connection handles, from every worker thread. One shared
//! set of atomics would bounce its cache line between cores on each update,
//! so each route keeps [`SHARDS`]
//! cache-line-sized sets, a thread always updates the same one, and
//! `/metrics` adds them up. The handshake-latency histogram is sharded the
//! same way. Process metrics come from [`super::procfs`] at render time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

/// Upper bounds (seconds) of the handshake-latency buckets.
pub const HANDSHAKE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One thread's share of a histogram: a count per bucket (not cumulative;
/// the last one is `+Inf`) and the sum in microseconds.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramShard {
    counts: [AtomicU64; HANDSHAKE_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A latency histogram with the fixed [`HANDSHAKE_BUCKETS`], updated with
/// two relaxed atomic adds on this thread's shard.
#[derive(Debug, Default)]
pub struct Histogram {
    shards: [HistogramShard; SHARDS],
}

impl Histogram {
    /// Count one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let bucket = HANDSHAKE_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(HANDSHAKE_BUCKETS.len());
        let s = &self.shards[shard()];
        s.counts[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        s.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Write the `_bucket` (cumulative), `_sum` and `_count` lines.
    fn render(&self, out: &mut String, name: &str) {
        let mut counts = [0u64; HANDSHAKE_BUCKETS.len() + 1];
        let mut sum = 0u64;
        for s in &self.shards {
            for (c, a) in counts.iter_mut().zip(&s.counts) {
                *c += a.load(Relaxed);
            }
            sum += s.sum_micros.load(Relaxed);
        }
        let mut cumulative = 0;
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            match HANDSHAKE_BUCKETS.get(i) {
                Some(le) => writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}"),
                None => writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
            }
            .ok();
        }
        let _ = writeln!(out, "{name}_sum {}", sum as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
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
    /// Programs of an exec route running now (until waited for): what
    /// `max_processes` limits, across configuration reloads.
    pub exec_processes: AtomicUsize,
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
    /// Per route, in the order routes were first configured; kept across
    /// reloads (a route's counters continue while its path and kind stay).
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// HTTP requests answered (not upgrades).
    pub http_requests: AtomicU64,
    /// From a connection's start to its 101 response written.
    pub handshake_latency: Histogram,
    /// WebSocket handshakes accepted over HTTP/1.1 (an upgrade).
    pub handshakes_http1: AtomicU64,
    /// WebSocket handshakes accepted over HTTP/2 (an extended CONNECT).
    pub handshakes_http2: AtomicU64,
    /// HTTP/2 connections served (by ALPN or prior knowledge).
    pub http2_connections: AtomicU64,
    /// Configuration reloads (SIGHUP) applied.
    pub reloads_applied: AtomicU64,
    /// Configuration reloads refused (the file or its TLS files failed).
    pub reloads_refused: AtomicU64,
    /// Whether the last reload was refused (0 before any).
    pub last_reload_refused: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    http_refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// The counters of the route with this path (label) and kind, made on
    /// first use. Sessions keep the `Arc`: updates take no lock.
    pub fn route(&self, label: &str, kind: &'static str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = routes.iter().find(|r| r.label == label && r.kind == kind) {
            return r.clone();
        }
        let r = Arc::new(RouteMetrics {
            label: label.to_owned(),
            kind,
            ..Default::default()
        });
        routes.push(r.clone());
        r
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

    /// A connection was closed on arrival, over an HTTP connection limit.
    pub fn http_refused(&self, reason: &'static str) {
        *self
            .http_refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// A WebSocket handshake was refused for `reason`.
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
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let open: u64 = routes.iter().map(|r| r.open.load(Relaxed)).sum();
        let total: u64 = routes.iter().map(|r| r.connections.load(Relaxed)).sum();
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
        let _ = writeln!(
            out,
            "# HELP tether_tcp_accepted_total TCP connections accepted (HTTP and WebSocket)."
        );
        let _ = writeln!(out, "# TYPE tether_tcp_accepted_total counter");
        let _ = writeln!(
            out,
            "tether_tcp_accepted_total {}",
            self.tcp_accepted.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_http_requests_total Plain HTTP requests answered (not upgrades)."
        );
        let _ = writeln!(out, "# TYPE tether_http_requests_total counter");
        let _ = writeln!(
            out,
            "tether_http_requests_total {}",
            self.http_requests.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_http_connections_refused_total Connections closed on arrival over limits.max_http_connections (limit_total) or max_http_connections_per_ip (limit_ip)."
        );
        let _ = writeln!(out, "# TYPE tether_http_connections_refused_total counter");
        for reason in ["limit_total", "limit_ip"] {
            let n = self
                .http_refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(reason)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "tether_http_connections_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        type Field = fn(&RouteMetrics) -> u64;
        let per_route: [(&str, &str, &str, Field); 8] = [
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
            (
                "tether_exec_processes",
                "gauge",
                "Programs of exec routes running now (until waited for).",
                |r| r.exec_processes.load(Relaxed) as u64,
            ),
        ];
        for (name, ty, help, field) in per_route {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {ty}");
            // Page routes (demo, static) carry no WebSocket traffic.
            for r in routes
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
        let _ = writeln!(
            out,
            "# HELP tether_handshakes_total Accepted WebSocket handshakes, by HTTP version (1.1: an upgrade, 2: an extended CONNECT stream)."
        );
        let _ = writeln!(out, "# TYPE tether_handshakes_total counter");
        for (version, n) in [
            ("1.1", &self.handshakes_http1),
            ("2", &self.handshakes_http2),
        ] {
            let _ = writeln!(
                out,
                "tether_handshakes_total{{version=\"{version}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tether_http2_connections_total HTTP/2 connections accepted (ALPN h2 or prior knowledge); each carries many requests and WebSocket streams."
        );
        let _ = writeln!(out, "# TYPE tether_http2_connections_total counter");
        let _ = writeln!(
            out,
            "tether_http2_connections_total {}",
            self.http2_connections.load(Relaxed)
        );
        let name = "tether_handshake_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a connection's start (just after accept) to its 101 response written, TLS included, for accepted WebSocket handshakes (over HTTP/2: from the CONNECT's arrival to the stream handed over).");
        let _ = writeln!(out, "# TYPE {name} histogram");
        self.handshake_latency.render(&mut out, name);
        let _ = writeln!(
            out,
            "# HELP tether_config_reloads_total Configuration reloads (SIGHUP), by result: applied, or refused with the previous configuration kept."
        );
        let _ = writeln!(out, "# TYPE tether_config_reloads_total counter");
        for (result, n) in [
            ("applied", &self.reloads_applied),
            ("refused", &self.reloads_refused),
        ] {
            let _ = writeln!(
                out,
                "tether_config_reloads_total{{result=\"{result}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tether_config_last_reload_successful 0 if the last reload was refused (the running configuration is not the file's), else 1."
        );
        let _ = writeln!(out, "# TYPE tether_config_last_reload_successful gauge");
        let _ = writeln!(
            out,
            "tether_config_last_reload_successful {}",
            1 - self.last_reload_refused.load(Relaxed).min(1)
        );
        let _ = writeln!(
            out,
            "# HELP tether_build_info The running version of tether (always 1)."
        );
        let _ = writeln!(out, "# TYPE tether_build_info gauge");
        let _ = writeln!(
            out,
            "tether_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        super::procfs::render(&mut out);
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
    use std::collections::HashSet;

    /// Check `text` against the Prometheus text format (0.0.4) strictly:
    /// every family has one HELP and one TYPE line before its samples, its
    /// samples are together and named for it, labels are well formed,
    /// values are numbers, histogram buckets ascend and are cumulative with
    /// `+Inf` equal to `_count`.
    fn check_exposition(text: &str) -> Result<usize, String> {
        let is_name = |n: &str| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let mut seen = HashSet::new();
        let (mut family, mut ty, mut help) = (String::new(), String::new(), false);
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut samples = 0;
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        for line in text.lines() {
            let err = |w: &str| Err(format!("{w}: {line:?}"));
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').ok_or("HELP without text")?;
                if !is_name(name) || doc.trim().is_empty() || !seen.insert(name.to_owned()) {
                    return err("bad or repeated HELP");
                }
                (family, ty, help) = (name.to_owned(), String::new(), true);
                buckets.clear();
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').ok_or("TYPE without type")?;
                if name != family || !help || !ty.is_empty() {
                    return err("TYPE not right after its HELP");
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                    return err("unknown type");
                }
                ty = t.to_owned();
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return err("stray line");
            }
            let (series, value) = line.rsplit_once(' ').ok_or("sample without value")?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| format!("bad value: {line:?}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').ok_or("unclosed labels")?),
                None => (series, ""),
            };
            let mut le = None;
            let mut rest = labels;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
                if !is_name(key) {
                    return err("bad label name");
                }
                // The value runs to the first unescaped quote.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => return err("bad escape in label value"),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        (false, '\n') => return err("newline in label value"),
                        _ => {}
                    }
                }
                let end = end.ok_or("unterminated label value")?;
                if key == "le" {
                    le = Some(after[..end].to_owned());
                }
                rest = &after[end + 1..];
                rest = match rest.strip_prefix(',') {
                    Some(r) => r,
                    None if rest.is_empty() => rest,
                    None => return err("labels not separated by commas"),
                };
            }
            let suffix = name
                .strip_prefix(family.as_str())
                .ok_or("sample of no family")?;
            let ok = match ty.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"].contains(&suffix),
                "" => false,
                _ => suffix.is_empty(),
            };
            if !ok {
                return err("sample name does not match its family's type");
            }
            if suffix == "_bucket" {
                let le = le.ok_or("bucket without le")?;
                let bound: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| "bad le")?
                };
                if let Some(&(b, c)) = buckets.last() {
                    if bound <= b || value < c {
                        return err("buckets not ascending and cumulative");
                    }
                }
                buckets.push((bound, value));
            }
            if suffix == "_count" && buckets.last() != Some(&(f64::INFINITY, value)) {
                return err("_count differs from the +Inf bucket");
            }
            samples += 1;
        }
        Ok(samples)
    }

    #[test]
    fn exposition_is_strictly_well_formed() {
        let m = Metrics::default();
        m.route("/chat/{room}", "room").received(2, 10);
        m.route("/a \"quoted\" \\ path", "echo");
        m.route("/", "static");
        m.closed(1000);
        m.closed(1006);
        m.rejected("origin");
        m.tcp_accepted.fetch_add(3, Relaxed);
        for ms in [0, 1, 3, 40, 700, 20_000] {
            m.handshake_latency
                .observe(std::time::Duration::from_millis(ms));
        }
        let text = m.render();
        let n = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(n > 30, "{n} samples:\n{text}");
        assert!(text.contains("tether_handshake_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("tether_handshake_duration_seconds_bucket{le=\"1\"} 5\n"));
        assert!(text.contains("tether_handshake_duration_seconds_bucket{le=\"+Inf\"} 6\n"));
        assert!(text.contains("tether_handshake_duration_seconds_sum 20.744\n"));
        assert!(text.contains("tether_build_info{version=\""));
        assert!(text.contains("process_resident_memory_bytes "));
        // The checker itself refuses what it should.
        for bad in [
            "# TYPE x counter\nx 1\n",
            "# HELP x h\n# TYPE x counter\ny 1\n",
            "# HELP x h\n# TYPE x counter\nx{a=\"1} 1\n",
            "# HELP x h\n# TYPE x counter\nx one\n",
            "# HELP x h\n# TYPE x histogram\nx_bucket{le=\"1\"} 2\nx_bucket{le=\"+Inf\"} 1\nx_count 1\n",
        ] {
            assert!(check_exposition(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn render_has_labels_and_counts() {
        let m = Metrics::default();
        let room = m.route("/chat/{room}", "room");
        room.received(2, 10);
        // The same path and kind (after a reload) is the same counter set.
        assert!(Arc::ptr_eq(&room, &m.route("/chat/{room}", "room")));
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
                s.spawn(|| room.sent(1, 5));
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
