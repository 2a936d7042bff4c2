//! Handler-side session control: the per-request [`Session`] handle. (What
//! every session of a layer shares, and a user's other sessions, are in
//! `sessions/`; ending sessions by id outside a request is the
//! [`Revoker`](crate::Revoker)'s, in `revoke/`.)

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use crate::claims::Claims;
use crate::clock::{Clock, datetime};
use crate::revoke::{
    EndReason, Revocation, RevocationStore, RevocationTarget, StoreError, StoreErrorKind, record,
};
use crate::sessions::{SessionEnv, SessionInfo, Sessions};
use crate::token::{Held, RawToken};

/// Put into every request the layer authenticated, beside its
/// `Session<C>`: a zero-sized marker (it costs no allocation), so an
/// extractor asking for another claims type can tell a programming error
/// (the layer did authenticate, with another type) from a request the layer
/// never saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthenticatedByLayer;

/// The claims types layers of this process were built with, for the error a
/// claims-type mismatch logs (a handful of names at most).
static CLAIMS_TYPES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Notes that a layer produces `Session<C>`.
pub(crate) fn register_claims_type<C>() {
    let name = std::any::type_name::<C>();
    let mut types = CLAIMS_TYPES.lock().unwrap_or_else(PoisonError::into_inner);
    if !types.contains(&name) && types.len() < 64 {
        types.push(name);
    }
}

/// The claims types layers of this process produce, `, `-separated.
#[cfg_attr(not(all(feature = "axum", feature = "tracing")), allow(dead_code))]
pub(crate) fn claims_types() -> String {
    CLAIMS_TYPES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join(", ")
}

/// What the handler asked for.
pub(crate) enum Action<C> {
    None,
    End,
    RenewWith(C),
}

struct Inner<C> {
    verified: Held<C>,
    env: Arc<SessionEnv>,
    /// The session's cap, when the token says when it began.
    deadline: Option<i64>,
    /// When a revocation of this session can be forgotten.
    session_until: i64,
    /// When a revocation of this one token can be forgotten.
    token_until: i64,
    action: Mutex<Action<C>>,
    /// The handler said this request is not activity (rule 17).
    not_activity: std::sync::atomic::AtomicBool,
}

/// The verified session: the one thing the layer puts into the request's
/// extensions. It dereferences to your claims type `C`, carries the raw token,
/// and lets the handler end the session or renew it with new claims.
///
/// Everything a request needs lives in one allocation, shared by every clone
/// (cloning is a reference-count increment). Read it with
/// `request.extensions().get::<Session<C>>()` (tonic, hyper), or in axum with
/// `Extension<Session<C>>` — or, with the `axum` feature, the extractors
/// [`Authenticated<C>`](crate::extract::Authenticated) and `Session<C>`
/// itself, which answer 401 when the layer did not authenticate the request.
///
/// ```
/// use tower_sliding_jwt::{Session, StandardClaims};
///
/// async fn logout(session: Session<StandardClaims>) -> http::StatusCode {
///     // `session` derefs to the claims.
///     let _user = session.registered.sub.as_deref();
///     match session.end().await {
///         Ok(()) => http::StatusCode::NO_CONTENT,
///         Err(_) => http::StatusCode::SERVICE_UNAVAILABLE,
///     }
/// }
/// # let _ = logout;
/// ```
pub struct Session<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Session<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl<C> Deref for Session<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.inner.verified.claims
    }
}

impl<C> Session<C> {
    /// The verified claims of the current token (also reachable through `Deref`).
    pub fn claims(&self) -> &C {
        &self.inner.verified.claims
    }

    /// The verified token as it arrived.
    pub fn token(&self) -> &RawToken {
        &self.inner.verified.token
    }

    /// The token's canonical identity: the same for every copy of it.
    pub(crate) fn identity(&self) -> Option<crate::token::TokenId> {
        self.inner.verified.identity()
    }

    /// The session's cap (computed once, when the token was validated):
    /// `None` when the token does not say when the session began.
    pub(crate) fn deadline(&self) -> Option<i64> {
        self.inner.deadline
    }
}

impl<C: Claims> Session<C> {
    /// When the current token expires (its `exp`). A renewal on this
    /// response, if any, is in the response's [`Renewed`](crate::Renewed) extension.
    pub fn expiry(&self) -> OffsetDateTime {
        datetime(self.claims().registered().exp)
    }

    /// When the current token was issued (its `iat`), if it says.
    pub fn issued_at(&self) -> Option<OffsetDateTime> {
        self.claims().registered().iat.map(datetime)
    }

    /// When the user logged in (the session's `auth_time`), if the token says.
    pub fn authenticated_at(&self) -> Option<OffsetDateTime> {
        self.claims().registered().auth_time.map(datetime)
    }

    pub(crate) fn new(
        verified: Held<C>,
        env: Arc<SessionEnv>,
        deadline: Option<i64>,
        leeway: i64,
    ) -> Self {
        let registered = verified.claims.registered();
        // No token of the session outlives its cap (its own, or the layer's);
        // without `auth_time` the session is never renewed, so it ends with
        // this token.
        let session_until = deadline.unwrap_or(registered.exp).saturating_add(leeway);
        // A token revoked by itself matters only while it can verify.
        let token_until = registered.exp.saturating_add(leeway);
        Self {
            inner: Arc::new(Inner {
                verified,
                env,
                deadline,
                session_until,
                token_until,
                action: Mutex::new(Action::None),
                not_activity: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Logs out: revokes the session (by `sid`, remembered until the session
    /// cap plus leeway; or the token by `jti` when it has no `sid`, remembered
    /// until its `exp` plus leeway), so every token of it gets 401 from now on; this
    /// response carries no renewed token, and in cookie mode it expires the
    /// cookie.
    ///
    /// The logout lasts as long as the store keeps it: across restarts and
    /// crashes with `DurableStore` (feature `sqlite`) or
    /// `redis::RedisStore`, until the next restart with the default
    /// [`MemoryStore`](crate::MemoryStore). Only services checking the same
    /// store see it (a verify-only service needs the issuer's shared store).
    ///
    /// # Errors
    /// The store's error when it cannot record the revocation (e.g.
    /// [`StoreErrorKind::Full`]): the token then stays valid, so answer with an
    /// error, not a success (the response still carries no renewal); or [`StoreErrorKind::NotRevocable`] for a
    /// token with neither `sid` nor `jti`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub async fn end(&self) -> Result<(), StoreError> {
        self.set(Action::End);
        let registered = self.inner.verified.claims.registered();
        let revocation = match (&registered.sid, &registered.jti) {
            (Some(sid), _) => Revocation::new(
                RevocationTarget::Session(sid.clone()),
                self.inner.session_until,
            ),
            (None, Some(jti)) => {
                Revocation::new(RevocationTarget::Token(jti.clone()), self.inner.token_until)
            }
            (None, None) => return Err(StoreErrorKind::NotRevocable.into()),
        };
        let revocation = revocation.with_reason(EndReason::Logout);
        let env = &self.inner.env;
        record(&*env.store, revocation, env.clock.now(), &env.counters).await?;
        // The session is over; its row in the registry goes too (a row left
        // behind, the store failing now, is hidden by every listing).
        if let (Some(registry), Some(sub), Some(sid)) =
            (env.store.sessions(), &registered.sub, &registered.sid)
            && let Err(error) = registry.remove(sub, vec![sid.clone()]).await
        {
            crate::log::event!(debug, %error, "a logged-out session's row stays until the next listing");
        }
        Ok(())
    }

    /// The live sessions of this session's user (its `sub`), most recently
    /// seen first, this one flagged [`current`](SessionInfo::current) when
    /// it was recorded at login. Empty for a token without `sub`.
    ///
    /// # Errors
    /// The store's error (answer 503, never a partial list);
    /// [`StoreErrorKind::Unsupported`] when the store keeps no registry.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let registered = self.inner.verified.claims.registered();
        let Some(sub) = &registered.sub else {
            return Ok(Vec::new());
        };
        self.registry()
            .list_marked(sub, registered.sid.as_deref())
            .await
    }

    /// "Log out other devices": ends every other live session of this
    /// session's user; this one goes on. Answers how many ended.
    ///
    /// # Errors
    /// As [`sessions`](Self::sessions), or the store's error when it cannot
    /// record a revocation (some may have ended; none is reported ended
    /// that did not).
    pub async fn end_others(&self) -> Result<usize, StoreError> {
        let registered = self.inner.verified.claims.registered();
        let Some(sub) = &registered.sub else {
            return Ok(0);
        };
        match &registered.sid {
            Some(sid) => self.registry().end_all_except(sub, sid).await,
            None => self.registry().end_all(sub).await,
        }
    }

    /// Ends session `sid` of this session's user: `true` once it ended,
    /// `false` (and nothing touched) when `sid` is not a live session of
    /// the same user, whoever owns it. The current session can always be
    /// ended, recorded or not (as [`end`](Self::end)).
    ///
    /// # Errors
    /// As [`end_others`](Self::end_others).
    pub async fn end_session(&self, sid: &str) -> Result<bool, StoreError> {
        let registered = self.inner.verified.claims.registered();
        if registered.sid.as_deref() == Some(sid) {
            return self.end().await.map(|()| true);
        }
        let Some(sub) = &registered.sub else {
            return Ok(false);
        };
        self.registry().end(sub, sid).await
    }

    /// Resolves, with the reason, when this session ends: logout or
    /// [`end`](Self::end), ended from another session or by an admin,
    /// reuse detected, its cap reached, idle past its newest token's `exp`,
    /// or the claims of this request's token superseded by
    /// [`renew_with`](Self::renew_with) — on this instance or any other
    /// sharing the store. A renewal does not resolve it: it follows the
    /// session, not this request's token. For a WebSocket, a Server-Sent
    /// Events stream or a gRPC server stream, race the stream against it
    /// and close when it resolves (with close code 4001 and the reason, an
    /// `event: session-ended`, or `UNAUTHENTICATED`); on
    /// [`EndReason::CannotTell`](crate::EndReason::CannotTell) close
    /// without saying it ended (the store could not tell: fail closed).
    ///
    /// `Send` and `'static`; it costs one entry in the layer while it
    /// lives, and nothing per second: one watcher per layer wakes exactly
    /// the connections of a session that ended (see the guide "Long-lived
    /// connections").
    ///
    /// ```
    /// use tower_sliding_jwt::{EndReason, Session, StandardClaims};
    ///
    /// async fn stream(session: Session<StandardClaims>) {
    ///     let ended = session.ended();
    ///     tokio::pin!(ended);
    ///     loop {
    ///         tokio::select! {
    ///             reason = &mut ended => {
    ///                 // Send the close frame or the last event naming `reason`.
    ///                 let _ = reason == EndReason::Logout;
    ///                 break;
    ///             }
    ///             () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
    ///                 // Send the next event.
    ///             }
    ///         }
    ///     }
    /// }
    /// # let _ = stream;
    /// ```
    pub fn ended(&self) -> crate::future::Ended {
        self.inner
            .env
            .watcher
            .watch(self.inner.verified.claims.registered(), self.inner.deadline)
    }

    fn registry(&self) -> Sessions {
        Sessions {
            env: self.inner.env.clone(),
        }
    }

    /// Issues a token with updated claims on this response, now, whatever the
    /// renew window (e.g. after a role change). `sid` and `auth_time` are kept
    /// from the current token, `iat`, `exp` and `jti` are set by the layer, and
    /// the session cap still holds. Ignored if the session is ended.
    ///
    /// The new token *supersedes* every earlier token of the session: before
    /// it is handed out, the store records a cut-off at its `iat` (every
    /// token of the session issued then or earlier, but this new one, is
    /// never again served or renewed with its own claims, whichever instance
    /// it reaches and whatever the single flight still holds), and the
    /// current token's `jti` is revoked. A replacement a parallel request
    /// already handed out with the old claims is served as the new token,
    /// which its holder gets with the response — so a client that kept it
    /// (its `exp` may equal the new token's) is never logged out by the role
    /// change; where the new token cannot be found for it, it is refused.
    /// Parallel requests still holding the current token get this new token.
    /// This fails closed: when the store cannot record these revocations, or
    /// the current token has no `jti`, or the response is not a success, no
    /// token is issued and the client keeps its current one.
    pub fn renew_with(&self, claims: C) {
        let mut action = self
            .inner
            .action
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !matches!(*action, Action::End) {
            *action = Action::RenewWith(claims);
        }
    }

    fn set(&self, action: Action<C>) {
        *self
            .inner
            .action
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = action;
    }

    /// Says this request is not activity (only activity slides a session):
    /// a background poll, a
    /// status check. It is served as usual, but its response never renews
    /// the token, so a session whose user is idle still times out. (A
    /// [`renew_with`](Self::renew_with) on the same request still issues its
    /// token: that is the handler's own decision.) The layer-wide rule is
    /// [`SlidingJwtBuilder::with_activity_rule`](crate::SlidingJwtBuilder::with_activity_rule).
    pub fn mark_not_activity(&self) {
        self.inner
            .not_activity
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the handler marked this request as not activity.
    pub(crate) fn is_activity(&self) -> bool {
        !self
            .inner
            .not_activity
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn take_action(&self) -> Action<C> {
        std::mem::replace(
            &mut *self
                .inner
                .action
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            Action::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{RegisteredClaims, StandardClaims};
    use crate::clock::ManualClock;
    use crate::revoke::{MemoryStore, RevocationStatus, TokenIds};
    use crate::stats::Counters;
    use crate::token::Verified;

    #[tokio::test]
    async fn a_token_logged_out_by_jti_is_remembered_until_its_own_expiry() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(1000);
        let claims: StandardClaims = StandardClaims {
            registered: RegisteredClaims {
                jti: Some("j".into()),
                auth_time: Some(900),
                exp: 2000,
                ..RegisteredClaims::default()
            },
            ..StandardClaims::default()
        };
        let verified = Verified {
            claims: claims.clone(),
            token: crate::token::RawToken::copy("h.p.s"),
            key: crate::token::KeyRef {
                id: 0,
                alg: jsonwebtoken::Algorithm::HS256,
            },
        };
        let counters = Arc::new(Counters::new());
        let env = Arc::new(SessionEnv {
            watcher: crate::sessions::Watcher::new(
                Arc::new(store.clone()),
                Arc::new(clock.clone()),
                counters.clone(),
                5,
            ),
            store: Arc::new(store.clone()),
            clock: Arc::new(clock),
            counters,
            leeway: 5,
            max_session: 86_400,
            max_sessions: crate::sessions::MAX_SESSIONS_PER_SUBJECT,
            on_limit: crate::sessions::OnLimit::EndLeastRecent,
            dpop: None,
        });
        let session = Session::new(Held::Owned(verified), env, Some(900 + 86_400), 5);
        session.end().await.unwrap();
        let ids = TokenIds::of(&claims.registered);
        assert_eq!(store.status(&ids, 2004), RevocationStatus::Revoked);
        // The token cannot verify from exp + leeway on: the entry is over, not
        // kept until the session cap.
        store.purge(2005);
        assert!(store.is_empty());
    }
}
