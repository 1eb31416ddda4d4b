//! When the platform should take the next fix: every rule in one table, as data.
//!
//! The first fix is due at once. After that the interval depends on how long ago the person
//! triggered (often at first, when a dispatcher most needs to find them, then less often to
//! save the battery for a long incident), shortens when the phone has moved since the fix
//! before (a person being taken somewhere), and stretches when the battery runs low (a phone
//! that dies sends nothing at all).

use crate::client::store::StoredFix;
use crate::sos::fix::distance_m;

/// From `from_ms` after the trigger on, fixes every `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeStep {
    /// Time since the trigger this step starts at, ms.
    pub from_ms: i64,
    /// Interval between fixes, ms.
    pub interval_ms: i64,
}

/// Below `below_pct` battery, intervals are multiplied by `factor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryStep {
    /// Battery level (percent) under which the step applies.
    pub below_pct: u8,
    /// Multiplier on the interval.
    pub factor: i64,
}

/// The cadence rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CadenceRules {
    /// Intervals by time since the trigger, `from_ms` ascending, the first from 0.
    pub by_age: &'static [AgeStep],
    /// Moved more than this between the last two fixes, metres...
    pub moved_m: f64,
    /// ...and the interval is at most this, ms.
    pub moved_interval_ms: i64,
    /// Battery steps; the largest factor whose threshold the level is under applies.
    pub battery: &'static [BatteryStep],
}

/// The rules the phone uses.
pub const RULES: CadenceRules = CadenceRules {
    by_age: &[
        // The first 3 minutes: every 5 s.
        AgeStep {
            from_ms: 0,
            interval_ms: 5_000,
        },
        // Up to 15 minutes: every 15 s.
        AgeStep {
            from_ms: 3 * 60_000,
            interval_ms: 15_000,
        },
        // Then every minute.
        AgeStep {
            from_ms: 15 * 60_000,
            interval_ms: 60_000,
        },
    ],
    moved_m: 50.0,
    moved_interval_ms: 5_000,
    battery: &[
        BatteryStep {
            below_pct: 20,
            factor: 2,
        },
        BatteryStep {
            below_pct: 10,
            factor: 4,
        },
    ],
};

impl CadenceRules {
    /// When the next fix is due, in ms since the epoch (never before `now`): at once without
    /// a fix, else the last fix's time plus the interval the rules give. `history` holds the
    /// incident's recent fixes, oldest first (the last two are used); times are the phone's
    /// clock when each fix was recorded.
    pub fn next_fix_due(&self, triggered_at: i64, history: &[StoredFix], now: i64) -> i64 {
        let Some(last) = history.last() else {
            return now;
        };
        let age = last.recorded_at.saturating_sub(triggered_at).max(0);
        let mut interval = self
            .by_age
            .iter()
            .rev()
            .find(|s| s.from_ms <= age)
            .or(self.by_age.first())
            .map_or(self.moved_interval_ms, |s| s.interval_ms);
        if let [.., before, last] = history {
            let moved = distance_m(
                (before.fix.lat, before.fix.lon),
                (last.fix.lat, last.fix.lon),
            );
            if moved > self.moved_m {
                interval = interval.min(self.moved_interval_ms);
            }
        }
        if let Some(level) = last.fix.battery_pct {
            let factor = self
                .battery
                .iter()
                .filter(|s| level < s.below_pct)
                .map(|s| s.factor)
                .max()
                .unwrap_or(1);
            interval = interval.saturating_mul(factor);
        }
        last.recorded_at.saturating_add(interval).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::sos::fix::tests::seoul;
    use std::time::Duration;

    const T0: i64 = 1_764_448_000_000;

    fn at(clock: &ManualClock, north_m: f64, battery: Option<u8>) -> StoredFix {
        let mut fix = seoul();
        // About 111,195 m per degree of latitude.
        fix.lat += north_m / 111_195.0;
        fix.battery_pct = battery;
        StoredFix {
            seq: 1,
            recorded_at: clock.now_unix_millis(),
            fix,
        }
    }

    #[test]
    fn first_fix_is_due_at_once() {
        assert_eq!(RULES.next_fix_due(T0, &[], T0), T0);
        assert_eq!(RULES.next_fix_due(T0, &[], T0 + 42), T0 + 42);
    }

    #[test]
    fn every_five_seconds_for_the_first_three_minutes() {
        let clock = ManualClock::new(T0);
        let fix = at(&clock, 0.0, Some(80));
        assert_eq!(
            RULES.next_fix_due(T0, std::slice::from_ref(&fix), T0),
            T0 + 5_000
        );
        clock.advance(Duration::from_millis(179_999));
        let fix = at(&clock, 0.0, Some(80));
        let now = clock.now_unix_millis();
        assert_eq!(RULES.next_fix_due(T0, &[fix], now), now + 5_000);
    }

    #[test]
    fn every_fifteen_seconds_until_fifteen_minutes_then_every_minute() {
        let clock = ManualClock::new(T0);
        clock.advance(Duration::from_secs(180));
        let now = clock.now_unix_millis();
        assert_eq!(
            RULES.next_fix_due(T0, &[at(&clock, 0.0, None)], now),
            now + 15_000
        );
        clock.advance(Duration::from_secs(12 * 60 - 1));
        let now = clock.now_unix_millis();
        assert_eq!(
            RULES.next_fix_due(T0, &[at(&clock, 0.0, None)], now),
            now + 15_000
        );
        clock.advance(Duration::from_secs(1));
        let now = clock.now_unix_millis();
        assert_eq!(
            RULES.next_fix_due(T0, &[at(&clock, 0.0, None)], now),
            now + 60_000
        );
        clock.advance(Duration::from_secs(6 * 3600));
        let now = clock.now_unix_millis();
        assert_eq!(
            RULES.next_fix_due(T0, &[at(&clock, 0.0, None)], now),
            now + 60_000
        );
    }

    #[test]
    fn sooner_when_moved_more_than_fifty_metres() {
        let clock = ManualClock::new(T0 + 20 * 60_000);
        let before = at(&clock, 0.0, None);
        clock.advance(Duration::from_secs(60));
        let now = clock.now_unix_millis();
        let stayed = at(&clock, 45.0, None);
        let moved = at(&clock, 55.0, None);
        assert_eq!(
            RULES.next_fix_due(T0, &[before.clone(), stayed], now),
            now + 60_000
        );
        assert_eq!(RULES.next_fix_due(T0, &[before, moved], now), now + 5_000);
    }

    #[test]
    fn slower_on_low_battery_even_when_moving() {
        let clock = ManualClock::new(T0);
        let now = T0;
        for (level, interval) in [
            (Some(100), 5_000),
            (Some(20), 5_000),
            (Some(19), 10_000),
            (Some(10), 10_000),
            (Some(9), 20_000),
            (Some(0), 20_000),
            (None, 5_000),
        ] {
            let fix = at(&clock, 0.0, level);
            assert_eq!(
                RULES.next_fix_due(T0, &[fix], now),
                now + interval,
                "{level:?}"
            );
        }
        let moved = [at(&clock, 0.0, Some(5)), at(&clock, 500.0, Some(5))];
        assert_eq!(RULES.next_fix_due(T0, &moved, now), now + 20_000);
    }

    #[test]
    fn overdue_is_now_and_clock_oddities_do_not_panic() {
        let clock = ManualClock::new(T0);
        let fix = at(&clock, 0.0, None);
        let later = T0 + 3_600_000;
        assert_eq!(
            RULES.next_fix_due(T0, std::slice::from_ref(&fix), later),
            later
        );
        // A fix recorded "before" the trigger (the clock was set back) counts as age 0.
        assert_eq!(
            RULES.next_fix_due(T0 + 1_000, std::slice::from_ref(&fix), T0),
            T0 + 5_000
        );
        let extreme = StoredFix {
            recorded_at: i64::MAX,
            ..fix
        };
        assert_eq!(RULES.next_fix_due(i64::MIN, &[extreme], 0), i64::MAX);
    }

    #[test]
    fn the_table_is_well_formed() {
        assert_eq!(RULES.by_age.first().map(|s| s.from_ms), Some(0));
        assert!(RULES
            .by_age
            .windows(2)
            .all(|w| w[0].from_ms < w[1].from_ms && w[0].interval_ms <= w[1].interval_ms));
        assert!(RULES.battery.iter().all(|s| s.factor >= 1));
        assert!(RULES.moved_interval_ms <= RULES.by_age[0].interval_ms);
    }
}
