//! permessage-deflate state of a connection: the compressor and
//! decompressor (made on first use) and the inflating of received frames.

use super::{Connection, Role};
use crate::config::Config;
use crate::deflate::{Compressor, Decompressor, DeflateParams};
use crate::error::ProtocolError;
use crate::message::Event;
use bytes::Bytes;

/// The compressing half, present only when negotiated (boxed so that a
/// connection without it stays small). The compressor is created on first
/// use: a connection that only receives, or only sends messages below
/// `min_size`, never pays for it (~250-380 KiB).
#[derive(Debug)]
pub(super) struct DeflateTx {
    tx: Option<Compressor>,
    tx_bits: u8,
    tx_reset: bool,
    level: u32,
    pub(super) min_size: usize,
}

/// The inflating half, present only when negotiated; the decompressor is
/// created with the first compressed message.
#[derive(Debug)]
pub(super) struct DeflateRx {
    pub(super) rx: Option<Decompressor>,
    rx_bits: u8,
    /// Inflated bytes of the compressed message being received.
    pub(super) msg: Vec<u8>,
}

/// Both halves for `role`, from the negotiated parameters.
pub(super) fn halves(
    role: Role,
    p: &DeflateParams,
    config: &Config,
) -> (Box<DeflateTx>, Box<DeflateRx>) {
    let settings = config.deflate.clone().unwrap_or_default();
    let (tx_bits, tx_reset, rx_bits) = match role {
        Role::Server => (
            p.server_max_window_bits,
            p.server_no_context_takeover,
            p.client_max_window_bits,
        ),
        Role::Client => (
            p.client_max_window_bits,
            p.client_no_context_takeover,
            p.server_max_window_bits,
        ),
    };
    let tx = DeflateTx {
        tx: None,
        tx_bits,
        tx_reset,
        level: settings.level,
        min_size: settings.min_size,
    };
    let rx = DeflateRx {
        rx: None,
        rx_bits,
        msg: Vec::new(),
    };
    (Box::new(tx), Box::new(rx))
}

impl DeflateTx {
    pub(super) fn compress(&mut self, payload: &[u8]) -> Bytes {
        let (bits, level, reset) = (self.tx_bits, self.level, self.tx_reset);
        self.tx
            .get_or_insert_with(|| Compressor::new(bits, level, reset))
            .compress(payload)
    }

    /// Whether the compressor exists (for memory tests).
    #[cfg(test)]
    pub(super) fn allocated(&self) -> bool {
        self.tx.is_some()
    }
}

impl Connection {
    /// Inflate a compressed frame's payload into the message being built,
    /// checking the message limit and (for text) UTF-8 as bytes come out.
    fn inflate(&mut self, text: bool, payload: &[u8], last: bool) -> Result<(), ProtocolError> {
        let d = self
            .deflate
            .as_deref_mut()
            .expect("compressed frames are only accepted when deflate is negotiated");
        let utf8 = &mut self.utf8;
        let rx_bits = d.rx_bits;
        let rx = d.rx.get_or_insert_with(|| Decompressor::new(rx_bits));
        rx.decompress(
            payload,
            last,
            &mut d.msg,
            self.config.max_message_size,
            |chunk| {
                if text {
                    utf8.feed(chunk).map_err(|_| ProtocolError::InvalidUtf8)
                } else {
                    Ok(())
                }
            },
        )
    }

    /// Inflate one frame of a compressed message; on its last frame, the
    /// whole message.
    pub(super) fn inflate_frame(
        &mut self,
        text: bool,
        payload: &[u8],
        fin: bool,
    ) -> Result<Option<Event>, ProtocolError> {
        self.inflate(text, payload, fin)?;
        if !fin {
            return Ok(None);
        }
        let data = self.take_inflated();
        Ok(Some(Event::Message(self.complete(text, data)?)))
    }

    /// The inflated message, handed over without copying.
    fn take_inflated(&mut self) -> Bytes {
        match self.deflate.as_deref_mut() {
            Some(d) => Bytes::from(std::mem::take(&mut d.msg)),
            None => Bytes::new(),
        }
    }
}
