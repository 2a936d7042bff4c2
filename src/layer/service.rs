//! [`SlidingJwt`], the middleware service: finds and verifies the token,
//! checks revocation, plans a renewal, and calls the inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use super::future::{Gate, ResponseFuture};
use super::policy::RenewalPolicy;
use super::renewal::{After, Signed, Successor, plan};
use super::revalidate::Verdict;
use super::{Config, reject};
use crate::BoxFuture;
use crate::claims::Claims;
use crate::dpop::DpopMode;
use crate::keys::Keys;
use crate::reject::{Rejection, RejectionKind, Responder};
use crate::revoke::{OnReused, Pending, Settled, StoreError, TokenIds};
use crate::session::{AuthenticatedByLayer, Session};
use crate::stats::Event;
use crate::token::{Held, RawToken, Verified};

/// The service produced by [`SlidingJwtLayer`](crate::SlidingJwtLayer): verifies
/// each request's token, checks revocation, puts one [`Session`] handle (the
/// claims and the raw token with it) into the request's extensions, calls the
/// inner service, and attaches a renewed token to the response when due.
pub struct SlidingJwt<S, K, C, P, R> {
    inner: S,
    config: Arc<Config<K, C, P, R>>,
}

impl<S, K, C, P, R> SlidingJwt<S, K, C, P, R> {
    pub(crate) fn new(inner: S, config: Arc<Config<K, C, P, R>>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, C, P, R> Clone for SlidingJwt<S, K, C, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, K, C, P, R> fmt::Debug for SlidingJwt<S, K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingJwt")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, C, P, R, ReqB, ResB> Service<Request<ReqB>> for SlidingJwt<S, K, C, P, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, S::Future, ResB, K, C, P, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let config = &self.config;
        let (engine, checkpoint) = (&config.engine, &config.checkpoint);
        let now = engine.clock.now();

        let mut found = None;
        for (index, source) in config.sources.iter().enumerate() {
            match source.extract(request.headers()) {
                Ok(Some(token)) => {
                    found = Some((index, token));
                    break;
                }
                Ok(None) => {}
                Err(rejection) => return ResponseFuture::rejected(reject(config, rejection)),
            }
        }

        if let Some((index, _)) = found
            && config.sources[index].is_ambient()
            && !config
                .cross_origin
                .allows(request.method(), request.uri(), request.headers())
        {
            return ResponseFuture::rejected(reject(
                config,
                Rejection::new(RejectionKind::CrossSiteRequest),
            ));
        }
        let Some((source, token)) = found else {
            if config.anonymous {
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            return ResponseFuture::rejected(reject(
                config,
                Rejection::new(RejectionKind::MissingCredentials),
            ));
        };

        let (verified, deadline) = match verify(config, token, request.headers(), now) {
            Ok(verified) => verified,
            Err(kind) => return ResponseFuture::rejected(reject(config, Rejection::new(kind))),
        };
        let claims = &verified.claims;
        let replay = match bind(config, source, token, &request, claims, now) {
            Ok(replay) => replay,
            Err(kind) => return ResponseFuture::rejected(reject(config, Rejection::new(kind))),
        };
        config.env.counters.count(Event::Verified);

        let pending = match checkpoint.enter(&TokenIds::of(claims.registered()), now) {
            Ok(pending) => pending,
            Err(kind) => return ResponseFuture::rejected(reject(config, Rejection::new(kind))),
        };
        // The first use of a replacement here marks the token it replaced
        // (also for a superseded one: its chain has moved on all the same).
        let mark = checkpoint.mark(claims.registered(), now);

        let activity = config.activity.as_ref().is_none_or(|is_activity| {
            is_activity(request.method(), request.uri(), request.headers())
        });
        // A superseded token is served as its successor, if at all: no plan
        // or hook for its own claims.
        let superseded = matches!(pending, Some(Pending::Superseded));
        let plan = (activity && !superseded)
            .then(|| plan(config, claims, deadline, now, request.method()))
            .flatten();
        let hook = match (&plan, &config.revalidate) {
            (Some(_), Some(hook)) => Some(hook.revalidate(claims)),
            _ => None,
        };

        // One allocation carries the claims, the raw token and the session
        // state; the extension and the response future share it.
        let session = Session::new(verified, config.env.clone(), deadline, engine.leeway);
        request.extensions_mut().insert(session.clone());
        request.extensions_mut().insert(AuthenticatedByLayer);
        let after = After::new(config.clone(), session, source, now, plan);

        if pending.is_none() && mark.is_none() && hook.is_none() && replay.is_none() {
            return ResponseFuture::inner(self.inner.call(request), Some(after));
        }
        let admitting = pending.map(|pending| Admitting {
            config: config.clone(),
            pending,
            session: after.session().clone(),
            activity,
            method: request.method().clone(),
        });
        // Asynchronous checks first. The service that reported ready is the one
        // called afterwards; a clone stays behind for the next request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let gate = gate(admitting, now, replay, mark, hook);
        ResponseFuture::checking(Box::pin(gate), ready, request, after)
    }
}

/// A shared replay cache's answer: is this the proof's first use?
type Replay = BoxFuture<'static, Result<bool, StoreError>>;

/// DPoP (`with_dpop`): a token bound to a key (`cnf`) is accepted only
/// under the `DPoP` scheme (the layer's source 0) with a proof signed by
/// that key; an unbound one never under that scheme, nor at all where
/// DPoP is required. Without DPoP, a bound token is refused. Answers the
/// cluster's replay check still to await, if the store shares one.
fn bind<K, C: Claims, P, R, B>(
    config: &Config<K, C, P, R>,
    source: usize,
    token: &str,
    request: &Request<B>,
    claims: &C,
    now: i64,
) -> Result<Option<Replay>, RejectionKind> {
    let cnf = claims.registered().cnf.as_ref();
    let Some(guard) = &config.env.dpop else {
        return match cnf {
            Some(_) => Err(RejectionKind::SchemeMismatch),
            None => Ok(None),
        };
    };
    match (source == 0, cnf) {
        (false, None) if guard.mode == DpopMode::Allowed => Ok(None),
        (true, Some(cnf)) => {
            let checked = guard.check(
                request.method(),
                request.uri(),
                request.headers(),
                Some(token),
                now,
            )?;
            if checked.jkt != cnf.jkt {
                return Err(RejectionKind::InvalidDpopProof);
            }
            let shared = config.env.store.replays();
            Ok(shared.map(|cache| cache.remember(checked.id, guard.until(&checked))))
        }
        _ => Err(RejectionKind::SchemeMismatch),
    }
}

/// Verifies `token`, or finds it in the verified-token cache and re-checks
/// what can change with time; answers the token and its session's cap.
fn verify<K: Keys, C: Claims, P, R>(
    config: &Config<K, C, P, R>,
    token: &str,
    headers: &http::HeaderMap,
    now: i64,
) -> Result<(Held<C>, Option<i64>), RejectionKind> {
    let engine = &config.engine;
    let Some(cache) = &config.cache else {
        let (claims, key, deadline) = engine.verify_keyed(token, now)?;
        let token = RawToken::find(headers, token);
        return Ok((Held::Owned(Verified { claims, token, key }), deadline));
    };
    let version = engine.keys.version();
    if token.len() <= engine.max_token_bytes
        && let Some(verified) = cache.get(token, version, &engine.keys.verification_keys())
    {
        let deadline = engine.validate(verified.claims.registered(), now)?;
        config.env.counters.count(Event::CacheHit);
        return Ok((Held::Shared(verified), deadline));
    }
    let (claims, key, deadline) = engine.verify_keyed(token, now)?;
    // A cached entry outlives the request: it keeps its own copy of the
    // token, not the request's header bytes (which may be a slice of a much
    // larger read buffer).
    let token = RawToken::copy(token);
    let verified = Arc::new(Verified { claims, token, key });
    cache.insert(verified.clone(), version);
    Ok((Held::Shared(verified), deadline))
}

/// The admission still to finish before the inner service runs, and what
/// serving the request as a superseded token's successor needs.
struct Admitting<K, C, P, R> {
    config: Arc<Config<K, C, P, R>>,
    pending: Pending,
    session: Session<C>,
    /// Whether the request counts as activity (the layer's rule).
    activity: bool,
    method: Method,
}

/// Finishes the admission (revoking the session of a reused token; finding
/// the successor of a superseded one), awaits the reuse mark, then the
/// revalidation hook.
async fn gate<K, C, P, R>(
    admitting: Option<Admitting<K, C, P, R>>,
    now: i64,
    replay: Option<Replay>,
    mark: Option<BoxFuture<'static, Result<(), StoreError>>>,
    hook: Option<BoxFuture<'static, Verdict<C>>>,
) -> Gate<C>
where
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    // A proof another instance already took is a replay.
    if let Some(replay) = replay {
        match replay.await {
            Ok(true) => {}
            Ok(false) => return Gate::Reject(RejectionKind::InvalidDpopProof),
            Err(_) => return Gate::Reject(RejectionKind::StoreUnavailable),
        }
    }
    if let Some(admitting) = admitting {
        let checkpoint = &admitting.config.checkpoint;
        let session = &admitting.session;
        let settled = checkpoint.settle(
            admitting.pending,
            session.claims(),
            session.deadline(),
            now,
            OnReused::EndSession,
        );
        match settled.await {
            Err(kind) => return Gate::Reject(kind),
            Ok(Settled::Admitted) => {}
            Ok(Settled::Superseded) => {
                // Its chain's mark first: a superseded token's replacement
                // was used all the same.
                if let Some(mark) = mark
                    && mark.await.is_err()
                {
                    return Gate::Reject(RejectionKind::StoreUnavailable);
                }
                return succeed(
                    &admitting.config,
                    session,
                    admitting.activity,
                    &admitting.method,
                    now,
                )
                .await;
            }
        }
    }
    if let Some(mark) = mark
        && mark.await.is_err()
    {
        return Gate::Reject(RejectionKind::StoreUnavailable);
    }
    match hook {
        None => Gate::Proceed(Verdict::Approve),
        Some(hook) => match hook.await {
            Verdict::Reject => Gate::Reject(RejectionKind::SessionRejected),
            verdict => Gate::Proceed(verdict),
        },
    }
}

/// A token `renew_with` superseded: the request is served as the token
/// that superseded it, when this instance (or the cluster's shared flight)
/// still knows that token and it is of the same session, verifies and is
/// admitted; the client gets it with the response. Refused otherwise (401):
/// never served with the superseded claims.
async fn succeed<K, C, P, R>(
    config: &Arc<Config<K, C, P, R>>,
    presented: &Session<C>,
    activity: bool,
    method: &Method,
    now: i64,
) -> Gate<C>
where
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    let refused = || Gate::Reject(RejectionKind::Revoked);
    let Some(id) = presented.identity() else {
        return refused();
    };
    let found = match config.successors.get(id.key(), now) {
        Some(found) => Some(found),
        None => match config.checkpoint.store.shared_flight() {
            None => None,
            Some(shared) => match shared.replacement(id.secret()).await {
                Ok(found) => found,
                Err(_) => return Gate::Reject(RejectionKind::StoreUnavailable),
            },
        },
    };
    let Some((token, _)) = found else {
        return refused();
    };
    let engine = &config.engine;
    let Ok((claims, key, deadline)) = engine.verify_keyed(&token, now) else {
        return refused();
    };
    let (old, new) = (presented.claims().registered(), claims.registered());
    // What the client is told comes from the verified token, not from
    // what the flight stored beside it.
    let expires_at = new.exp;
    // The successor keeps the binding the request's proof was checked for.
    if new.sid.is_none() || new.sid != old.sid || new.sub != old.sub || new.cnf != old.cnf {
        return refused();
    }
    // The successor is admitted as itself, or not at all.
    let checkpoint = &config.checkpoint;
    match checkpoint.enter(&TokenIds::of(new), now) {
        Err(kind) => return Gate::Reject(kind),
        Ok(None) => {}
        Ok(Some(pending)) => {
            match checkpoint
                .settle(pending, &claims, deadline, now, OnReused::EndSession)
                .await
            {
                Ok(Settled::Admitted) => {}
                Ok(Settled::Superseded) => return refused(),
                Err(kind) => return Gate::Reject(kind),
            }
        }
    }
    let plan = activity
        .then(|| plan(config, &claims, deadline, now, method))
        .flatten();
    let verdict = match (&plan, &config.revalidate) {
        (Some(_), Some(hook)) => match hook.revalidate(&claims).await {
            Verdict::Reject => return Gate::Reject(RejectionKind::SessionRejected),
            verdict => verdict,
        },
        _ => Verdict::Approve,
    };
    let verified = Verified {
        claims,
        token: RawToken::copy(&token),
        key,
    };
    let session = Session::new(
        Held::Owned(verified),
        config.env.clone(),
        deadline,
        engine.leeway,
    );
    Gate::Succeed(Box::new(Successor {
        session,
        plan,
        verdict,
        token: Signed::new(token, expires_at),
    }))
}
