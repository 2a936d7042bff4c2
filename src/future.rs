//! The response future: awaits asynchronous checks when there are any, calls
//! the inner service, and attaches the renewed token when the response allows it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::claims::Claims;
use crate::core::random_id;
use crate::extensions::{NoRenewal, Renewed};
use crate::keys::Keys;
use crate::layer::Config;
use crate::policy::RenewalPolicy;
use crate::reject::{Rejection, RejectionKind, Responder};
use crate::revalidate::Verdict;
use crate::revoke::{BoxFuture, Lookup, Status, TokenIds};
use crate::service::reject;
use crate::session::{Action, Session};

/// The outcome of the asynchronous checks.
pub(crate) enum Gate<C> {
    Proceed(Verdict<C>),
    Reject(RejectionKind),
}

pin_project! {
    /// Response future of [`SlidingJwt`](crate::SlidingJwt).
    pub struct ResponseFuture<S, ReqB, F, B, K, C, P, R> {
        #[pin]
        kind: Kind<S, ReqB, F, B, K, C, P, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqB, F, B, K, C, P, R> {
        Rejected { response: Option<Response<B>> },
        Checking {
            gate: BoxFuture<'static, Gate<C>>,
            service: Option<S>,
            request: Option<Request<ReqB>>,
            after: Option<After<K, C, P, R>>,
        },
        Inner {
            #[pin]
            future: F,
            after: Option<After<K, C, P, R>>,
        },
    }
}

impl<S, ReqB, F, B, K, C, P, R> ResponseFuture<S, ReqB, F, B, K, C, P, R> {
    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(future: F, after: Option<After<K, C, P, R>>) -> Self {
        Self {
            kind: Kind::Inner { future, after },
        }
    }

    pub(crate) fn checking(
        gate: BoxFuture<'static, Gate<C>>,
        service: S,
        request: Request<ReqB>,
        after: After<K, C, P, R>,
    ) -> Self {
        Self {
            kind: Kind::Checking {
                gate,
                service: Some(service),
                request: Some(request),
                after: Some(after),
            },
        }
    }
}

impl<S, ReqB, F, B, K, C, P, R> fmt::Debug for ResponseFuture<S, ReqB, F, B, K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Checking { .. } => "checking",
            Kind::Inner { .. } => "calling inner service",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

const INVARIANT: &str = "ResponseFuture polled after completion";

impl<S, ReqB, F, B, E, K, C, P, R> Future for ResponseFuture<S, ReqB, F, B, K, C, P, R>
where
    S: Service<Request<ReqB>, Response = Response<B>, Error = E, Future = F>,
    F: Future<Output = Result<Response<B>, E>>,
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
    R: Responder<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.kind.as_mut().project() {
                KindProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().expect(INVARIANT)));
                }
                KindProj::Inner { future, after } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(after) = after.take() {
                        after.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                KindProj::Checking {
                    gate,
                    service,
                    request,
                    after,
                } => {
                    let gate = ready!(gate.as_mut().poll(cx));
                    let mut after = after.take().expect(INVARIANT);
                    match gate {
                        Gate::Reject(kind) => Kind::Rejected {
                            response: Some(reject(&after.config, Rejection::new(kind))),
                        },
                        Gate::Proceed(verdict) => {
                            after.verdict(verdict);
                            let mut service = service.take().expect(INVARIANT);
                            let future = service.call(request.take().expect(INVARIANT));
                            Kind::Inner {
                                future,
                                after: Some(after),
                            }
                        }
                    }
                }
            };
            this.kind.set(next);
        }
    }
}

/// A renewal the request qualified for.
pub(crate) struct Plan {
    /// The old token's signature: the single-flight key.
    pub(crate) flight_key: Box<str>,
    pub(crate) expires_at: i64,
    pub(crate) forget_after: i64,
}

/// What happens once the inner service answered an authenticated request.
pub(crate) struct After<K, C, P, R> {
    config: Arc<Config<K, C, P, R>>,
    session: Session<C>,
    /// Index of the source the token came from; the new one goes back there.
    source: usize,
    now: i64,
    plan: Option<Plan>,
    /// Claims from the revalidation hook, replacing the current ones.
    update: Option<C>,
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

    fn verdict(&mut self, verdict: Verdict<C>) {
        match verdict {
            Verdict::Approve => {}
            Verdict::Update(claims) => self.update = Some(claims),
            Verdict::Veto | Verdict::Reject => self.plan = None,
        }
    }
}

impl<K: Keys, C: Claims, P: RenewalPolicy, R> After<K, C, P, R> {
    fn apply<B>(mut self, response: &mut Response<B>) {
        let config = &self.config;
        let source = &config.sources[self.source];
        let action = self.session.take_action();
        if let Action::End = action {
            source.end_session(response.headers_mut());
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return;
        }
        // Nothing to sign: skip the response checks and the revocation re-check.
        if self.plan.is_none() && !matches!(action, Action::RenewWith(_)) {
            return;
        }
        if !config
            .policy
            .accepts_response(response.status(), response.headers())
            || response.extensions().get::<NoRenewal>().is_some()
            || source.is_delivered(response.headers())
            || self.revoked_meanwhile()
        {
            return;
        }
        let current = self.session.claims();
        let signed = match (action, self.plan.take()) {
            // The handler asked for new claims now: sign them, whatever the window.
            (Action::RenewWith(claims), _) => {
                let deadline = config
                    .core
                    .session_deadline(current.registered())
                    .unwrap_or(current.registered().exp);
                let expires_at = self.now.saturating_add(config.core.ttl).min(deadline);
                self.sign(claims, expires_at)
                    .map(|token| (Arc::from(token), expires_at))
            }
            (_, Some(plan)) => {
                let update = self.update.take();
                config
                    .flights
                    .get_or_sign(&plan.flight_key, self.now, plan.forget_after, || {
                        let claims = update.unwrap_or_else(|| current.clone());
                        Ok((self.sign(claims, plan.expires_at)?, plan.expires_at))
                    })
            }
            (_, None) => return,
        };
        // If signing fails the response goes out with no renewal: the old
        // token stays valid and the next request tries again.
        if let Ok((token, expires_at)) = signed {
            let headers = response.headers_mut();
            source.deliver(&token, expires_at.saturating_sub(self.now), headers);
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.extensions_mut().insert(Renewed { expires_at });
        }
    }

    /// Signs `claims` as the next token of the current session: `sid` and
    /// `auth_time` are the session's, whatever `claims` say.
    fn sign(&self, mut claims: C, expires_at: i64) -> Result<String, crate::IssueError> {
        let current = self.session.claims().registered();
        let registered = claims.registered_mut();
        registered.sid.clone_from(&current.sid);
        registered.auth_time = current.auth_time;
        let claims = claims.renewed(self.now, expires_at, random_id()?);
        self.config.core.sign(&claims)
    }

    /// A revocation that landed while the inner service ran is honoured: no
    /// replacement is issued for a session revoked mid-request.
    fn revoked_meanwhile(&self) -> bool {
        let core = &self.config.core;
        let ids = TokenIds::of(self.session.claims().registered());
        matches!(
            core.store.check(&ids, core.clock.now()),
            Lookup::Ready(Ok(Status::Revoked))
        )
    }
}
