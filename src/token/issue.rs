//! What issuing a token gives and takes: the [`IssuedToken`] and a
//! session's own [`Lifetimes`]. (The [`Issuer`](crate::Issuer) that mints
//! login tokens is the layer's.)

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use crate::claims::Claims;
use crate::clock::datetime;

/// A freshly issued token and the claims it carries. `Debug` hides the token.
#[derive(Clone)]
pub struct IssuedToken<C> {
    token: String,
    claims: C,
}

impl<C> IssuedToken<C> {
    pub(crate) fn new(token: String, claims: C) -> Self {
        Self { token, claims }
    }
}

impl<C: Claims> IssuedToken<C> {
    /// The compact JWS to send to the client.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Takes the token out.
    pub fn into_token(self) -> String {
        self.token
    }

    /// The claims as signed.
    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// The token's `exp`, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> i64 {
        self.claims.registered().exp
    }

    /// When the token expires (its `exp`).
    pub fn expiry(&self) -> OffsetDateTime {
        datetime(self.expires_at())
    }

    /// When the token was issued (its `iat`, the layer's clock at login).
    pub fn issued_at(&self) -> OffsetDateTime {
        let registered = self.claims.registered();
        datetime(registered.iat.unwrap_or(registered.exp))
    }

    /// Seconds from issue to expiry (a cookie's `Max-Age`; for the cookie
    /// itself, [`CookieSource::set_cookie_for`](crate::CookieSource::set_cookie_for)).
    pub fn lifetime(&self) -> i64 {
        let registered = self.claims.registered();
        registered
            .exp
            .saturating_sub(registered.iat.unwrap_or(registered.exp))
    }
}

impl<C> fmt::Debug for IssuedToken<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A session's own lifetimes, for [`Issuer::issue_with`](crate::Issuer::issue_with): a token lifetime
/// and a session cap, each within the layer's limits; what is not set is the
/// layer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetimes {
    ttl: Option<Duration>,
    max_session: Option<Duration>,
}

impl Lifetimes {
    /// The layer's lifetimes (set what differs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The lifetime of each token of the session.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The session cap: no token of the session expires later than its
    /// login plus this.
    pub fn with_max_session(mut self, max_session: Duration) -> Self {
        self.max_session = Some(max_session);
        self
    }

    /// The token lifetime asked for, if any.
    pub(crate) fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The session cap asked for, if any.
    pub(crate) fn max_session(&self) -> Option<Duration> {
        self.max_session
    }
}
