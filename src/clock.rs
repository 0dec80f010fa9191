//! Time as a dependency: handlers, the delivery engine and the rotation scheduler ask the
//! [`Clock`] the daemon was built with rather than the system, so tests can move time (the
//! 48-hour revert window, retry schedules) without sleeping.
//!
//! Bottom layer (plain types): imports nothing from the crate.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A point in time, UTC.
pub type Timestamp = DateTime<Utc>;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Time since an arbitrary start on a clock that never steps back, for measuring intervals
    /// (the rate limiter's buckets).
    fn monotonic(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }

    fn monotonic(&self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to. Shared by cloning.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.timestamp_millis())))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        from_millis(self.0.load(Ordering::SeqCst))
    }

    /// The clock's own time since the epoch: moves exactly as far as [`ManualClock::advance`].
    fn monotonic(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.load(Ordering::SeqCst)).unwrap_or(0))
    }
}

/// Milliseconds since the epoch, as stored in the database.
pub fn to_millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// RFC 3339, UTC, millisecond precision: the API's one time format.
pub fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde helpers for API bodies.
pub mod serde_rfc3339 {
    use super::*;

    /// Serialises a timestamp as RFC 3339.
    pub fn serialize<S: serde::Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*at))
    }

    /// Optional timestamps (`null` when absent).
    pub mod option {
        use super::*;

        /// Serialises `Some` as RFC 3339 and `None` as `null`.
        pub fn serialize<S: serde::Serializer>(
            at: &Option<Timestamp>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&rfc3339(*at)),
                None => s.serialize_none(),
            }
        }
    }
}
