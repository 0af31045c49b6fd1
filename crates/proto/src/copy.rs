//! One-pass copies into a buffer's spare capacity.
//!
//! Encoding a small frame is three short copies (header, payload, and for a
//! client the masking pass over the copy), and receiving one copies its
//! payload out of the read buffer (see [`crate::connection::COPY_THRESHOLD`]).
//! Through `extend_from_slice` each is a call into the C library's `memcpy`,
//! whose fixed cost dominates at 20 bytes: in the `echo` micro benchmark it
//! was a third of a server's time per message. Here short runs are copied
//! with a few inline moves, long ones with one `memcpy`, and a client's
//! payload is masked on the way into the buffer instead of in a second pass.
//!
//! The bytes are written into uninitialised spare capacity, so the buffer's
//! length is set afterwards: the only `unsafe` in this module, three calls to
//! `set_len`, each right after a write that covers exactly the new bytes.

use crate::frame::FrameHeader;
use crate::mask::mask_into;
use bytes::{Bytes, BytesMut};
use std::mem::MaybeUninit;

/// Runs up to this long are copied inline, eight bytes at a time.
const INLINE_MAX: usize = 64;

/// Copy `N` bytes at `at` from `src` to `dst` as one fixed-size move.
#[inline(always)]
fn put<const N: usize>(dst: &mut [MaybeUninit<u8>], src: &[u8], at: usize) {
    let s: [u8; N] = src[at..at + N].try_into().expect("N bytes");
    let d: &mut [MaybeUninit<u8>; N] = (&mut dst[at..at + N]).try_into().expect("N bytes");
    *d = s.map(MaybeUninit::new);
}

/// Write `src` into `dst` (which must be exactly as long): every byte of
/// `dst` is initialised when this returns.
///
/// Up to [`INLINE_MAX`] bytes are moved with at most four fixed-size,
/// possibly overlapping moves (the first and last 16, 8, 4 or single bytes
/// cover any length in between); written as a loop, the compiler would turn
/// it back into a `memcpy` call.
#[inline(always)]
fn write_copy(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            // First, middle and last byte cover 1, 2 or 3 bytes.
            dst[0].write(src[0]);
            dst[n / 2].write(src[n / 2]);
            dst[n - 1].write(src[n - 1]);
        }
        4..=7 => {
            put::<4>(dst, src, 0);
            put::<4>(dst, src, n - 4);
        }
        8..=16 => {
            put::<8>(dst, src, 0);
            put::<8>(dst, src, n - 8);
        }
        17..=32 => {
            put::<16>(dst, src, 0);
            put::<16>(dst, src, n - 16);
        }
        33..=INLINE_MAX => {
            put::<16>(dst, src, 0);
            put::<16>(dst, src, 16);
            put::<16>(dst, src, n - 32);
            put::<16>(dst, src, n - 16);
        }
        _ => {
            dst.write_copy_of_slice(src);
        }
    }
}

/// Append the frame `header`, then `body` (masked with the header's key,
/// if it has one), to `buf`; returns the number of bytes appended.
#[inline(always)]
pub(crate) fn append_frame(buf: &mut BytesMut, header: &FrameHeader, body: &[u8]) -> usize {
    let (head, hlen) = header.to_bytes();
    let n = hlen + body.len();
    // The header goes in as one 16-byte move, so room for 16 even if the
    // header is shorter (the payload then overwrites the excess).
    buf.reserve(n.max(hlen + 16));
    let spare = buf.spare_capacity_mut();
    put::<16>(spare, &head, 0);
    let b = &mut spare[hlen..n];
    match header.mask {
        Some(key) => mask_into(b, body, key),
        None => write_copy(b, body),
    }
    let len = buf.len() + n;
    // SAFETY: `reserve` made room for at least `n` more bytes; the 16-byte
    // move initialised the first `hlen` of them (hlen <= 14) and
    // `write_copy` / `mask_into` the `body.len()` after those: all `n`.
    // Tested by the round-trip tests below and by every frame the
    // connection encodes.
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(len)
    };
    n
}

/// Append `body` masked with `key` (payload offset 0) to `buf`.
#[inline]
pub(crate) fn append_masked(buf: &mut BytesMut, body: &[u8], key: [u8; 4]) {
    buf.reserve(body.len());
    mask_into(&mut buf.spare_capacity_mut()[..body.len()], body, key);
    let len = buf.len() + body.len();
    // SAFETY: `reserve` made room for `body.len()` more bytes and
    // `mask_into` initialised exactly those. Tested below and by every
    // large payload a client sends.
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(len)
    };
}

/// `v`, whose capacity is its length, as `Bytes`.
///
/// Through `Box<[u8]>` (no reallocation: the capacity is exact) rather than
/// `Bytes::from(Vec)`: that conversion also handles spare capacity, so it
/// is not inlined, and its result comes back through the stack in 8-byte
/// stores that the caller reads with 16-byte loads, a store-forwarding
/// stall on every message received.
#[inline(always)]
pub(crate) fn exact_to_bytes(v: Vec<u8>) -> Bytes {
    debug_assert_eq!(v.capacity(), v.len());
    Bytes::from(v.into_boxed_slice())
}

/// A copy of `src` in a new, exactly sized buffer.
///
/// This and the other copies are always inlined: returned from a call, the
/// new buffer goes through the stack in 8-byte stores that the caller reads
/// back in 16-byte loads, which the CPU cannot forward; that stall was 40%
/// of a client's receive path (`poll_event`) under load.
#[inline(always)]
pub(crate) fn copy_to_bytes(src: &[u8]) -> Bytes {
    exact_to_bytes(copy_unmasked_vec(src, None))
}

/// A copy of `src` in a new, exactly sized buffer, unmasked with `key`
/// (payload offset 0) if there is one.
///
/// How a server takes a small client payload out of the read buffer: one
/// pass instead of unmasking in place and then copying. The two-pass way
/// also stalls: the copy reads back, in 16-byte moves, bytes the unmasking
/// has just written in 8-byte ones, and the CPU cannot forward those stores
/// to the loads (in the `echo/server` micro benchmark that one load was
/// 12% of the whole receive path).
#[inline(always)]
pub(crate) fn copy_unmasked(src: &[u8], key: Option<[u8; 4]>) -> Bytes {
    exact_to_bytes(copy_unmasked_vec(src, key))
}

/// [`copy_unmasked`] as a `Vec` whose capacity is its length (for checks
/// on the bytes before they become `Bytes`; see [`exact_to_bytes`]).
#[inline(always)]
pub(crate) fn copy_unmasked_vec(src: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(src.len());
    let dst = &mut v.spare_capacity_mut()[..src.len()];
    match key {
        Some(key) => mask_into(dst, src, key),
        None => write_copy(dst, src),
    }
    // SAFETY: the capacity is `src.len()` and `mask_into` / `write_copy`
    // initialised all of it. Tested below and by every small frame read.
    #[allow(unsafe_code)]
    unsafe {
        v.set_len(src.len())
    };
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::apply_mask_scalar;
    use crate::frame::{OpCode, MAX_HEADER_LEN};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn append_frame_equals_encode_extend_then_mask(
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            key: Option<[u8; 4]>,
        ) {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: key,
                payload_len: body.len() as u64,
            };
            let mut buf = BytesMut::from(&prefix[..]);
            append_frame(&mut buf, &header, &body);
            let mut want = prefix.clone();
            let mut head = [0u8; MAX_HEADER_LEN];
            let hlen = header.encode(&mut head);
            want.extend_from_slice(&head[..hlen]);
            let start = want.len();
            want.extend_from_slice(&body);
            if let Some(k) = key {
                apply_mask_scalar(&mut want[start..], k, 0);
            }
            prop_assert_eq!(&buf[..], &want[..]);
        }

        #[test]
        fn append_masked_equals_extend_then_mask(
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            key: [u8; 4],
        ) {
            let mut buf = BytesMut::from(&prefix[..]);
            append_masked(&mut buf, &body, key);
            let mut want = prefix.clone();
            want.extend_from_slice(&body);
            apply_mask_scalar(&mut want[prefix.len()..], key, 0);
            prop_assert_eq!(&buf[..], &want[..]);
        }

        #[test]
        fn copy_unmasked_equals_copy_then_mask(
            src in proptest::collection::vec(any::<u8>(), 0..300),
            key: Option<[u8; 4]>,
        ) {
            let mut want = src.clone();
            if let Some(k) = key {
                apply_mask_scalar(&mut want, k, 0);
            }
            prop_assert_eq!(&copy_unmasked(&src, key)[..], &want[..]);
        }

        #[test]
        fn copy_to_bytes_is_an_exact_copy(src in proptest::collection::vec(any::<u8>(), 0..300)) {
            let b = copy_to_bytes(&src);
            prop_assert_eq!(&b[..], &src[..]);
        }
    }

    #[test]
    fn every_length_around_the_inline_limit() {
        for n in 0..=INLINE_MAX + 9 {
            let src: Vec<u8> = (0..n as u8).collect();
            assert_eq!(&copy_to_bytes(&src)[..], &src[..]);
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: Some([1, 2, 3, 4]),
                payload_len: n as u64,
            };
            let mut buf = BytesMut::new();
            append_frame(&mut buf, &header, &src);
            let mut want = src.clone();
            apply_mask_scalar(&mut want, [1, 2, 3, 4], 0);
            assert_eq!(&buf[6..], &want[..], "length {n}");
        }
    }
}
