//! Channels across `tether serve` nodes: the engine that gives every
//! channel one order and one history for all nodes, and carries each
//! publication to the nodes that have subscribers for it.
//!
//! A channel's place in its stream is a [`Position`]: an *epoch* (a random
//! string, new whenever the channel's history may have been lost) and an
//! *offset* (1, 2, 3, ... in publish order, the same on every node). A node
//! hands its hub what arrives for a channel through [`Deliver`], in order and
//! without gaps: contiguous publications, or a reset that says continuity
//! was lost and where the channel carries on from. Loss is therefore always
//! visible, never silent.
//!
//! [`redis::RedisEngine`] keeps offsets, history and presence in Redis and
//! carries publications over Redis PUB/SUB (see its module for the keys and
//! the failure handling).

pub mod nats;
pub mod redis;
mod subscriber;

use bytes::Bytes;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::Duration;

/// A channel's place in its stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Changes whenever the channel's history may have been lost.
    pub epoch: String,
    /// The last publication's number within the epoch (0: none yet).
    pub offset: u64,
}

/// One publication of a channel: its offset and its data, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its number within the channel's epoch.
    pub offset: u64,
    /// The bytes published (opaque to the engine).
    pub data: Bytes,
}

/// Where a node's engine hands over what arrives for the channels the node
/// subscribes to. Calls for one channel come in order from one task; they
/// must not block.
pub trait Deliver: Send + Sync + 'static {
    /// The next publication of `channel`: offset one past the previous one
    /// delivered (or past the position of the last reset), in `epoch`.
    fn publication(&self, channel: &str, epoch: &str, publication: Publication);

    /// Continuity of `channel` was lost (history lost, or a gap history no
    /// longer covers); what follows continues from `position`.
    fn reset(&self, channel: &str, position: &Position);
}

/// How a publication is kept.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Publications kept per channel for recovery (0: none).
    pub history_size: usize,
    /// How long a channel's history lives after its last publication.
    pub history_ttl: Duration,
    /// A retried publish with the same key (within `idempotency_ttl`) is
    /// stored and delivered once; the retry gets the first one's position.
    pub idempotency_key: Option<String>,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            idempotency_key: None,
            idempotency_ttl: Duration::from_secs(300),
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The publication's position.
    pub position: Position,
    /// True when an earlier publish with the same idempotency key was found
    /// (nothing was published again).
    pub duplicate: bool,
    /// Nodes that received it (subscribed to the channel at that moment).
    pub nodes: u64,
}

/// A channel's current position and the publications kept after some
/// offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The channel's last position.
    pub top: Position,
    /// Publications kept, oldest first, contiguous, ending at `top`.
    pub publications: Vec<Publication>,
}

impl History {
    /// What a subscriber that has seen everything up to `since` missed, if
    /// all of it is still kept (empty when it is up to date); `None` when it
    /// cannot be recovered (another epoch, or trimmed from history).
    pub fn missed(&self, since: &Position) -> Option<&[Publication]> {
        if since.epoch != self.top.epoch || since.offset > self.top.offset {
            return None;
        }
        if since.offset == self.top.offset {
            return Some(&[]);
        }
        let first = self.publications.first()?.offset;
        let skip = usize::try_from((since.offset + 1).checked_sub(first)?).ok()?;
        let rest = self.publications.get(skip..)?;
        let complete = rest.len() as u64 == self.top.offset - since.offset
            && rest.last().is_some_and(|p| p.offset == self.top.offset);
        complete.then_some(rest)
    }
}

/// Why an engine operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// No answer within `cluster.io_timeout`.
    Timeout(Duration),
    /// The engine is unreachable or refused the operation.
    Failed(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Timeout(t) => write!(
                f,
                "the cluster engine did not answer within {t:?} (cluster.io_timeout)"
            ),
            EngineError::Failed(e) => write!(f, "cluster engine: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Counters of an engine, for `/metrics`.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Requests (commands, scripts, pipelines) sent to the engine.
    pub round_trips: AtomicU64,
    /// Requests that failed or timed out.
    pub errors: AtomicU64,
    /// Times the subscriber connection was established again after a loss.
    pub reconnects: AtomicU64,
    /// Probes of the subscriber connection that went unanswered.
    pub probe_failures: AtomicU64,
    /// Channels brought back in line from history (after a reconnect, or a
    /// gap in what arrived).
    pub recoveries: AtomicU64,
    /// Channels whose continuity was lost (a reset was delivered).
    pub resets: AtomicU64,
    /// Shared history reads for recovering subscribers.
    pub history_reads: AtomicU64,
    /// Script calls that carried publishes (several each, under load).
    pub publish_batches: AtomicU64,
    /// Publishes sent in those calls.
    pub batched_publishes: AtomicU64,
}

impl EngineMetrics {
    /// Add these counters to `sum`'s.
    pub fn add_to(&self, sum: &EngineMetrics) {
        let pairs = [
            (&self.round_trips, &sum.round_trips),
            (&self.errors, &sum.errors),
            (&self.reconnects, &sum.reconnects),
            (&self.probe_failures, &sum.probe_failures),
            (&self.recoveries, &sum.recoveries),
            (&self.resets, &sum.resets),
            (&self.history_reads, &sum.history_reads),
            (&self.publish_batches, &sum.publish_batches),
            (&self.batched_publishes, &sum.batched_publishes),
        ];
        for (from, to) in pairs {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
    }

    /// Append the counters in the Prometheus text format.
    pub fn render(&self, engine: &str, out: &mut String) {
        use std::fmt::Write as _;
        let counters: [(&str, &AtomicU64, &str); 9] = [
            (
                "round_trips",
                &self.round_trips,
                "Requests sent to the cluster engine.",
            ),
            (
                "errors",
                &self.errors,
                "Cluster engine requests that failed or timed out.",
            ),
            (
                "reconnects",
                &self.reconnects,
                "Subscriber connections to the cluster engine established again after a loss.",
            ),
            (
                "probe_failures",
                &self.probe_failures,
                "Probes of the subscriber connection that went unanswered.",
            ),
            (
                "recoveries",
                &self.recoveries,
                "Channels brought back in line from history after a reconnect or a gap.",
            ),
            (
                "resets",
                &self.resets,
                "Channels whose continuity was lost (subscribers got a reset).",
            ),
            (
                "history_reads",
                &self.history_reads,
                "Shared history reads for recovering subscribers.",
            ),
            (
                "publish_batches",
                &self.publish_batches,
                "Calls to the cluster engine that carried publishes (several each under load).",
            ),
            (
                "batched_publishes",
                &self.batched_publishes,
                "Publishes carried by those calls.",
            ),
        ];
        for (name, value, help) in counters {
            let _ = writeln!(out, "# HELP tether_engine_{name}_total {help}");
            let _ = writeln!(out, "# TYPE tether_engine_{name}_total counter");
            let _ = writeln!(
                out,
                "tether_engine_{name}_total{{engine=\"{engine}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
}

/// A new epoch: 64 bits as hex, unpredictable and unique within the
/// process (a seed drawn once from `rand`'s CSPRNG, the workspace's one
/// source of randomness, then a counter through SplitMix64). Cheap, because every publish offers one in case the channel
/// has none.
fn new_epoch() -> String {
    static SEED: LazyLock<u64> = LazyLock::new(rand::random);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut z = SEED.wrapping_add(
        COUNTER
            .fetch_add(1, Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}

/// Real server processes for the engines' tests.
#[cfg(test)]
#[path = "../../../tests/cluster_support/process.rs"]
mod test_process;

#[cfg(test)]
mod tests {
    use super::*;

    fn history(epoch: &str, top: u64, kept: std::ops::RangeInclusive<u64>) -> History {
        History {
            top: Position {
                epoch: epoch.into(),
                offset: top,
            },
            publications: kept
                .map(|offset| Publication {
                    offset,
                    data: Bytes::from(offset.to_string()),
                })
                .collect(),
        }
    }

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn missed_publications_are_recovered_only_when_all_are_kept() {
        let h = history("e", 10, 6..=10);
        let got: Vec<u64> = h
            .missed(&at("e", 7))
            .unwrap()
            .iter()
            .map(|p| p.offset)
            .collect();
        assert_eq!(got, [8, 9, 10]);
        assert_eq!(h.missed(&at("e", 5)).unwrap().len(), 5);
        assert_eq!(h.missed(&at("e", 10)), Some(&[][..]));
        // 5 was trimmed: nothing partial.
        assert_eq!(h.missed(&at("e", 4)), None);
        assert_eq!(h.missed(&at("other", 7)), None);
        assert_eq!(h.missed(&at("e", 11)), None);
        // No history kept at all.
        let none = History {
            publications: Vec::new(),
            ..history("e", 3, 1..=1)
        };
        assert_eq!(none.missed(&at("e", 2)), None);
        assert_eq!(none.missed(&at("e", 3)), Some(&[][..]));
    }

    #[test]
    fn metrics_render_as_prometheus_counters() {
        let m = EngineMetrics::default();
        m.reconnects.fetch_add(2, Relaxed);
        let mut out = String::new();
        m.render("redis", &mut out);
        assert!(out.contains("# TYPE tether_engine_reconnects_total counter\n"));
        assert!(out.contains("tether_engine_reconnects_total{engine=\"redis\"} 2\n"));
        assert!(out.contains("tether_engine_history_reads_total{engine=\"redis\"} 0\n"));
    }

    #[test]
    fn epochs_are_random_hex() {
        let epochs: std::collections::HashSet<String> = (0..10_000).map(|_| new_epoch()).collect();
        assert_eq!(epochs.len(), 10_000);
        assert!(epochs
            .iter()
            .all(|e| e.len() == 16 && e.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
