//! Randomness that spreads retries apart, so that writers that lost a race, or re-sends due
//! together, do not meet again in step. From a v4 UUID's random bits: enough to spread, never
//! for secrets.

use std::time::Duration;

/// A number in [0, 1).
pub fn fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

/// One to eight milliseconds: how long a writer that lost a race waits before it decides again.
pub fn race_pause() -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 8) as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_within_their_bounds_and_vary() {
        let fractions: Vec<f64> = (0..1_000).map(|_| fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(fractions.iter().any(|&f| f != fractions[0]));
        let pauses: Vec<Duration> = (0..1_000).map(|_| race_pause()).collect();
        let (shortest, longest) = (Duration::from_millis(1), Duration::from_millis(8));
        assert!(pauses.iter().all(|p| (shortest..=longest).contains(p)));
        assert!(pauses.contains(&shortest) && pauses.contains(&longest));
    }
}
