//! permessage-deflate state of a connection: the compressor and
//! decompressor (made on first use) and the inflating of received frames.

use super::{Connection, Role};
use crate::config::Config;
use crate::deflate::{CodecMemory, Compressor, Decompressor, DeflateParams};
use crate::error::ProtocolError;
use crate::message::Event;
use bytes::Bytes;

/// The compressing half, present only when negotiated (boxed so that a
/// connection without it stays small). The compressor is created on first
/// use and between messages holds only the send history (the zlib states
/// are shared per thread, `deflate::pool`).
#[derive(Debug)]
pub(super) struct DeflateTx {
    tx: Option<Compressor>,
    tx_bits: u8,
    tx_reset: bool,
    level: u32,
    memory: CodecMemory,
    /// A message was compressed since the last `release_quiet_deflate`.
    sent: bool,
    pub(super) min_size: usize,
}

/// The inflating half, present only when negotiated; the decompressor is
/// created with the first compressed message.
#[derive(Debug)]
pub(super) struct DeflateRx {
    pub(super) rx: Option<Decompressor>,
    rx_bits: u8,
    /// The peer resets its context after every message.
    rx_reset: bool,
    memory: CodecMemory,
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
    let (tx_bits, tx_reset, rx_bits, rx_reset) = match role {
        Role::Server => (
            p.server_max_window_bits,
            p.server_no_context_takeover,
            p.client_max_window_bits,
            p.client_no_context_takeover,
        ),
        Role::Client => (
            p.client_max_window_bits,
            p.client_no_context_takeover,
            p.server_max_window_bits,
            p.server_no_context_takeover,
        ),
    };
    let tx = DeflateTx {
        tx: None,
        tx_bits,
        tx_reset,
        level: settings.level,
        memory: settings.memory,
        sent: false,
        min_size: settings.min_size,
    };
    let rx = DeflateRx {
        rx: None,
        rx_bits,
        rx_reset,
        memory: settings.memory,
        msg: Vec::new(),
    };
    (Box::new(tx), Box::new(rx))
}

impl DeflateTx {
    pub(super) fn compress(&mut self, payload: &[u8]) -> Bytes {
        let (bits, level, reset, memory) = (self.tx_bits, self.level, self.tx_reset, self.memory);
        self.sent = true;
        self.tx
            .get_or_insert_with(|| Compressor::with_memory(bits, level, reset, memory))
            .compress(payload)
    }

    /// Free the send history when nothing was compressed since the last
    /// call.
    fn release_quiet(&mut self) {
        if !std::mem::take(&mut self.sent) {
            if let Some(tx) = self.tx.as_mut() {
                tx.release();
            }
        }
    }

    fn held_bytes(&self) -> usize {
        self.tx.as_ref().map_or(0, Compressor::held_bytes)
    }

    /// Whether the compressor exists (for memory tests).
    #[cfg(test)]
    pub(super) fn allocated(&self) -> bool {
        self.tx.is_some()
    }
}

impl Connection {
    /// Free the permessage-deflate send history when no message was
    /// compressed since the previous call ([`handle_timeout`](Self::handle_timeout)
    /// calls this once per keepalive interval). The next message then refers to earlier ones
    /// only if this thread's shared compressor still carries them. The
    /// receive window stays: with context takeover the peer may refer to it.
    pub fn release_quiet_deflate(&mut self) {
        if let Some(d) = self.tx.deflate.as_deref_mut() {
            d.release_quiet();
        }
    }

    /// Heap bytes the permessage-deflate state keeps between messages
    /// (send history and receive window; the zlib states are shared per
    /// thread and not counted).
    pub fn deflate_held_bytes(&self) -> usize {
        self.tx.deflate.as_deref().map_or(0, DeflateTx::held_bytes)
            + self.deflate.as_deref().map_or(0, |d| {
                d.rx.as_ref().map_or(0, Decompressor::held_bytes) + d.msg.capacity()
            })
    }

    /// Inflate a compressed frame's payload into the message being built,
    /// checking the message limit and (for text) UTF-8 as bytes come out.
    fn inflate(&mut self, text: bool, payload: &[u8], last: bool) -> Result<(), ProtocolError> {
        let d = self
            .deflate
            .as_deref_mut()
            .expect("compressed frames are only accepted when deflate is negotiated");
        let utf8 = &mut self.utf8;
        let (rx_bits, rx_reset, memory) = (d.rx_bits, d.rx_reset, d.memory);
        let rx =
            d.rx.get_or_insert_with(|| Decompressor::with_memory(rx_bits, rx_reset, memory));
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
