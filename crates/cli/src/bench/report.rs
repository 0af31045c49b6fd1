//! The summary of a run: a table for people, JSON for scripts.

use super::stats::{cpu_times, rss_kib, CloseCodes, CpuTimes, Errors, Latencies};
use super::BenchArgs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Everything a run measured. Serialized as the `--json` output.
#[derive(Serialize, Debug, Clone)]
pub struct Summary {
    /// `echo`, `raw-tcp`, `raw-tcp-masked`, `raw-tls`, `raw-tls-masked`,
    /// `broadcast` or `idle`.
    pub mode: String,
    pub url: String,
    /// Connections asked for (subscribers in broadcast mode).
    pub connections: usize,
    /// Connections that were established.
    pub connected: usize,
    pub size: usize,
    pub depth: u32,
    pub text: bool,
    pub threads: u32,
    /// Connections on which the server accepted permessage-deflate (`--compress`).
    pub compressed_connections: u64,
    /// Length of the measurement window.
    pub duration_secs: f64,
    pub messages_sent: u64,
    /// Messages received in the window (echoes, or deliveries in broadcast mode).
    pub messages_received: u64,
    /// Payload bytes received in the window.
    pub bytes_received: u64,
    pub msgs_per_sec: f64,
    /// Received payload megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Round-trip (echo) or fan-out (broadcast) latency.
    pub latency_us: Option<LatencySummary>,
    pub errors: u64,
    /// A few distinct error messages with their counts.
    pub error_samples: BTreeMap<String, u64>,
    /// How connections ended: peer close code, `none`, or `abnormal`.
    pub close_codes: BTreeMap<String, u64>,
    /// The load generator's own CPU use over the window.
    pub client_cpu: CpuSummary,
    /// The server's CPU and memory, when `--server-pid` is given.
    pub server: Option<ServerSummary>,
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Debug, Clone)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
    pub samples: u64,
}

/// CPU seconds used over the window; `percent` is of one core (200 = two busy cores).
#[derive(Serialize, Debug, Clone, Default)]
pub struct CpuSummary {
    pub user_secs: f64,
    pub system_secs: f64,
    pub percent: f64,
}

/// The server process as seen from `/proc`.
#[derive(Serialize, Debug, Clone)]
pub struct ServerSummary {
    pub pid: u32,
    pub cpu: Option<CpuSummary>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connections, in bytes (idle mode).
    pub rss_per_connection_bytes: Option<f64>,
}

/// Start-of-window readings, turned into a [`Summary`] at the end.
pub struct Window {
    pub start: Instant,
    self_cpu: Option<CpuTimes>,
    server_cpu: Option<CpuTimes>,
}

impl Window {
    pub fn start(args: &BenchArgs) -> Self {
        Window {
            start: Instant::now(),
            self_cpu: cpu_times("self"),
            server_cpu: args.server_pid.and_then(|p| cpu_times(&p.to_string())),
        }
    }

    /// CPU used by this process and the server since the start.
    pub fn cpu(&self, args: &BenchArgs, elapsed: Duration) -> (CpuSummary, Option<CpuSummary>) {
        let diff = |before: Option<CpuTimes>, after: Option<CpuTimes>| {
            let (b, a) = (before?, after?);
            let user = a.user.saturating_sub(b.user).as_secs_f64();
            let system = a.system.saturating_sub(b.system).as_secs_f64();
            Some(CpuSummary {
                user_secs: user,
                system_secs: system,
                percent: 100.0 * (user + system) / elapsed.as_secs_f64().max(1e-9),
            })
        };
        let me = diff(self.self_cpu, cpu_times("self")).unwrap_or_default();
        let server = args
            .server_pid
            .and_then(|p| diff(self.server_cpu, cpu_times(&p.to_string())));
        (me, server)
    }
}

/// What the mode-specific code measured, to be combined into a [`Summary`].
pub struct Counts {
    pub connected: usize,
    pub elapsed: Duration,
    pub sent: u64,
    pub received: u64,
    pub bytes: u64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        args: &BenchArgs,
        counts: Counts,
        latencies: Option<&Latencies>,
        errors: &Errors,
        closes: &CloseCodes,
        cpu: (CpuSummary, Option<CpuSummary>),
        rss: Option<(Option<u64>, Option<u64>)>,
    ) -> Summary {
        let secs = counts.elapsed.as_secs_f64().max(1e-9);
        let latency_us = latencies
            .map(|l| l.merged())
            .filter(|h| !h.is_empty())
            .map(|h| LatencySummary {
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
                mean: h.mean(),
                samples: h.len(),
            });
        let server = args.server_pid.map(|pid| {
            let (before, after) = rss.unwrap_or((None, rss_kib(&pid.to_string())));
            let per_conn = match (before, after) {
                (Some(b), Some(a)) if counts.connected > 0 && rss.is_some() => {
                    Some((a as f64 - b as f64) * 1024.0 / counts.connected as f64)
                }
                _ => None,
            };
            ServerSummary {
                pid,
                cpu: cpu.1.clone(),
                rss_before_kib: before,
                rss_after_kib: after,
                rss_per_connection_bytes: per_conn,
            }
        });
        Summary {
            mode: args.mode().to_owned(),
            url: args.url.clone(),
            connections: args.connections,
            connected: counts.connected,
            size: args.size,
            depth: args.depth,
            text: args.text,
            threads: args.threads,
            compressed_connections: 0,
            duration_secs: secs,
            messages_sent: counts.sent,
            messages_received: counts.received,
            bytes_received: counts.bytes,
            msgs_per_sec: counts.received as f64 / secs,
            mb_per_sec: counts.bytes as f64 / secs / 1e6,
            latency_us,
            errors: errors.count(),
            error_samples: errors.samples(),
            close_codes: closes.snapshot(),
            client_cpu: cpu.0,
            server,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "tether bench: {} {} — {} connections ({} up), {} B {}, depth {}, {:.2} s, {} thread(s)",
            self.mode,
            self.url,
            self.connections,
            self.connected,
            self.size,
            if self.text { "text" } else { "binary" },
            self.depth,
            self.duration_secs,
            self.threads,
        );
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<16} {v}");
        };
        row(
            &mut t,
            "messages",
            format!(
                "{} sent, {} received",
                self.messages_sent, self.messages_received
            ),
        );
        row(
            &mut t,
            "throughput",
            format!(
                "{}/s msgs, {:.2} MB/s",
                human(self.msgs_per_sec),
                self.mb_per_sec
            ),
        );
        match &self.latency_us {
            Some(l) => row(
                &mut t,
                "latency",
                format!(
                    "p50 {} p90 {} p99 {} max {} (mean {})",
                    us(l.p50 as f64),
                    us(l.p90 as f64),
                    us(l.p99 as f64),
                    us(l.max as f64),
                    us(l.mean)
                ),
            ),
            None => row(&mut t, "latency", "-".into()),
        }
        if self.compressed_connections > 0 {
            row(
                &mut t,
                "compression",
                format!(
                    "permessage-deflate on {} connections",
                    self.compressed_connections
                ),
            );
        }
        row(&mut t, "errors", self.errors.to_string());
        for (e, n) in &self.error_samples {
            row(&mut t, "", format!("{n} x {e}"));
        }
        let closes: Vec<String> = self
            .close_codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        row(
            &mut t,
            "close codes",
            if closes.is_empty() {
                "-".into()
            } else {
                closes.join(", ")
            },
        );
        row(
            &mut t,
            "client cpu",
            format!(
                "{:.0}% of a core (user {:.2} s, sys {:.2} s)",
                self.client_cpu.percent, self.client_cpu.user_secs, self.client_cpu.system_secs
            ),
        );
        if let Some(s) = &self.server {
            if let Some(c) = &s.cpu {
                row(
                    &mut t,
                    "server cpu",
                    format!(
                        "{:.0}% of a core (user {:.2} s, sys {:.2} s), pid {}",
                        c.percent, c.user_secs, c.system_secs, s.pid
                    ),
                );
            }
            if let (Some(b), Some(a)) = (s.rss_before_kib, s.rss_after_kib) {
                let per = s
                    .rss_per_connection_bytes
                    .map(|p| format!(", {:.0} B per connection", p))
                    .unwrap_or_default();
                row(&mut t, "server rss", format!("{b} KiB -> {a} KiB{per}"));
            }
        }
        t
    }
}

/// 1234567.0 -> "1.23M".
pub fn human(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn us(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2}ms", x / 1e3)
    } else {
        format!("{x:.0}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers_use_si_prefixes() {
        assert_eq!(human(12.0), "12");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(2_500_000.0), "2.50M");
        assert_eq!(us(1500.0), "1.50ms");
    }
}
