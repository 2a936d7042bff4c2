//! [`ClientLayer`]: the client half's configuration, as a tower [`Layer`].

use std::sync::Arc;

use http::HeaderName;
use http::header::AUTHORIZATION;
use tower_layer::Layer;

use super::{Binding, ClientConfig, SlidingJwtClient, TokenStore};
use crate::dpop::{ClientDpop, DpopKey, NonceRetryLayer};
use crate::error::ConfigError;
use crate::origin::Origin;

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
                max_token_bytes: super::store::MAX_TOKEN_BYTES,
                clear_on_unauthorized: true,
                on_token_change: None,
                on_unauthorized: None,
                dpop: None,
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

    /// DPoP (RFC 9449): every request for the origin carries a fresh proof
    /// signed by `key` (method, URL, the token's hash, the server's latest
    /// nonce), and the token goes as `Authorization: DPoP <token>`. A login
    /// sent through the layer carries a proof too, so the server binds the
    /// session to the key. Renewals (`Authorization: DPoP <new>`) are
    /// adopted only with the same binding. The server's `DPoP-Nonce` is
    /// remembered from every response; for the one retry a fresh nonce
    /// asks for, add [`nonce_retry`](Self::nonce_retry) outside this layer.
    ///
    /// For a [`for_channel`](Self::for_channel) layer (a tonic `Channel`,
    /// whose requests carry relative URIs) name the server's origin with
    /// [`with_dpop_origin`](Self::with_dpop_origin): proofs must name the URL.
    ///
    /// ```
    /// use tower_sliding_jwt::dpop::DpopKey;
    /// use tower_sliding_jwt::{ClientLayer, TokenStore};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = ClientLayer::for_origin("https://api.example.com", TokenStore::empty())?
    ///     .with_dpop(DpopKey::generate()?);
    /// let retry = layer.nonce_retry();
    /// // tower::ServiceBuilder::new().layer(retry).layer(layer).service(hyper_util_client)
    /// # let _ = retry;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.config().dpop = Some(ClientDpop::new(key));
        self
    }

    /// The origin DPoP proofs name (`https://api.example.com:8443`), for a
    /// channel whose requests carry no absolute URI. Call it after
    /// [`with_dpop`](Self::with_dpop).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidOrigin`](crate::ConfigErrorKind::InvalidOrigin)
    /// as [`Origin::parse`]; [`ConfigErrorKind::InvalidValue`](crate::ConfigErrorKind::InvalidValue)
    /// without [`with_dpop`](Self::with_dpop) first.
    pub fn with_dpop_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        let origin = Origin::parse(origin)?.to_string();
        let dpop = self
            .config()
            .dpop
            .take()
            .ok_or(crate::ConfigErrorKind::InvalidValue)?;
        self.config().dpop = Some(dpop.with_origin(origin));
        Ok(self)
    }

    /// The layer that retries a request once when the server asks for a
    /// fresh DPoP nonce; put it outside this layer. Without
    /// [`with_dpop`](Self::with_dpop) it never retries.
    pub fn nonce_retry(&self) -> NonceRetryLayer {
        let nonces = self
            .config
            .dpop
            .as_ref()
            .map(|dpop| dpop.nonces.clone())
            .unwrap_or_default();
        let tokens = self.config.tokens.clone();
        NonceRetryLayer::new(nonces, Arc::new(move || tokens.header().is_some()))
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
    type Service = SlidingJwtClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SlidingJwtClient::new(inner, self.config.clone())
    }
}
