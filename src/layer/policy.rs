//! When a valid token is renewed.
//!
//! The layer enforces the rules that keep sessions safe whatever the policy
//! says: only verified tokens of accepted requests are renewed, only while
//! `now < exp` (never inside the leeway after it), never past the session
//! cap, never to an earlier `exp`, only on 2xx/3xx responses without a gRPC
//! error status, never on `OPTIONS`, never when the handler ended the session
//! or set a token itself. Within those rules a [`RenewalPolicy`] decides: a
//! custom policy can be stricter, never looser. The built-in parts compose as
//! tuples, and [`DefaultPolicy`] is `(RenewWindow, Throttle, SuccessOnly)`.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::error::{ConfigError, ConfigErrorKind};

/// What a policy knows about a verified token when the request arrives.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalContext {
    /// The current time.
    pub now: i64,
    /// The token's `iat`, if it has one.
    pub issued_at: Option<i64>,
    /// The token's `exp`.
    pub expires_at: i64,
    /// The configured lifetime of a new token, in seconds.
    pub ttl: i64,
    /// The `exp` a renewal would get: `min(now + ttl, auth_time + max_session)`.
    pub renewed_expires_at: i64,
}

impl RenewalContext {
    /// A context, for testing custom policies.
    pub fn new(
        now: i64,
        issued_at: Option<i64>,
        expires_at: i64,
        ttl: i64,
        renewed_expires_at: i64,
    ) -> Self {
        Self {
            now,
            issued_at,
            expires_at,
            ttl,
            renewed_expires_at,
        }
    }
}

/// Decides whether a valid token is renewed.
pub trait RenewalPolicy: Send + Sync + 'static {
    /// Asked before the inner service runs: does this token qualify?
    fn should_renew(&self, ctx: &RenewalContext) -> bool;

    /// Asked after the inner service answered: may this response carry a
    /// renewed token? Defaults to yes. Only asked for responses the layer
    /// itself accepts ([`is_success`]): a policy can refuse more, never less.
    fn accepts_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        true
    }
}

/// Renew only when the token is close to expiry: `exp - now <= window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewWindow(Window);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Window {
    Absolute(i64),
    Fraction(f64),
}

impl RenewWindow {
    /// A fixed window, e.g. 20 minutes before expiry.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidDuration`] for a zero window.
    pub fn absolute(window: Duration) -> Result<Self, ConfigError> {
        match secs(window) {
            Some(s) if s > 0 => Ok(Self(Window::Absolute(s))),
            _ => Err(ConfigErrorKind::InvalidDuration.into()),
        }
    }

    /// A window that is a fraction of the token lifetime, e.g. `1.0 / 3.0`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidDuration`] unless `0 < fraction <= 1`.
    pub fn fraction(fraction: f64) -> Result<Self, ConfigError> {
        if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
            Ok(Self(Window::Fraction(fraction)))
        } else {
            Err(ConfigErrorKind::InvalidDuration.into())
        }
    }

    /// The window in seconds for a lifetime of `ttl` seconds.
    pub fn seconds(&self, ttl: i64) -> i64 {
        match self.0 {
            Window::Absolute(s) => s,
            // In range: 0 < fraction <= 1 and ttl fits an i64.
            Window::Fraction(f) => (ttl as f64 * f).floor() as i64,
        }
    }
}

impl RenewalPolicy for RenewWindow {
    fn should_renew(&self, ctx: &RenewalContext) -> bool {
        ctx.expires_at.saturating_sub(ctx.now) <= self.seconds(ctx.ttl)
    }
}

/// At most one renewal per interval: `now - iat >= interval`, and the renewal
/// must push `exp` out by at least the interval (so a session close to its cap
/// is not reissued over and over for a few seconds' gain).
///
/// The stateless check works across a cluster; single flight (parallel
/// requests with one old token get one replacement) is done by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    interval: i64,
}

impl Throttle {
    /// The interval in seconds.
    pub(crate) fn interval(&self) -> i64 {
        self.interval
    }

    /// A throttle of `interval` (whole seconds; zero disables the `iat` check
    /// but a renewal must still gain at least one second).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidDuration`] for an interval beyond `i64` seconds.
    pub fn new(interval: Duration) -> Result<Self, ConfigError> {
        secs(interval)
            .map(|interval| Self { interval })
            .ok_or_else(|| ConfigErrorKind::InvalidDuration.into())
    }
}

impl RenewalPolicy for Throttle {
    fn should_renew(&self, ctx: &RenewalContext) -> bool {
        let old_enough = ctx
            .issued_at
            .is_none_or(|iat| ctx.now.saturating_sub(iat) >= self.interval);
        let gain = ctx.renewed_expires_at.saturating_sub(ctx.expires_at);
        old_enough && gain >= self.interval.max(1)
    }
}

/// Whether a response may carry a renewed token at all: HTTP 2xx or 3xx, and
/// for gRPC no `grpc-status` other than `0` in the response headers (a
/// trailers-only error). The layer enforces this whatever the policy.
///
/// A gRPC error sent later, in the trailers of a streaming response, cannot
/// be seen here: the renewed token is already in the initial metadata by then.
pub fn is_success(status: StatusCode, headers: &HeaderMap) -> bool {
    let grpc_ok = headers
        .get("grpc-status")
        .is_none_or(|s| s.as_bytes() == b"0");
    (status.is_success() || status.is_redirection()) && grpc_ok
}

/// Renew only on success ([`is_success`]). The layer applies this rule
/// itself, so leaving `SuccessOnly` out of a custom policy does not make it
/// renew on errors; it is kept as a named part of [`DefaultPolicy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuccessOnly;

impl RenewalPolicy for SuccessOnly {
    fn should_renew(&self, _ctx: &RenewalContext) -> bool {
        true
    }

    fn accepts_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        is_success(status, headers)
    }
}

/// The default policy: renew inside the window, throttled, on success.
pub type DefaultPolicy = (RenewWindow, Throttle, SuccessOnly);

/// The defaults: renew within 20 minutes of expiry, at most once a minute.
pub(crate) fn default_policy() -> DefaultPolicy {
    (
        RenewWindow(Window::Absolute(1200)),
        Throttle { interval: 60 },
        SuccessOnly,
    )
}

macro_rules! all_of {
    ($($name:ident $idx:tt),+) => {
        /// Every part must agree.
        impl<$($name: RenewalPolicy),+> RenewalPolicy for ($($name,)+) {
            fn should_renew(&self, ctx: &RenewalContext) -> bool {
                $(self.$idx.should_renew(ctx))&&+
            }

            fn accepts_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
                $(self.$idx.accepts_response(status, headers))&&+
            }
        }
    };
}

all_of!(A 0);
all_of!(A 0, B 1);
all_of!(A 0, B 1, C 2);
all_of!(A 0, B 1, C 2, D 3);
all_of!(A 0, B 1, C 2, D 3, E 4);

pub(crate) fn secs(d: Duration) -> Option<i64> {
    i64::try_from(d.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: i64, iat: i64, exp: i64, renewed: i64) -> RenewalContext {
        RenewalContext::new(now, Some(iat), exp, 3600, renewed)
    }

    #[test]
    fn window() {
        let w = RenewWindow::absolute(Duration::from_secs(1200)).unwrap();
        assert!(!w.should_renew(&ctx(1000, 0, 2201, 0)));
        assert!(w.should_renew(&ctx(1000, 0, 2200, 0)));
        let f = RenewWindow::fraction(0.5).unwrap();
        assert_eq!(f.seconds(3600), 1800);
        assert!(RenewWindow::fraction(0.0).is_err());
        assert!(RenewWindow::fraction(1.5).is_err());
        assert!(RenewWindow::fraction(f64::NAN).is_err());
        assert!(RenewWindow::absolute(Duration::ZERO).is_err());
    }

    #[test]
    fn throttle() {
        let t = Throttle::new(Duration::from_secs(60)).unwrap();
        assert!(
            !t.should_renew(&ctx(1059, 1000, 2000, 5000)),
            "iat too recent"
        );
        assert!(t.should_renew(&ctx(1060, 1000, 2000, 5000)));
        assert!(
            !t.should_renew(&ctx(1060, 1000, 2000, 2059)),
            "gains less than the interval"
        );
        assert!(t.should_renew(&ctx(1060, 1000, 2000, 2060)));
        let zero = Throttle::new(Duration::ZERO).unwrap();
        assert!(
            !zero.should_renew(&ctx(1060, 1000, 2000, 2000)),
            "never renews to the same exp"
        );
    }

    #[test]
    fn success_only() {
        let mut grpc_error = HeaderMap::new();
        grpc_error.insert("grpc-status", "7".parse().unwrap());
        assert!(SuccessOnly.accepts_response(StatusCode::OK, &HeaderMap::new()));
        assert!(SuccessOnly.accepts_response(StatusCode::SEE_OTHER, &HeaderMap::new()));
        assert!(!SuccessOnly.accepts_response(StatusCode::FORBIDDEN, &HeaderMap::new()));
        assert!(!SuccessOnly.accepts_response(StatusCode::OK, &grpc_error));
    }

    #[test]
    fn tuples_need_every_part() {
        let p = default_policy();
        assert!(p.should_renew(&ctx(2000, 1000, 3000, 5600)));
        assert!(!p.should_renew(&ctx(1000, 1000, 3000, 5600)));
        assert!(!p.accepts_response(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new()));
    }
}
