//! Extension negotiation (RFC 7692 §5, §7.1).
//!
//! The parameter grammar is strict on both sides: an unknown parameter, a
//! parameter given twice, a value where none is allowed, a missing value, or
//! a window size that is not a decimal 8..=15 without leading zeros makes an
//! offer unacceptable (a server skips it and looks at the next one, §5.1) or
//! a response invalid (a client fails the connection, §5.2).

use super::{DeflateConfig, DeflateParams, EXTENSION_NAME};
use crate::handshake::{ExtensionOffer, HandshakeError};

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// Why a permessage-deflate offer or response is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// A parameter RFC 7692 does not define (§7: "MUST decline" / "MUST
    /// fail").
    #[error("permessage-deflate: unknown parameter {0:?} (RFC 7692 §7)")]
    UnknownParameter(String),
    /// A parameter given more than once (§7).
    #[error("permessage-deflate: parameter {0} given more than once (RFC 7692 §7)")]
    DuplicateParameter(&'static str),
    /// A parameter with a value it may not have, without a value it needs, or
    /// a window size that is not a decimal 8..=15 (§7.1.1, §7.1.2).
    #[error("permessage-deflate: invalid value for {0} (RFC 7692 §7.1)")]
    InvalidValue(&'static str),
    /// The server answered with a window size larger than the client asked
    /// for (§7.1.2.1, §7.1.2.2).
    #[error("permessage-deflate: {0} in the response exceeds the offered value (RFC 7692 §7.1.2)")]
    WindowBitsTooLarge(&'static str),
    /// The server's response lacks a parameter the client requested and
    /// requires (§7.1.1.1, §7.1.2.1).
    #[error("permessage-deflate: the response lacks the requested {0} (RFC 7692 §7.1)")]
    MissingParameter(&'static str),
}

impl NegotiationError {
    /// A short static description, for [`HandshakeError::MalformedExtensions`].
    fn rule(&self) -> &'static str {
        match self {
            NegotiationError::UnknownParameter(_) => {
                "permessage-deflate response has an unknown parameter (RFC 7692 §7)"
            }
            NegotiationError::DuplicateParameter(_) => {
                "permessage-deflate response repeats a parameter (RFC 7692 §7)"
            }
            NegotiationError::InvalidValue(_) => {
                "permessage-deflate response has an invalid parameter value (RFC 7692 §7.1)"
            }
            NegotiationError::WindowBitsTooLarge(_) => {
                "permessage-deflate response window bits exceed the offer (RFC 7692 §7.1.2)"
            }
            NegotiationError::MissingParameter(_) => {
                "permessage-deflate response lacks a requested parameter (RFC 7692 §7.1)"
            }
        }
    }
}

impl From<NegotiationError> for HandshakeError {
    /// A client fails the connection on an invalid response (RFC 7692 §5.2);
    /// it surfaces as a malformed `Sec-WebSocket-Extensions`.
    fn from(e: NegotiationError) -> Self {
        HandshakeError::MalformedExtensions(e.rule())
    }
}

/// The parameters of one offer or response, parsed and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (only valid in an offer).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// `1*DIGIT` without leading zeros, 8..=15 (§7.1.2.1).
fn window_bits(value: Option<&str>, name: &'static str) -> Result<u8, NegotiationError> {
    match value {
        Some(v)
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0') =>
        {
            match v.parse::<u8>() {
                Ok(n @ 8..=15) => Ok(n),
                _ => Err(NegotiationError::InvalidValue(name)),
            }
        }
        _ => Err(NegotiationError::InvalidValue(name)),
    }
}

/// Parse the parameters of an offer (`response == false`) or a response.
pub(crate) fn parse_params(
    ext: &ExtensionOffer,
    response: bool,
) -> Result<RawParams, NegotiationError> {
    let mut p = RawParams::default();
    let mut seen = [false; 4];
    for (name, value) in &ext.params {
        let (i, canonical) = if name.eq_ignore_ascii_case(SERVER_NO_CONTEXT_TAKEOVER) {
            (0, SERVER_NO_CONTEXT_TAKEOVER)
        } else if name.eq_ignore_ascii_case(CLIENT_NO_CONTEXT_TAKEOVER) {
            (1, CLIENT_NO_CONTEXT_TAKEOVER)
        } else if name.eq_ignore_ascii_case(SERVER_MAX_WINDOW_BITS) {
            (2, SERVER_MAX_WINDOW_BITS)
        } else if name.eq_ignore_ascii_case(CLIENT_MAX_WINDOW_BITS) {
            (3, CLIENT_MAX_WINDOW_BITS)
        } else {
            return Err(NegotiationError::UnknownParameter(name.clone()));
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(NegotiationError::DuplicateParameter(canonical));
        }
        let value = value.as_deref();
        match i {
            0 | 1 => {
                if value.is_some() {
                    return Err(NegotiationError::InvalidValue(canonical));
                }
                if i == 0 {
                    p.server_no_context_takeover = true;
                } else {
                    p.client_no_context_takeover = true;
                }
            }
            2 => p.server_max_window_bits = Some(window_bits(value, canonical)?),
            _ => {
                p.client_max_window_bits = Some(match value {
                    // §7.1.2.2: the offer may omit the value; a response
                    // must carry one.
                    None if !response => None,
                    v => Some(window_bits(v, canonical)?),
                })
            }
        }
    }
    Ok(p)
}

/// The window we compress with for a negotiated value: zlib cannot
/// deflate with 8 bits, and 9 is safe (see the module docs).
pub(crate) fn deflate_window_bits(negotiated: u8) -> u8 {
    negotiated.clamp(9, 15)
}

impl DeflateConfig {
    fn server_bits(&self) -> u8 {
        self.server_max_window_bits.clamp(8, 15)
    }

    fn client_bits(&self) -> u8 {
        self.client_max_window_bits.clamp(8, 15)
    }

    /// The client's offer (RFC 7692 §5.1, §7.1).
    ///
    /// `client_max_window_bits` is always offered (without a value when the
    /// limit is 15), telling the server it may limit our window;
    /// `server_max_window_bits` only when below 15. Window bits outside
    /// 8..=15 are clamped.
    ///
    /// ```
    /// use tether_proto::deflate::DeflateConfig;
    /// let c = DeflateConfig::default()
    ///     .with_server_max_window_bits(10)
    ///     .with_client_no_context_takeover(true);
    /// assert_eq!(
    ///     c.offer().to_string(),
    ///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
    /// );
    /// ```
    pub fn offer(&self) -> ExtensionOffer {
        let mut o = ExtensionOffer::new(EXTENSION_NAME);
        if self.server_no_context_takeover {
            o = o.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            o = o.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if self.server_bits() < 15 {
            o = o.with_param(
                SERVER_MAX_WINDOW_BITS,
                Some(&self.server_bits().to_string()),
            );
        }
        if self.client_bits() < 15 {
            o = o.with_param(
                CLIENT_MAX_WINDOW_BITS,
                Some(&self.client_bits().to_string()),
            );
        } else {
            o = o.with_param(CLIENT_MAX_WINDOW_BITS, None);
        }
        o
    }

    /// Client side: checks the server's `permessage-deflate` response against
    /// [`offer`](Self::offer) (RFC 7692 §5.2, §7.1.x) and returns what was
    /// agreed. Any error means the client must fail the connection.
    ///
    /// ```
    /// use tether_proto::deflate::DeflateConfig;
    /// use tether_proto::handshake::parse_extensions;
    /// let c = DeflateConfig::default();
    /// let resp = &parse_extensions("permessage-deflate; client_max_window_bits=10").unwrap()[0];
    /// assert_eq!(c.accept_response(resp).unwrap().client_max_window_bits, 10);
    /// let bad = &parse_extensions("permessage-deflate; server_max_window_bits=7").unwrap()[0];
    /// assert!(c.accept_response(bad).is_err());
    /// ```
    pub fn accept_response(
        &self,
        response: &ExtensionOffer,
    ) -> Result<DeflateParams, NegotiationError> {
        let r = parse_params(response, true)?;
        // What we offered (mirrors `offer`).
        let offered_server_bits = (self.server_bits() < 15).then_some(self.server_bits());
        let offered_client_bits = self.client_bits();

        if self.server_no_context_takeover && !r.server_no_context_takeover {
            return Err(NegotiationError::MissingParameter(
                SERVER_NO_CONTEXT_TAKEOVER,
            ));
        }
        let server_bits = match (r.server_max_window_bits, offered_server_bits) {
            (Some(b), Some(max)) if b > max => {
                return Err(NegotiationError::WindowBitsTooLarge(SERVER_MAX_WINDOW_BITS))
            }
            (Some(b), _) => b,
            (None, Some(_)) => {
                return Err(NegotiationError::MissingParameter(SERVER_MAX_WINDOW_BITS))
            }
            (None, None) => 15,
        };
        // We always offer client_max_window_bits, so the server may answer
        // with any value up to what we offered.
        let client_bits = match r.client_max_window_bits {
            Some(Some(b)) if b > offered_client_bits => {
                return Err(NegotiationError::WindowBitsTooLarge(CLIENT_MAX_WINDOW_BITS))
            }
            Some(Some(b)) => b,
            Some(None) => return Err(NegotiationError::InvalidValue(CLIENT_MAX_WINDOW_BITS)),
            None => offered_client_bits,
        };
        Ok(DeflateParams {
            server_no_context_takeover: r.server_no_context_takeover,
            client_no_context_takeover: r.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }

    /// Client side, over everything the server accepted (e.g.
    /// [`Accepted::extensions`](crate::handshake::Accepted::extensions)):
    /// `Ok(None)` if the server did not accept permessage-deflate.
    pub fn accept_extensions(
        &self,
        accepted: &[ExtensionOffer],
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        match accepted
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
        {
            None => Ok(None),
            Some(e) => self.accept_response(e).map(Some),
        }
    }

    /// Server side: picks the first acceptable `permessage-deflate` offer in
    /// the client's order of preference (RFC 7692 §5.1) and returns the
    /// agreed parameters with the response element for
    /// `Sec-WebSocket-Extensions`. Offers of other extensions are ignored;
    /// malformed or unacceptable offers are skipped, not fatal. `None`:
    /// answer without permessage-deflate.
    ///
    /// An offer is unacceptable when it is malformed, or when this config
    /// limits the client's window (`client_max_window_bits` < 15) but the
    /// offer lacks `client_max_window_bits` (the client would not know to
    /// honour the limit).
    ///
    /// The response contains only what §7.1 allows: the context-takeover
    /// flags, `server_max_window_bits` (at most the offered value), and
    /// `client_max_window_bits` only when the offer had it.
    ///
    /// ```
    /// use tether_proto::deflate::DeflateConfig;
    /// use tether_proto::handshake::parse_extensions;
    /// let offers = parse_extensions(
    ///     "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits",
    /// ).unwrap();
    /// let (params, response) = DeflateConfig::default().negotiate(&offers).unwrap();
    /// assert_eq!(response.to_string(), "permessage-deflate");
    /// assert_eq!(params.client_max_window_bits, 15);
    /// ```
    pub fn negotiate(&self, offers: &[ExtensionOffer]) -> Option<(DeflateParams, ExtensionOffer)> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(EXTENSION_NAME))
            .find_map(|o| self.negotiate_one(o))
    }

    fn negotiate_one(&self, offer: &ExtensionOffer) -> Option<(DeflateParams, ExtensionOffer)> {
        let p = parse_params(offer, false).ok()?;
        let mut resp = ExtensionOffer::new(EXTENSION_NAME);

        let server_nct = p.server_no_context_takeover || self.server_no_context_takeover;
        if server_nct {
            resp = resp.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        let client_nct = p.client_no_context_takeover || self.client_no_context_takeover;
        if client_nct {
            resp = resp.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }

        let server_bits = p
            .server_max_window_bits
            .unwrap_or(15)
            .min(self.server_bits());
        if p.server_max_window_bits.is_some() || server_bits < 15 {
            // §7.1.2.1: the same or a smaller value than offered; may be
            // sent even when not offered.
            resp = resp.with_param(SERVER_MAX_WINDOW_BITS, Some(&server_bits.to_string()));
        }

        let client_bits = match p.client_max_window_bits {
            None if self.client_bits() < 15 => return None,
            None => 15,
            Some(v) => {
                let bits = v.unwrap_or(15).min(self.client_bits());
                if bits < 15 || v.is_some() {
                    resp = resp.with_param(CLIENT_MAX_WINDOW_BITS, Some(&bits.to_string()));
                }
                bits
            }
        };
        Some((
            DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            },
            resp,
        ))
    }
}
