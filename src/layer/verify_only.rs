//! [`VerifierBuilder`], the builder of a verify-only layer: the verification settings of
//! [`SlidingJwtBuilder`], none of the renewal ones.

use std::fmt;

use super::builder::{Mode, Settings, SlidingJwtBuilder};
use super::layer::SlidingJwtLayer;
use super::policy::DefaultPolicy;
use crate::claims::Claims;
use crate::error::ConfigError;
use crate::keys::Keys;
use crate::reject::HttpResponder;

/// Configures a verify-only [`SlidingJwtLayer`]; start with
/// [`SlidingJwtLayer::verifier`].
///
/// It has the verification settings of [`SlidingJwtBuilder`] (issuer,
/// audience, `typ`, leeway, session cap, token sources, revocation store,
/// verified-token cache, cross-origin protection, responder) and none of the
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

impl<K: Keys, C: Claims> SlidingJwtLayer<K, C> {
    /// Starts a verify-only layer: it verifies tokens another service issued
    /// (with the same checks, revocation included), fills the request's
    /// extensions, and never renews, since it holds no signing key.
    ///
    /// `keys` are public keys only: a [`KeyRing::verifying`](crate::KeyRing::verifying)
    /// or [`KeyRing::from_jwks`](crate::KeyRing::from_jwks) ring, a
    /// [`Key::public_pem`](crate::Key::public_pem) key, or a
    /// `RemoteJwks` (feature `jwks`). Its
    /// [`issuer`](SlidingJwtLayer::issuer) still verifies, but its
    /// [`Issuer::issue`](crate::Issuer::issue) fails with [`IssueErrorKind::NoSigningKey`](crate::IssueErrorKind::NoSigningKey).
    ///
    /// ```
    /// use tower_sliding_jwt::{Algorithm, Key, KeyRing, SlidingJwtLayer, StandardClaims};
    ///
    /// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
    /// let public = include_str!("../../tests/keys/es256-public.pem");
    /// let keys = KeyRing::verifying([Key::public_pem(Algorithm::ES256, public)?.with_kid("2026-11")?])?;
    /// let layer = SlidingJwtLayer::<_, StandardClaims>::verifier(keys)
    ///     .with_issuer("login-service")
    ///     .with_audience("orders-api")
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn verifier(keys: K) -> VerifierBuilder<K, C> {
        VerifierBuilder {
            inner: Self::builder(keys),
        }
    }
}

impl<K, C, R> VerifierBuilder<K, C, R> {
    verification_settings!();

    fn settings_mut(&mut self) -> &mut Settings<C> {
        self.inner.settings_mut()
    }

    /// Replaces the responder for refused requests (e.g.
    /// [`GrpcResponder`](crate::GrpcResponder) or a closure).
    pub fn with_responder<R2>(self, responder: R2) -> VerifierBuilder<K, C, R2> {
        VerifierBuilder {
            inner: self.inner.with_responder(responder),
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
