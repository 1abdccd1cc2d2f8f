//! Retry delays as data: exponential backoff with full jitter, capped.
//!
//! Full jitter (a uniform draw between zero and the exponential bound) spreads the retries of
//! many jobs that failed together, e.g. when a platform had an outage, instead of sending them
//! back in one wave.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long to wait before attempt `n + 1` after attempt `n` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// The bound after the first failed attempt.
    pub base: Duration,
    /// The largest bound, however many attempts failed.
    pub max: Duration,
    /// The shortest delay, even when the jitter draws less.
    pub floor: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_secs(5), max: Duration::from_secs(60 * 60), floor: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The upper bound of the delay after `attempt` (1 for the first) failed: `base * 2^(attempt-1)`,
    /// capped at `max`.
    pub fn bound(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(32);
        self.base.saturating_mul(2u32.saturating_pow(doublings)).min(self.max)
    }

    /// A delay drawn uniformly from `[floor, bound(attempt)]`.
    pub fn delay(&self, attempt: i32, rng: &mut impl Rng) -> Duration {
        let bound = self.bound(attempt).max(self.floor);
        let jitter = rng.random_range(0..=bound.as_millis().min(u128::from(u64::MAX)) as u64);
        Duration::from_millis(jitter).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_doubles_and_stops_at_the_cap() {
        let policy = RetryPolicy { base: Duration::from_secs(2), max: Duration::from_secs(30), floor: Duration::ZERO };
        let bounds: Vec<u64> = (1..=6).map(|attempt| policy.bound(attempt).as_secs()).collect();
        assert_eq!(bounds, vec![2, 4, 8, 16, 30, 30]);
        assert_eq!(policy.bound(10_000).as_secs(), 30, "no overflow");
    }

    #[test]
    fn delays_are_jittered_within_floor_and_bound() {
        let policy =
            RetryPolicy { base: Duration::from_secs(8), max: Duration::from_secs(60), floor: Duration::from_secs(1) };
        let mut rng = rand::rng();
        let delays: Vec<Duration> = (0..200).map(|_| policy.delay(1, &mut rng)).collect();
        assert!(delays.iter().all(|delay| *delay >= Duration::from_secs(1) && *delay <= Duration::from_secs(8)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "full jitter spreads the delays: {} distinct", distinct.len());
    }
}
