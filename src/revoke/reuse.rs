//! Reuse detection (rule 18): once a replacement has been used, the token it
//! replaced arriving more than the grace later is a stolen or leaked copy,
//! and its whole session is revoked.
//!
//! How the first use is learnt: a renewal writes the old token's `jti` and
//! `exp` into the replacement (`prev_jti`, `prev_exp`). The first request
//! carrying the replacement that this instance admits writes one
//! [`RevocationTarget::Replaced`] mark for the old `jti` (living until the
//! old token stops verifying), and remembers locally that it did, so later
//! requests cost one look-up in a small set and no store write. A store
//! keeps the earliest mark, so with a shared store every instance measures
//! the grace from the cluster's first use.

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};

use super::{
    EndReason, Revocation, RevocationStore, RevocationTarget, StoreError, StoreErrorKind, record,
};
use crate::BoxFuture;
use crate::claims::RegisteredClaims;
use crate::log::event;
use crate::stats::{Counters, Event};

/// Marks this instance remembers having written, per generation of the set;
/// two generations are kept, so at most twice this many.
const MARKED_PER_GENERATION: usize = 16 * 1024;

/// The hook called when reuse is detected.
pub(crate) type OnReuse<C> = dyn Fn(&C) + Send + Sync;

/// A layer's reuse detection: the grace, the hook, and the marks written.
pub(crate) struct ReuseDetection<C> {
    /// Seconds a replaced token is still accepted after its replacement's
    /// first use.
    grace: i64,
    on_reuse: Option<Box<OnReuse<C>>>,
    marked: Arc<Marked>,
}

impl<C> fmt::Debug for ReuseDetection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReuseDetection")
            .field("grace", &self.grace)
            .field("on_reuse", &self.on_reuse.is_some())
            .finish_non_exhaustive()
    }
}

impl<C> ReuseDetection<C> {
    pub(crate) fn new(grace: i64, on_reuse: Option<Box<OnReuse<C>>>) -> Self {
        Self {
            grace,
            on_reuse,
            marked: Arc::new(Marked::default()),
        }
    }

    /// Seconds a replaced token is still accepted after its replacement's
    /// first use.
    pub(crate) fn grace(&self) -> i64 {
        self.grace
    }

    /// The mark to write for the token `claims` replaced, unless this
    /// instance already wrote it or that token can no longer verify; `None`
    /// then. The write fails closed: an error leaves nothing remembered, so
    /// the next request tries again, and the request is refused (503).
    pub(crate) fn mark(
        &self,
        store: &Arc<dyn RevocationStore>,
        counters: &Arc<Counters>,
        claims: &RegisteredClaims,
        now: i64,
        leeway: i64,
    ) -> Option<BoxFuture<'static, Result<(), StoreError>>> {
        let jti = claims.prev_jti.as_deref()?;
        // The old token's expiry is never after its replacement's (a renewal
        // only moves `exp` out): bounded by what this token verified with.
        let until = claims
            .prev_exp
            .unwrap_or(claims.exp)
            .min(claims.exp)
            .saturating_add(leeway);
        if until <= now {
            return None;
        }
        let key = self.marked.key(jti);
        if self.marked.contains(key) {
            return None;
        }
        let mark = Revocation {
            target: RevocationTarget::Replaced {
                jti: jti.to_owned(),
                used_at: now,
                subject: claims.sub.clone(),
            },
            until,
            reason: None,
        };
        let (store, marked, counters) = (store.clone(), self.marked.clone(), counters.clone());
        Some(Box::pin(async move {
            match store.revoke(mark, now).await {
                Ok(()) => {}
                // A store full of marks loses this generation's detection
                // rather than locking the session out (marks have their
                // own budget, so logouts are not refused for them).
                Err(error) if error.kind() == StoreErrorKind::Full => {
                    counters.count(Event::MarkRefused);
                    event!(
                        warn,
                        "reuse mark refused: the store has no room for it (its marks' budget or the subject's quota); this renewal is not protected"
                    );
                }
                Err(error) => return Err(error),
            }
            marked.insert(key);
            Ok(())
        }))
    }
}

impl<C: crate::Claims> ReuseDetection<C> {
    /// A replaced token arrived after the grace: revokes its session until
    /// it can no longer verify (its cap), counts and logs it, and calls the
    /// hook. `false` when the revocation could not be recorded (logged as an
    /// error; neither counted nor reported to the hook): the request is then
    /// answered 503, so the client retries and the next arrival of the copy
    /// tries again.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) async fn detected(
        &self,
        store: &dyn RevocationStore,
        claims: &C,
        deadline: Option<i64>,
        now: i64,
        leeway: i64,
        counters: &Counters,
    ) -> bool {
        let registered = claims.registered();
        let until = deadline
            .unwrap_or_else(|| now.saturating_add(super::MAX_SESSION_SECS))
            .saturating_add(leeway);
        let target = match (&registered.sid, &registered.jti) {
            (Some(sid), _) => RevocationTarget::Session(sid.clone()),
            (None, Some(jti)) => RevocationTarget::Token(jti.clone()),
            (None, None) => return true,
        };
        let sid = registered.sid.as_deref();
        event!(
            warn,
            sid,
            "reuse detected: a replaced token arrived after the grace; revoking its session"
        );
        let revocation = Revocation::new(target, until).with_reason(EndReason::Reuse);
        if let Err(error) = record(store, revocation, now, counters).await {
            event!(error, sid, %error, "reuse detected, but the session could not be revoked");
            return false;
        }
        // Counted and reported once the session is over.
        counters.count(Event::ReuseDetected);
        if let Some(on_reuse) = &self.on_reuse {
            on_reuse(claims);
        }
        true
    }
}

/// The marks this instance wrote, by a keyed hash of the old `jti`: a
/// bounded set in two generations (the older dropped whole when the newer
/// fills, which frees one buffer: no per-entry work). A mark forgotten here
/// is only written again, and a store keeps the earliest.
#[derive(Default)]
struct Marked {
    hasher: std::collections::hash_map::RandomState,
    sets: RwLock<[HashSet<u64>; 2]>,
}

impl Marked {
    fn key(&self, jti: &str) -> u64 {
        self.hasher.hash_one(jti)
    }

    fn contains(&self, key: u64) -> bool {
        let sets = self.sets.read().unwrap_or_else(PoisonError::into_inner);
        sets.iter().any(|set| set.contains(&key))
    }

    fn insert(&self, key: u64) {
        let mut sets = self.sets.write().unwrap_or_else(PoisonError::into_inner);
        if sets[0].len() >= MARKED_PER_GENERATION {
            sets[1] = std::mem::take(&mut sets[0]);
        }
        sets[0].insert(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let sets = self.sets.read().unwrap_or_else(PoisonError::into_inner);
        sets.iter().map(HashSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marked_set_stays_bounded() {
        let marked = Marked::default();
        for i in 0..(5 * MARKED_PER_GENERATION) {
            marked.insert(marked.key(&i.to_string()));
        }
        assert!(marked.len() <= 2 * MARKED_PER_GENERATION);
        // The newest are still remembered.
        let last = (5 * MARKED_PER_GENERATION - 1).to_string();
        assert!(marked.contains(marked.key(&last)));
    }

    #[test]
    fn no_mark_for_a_token_that_replaced_none_or_can_no_longer_verify() {
        let reuse = ReuseDetection::<crate::StandardClaims>::new(10, None);
        let store: Arc<dyn RevocationStore> = Arc::new(super::super::MemoryStore::new());
        let counters = Arc::new(Counters::new());
        let mut claims = RegisteredClaims {
            exp: 2_000,
            ..RegisteredClaims::default()
        };
        assert!(reuse.mark(&store, &counters, &claims, 1_000, 5).is_none());
        claims.prev_jti = Some("old".into());
        claims.prev_exp = Some(900);
        assert!(reuse.mark(&store, &counters, &claims, 1_000, 5).is_none());
        claims.prev_exp = Some(1_100);
        assert!(reuse.mark(&store, &counters, &claims, 1_000, 5).is_some());
    }
}
