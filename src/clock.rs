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
        const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| t.format(FORMAT).ok())
            .unwrap_or_else(|| "0000-00-00T00:00:00.000Z".to_owned())
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
    }
}
