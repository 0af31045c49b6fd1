//! Where the protocol's randomness comes from: a client's masking keys
//! (RFC 6455 §5.3) and its handshake nonces (`Sec-WebSocket-Key`, §4.1).
//!
//! By default both come from `rand`'s thread-local CSPRNG (ChaCha12, seeded
//! and reseeded from the OS), the workspace's one source of randomness.
//! [`Randomness::Custom`] puts an application's function in its place, for
//! deterministic tests and fuzzing or another generator; set it with
//! [`Config::with_random`](crate::Config::with_random).

/// The source of a connection's masking keys and handshake nonces.
#[derive(Clone, Copy, Default)]
pub enum Randomness {
    /// `rand`'s thread-local CSPRNG. Masking keys are drawn 64 at a time
    /// into a per-thread pool: the same generator and bytes as one call
    /// per frame, without its per-call overhead (a reference-counted handle
    /// and a reseeding check, 2-3 ns per message).
    #[default]
    ThreadRng,
    /// A function that fills its buffer with random bytes, called for every
    /// key and nonce. Masking keys must be unpredictable to the
    /// application's peers (§10.3): outside tests, use a CSPRNG.
    Custom(fn(&mut [u8])),
}

impl std::fmt::Debug for Randomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Randomness::ThreadRng => f.write_str("ThreadRng"),
            Randomness::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Masking keys generated at once: one refill of the thread's pool.
const KEY_BATCH: usize = 64;

thread_local! {
    /// Masking keys drawn from the thread's CSPRNG, used once each, in order.
    static KEYS: std::cell::RefCell<([u32; KEY_BATCH], usize)> =
        const { std::cell::RefCell::new(([0; KEY_BATCH], KEY_BATCH)) };
}

impl Randomness {
    /// Fill `buf` with random bytes.
    ///
    /// ```
    /// use tether_proto::random::Randomness;
    /// let mut a = [0u8; 16];
    /// Randomness::ThreadRng.fill(&mut a);
    /// assert_ne!(a, [0; 16]); // all zero by chance once in 2^128 runs
    /// ```
    pub fn fill(&self, buf: &mut [u8]) {
        match self {
            Randomness::ThreadRng => rand::fill(buf),
            Randomness::Custom(f) => f(buf),
        }
    }

    /// A random `u64` (jitter, identifiers).
    pub fn u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_ne_bytes(b)
    }

    /// A fresh masking key for a client frame.
    #[inline]
    pub fn mask_key(&self) -> [u8; 4] {
        match self {
            Randomness::ThreadRng => KEYS.with(|pool| {
                let mut pool = pool.borrow_mut();
                let (keys, next) = &mut *pool;
                if *next == KEY_BATCH {
                    rand::fill(&mut keys[..]);
                    *next = 0;
                }
                let key = keys[*next];
                *next += 1;
                key.to_ne_bytes()
            }),
            Randomness::Custom(f) => {
                let mut key = [0u8; 4];
                f(&mut key);
                key
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_not_reused_across_refills() {
        let keys: Vec<[u8; 4]> = (0..3 * KEY_BATCH + 5)
            .map(|_| Randomness::ThreadRng.mask_key())
            .collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        // 197 random 32-bit keys: a repeat has probability ~5e-6.
        assert!(distinct.len() >= keys.len() - 1, "keys repeat: {keys:?}");
        assert!(
            keys.iter().any(|k| *k != [0; 4]),
            "the pool was never filled"
        );
    }

    #[test]
    fn a_custom_source_gives_every_key_and_nonce() {
        let counting: fn(&mut [u8]) = |buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = i as u8 + 1;
            }
        };
        let r = Randomness::Custom(counting);
        assert_eq!(r.mask_key(), [1, 2, 3, 4]);
        let mut nonce = [0u8; 3];
        r.fill(&mut nonce);
        assert_eq!(nonce, [1, 2, 3]);
    }
}
