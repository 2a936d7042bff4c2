//! Renewal: what happens once the inner service answered an authenticated
//! request — the core's rules, signing, the single flight (local or shared),
//! `renew_with`'s supersede, the re-check, and delivery on the token's channel.

use std::sync::Arc;

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Response};

use super::Config;
use super::policy::{RenewalPolicy, is_success};
use super::revalidate::Verdict;
use crate::claims::Claims;
use crate::extensions::{NoRenewal, Renewed};
use crate::keys::Keys;
use crate::log::event;
use crate::revoke::record;
use crate::revoke::{
    Admission, BoxFuture, Lookup, Revocation, RevocationTarget, SharedFlight, Status, TokenIds,
    admit,
};
use crate::session::{Action, Session};
use crate::stats::Event as StatEvent;
use crate::token::{TokenId, jws, random_id};

/// A renewal the request qualified for.
pub(crate) struct Plan {
    pub(crate) expires_at: i64,
    pub(crate) forget_after: i64,
}

/// A replacement token, signed and ready to deliver.
pub(crate) struct Signed {
    token: Arc<str>,
    expires_at: i64,
}

/// What is left to do once the inner service answered.
pub(crate) enum Finish {
    /// Nothing to deliver.
    Done,
    /// Deliver this token now.
    Deliver(Signed),
    /// Confirm with the revocation store first (an asynchronous look-up, or
    /// retiring the token `renew_with` supersedes); `None` means no delivery.
    Wait(BoxFuture<'static, Option<Signed>>),
}

/// What happens once the inner service answered an authenticated request.
pub(crate) struct After<K, C, P, R> {
    pub(super) config: Arc<Config<K, C, P, R>>,
    session: Session<C>,
    /// Index of the source the token came from; the new one goes back there.
    source: usize,
    now: i64,
    plan: Option<Plan>,
    /// Claims from the revalidation hook, replacing the current ones (boxed:
    /// rare, and it would triple the size of every response future).
    update: Option<Box<C>>,
}

impl<K, C, P, R> After<K, C, P, R> {
    pub(crate) fn new(
        config: Arc<Config<K, C, P, R>>,
        session: Session<C>,
        source: usize,
        now: i64,
        plan: Option<Plan>,
    ) -> Self {
        Self {
            config,
            session,
            source,
            now,
            plan,
            update: None,
        }
    }

    pub(super) fn verdict(&mut self, verdict: Verdict<C>) {
        match verdict {
            Verdict::Approve => {}
            Verdict::Update(claims) => self.update = Some(Box::new(claims)),
            Verdict::Veto | Verdict::Reject => self.plan = None,
        }
    }
}

// Without the `tracing` feature the events compile to nothing.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
impl<K: Keys, C: Claims, P: RenewalPolicy, R> After<K, C, P, R> {
    /// Applies the handler's action and the core's rules to the response, and
    /// signs the replacement when one is due.
    pub(super) fn finish<B>(&mut self, response: &mut Response<B>) -> Finish {
        let config = &self.config;
        let source = &config.sources[self.source];
        let renew_with = match self.session.take_action() {
            Action::End => {
                source.end_session(response.headers_mut());
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Finish::Done;
            }
            Action::RenewWith(claims) => Some(claims),
            Action::None => None,
        };
        // Not activity by the handler's word: no planned renewal (rule 17).
        if !self.session.is_activity() {
            self.plan = None;
        }
        // Nothing to sign: skip the response checks and the revocation re-check.
        if self.plan.is_none() && renew_with.is_none() {
            return Finish::Done;
        }
        // The core's rules, whatever the policy says: success only, no
        // renewal the handler refused or already made, and never for a token
        // past its `exp` (one accepted within the leeway is served, not renewed).
        if !is_success(response.status(), response.headers())
            || !config
                .policy
                .accepts_response(response.status(), response.headers())
            || response.extensions().get::<NoRenewal>().is_some()
            || source.is_delivered(response.headers())
            || self.now >= self.session.claims().registered().exp
        {
            return Finish::Done;
        }
        match renew_with {
            Some(claims) => self.supersede(claims),
            None => self.renew(),
        }
    }

    /// A planned renewal: one replacement per old token (single flight), then
    /// a re-check of the old token, so a revocation that landed while the
    /// inner service ran (or while signing) is honoured.
    fn renew(&mut self) -> Finish {
        let Some(plan) = self.plan.take() else {
            return Finish::Done;
        };
        let Some(id) = self.session.identity() else {
            return Finish::Done;
        };
        let config = &self.config;
        let update = self.update.take();
        if let Some(shared) = config.core.store.shared_flight() {
            return self.renew_shared(shared, &id, plan, update);
        }
        let signed = config
            .flights
            .get_or_sign(id.key(), self.now, plan.forget_after, || {
                let claims = update.map_or_else(|| self.session.claims().clone(), |claims| *claims);
                Ok((self.sign(claims, plan.expires_at)?, plan.expires_at))
            });
        let signed = match signed {
            Ok((token, expires_at)) => Signed { token, expires_at },
            // The response goes out with no renewal: the old token stays
            // valid and the next request tries again.
            Err(error) => {
                event!(warn, kind = %error.kind(), "could not sign a renewal");
                return Finish::Done;
            }
        };
        let core = &config.core;
        let registered = self.session.claims().registered();
        let (exp, clock, grace) = (registered.exp, core.clock.clone(), core.reuse_grace());
        match core
            .store
            .check_fresh(&TokenIds::of(registered), clock.now())
        {
            Lookup::Ready(answer) => {
                if confirmed(answer, &*clock, exp, grace) {
                    Finish::Deliver(signed)
                } else {
                    Finish::Done
                }
            }
            Lookup::Pending(lookup) => Finish::Wait(Box::pin(async move {
                confirmed(lookup.await, &*clock, exp, grace).then_some(signed)
            })),
        }
    }

    /// A renewal whose single flight is shared by the cluster: a local
    /// replacement (already agreed) is handed out at once; otherwise this one
    /// is signed and offered, and the cluster's winner is handed out.
    fn renew_shared(
        &self,
        shared: &dyn SharedFlight,
        id: &TokenId,
        plan: Plan,
        update: Option<Box<C>>,
    ) -> Finish {
        let config = &self.config;
        let key = id.key();
        let (offered, local) = match config.flights.get(key, self.now) {
            Some(agreed) => (agreed, true),
            None => {
                let claims = update.map_or_else(|| self.session.claims().clone(), |claims| *claims);
                match self.sign(claims, plan.expires_at) {
                    Ok(token) => ((token, plan.expires_at), false),
                    Err(error) => {
                        event!(warn, kind = %error.kind(), "could not sign a renewal");
                        return Finish::Done;
                    }
                }
            }
        };
        let claim = (!local)
            .then(|| shared.claim(id.secret(), offered.0.clone(), offered.1, plan.forget_after));
        let flights = config.flights.clone();
        let store = config.core.store.clone();
        let clock = config.core.clock.clone();
        let grace = config.core.reuse_grace();
        let session = self.session.clone();
        let now = self.now;
        Finish::Wait(Box::pin(async move {
            let (token, expires_at) = match claim {
                None => offered,
                Some(claim) => {
                    let winner = match claim.await {
                        Ok(winner) => winner,
                        // A replacement the cluster does not know of could not
                        // be retired by a `renew_with` elsewhere: hand out
                        // nothing; the old token stays valid and the next
                        // request tries again.
                        Err(error) => {
                            event!(warn, %error, "shared single flight unavailable; no replacement this time");
                            return None;
                        }
                    };
                    flights.supersede(key, winner.0.clone(), winner.1, plan.forget_after, now);
                    winner
                }
            };
            // The old token must still be good once the replacement is agreed.
            let lookup =
                store.check_fresh(&TokenIds::of(session.claims().registered()), clock.now());
            let answer = lookup.resolve().await;
            let exp = session.claims().registered().exp;
            confirmed(answer, &*clock, exp, grace).then_some(Signed { token, expires_at })
        }))
    }

    /// `Session::renew_with`: new claims now. The token it replaces is
    /// retired: its `jti` is revoked until it expires, and every replacement
    /// already handed out for it — by a parallel request here, or by any
    /// instance of the cluster through the shared flight — is revoked too,
    /// while requests still holding it get this replacement. So only the new
    /// claims keep sliding (rule 5). Fails closed: when any of this cannot be
    /// recorded, nothing is issued.
    fn supersede(&mut self, claims: C) -> Finish {
        let config = &self.config;
        let core = &config.core;
        let current = self.session.claims().registered();
        let (Some(jti), Some(_), Some(id)) = (
            current.jti.clone(),
            current.sid.as_ref(),
            self.session.identity(),
        ) else {
            event!(
                warn,
                "renew_with on a token without jti or sid: it cannot be retired, so nothing is issued"
            );
            return Finish::Done;
        };
        let deadline = core.session_deadline(current).unwrap_or(current.exp);
        let expires_at = self
            .now
            .saturating_add(core.session_ttl(current))
            .min(deadline);
        let token = match self.sign(claims, expires_at) {
            Ok(token) => token,
            Err(error) => {
                event!(warn, kind = %error.kind(), "could not sign renew_with's token");
                return Finish::Done;
            }
        };
        let now = self.now;
        let leeway = core.leeway;
        let retire_until = current.exp.saturating_add(leeway);
        let lookup = core
            .store
            .check_fresh(&TokenIds::of(current), core.clock.now());
        let (old_exp, clock, grace) = (current.exp, core.clock.clone(), core.reuse_grace());
        let store = core.store.clone();
        let counters = core.counters.clone();
        let flights = config.flights.clone();
        // Installed first, so a request presenting the old token anywhere
        // from now on gets the new replacement, never the one it displaces.
        let shared = core
            .store
            .shared_flight()
            .map(|shared| shared.supersede(id.secret(), token.clone(), expires_at, retire_until));
        Finish::Wait(Box::pin(async move {
            let answer = lookup.resolve().await;
            if !confirmed(answer, &*clock, old_exp, grace) {
                return None;
            }
            let (displaced_elsewhere, superseded) = match shared {
                None => (None, true),
                Some(supersede) => match supersede.await {
                    Ok(previous) => (previous, true),
                    Err(error) => {
                        event!(warn, %error, "renew_with could not supersede the cluster's replacement; nothing is issued");
                        (None, false)
                    }
                },
            };
            let retire = |jti: String, until: i64| Revocation {
                target: RevocationTarget::Token(jti),
                until,
            };
            // Every retirement is attempted, whatever fails before it: the
            // old token, and the replacements handed out for it with the old
            // claims, by a parallel request here or by another instance.
            let displaced_here = superseded
                .then(|| flights.supersede(id.key(), token.clone(), expires_at, retire_until, now))
                .flatten();
            let mut retired = vec![(jti, retire_until)];
            for previous in [displaced_here, displaced_elsewhere.map(|(token, _)| token)] {
                if let Some((jti, exp)) = previous.as_deref().and_then(unverified_ids)
                    && !retired.iter().any(|(retiring, _)| *retiring == jti)
                {
                    retired.push((jti, exp.saturating_add(leeway)));
                }
            }
            let mut all_recorded = superseded;
            for (jti, until) in retired {
                if let Err(error) = record(&*store, retire(jti, until), now, &counters).await {
                    event!(warn, %error, "renew_with could not retire a token it replaces; nothing is issued");
                    all_recorded = false;
                }
            }
            if !all_recorded {
                return None;
            }
            Some(Signed { token, expires_at })
        }))
    }

    /// Writes `signed` into the response, on the channel the old token came in.
    pub(super) fn deliver<B>(&self, signed: Signed, response: &mut Response<B>) {
        let source = &self.config.sources[self.source];
        let headers = response.headers_mut();
        source.deliver_at(&signed.token, self.now, signed.expires_at, headers);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response.extensions_mut().insert(Renewed {
            expires_at: signed.expires_at,
        });
        self.config.core.counters.count(StatEvent::Renewed);
        event!(
            debug,
            sid = self.session.claims().registered().sid.as_deref(),
            old_exp = self.session.claims().registered().exp,
            new_exp = signed.expires_at,
            "renewed"
        );
    }

    /// Signs `claims` as the next token of the current session: `sid` and
    /// `auth_time` are the session's, whatever `claims` say.
    fn sign(&self, mut claims: C, expires_at: i64) -> Result<Arc<str>, crate::IssueError> {
        let current = self.session.claims().registered();
        let registered = claims.registered_mut();
        registered.sid.clone_from(&current.sid);
        registered.auth_time = current.auth_time;
        let mut claims = claims.renewed(self.now, expires_at, random_id()?);
        // The layer's own claims, whatever `renewed` did: with reuse
        // detection, the replacement names the token it replaces.
        let registered = claims.registered_mut();
        let core = &self.config.core;
        if core.reuse.is_some() {
            registered.prev_jti.clone_from(&current.jti);
            registered.prev_exp = Some(current.exp);
        } else {
            registered.prev_jti = None;
            registered.prev_exp = None;
        }
        core.sign_with(&claims, |token| Arc::from(token))
    }
}

/// Whether the old token may still be replaced once its replacement exists:
/// the store says it is not revoked, and it has not expired meanwhile (a
/// request that outlives the token's `exp` renews nothing: a revocation by
/// `jti` is only remembered until then). A replaced token was admitted
/// inside the reuse grace when the request arrived: it gets its replacement.
/// A replaced token past the reuse grace (`grace`, when reuse detection is
/// on) gets nothing: a request that outlived the grace (a slow handler, a
/// response delivered late) must not hand back a replacement the client
/// has since moved on from, which would then count as reuse itself.
fn confirmed(
    answer: Result<Status, crate::StoreError>,
    clock: &dyn crate::Clock,
    exp: i64,
    grace: Option<i64>,
) -> bool {
    let now = clock.now();
    admit(answer, now, grace) == Admission::Admit && now < exp
}

/// The `jti` and `exp` of a token this layer signed, read without verifying.
fn unverified_ids(token: &str) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Ids {
        jti: String,
        exp: i64,
    }
    let (serde::de::IgnoredAny, ids) = jws::unverified::<serde::de::IgnoredAny, Ids>(token)?;
    Some((ids.jti, ids.exp))
}
