//! Full-jitter exponential backoff: the n-th delay is uniformly random in
//! `[0, min(cap, base * 2^n)]`, so that many tentacles reconnecting after a server restart spread
//! out instead of arriving together.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`, randomly seeded.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        );
        Self::with_seed(base, cap, hasher.finish())
    }

    /// Like [`Backoff::new`] with a fixed seed, for reproducible tests.
    pub fn with_seed(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
            state: seed,
        }
    }

    /// The upper bound of the next delay: `min(cap, base * 2^attempt)`.
    pub fn current_ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The next delay, and one step up the exponent.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current_ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Uniform in [0, nanos]; the modulo bias is irrelevant at these magnitudes.
        Duration::from_nanos(self.next_random() % nanos.saturating_add(1))
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over from `base` (after a connection succeeded).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(10);
        for seed in 0..50 {
            let mut b = Backoff::with_seed(base, cap, seed);
            for n in 0..80u32 {
                let ceiling = base
                    .checked_mul(2u32.saturating_pow(n))
                    .unwrap_or(cap)
                    .min(cap);
                assert_eq!(b.current_ceiling(), ceiling, "attempt {n}");
                let d = b.next_delay();
                assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn delays_are_spread_not_constant() {
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), 7);
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(500))
            .count();
        assert!(
            (40..=160).contains(&low),
            "{low} of 200 below half the ceiling"
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
    }

    #[test]
    fn reset_starts_over_and_zero_base_is_zero() {
        let mut b = Backoff::with_seed(Duration::from_millis(10), Duration::from_secs(5), 1);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 10);
        b.reset();
        assert_eq!(b.current_ceiling(), Duration::from_millis(10));
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.next_delay(), Duration::ZERO);
        // A cap below the base is raised to the base.
        let b = Backoff::with_seed(Duration::from_secs(2), Duration::from_secs(1), 1);
        assert_eq!(b.current_ceiling(), Duration::from_secs(2));
    }
}
