//! The response future and its states: awaits asynchronous checks when there
//! are any, calls the inner service, and hands the response to the renewal
//! (`renewal.rs`), which attaches a replacement when one is due.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::policy::RenewalPolicy;
use super::reject;
use super::renewal::{After, Finish, Signed, Successor};
use super::revalidate::Verdict;
use crate::BoxFuture;
use crate::claims::Claims;
use crate::keys::Keys;
use crate::reject::{Rejection, RejectionKind, Responder};

/// The outcome of the asynchronous checks.
pub(crate) enum Gate<C> {
    Proceed(Verdict<C>),
    /// Serve the request as the token that superseded the one it presented
    /// (boxed: rare).
    Succeed(Box<Successor<C>>),
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
            // The service and the request wait boxed: this state is rare (a
            // store that needs I/O, a reuse mark, a revalidation hook), and
            // keeping a request inline would double every response future.
            call: Option<Box<(S, Request<ReqB>)>>,
            after: Option<After<K, C, P, R>>,
        },
        Inner {
            #[pin]
            future: F,
            after: Option<After<K, C, P, R>>,
        },
        Finishing {
            work: BoxFuture<'static, Option<Signed>>,
            response: Option<Response<B>>,
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
                call: Some(Box::new((service, request))),
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
            Kind::Finishing { .. } => "confirming the renewal",
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
                    let Some(mut after) = after.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    match after.finish(&mut response) {
                        Finish::Done => return Poll::Ready(Ok(response)),
                        Finish::Deliver(signed) => {
                            after.deliver(signed, &mut response);
                            return Poll::Ready(Ok(response));
                        }
                        Finish::Wait(work) => Kind::Finishing {
                            work,
                            response: Some(response),
                            after: Some(after),
                        },
                    }
                }
                KindProj::Finishing {
                    work,
                    response,
                    after,
                } => {
                    let signed = ready!(work.as_mut().poll(cx));
                    let mut response = response.take().expect(INVARIANT);
                    let mut after = after.take().expect(INVARIANT);
                    if let Some(signed) = signed.or_else(|| after.successor(&response)) {
                        after.deliver(signed, &mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                KindProj::Checking { gate, call, after } => {
                    let gate = ready!(gate.as_mut().poll(cx));
                    let mut after = after.take().expect(INVARIANT);
                    match gate {
                        Gate::Reject(kind) => Kind::Rejected {
                            response: Some(reject(&after.config, Rejection::new(kind))),
                        },
                        Gate::Proceed(verdict) => {
                            after.verdict(verdict);
                            let (mut service, request) = *call.take().expect(INVARIANT);
                            let future = service.call(request);
                            Kind::Inner {
                                future,
                                after: Some(after),
                            }
                        }
                        Gate::Succeed(successor) => {
                            let (mut service, mut request) = *call.take().expect(INVARIANT);
                            // The handler sees the successor's session, never
                            // the superseded claims.
                            request.extensions_mut().insert(successor.session.clone());
                            after.succeed(*successor);
                            let future = service.call(request);
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
#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use http::{Request, Response};

    use crate::policy::DefaultPolicy;
    use crate::{HttpResponder, Key, StandardClaims};

    type Inner = Ready<Result<Response<()>, Infallible>>;
    type Service = tower::util::ServiceFn<fn(Request<()>) -> Inner>;

    /// Every request's future is moved at least once (into a pinned slot or
    /// a box): the rare states keep their bulk (a waiting request, the
    /// hook's claims) boxed, so the future stays about the inner one's size.
    #[test]
    fn the_response_future_is_about_the_size_of_the_inner_one() {
        let ours = size_of::<
            super::ResponseFuture<
                Service,
                (),
                Inner,
                (),
                Key,
                StandardClaims,
                DefaultPolicy,
                HttpResponder,
            >,
        >();
        let inner = size_of::<Inner>();
        assert!(
            ours <= inner + 96,
            "{ours} bytes around a {inner}-byte future"
        );
    }
}
