//! The client half's DPoP: a proof on every request, the server's latest
//! nonce remembered, and [`NonceRetryLayer`] for the one retry a fresh
//! nonce asks for.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{DPOP_NONCE, DpopKey};

/// The longest nonce remembered from a server.
const MAX_NONCE_BYTES: usize = 256;

/// The latest nonce a server gave, shared by a client layer and its
/// [`NonceRetryLayer`].
#[derive(Clone, Default)]
pub(crate) struct NonceMemory(Arc<Mutex<Option<String>>>);

impl NonceMemory {
    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers the response's `DPoP-Nonce` (one value, printable, short).
    pub(crate) fn learn(&self, headers: &HeaderMap) {
        let mut values = headers.get_all(DPOP_NONCE).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return;
        };
        let Ok(nonce) = value.to_str() else { return };
        if nonce.is_empty() || nonce.len() > MAX_NONCE_BYTES || nonce.contains([' ', '"']) {
            return;
        }
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(nonce.to_owned());
    }
}

/// A client layer's DPoP settings.
#[derive(Clone)]
pub(crate) struct ClientDpop {
    key: DpopKey,
    /// The origin proofs name for a channel whose requests carry relative
    /// URIs (a tonic `Channel`): `scheme://host[:port]`.
    origin: Option<String>,
    pub(crate) nonces: NonceMemory,
}

impl ClientDpop {
    pub(crate) fn new(key: DpopKey) -> Self {
        Self {
            key,
            origin: None,
            nonces: NonceMemory::default(),
        }
    }

    pub(crate) fn with_origin(mut self, origin: String) -> Self {
        self.origin = Some(origin);
        self
    }

    /// The proof for a request to `uri`, with the token it carries; `None`
    /// when the URL cannot be told (a relative URI and no origin) or
    /// signing fails.
    pub(crate) fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        token: Option<&str>,
        now: i64,
    ) -> Option<HeaderValue> {
        // The request's own URL when it is absolute; the configured origin
        // for a channel's relative URIs.
        let url = match (uri.scheme_str(), uri.authority(), &self.origin) {
            (Some(scheme), Some(authority), _) => format!("{scheme}://{authority}{}", uri.path()),
            (_, _, Some(origin)) => format!("{origin}{}", uri.path()),
            _ => return None,
        };
        let nonce = self.nonces.get();
        let proof = self
            .key
            .proof(method.as_str(), &url, token, nonce.as_deref(), now)
            .ok()?;
        let mut value = HeaderValue::try_from(proof).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl fmt::Debug for ClientDpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientDpop")
            .field("key", &self.key)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Sends a request once more when the server answers that it wants a
/// fresh DPoP nonce (a 400 or 401 carrying a `DPoP-Nonce` other than the
/// one the client held): the client layer inside signs the retry's proof
/// with it. Once per request, never in a loop. Requests whose body cannot
/// be cloned (a streaming body, a tonic request) are not retried: the next
/// request carries the nonce anyway.
///
/// Get one from [`ClientLayer::nonce_retry`](crate::ClientLayer::nonce_retry)
/// and put it *outside* that client layer.
#[derive(Clone)]
pub struct NonceRetryLayer {
    nonces: NonceMemory,
    holds_token: HoldsToken,
}

/// Whether the client layer holds a token (its requests carry one).
pub(crate) type HoldsToken = Arc<dyn Fn() -> bool + Send + Sync>;

impl NonceRetryLayer {
    pub(crate) fn new(nonces: NonceMemory, holds_token: HoldsToken) -> Self {
        Self {
            nonces,
            holds_token,
        }
    }
}

impl fmt::Debug for NonceRetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceRetryLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for NonceRetryLayer {
    type Service = NonceRetry<S>;

    fn layer(&self, inner: S) -> NonceRetry<S> {
        NonceRetry {
            inner,
            nonces: self.nonces.clone(),
            holds_token: self.holds_token.clone(),
        }
    }
}

/// The service of a [`NonceRetryLayer`].
#[derive(Clone)]
pub struct NonceRetry<S> {
    inner: S,
    nonces: NonceMemory,
    holds_token: HoldsToken,
}

impl<S> fmt::Debug for NonceRetry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceRetry").finish_non_exhaustive()
    }
}

/// Whether a response asks for the nonce it carries (one other than
/// `held`): a 401 with the `DPoP error="use_dpop_nonce"` challenge (RFC
/// 9449 §9), or a 400 to a request that carried no token (a login: §8's
/// answer, whose `use_dpop_nonce` is in the body). A handler's own 400 or
/// 401 to a request with a token is never sent twice.
fn asks_for_nonce(
    status: StatusCode,
    headers: &HeaderMap,
    held: Option<&str>,
    had_token: bool,
) -> bool {
    let offered = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok());
    if offered.is_none() || offered == held {
        return false;
    }
    let challenged = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("DPoP ") && v.contains("error=\"use_dpop_nonce\""));
    match status {
        StatusCode::UNAUTHORIZED => challenged,
        StatusCode::BAD_REQUEST => !had_token,
        _ => false,
    }
}

impl<S, B, RB> Service<Request<B>> for NonceRetry<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    B: Clone,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = NonceRetryFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // What a retry sends: the same request line, headers and body
        // (extensions are the sender's own and stay with the first).
        let mut copy = Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        let held = self.nonces.get();
        let had_token = (self.holds_token)();
        // The service that reported ready takes this request; a clone
        // stays behind for the next one, and another sends the retry.
        let retry = self.inner.clone();
        NonceRetryFuture {
            state: State::First {
                future: self.inner.call(request),
                retry: Some((retry, copy, held, had_token)),
            },
        }
    }
}

pin_project! {
    /// Response future of [`NonceRetry`].
    pub struct NonceRetryFuture<S: Service<Request<B>>, B> {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<B>>, B> {
        First {
            #[pin]
            future: S::Future,
            retry: Option<(S, Request<B>, Option<String>, bool)>,
        },
        Ready {
            retry: Option<(S, Request<B>)>,
        },
        Second {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for NonceRetryFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceRetryFuture").finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for NonceRetryFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::First { future, retry } => {
                    let response = ready!(future.poll(cx))?;
                    let Some((service, copy, held, had_token)) = retry.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    let (status, headers) = (response.status(), response.headers());
                    if !asks_for_nonce(status, headers, held.as_deref(), had_token) {
                        return Poll::Ready(Ok(response));
                    }
                    State::Ready {
                        retry: Some((service, copy)),
                    }
                }
                StateProj::Ready { retry } => {
                    let (service, _) = retry.as_mut().expect("polled after completion");
                    ready!(service.poll_ready(cx))?;
                    let (mut service, copy) = retry.take().expect("polled after completion");
                    State::Second {
                        future: service.call(copy),
                    }
                }
                StateProj::Second { future } => return future.poll(cx),
            };
            this.state.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_an_asked_for_nonce_is_retried() {
        let nonce = ("dpop-nonce", "fresh");
        let challenge = (
            "www-authenticate",
            "DPoP error=\"use_dpop_nonce\", algs=\"ES256\"",
        );
        let (ok, bad, unauthorized) = (
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
        );
        // A resource request: only the 401 with the challenge.
        assert!(asks_for_nonce(
            unauthorized,
            &headers(&[nonce, challenge]),
            None,
            true
        ));
        assert!(!asks_for_nonce(
            unauthorized,
            &headers(&[nonce]),
            None,
            true
        ));
        assert!(
            !asks_for_nonce(bad, &headers(&[nonce]), None, true),
            "a handler's 400"
        );
        assert!(!asks_for_nonce(
            ok,
            &headers(&[nonce, challenge]),
            None,
            true
        ));
        // The nonce already held: the retry would fail the same way.
        assert!(!asks_for_nonce(
            unauthorized,
            &headers(&[nonce, challenge]),
            Some("fresh"),
            true
        ));
        // A login (no token): the 400 carrying a new nonce.
        assert!(asks_for_nonce(bad, &headers(&[nonce]), Some("old"), false));
        assert!(!asks_for_nonce(bad, &headers(&[]), None, false));
    }
}
