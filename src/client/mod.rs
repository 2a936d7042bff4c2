//! The client half: keeps a caller's token fresh.
//!
//! [`ClientLayer`] wraps an HTTP or gRPC client service (a hyper-util
//! `Client`, a tonic `Channel`, any `tower::Service<http::Request<B>>`). It is
//! bound to one [`Origin`]: requests to that origin that have no
//! `Authorization` header of their own get the current token, and their
//! responses may carry a renewal. Requests anywhere else get no token, and
//! their responses are never read.
//!
//! A renewal (`Authorization: Bearer ...` for HTTP, `authorization` in the
//! initial metadata for gRPC) is adopted only from a 2xx/3xx response that is
//! not a gRPC error, only when it is a compact JWT tied to the held one (same
//! `sid`, `sub`, `iss`, `auth_time`, a bounded lifetime, and a valid signature
//! when the store has the issuer's keys)
//! with a later `exp` ([`TokenStore::offer`]). When responses race, the token
//! with the latest `exp` wins. The server refusing the token (its
//! `invalid_token` challenge on a 401 or a gRPC `UNAUTHENTICATED`) clears it
//! and is reported so the application can log in again; any other 401 or
//! `UNAUTHENTICATED` passes through.

mod store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
use crate::origin::Origin;
pub use store::TokenStore;

type OnChange = Arc<dyn Fn(&str) + Send + Sync>;
type OnUnauthorized = Arc<dyn Fn() + Send + Sync>;

/// Where the token may go.
#[derive(Debug, Clone)]
enum Binding {
    /// Requests whose absolute URI has this origin.
    Origin(Origin),
    /// Every request: the inner service has one endpoint whatever the URI says.
    Channel,
}

impl Binding {
    fn covers(&self, uri: &Uri) -> bool {
        match self {
            Self::Origin(origin) => origin.matches(uri),
            Self::Channel => true,
        }
    }
}

#[derive(Clone)]
struct ClientConfig {
    binding: Binding,
    tokens: TokenStore,
    response_header: HeaderName,
    max_token_bytes: usize,
    clear_on_unauthorized: bool,
    on_token_change: Option<OnChange>,
    on_unauthorized: Option<OnUnauthorized>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("binding", &self.binding)
            .field("tokens", &self.tokens)
            .field("response_header", &self.response_header)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("clear_on_unauthorized", &self.clear_on_unauthorized)
            .field("on_token_change", &self.on_token_change.is_some())
            .field("on_unauthorized", &self.on_unauthorized.is_some())
            .finish()
    }
}

/// A tower layer for clients that attaches the current token to requests for
/// one origin and adopts renewed tokens from that origin's responses.
///
/// Around a general client, which picks the destination from each request's
/// URI (hyper-util's `Client`), bind it to the API's origin with
/// [`for_origin`](Self::for_origin) or [`new`](Self::new): a request is sent
/// with the token only when its URI is absolute and has that scheme, host and
/// port. Around a service that has one endpoint whatever the URI says (a
/// tonic `Channel`, which sends relative URIs and sets its own origin, or a
/// hyper `client::conn` sender), use [`for_channel`](Self::for_channel).
///
/// ```
/// use tower_sliding_jwt::{ClientLayer, TokenStore};
///
/// let tokens = TokenStore::new("eyJ...login-token");
/// let layer = ClientLayer::for_origin("https://api.example.com", tokens.clone())?
///     // Persist renewals (never log them).
///     .with_on_token_change(|token| { let _ = token; /* save it */ })
///     // The server refused the token: the store is cleared, log in again.
///     .with_on_unauthorized(|| eprintln!("session ended, please log in"));
/// // tower::ServiceBuilder::new().layer(layer).service(hyper_util_client)
/// # let _ = layer;
/// # Ok::<(), tower_sliding_jwt::ConfigError>(())
/// ```
///
/// A request that already has an `Authorization` header keeps it, and its
/// response is not read. When the client follows redirects, put this layer
/// *inside* the redirect-following layer, so each hop is checked against the
/// origin on its own.
#[derive(Debug, Clone)]
pub struct ClientLayer {
    config: Arc<ClientConfig>,
}

impl ClientLayer {
    /// Attaches the tokens in `tokens` to requests for `origin` and renews
    /// them from its responses.
    pub fn new(origin: Origin, tokens: TokenStore) -> Self {
        Self::bound(Binding::Origin(origin), tokens)
    }

    /// [`new`](Self::new) with the origin parsed from `origin`, e.g.
    /// `"https://api.example.com"` (see [`Origin::parse`]).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidOrigin`](crate::ConfigErrorKind::InvalidOrigin)
    /// for a URL with a path, query, fragment or user info, or a scheme other
    /// than `http`/`https`.
    pub fn for_origin(origin: &str, tokens: TokenStore) -> Result<Self, ConfigError> {
        Ok(Self::new(Origin::parse(origin)?, tokens))
    }

    /// For a service with a single endpoint, such as a tonic `Channel`: every
    /// request gets the token and every response may carry a renewal,
    /// whatever its URI says (a `Channel` sends relative URIs and replaces
    /// any origin with its own).
    ///
    /// Never use it around a general client that follows the URI (hyper-util's
    /// `Client`): the token would go wherever a request goes. Use
    /// [`for_origin`](Self::for_origin) there. (A `for_origin` layer around a
    /// `Channel` sends no token, as tonic's relative URIs match no origin,
    /// unless the tonic client is built `with_origin`.)
    ///
    /// ```
    /// use tower_sliding_jwt::{ClientLayer, TokenStore};
    ///
    /// let layer = ClientLayer::for_channel(TokenStore::new("eyJ...login-token"));
    /// // GreeterClient::new(layer.layer(channel))
    /// # let _ = layer;
    /// ```
    pub fn for_channel(tokens: TokenStore) -> Self {
        Self::bound(Binding::Channel, tokens)
    }

    fn bound(binding: Binding, tokens: TokenStore) -> Self {
        Self {
            config: Arc::new(ClientConfig {
                binding,
                tokens,
                response_header: AUTHORIZATION,
                max_token_bytes: store::MAX_TOKEN_BYTES,
                clear_on_unauthorized: true,
                on_token_change: None,
                on_unauthorized: None,
            }),
        }
    }

    fn config(&mut self) -> &mut ClientConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Reads renewed tokens from another response header (when the server
    /// delivers them there); its value is `Bearer <token>` or the bare token.
    /// From `Authorization` (the default) only `Bearer <token>` is read.
    pub fn with_response_header(mut self, name: HeaderName) -> Self {
        self.config().response_header = name;
        self
    }

    /// The largest renewed token read (8 KiB by default, as the server's
    /// default limit); raise it with the server's
    /// [`with_max_token_bytes`](crate::SlidingJwtBuilder::with_max_token_bytes).
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.config().max_token_bytes = bytes;
        self
    }

    /// Calls `on_change` with the current token after a renewal was adopted,
    /// e.g. to persist it. Notifications run one at a time and each passes
    /// the token held at that moment, so when renewals race the last call
    /// carries the latest token. Not called for the application's own
    /// [`TokenStore::replace`] or [`TokenStore::clear`]. The token is a
    /// credential: never log it.
    pub fn with_on_token_change(
        mut self,
        on_change: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        self.config().on_token_change = Some(Arc::new(on_change));
        self
    }

    /// Calls `on_unauthorized` ("the session ended") when the origin refuses
    /// the token a request of this layer carried: a 401, or a gRPC
    /// `UNAUTHENTICATED` (`grpc-status: 16`) in the response headers, that
    /// carries a `WWW-Authenticate: Bearer` challenge with
    /// `error="invalid_token"` — as the server layer's rejections do, over
    /// HTTP and gRPC alike. Any other 401 or `UNAUTHENTICATED` (a wrong
    /// password at a login route, a handler's own refusal) passes through
    /// untouched and is not reported here.
    ///
    /// When several services share one [`TokenStore`], give this hook (and
    /// [`with_clear_on_unauthorized`](Self::with_clear_on_unauthorized)) to
    /// the layer in front of the service that issues the tokens, and turn
    /// clearing off on the others, so one misconfigured service cannot log
    /// the user out everywhere.
    pub fn with_on_unauthorized(
        mut self,
        on_unauthorized: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.config().on_unauthorized = Some(Arc::new(on_unauthorized));
        self
    }

    /// Whether the origin refusing the token (see
    /// [`with_on_unauthorized`](Self::with_on_unauthorized)) clears the store
    /// (default `true`): the refused token is forgotten, unless a renewal or
    /// a new login replaced it meanwhile, so requests go out without it and
    /// [`TokenStore::token`] says the application must log in again.
    pub fn with_clear_on_unauthorized(mut self, clear: bool) -> Self {
        self.config().clear_on_unauthorized = clear;
        self
    }

    /// The shared token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.config.tokens
    }

    /// The origin the layer is bound to; `None` for
    /// [`for_channel`](Self::for_channel).
    pub fn origin(&self) -> Option<&Origin> {
        match &self.config.binding {
            Binding::Origin(origin) => Some(origin),
            Binding::Channel => None,
        }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Client {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The client service produced by [`ClientLayer`].
#[derive(Debug, Clone)]
pub struct Client<S> {
    inner: S,
    config: Arc<ClientConfig>,
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
        &self.config.tokens
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
        // Only requests for the bound origin that carry no credentials of
        // their own get the token, and only their responses are read.
        let watch = (self.config.binding.covers(request.uri())
            && !request.headers().contains_key(AUTHORIZATION))
        .then(|| {
            let sent = self.config.tokens.header();
            if let Some(header) = &sent {
                request.headers_mut().insert(AUTHORIZATION, header.clone());
            }
            Watch {
                config: self.config.clone(),
                sent,
            }
        });
        ClientFuture {
            future: self.inner.call(request),
            watch,
        }
    }
}

/// What a response to a request for the bound origin is checked against.
struct Watch {
    config: Arc<ClientConfig>,
    /// The store's token the request carried; `None` when the store was empty.
    sent: Option<HeaderValue>,
}

impl Watch {
    fn inspect(&self, status: StatusCode, headers: &http::HeaderMap) {
        let config = &*self.config;
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
        let Some(token) = renewed_token(value, config.response_header == AUTHORIZATION) else {
            return;
        };
        if config.tokens.offer_within(token, config.max_token_bytes)
            && let Some(on_change) = &config.on_token_change
        {
            config.tokens.notify(&**on_change);
        }
    }
}

/// Whether the response is the server refusing the token the request
/// carried (rule 16): a `Bearer` challenge with `error="invalid_token"`
/// (RFC 6750 §3.1) on a 401, or on a gRPC `UNAUTHENTICATED` (as the server
/// layer's [`GrpcResponder`](crate::GrpcResponder) sends it). Any other 401
/// or `UNAUTHENTICATED` — a wrong password at a login route, a handler's own
/// refusal — says nothing about the session.
fn refused_the_token(status: StatusCode, headers: &http::HeaderMap, grpc: Option<&[u8]>) -> bool {
    (status == StatusCode::UNAUTHORIZED || grpc == Some(b"16"))
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|value| is_invalid_token(value.as_bytes()))
}

/// Whether a `WWW-Authenticate` value holds a `Bearer` challenge with the
/// parameter `error="invalid_token"` (RFC 9110 §11.6.1: challenges and their
/// parameters are comma-separated, values are tokens or quoted strings, and
/// a comma inside a quoted string separates nothing).
fn is_invalid_token(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut bearer = false;
    for element in split_outside_quotes(value) {
        let element = element.trim_matches([' ', '\t']);
        let name_end = element.find(['=', ' ', '\t']).unwrap_or(element.len());
        let (name, rest) = element.split_at(name_end);
        let rest = rest.trim_start_matches([' ', '\t']);
        let parameter = if let Some(value) = rest.strip_prefix('=') {
            // `name=value` of the current challenge.
            Some((name, value))
        } else {
            // A new challenge: `scheme`, maybe followed by its first parameter.
            bearer = name.eq_ignore_ascii_case("bearer");
            let name_end = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_end);
            after
                .trim_start_matches([' ', '\t'])
                .strip_prefix('=')
                .map(|value| (name, value))
        };
        if let Some((name, value)) = parameter
            && bearer
            && name.eq_ignore_ascii_case("error")
            && unquote(value.trim_matches([' ', '\t'])) == Some("invalid_token")
        {
            return true;
        }
    }
    false
}

/// The elements of a comma-separated header value; commas inside quoted
/// strings (with `\` escapes) do not split.
fn split_outside_quotes(value: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut parts = Vec::new();
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

/// A parameter value: a token as it is, or a well-formed quoted string's
/// content; `None` for anything else.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(inner) => {
            let inner = inner.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => (!value.is_empty() && !value.contains(['"', ' ', '\t'])).then_some(value),
    }
}

/// The token in a response header: `Bearer <token>` (scheme
/// case-insensitive), or the bare token when `bearer_only` is false.
fn renewed_token(value: &HeaderValue, bearer_only: bool) -> Option<&str> {
    let value = value.to_str().ok()?.trim_matches(' ');
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(token.trim_start_matches(' '))
        }
        Some(_) => None,
        None if bearer_only => None,
        None => Some(value),
    }
}

pin_project! {
    /// Response future of [`Client`].
    pub struct ClientFuture<F> {
        #[pin]
        future: F,
        watch: Option<Watch>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_invalid_token_challenge_is_a_refusal() {
        for refusal in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="api", error="invalid_token", error_description="x""#,
            r#"bearer error=invalid_token"#,
            r#"Basic realm="x", Bearer error="invalid_token""#,
            r#"Bearer realm="a, b", error = "invalid_token""#,
        ] {
            assert!(is_invalid_token(refusal.as_bytes()), "{refusal}");
        }
        for other in [
            "",
            "Bearer",
            r#"Basic realm="login""#,
            r#"Bearer error="insufficient_scope""#,
            r#"Bearer realm="api, error=invalid_token""#,
            r#"Bearer error="insufficient_scope", error_description="x, error=invalid_token""#,
            r#"BearerV2, error="invalid_token""#,
            r#"BearerV2 error="invalid_token""#,
            r#"Bearer error=""invalid_token"""#,
            r#"Bearer error_description="invalid_token""#,
            r#"Basic error="invalid_token""#,
        ] {
            assert!(!is_invalid_token(other.as_bytes()), "{other}");
        }
    }
}
