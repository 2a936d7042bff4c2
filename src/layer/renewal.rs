//! Renewal: whether a request qualifies (the plan, made before the inner
//! service runs), and what happens once it answered — the core's rules,
//! signing, the single flight (local or shared), `renew_with`'s supersede,
//! the re-check, and delivery on the token's channel.

use std::sync::Arc;

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, Response};

use super::Config;
use super::policy::{RenewalContext, RenewalPolicy, is_success};
use super::revalidate::Verdict;
use crate::BoxFuture;
use crate::claims::Claims;
use crate::dpop::DPOP_NONCE;
use crate::error::IssueError;
use crate::extensions::{NoRenewal, Renewed};
use crate::keys::Keys;
use crate::log::event;
use crate::revoke::record;
use crate::revoke::{EndReason, Lookup, Revocation, RevocationTarget, SharedFlight, TokenIds};
use crate::session::{Action, Session};
use crate::sessions as registry;
use crate::stats::Event as StatEvent;
use crate::token::{RawToken, TokenEngine, TokenId, Verified, jws, random_id};

/// Whether this request's token qualifies for renewal, decided before the
/// inner service runs; the response decides the rest
/// ([`After::finish`]). `deadline` is the session's cap.
pub(crate) fn plan<K, C, P, R>(
    config: &Config<K, C, P, R>,
    claims: &C,
    deadline: Option<i64>,
    now: i64,
    method: &Method,
) -> Option<Plan>
where
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    let engine = &config.engine;
    let registered = claims.registered();
    // Renew only while the token has not expired: one accepted within the
    // leeway after `exp` is served but never renewed. A verify-only layer
    // (no signing key) never plans a renewal.
    if method == Method::OPTIONS || now >= registered.exp || engine.keys.signing_key().is_none() {
        return None;
    }
    // Never in the second a token was issued: its replacement would share
    // its `iat`, and a `renew_with` cut-off at that second would cover both.
    if registered.iat.is_some_and(|iat| now <= iat) {
        return None;
    }
    // Without `auth_time` the session cap cannot be enforced, and without
    // `sid` a logout could only revoke the presented token while a
    // replacement handed out just before kept sliding: never renew either.
    registered.sid.as_ref()?;
    deadline?;
    let expires_at = engine.next_expiry(registered, deadline, now);
    if expires_at <= registered.exp {
        return None;
    }
    let ttl = engine.session_ttl(registered);
    let ctx = RenewalContext::new(now, registered.iat, registered.exp, ttl, expires_at);
    if !config.policy.should_renew(&ctx) {
        return None;
    }
    Some(Plan {
        expires_at,
        forget_after: registered.exp.saturating_add(engine.leeway),
    })
}

/// A signed token, or nothing when signing failed: the response then goes
/// out with no renewal, the old token stays valid and the next request
/// tries again. The one place a failed signature is logged.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn signed<T>(result: Result<T, IssueError>) -> Option<T> {
    match result {
        Ok(token) => Some(token),
        Err(error) => {
            event!(warn, kind = %error.kind(), "could not sign a renewal");
            None
        }
    }
}

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

impl Signed {
    pub(crate) fn new(token: Arc<str>, expires_at: i64) -> Self {
        Self { token, expires_at }
    }
}

/// A request that presented a token `renew_with` superseded, served as the
/// token that superseded it: its session, its plan, the hook's verdict, and
/// that token, handed to the client with the response.
pub(crate) struct Successor<C> {
    pub(crate) session: Session<C>,
    pub(crate) plan: Option<Plan>,
    pub(crate) verdict: Verdict<C>,
    pub(crate) token: Signed,
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
    /// The token this request is served as, when it presented one
    /// `renew_with` superseded: delivered unless a renewal is (boxed: rare).
    successor: Option<Box<Signed>>,
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
            successor: None,
        }
    }

    /// Serves the request as the token that superseded the one it
    /// presented.
    pub(super) fn succeed(&mut self, successor: Successor<C>) {
        self.session = successor.session;
        self.plan = successor.plan;
        self.successor = Some(Box::new(successor.token));
        self.verdict(successor.verdict);
    }

    /// The token that superseded the presented one, to hand to the client
    /// when no renewal is: on a success that carries no token yet and that
    /// the handler did not mark [`NoRenewal`].
    pub(super) fn successor<B>(&mut self, response: &Response<B>) -> Option<Signed> {
        let signed = self.successor.take()?;
        let source = &self.config.sources[self.source];
        (is_success(response.status(), response.headers())
            && response.extensions().get::<NoRenewal>().is_none()
            && !source.is_delivered(response.headers()))
        .then_some(*signed)
    }

    /// The session of the request.
    pub(super) fn session(&self) -> &Session<C> {
        &self.session
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
        // A DPoP request learns the nonce to use next (source 0 is DPoP's).
        if let Some(dpop) = &self.config.env.dpop
            && self.source == 0
            && dpop.requires_nonce()
        {
            response
                .headers_mut()
                .insert(DPOP_NONCE, dpop.nonce(self.now));
        }
        match self.finish_renewal(response) {
            Finish::Done => self
                .successor(response)
                .map_or(Finish::Done, Finish::Deliver),
            finish => finish,
        }
    }

    fn finish_renewal<B>(&mut self, response: &mut Response<B>) -> Finish {
        let config = &self.config;
        let source = &config.sources[self.source];
        let renew_with = match self.session.take_action() {
            Action::End => {
                self.successor = None;
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
        // A replacement not signed yet must have room for its reuse mark
        // (asked only when one would be signed: a burst of parallel
        // requests asks once).
        if config.checkpoint.detects_reuse()
            && config.flights.get(id.key(), self.now).is_none()
            && !config
                .checkpoint
                .may_replace(self.session.claims().registered(), self.now)
        {
            return Finish::Done;
        }
        if let Some(shared) = config.checkpoint.store.shared_flight() {
            return self.renew_shared(shared, &id, plan, update);
        }
        let outcome = config
            .flights
            .get_or_sign(id.key(), self.now, plan.forget_after, || {
                let claims = update.map_or_else(|| self.session.claims().clone(), |claims| *claims);
                Ok((self.sign(claims, plan.expires_at)?, plan.expires_at))
            });
        let Some((token, expires_at)) = signed(outcome) else {
            return Finish::Done;
        };
        let signed = Signed { token, expires_at };
        let checkpoint = config.checkpoint.clone();
        let clock = config.engine.clock.clone();
        let registered = self.session.claims().registered();
        let exp = registered.exp;
        // The session's row in the registry follows the renewal (its
        // `last_seen`, its newest `exp`) before any request hands the
        // replacement out (each one that does touches: it only raises the
        // row's times); a renewal it cannot follow hands nothing out. A
        // store answering at once (memory) costs no wait.
        let touch = match registry::touch(&config.env, registered, expires_at, self.now)
            .map(registry::unless_ready)
        {
            Some(Err(error)) => {
                event!(warn, %error, "the session registry cannot follow a renewal; no replacement this time");
                return Finish::Done;
            }
            Some(Ok(pending)) => pending,
            None => None,
        };
        match (
            checkpoint
                .store
                .check_fresh(&TokenIds::of(registered), clock.now()),
            touch,
        ) {
            (Lookup::Ready(answer), None) => {
                if checkpoint.confirmed(answer, clock.now(), exp) {
                    Finish::Deliver(signed)
                } else {
                    Finish::Done
                }
            }
            (lookup, touch) => Finish::Wait(Box::pin(async move {
                if let Some(touch) = touch
                    && let Err(error) = touch.await
                {
                    event!(warn, %error, "the session registry cannot follow a renewal; no replacement this time");
                    return None;
                }
                let answer = lookup.resolve().await;
                checkpoint
                    .confirmed(answer, clock.now(), exp)
                    .then_some(signed)
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
                let Some(token) = signed(self.sign(claims, plan.expires_at)) else {
                    return Finish::Done;
                };
                ((token, plan.expires_at), false)
            }
        };
        let claim = (!local)
            .then(|| shared.claim(id.secret(), offered.0.clone(), offered.1, plan.forget_after));
        // The registry follows the renewal, at the same time as the claim.
        let touch = (!local)
            .then(|| {
                registry::touch(
                    &config.env,
                    self.session.claims().registered(),
                    offered.1,
                    self.now,
                )
            })
            .flatten();
        let flights = config.flights.clone();
        let checkpoint = config.checkpoint.clone();
        let clock = config.engine.clock.clone();
        let session = self.session.clone();
        let now = self.now;
        Finish::Wait(Box::pin(async move {
            let (token, expires_at) = match claim {
                None => offered,
                Some(claim) => {
                    let (claimed, touched) = registry::both(claim, touch).await;
                    if let Some(Err(error)) = touched {
                        event!(warn, %error, "the session registry cannot follow a renewal; no replacement this time");
                        return None;
                    }
                    let winner = match claimed {
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
            let registered = session.claims().registered();
            let lookup = checkpoint
                .store
                .check_fresh(&TokenIds::of(registered), clock.now());
            let answer = lookup.resolve().await;
            checkpoint
                .confirmed(answer, clock.now(), registered.exp)
                .then_some(Signed { token, expires_at })
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
        let (engine, checkpoint) = (&config.engine, &config.checkpoint);
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
        let expires_at = engine.next_expiry(current, self.session.deadline(), self.now);
        let Some(token) = signed(self.sign(claims, expires_at)) else {
            return Finish::Done;
        };
        let Some(Ids { jti: keep, .. }) = unverified_ids(&token) else {
            return Finish::Done;
        };
        let now = self.now;
        let leeway = engine.leeway;
        let retire_until = current.exp.saturating_add(leeway);
        let sid = current.sid.clone().unwrap_or_default();
        // A cut-off matters while a token it covers can verify: issued at
        // or before it, none lives past it plus the longest ttl.
        let session_until = self
            .session
            .deadline()
            .unwrap_or(current.exp)
            .saturating_add(leeway);
        let longest = engine.ttl_limit.saturating_add(2 * leeway);
        let lookup = checkpoint
            .store
            .check_fresh(&TokenIds::of(current), engine.clock.now());
        let (old_exp, clock) = (current.exp, engine.clock.clone());
        let (engine, checkpoint) = (engine.clone(), checkpoint.clone());
        let (flights, successors) = (config.flights.clone(), config.successors.clone());
        let env = config.env.clone();
        let registered = current.clone();
        Finish::Wait(Box::pin(async move {
            let answer = lookup.resolve().await;
            if !checkpoint.confirmed(answer, clock.now(), old_exp) {
                return None;
            }
            // The session's row follows the new token's `exp` first: a
            // token the registry does not know of is not handed out.
            if let Some(touch) = registry::touch(&env, &registered, expires_at, now)
                && let Err(error) = touch.await
            {
                event!(warn, %error, "the session registry cannot follow renew_with; nothing is issued");
                return None;
            }
            let store = &*checkpoint.store;
            let counters = &checkpoint.counters;
            // The token the handler renewed is retired first: from here on
            // no request presenting it gets a new replacement (its re-check
            // fails), so nothing below hands the new token out early.
            // Its connections end as superseded (old claims never keep one
            // alive), whichever of this and the cut-off reaches them first.
            let retired = Revocation::new(RevocationTarget::Token(jti.clone()), retire_until)
                .with_reason(EndReason::Superseded);
            if let Err(error) = record(store, retired, now, counters).await {
                event!(warn, %error, "renew_with could not retire the token it replaces; nothing is issued");
                return None;
            }
            // Then the new token becomes the old one's replacement, in the
            // cluster and here, and any replacement handed out before with
            // the old claims (a sibling) is displaced.
            let displaced_elsewhere = match store.shared_flight() {
                None => None,
                Some(shared) => {
                    let supersede =
                        shared.supersede(id.secret(), token.clone(), expires_at, retire_until);
                    match supersede.await {
                        Ok(previous) => previous,
                        Err(error) => {
                            event!(warn, %error, "renew_with could not supersede the cluster's replacement; nothing is issued");
                            return None;
                        }
                    }
                }
            };
            let displaced_here =
                flights.supersede(id.key(), token.clone(), expires_at, retire_until, now);
            let mut siblings = Vec::new();
            for previous in [displaced_here, displaced_elsewhere.map(|(token, _)| token)]
                .into_iter()
                .flatten()
            {
                if let Some(ids) = unverified_ids(&previous)
                    && ids.jti != jti
                    && !siblings
                        .iter()
                        .any(|(known, _): &(Ids, _)| known.jti == ids.jti)
                {
                    siblings.push((ids, previous));
                }
            }
            let cutoffs = store.keeps_cutoffs();
            let mut revocations = Vec::new();
            if cutoffs {
                // Every token of the session issued so far, earlier
                // generations and siblings wherever they are, is superseded:
                // the cut-off is no earlier than this moment (a sibling this
                // instance signed while the handler ran) nor than any
                // displaced sibling (one another instance signed by a clock
                // ahead of this one's).
                let before = siblings
                    .iter()
                    .filter_map(|(ids, _)| ids.iat)
                    .fold(now.max(clock.now()), i64::max);
                revocations.push(
                    Revocation::new(
                        RevocationTarget::Superseded { sid, before, keep },
                        session_until.min(before.saturating_add(longest)),
                    )
                    .with_reason(EndReason::Superseded),
                );
            } else {
                // A store without cut-offs: the siblings it knows of are
                // retired by `jti`.
                for (ids, _) in &siblings {
                    revocations.push(Revocation::new(
                        RevocationTarget::Token(ids.jti.clone()),
                        ids.exp.saturating_add(leeway),
                    ));
                }
            }
            // Every revocation is attempted, whatever fails before it.
            let mut all_recorded = true;
            for revocation in revocations {
                if let Err(error) = record(store, revocation, now, counters).await {
                    event!(warn, %error, "renew_with could not retire the tokens it replaces; nothing is issued");
                    all_recorded = false;
                }
            }
            if !all_recorded {
                return None;
            }
            // A sibling's holder (a client keeping the latest `exp` may hold
            // it: its `exp` can equal the new one's) is served as the new
            // token and gets it, here and on the other instances.
            if cutoffs {
                for (ids, sibling) in siblings {
                    let Some(identity) = identity_of(&engine, &sibling, clock.now()) else {
                        continue;
                    };
                    let until = ids.exp.saturating_add(leeway);
                    successors.supersede(identity.key(), token.clone(), expires_at, until, now);
                    if let Some(shared) = store.shared_flight()
                        && let Err(error) = shared
                            .supersede(identity.secret(), token.clone(), expires_at, until)
                            .await
                    {
                        // The cut-off holds: that sibling is refused (401)
                        // on the instances that cannot find its successor.
                        event!(warn, %error, "renew_with could not share a sibling's successor; other instances refuse that sibling");
                    }
                }
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
        self.config.env.counters.count(StatEvent::Renewed);
        // This session's open connections live on until the new `exp`.
        if let Some(sid) = &self.session.claims().registered().sid {
            self.config.env.watcher.renewed(sid, signed.expires_at);
        }
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
    fn sign(&self, mut claims: C, expires_at: i64) -> Result<Arc<str>, IssueError> {
        let current = self.session.claims().registered();
        let registered = claims.registered_mut();
        registered.sid.clone_from(&current.sid);
        registered.auth_time = current.auth_time;
        let mut claims = claims.renewed(self.now, expires_at, random_id()?);
        // The layer's own claims, whatever `renewed` did: the key binding
        // (a renewal never moves a session to another key, nor unbinds it),
        // and with reuse detection, the token it replaces.
        let registered = claims.registered_mut();
        registered.cnf.clone_from(&current.cnf);
        let config = &self.config;
        if config.checkpoint.detects_reuse() {
            registered.prev_jti.clone_from(&current.jti);
            registered.prev_exp = Some(current.exp);
        } else {
            registered.prev_jti = None;
            registered.prev_exp = None;
        }
        config.engine.sign_with(&claims, |token| Arc::from(token))
    }
}

/// The canonical identity of a token this layer signed (verified again: a
/// sibling `renew_with` displaced), `None` when it no longer verifies.
fn identity_of<K: Keys, C: Claims>(
    engine: &TokenEngine<K, C>,
    token: &str,
    now: i64,
) -> Option<TokenId> {
    let (claims, key, _) = engine.verify_keyed(token, now).ok()?;
    let verified = Verified {
        claims,
        token: RawToken::copy(token),
        key,
    };
    verified.identity()
}

/// The ids of a token this layer signed.
#[derive(serde::Deserialize)]
struct Ids {
    jti: String,
    exp: i64,
    iat: Option<i64>,
}

/// The `jti`, `exp` and `iat` of a token this layer signed, read without
/// verifying.
fn unverified_ids(token: &str) -> Option<Ids> {
    let (serde::de::IgnoredAny, ids) = jws::unverified::<serde::de::IgnoredAny, Ids>(token)?;
    Some(ids)
}
