//! Payload masking (RFC 6455 §5.3).
//!
//! Every byte of a client-to-server payload is XORed with one byte of a
//! 4-byte key, cycling. This is on the hot path of every client frame sent and
//! every frame a server receives, so it works a machine word at a time: the key
//! is widened to 32 bytes and the payload is processed in 32-byte blocks that the
//! compiler turns into SIMD XORs (SSE2/AVX2/NEON) without any `unsafe`.
//!
//! A portable x86-64 build may only assume SSE2 (16 bytes per XOR). On a CPU
//! with AVX2, payloads of 256 bytes and more take a copy of the same
//! loops compiled for AVX2 (32 bytes per XOR), chosen at run time: the only
//! `unsafe` here is the call into those copies, after the CPU was asked.
//! On this project's 2-core EPYC VM that took masking in place from 33–36
//! to 50–55 GiB/s at 64 KiB–1 MiB, and a client's frame encoding (masking
//! while copying) from 15.5 to 24–26 GiB/s at 16 KiB (criterion, `mask` and
//! `encode` groups); below a few hundred bytes the plain loops are as fast.
//!
//! AVX-512 copies were tried on an Intel Xeon VM that has it and are not
//! here: compiled from these loops, LLVM turned the 64-byte blocks into
//! gathers (18 GiB/s); written with intrinsics they reached 57–86 GB/s in
//! L1 against AVX2's 96–99, and the same 50 GB/s once the data is in L2.

use std::mem::MaybeUninit;

/// XOR `buf` with `key`, as if `buf` started at `offset` bytes into the payload.
///
/// Applying it twice with the same key and offset restores the input.
/// The offset lets a payload be unmasked piece by piece as it arrives.
///
/// ```
/// use tether_proto::mask::apply_mask;
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key, 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
#[inline(always)]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask_aligned(buf, key_at(key, offset));
}

/// The key as it stands `offset` bytes into the payload: masking from there
/// is masking from offset 0 with this key.
#[inline(always)]
pub(crate) fn key_at(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
}

/// The 4-byte key repeated into a 64-bit word (for XORing 8 bytes at once).
#[inline]
fn key_word(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

/// Payloads at least this long are masked with AVX2 where the CPU has it.
const WIDE_MIN: usize = 256;

/// True if the AVX2 copies of the loops may run (the CPU has AVX2). The
/// standard library caches the answer: one relaxed atomic load.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// XOR with a key that starts at payload offset 0 (mod 4). Short payloads
/// stay inline in the caller; long ones go out of line, where the choice
/// of loops is made.
#[inline(always)]
fn apply_mask_aligned(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_MIN {
        apply_mask_wide(buf, key);
        return;
    }
    apply_mask_blocks(buf, key);
}

/// [`apply_mask_aligned`] for [`WIDE_MIN`] bytes or more.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn apply_mask_wide(buf: &mut [u8], key: [u8; 4]) {
    if has_avx2() {
        #[allow(unsafe_code)]
        // SAFETY: the function's only requirement is AVX2, and the CPU has
        // it (`has_avx2` asked it just above). Tested against the scalar
        // loop by `fast_paths_match_scalar`.
        unsafe {
            avx2::apply_mask_aligned(buf, key)
        };
    } else {
        apply_mask_blocks(buf, key);
    }
}

/// The same loops compiled for AVX2: a `#[target_feature]` function lets
/// the compiler vectorise the inlined portable code 32 bytes at a time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::mem::MaybeUninit;

    #[target_feature(enable = "avx2")]
    pub(super) fn apply_mask_aligned(buf: &mut [u8], key: [u8; 4]) {
        super::apply_mask_blocks(buf, key);
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn mask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
        super::mask_into_blocks(dst, src, key);
    }
}

/// [`apply_mask_aligned`] in portable code: 32-byte blocks, then the rest.
#[inline(always)]
fn apply_mask_blocks(buf: &mut [u8], key: [u8; 4]) {
    let k = key_word(key);
    let (blocks, tail) = buf.as_chunks_mut::<32>();
    for block in blocks {
        let (words, _) = block.as_chunks_mut::<8>();
        for w in words {
            *w = (u64::from_ne_bytes(*w) ^ k).to_ne_bytes();
        }
    }
    // 32 is a multiple of 4, so the tail starts at key offset 0 again.
    apply_mask_bytes(tail, key);
}

/// Fewer than 32 bytes (a small message, or a block's tail): 8, then 4
/// bytes at a time, then single bytes. Small messages are the common case
/// for chat-like traffic, so a byte loop here would cost more than the
/// block loop does for kilobytes.
#[inline]
fn apply_mask_bytes(buf: &mut [u8], key: [u8; 4]) {
    let k8 = key_word(key);
    let (words, rest) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ k8).to_ne_bytes();
    }
    let (halves, rest) = rest.as_chunks_mut::<4>();
    for h in halves {
        *h = (u32::from_ne_bytes(*h) ^ u32::from_ne_bytes(key)).to_ne_bytes();
    }
    for (b, k) in rest.iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Write `src` XORed with `key` (payload offset 0) into `dst`, which must be
/// exactly as long: a client masks its payload while copying it into the
/// output buffer, in one pass. Every byte of `dst` is initialised when this
/// returns (the caller's `set_len` relies on it).
#[inline(always)]
pub(crate) fn mask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    if src.len() >= WIDE_MIN {
        mask_into_wide(dst, src, key);
        return;
    }
    mask_into_blocks(dst, src, key);
}

/// [`mask_into`] for [`WIDE_MIN`] bytes or more.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn mask_into_wide(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    if has_avx2() {
        #[allow(unsafe_code)]
        // SAFETY: the function's only requirement is AVX2, and the CPU has
        // it (`has_avx2` asked it just above). Tested against the scalar
        // loop by `fast_paths_match_scalar`.
        unsafe {
            avx2::mask_into(dst, src, key)
        };
    } else {
        mask_into_blocks(dst, src, key);
    }
}

/// [`mask_into`] in portable code: 32-byte blocks of four words (which the
/// compiler fuses into vector XORs), then words, then bytes.
#[inline(always)]
fn mask_into_blocks(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    let k8 = key_word(key);
    let (db, dr) = dst.as_chunks_mut::<32>();
    let (sb, sr) = src.as_chunks::<32>();
    for (d, s) in db.iter_mut().zip(sb) {
        let (dw, _) = d.as_chunks_mut::<8>();
        let (sw, _) = s.as_chunks::<8>();
        for (d, s) in dw.iter_mut().zip(sw) {
            *d = (u64::from_ne_bytes(*s) ^ k8)
                .to_ne_bytes()
                .map(MaybeUninit::new);
        }
    }
    // 32 is a multiple of four: the rest starts at key offset 0 again.
    let (dw, dr) = dr.as_chunks_mut::<8>();
    let (sw, sr) = sr.as_chunks::<8>();
    for (d, s) in dw.iter_mut().zip(sw) {
        *d = (u64::from_ne_bytes(*s) ^ k8)
            .to_ne_bytes()
            .map(MaybeUninit::new);
    }
    for ((d, s), k) in dr.iter_mut().zip(sr).zip(key.iter().cycle()) {
        d.write(s ^ k);
    }
}

/// A fresh masking key for a client frame (RFC 6455 §5.3: unpredictable,
/// from a strong source of entropy), from the default source
/// ([`Randomness::ThreadRng`](crate::random::Randomness::ThreadRng)).
///
/// ```
/// use tether_proto::mask::new_key;
/// let (a, b) = (new_key(), new_key());
/// assert_ne!(a, b); // equal by chance once in 2^32 runs
/// ```
#[inline]
pub fn new_key() -> [u8; 4] {
    crate::random::Randomness::ThreadRng.mask_key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::apply_mask_scalar;
    use proptest::prelude::*;

    #[test]
    fn rfc6455_masked_hello_vector() {
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    proptest! {
        /// Lengths on both sides of `WIDE_MIN`, so the portable loops and
        /// the AVX2 copies (where the CPU has AVX2) both run, at every key
        /// offset, in place and while copying.
        #[test]
        fn fast_paths_match_scalar(data in proptest::collection::vec(any::<u8>(), 0..1200), key: [u8; 4], offset in 0usize..8) {
            let mut a = data.clone();
            let mut b = data.clone();
            apply_mask(&mut a, key, offset);
            apply_mask_scalar(&mut b, key, offset);
            prop_assert_eq!(&a, &b);
            apply_mask(&mut a, key, offset);
            prop_assert_eq!(&a, &data);
            let mut c = data.clone();
            apply_mask_scalar(&mut c, key, 0);
            // `append_masked` is `mask_into` into a buffer's spare room.
            let mut copied = bytes::BytesMut::new();
            crate::copy::append_masked(&mut copied, &data, key);
            prop_assert_eq!(&copied[..], &c[..]);
        }

        #[test]
        fn masking_in_pieces_equals_masking_at_once(data in proptest::collection::vec(any::<u8>(), 0..200), key: [u8; 4], cut in 0usize..200) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(whole, pieces);
        }
    }
}
