//! Counters shared by the connections of a run: latency histograms, errors,
//! close codes, and CPU/memory readings from `/proc`.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Shards of the latency histogram; a connection records into shard
/// `index % SHARDS`, a batch at a time, so locks are rarely contended and
/// memory does not grow with the number of connections.
const SHARDS: usize = 32;
/// Latencies are recorded in microseconds, up to a minute, 3 significant digits.
const MAX_US: u64 = 60_000_000;

/// Latency histograms in microseconds.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    pub fn new() -> Self {
        Latencies {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds"))
                })
                .collect(),
        }
    }

    /// Record a batch of latencies for connection `index`.
    pub fn record(&self, index: usize, batch: &[Duration]) {
        if batch.is_empty() {
            return;
        }
        let mut h = self.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for d in batch {
            h.saturating_record((d.as_micros() as u64).clamp(1, MAX_US));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds");
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// A connection's latency samples, flushed to the shared histogram in batches.
pub struct LocalLatencies<'a> {
    shared: &'a Latencies,
    index: usize,
    batch: Vec<Duration>,
}

impl<'a> LocalLatencies<'a> {
    pub fn new(shared: &'a Latencies, index: usize) -> Self {
        LocalLatencies {
            shared,
            index,
            batch: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, d: Duration) {
        self.batch.push(d);
        if self.batch.len() >= 512 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.shared.record(self.index, &self.batch);
        self.batch.clear();
    }
}

impl Drop for LocalLatencies<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Errors: a count, and the first few distinct messages as examples.
#[derive(Default)]
pub struct Errors {
    count: AtomicU64,
    samples: Mutex<BTreeMap<String, u64>>,
}

impl Errors {
    pub fn record(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < 8 || s.contains_key(&what) {
            *s.entry(what).or_default() += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn samples(&self) -> BTreeMap<String, u64> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How connections ended: the peer's close code, `none` (Close without a
/// code), or `abnormal` (no Close frame, or the close timed out).
#[derive(Default)]
pub struct CloseCodes(Mutex<BTreeMap<String, u64>>);

impl CloseCodes {
    pub fn record(&self, code: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code.to_owned())
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// User and system CPU time of a process, from `/proc/PID/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

/// Linux reports `/proc` CPU times in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: u64 = 100;

/// CPU times of `pid` (`self` for this process); `None` off Linux or if it is gone.
pub fn cpu_times(pid: &str) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime(14) stime(15) => indices 11, 12.
    let ticks = |i: usize| -> Option<Duration> {
        let t: u64 = fields.get(i)?.parse().ok()?;
        Some(Duration::from_millis(t * 1000 / TICKS_PER_SEC))
    };
    Some(CpuTimes {
        user: ticks(11)?,
        system: ticks(12)?,
    })
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_shards_merge_into_one_histogram() {
        let l = Latencies::new();
        l.record(0, &[Duration::from_micros(10), Duration::from_micros(20)]);
        l.record(1, &[Duration::from_millis(3)]);
        let h = l.merged();
        assert_eq!(h.len(), 3);
        assert!(h.max() >= 2_990 && h.max() <= 3_010, "max {}", h.max());
    }

    #[test]
    fn errors_keep_a_bounded_set_of_examples() {
        let e = Errors::default();
        for i in 0..20 {
            e.record(format!("error {i}"));
        }
        e.record("error 0".into());
        assert_eq!(e.count(), 21);
        let s = e.samples();
        assert_eq!(s.len(), 8);
        assert_eq!(s["error 0"], 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_cpu_times_and_rss() {
        assert!(cpu_times("self").is_some());
        assert!(rss_kib("self").unwrap() > 0);
    }
}
