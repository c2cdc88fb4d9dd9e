//! When to try again: exponential backoff, capped and jittered, for a failed event's retries and
//! for reconnecting to the database. Capped, so a large `router.max_attempts` never asks the
//! server for an interval it cannot hold; jittered, so many events (or replicas) that failed
//! together do not all come back in the same instant.
//!
//! It must not read a clock or a random source of its own: the jitter is handed in.

use std::time::Duration;

/// The wait before try number `attempt` (1 for the first retry): `d = base · 2^(attempt−1)`,
/// jittered by `jitter` ∈ [0, 1) to `d + jitter · d/2` (never sooner than `d`: `base` stays the
/// shortest wait), and at most `cap`. Never overflows, whatever `attempt`.
pub fn backoff(base: Duration, attempt: u32, cap: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let d = if doublings > 31 { cap } else { base.checked_mul(1u32 << doublings).unwrap_or(cap).min(cap) };
    (d + (d / 2).mul_f64(jitter.clamp(0.0, 1.0))).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_wait_doubles_then_stays_at_the_cap_whatever_the_attempt() {
        let cap = Duration::from_secs(600);
        let least = |a| backoff(SEC, a, cap, 0.0);
        assert_eq!((least(1), least(2), least(3), least(4)), (SEC, 2 * SEC, 4 * SEC, 8 * SEC));
        let top = |a| backoff(SEC, a, cap, 1.0);
        assert_eq!(top(10), cap, "2^9 s and a half again is past the cap");
        for a in [40, 64, 1_000, u32::MAX] {
            assert_eq!(top(a), cap, "attempt {a}");
        }
        assert_eq!(backoff(Duration::from_secs(u64::MAX / 4), 3, cap, 1.0), cap, "no overflow of the base");
    }

    #[test]
    fn jitter_spreads_a_wait_over_half_again_never_sooner() {
        let cap = Duration::from_secs(600);
        assert_eq!(backoff(8 * SEC, 1, cap, 0.0), 8 * SEC);
        assert_eq!(backoff(8 * SEC, 1, cap, 0.5), 10 * SEC);
        assert!(backoff(8 * SEC, 1, cap, 0.999) < 12 * SEC);
        assert_eq!(backoff(8 * SEC, 1, cap, 7.0), 12 * SEC, "a jitter out of range is clamped");
        assert_eq!(backoff(8 * SEC, 1, 9 * SEC, 0.9), 9 * SEC, "never past the cap");
    }
}
