//! The middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use crate::claims::Claims;
use crate::core::signature_part;
use crate::extensions::RawToken;
use crate::future::{PendingRenewal, ResponseFuture};
use crate::keys::Keys;
use crate::layer::Config;
use crate::policy::{RenewalContext, RenewalPolicy};
use crate::reject::{Rejection, RejectionKind, Responder};

/// The service produced by [`SlidingJwtLayer`](crate::SlidingJwtLayer): verifies
/// each request's token, puts the claims into the request's extensions, calls
/// the inner service, and attaches a renewed token to the response when due.
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
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, K, C, P, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let config = &self.config;
        let now = config.core.clock.now();

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

        let Some((source, token)) = found else {
            if config.optional {
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            return ResponseFuture::rejected(reject(
                config,
                Rejection::new(RejectionKind::MissingCredentials),
            ));
        };

        let claims: C = match config.core.verify(token, now) {
            Ok(claims) => claims,
            Err(kind) => return ResponseFuture::rejected(reject(config, Rejection::new(kind))),
        };
        let raw = RawToken(Arc::from(token));
        let renewal = plan(config, &claims, raw.as_str(), source, now, request.method());
        request.extensions_mut().insert(claims);
        request.extensions_mut().insert(raw);
        ResponseFuture::inner(self.inner.call(request), renewal)
    }
}

fn reject<K, C, P, R, B>(config: &Config<K, C, P, R>, rejection: Rejection) -> Response<B>
where
    R: Responder<B>,
{
    let mut response = config.responder.respond(&rejection);
    response.extensions_mut().insert(rejection);
    response
}

/// Whether this request's token qualifies for renewal; the response decides the rest.
fn plan<K, C, P, R>(
    config: &Arc<Config<K, C, P, R>>,
    claims: &C,
    token: &str,
    source: usize,
    now: i64,
    method: &Method,
) -> Option<PendingRenewal<K, C, P, R>>
where
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    if method == Method::OPTIONS {
        return None;
    }
    let core = &config.core;
    let registered = claims.registered();
    // Without `auth_time` the session cap cannot be enforced: never renew.
    let deadline = core.session_deadline(registered)?;
    let renewed_expires_at = now.saturating_add(core.ttl).min(deadline);
    if renewed_expires_at <= registered.exp {
        return None;
    }
    let ctx = RenewalContext::new(
        now,
        registered.iat,
        registered.exp,
        core.ttl,
        renewed_expires_at,
    );
    if !config.policy.should_renew(&ctx) {
        return None;
    }
    Some(PendingRenewal {
        config: config.clone(),
        claims: claims.clone(),
        flight_key: signature_part(token).into(),
        source,
        now,
        expires_at: renewed_expires_at,
        forget_after: registered.exp.saturating_add(core.leeway),
    })
}
