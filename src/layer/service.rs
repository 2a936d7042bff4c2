//! [`SlidingJwt`], the middleware service: finds and verifies the token,
//! checks revocation, plans a renewal, and calls the inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use super::future::{Gate, ResponseFuture};
use super::policy::{RenewalContext, RenewalPolicy};
use super::renewal::{After, Plan};
use super::revalidate::Verdict;
use super::{Config, reject};
use crate::claims::Claims;
use crate::keys::Keys;
use crate::reject::{Rejection, RejectionKind, Responder};
use crate::revoke::{Admission, BoxFuture, Lookup, Status, StoreError, TokenIds, admit};
use crate::session::{AuthenticatedByLayer, Session};
use crate::stats::Event;
use crate::token::{Held, RawToken, TokenEngine, Verified};

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
        let core = &config.core;
        let now = core.clock.now();

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
            if config.optional {
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            return ResponseFuture::rejected(reject(
                config,
                Rejection::new(RejectionKind::MissingCredentials),
            ));
        };

        let verified = match verify(config, token, request.headers(), now) {
            Ok(verified) => verified,
            Err(kind) => return ResponseFuture::rejected(reject(config, Rejection::new(kind))),
        };
        core.counters.count(Event::Verified);
        let claims = &verified.claims;

        let grace = core.reuse_grace();
        let check = match core.store.check(&TokenIds::of(claims.registered()), now) {
            Lookup::Ready(answer) => match admit(answer, now, grace) {
                Admission::Admit => None,
                Admission::Refuse(kind) => {
                    return ResponseFuture::rejected(reject(config, Rejection::new(kind)));
                }
                // Refused once the session is revoked, in the gate.
                Admission::Reused => Some(Check::Reused),
            },
            Lookup::Pending(lookup) => Some(Check::Lookup(lookup)),
        };
        // The first use of a replacement here marks the token it replaced.
        let mark = core.reuse_mark(claims.registered(), now);

        let activity = config.activity.as_ref().is_none_or(|is_activity| {
            is_activity(request.method(), request.uri(), request.headers())
        });
        let plan = activity
            .then(|| plan(config, claims, now, request.method()))
            .flatten();
        let hook = match (&plan, &config.revalidate) {
            (Some(_), Some(hook)) => Some(hook.revalidate(claims)),
            _ => None,
        };

        // One allocation carries the claims, the raw token and the session
        // state; the extension and the response future share it.
        let deadline = core.session_deadline(verified.claims.registered());
        let session = Session::new(verified, core.env.clone(), deadline, core.leeway);
        request.extensions_mut().insert(session.clone());
        request.extensions_mut().insert(AuthenticatedByLayer);
        let reused = (grace.is_some() && check.is_some()).then(|| Reused {
            core: core.clone(),
            session: session.clone(),
        });
        let after = After::new(config.clone(), session, source, now, plan);

        if check.is_none() && mark.is_none() && hook.is_none() {
            return ResponseFuture::inner(self.inner.call(request), Some(after));
        }
        // Asynchronous checks first. The service that reported ready is the one
        // called afterwards; a clone stays behind for the next request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let gate = gate(check, grace, now, reused, mark, hook);
        ResponseFuture::checking(Box::pin(gate), ready, request, after)
    }
}

/// Verifies `token`, or finds it in the verified-token cache and re-checks
/// what can change with time.
fn verify<K: Keys, C: Claims, P, R>(
    config: &Config<K, C, P, R>,
    token: &str,
    headers: &http::HeaderMap,
    now: i64,
) -> Result<Held<C>, RejectionKind> {
    let core = &config.core;
    let Some(cache) = &config.cache else {
        let (claims, key) = core.verify_keyed(token, now)?;
        let token = RawToken::find(headers, token);
        return Ok(Held::Owned(Verified { claims, token, key }));
    };
    let version = core.keys.version();
    if token.len() <= core.max_token_bytes
        && let Some(verified) = cache.get(token, version, &core.keys.verification_keys())
    {
        core.validate(verified.claims.registered(), now)?;
        core.counters.count(Event::CacheHit);
        return Ok(Held::Shared(verified));
    }
    let (claims, key) = core.verify_keyed(token, now)?;
    // A cached entry outlives the request: it keeps its own copy of the
    // token, not the request's header bytes (which may be a slice of a much
    // larger read buffer).
    let token = RawToken::copy(token);
    let verified = Arc::new(Verified { claims, token, key });
    cache.insert(verified.clone(), version);
    Ok(Held::Shared(verified))
}

/// The revocation check still to make before the inner service runs.
enum Check {
    /// The store needs I/O to answer.
    Lookup(BoxFuture<'static, Result<Status, StoreError>>),
    /// Already answered: a replaced token after the grace.
    Reused,
}

/// What revoking a reused token's session needs.
struct Reused<K, C> {
    core: Arc<TokenEngine<K, C>>,
    session: Session<C>,
}

/// Awaits the revocation look-up (revoking the session of a reused token),
/// the reuse mark, then the revalidation hook.
async fn gate<K: Keys, C: Claims>(
    check: Option<Check>,
    grace: Option<i64>,
    now: i64,
    reused: Option<Reused<K, C>>,
    mark: Option<BoxFuture<'static, Result<(), StoreError>>>,
    hook: Option<BoxFuture<'static, Verdict<C>>>,
) -> Gate<C> {
    let admission = match check {
        None => Admission::Admit,
        Some(Check::Reused) => Admission::Reused,
        Some(Check::Lookup(lookup)) => admit(lookup.await, now, grace),
    };
    match admission {
        Admission::Admit => {}
        Admission::Refuse(kind) => return Gate::Reject(kind),
        Admission::Reused => {
            if let Some(Reused { core, session }) = reused
                && !core.reused(session.claims(), now).await
            {
                // Fail closed: the session must end; the client retries.
                return Gate::Reject(RejectionKind::StoreUnavailable);
            }
            return Gate::Reject(RejectionKind::TokenReused);
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

/// Whether this request's token qualifies for renewal; the response decides the rest.
fn plan<K, C, P, R>(
    config: &Config<K, C, P, R>,
    claims: &C,
    now: i64,
    method: &Method,
) -> Option<Plan>
where
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    let core = &config.core;
    let registered = claims.registered();
    // Renew only while the token has not expired: one accepted within the
    // leeway after `exp` is served but never renewed. A verify-only layer
    // (no signing key) never plans a renewal.
    if method == Method::OPTIONS || now >= registered.exp || core.keys.signing_key().is_none() {
        return None;
    }
    // Without `auth_time` the session cap cannot be enforced, and without
    // `sid` a logout could only revoke the presented token while a
    // replacement handed out just before kept sliding: never renew either.
    registered.sid.as_ref()?;
    let deadline = core.session_deadline(registered)?;
    let ttl = core.session_ttl(registered);
    let expires_at = now.saturating_add(ttl).min(deadline);
    if expires_at <= registered.exp {
        return None;
    }
    let ctx = RenewalContext::new(now, registered.iat, registered.exp, ttl, expires_at);
    if !config.policy.should_renew(&ctx) {
        return None;
    }
    Some(Plan {
        expires_at,
        forget_after: registered.exp.saturating_add(core.leeway),
    })
}
