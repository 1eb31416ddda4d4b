//! Exponential backoff with full jitter, shared by live sync and the SOS beacon sender.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(max, first · 2ⁿ)]`, so that phones cut off together do not return together.
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration, rng: StdRng) -> Self {
        Self {
            first,
            max,
            attempt: 0,
            rng,
        }
    }

    /// The ceiling of the current attempt's delay.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.gen_range(0..=millis))
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn backoff(seed: u64) -> Backoff {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(60),
            StdRng::seed_from_u64(seed),
        )
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_full_jitter() {
        let mut b = backoff(7);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c, "{d:?} > {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        // Far past any sane attempt count it stays at the cap without overflowing.
        b.attempt = 10_000;
        assert_eq!(b.ceiling(), Duration::from_secs(60));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_phones_cut_off_together() {
        // Sixty-four phones at their fifth attempt (ceiling 8 s): the delays spread out.
        let delays: Vec<Duration> = (0..64)
            .map(|seed| {
                let mut b = backoff(seed);
                b.attempt = 4;
                b.next_delay()
            })
            .collect();
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(max - min > Duration::from_secs(4), "{min:?}..{max:?}");
        assert!(max <= Duration::from_secs(8));
    }
}
