//! Issuing the first token of a session, at login, from the layer's own
//! configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::TokenEngine;
use crate::claims::Claims;
use crate::clock::datetime;
use crate::error::{IssueError, IssueErrorKind};
use crate::keys::Keys;
use crate::reject::{Rejection, RejectionKind};
use crate::revoke::{Admission, TokenIds, admit};

/// Mints login tokens with the same keys, clock, issuer, audience and
/// lifetimes the layer verifies with, so the two cannot disagree.
///
/// Cheap to clone; get one from [`SlidingJwtLayer::issuer`](crate::SlidingJwtLayer::issuer)
/// and hand it to your login handler.
pub struct Issuer<K, C> {
    pub(crate) core: Arc<TokenEngine<K, C>>,
}

impl<K, C> Clone for Issuer<K, C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

impl<K, C> fmt::Debug for Issuer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer").field("core", &self.core).finish()
    }
}

impl<K: Keys, C: Claims> Issuer<K, C> {
    /// Starts a session: sets `iat` and `auth_time` to now, a new random `sid`
    /// and `jti`, `exp = now + ttl` (within the session cap), the configured
    /// `iss` and `aud`, removes `nbf`, and signs with the active key. Your own
    /// claims are kept as they are.
    ///
    /// # Errors
    /// An [`IssueError`] when the claims do not serialize to a JSON object,
    /// the backend fails to sign, or the system's randomness fails.
    pub fn issue(&self, claims: C) -> Result<IssuedToken<C>, IssueError> {
        let (token, claims) = self.core.issue(claims, None, None)?;
        Ok(IssuedToken { token, claims })
    }

    /// [`issue`](Self::issue), for a session with lifetimes of its own (e.g.
    /// "remember me": a 30-day cap instead of the layer's day). They are
    /// written into the token (`session_ttl`, `session_exp`) and kept by
    /// every renewal on every instance; a lifetime not given is the layer's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sliding_jwt::{Key, Lifetimes, SlidingJwtLayer, StandardClaims};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let day = Duration::from_secs(86_400);
    /// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
    ///     .with_max_session(day)
    ///     .with_lifetime_limits(Duration::from_secs(3600), 30 * day)
    ///     .build()?;
    /// let remembered = layer
    ///     .issuer()
    ///     .issue_with(StandardClaims::new("alice", Default::default()), Lifetimes::new().with_max_session(30 * day))?;
    /// let r = &remembered.claims().registered;
    /// assert_eq!(r.session_exp, Some(r.auth_time.unwrap() + 30 * 86_400));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`IssueErrorKind::InvalidLifetime`](crate::IssueErrorKind::InvalidLifetime)
    /// when a lifetime is zero or above the layer's limits
    /// ([`SlidingJwtBuilder::with_lifetime_limits`](crate::SlidingJwtBuilder::with_lifetime_limits));
    /// otherwise as [`issue`](Self::issue).
    pub fn issue_with(
        &self,
        claims: C,
        lifetimes: Lifetimes,
    ) -> Result<IssuedToken<C>, IssueError> {
        let core = &self.core;
        let check = |lifetime: Option<Duration>, limit: i64| -> Result<Option<i64>, IssueError> {
            lifetime
                .map(|d| {
                    i64::try_from(d.as_secs())
                        .ok()
                        .filter(|&s| s > 0 && s <= limit)
                        .ok_or_else(|| IssueError::new(IssueErrorKind::InvalidLifetime, None))
                })
                .transpose()
        };
        let ttl = check(lifetimes.ttl, core.ttl_limit)?;
        let max_session = check(lifetimes.max_session, core.max_session_limit)?;
        let (token, claims) = core.issue(claims, ttl, max_session)?;
        Ok(IssuedToken { token, claims })
    }

    /// Verifies `token` exactly as the layer does (signature, algorithm, `kid`,
    /// claims, session cap, and the revocation store), outside a request: for
    /// a WebSocket upgrade, a message queue, or a test. With reuse detection,
    /// a replaced token past the grace is refused
    /// ([`TokenReused`](crate::RejectionKind::TokenReused)) but its session
    /// is not ended (a token kept for later is not a stolen copy), and a
    /// replacement's first use is marked as the layer would.
    ///
    /// # Errors
    /// The [`Rejection`] the layer would have answered with.
    pub async fn verify(&self, token: &str) -> Result<C, Rejection> {
        let core = &self.core;
        let now = core.clock.now();
        let claims = core.verify(token, now).map_err(Rejection::new)?;
        let answer = core
            .store
            .check(&TokenIds::of(claims.registered()), now)
            .resolve()
            .await;
        match admit(answer, now, core.reuse_grace()) {
            Admission::Admit => {}
            Admission::Refuse(kind) => return Err(Rejection::new(kind)),
            // Refused, but the session is not ended here: `verify` may
            // check a token kept for later (a queued message, a stored
            // WebSocket token), whose late arrival is not a stolen copy.
            Admission::Reused => return Err(Rejection::new(RejectionKind::TokenReused)),
        }
        if let Some(mark) = core.reuse_mark(claims.registered(), now) {
            mark.await
                .map_err(|_| Rejection::new(RejectionKind::StoreUnavailable))?;
        }
        Ok(claims)
    }

    /// The current time according to the layer's clock.
    pub fn now(&self) -> i64 {
        self.core.clock.now()
    }
}

/// A freshly issued token and the claims it carries. `Debug` hides the token.
#[derive(Clone)]
pub struct IssuedToken<C> {
    token: String,
    claims: C,
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

/// A session's own lifetimes, for [`Issuer::issue_with`]: a token lifetime
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
}
