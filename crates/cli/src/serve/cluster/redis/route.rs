//! The Redis engine behind one pub/sub route: the [`Engine`] interface over
//! a [`RedisEngine`] whose keys carry the route's prefix, with the route's
//! history settings for every publish.

use super::super::{EngineError, EngineMetrics, Position as EnginePosition, PublishOptions};
use super::RedisEngine;
use crate::serve::engine::{Engine, Op, Present, Recovery};
use crate::serve::hub::{History, Position, Published};
use crate::serve::pubsub::channel_message;
use std::sync::Arc;
use tether::Message;

/// A pub/sub route's channels on Redis.
#[derive(Clone)]
pub struct RedisRoute {
    engine: RedisEngine,
    /// History size and TTL of the route's channels.
    options: PublishOptions,
}

impl std::fmt::Debug for RedisRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisRoute({})", self.engine.inner.config.prefix)
    }
}

impl RedisRoute {
    /// The route's engine, publishing with `options`.
    pub fn new(engine: RedisEngine, options: PublishOptions) -> RedisRoute {
        RedisRoute { engine, options }
    }
}

fn position(p: EnginePosition) -> Position {
    Position {
        epoch: p.epoch.into(),
        offset: p.offset,
    }
}

fn engine_position(p: &Position) -> EnginePosition {
    EnginePosition {
        epoch: p.epoch.to_string(),
        offset: p.offset,
    }
}

/// Publications as the channel messages subscribers get.
fn messages<'a>(
    channel: &str,
    publications: impl Iterator<Item = &'a super::super::Publication>,
) -> Vec<Message> {
    let name = serde_json::Value::from(channel).to_string();
    publications
        .map(|p| channel_message(&name, p.offset, &String::from_utf8_lossy(&p.data)))
        .collect()
}

impl Engine for RedisRoute {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn local(&self) -> bool {
        false
    }

    fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Op<Result<Published, EngineError>> {
        if !self.engine.healthy() {
            // Fail fast: a publish now could wait out `io_timeout`, or
            // succeed without this node's subscribers hearing of it.
            return Op::Done(Err(EngineError::Failed(format!(
                "redis at {} is unreachable",
                self.engine.inner.config.url
            ))));
        }
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        let data = data.to_owned();
        let options = PublishOptions {
            idempotency_key: idempotency_key.map(str::to_owned),
            ..self.options.clone()
        };
        Op::wait(async move {
            let p = engine.publish(&channel, data.as_bytes(), &options).await?;
            Ok(Published {
                delivered: p.nodes as usize,
                position: Some(position(p.position)),
                duplicate: p.duplicate,
            })
        })
    }

    fn history(
        &self,
        channel: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Op<Result<History, EngineError>> {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        Op::wait(async move {
            let h = engine.history(&channel).await?;
            let mut bytes = 0usize;
            let kept: Vec<_> = h
                .publications
                .iter()
                .rev()
                .take(limit)
                .take_while(|p| {
                    bytes += p.data.len();
                    bytes <= max_bytes
                })
                .collect();
            Ok(History {
                position: Some(position(h.top.clone())),
                messages: messages(&channel, kept.into_iter().rev()),
            })
        })
    }

    fn presence(&self, channel: &str) -> Op<Result<Vec<Present>, EngineError>> {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        Op::wait(async move {
            let list = engine.presence(&channel).await?;
            Ok(list
                .into_iter()
                .map(|(client, info)| {
                    let user = info.strip_prefix('u').map(Arc::from);
                    (client, user)
                })
                .collect())
        })
    }

    fn subscribe(&self, channel: &str) -> Op<Result<Position, EngineError>> {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        Op::wait(async move { engine.subscribe(&channel).await.map(position) })
    }

    fn unsubscribe(&self, channel: &str) {
        self.engine.unsubscribe(channel);
    }

    fn recover(
        &self,
        channel: &str,
        since: &Position,
        delivered: &Position,
    ) -> Op<Result<Recovery, EngineError>> {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        let since = engine_position(since);
        let delivered = engine_position(delivered);
        Op::wait(async move {
            let r = engine.recover_from(&channel, &since, &delivered).await?;
            Ok(Recovery {
                missed: r.missed.map(|m| messages(&channel, m.iter())),
                top: position(r.top),
            })
        })
    }

    fn presence_join(&self, channel: &str, client: u64, user: Option<&str>) {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        let client = format!("{}-{client}", engine.inner.config.node);
        // `u` + the user, or nothing: a user may be any string.
        let info = user.map_or(String::new(), |u| format!("u{u}"));
        tokio::spawn(async move {
            let _ = engine.presence_add(&channel, &client, &info).await;
        });
    }

    fn presence_leave(&self, channel: &str, client: u64) {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        let client = format!("{}-{client}", engine.inner.config.node);
        tokio::spawn(async move {
            let _ = engine.presence_remove(&channel, &client).await;
        });
    }

    fn healthy(&self) -> bool {
        self.engine.healthy()
    }

    fn metrics(&self) -> Option<&EngineMetrics> {
        Some(self.engine.metrics())
    }
}
