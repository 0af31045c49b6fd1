//! Where a pub/sub route's stream positions, history and presence come
//! from: the [`Engine`] behind its channels (`[cluster] engine`).
//!
//! The engine assigns each publish its position (epoch and offset), keeps
//! the history that recovery and the `history` op read, and knows who is
//! subscribed. Delivery to this node's connections, and resuming a
//! subscription from a position, are the [`Hub`]'s: the in-memory engine
//! is the hub itself. An engine shared by several nodes (Redis, NATS)
//! would assign positions centrally and feed each node's hub with what it
//! publishes, reading its own history when a resume reaches past the
//! hub's.

use super::hub::{History, Hub, Published};
use std::sync::Arc;
use tether::Message;

/// Positions, history and presence for a pub/sub route's channels.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Publish on `channel` the message `encode` makes from the offset it
    /// gets; with `idempotency_key`, at most once per key.
    fn publish(
        &self,
        channel: &str,
        idempotency_key: Option<&str>,
        encode: &mut dyn FnMut(u64) -> Message,
    ) -> Published;

    /// The last `limit` messages of `channel` (at most `max_bytes` of them)
    /// and its position.
    fn history(&self, channel: &str, limit: usize, max_bytes: usize) -> History;

    /// Who is subscribed to `channel`: (client id, user).
    fn presence(&self, channel: &str) -> Vec<(u64, Option<Arc<str>>)>;
}

/// The default engine: one process, positions and history in the
/// [`Hub`]'s rings. Its epochs are random per channel, so after a restart
/// every resume answers `recovered: false`.
#[derive(Debug)]
pub struct Memory(pub Arc<Hub>);

impl Engine for Memory {
    fn publish(
        &self,
        channel: &str,
        idempotency_key: Option<&str>,
        encode: &mut dyn FnMut(u64) -> Message,
    ) -> Published {
        match idempotency_key {
            Some(key) => self.0.publish_once(channel, key, encode),
            None => self.0.publish_at(channel, encode),
        }
    }

    fn history(&self, channel: &str, limit: usize, max_bytes: usize) -> History {
        self.0.history(channel, limit, max_bytes)
    }

    fn presence(&self, channel: &str) -> Vec<(u64, Option<Arc<str>>)> {
        self.0.presence(channel)
    }
}
