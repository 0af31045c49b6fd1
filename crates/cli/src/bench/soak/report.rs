//! The soak's verdicts and its summary (a table for people, JSON for scripts).

use super::conn::Tally;
use super::probe::by_label;
use super::{BenchArgs, Kind};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Descriptors the server may hold after the load beyond those before it
/// (state created once on first use, such as the child-signal pipe of the
/// first exec session).
const FD_SLACK: usize = 4;

/// One reading of the server (and of the generator's open connections).
#[derive(Serialize, Debug, Clone)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// `before`, `load`, `load end` or `drained`.
    pub phase: &'static str,
    /// Connections the generator had open.
    pub open: u64,
    /// The server's TCP sockets on its port (not listening, not TIME_WAIT).
    pub server_sockets: usize,
    pub rss_kib: Option<u64>,
    pub fds: Option<usize>,
    /// The server's child processes.
    pub children: usize,
}

impl Sample {
    /// One line of progress on stderr.
    pub fn progress_line(&self, tally: &Tally) -> String {
        format!(
            "[{:>6.1}s] open {:>6}  server sockets {:>6}  rss {:>8}  fds {:>6}  children {:>4}  msgs {} sent, {} received",
            self.t,
            self.open,
            self.server_sockets,
            mib(self.rss_kib),
            opt(self.fds),
            self.children,
            tally.sent.load(Relaxed),
            tally.received.load(Relaxed),
        )
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn opt(x: Option<usize>) -> String {
    x.map_or("-".into(), |x| x.to_string())
}

/// What the generator counted.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Totals {
    pub attempts: u64,
    /// WebSocket connections established, by kind.
    pub connected: BTreeMap<&'static str, u64>,
    pub connected_total: u64,
    /// Handshakes refused, by HTTP status.
    pub rejected: BTreeMap<u16, u64>,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub echo_mismatches: u64,
    pub pubsub_errors: u64,
    pub errors: u64,
    pub error_samples: BTreeMap<String, u64>,
    /// How connections ended as the generator saw it (code, `reset`, `abnormal`, `none`).
    pub seen: BTreeMap<String, u64>,
    /// Close codes the server must have counted.
    pub expected: BTreeMap<String, u64>,
    /// Connections whose code at the server is not determined by what the generator saw.
    pub undetermined: u64,
    /// Connection tasks still running long after the deadline.
    pub stuck: usize,
    /// HTTP publishes by status.
    pub http_publishes: BTreeMap<String, u64>,
}

impl Totals {
    pub fn from_tally(t: &Tally, stuck: usize, http_publishes: BTreeMap<String, u64>) -> Totals {
        Totals {
            attempts: t.attempts.load(Relaxed),
            connected: Kind::ALL
                .iter()
                .map(|k| (k.name(), t.connected[*k as usize].load(Relaxed)))
                .collect(),
            connected_total: t.connected_total(),
            rejected: t.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            messages_sent: t.sent.load(Relaxed),
            messages_received: t.received.load(Relaxed),
            echo_mismatches: t.mismatches.load(Relaxed),
            pubsub_errors: t.pubsub_errors.load(Relaxed),
            errors: t.errors.count(),
            error_samples: t.errors.samples(),
            seen: t.seen.snapshot(),
            expected: t
                .expected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            undetermined: t.undetermined.load(Relaxed),
            stuck,
            http_publishes,
        }
    }
}

/// One verdict.
#[derive(Serialize, Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What [`SoakReport::build`] judges.
pub struct Inputs<'a> {
    pub args: &'a BenchArgs,
    pub duration: Duration,
    pub warmup: Duration,
    pub totals: Totals,
    /// Before, during and at the end of the load.
    pub samples: Vec<Sample>,
    /// After the drain.
    pub after: Sample,
    /// How long the server took to close everything (`None`: it did not).
    pub drained: Option<Duration>,
    pub metrics_before: BTreeMap<String, f64>,
    pub metrics_after: anyhow::Result<BTreeMap<String, f64>>,
}

/// The soak's result.
#[derive(Serialize, Debug, Clone)]
pub struct SoakReport {
    pub mode: &'static str,
    pub url: String,
    pub slots: usize,
    pub mix: String,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub tolerance_percent: f64,
    pub totals: Totals,
    /// Close codes the server counted during the run (`/metrics` difference).
    pub server_closes: BTreeMap<String, u64>,
    /// Handshakes the server refused during the run, by reason.
    pub server_rejected: BTreeMap<String, u64>,
    pub samples: Vec<Sample>,
    pub drain_secs: Option<f64>,
    pub checks: Vec<Check>,
}

impl SoakReport {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn build(i: Inputs<'_>) -> SoakReport {
        let tolerance = i.args.soak.tolerance;
        let mut checks = Vec::new();
        // Compared at equal load: how many connections are open varies
        // with the generator's share of the CPU, and RSS is a high-water
        // mark. So memory is taken per connection of the highest count
        // reached so far, descriptors per socket or child process.
        let mut peak = 0usize;
        let mut memory = Vec::new();
        let mut descriptors = Vec::new();
        for s in i.samples.iter().filter(|s| s.phase == "load") {
            peak = peak.max(s.server_sockets);
            if s.t < i.warmup.as_secs_f64() {
                continue;
            }
            if let Some(rss) = s.rss_kib.filter(|_| peak > 0) {
                memory.push(rss as f64 * 1024.0 / peak as f64);
            }
            if let Some(fds) = s.fds {
                let holders = (s.server_sockets + s.children).max(1);
                descriptors.push(fds as f64 / holders as f64);
            }
        }
        checks.push(flat(
            "memory flat",
            &memory,
            tolerance,
            "B of RSS per connection at the highest count so far",
        ));
        checks.push(flat(
            "descriptors flat",
            &descriptors,
            tolerance,
            "fds per server socket or child",
        ));

        let before = &i.samples[0];
        checks.push(match (before.fds, i.after.fds) {
            (Some(b), Some(a)) => Check {
                name: "descriptors released",
                passed: a <= b + FD_SLACK,
                detail: format!(
                    "{b} before the load, {a} after it (allowed: {})",
                    b + FD_SLACK
                ),
            },
            _ => Check {
                name: "descriptors released",
                passed: false,
                detail: "the server's /proc/PID/fd could not be read (is it still running?)".into(),
            },
        });

        let metrics_after = i.metrics_after.as_ref();
        let open_after = metrics_after
            .ok()
            .and_then(|m| m.get("tether_connections_open").copied());
        checks.push(Check {
            name: "connections closed",
            passed: i.drained.is_some() && i.after.server_sockets == 0 && open_after == Some(0.0),
            detail: format!(
                "{} server sockets left {}; /metrics open: {}",
                i.after.server_sockets,
                match i.drained {
                    Some(d) => format!("({:.1} s after the load)", d.as_secs_f64()),
                    None => format!("after {:?}", i.args.soak.drain_timeout),
                },
                open_after.map_or("unreadable".into(), |v| v.to_string()),
            ),
        });
        checks.push(Check {
            name: "processes reaped",
            passed: i.after.children == 0,
            detail: format!("{} child processes of the server left", i.after.children),
        });

        let delta = |name: &str, label: &str| -> BTreeMap<String, u64> {
            let before = by_label(&i.metrics_before, name, label);
            match metrics_after {
                Ok(after) => by_label(after, name, label)
                    .into_iter()
                    .map(|(k, v)| {
                        let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
                        (k, d)
                    })
                    .filter(|(_, d)| *d > 0)
                    .collect(),
                Err(_) => BTreeMap::new(),
            }
        };
        let server_closes = delta("tether_closes_total", "code");
        let server_rejected = delta("tether_handshakes_rejected_total", "reason");
        checks.push(close_codes(
            &i.totals,
            &server_closes,
            metrics_after.is_ok(),
        ));
        let rejected: u64 = i.totals.rejected.values().sum();
        let server_refused: u64 = server_rejected.values().sum();
        checks.push(Check {
            name: "refusals accounted",
            passed: rejected == server_refused,
            detail: format!(
                "generator saw {rejected} refused handshakes, the server counted {server_refused}"
            ),
        });

        let t = &i.totals;
        checks.push(Check {
            name: "traffic intact",
            passed: t.echo_mismatches == 0 && t.pubsub_errors == 0,
            detail: format!(
                "{} echoes differed from what was sent, {} pub/sub error replies",
                t.echo_mismatches, t.pubsub_errors
            ),
        });
        let connect_errors: u64 = t
            .error_samples
            .iter()
            .filter(|(e, _)| e.starts_with("connect:"))
            .map(|(_, n)| n)
            .sum();
        checks.push(Check {
            name: "connections opened",
            passed: connect_errors == 0 && rejected == 0 && t.connected_total > 0,
            detail: format!(
                "{} of {} attempts established, {} refused, {} failed to connect",
                t.connected_total, t.attempts, rejected, connect_errors
            ),
        });
        checks.push(Check {
            name: "generator finished",
            passed: t.stuck == 0,
            detail: format!(
                "{} connection tasks still running {} s after the deadline",
                t.stuck,
                (super::conn::SLOW_CLOSE_LIMIT + Duration::from_secs(30)).as_secs()
            ),
        });

        let mut samples = i.samples;
        samples.push(i.after);
        SoakReport {
            mode: "soak",
            url: i.args.url.clone(),
            slots: i.args.connections,
            mix: i.args.soak.mix.to_string(),
            duration_secs: i.duration.as_secs_f64(),
            warmup_secs: i.warmup.as_secs_f64(),
            tolerance_percent: tolerance,
            totals: i.totals,
            server_closes,
            server_rejected,
            samples,
            drain_secs: i.drained.map(|d| d.as_secs_f64()),
            checks,
        }
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(
            out,
            "tether bench --soak {} — {} connections at a time for {:.0} s, mix {}",
            self.url, self.slots, self.duration_secs, self.mix
        );
        let kinds: Vec<String> = t
            .connected
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  connections    {} made ({}), {} attempts, refused {:?}",
            t.connected_total,
            kinds.join(", "),
            t.attempts,
            t.rejected
        );
        let _ = writeln!(
            out,
            "  messages       {} sent, {} received; {} HTTP publishes {:?}",
            t.messages_sent,
            t.messages_received,
            t.http_publishes.values().sum::<u64>(),
            t.http_publishes
        );
        let _ = writeln!(out, "  errors         {}", t.errors);
        for (e, n) in &t.error_samples {
            let _ = writeln!(out, "                 {n} x {e}");
        }

        let _ = writeln!(
            out,
            "\n  server over time (warm-up {:.0} s):",
            self.warmup_secs
        );
        let _ = writeln!(
            out,
            "    {:<14} {:>8} {:>10} {:>10} {:>12} {:>8} {:>9}",
            "", "t (s)", "gen open", "srv socks", "RSS", "fds", "children"
        );
        for (label, s) in self.milestones() {
            let _ = writeln!(
                out,
                "    {:<14} {:>8.1} {:>10} {:>10} {:>12} {:>8} {:>9}",
                label,
                s.t,
                s.open,
                s.server_sockets,
                mib(s.rss_kib),
                opt(s.fds),
                s.children
            );
        }

        let _ = writeln!(out, "\n  close codes:");
        let _ = writeln!(
            out,
            "    {:<10} {:>14} {:>18} {:>16}",
            "code", "generator saw", "server must have", "server counted"
        );
        let keys: BTreeSet<&String> = t
            .seen
            .keys()
            .chain(t.expected.keys())
            .chain(self.server_closes.keys())
            .collect();
        let cell = |m: &BTreeMap<String, u64>, k: &str| m.get(k).map_or("-".into(), u64::to_string);
        for k in keys {
            let _ = writeln!(
                out,
                "    {:<10} {:>14} {:>18} {:>16}",
                k,
                cell(&t.seen, k),
                cell(&t.expected, k),
                cell(&self.server_closes, k)
            );
        }
        let _ = writeln!(
            out,
            "    ({} connections end in a way that leaves the server's code open: resets of slow readers, failures)",
            t.undetermined
        );
        if !self.server_rejected.is_empty() {
            let _ = writeln!(out, "    refused by the server: {:?}", self.server_rejected);
        }

        let _ = writeln!(out, "\n  verdict:");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "    {} {:<22} {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let _ = writeln!(
            out,
            "  {}",
            if self.passed() {
                "soak passed"
            } else {
                "soak FAILED"
            }
        );
        out
    }

    /// Rows of the table: before, end of warm-up, middle, end of load, drained.
    fn milestones(&self) -> Vec<(&'static str, &Sample)> {
        let mut rows = Vec::new();
        let load: Vec<&Sample> = self.samples.iter().filter(|s| s.phase == "load").collect();
        if let Some(s) = self.samples.first() {
            rows.push(("before", s));
        }
        if let Some(s) = load.iter().find(|s| s.t >= self.warmup_secs) {
            rows.push(("warmed up", *s));
        }
        let middle = self.duration_secs / 2.0;
        if let Some(s) = load
            .iter()
            .min_by(|a, b| (a.t - middle).abs().total_cmp(&(b.t - middle).abs()))
        {
            rows.push(("middle", *s));
        }
        if let Some(s) = load.last() {
            rows.push(("end of load", *s));
        }
        for s in &self.samples {
            match s.phase {
                "load end" => rows.push(("all closed", s)),
                "drained" => rows.push(("drained", s)),
                _ => {}
            }
        }
        rows
    }
}

/// Flat after warm-up: the median of the last third of `values` is within
/// `tolerance` percent of the median of the first third.
fn flat(name: &'static str, values: &[f64], tolerance: f64, unit: &str) -> Check {
    if values.len() < 3 {
        return Check {
            name,
            passed: false,
            detail: format!(
                "{} samples after warm-up; at least 3 are needed (longer -t or shorter --sample-every)",
                values.len()
            ),
        };
    }
    let third = values.len() / 3;
    let median = |part: &[f64]| {
        let mut v = part.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let early = median(&values[..third]);
    let late = median(&values[values.len() - third..]);
    let growth = (late / early.max(f64::MIN_POSITIVE) - 1.0) * 100.0;
    Check {
        name,
        passed: growth <= tolerance,
        detail: format!(
            "{early:.2} {unit} early after warm-up, {late:.2} at the end ({growth:+.1}%, allowed +{tolerance}%)"
        ),
    }
}

/// Every connection the generator made is counted by the server, under
/// the code it must have used where that is determined.
fn close_codes(t: &Totals, server: &BTreeMap<String, u64>, readable: bool) -> Check {
    if !readable {
        return Check {
            name: "close codes accounted",
            passed: false,
            detail: "the server's /metrics could not be read after the load".into(),
        };
    }
    let counted: u64 = server.values().sum();
    let short: Vec<String> = t
        .expected
        .iter()
        .filter(|(code, &n)| server.get(*code).copied().unwrap_or(0) < n)
        .map(|(code, n)| {
            format!(
                "{code}: {n} expected, {} counted",
                server.get(code).copied().unwrap_or(0)
            )
        })
        .collect();
    let passed = counted == t.connected_total && short.is_empty();
    let mut detail = format!(
        "{} connections made, the server counted {counted} closes",
        t.connected_total
    );
    if !short.is_empty() {
        let _ = write!(detail, "; short: {}", short.join(", "));
    }
    Check {
        name: "close codes accounted",
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_within_tolerance_is_flat_and_beyond_it_is_not() {
        let steady = [100.0, 104.0, 101.0, 103.0, 105.0, 104.0];
        assert!(flat("m", &steady, 10.0, "B").passed);
        let leaking = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0];
        let c = flat("m", &leaking, 10.0, "B");
        assert!(!c.passed, "{}", c.detail);
        assert!(!flat("m", &leaking[..2], 10.0, "B").passed);
    }

    #[test]
    fn close_codes_must_cover_every_connection_and_each_expected_code() {
        let mut t = Totals {
            connected_total: 5,
            undetermined: 1,
            ..Totals::default()
        };
        t.expected.insert("1000".into(), 3);
        t.expected.insert("1006".into(), 1);
        let server = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // The undetermined one was counted as 1008.
        assert!(close_codes(&t, &server(&[("1000", 3), ("1006", 1), ("1008", 1)]), true).passed);
        // One connection missing.
        assert!(!close_codes(&t, &server(&[("1000", 3), ("1006", 1)]), true).passed);
        // Right total, but a 1000 counted as 1006.
        let c = close_codes(&t, &server(&[("1000", 2), ("1006", 3)]), true);
        assert!(!c.passed);
        assert!(
            c.detail.contains("1000: 3 expected, 2 counted"),
            "{}",
            c.detail
        );
        assert!(!close_codes(&t, &BTreeMap::new(), false).passed);
    }
}
