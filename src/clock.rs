//! Time, as the daemon sees it. Every decision that depends on the time (rotation due, deletion window over) asks
//! a [`Clock`], never the system directly, so tests can move time forward instead of sleeping.
//!
//! Invariant: times are stored and compared as [`UnixMillis`] (UTC milliseconds since the Unix epoch).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// UTC milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub const MILLIS_PER_DAY: i64 = 86_400_000;

    pub fn plus_days(self, days: u32) -> Self {
        UnixMillis(
            self.0
                .saturating_add(i64::from(days) * Self::MILLIS_PER_DAY),
        )
    }

    pub fn to_timestamp(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1000),
            nanos: (self.0.rem_euclid(1000) * 1_000_000) as i32,
        }
    }
}

impl UnixMillis {
    /// RFC 3339 in UTC with exactly three fractional digits, e.g. `2026-11-28T21:02:09.813Z`: fixed width, so
    /// these strings sort as the times they name (for years 0000-9999).
    pub fn rfc3339_millis(self) -> String {
        use chrono::{Datelike, Timelike};
        // Written out rather than through a format string, which chrono would parse on every call: this runs for
        // every audit record.
        chrono::DateTime::from_timestamp_millis(self.0)
            // Four-digit years only, so every string has the same width (and sorts); a time outside them is not one
            // a clock gives.
            .filter(|t| (-9999..=9999).contains(&t.year()))
            .map(|t| {
                let sign = if t.year() < 0 { "-" } else { "" };
                format!(
                    "{sign}{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.year().unsigned_abs(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.timestamp_subsec_millis()
                )
            })
            .unwrap_or_else(|| "0000-00-00T00:00:00.000Z".to_owned())
    }

    /// The time an RFC 3339 string names (any offset, any fraction), to the millisecond.
    pub fn parse_rfc3339(text: &str) -> Option<prost_types::Timestamp> {
        let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        })
    }

    pub fn from_timestamp(ts: &prost_types::Timestamp) -> Self {
        UnixMillis(
            ts.seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(ts.nanos.clamp(0, 999_999_999)) / 1_000_000),
        )
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to: for tests of rotation and deletion windows.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Starts at the current system time.
    pub fn new() -> Self {
        ManualClock(Arc::new(AtomicI64::new(SystemClock.now().0)))
    }

    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn advance_days(&self, days: u32) {
        self.0.fetch_add(
            i64::from(days) * UnixMillis::MILLIS_PER_DAY,
            Ordering::SeqCst,
        );
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_millis_is_fixed_width() {
        assert_eq!(UnixMillis(0).rfc3339_millis(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_795_899_729_813).rfc3339_millis(),
            "2026-11-28T21:02:09.813Z"
        );
        assert_eq!(UnixMillis(-1).rfc3339_millis(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            UnixMillis(-62_135_596_800_000).rfc3339_millis(),
            "0001-01-01T00:00:00.000Z"
        );
        assert_eq!(
            UnixMillis(253_402_300_799_999).rfc3339_millis(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            UnixMillis(253_402_300_800_000).rfc3339_millis(),
            "0000-00-00T00:00:00.000Z"
        );
        assert_eq!(
            UnixMillis(i64::MIN).rfc3339_millis(),
            "0000-00-00T00:00:00.000Z"
        );
        // Year 0 and before, as the time crate wrote them.
        assert_eq!(
            UnixMillis(-62_167_219_200_000).rfc3339_millis(),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            UnixMillis(-62_198_755_200_000).rfc3339_millis(),
            "-0001-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn rfc3339_parses_any_offset_and_fraction() {
        let t = UnixMillis::parse_rfc3339("2026-11-28T22:02:09.813456+01:00").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_795_899_729, 813_456_000));
        assert_eq!(
            UnixMillis::from_timestamp(&t).rfc3339_millis(),
            "2026-11-28T21:02:09.813Z"
        );
        assert!(UnixMillis::parse_rfc3339("2026-11-28").is_none());
    }
}
