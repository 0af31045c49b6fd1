//! `Sec-WebSocket-Key` / `Sec-WebSocket-Accept` (RFC 6455 §1.3, §4.1, §4.2.2).
//!
//! The key/accept exchange is not security: it proves the server understood
//! the WebSocket handshake (a plain HTTP server or a cache replaying an old
//! response cannot produce the right accept value), which is why the client
//! MUST check it and MUST use a fresh random key for every connection.

use crate::random::Randomness;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// `base64(SHA-1(key ++ GUID))` (RFC 6455 §4.2.2 item 5.4).
///
/// `key` is the header value exactly as sent (base64 text, not the decoded
/// bytes); the RFC hashes the string, never the 16 decoded bytes.
///
/// ```
/// assert_eq!(
///     tether_proto::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from the thread-local CSPRNG,
/// base64-encoded (RFC 6455 §4.1 client item 7 requires a nonce "randomly
/// selected for each connection").
pub fn generate_key() -> String {
    generate_key_from(Randomness::ThreadRng)
}

/// [`generate_key`] with the nonce from `random`.
pub fn generate_key_from(random: Randomness) -> String {
    let mut nonce = [0u8; 16];
    random.fill(&mut nonce[..]);
    STANDARD.encode(nonce)
}

/// True if `key` is a `Sec-WebSocket-Key` value the RFC allows: canonical,
/// padded, standard-alphabet base64 of exactly 16 bytes (§4.2.1 item 5).
pub(crate) fn is_valid_key(key: &str) -> bool {
    // 16 bytes always encode to 24 characters; checking first keeps the
    // decoder from ever seeing a long attacker-chosen string.
    key.len() == 24 && matches!(STANDARD.decode(key), Ok(bytes) if bytes.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_section_1_3_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_key_matches_second_known_vector() {
        // Any key yields 20 SHA-1 bytes -> 28 base64 chars with one pad.
        let a = accept_key(b"x3JJHMbDL1EzLkh9GBhXDw==");
        assert_eq!(a, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
        assert_eq!(a.len(), 28);
    }

    #[test]
    fn generated_keys_are_valid_and_fresh() {
        let a = generate_key();
        let b = generate_key();
        assert!(is_valid_key(&a), "{a}");
        assert!(is_valid_key(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn key_validation_follows_section_4_2_1_item_5() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        // 15 and 18 bytes.
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZXNz"));
        // Missing padding, URL-safe alphabet, non-canonical trailing bits.
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ-_"));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(" dGhlIHNhbXBsZSBub25jZQ=="));
    }
}
