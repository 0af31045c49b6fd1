//! The NATS engine behind one pub/sub route: the [`Engine`] interface over
//! a [`NatsEngine`] whose subjects carry the route's prefix. A broker only:
//! history, presence and idempotent publishes are refused (configuration
//! refuses the route options; an `idempotency_key` is refused per request).

use super::super::{EngineError, EngineMetrics};
use super::NatsEngine;
use crate::serve::engine::{Engine, Op, Present, Recovery};
use crate::serve::hub::{History, Position, Published};
use bytes::Bytes;

/// A pub/sub route's channels on NATS.
#[derive(Clone)]
pub struct NatsRoute {
    engine: NatsEngine,
}

impl std::fmt::Debug for NatsRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsRoute({})", self.engine.inner.config.prefix)
    }
}

impl NatsRoute {
    /// The route's engine.
    pub fn new(engine: NatsEngine) -> NatsRoute {
        NatsRoute { engine }
    }
}

fn stateless(what: &str) -> EngineError {
    EngineError::Failed(format!(
        "{what} needs stored state, and `cluster.engine = \"nats\"` is a broker that keeps none (use `engine = \"redis\"`)"
    ))
}

impl Engine for NatsRoute {
    fn name(&self) -> &'static str {
        "nats"
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
        if idempotency_key.is_some() {
            return Op::Done(Err(stateless("`idempotency_key`")));
        }
        if !self.engine.healthy() {
            return Op::Done(Err(self.engine.inner.unreachable()));
        }
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        let data = Bytes::from(data.to_owned());
        Op::wait(async move {
            engine.publish(&channel, data).await?;
            // Positions are each node's own: there is none to answer.
            Ok(Published {
                delivered: 0,
                position: None,
                duplicate: false,
            })
        })
    }

    fn history(
        &self,
        _channel: &str,
        _limit: usize,
        _max_bytes: usize,
    ) -> Op<Result<History, EngineError>> {
        Op::Done(Err(stateless("history")))
    }

    fn presence(&self, _channel: &str) -> Op<Result<Vec<Present>, EngineError>> {
        Op::Done(Err(stateless("presence")))
    }

    fn subscribe(&self, channel: &str) -> Op<Result<Position, EngineError>> {
        let engine = self.engine.clone();
        let channel = channel.to_owned();
        Op::wait(async move {
            let p = engine.subscribe(&channel).await?;
            Ok(Position {
                epoch: p.epoch.into(),
                offset: p.offset,
            })
        })
    }

    fn unsubscribe(&self, channel: &str) {
        self.engine.unsubscribe(channel);
    }

    fn recover(
        &self,
        _channel: &str,
        _since: &Position,
        delivered: &Position,
    ) -> Op<Result<Recovery, EngineError>> {
        // Nothing is kept: only a resume that missed nothing succeeds.
        Op::Done(Ok(Recovery {
            top: delivered.clone(),
            missed: None,
        }))
    }

    fn presence_join(&self, _channel: &str, _client: u64, _user: Option<&str>) {}

    fn presence_leave(&self, _channel: &str, _client: u64) {}

    fn healthy(&self) -> bool {
        self.engine.healthy()
    }

    fn metrics(&self) -> Option<&EngineMetrics> {
        Some(self.engine.metrics())
    }
}
