//! Where "now" comes from.
//!
//! Every time decision the layer makes (expiry, `nbf`, the renew window, the
//! throttle, the session cap) reads a [`Clock`], so tests can drive time with a
//! [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, PrimitiveDateTime};

/// A source of the current time as a JWT `NumericDate` (whole seconds since the
/// Unix epoch).
///
/// Implemented for `Arc<T>` and `Box<T>` of any clock, `Arc<dyn Clock>`
/// included, so a clock chosen at run time (or shared with the rest of the
/// application) plugs in as it is:
///
/// ```
/// use std::sync::Arc;
/// use tower_sliding_jwt::{Clock, Key, ManualClock, SlidingJwtLayer, StandardClaims, SystemClock};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// let testing = std::env::var_os("FROZEN_CLOCK").is_some();
/// let clock: Arc<dyn Clock> = if testing {
///     Arc::new(ManualClock::new(1_700_000_000))
/// } else {
///     Arc::new(SystemClock)
/// };
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_clock(clock.clone())
///     .build()?;
/// assert_eq!(layer.issuer().now(), clock.now());
/// # Ok(())
/// # }
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time in whole seconds since the Unix epoch.
    fn now(&self) -> i64;
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> i64 {
        (**self).now()
    }
}

impl<T: Clock + ?Sized> Clock for Box<T> {
    fn now(&self) -> i64 {
        (**self).now()
    }
}

/// `unix_seconds` as a UTC date-time, saturating at the years -9999 and 9999.
pub(crate) fn datetime(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap_or_else(|_| {
        if unix_seconds < 0 {
            PrimitiveDateTime::MIN.assume_utc()
        } else {
            PrimitiveDateTime::MAX.assume_utc()
        }
    })
}

/// Appends `unix_seconds` as an HTTP date (RFC 9110 §5.6.7 IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), clamped to the years 1970 to 9999.
pub(crate) fn push_http_date(unix_seconds: i64, out: &mut String) {
    use std::fmt::Write as _;
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = datetime(unix_seconds.clamp(0, 253_402_300_799));
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
    );
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
            // A clock set before 1970: report it as a negative time rather than panic.
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tower_sliding_jwt::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_700_000_000);
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), 1_700_000_090);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `unix_seconds`.
    pub fn new(unix_seconds: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(unix_seconds)),
        }
    }

    /// Sets the time to `unix_seconds`.
    pub fn set(&self, unix_seconds: i64) {
        self.now.store(unix_seconds, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole seconds; saturating).
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(secs))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800);
    }

    #[test]
    fn http_dates() {
        let mut out = String::new();
        push_http_date(784_111_777, &mut out);
        assert_eq!(out, "Sun, 06 Nov 1994 08:49:37 GMT");
        out.clear();
        push_http_date(-5, &mut out);
        assert_eq!(out, "Thu, 01 Jan 1970 00:00:00 GMT");
        out.clear();
        push_http_date(i64::MAX, &mut out);
        assert_eq!(out, "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(datetime(i64::MIN).year(), -9999);
        assert_eq!(datetime(1_700_000_000).unix_timestamp(), 1_700_000_000);
    }

    #[test]
    fn manual_clock_saturates() {
        let clock = ManualClock::new(i64::MAX - 1);
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.now(), i64::MAX);
    }
}
