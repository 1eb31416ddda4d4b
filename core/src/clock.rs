//! Wall-clock time behind a trait, so that expiry and rate-limit windows can be tested by
//! moving a [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_unix_millis(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Now, in milliseconds since the Unix epoch, by the system clock (where no clock is injected).
pub fn unix_millis_now() -> i64 {
    SystemClock.now_unix_millis()
}

/// A clock that moves only when told to; clones share one time. For tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `unix_millis`.
    pub fn new(unix_millis: i64) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(unix_millis)),
        }
    }

    /// A clock showing the system's current time (then standing still).
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_unix_millis())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_millis`.
    pub fn set(&self, unix_millis: i64) {
        self.millis.store(unix_millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_unix_millis(), 1_000);
        other.advance(Duration::from_millis(2_500));
        assert_eq!(clock.now_unix_millis(), 3_500);
        clock.set(42);
        assert_eq!(other.now_unix_millis(), 42);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_unix_millis() > 1_577_836_800_000);
    }
}
