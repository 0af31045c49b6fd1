//! The incremental `Utf8Validator` agrees with `std::str::from_utf8` for any
//! split of any input, and fails as early as possible: a piece is refused
//! exactly when the bytes so far can no longer begin valid UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::utf8::Utf8Validator;

/// True if `bytes` is valid UTF-8 or a prefix of valid UTF-8.
fn is_valid_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many split points follow (each one byte, a
    // piece length); the rest is the text.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(rest.len());
    let (cuts, text) = rest.split_at(n);

    let mut v = Utf8Validator::new();
    let mut fed = 0;
    let mut pieces = cuts.iter().map(|&c| c as usize);
    loop {
        let take = match pieces.next() {
            Some(c) => c.min(text.len() - fed),
            None => text.len() - fed,
        };
        let end = fed + take;
        let ok = v.feed(&text[fed..end]).is_ok();
        assert_eq!(
            ok,
            is_valid_prefix(&text[..end]),
            "feed of {fed}..{end} disagrees with std on {:02x?}",
            &text[..end]
        );
        if !ok {
            // Early failure is final: the whole text is invalid too.
            assert!(std::str::from_utf8(text).is_err());
            return;
        }
        fed = end;
        if fed == text.len() && pieces.len() == 0 {
            break;
        }
    }
    assert_eq!(v.finish().is_ok(), std::str::from_utf8(text).is_ok());

    // After reset the validator starts over, whatever it held.
    v.reset();
    assert!(v.feed(b"ok").is_ok() && v.finish().is_ok());
});
