//! Who may connect: the checks a WebSocket handshake passes before it
//! reaches a route, made by [`admit`] in this order, and what each refusal
//! answers, counts and logs ([`Refusal`]).
//!
//! 1. **Host** (DNS-rebinding defence, [`host`]): a page on `evil.example`
//!    whose DNS name is re-pointed at 127.0.0.1 reaches a local server with
//!    `Host: evil.example`. A loopback listener therefore answers only
//!    loopback names; others the names configured. `421 Misdirected
//!    Request`. Plain HTTP requests get the same check ([`check_host`]).
//! 2. **Route**: a WebSocket route whose path matches (`404`), or the route
//!    an event stream's path names.
//! 3. **Origin** (cross-site WebSocket hijacking, RFC 6455 §10.2): browsers
//!    send cookies with a WebSocket handshake to any site, so a page from
//!    another origin must not be let in. Default: the `Origin` must be the
//!    origin the request was sent to (its `Host`, and the scheme the client
//!    used); requests without `Origin` (non-browser clients) are allowed.
//!    The library's [`tether::OriginPolicy`] decides; `403`.
//! 4. **Room name**: a room route's `{room}` capture is at most
//!    [`MAX_NAME`](super::config::MAX_NAME) bytes; `400`.
//! 5. **Auth** ([`super::auth`]): a bearer token (header, cookie or query
//!    parameter), either one of the configured opaque tokens or a JWT;
//!    `401`, the client told only that its token failed.
//! 6. **Limits** ([`limiter`]): total and per-IP WebSocket connection
//!    counts, `503` / `429`; then an exec route's `max_processes`, `503`.

mod admit;
pub mod grants;
pub mod host;
pub mod limiter;

pub use admit::{admit, check_host, Admission, Endpoint, Refusal, Upgrade};
pub use grants::Grants;
pub use limiter::{ConnLimiter, ConnSlot, LimitError};
