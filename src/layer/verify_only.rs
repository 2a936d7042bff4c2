//! The builder of a verify-only layer: the verification settings of
//! [`SlidingJwtBuilder`], none of the renewal ones.

use std::fmt;
use std::time::Duration;

use crate::claims::Claims;
use crate::clock::Clock;
use crate::error::ConfigError;
use crate::keys::Keys;
use crate::layer::{Mode, SlidingJwtBuilder, SlidingJwtLayer};
use crate::policy::DefaultPolicy;
use crate::reject::HttpResponder;
use crate::revoke::RevocationStore;
use crate::source::TokenSource;

/// Configures a verify-only [`SlidingJwtLayer`]; start with
/// [`SlidingJwtLayer::verifier`].
///
/// It has the verification settings of [`SlidingJwtBuilder`] (issuer,
/// audience, `typ`, leeway, session cap, token sources, revocation store,
/// verified-token cache, cross-site protection, responder) and none of the
/// renewal ones: the layer it builds holds no signing key, so it never
/// renews and never sends a token back.
pub struct VerifierBuilder<K, C, R = HttpResponder> {
    inner: SlidingJwtBuilder<K, C, DefaultPolicy, R>,
}

impl<K, C, R: fmt::Debug> fmt::Debug for VerifierBuilder<K, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<K, C> VerifierBuilder<K, C> {
    pub(crate) fn new(inner: SlidingJwtBuilder<K, C>) -> Self {
        Self { inner }
    }
}

impl<K, C, R> VerifierBuilder<K, C, R> {
    /// The session cap: a token whose `auth_time + max_session` has passed is
    /// refused (default 24 hours). Use the issuing service's value.
    pub fn with_max_session(self, max_session: Duration) -> Self {
        self.map(|b| b.with_max_session(max_session))
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 5 s, at most 60 s).
    pub fn with_leeway(self, leeway: Duration) -> Self {
        self.map(|b| b.with_leeway(leeway))
    }

    /// Requires `iss` to equal `issuer`.
    pub fn with_issuer(self, issuer: impl Into<String>) -> Self {
        self.map(|b| b.with_issuer(issuer))
    }

    /// Accepts tokens whose `aud` names `audience` (call again to accept several).
    pub fn with_audience(self, audience: impl Into<String>) -> Self {
        self.map(|b| b.with_audience(audience))
    }

    /// Requires the header's `typ` to equal `typ` (case-insensitive, optional
    /// `application/` prefix).
    pub fn with_required_typ(self, typ: impl Into<String>) -> Self {
        self.map(|b| b.with_required_typ(typ))
    }

    /// Refuses tokens longer than `bytes` before decoding anything (default 8 KiB).
    pub fn with_max_token_bytes(self, bytes: usize) -> Self {
        self.map(|b| b.with_max_token_bytes(bytes))
    }

    /// Where "now" comes from (default: the system clock).
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.map(|b| b.with_clock(clock))
    }

    /// Adds a token source; without any, the layer reads `Authorization: Bearer`.
    pub fn with_token_source(self, source: impl TokenSource) -> Self {
        self.map(|b| b.with_token_source(source))
    }

    /// Optional mode: a request without a token passes through as anonymous.
    pub fn with_optional(self, optional: bool) -> Self {
        self.map(|b| b.with_optional(optional))
    }

    /// Where revocations are checked on every request. Share the issuing
    /// service's store (e.g. `redis::RedisStore`) so its logouts count here
    /// too; the default is a private, empty [`MemoryStore`](crate::MemoryStore).
    pub fn with_revocation_store(self, store: impl RevocationStore) -> Self {
        self.map(|b| b.with_revocation_store(store))
    }

    /// Remembers up to `capacity` verified tokens (see
    /// [`SlidingJwtBuilder::with_verified_cache`]); emptied when the keys change.
    pub fn with_verified_cache(self, capacity: usize) -> Self {
        self.map(|b| b.with_verified_cache(capacity))
    }

    /// Cross-site protection for cookie-borne tokens (default on; see
    /// [`SlidingJwtBuilder::with_cross_origin_protection`]).
    pub fn with_cross_origin_protection(self, enabled: bool) -> Self {
        self.map(|b| b.with_cross_origin_protection(enabled))
    }

    /// An origin whose cross-site requests with the session cookie are accepted.
    pub fn with_trusted_origin(self, origin: impl Into<String>) -> Self {
        self.map(|b| b.with_trusted_origin(origin))
    }

    /// Replaces the responder for refused requests (e.g.
    /// [`GrpcResponder`](crate::GrpcResponder) or a closure).
    pub fn with_responder<R2>(self, responder: R2) -> VerifierBuilder<K, C, R2> {
        VerifierBuilder {
            inner: self.inner.with_responder(responder),
        }
    }

    fn map(
        self,
        f: impl FnOnce(
            SlidingJwtBuilder<K, C, DefaultPolicy, R>,
        ) -> SlidingJwtBuilder<K, C, DefaultPolicy, R>,
    ) -> Self {
        Self {
            inner: f(self.inner),
        }
    }
}

impl<K: Keys, C: Claims, R> VerifierBuilder<K, C, R> {
    /// Checks the configuration and builds the verify-only layer.
    ///
    /// # Errors
    /// [`ConfigErrorKind::UnexpectedSigningKey`](crate::ConfigErrorKind::UnexpectedSigningKey)
    /// when the keys include a signing key (pass
    /// [`Key::verifying_half`](crate::Key::verifying_half) or a
    /// [`KeyRing::verifying`](crate::KeyRing::verifying) ring), and every
    /// error of [`SlidingJwtBuilder::build`] that concerns verification.
    pub fn build(self) -> Result<SlidingJwtLayer<K, C, DefaultPolicy, R>, ConfigError> {
        self.inner.build_as(Mode::VerifyOnly)
    }
}
