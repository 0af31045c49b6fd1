//! Configuration of `tether serve`, in two stages (as ripgrep does it):
//!
//! 1. [`RawConfig`]: what the TOML file says, deserialized with serde and
//!    `deny_unknown_fields` (a typo is an error naming the key), with the
//!    command-line flags and environment variables applied on top. This is
//!    also what `--print-config` prints, so the printed file can be saved and
//!    loaded back.
//! 2. [`ServerConfig`]: the validated form the server runs on: addresses
//!    parsed, sizes and durations converted, every route's fields checked
//!    against its kind. Every error names the key that is wrong
//!    (`route[2] (/chat/{room}): ...`).
//!
//! An annotated example is `serve/assets/example.toml`.
//!
//! With no file at all, [`RawConfig::builtin`] gives the demo setup: the
//! page at `/`, `/echo`, chat rooms at `/chat/{room}` and a pub/sub endpoint
//! at `/pubsub` that a simulated stock ticker publishes into, with the
//! page's chat rooms on its `chat.*` channels (history kept, clients may
//! publish there and only there).
//!
//! The modules: [`args`] (flags), [`raw`] (the file and its defaults),
//! [`resolved`] (the validated types), `resolve` and `routes` (the
//! validation), `cluster` (`[cluster]`), [`pattern`] (route paths),
//! `values` (durations and sizes).

pub mod args;
mod cluster;
mod deflate;
mod http2;
pub mod pattern;
pub mod raw;
mod resolve;
pub mod resolved;
mod routes;
mod values;

pub use args::ServeArgs;
pub use raw::RawConfig;
pub use resolved::{
    AuthConfig, EngineKind, ExecRoute, HostRule, ListenerConfig, NatsSettings, RedisSettings,
    Route, RouteKind, ServerConfig, SseRoute,
};

/// Longest room or channel name, in bytes.
pub const MAX_NAME: usize = 128;

#[cfg(test)]
mod tests;
