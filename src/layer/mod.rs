//! The server middleware, in tower-http's shape: the layer and its builders,
//! the service, its response future, and the renewal it drives.
//!
//! This file holds what the siblings share — the configuration behind one
//! `Arc`, the rejection helper, and the verification settings both builders
//! offer — and siblings import it, never each other both ways.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Response, Uri};

#[cfg(feature = "tracing")]
use crate::log::event;
#[cfg(feature = "tracing")]
use crate::reject::RejectionKind;
use crate::reject::{Rejection, Responder};
use crate::revoke::Checkpoint;
use crate::session::SessionEnv;
use crate::source::TokenSource;
use crate::token::TokenEngine;

use cache::VerifiedCache;
use cross_site::CrossOrigin;
use revalidate::Revalidate;
use single_flight::SingleFlight;

/// The verification settings, written once for [`SlidingJwtBuilder`] and
/// [`VerifierBuilder`]: each builder reaches its settings through a private
/// `settings_mut`.
macro_rules! verification_settings {
    () => {
        /// The session cap: no token of a session expires later than
        /// `auth_time + max_session`, and a session past it is refused
        /// (default 24 hours). A verify-only layer uses the issuing service's value.
        pub fn with_max_session(mut self, max_session: ::std::time::Duration) -> Self {
            self.settings_mut().max_session = max_session;
            self
        }

        /// The most a session's own lifetimes may ask for
        /// ([`Issuer::issue_with`](crate::Issuer::issue_with), e.g. "remember
        /// me"): a token lifetime up to `max_ttl` and a cap up to
        /// `max_session`, at least the layer's defaults and at most 400 days.
        /// Default: the defaults themselves (a session may only ask for less).
        /// A verify-only layer needs the issuer's limits too, or it caps
        /// longer sessions at its own `max_session`.
        pub fn with_lifetime_limits(
            mut self,
            max_ttl: ::std::time::Duration,
            max_session: ::std::time::Duration,
        ) -> Self {
            self.settings_mut().lifetime_limits = Some((max_ttl, max_session));
            self
        }

        /// Clock-skew allowance for `exp` and `nbf` (default 5 s, at most 60 s).
        /// It never lengthens a token's or a session's lifetime.
        pub fn with_leeway(mut self, leeway: ::std::time::Duration) -> Self {
            self.settings_mut().leeway = leeway;
            self
        }

        /// Requires `iss` to equal `issuer`; a layer that issues also writes
        /// it into its tokens.
        pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
            self.settings_mut().issuer = Some(issuer.into());
            self
        }

        /// Accepts tokens whose `aud` names `audience` (call again to accept
        /// several); a layer that issues gives its tokens every configured audience.
        pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
            self.settings_mut().audiences.push(audience.into());
            self
        }

        /// Requires the header's `typ` to equal `typ` (case-insensitive, optional
        /// `application/` prefix). Issued tokens always carry `typ: JWT`.
        pub fn with_required_typ(mut self, typ: impl Into<String>) -> Self {
            self.settings_mut().required_typ = Some(typ.into());
            self
        }

        /// Refuses tokens longer than `bytes` before decoding anything (default 8 KiB).
        pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
            self.settings_mut().max_token_bytes = bytes;
            self
        }

        /// Where "now" comes from (default: the system clock).
        pub fn with_clock(mut self, clock: impl $crate::clock::Clock) -> Self {
            self.settings_mut().clock = ::std::sync::Arc::new(clock);
            self
        }

        /// Adds a token source; sources are tried in the order added. Without any,
        /// the layer reads `Authorization: Bearer`.
        pub fn with_token_source(mut self, source: impl $crate::source::TokenSource) -> Self {
            self.settings_mut().sources.push(Box::new(source));
            self
        }

        /// Optional mode: a request without a token passes through as anonymous
        /// (no claims in its extensions); a request with a bad token is still refused.
        pub fn with_optional(mut self, optional: bool) -> Self {
            self.settings_mut().optional = optional;
            self
        }

        /// Reuse detection (rule 18, off by default): once a renewed token's
        /// replacement has been used, the renewed token arriving more than
        /// `grace` later is a stolen or leaked copy. Its whole session is
        /// revoked until its cap — on every instance, with a shared store —
        /// the request gets 401 `invalid_token`
        /// ([`TokenReused`](crate::RejectionKind::TokenReused)), a `warn`
        /// event `reuse detected` names the `sid`, and
        /// [`Stats::reuse_detected`](crate::Stats::reuse_detected) counts it.
        ///
        /// Not reuse: requests inside the grace (other tabs, retries, a
        /// response still in flight), a replacement that never reached its
        /// client (never used, so the old token keeps working and gets the
        /// same replacement again), other sessions of the same user. Pick a
        /// grace longer than your clients' slowest round trip plus their
        /// retries: 30 to 120 seconds is typical; 0 flags any late copy.
        ///
        /// A renewal then writes the old token's `jti` and `exp` into the
        /// replacement (`prev_jti`, `prev_exp`); the first request with the
        /// replacement that an instance admits writes one mark to the store
        /// (until the old token expires), and none afterwards. A store error
        /// (other than no room) while writing it refuses that request with
        /// 503 (fail closed). The
        /// layer refuses to build on a store that does not keep marks
        /// ([`RevocationStore::keeps_replacements`](crate::RevocationStore::keeps_replacements));
        /// every store of this crate does. Marks have a budget of their own
        /// (they never crowd out a logout): a store with no room left for
        /// marks serves the request and logs a `warn` (that renewal is not
        /// protected) rather than lock the session out. When the session
        /// cannot be revoked after a detection, the request gets 503 and the
        /// next arrival tries again. [`Issuer::verify`](crate::Issuer::verify)
        /// refuses a reused token too, but does not end its session (it may
        /// check a token kept for later). A grace over one day is refused.
        pub fn with_reuse_detection(mut self, grace: ::std::time::Duration) -> Self {
            self.settings_mut().reuse_grace = Some(grace);
            self
        }

        /// Called when reuse is detected (see
        /// [`with_reuse_detection`](Self::with_reuse_detection)), once the
        /// session is revoked, with the claims of the reused token: to alert,
        /// or to tell the user their session was ended. Keep it quick; it runs
        /// on the request's task.
        pub fn with_on_reuse(mut self, on_reuse: impl Fn(&C) + Send + Sync + 'static) -> Self {
            self.settings_mut().on_reuse = Some(Box::new(on_reuse));
            self
        }

        /// Where revocations are kept and checked on every request (default: a
        /// fresh [`MemoryStore`](crate::MemoryStore), private to this layer).
        /// Share one store between the layers of a service, and the issuing
        /// service's store (e.g. `redis::RedisStore`) with a verify-only
        /// service, so its logouts count there too.
        pub fn with_revocation_store(
            mut self,
            store: impl $crate::revoke::RevocationStore,
        ) -> Self {
            self.settings_mut().store = Some(::std::sync::Arc::new(store));
            self
        }

        /// Remembers up to `capacity` verified tokens by their exact bytes, so a
        /// token seen before skips the signature check and the JSON parse (for
        /// ES256 a ~100 µs verification becomes a sub-microsecond look-up).
        /// `exp`, `nbf`, the session cap and revocation are still checked on every
        /// request, and a change of [`Keys::version`](crate::Keys::version) empties it. Off by default.
        ///
        /// Memory: at most `capacity` tokens and their claims (a 400-byte token
        /// with a dozen claims is about 1 KiB, so 10 000 entries is ~10 MiB; the
        /// token size limit bounds the worst case). When full, expired tokens are
        /// dropped first, then an eighth of the rest. The trade-off: a forged token
        /// still costs a full verification, and the cache is one more place where
        /// valid tokens sit in memory.
        pub fn with_verified_cache(mut self, capacity: usize) -> Self {
            self.settings_mut().cache_capacity = capacity;
            self
        }

        /// Cross-site protection for cookie-borne tokens (default on): an unsafe
        /// request whose token came from a cookie is refused with 403 when it
        /// comes from another site. The rules are in the crate docs'
        /// [security model](crate#cross-site-requests-with-cookie-borne-tokens). Turn it off
        /// only when another layer already does this check.
        pub fn with_cross_origin_protection(mut self, enabled: bool) -> Self {
            self.settings_mut().cross_origin = enabled;
            self
        }

        /// An origin (`https://admin.example.com`, `http://localhost:5173`) whose
        /// cross-site requests with the session cookie are accepted, e.g. a
        /// separate front end. Checked when the layer is built: scheme, host and
        /// optional port only.
        pub fn with_trusted_origin(mut self, origin: impl Into<String>) -> Self {
            self.settings_mut().trusted_origins.push(origin.into());
            self
        }
    };
}

mod builder;
pub(crate) mod cache;
pub(crate) mod cross_site;
mod future;
mod issuer;
#[allow(clippy::module_inception)] // `layer/layer.rs`, tower-http's shape
mod layer;
pub(crate) mod policy;
mod renewal;
pub(crate) mod revalidate;
mod service;
pub(crate) mod single_flight;
mod verify_only;

pub use builder::SlidingJwtBuilder;
pub use future::ResponseFuture;
pub use issuer::Issuer;
pub use layer::SlidingJwtLayer;
pub use service::SlidingJwt;
pub use verify_only::VerifierBuilder;

/// Everything a layer and its services share, behind one `Arc`.
pub(crate) struct Config<K, C, P, R> {
    pub(crate) engine: Arc<TokenEngine<K, C>>,
    /// The revocation check, reuse detection and the counters.
    pub(crate) checkpoint: Arc<Checkpoint<C>>,
    /// What every session of the layer shares (store, clock, counters).
    pub(crate) env: Arc<SessionEnv>,
    pub(crate) policy: P,
    pub(crate) responder: R,
    pub(crate) sources: Vec<Box<dyn TokenSource>>,
    pub(crate) optional: bool,
    pub(crate) flights: Arc<SingleFlight>,
    pub(crate) revalidate: Option<Box<dyn Revalidate<C>>>,
    pub(crate) cache: Option<VerifiedCache<C>>,
    pub(crate) cross_origin: CrossOrigin,
    /// Which requests count as activity (rule 17); `None`: every request.
    pub(crate) activity: Option<Box<ActivityRule>>,
}

/// The rule deciding from a request whether it counts as activity.
pub(crate) type ActivityRule = dyn Fn(&Method, &Uri, &HeaderMap) -> bool + Send + Sync;

impl<K, C, P: fmt::Debug, R: fmt::Debug> fmt::Debug for Config<K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("engine", &self.engine)
            .field("checkpoint", &self.checkpoint)
            .field("policy", &self.policy)
            .field("responder", &self.responder)
            .field("sources", &self.sources.len())
            .field("optional", &self.optional)
            .field("flights", &self.flights)
            .field("revalidate", &self.revalidate.is_some())
            .field("cache", &self.cache)
            .field("cross_origin", &self.cross_origin)
            .field("activity", &self.activity.is_some())
            .finish()
    }
}

/// Counts, logs and answers a refused request with the layer's responder;
/// the rejection goes into the response's extensions for the caller's code.
pub(crate) fn reject<K, C, P, R, B>(
    config: &Config<K, C, P, R>,
    rejection: Rejection,
) -> Response<B>
where
    R: Responder<B>,
{
    let kind = rejection.kind();
    config.env.counters.rejected(kind);
    let mut response = config.responder.respond(&rejection);
    // What was sent: the HTTP status, and the gRPC status when the responder
    // answered in gRPC (an UNAUTHENTICATED is HTTP 200 on the wire).
    // (The fields are read only when the event is enabled.)
    #[cfg(feature = "tracing")]
    {
        let status = || response.status().as_u16();
        let grpc_status = || {
            const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
            response
                .headers()
                .get(&GRPC_STATUS)
                .and_then(|value| value.to_str().ok())
        };
        if matches!(
            kind,
            RejectionKind::StoreUnavailable | RejectionKind::KeysUnavailable
        ) {
            event!(warn, %kind, status = status(), grpc_status = grpc_status(), "request refused: authentication is unavailable");
        } else {
            event!(debug, %kind, status = status(), grpc_status = grpc_status(), "request refused");
        }
    }
    response.extensions_mut().insert(rejection);
    response
}
