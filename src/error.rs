//! Errors raised while building a layer or issuing a token.
//!
//! Rejections of requests are not errors: they are responses, described by
//! [`Rejection`](crate::Rejection).

use std::error::Error as StdError;
use std::fmt;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A configuration that cannot be used, reported when it is built.
///
/// Nothing in the layer panics at run time because of configuration: every
/// check happens here, once.
#[derive(Debug)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    /// What exactly is wrong, for a person: which key, the format found, the
    /// command that fixes it. Never key material.
    detail: Option<Box<str>>,
    source: Option<BoxError>,
}

/// What is wrong with a configuration.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// Neither the `rust_crypto` nor the `aws_lc_rs` feature is enabled.
    #[error(
        "no jsonwebtoken crypto backend is enabled (enable the `rust_crypto` or `aws_lc_rs` feature)"
    )]
    NoCryptoBackend,
    /// The key material could not be parsed or does not suit its algorithm.
    #[error("invalid key material for the algorithm")]
    InvalidKey,
    /// An HMAC secret shorter than the hash output (RFC 7518 §3.2).
    #[error("hmac secret is shorter than the hash output (at least 32, 48 or 64 bytes)")]
    WeakSecret,
    /// A private key and its public key do not belong together.
    #[error("the private and public keys do not match")]
    KeyMismatch,
    /// Two keys in a key ring share a `kid` (or both have none).
    #[error("two keys share the same `kid`")]
    DuplicateKeyId,
    /// The active key of a key ring cannot sign (it was given without a private key).
    #[error("the active key has no private part and cannot sign")]
    NotASigningKey,
    /// A `kid` that is empty or not printable ASCII.
    #[error("invalid key id")]
    InvalidKeyId,
    /// A lifetime, window or interval that is zero, negative or out of range.
    #[error("invalid duration setting")]
    InvalidDuration,
    /// Lifetimes, renew window and throttle that would never let a token be
    /// renewed; [`ConfigError::detail`] names the settings and a fix.
    #[error("this configuration can never renew a token")]
    NeverRenews,
    /// A clock-skew leeway above 60 seconds.
    #[error("leeway above 60 seconds")]
    LeewayTooLarge,
    /// A header name that cannot carry tokens (for example `Refresh`).
    #[error("invalid or forbidden token header name")]
    InvalidHeaderName,
    /// A cookie name or attribute that is not valid in a `Set-Cookie` header.
    #[error("invalid cookie name or attribute")]
    InvalidCookie,
    /// An origin that is not `http(s)://host[:port]` (no path, query, user
    /// info or other scheme).
    #[error("invalid origin (expected http(s)://host[:port])")]
    InvalidOrigin,
    /// A realm, issuer, audience or `typ` that is empty or not printable, or a
    /// size limit or capacity out of range.
    #[error("invalid realm, issuer, audience, type, size limit or capacity")]
    InvalidValue,
    /// A key or key set that must have a public half to publish or verify
    /// with has none: an HMAC key asked for a thumbprint, an empty
    /// verify-only ring, or a JWKS service with no asymmetric key to publish.
    #[error("no public key (HMAC secrets are never published)")]
    NoPublicKey,
    /// A JWKS document that is not a JSON key set or holds no usable key.
    #[error("invalid JWKS document")]
    InvalidJwks,
    /// The keys given to a verify-only layer include a signing key: verify-only
    /// layers are built from public keys only (see [`Key::verifying_half`](crate::Key::verifying_half)).
    #[error("a verify-only layer was given a signing key")]
    UnexpectedSigningKey,
    /// The store lacks a part this configuration needs (e.g. reuse detection
    /// on a store that keeps no reuse marks); [`ConfigError::detail`] names
    /// the part. The parts are described in [`store`](crate::store).
    #[error("the store lacks a part this configuration needs")]
    StoreLacksPart,
    /// A remote key set was built outside a tokio runtime, so it cannot
    /// refresh itself in the background.
    #[error("no tokio runtime to run the key set's background refresh")]
    NoRuntime,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind) -> Self {
        Self {
            kind,
            detail: None,
            source: None,
        }
    }

    pub(crate) fn with_source(kind: ConfigErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            detail: None,
            source: Some(source.into()),
        }
    }

    /// Adds what exactly is wrong (shown by `Display`).
    pub(crate) fn with_detail(mut self, detail: impl Into<Box<str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// What exactly is wrong, when the crate can say more than the kind: for
    /// a key, which one (its algorithm), the format found and the command
    /// that converts it. Also part of `Display`. Never contains key material.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid sliding-jwt configuration: {}", self.kind)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl StdError for ConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A token could not be issued or renewed.
#[derive(Debug)]
pub struct IssueError {
    kind: IssueErrorKind,
    source: Option<BoxError>,
}

/// Why a token could not be issued.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueErrorKind {
    /// The claims could not be serialized to a JSON object.
    #[error("claims could not be serialized")]
    Claims,
    /// The crypto backend failed to sign.
    #[error("signing failed")]
    Signing,
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// The signed token is longer than the layer's token size limit, so the
    /// layer would refuse it: it is not handed out.
    #[error("signed token exceeds the token size limit")]
    TooLarge,
    /// The value to write is not a compact JWS (three base64url segments
    /// separated by dots).
    #[error("not a compact JWS")]
    NotCompact,
    /// The layer only verifies (built with
    /// [`SlidingJwtLayer::verifier`](crate::SlidingJwtLayer::verifier), or
    /// its keys have no signing key): it cannot issue or renew tokens.
    #[error("no signing key: this layer only verifies")]
    NoSigningKey,
    /// A session lifetime given to `Issuer::issue_with` is zero or above the
    /// layer's limits.
    #[error("session lifetime out of the layer's limits")]
    InvalidLifetime,
    /// [`Issuer::login`](crate::Issuer::login) could not record the session
    /// (the store's error is the source): no token is handed out. Answer
    /// 503 with `Retry-After`.
    #[error("the session could not be recorded")]
    Store,
    /// The subject has as many live sessions as the layer allows and the
    /// layer refuses more ([`OnLimit::Refuse`](crate::OnLimit::Refuse)).
    #[error("too many sessions")]
    TooManySessions,
    /// The login request's DPoP proof is malformed, for another method or
    /// URL, too old, or already used ([`Issuer::login`](crate::Issuer::login)
    /// with [`with_dpop`](crate::SlidingJwtBuilder::with_dpop)); or DPoP
    /// is required and the login carries no proof. Answer 400 with
    /// `{"error": "invalid_dpop_proof"}`: no token was issued.
    #[error("invalid DPoP proof")]
    InvalidDpopProof,
    /// The login request's DPoP proof lacks the server's current nonce.
    /// Answer 400 with `{"error": "use_dpop_nonce"}` and a `DPoP-Nonce`
    /// header ([`Issuer::dpop_nonce`](crate::Issuer::dpop_nonce)).
    #[error("DPoP nonce required")]
    UseDpopNonce,
}

impl IssueError {
    pub(crate) fn new(kind: IssueErrorKind, source: Option<BoxError>) -> Self {
        Self { kind, source }
    }

    /// Why issuing failed.
    pub fn kind(&self) -> IssueErrorKind {
        self.kind
    }
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not issue token: {}", self.kind)
    }
}

impl StdError for IssueError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
