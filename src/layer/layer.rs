//! [`SlidingJwtLayer`]: the configuration, as a tower [`Layer`].

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::Config;
use super::issuer::Issuer;
use super::policy::DefaultPolicy;
use super::service::SlidingJwt;
use crate::keys::Keys;
use crate::reject::HttpResponder;
use crate::revoke::Revoker;
use crate::stats::Stats;

/// A tower [`Layer`] that verifies JWTs and slides their sessions.
///
/// `K` holds the keys ([`Key`](crate::Key) or [`KeyRing`](crate::KeyRing)), `C`
/// is your claims type, `P` the [`RenewalPolicy`](crate::policy::RenewalPolicy) and `R` the
/// [`Responder`](crate::responder::Responder) for refused requests. Build it with
/// [`SlidingJwtLayer::builder`]; clones share one configuration.
pub struct SlidingJwtLayer<K, C, P = DefaultPolicy, R = HttpResponder> {
    pub(super) config: Arc<Config<K, C, P, R>>,
}

impl<K, C, P, R> Clone for SlidingJwtLayer<K, C, P, R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<K, C, P: fmt::Debug, R: fmt::Debug> fmt::Debug for SlidingJwtLayer<K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingJwtLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<K, C, P, R> SlidingJwtLayer<K, C, P, R> {
    /// An [`Issuer`] for login handlers, sharing this layer's keys and settings.
    ///
    /// On a [verify-only layer](SlidingJwtLayer::verifier) the issuer only
    /// verifies: [`Issuer::issue`] fails with
    /// [`IssueErrorKind::NoSigningKey`](crate::IssueErrorKind::NoSigningKey).
    pub fn issuer(&self) -> Issuer<K, C> {
        Issuer::new(
            self.config.engine.clone(),
            self.config.checkpoint.clone(),
            self.config.env.clone(),
        )
    }

    /// A [`Sessions`](crate::Sessions) handle: list and end any user's
    /// sessions outside a request (an admin page, a password change).
    pub fn sessions(&self) -> crate::Sessions {
        crate::Sessions {
            env: self.config.env.clone(),
        }
    }

    /// The public halves of this layer's keys as a JWKS (HMAC keys never
    /// appear), for [`JwksService`](crate::JwksService).
    pub fn jwks(&self) -> crate::Jwks
    where
        K: Keys,
    {
        self.config.engine.keys.jwks()
    }

    /// A [`Revoker`] for ending sessions outside a request (admin actions,
    /// "log out everywhere"), sharing this layer's revocation store.
    pub fn revoker(&self) -> Revoker {
        let (engine, env) = (&self.config.engine, &self.config.env);
        Revoker {
            store: env.store.clone(),
            clock: env.clock.clone(),
            horizon: engine.max_session_limit.saturating_add(engine.leeway),
            counters: env.counters.clone(),
        }
    }

    /// What this layer (and every service and clone made from it) has done
    /// so far: requests verified, refused by kind, renewed, sessions revoked,
    /// verified-token cache hits. Always on; counting costs one uncontended
    /// atomic add per event.
    pub fn stats(&self) -> Stats {
        self.config.env.counters.snapshot()
    }
}

impl<S, K, C, P, R> Layer<S> for SlidingJwtLayer<K, C, P, R> {
    type Service = SlidingJwt<S, K, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SlidingJwt::new(inner, self.config.clone())
    }
}
