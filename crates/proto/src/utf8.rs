//! Incremental UTF-8 validation for text messages (RFC 6455 §8.1).
//!
//! A text message may arrive in many frames, and a frame in many reads, with
//! a multi-byte character split anywhere. [`Utf8Validator`] is fed each piece
//! as it arrives and reports an error at the first byte that can never start
//! or continue valid UTF-8 — so an endpoint fails the connection in the middle
//! of a message (Autobahn 6.4.*), not only at its end. Validation itself is
//! done by `simdutf8` (SIMD where the CPU has it).
//!
//! [`Utf8Bytes`] is the payload of a validated text message: `Bytes` that are
//! known to be UTF-8, handed out without copying.

use bytes::Bytes;
use std::fmt;

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Streaming UTF-8 validator; remembers an incomplete trailing character.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Length of the UTF-8 sequence introduced by lead byte `b` (0 if not a lead byte).
#[inline]
fn sequence_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate the next piece of the message.
    ///
    /// ```
    /// use tether_proto::utf8::Utf8Validator;
    /// let mut v = Utf8Validator::new();
    /// let euro = "€".as_bytes(); // e2 82 ac
    /// v.feed(&euro[..1]).unwrap();
    /// v.feed(&euro[1..]).unwrap();
    /// assert!(v.finish().is_ok());
    /// assert!(Utf8Validator::new().feed(&[0xff]).is_err()); // fails at once
    /// ```
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(input.len());
            self.partial[have..have + take].copy_from_slice(&input[..take]);
            let now = have + take;
            match simdutf8::compat::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the input is exhausted.
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            input = &input[take..];
        }
        if simdutf8::basic::from_utf8(input).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    let tail = &input[e.valid_up_to()..];
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// The message has ended: it is valid unless a character was left incomplete.
    pub fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.partial_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forget everything, ready for the next message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

/// Immutable bytes that are guaranteed to be valid UTF-8.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

/// True if `b` is UTF-8 (the whole of a message).
#[inline]
pub(crate) fn is_utf8(b: &[u8]) -> bool {
    simdutf8::basic::from_utf8(b).is_ok()
}

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// Wrap bytes after checking that they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        simdutf8::basic::from_utf8(&bytes).map_err(|_| InvalidUtf8)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wrap bytes the caller has already validated.
    #[inline]
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// A string from static text, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[inline]
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates the bytes (or takes them from a
        // `str`/`String`), and `Bytes` is immutable, so they are still UTF-8.
        // Tested by `utf8_bytes_round_trips` and the connection's text tests.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (cheap: reference counted).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Give back the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Bytes {
        s.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.clamp(start, data.len());
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn fails_fast_on_invalid_lead_byte() {
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xce, 0xba, 0xf8]), Err(InvalidUtf8));
    }

    #[test]
    fn fails_fast_on_truncated_sequence_that_can_never_complete() {
        // 0xf4 0x90 is above U+10FFFF: invalid before the sequence is complete.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_are_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_at_end_is_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn utf8_bytes_round_trips() {
        let s = Utf8Bytes::try_from_bytes(Bytes::from_static("Hello-µ@ßöäüàá-UTF-8!!".as_bytes()))
            .unwrap();
        assert_eq!(s.as_str(), "Hello-µ@ßöäüàá-UTF-8!!");
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(&[0xc0, 0x80])).is_err());
    }

    proptest! {
        #[test]
        fn pieces_agree_with_std(data in proptest::collection::vec(any::<u8>(), 0..64), cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts = cuts;
            cuts.sort();
            prop_assert_eq!(validate_in_pieces(&data, &cuts).is_ok(), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_strings_pass_in_any_pieces(s in "\\PC*", cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts = cuts;
            cuts.sort();
            prop_assert!(validate_in_pieces(s.as_bytes(), &cuts).is_ok());
        }

        #[test]
        fn fails_at_the_first_bad_byte(s in "\\PC{0,8}", junk in 0xf8u8..=0xff) {
            // Feeding byte by byte, the error comes exactly at the junk byte.
            let mut data = s.into_bytes();
            let bad_at = data.len();
            data.push(junk);
            data.extend_from_slice(b"tail");
            let mut v = Utf8Validator::new();
            for (i, b) in data.iter().enumerate() {
                let r = v.feed(std::slice::from_ref(b));
                prop_assert_eq!(r.is_err(), i == bad_at);
                if r.is_err() { break; }
            }
        }
    }
}
