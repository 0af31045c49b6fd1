#![cfg_attr(not(feature = "bench"), allow(dead_code))]
//! Internals exposed for benchmarks only (feature `bench`): `tether bench`'s
//! masking floor (`--raw-mask`) masks and stages its payloads exactly as the
//! client does; the byte-at-a-time loop is the fast loops' reference in tests.
//! Not part of the API: nothing here is needed to speak WebSocket.

use crate::mask::key_at;

/// The size of the pieces a client's large payloads are masked in, each
/// just before it is written (see `output`).
pub const STAGE_SIZE: usize = crate::output::STAGE_SIZE;

/// The byte-at-a-time masking loop: the reference the fast loops are
/// tested and measured against.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// Append `src` XORed with `key` to `dst`, as if `src` started at `offset`
/// bytes into the payload: masking while copying, in one pass, as a client
/// sends a payload it does not own.
///
/// ```
/// use tether_proto::bench::extend_masked;
/// use bytes::BytesMut;
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut out = BytesMut::new();
/// extend_masked(&mut out, b"Hel", key, 0);
/// extend_masked(&mut out, b"lo", key, 3);
/// assert_eq!(&out[..], [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
#[inline]
pub fn extend_masked(dst: &mut bytes::BytesMut, src: &[u8], key: [u8; 4], offset: usize) {
    crate::copy::append_masked(dst, src, key_at(key, offset));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::apply_mask;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn masking_while_copying_in_pieces_equals_masking_in_place(data in proptest::collection::vec(any::<u8>(), 0..1200), key: [u8; 4], cut in 0usize..1200) {
            let cut = cut.min(data.len());
            let mut want = data.clone();
            apply_mask(&mut want, key, 0);
            let mut out = bytes::BytesMut::new();
            extend_masked(&mut out, &data[..cut], key, 0);
            extend_masked(&mut out, &data[cut..], key, cut);
            prop_assert_eq!(&out[..], &want[..]);
        }
    }
}
