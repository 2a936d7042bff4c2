//! [`SlidingJwtClient`]: attaches the token to requests for the bound
//! origin, and has their responses read.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_service::Service;

use super::future::{ClientFuture, Watch};
use super::{ClientConfig, TokenStore};
use crate::dpop::DPOP;
use crate::source::credential;

/// The client service produced by [`ClientLayer`](crate::ClientLayer).
#[derive(Debug, Clone)]
pub struct SlidingJwtClient<S> {
    inner: S,
    config: Arc<ClientConfig>,
}

impl<S> SlidingJwtClient<S> {
    pub(super) fn new(inner: S, config: Arc<ClientConfig>) -> Self {
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

    /// The shared token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.config.tokens
    }
}

impl<S, B, RB> Service<Request<B>> for SlidingJwtClient<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Only requests for the bound origin that carry no credentials of
        // their own get the token, and only their responses are read.
        let watch = (self.config.binding.covers(request.uri())
            && !request.headers().contains_key(AUTHORIZATION))
        .then(|| {
            let tokens = &self.config.tokens;
            let sent = tokens.header();
            match &self.config.dpop {
                None => {
                    if let Some(header) = &sent {
                        request.headers_mut().insert(AUTHORIZATION, header.clone());
                    }
                }
                Some(dpop) => {
                    // The proof names the token it goes with; the token
                    // goes under the DPoP scheme.
                    // One snapshot: the token sent is the one `sent` names.
                    let token = sent
                        .as_ref()
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.strip_prefix("Bearer "))
                        .map(str::to_owned);
                    let proof = dpop.proof(
                        request.method(),
                        request.uri(),
                        token.as_deref(),
                        tokens.now(),
                    );
                    let headers = request.headers_mut();
                    if let Some(proof) = proof {
                        headers.insert(DPOP, proof);
                    }
                    if let Some(value) = token.and_then(|t| credential("DPoP", &t)) {
                        headers.insert(AUTHORIZATION, value);
                    }
                }
            }
            Watch {
                config: self.config.clone(),
                sent,
            }
        });
        ClientFuture::new(self.inner.call(request), watch)
    }
}
