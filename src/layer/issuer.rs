//! [`Issuer`]: the first token of a session, at login, from the layer's own
//! configuration, and verification outside a request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use crate::claims::{Claims, Confirmation};
use crate::dpop::{DPOP, DpopMode};
use crate::error::{IssueError, IssueErrorKind};
use crate::keys::Keys;
use crate::reject::{Rejection, RejectionKind};
use crate::revoke::{Checkpoint, OnReused, SessionRow, Settled, TokenIds};
use crate::sessions::{SessionEnv, SessionMetadata, Sessions};
use crate::token::{IssuedToken, Lifetimes, TokenEngine};

/// Mints login tokens with the same keys, clock, issuer, audience and
/// lifetimes the layer verifies with, so the two cannot disagree.
///
/// Cheap to clone; get one from [`SlidingJwtLayer::issuer`](crate::SlidingJwtLayer::issuer)
/// and hand it to your login handler.
pub struct Issuer<K, C> {
    engine: Arc<TokenEngine<K, C>>,
    checkpoint: Arc<Checkpoint<C>>,
    env: Arc<SessionEnv>,
}

impl<K, C> Issuer<K, C> {
    pub(crate) fn new(
        engine: Arc<TokenEngine<K, C>>,
        checkpoint: Arc<Checkpoint<C>>,
        env: Arc<SessionEnv>,
    ) -> Self {
        Self {
            engine,
            checkpoint,
            env,
        }
    }
}

impl<K, C> Clone for Issuer<K, C> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            checkpoint: self.checkpoint.clone(),
            env: self.env.clone(),
        }
    }
}

impl<K, C> fmt::Debug for Issuer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<K: Keys, C: Claims> Issuer<K, C> {
    /// Logs a user in: [`issue`](Self::issue)s the session's first token
    /// and records the session in the store's registry, with the request's
    /// `User-Agent` ([`SessionMetadata::of`]), so the user can list it and
    /// end it from another device ([`Session::sessions`](crate::Session::sessions)).
    /// A user at the layer's limit
    /// ([`with_max_sessions`](crate::SlidingJwtBuilder::with_max_sessions))
    /// first loses the least recently seen session, or is refused. Claims
    /// without a `sub`, or with one over 1 KiB, are issued but not recorded
    /// (nor counted against a limit); on a store without a registry
    /// nothing is recorded.
    ///
    /// ```
    /// use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?).build()?;
    /// let (request, _body) = http::Request::post("/login").body(())?.into_parts();
    /// let issued = layer.issuer().login(&request, StandardClaims::new("alice", Default::default())).await?;
    /// assert_eq!(layer.sessions().list("alice").await?.len(), 1);
    /// # let _ = issued;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`issue`](Self::issue); [`IssueErrorKind::Store`] when the store
    /// cannot record the session (answer 503 with `Retry-After`: no token
    /// was handed out), [`IssueErrorKind::TooManySessions`] when the layer
    /// refuses logins past its limit.
    ///
    /// With [`with_dpop`](crate::SlidingJwtBuilder::with_dpop), a login
    /// whose request carries a `DPoP` proof gets a token bound to the
    /// proof's key ([`dpop_binding`](Self::dpop_binding)); answer it with
    /// `"token_type": "DPoP"` and set no cookie (a bound token is never
    /// accepted from one). A bad proof is
    /// [`IssueErrorKind::InvalidDpopProof`], a missing nonce
    /// [`IssueErrorKind::UseDpopNonce`].
    pub async fn login(
        &self,
        request: &Parts,
        mut claims: C,
    ) -> Result<IssuedToken<C>, IssueError> {
        claims.registered_mut().cnf = self.dpop_binding(request).await?;
        self.login_with(claims, Lifetimes::new(), SessionMetadata::of(request))
            .await
    }

    /// The binding a login request asks for: the key of its `DPoP` proof
    /// (checked for the request's method and URL, age, nonce and one use,
    /// without `ath`), as the `cnf` to put in the session's claims. `None`
    /// for a request without a proof, or a layer without DPoP.
    ///
    /// # Errors
    /// [`IssueErrorKind::InvalidDpopProof`] for a bad or replayed proof, or
    /// none where DPoP is required; [`IssueErrorKind::UseDpopNonce`] when
    /// the proof lacks the server's current nonce ([`dpop_nonce`](Self::dpop_nonce)
    /// goes into the answer's `DPoP-Nonce`); [`IssueErrorKind::Store`] when
    /// the cluster's replay cache cannot answer.
    pub async fn dpop_binding(&self, request: &Parts) -> Result<Option<Confirmation>, IssueError> {
        let Some(guard) = &self.env.dpop else {
            return Ok(None);
        };
        if !request.headers.contains_key(DPOP) {
            return match guard.mode {
                DpopMode::Allowed => Ok(None),
                DpopMode::Required => Err(IssueError::new(IssueErrorKind::InvalidDpopProof, None)),
            };
        }
        let now = self.engine.clock.now();
        let checked = guard
            .check(&request.method, &request.uri, &request.headers, None, now)
            .map_err(|kind| {
                let kind = match kind {
                    RejectionKind::UseDpopNonce => IssueErrorKind::UseDpopNonce,
                    _ => IssueErrorKind::InvalidDpopProof,
                };
                IssueError::new(kind, None)
            })?;
        if let Some(cache) = self.env.store.replays() {
            match cache.remember(checked.id, guard.until(&checked)).await {
                Ok(true) => {}
                Ok(false) => return Err(IssueError::new(IssueErrorKind::InvalidDpopProof, None)),
                Err(e) => return Err(IssueError::new(IssueErrorKind::Store, Some(Box::new(e)))),
            }
        }
        Ok(Some(Confirmation::jkt(checked.jkt)))
    }

    /// The server's current DPoP nonce, for the `DPoP-Nonce` header of a
    /// login answer ([`IssueErrorKind::UseDpopNonce`], and every answer
    /// when nonces are required); `None` without DPoP.
    pub fn dpop_nonce(&self) -> Option<http::HeaderValue> {
        let guard = self.env.dpop.as_ref()?;
        Some(guard.nonce(self.engine.clock.now()))
    }

    /// [`login`](Self::login) with a session's own lifetimes (as
    /// [`issue_with`](Self::issue_with)) and the metadata to record.
    ///
    /// # Errors
    /// As [`login`](Self::login) and [`issue_with`](Self::issue_with).
    pub async fn login_with(
        &self,
        claims: C,
        lifetimes: Lifetimes,
        metadata: SessionMetadata,
    ) -> Result<IssuedToken<C>, IssueError> {
        let issued = self.issue_with(claims, lifetimes)?;
        let registered = issued.claims().registered();
        if let (Some(sub), Some(sid)) = (&registered.sub, &registered.sid) {
            let mut row = SessionRow::new(sid.clone(), sub.clone());
            let now = registered.iat.unwrap_or_else(|| self.engine.clock.now());
            row.created = registered.auth_time.unwrap_or(now);
            row.last_seen = now;
            row.expires = registered.exp;
            row.cap = self
                .engine
                .session_deadline(registered)
                .unwrap_or(registered.exp);
            row.user_agent = metadata.user_agent;
            row.address = metadata.address;
            Sessions {
                env: self.env.clone(),
            }
            .admit(row)
            .await?;
        }
        Ok(issued)
    }

    /// Starts a session: sets `iat` and `auth_time` to now, a new random `sid`
    /// and `jti`, `exp = now + ttl` (within the session cap), the configured
    /// `iss` and `aud`, removes `nbf`, and signs with the active key. Your own
    /// claims are kept as they are.
    ///
    /// # Errors
    /// An [`IssueError`] when the claims do not serialize to a JSON object,
    /// the backend fails to sign, or the system's randomness fails.
    pub fn issue(&self, claims: C) -> Result<IssuedToken<C>, IssueError> {
        let (token, claims) = self.engine.issue(claims, None, None)?;
        Ok(IssuedToken::new(token, claims))
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
    ///     .with_lifetime_limits(Lifetimes::new().with_max_session(30 * day))
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
        let engine = &self.engine;
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
        let ttl = check(lifetimes.ttl(), engine.ttl_limit)?;
        let max_session = check(lifetimes.max_session(), engine.max_session_limit)?;
        let (token, claims) = engine.issue(claims, ttl, max_session)?;
        Ok(IssuedToken::new(token, claims))
    }

    /// Verifies `token` exactly as the layer does (signature, algorithm, `kid`,
    /// claims, session cap, and the revocation store), outside a request: for
    /// a WebSocket upgrade, a message queue, or a test. With reuse detection,
    /// a replaced token past the grace is refused
    /// ([`TokenReused`](crate::RejectionKind::TokenReused)) but its session
    /// is not ended (a token kept for later is not a stolen copy), and a
    /// replacement's first use is marked as the layer would. A DPoP-bound
    /// token is refused ([`SchemeMismatch`](crate::RejectionKind::SchemeMismatch)):
    /// its proof comes with a request, and only the layer checks it.
    ///
    /// # Errors
    /// The [`Rejection`] the layer would have answered with.
    pub async fn verify(&self, token: &str) -> Result<C, Rejection> {
        let (engine, checkpoint) = (&self.engine, &self.checkpoint);
        let now = engine.clock.now();
        let (claims, _, deadline) = engine.verify_keyed(token, now).map_err(Rejection::new)?;
        // A bound token needs its proof, which only a request carries.
        if claims.registered().cnf.is_some() {
            return Err(Rejection::new(RejectionKind::SchemeMismatch));
        }
        let ids = TokenIds::of(claims.registered());
        // A reused token is refused, but its session is not ended here:
        // `verify` may check a token kept for later (a queued message, a
        // stored WebSocket token), whose late arrival is not a stolen copy.
        // A token `renew_with` superseded is refused here: outside a request
        // there is no response to hand its successor to.
        if let Some(pending) = checkpoint.enter(&ids, now).map_err(Rejection::new)? {
            let settled = checkpoint
                .settle(pending, &claims, deadline, now, OnReused::Refuse)
                .await
                .map_err(Rejection::new)?;
            if settled == Settled::Superseded {
                return Err(Rejection::new(RejectionKind::Revoked));
            }
        }
        if let Some(mark) = checkpoint.mark(claims.registered(), now) {
            mark.await
                .map_err(|_| Rejection::new(RejectionKind::StoreUnavailable))?;
        }
        Ok(claims)
    }

    /// The current time according to the layer's clock.
    pub fn now(&self) -> i64 {
        self.engine.clock.now()
    }
}
