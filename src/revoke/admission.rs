//! Admission: the one place that decides what a store's answer means for a
//! verified token — admitted, refused (revoked, or the store cannot say), or
//! a replaced token arriving after the reuse grace — and what follows from
//! it: the session of a reused token is revoked, and a replacement's first
//! use is marked. The layer (before the inner service runs, and again before
//! a replacement is handed out) and [`Issuer::verify`](crate::Issuer::verify)
//! both go through it.

use std::fmt;
use std::sync::Arc;

use super::reuse::ReuseDetection;
use super::{Lookup, RevocationStatus, RevocationStore, StoreError, TokenIds};
use crate::BoxFuture;
use crate::claims::{Claims, RegisteredClaims};
use crate::reject::RejectionKind;
use crate::stats::{Counters, Event};

/// What a store's answer means for a request at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Not revoked (and not a replaced token arriving after the grace).
    Admit,
    /// Refused: `Revoked` (401) or, when the store failed,
    /// `StoreUnavailable` (503).
    Refuse(RejectionKind),
    /// A replaced token arriving more than the grace after its replacement
    /// was first used: a stolen or leaked copy.
    Reused,
    /// A token `renew_with` superseded: never served with its own claims.
    Superseded,
}

/// Reads a store's answer at `now`; `grace` is how long after its
/// replacement's first use a replaced token is still admitted (the reuse
/// grace plus the leeway), `None` when reuse detection is off (a replaced
/// token is then admitted).
pub(crate) fn admit(
    answer: Result<RevocationStatus, StoreError>,
    now: i64,
    grace: Option<i64>,
) -> Admission {
    match answer {
        Ok(RevocationStatus::Active) => Admission::Admit,
        Ok(RevocationStatus::Replaced { used_at }) => match grace {
            Some(grace) if now > used_at.saturating_add(grace) => Admission::Reused,
            _ => Admission::Admit,
        },
        Ok(RevocationStatus::Revoked) => Admission::Refuse(RejectionKind::Revoked),
        // A superseded token that was also renewed (its chain has moved on)
        // is never served as the token that superseded it: past the grace it
        // is a stolen copy and ends its session, inside it it is refused.
        Ok(RevocationStatus::Superseded {
            replaced_at: Some(used_at),
        }) => match grace {
            Some(grace) if now > used_at.saturating_add(grace) => Admission::Reused,
            _ => Admission::Refuse(RejectionKind::Revoked),
        },
        Ok(RevocationStatus::Superseded { replaced_at: None }) => Admission::Superseded,
        Err(_) => Admission::Refuse(RejectionKind::StoreUnavailable),
    }
}

/// What a verified token still needs before it is admitted, once the
/// synchronous part of the check is done.
pub(crate) enum Pending {
    /// The store needs I/O to answer.
    Lookup(BoxFuture<'static, Result<RevocationStatus, StoreError>>),
    /// Already answered: a replaced token after the grace.
    Reused,
    /// Already answered: a token `renew_with` superseded.
    Superseded,
}

/// How a token that passed the store's check is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// As itself.
    Admitted,
    /// Only as the token that superseded it (`renew_with`), if the layer can
    /// find that token; refused otherwise.
    Superseded,
}

/// What a reused token does to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnReused {
    /// Revoke the whole session (a request: the copy is being used now).
    EndSession,
    /// Only refuse the token ([`Issuer::verify`](crate::Issuer::verify):
    /// a token kept for later, a queued message, is not a stolen copy).
    Refuse,
}

/// The checkpoint every verified token passes: the revocation store, reuse
/// detection when it is on, the counters and the leeway. One per layer,
/// shared by its services and its issuer.
pub(crate) struct Checkpoint<C> {
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) counters: Arc<Counters>,
    reuse: Option<ReuseDetection<C>>,
    leeway: i64,
}

impl<C> fmt::Debug for Checkpoint<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("reuse", &self.reuse)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl<C> Checkpoint<C> {
    pub(crate) fn new(
        store: Arc<dyn RevocationStore>,
        counters: Arc<Counters>,
        reuse: Option<ReuseDetection<C>>,
        leeway: i64,
    ) -> Self {
        Self {
            store,
            counters,
            reuse,
            leeway,
        }
    }

    /// How long after a replacement's first use its predecessor is still
    /// admitted, when reuse detection is on: the grace plus the leeway. The
    /// first use was stamped by whichever instance saw it, by its clock, and
    /// is compared here by this instance's clock: the leeway (the crate's
    /// clock-skew allowance) keeps a parallel tab on an instance whose clock
    /// runs ahead within it from counting as reuse.
    pub(crate) fn grace(&self) -> Option<i64> {
        self.reuse
            .as_ref()
            .map(|reuse| reuse.grace().saturating_add(self.leeway))
    }

    /// Whether reuse detection is on (a renewal then names the token it
    /// replaces in `prev_jti` and `prev_exp`).
    pub(crate) fn detects_reuse(&self) -> bool {
        self.reuse.is_some()
    }

    /// The synchronous part of admitting a token: asks the store, and
    /// answers `Ok(None)` when the token is admitted now, `Ok(Some(_))` when
    /// [`settle`](Self::settle) must finish, or the refusal.
    pub(crate) fn enter(
        &self,
        ids: &TokenIds<'_>,
        now: i64,
    ) -> Result<Option<Pending>, RejectionKind> {
        match self.store.check(ids, now) {
            Lookup::Ready(answer) => match admit(answer, now, self.grace()) {
                Admission::Admit => Ok(None),
                Admission::Refuse(kind) => Err(kind),
                Admission::Reused => Ok(Some(Pending::Reused)),
                Admission::Superseded => Ok(Some(Pending::Superseded)),
            },
            Lookup::Pending(lookup) => Ok(Some(Pending::Lookup(lookup))),
        }
    }

    /// The mark to write for the token `claims`' token replaced, when reuse
    /// detection is on and this instance has not written it yet. Its error
    /// refuses the request (503, fail closed).
    pub(crate) fn mark(
        &self,
        claims: &RegisteredClaims,
        now: i64,
    ) -> Option<BoxFuture<'static, Result<(), StoreError>>> {
        self.reuse
            .as_ref()?
            .mark(&self.store, &self.counters, claims, now, self.leeway)
    }

    /// Whether a replacement for a token of `claims`' subject may be handed
    /// out as far as reuse detection goes: always when it is off; otherwise
    /// only when the store has room for the mark its first use will write
    /// (its budget of marks, and the subject's quota). A replacement that
    /// could not be marked would escape detection, so none is issued: the
    /// refusal is counted and logged, and the old token stays valid.
    pub(crate) fn may_replace(&self, claims: &RegisteredClaims, now: i64) -> bool {
        if self.reuse.is_none() || self.store.has_room_for_mark(claims.sub.as_deref(), now) {
            return true;
        }
        self.counters.count(Event::MarkRefused);
        crate::log::event!(
            warn,
            sid = claims.sid.as_deref(),
            "no renewal: the store has no room for this session's reuse mark (its marks' budget or the subject's quota is full)"
        );
        false
    }

    /// Whether the old token may still be replaced once its replacement
    /// exists: the store says it is not revoked, and it has not expired
    /// meanwhile (a request that outlives the token's `exp` renews nothing:
    /// a revocation by `jti` is only remembered until then). A replaced
    /// token was admitted inside the reuse grace when the request arrived:
    /// it gets its replacement. A replaced token past the grace gets
    /// nothing: a request that outlived the grace (a slow handler, a
    /// response delivered late) must not hand back a replacement the client
    /// has since moved on from, which would then count as reuse itself.
    pub(crate) fn confirmed(
        &self,
        answer: Result<RevocationStatus, StoreError>,
        now: i64,
        exp: i64,
    ) -> bool {
        admit(answer, now, self.grace()) == Admission::Admit && now < exp
    }
}

impl<C: Claims> Checkpoint<C> {
    /// The asynchronous part of admitting a token: awaits the store's
    /// answer, and for a replaced token past the grace, revokes its session
    /// (`on_reused`) and refuses it. `deadline` is the session's cap. A
    /// superseded token is answered as such: the caller serves it as its
    /// successor, or refuses it.
    pub(crate) async fn settle(
        &self,
        pending: Pending,
        claims: &C,
        deadline: Option<i64>,
        now: i64,
        on_reused: OnReused,
    ) -> Result<Settled, RejectionKind> {
        let admission = match pending {
            Pending::Reused => Admission::Reused,
            Pending::Superseded => Admission::Superseded,
            Pending::Lookup(lookup) => admit(lookup.await, now, self.grace()),
        };
        match admission {
            Admission::Admit => Ok(Settled::Admitted),
            Admission::Superseded => Ok(Settled::Superseded),
            Admission::Refuse(kind) => Err(kind),
            Admission::Reused => {
                if on_reused == OnReused::EndSession
                    && let Some(reuse) = &self.reuse
                    && !reuse
                        .detected(
                            &*self.store,
                            claims,
                            deadline,
                            now,
                            self.leeway,
                            &self.counters,
                        )
                        .await
                {
                    // Fail closed: the session must end; the client retries.
                    return Err(RejectionKind::StoreUnavailable);
                }
                Err(RejectionKind::TokenReused)
            }
        }
    }
}
