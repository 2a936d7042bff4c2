//! [`ClientFuture`], the response future of
//! [`SlidingJwtClient`](super::SlidingJwtClient), and what it checks in the
//! response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::ClientConfig;
use super::challenge::{refused_the_token, renewed_token};

pin_project! {
    /// Response future of [`SlidingJwtClient`](super::SlidingJwtClient).
    pub struct ClientFuture<F> {
        #[pin]
        future: F,
        watch: Option<Watch>,
    }
}

impl<F> ClientFuture<F> {
    pub(super) fn new(future: F, watch: Option<Watch>) -> Self {
        Self { future, watch }
    }
}

impl<F> fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        if let Some(watch) = this.watch.take() {
            watch.inspect(response.status(), response.headers());
        }
        Poll::Ready(Ok(response))
    }
}

/// What a response to a request for the bound origin is checked against.
pub(super) struct Watch {
    pub(super) config: Arc<ClientConfig>,
    /// The store's token the request carried; `None` when the store was empty.
    pub(super) sent: Option<HeaderValue>,
}

impl Watch {
    fn inspect(&self, status: StatusCode, headers: &http::HeaderMap) {
        let config = &*self.config;
        if let Some(dpop) = &config.dpop {
            dpop.nonces.learn(headers);
        }
        let grpc_status = headers.get("grpc-status").map(HeaderValue::as_bytes);
        if refused_the_token(status, headers, grpc_status) {
            if config.clear_on_unauthorized
                && let Some(sent) = &self.sent
            {
                config.tokens.clear_if(sent);
            }
            if let Some(on_unauthorized) = &config.on_unauthorized {
                on_unauthorized();
            }
            return;
        }
        if !(status.is_success() || status.is_redirection())
            || grpc_status.is_some_and(|s| s != b"0")
            || self.sent.is_none()
        {
            return;
        }
        // Exactly one value: two renewals are one too many to choose from.
        let mut values = headers.get_all(&config.response_header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return;
        };
        let Some(token) = renewed_token(
            value,
            config.response_header == AUTHORIZATION,
            config.dpop.is_some(),
        ) else {
            return;
        };
        if config.tokens.offer_within(token, config.max_token_bytes)
            && let Some(on_change) = &config.on_token_change
        {
            config.tokens.notify(&**on_change);
        }
    }
}
