//! Extension negotiation glue between the handshake and the protocol core.
//!
//! Only permessage-deflate (RFC 7692) exists. The settings live in
//! `WebSocketConfig::protocol.deflate` (`None`, the default, never
//! negotiates); the agreed parameters go into
//! `WebSocketConfig::protocol.negotiated_deflate`, from which the
//! [`Connection`](tether_proto::Connection) configures itself.

use crate::config::WebSocketConfig;
use tether_proto::deflate::EXTENSION_NAME;
use tether_proto::handshake::{Accepted, HandshakeError, UpgradeRequest};

/// Client: the `Sec-WebSocket-Extensions` value to offer, if any, and the
/// extension names for `validate_response`.
pub(crate) fn client_offer(config: &WebSocketConfig) -> (Option<String>, &'static [&'static str]) {
    match &config.protocol.deflate {
        Some(d) => (Some(d.offer().to_string()), &[EXTENSION_NAME]),
        None => (None, &[]),
    }
}

/// Client: check the server's answer to our offer and record what was
/// agreed. An invalid answer fails the handshake (RFC 7692 §5.2).
pub(crate) fn client_accepted(
    config: &mut WebSocketConfig,
    accepted: &Accepted,
) -> Result<(), HandshakeError> {
    config.protocol.negotiated_deflate = match &config.protocol.deflate {
        Some(d) => d.accept_extensions(&accepted.extensions)?,
        None => None,
    };
    Ok(())
}

/// Server: pick from the client's offers, record what was agreed, and
/// return the `Sec-WebSocket-Extensions` value for the 101 (if any).
pub(crate) fn server_negotiate(
    config: &mut WebSocketConfig,
    upgrade: &UpgradeRequest,
) -> Option<String> {
    let agreed = config
        .protocol
        .deflate
        .as_ref()
        .and_then(|d| d.negotiate(&upgrade.extensions));
    config.protocol.negotiated_deflate = agreed.as_ref().map(|(p, _)| *p);
    agreed.map(|(_, response)| response.to_string())
}
