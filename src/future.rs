//! The response future: passes the inner response through and attaches the
//! renewed token when the response allows it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::claims::Claims;
use crate::core::random_id;
use crate::extensions::{NoRenewal, Renewed};
use crate::keys::Keys;
use crate::layer::Config;
use crate::policy::RenewalPolicy;

pin_project! {
    /// Response future of [`SlidingJwt`](crate::SlidingJwt).
    pub struct ResponseFuture<F, B, K, C, P, R> {
        #[pin]
        kind: Kind<F, B, K, C, P, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, K, C, P, R> {
        Rejected { response: Option<Response<B>> },
        Inner {
            #[pin]
            future: F,
            renewal: Option<PendingRenewal<K, C, P, R>>,
        },
    }
}

impl<F, B, K, C, P, R> ResponseFuture<F, B, K, C, P, R> {
    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(future: F, renewal: Option<PendingRenewal<K, C, P, R>>) -> Self {
        Self {
            kind: Kind::Inner { future, renewal },
        }
    }
}

impl<F, B, K, C, P, R> fmt::Debug for ResponseFuture<F, B, K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner {
                renewal: Some(_), ..
            } => "renewing",
            Kind::Inner { renewal: None, .. } => "passing through",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E, K, C, P, R> Future for ResponseFuture<F, B, K, C, P, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    K: Keys,
    C: Claims,
    P: RenewalPolicy,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Inner { future, renewal } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(renewal) = renewal.take() {
                    renewal.apply(&mut response);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// A renewal decided before the inner service ran, completed if the response
/// allows it.
pub(crate) struct PendingRenewal<K, C, P, R> {
    pub(crate) config: Arc<Config<K, C, P, R>>,
    pub(crate) claims: C,
    /// The old token's signature: the single-flight key.
    pub(crate) flight_key: Box<str>,
    /// Index of the source the token came from; the new one goes back there.
    pub(crate) source: usize,
    pub(crate) now: i64,
    pub(crate) expires_at: i64,
    pub(crate) forget_after: i64,
}

impl<K: Keys, C: Claims, P: RenewalPolicy, R> PendingRenewal<K, C, P, R> {
    fn apply<B>(self, response: &mut Response<B>) {
        let config = &self.config;
        let source = &config.sources[self.source];
        if !config
            .policy
            .accepts_response(response.status(), response.headers())
            || response.extensions().get::<NoRenewal>().is_some()
            || source.is_delivered(response.headers())
        {
            return;
        }
        let core = &config.core;
        let signed =
            config
                .flights
                .get_or_sign(&self.flight_key, self.now, self.forget_after, || {
                    let claims = self.claims.renewed(self.now, self.expires_at, random_id()?);
                    Ok((core.sign(&claims)?, self.expires_at))
                });
        // If signing fails the response goes out with no renewal: the old
        // token stays valid and the next request tries again.
        if let Ok((token, expires_at)) = signed {
            let headers = response.headers_mut();
            source.deliver(&token, expires_at.saturating_sub(self.now), headers);
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.extensions_mut().insert(Renewed { expires_at });
        }
    }
}
