//! The client half: keeps a caller's token fresh.
//!
//! [`ClientLayer`] wraps an HTTP or gRPC client service (a hyper-util
//! `Client`, a tonic `Channel`, any `tower::Service<http::Request<B>>`). It
//! attaches the current token to every request that has no `Authorization`
//! header of its own, and adopts a renewed token from any response that
//! carries one (`Authorization: Bearer ...` for HTTP, `authorization` in the
//! initial metadata for gRPC). When responses race, the token with the latest
//! `exp` wins, so an older renewal arriving last never replaces a newer one.
//! The application reads the current token from the shared [`TokenStore`]
//! (e.g. to persist it).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct Current {
    /// `Bearer <token>`, ready to attach (marked sensitive).
    header: HeaderValue,
    /// The token's `exp`; `i64::MIN` when it could not be read.
    expires_at: i64,
}

/// The token a client currently holds, shared by every clone of the client
/// service and by the application. `Debug` never prints the token.
#[derive(Clone, Default)]
pub struct TokenStore {
    current: Arc<RwLock<Option<Current>>>,
}

impl TokenStore {
    /// A store holding `token` (for example the login token).
    pub fn new(token: &str) -> Self {
        let store = Self::default();
        store.replace(token);
        store
    }

    /// An empty store: requests go out without a token until one is set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The current token.
    pub fn token(&self) -> Option<String> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let header = current.as_ref()?.header.to_str().ok()?;
        header.strip_prefix("Bearer ").map(str::to_owned)
    }

    /// The current token's `exp`, if it could be read.
    pub fn expires_at(&self) -> Option<i64> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .map(|c| c.expires_at)
            .filter(|&exp| exp != i64::MIN)
    }

    /// Sets the token unconditionally (e.g. after a new login); returns
    /// whether it was a well-formed header value.
    pub fn replace(&self, token: &str) -> bool {
        let Some(current) = current(token) else {
            return false;
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(current);
        true
    }

    /// Forgets the token (e.g. after logout).
    pub fn clear(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Adopts `token` if it expires later than the current one; returns whether it did.
    pub fn offer(&self, token: &str) -> bool {
        let Some(offered) = current(token) else {
            return false;
        };
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(held) if held.expires_at >= offered.expires_at => false,
            _ => {
                *slot = Some(offered);
                true
            }
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|c| c.header.clone())
    }
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

fn current(token: &str) -> Option<Current> {
    let mut header = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    header.set_sensitive(true);
    Some(Current {
        header,
        expires_at: unverified_exp(token).unwrap_or(i64::MIN),
    })
}

/// The `exp` of a token, read without verification: a client cannot verify
/// (it has no key) and only compares its own tokens' lifetimes.
fn unverified_exp(token: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: i64,
    }
    if token.len() > 64 * 1024 {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Exp>(&json).ok().map(|e| e.exp)
}

/// A tower layer for clients that attaches the current token and adopts
/// renewed ones.
///
/// ```
/// use tower_sliding_jwt::{ClientLayer, TokenStore};
///
/// let tokens = TokenStore::new("eyJ...login-token");
/// let layer = ClientLayer::new(tokens.clone());
/// // tower::ServiceBuilder::new().layer(layer).service(hyper_client_or_tonic_channel)
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ClientLayer {
    tokens: TokenStore,
    response_header: HeaderName,
}

impl ClientLayer {
    /// Attaches and renews the tokens in `tokens`.
    pub fn new(tokens: TokenStore) -> Self {
        Self {
            tokens,
            response_header: AUTHORIZATION,
        }
    }

    /// Reads renewed tokens from another response header (when the server
    /// delivers them there); its value is `Bearer <token>` or the bare token.
    pub fn with_response_header(mut self, name: HeaderName) -> Self {
        self.response_header = name;
        self
    }

    /// The shared token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Client {
            inner,
            tokens: self.tokens.clone(),
            response_header: self.response_header.clone(),
        }
    }
}

/// The client service produced by [`ClientLayer`].
#[derive(Debug, Clone)]
pub struct Client<S> {
    inner: S,
    tokens: TokenStore,
    response_header: HeaderName,
}

impl<S> Client<S> {
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
        &self.tokens
    }
}

impl<S, B, RB> Service<Request<B>> for Client<S>
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
        if !request.headers().contains_key(AUTHORIZATION)
            && let Some(header) = self.tokens.header()
        {
            request.headers_mut().insert(AUTHORIZATION, header);
        }
        ClientFuture {
            future: self.inner.call(request),
            tokens: self.tokens.clone(),
            response_header: self.response_header.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Client`].
    pub struct ClientFuture<F> {
        #[pin]
        future: F,
        tokens: TokenStore,
        response_header: HeaderName,
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
        if let Some(value) = response
            .headers()
            .get(&*this.response_header)
            .and_then(|v| v.to_str().ok())
        {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or(value);
            this.tokens.offer(token.trim());
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(exp: i64) -> String {
        format!(
            "e30.{}.c2ln",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn the_latest_exp_wins() {
        let store = TokenStore::new(&token(100));
        assert_eq!(store.expires_at(), Some(100));
        assert!(store.offer(&token(300)));
        assert!(
            !store.offer(&token(200)),
            "an older renewal arriving late is ignored"
        );
        assert_eq!(store.token().unwrap(), token(300));
        assert!(
            !store.offer("not a jwt"),
            "unreadable tokens never replace a readable one"
        );
        assert!(!store.offer("bad\nheader"));
        store.clear();
        assert!(store.token().is_none());
        assert!(store.offer("opaque"), "anything beats nothing");
        assert!(!format!("{store:?}").contains("opaque"));
    }
}
