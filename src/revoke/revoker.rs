//! [`Revoker`]: ending sessions outside a request, and the one function every
//! revocation goes through (counted and logged, never a token).

use std::fmt;
use std::sync::Arc;

use super::{EndReason, Revocation, RevocationStore, RevocationTarget, StoreError};
use crate::clock::Clock;
use crate::log::event;
use crate::stats::{Counters, Event};

/// Revokes sessions outside a request: an admin ending a user's sessions, a
/// password change logging out every device. Get one from
/// [`SlidingJwtLayer::revoker`](crate::SlidingJwtLayer::revoker).
#[derive(Clone)]
pub struct Revoker {
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// `max_session + leeway`: no token issued before now outlives now + this.
    pub(crate) horizon: i64,
    pub(crate) counters: Arc<Counters>,
}

impl fmt::Debug for Revoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revoker")
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

impl Revoker {
    /// Revokes every token of the session `sid`.
    ///
    /// # Errors
    /// The store's error when it cannot record the revocation.
    pub async fn revoke_session(&self, sid: &str) -> Result<(), StoreError> {
        self.revoke(RevocationTarget::Session(sid.to_owned())).await
    }

    /// Revokes the single token `jti`.
    ///
    /// # Errors
    /// The store's error when it cannot record the revocation.
    pub async fn revoke_token(&self, jti: &str) -> Result<(), StoreError> {
        self.revoke(RevocationTarget::Token(jti.to_owned())).await
    }

    /// "Log out everywhere": revokes every session of `subject` that
    /// authenticated before the current second. A session started in this
    /// second or later stays valid, so a password-change handler can revoke and
    /// then issue the current device a fresh login token.
    ///
    /// # Errors
    /// The store's error when it cannot record the revocation.
    pub async fn revoke_subject(&self, subject: &str) -> Result<(), StoreError> {
        let before = self.clock.now();
        self.revoke(RevocationTarget::Subject {
            subject: subject.to_owned(),
            before,
        })
        .await
    }

    async fn revoke(&self, target: RevocationTarget) -> Result<(), StoreError> {
        let now = self.clock.now();
        let until = now.saturating_add(self.horizon);
        record(
            &*self.store,
            Revocation::new(target, until).with_reason(EndReason::Ended),
            now,
            &self.counters,
        )
        .await
    }
}

/// Records `revocation` in `store`: counted and logged (what was revoked
/// and until when; ids only, never a token), or the failure logged.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) async fn record(
    store: &dyn RevocationStore,
    revocation: Revocation,
    now: i64,
    counters: &Counters,
) -> Result<(), StoreError> {
    #[cfg(feature = "tracing")]
    let (what, until) = (
        match &revocation.target {
            RevocationTarget::Session(_) => "session",
            RevocationTarget::Token(_) => "token",
            RevocationTarget::Subject { .. } => "subject",
            RevocationTarget::Superseded { .. } => "superseded tokens",
            RevocationTarget::Replaced { .. } => "replaced token",
        },
        revocation.until,
    );
    let result = store.revoke(revocation, now).await;
    match &result {
        Ok(()) => {
            counters.count(Event::Revoked);
            event!(info, what, until, "revoked");
        }
        Err(error) => event!(warn, what, %error, "could not record a revocation"),
    }
    result
}
