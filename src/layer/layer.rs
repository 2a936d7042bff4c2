//! The layer, its builder and the shared configuration.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::cache::VerifiedCache;
use crate::claims::Claims;
use crate::clock::{Clock, SystemClock};
use crate::core::Core;
use crate::csrf::CrossOrigin;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::flight::SingleFlight;
use crate::issuer::Issuer;
use crate::keys::{Key, Keys, provider};
use crate::policy::{DefaultPolicy, RenewWindow, RenewalPolicy, Throttle, default_policy, secs};
use crate::reject::HttpResponder;
use crate::revalidate::{OwnedClaims, Revalidate, Verdict};
use crate::revoke::{MemoryStore, RevocationStore};
use crate::service::SlidingJwt;
use crate::session::Revoker;
use crate::source::{BearerHeader, TokenSource};
use crate::stats::{Counters, Stats};
use crate::verifier::VerifierBuilder;

/// Everything a layer and its services share, behind one `Arc`.
pub(crate) struct Config<K, C, P, R> {
    pub(crate) core: Arc<Core<K, C>>,
    pub(crate) policy: P,
    pub(crate) responder: R,
    pub(crate) sources: Vec<Box<dyn TokenSource>>,
    pub(crate) optional: bool,
    pub(crate) flights: Arc<SingleFlight>,
    pub(crate) revalidate: Option<Box<dyn Revalidate<C>>>,
    pub(crate) cache: Option<VerifiedCache<C>>,
    pub(crate) cross_origin: CrossOrigin,
}

impl<K, C, P: fmt::Debug, R: fmt::Debug> fmt::Debug for Config<K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("core", &self.core)
            .field("policy", &self.policy)
            .field("responder", &self.responder)
            .field("sources", &self.sources.len())
            .field("optional", &self.optional)
            .field("flights", &self.flights)
            .field("revalidate", &self.revalidate.is_some())
            .field("cache", &self.cache)
            .field("cross_origin", &self.cross_origin)
            .finish()
    }
}

/// A tower [`Layer`] that verifies JWTs and slides their sessions.
///
/// `K` holds the keys ([`Key`](crate::Key) or [`KeyRing`](crate::KeyRing)), `C`
/// is your claims type, `P` the [`RenewalPolicy`] and `R` the
/// [`Responder`](crate::Responder) for refused requests. Build it with
/// [`SlidingJwtLayer::builder`]; clones share one configuration.
pub struct SlidingJwtLayer<K, C, P = DefaultPolicy, R = HttpResponder> {
    config: Arc<Config<K, C, P, R>>,
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

impl<K: Keys, C: Claims> SlidingJwtLayer<K, C> {
    /// Starts a configuration with the demo defaults: tokens live 1 hour, are
    /// renewed in their last 20 minutes at most once a minute, sessions end 24
    /// hours after login, 5 s leeway, 8 KiB token limit, `Authorization: Bearer`.
    pub fn builder(keys: K) -> SlidingJwtBuilder<K, C> {
        SlidingJwtBuilder {
            keys,
            policy: default_policy(),
            responder: HttpResponder::new(),
            settings: Settings {
                sources: Vec::new(),
                clock: Arc::new(SystemClock),
                issuer: None,
                audiences: Vec::new(),
                required_typ: None,
                leeway: Duration::from_secs(5),
                max_token_bytes: 8 * 1024,
                ttl: Duration::from_secs(3600),
                max_session: Duration::from_secs(86_400),
                optional: false,
                single_flight_capacity: 10_000,
                store: None,
                revalidate: None,
                cache_capacity: 0,
                cross_origin: true,
                trusted_origins: Vec::new(),
            },
        }
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
    /// [`Issuer::issue`] fails with [`IssueErrorKind::NoSigningKey`](crate::IssueErrorKind::NoSigningKey).
    ///
    /// ```
    /// use tower_sliding_jwt::{Algorithm, Key, KeyRing, SlidingJwtLayer, StandardClaims};
    ///
    /// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
    /// let public = include_str!("../tests/keys/es256-public.pem");
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
        VerifierBuilder::new(Self::builder(keys))
    }
}

impl<K, C, P, R> SlidingJwtLayer<K, C, P, R> {
    /// An [`Issuer`] for login handlers, sharing this layer's keys and settings.
    ///
    /// On a [verify-only layer](SlidingJwtLayer::verifier) the issuer only
    /// verifies: [`Issuer::issue`] fails with
    /// [`IssueErrorKind::NoSigningKey`](crate::IssueErrorKind::NoSigningKey).
    pub fn issuer(&self) -> Issuer<K, C> {
        Issuer {
            core: self.config.core.clone(),
        }
    }

    /// The public halves of this layer's keys as a JWKS (HMAC keys never
    /// appear), for [`JwksService`](crate::JwksService).
    pub fn jwks(&self) -> crate::Jwks
    where
        K: Keys,
    {
        self.config.core.keys.jwks()
    }

    /// A [`Revoker`] for ending sessions outside a request (admin actions,
    /// "log out everywhere"), sharing this layer's revocation store.
    pub fn revoker(&self) -> Revoker {
        let core = &self.config.core;
        Revoker {
            store: core.store.clone(),
            clock: core.clock.clone(),
            horizon: core.max_session.saturating_add(core.leeway),
            counters: core.counters.clone(),
        }
    }

    /// What this layer (and every service and clone made from it) has done
    /// so far: requests verified, refused by kind, renewed, sessions revoked,
    /// verified-token cache hits. Always on; counting costs one uncontended
    /// atomic add per event.
    pub fn stats(&self) -> Stats {
        self.config.core.counters.snapshot()
    }
}

impl<S, K, C, P, R> Layer<S> for SlidingJwtLayer<K, C, P, R> {
    type Service = SlidingJwt<S, K, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SlidingJwt::new(inner, self.config.clone())
    }
}

/// Whether a layer being built issues and renews, or only verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Issue,
    VerifyOnly,
}

/// Configures a [`SlidingJwtLayer`]; every setting is checked by
/// [`build`](SlidingJwtBuilder::build).
pub struct SlidingJwtBuilder<K, C, P = DefaultPolicy, R = HttpResponder> {
    keys: K,
    policy: P,
    responder: R,
    settings: Settings<C>,
}

/// Everything a builder holds besides the keys, the policy and the responder,
/// so that a builder changing one of those moves the rest in one piece.
struct Settings<C> {
    sources: Vec<Box<dyn TokenSource>>,
    clock: Arc<dyn Clock>,
    issuer: Option<String>,
    audiences: Vec<String>,
    required_typ: Option<String>,
    leeway: Duration,
    max_token_bytes: usize,
    ttl: Duration,
    max_session: Duration,
    optional: bool,
    single_flight_capacity: usize,
    store: Option<Arc<dyn RevocationStore>>,
    revalidate: Option<Box<dyn Revalidate<C>>>,
    cache_capacity: usize,
    cross_origin: bool,
    trusted_origins: Vec<String>,
}

impl<K, C, P: fmt::Debug, R: fmt::Debug> fmt::Debug for SlidingJwtBuilder<K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingJwtBuilder")
            .field("policy", &self.policy)
            .field("responder", &self.responder)
            .field("sources", &self.settings.sources.len())
            .field("issuer", &self.settings.issuer)
            .field("audiences", &self.settings.audiences)
            .field("required_typ", &self.settings.required_typ)
            .field("leeway", &self.settings.leeway)
            .field("max_token_bytes", &self.settings.max_token_bytes)
            .field("ttl", &self.settings.ttl)
            .field("max_session", &self.settings.max_session)
            .field("optional", &self.settings.optional)
            .field("revalidate", &self.settings.revalidate.is_some())
            .finish_non_exhaustive()
    }
}

fn printable(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl<K, C, P, R> SlidingJwtBuilder<K, C, P, R> {
    /// Lifetime of every new token (default 1 hour).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// The session cap: no token of a session expires later than
    /// `auth_time + max_session`, and a session past it is refused (default 24 hours).
    pub fn with_max_session(mut self, max_session: Duration) -> Self {
        self.settings.max_session = max_session;
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 5 s, at most 60 s).
    /// It never lengthens a token's or a session's lifetime.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.settings.leeway = leeway;
        self
    }

    /// Requires `iss` to equal `issuer`, and writes it into issued tokens.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.settings.issuer = Some(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` names `audience` (call again to accept
    /// several); issued tokens carry every configured audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.settings.audiences.push(audience.into());
        self
    }

    /// Requires the header's `typ` to equal `typ` (case-insensitive, optional
    /// `application/` prefix). Issued tokens always carry `typ: JWT`.
    pub fn with_required_typ(mut self, typ: impl Into<String>) -> Self {
        self.settings.required_typ = Some(typ.into());
        self
    }

    /// Refuses tokens longer than `bytes` before decoding anything (default 8 KiB).
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_token_bytes = bytes;
        self
    }

    /// Where "now" comes from (default: the system clock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// Adds a token source; sources are tried in the order added. Without any,
    /// the layer reads `Authorization: Bearer`.
    pub fn with_token_source(mut self, source: impl TokenSource) -> Self {
        self.settings.sources.push(Box::new(source));
        self
    }

    /// Optional mode: a request without a token passes through as anonymous
    /// (no claims in its extensions); a request with a bad token is still refused.
    pub fn with_optional(mut self, optional: bool) -> Self {
        self.settings.optional = optional;
        self
    }

    /// How many old tokens the single-flight map remembers (default 10 000).
    pub fn with_single_flight_capacity(mut self, capacity: usize) -> Self {
        self.settings.single_flight_capacity = capacity;
        self
    }

    /// Where revocations are kept and checked on every request (default: a
    /// fresh [`MemoryStore`], private to this layer).
    pub fn with_revocation_store(mut self, store: impl RevocationStore) -> Self {
        self.settings.store = Some(Arc::new(store));
        self
    }

    /// A hook that runs, before the inner service, whenever a renewal is about
    /// to happen: it may approve, update the claims, veto the renewal, or
    /// reject the request. See [`Revalidate`].
    pub fn with_revalidation(mut self, hook: impl Revalidate<C>) -> Self {
        self.settings.revalidate = Some(Box::new(hook));
        self
    }

    /// [`with_revalidation`](Self::with_revalidation) with a closure that
    /// takes its own copy of the claims, so it can be written
    /// `|claims| async move { ... }`: the future owns what it uses. See
    /// [`Revalidate`] for an example that clones a database pool.
    pub fn with_revalidation_fn<F, Fut>(self, hook: F) -> Self
    where
        C: Clone + Send + Sync + 'static,
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict<C>> + Send + 'static,
    {
        self.with_revalidation(OwnedClaims(hook))
    }

    /// Remembers up to `capacity` verified tokens by their exact bytes, so a
    /// token seen before skips the signature check and the JSON parse (for
    /// ES256 a ~100 µs verification becomes a sub-microsecond look-up).
    /// `exp`, `nbf`, the session cap and revocation are still checked on every
    /// request, and a change of [`Keys::version`] empties it. Off by default.
    ///
    /// Memory: at most `capacity` tokens and their claims (a 400-byte token
    /// with a dozen claims is about 1 KiB, so 10 000 entries is ~10 MiB; the
    /// token size limit bounds the worst case). When full, expired tokens are
    /// dropped first, then an eighth of the rest. The trade-off: a forged token
    /// still costs a full verification, and the cache is one more place where
    /// valid tokens sit in memory.
    pub fn with_verified_cache(mut self, capacity: usize) -> Self {
        self.settings.cache_capacity = capacity;
        self
    }

    /// Cross-site protection for cookie-borne tokens (default on): an unsafe
    /// request (not `GET`, `HEAD` or `OPTIONS`) whose token came from a cookie
    /// is refused with 403 when the browser says it came from another site
    /// (`Sec-Fetch-Site: cross-site` or `same-site`), or, without that header,
    /// when its `Origin` is neither the request's own host nor a trusted
    /// origin. A request with neither header (not a browser) passes. Modelled
    /// on Go 1.25's `net/http.CrossOriginProtection`. Bearer tokens are
    /// never checked: browsers do not attach them on their own.
    ///
    /// Turn it off only when another layer already does this check.
    pub fn with_cross_origin_protection(mut self, enabled: bool) -> Self {
        self.settings.cross_origin = enabled;
        self
    }

    /// An origin (`https://admin.example.com`, `http://localhost:5173`) whose
    /// cross-site requests with the session cookie are accepted, e.g. a
    /// separate front end. Checked by [`build`](Self::build): scheme, host and
    /// optional port only.
    pub fn with_trusted_origin(mut self, origin: impl Into<String>) -> Self {
        self.settings.trusted_origins.push(origin.into());
        self
    }

    /// Replaces the renewal policy.
    pub fn with_policy<P2: RenewalPolicy>(self, policy: P2) -> SlidingJwtBuilder<K, C, P2, R> {
        SlidingJwtBuilder {
            keys: self.keys,
            policy,
            responder: self.responder,
            settings: self.settings,
        }
    }

    /// Replaces the responder for refused requests (e.g. [`GrpcResponder`](crate::GrpcResponder)
    /// or a closure).
    pub fn with_responder<R2>(self, responder: R2) -> SlidingJwtBuilder<K, C, P, R2> {
        SlidingJwtBuilder {
            keys: self.keys,
            responder,
            policy: self.policy,
            settings: self.settings,
        }
    }
}

impl<K, C, R> SlidingJwtBuilder<K, C, DefaultPolicy, R> {
    /// When a token becomes eligible for renewal (default: 20 minutes before expiry).
    pub fn with_renew_window(mut self, window: RenewWindow) -> Self {
        self.policy.0 = window;
        self
    }

    /// At most one renewal per session per interval (default 60 s).
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.policy.1 = throttle;
        self
    }
}

impl<K: Keys, C: Claims, P: RenewalPolicy, R> SlidingJwtBuilder<K, C, P, R> {
    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    /// A [`ConfigError`] when no crypto backend is enabled, the active key
    /// cannot sign, a lifetime is zero, the leeway exceeds 60 s, the token
    /// limit is below 64 bytes or above 1 MiB, an issuer, audience or `typ`
    /// is empty or not printable ASCII, or a trusted origin is not
    /// `scheme://host[:port]`.
    pub fn build(self) -> Result<SlidingJwtLayer<K, C, P, R>, ConfigError> {
        self.build_as(Mode::Issue)
    }

    /// [`build`](Self::build) for a layer that issues and renews, or for a
    /// verify-only one (which must not hold a signing key).
    pub(crate) fn build_as(self, mode: Mode) -> Result<SlidingJwtLayer<K, C, P, R>, ConfigError> {
        provider()?;
        let SlidingJwtBuilder {
            keys,
            policy,
            responder,
            settings,
        } = self;
        let signs = keys.signing_key().is_some_and(Key::can_sign);
        match mode {
            Mode::Issue if !signs => return Err(ConfigErrorKind::NotASigningKey.into()),
            Mode::VerifyOnly if keys.signing_key().is_some() => {
                return Err(ConfigErrorKind::UnexpectedSigningKey.into());
            }
            _ => {}
        }
        let ttl = secs(settings.ttl)
            .filter(|&s| s > 0)
            .ok_or(ConfigErrorKind::InvalidDuration)?;
        let max_session = secs(settings.max_session)
            .filter(|&s| s > 0)
            .ok_or(ConfigErrorKind::InvalidDuration)?;
        let leeway = secs(settings.leeway).ok_or(ConfigErrorKind::InvalidDuration)?;
        if leeway > 60 {
            return Err(ConfigErrorKind::LeewayTooLarge.into());
        }
        if !(64..=1024 * 1024).contains(&settings.max_token_bytes)
            || settings.single_flight_capacity == 0
        {
            return Err(ConfigErrorKind::InvalidValue.into());
        }
        let values = settings
            .issuer
            .iter()
            .chain(&settings.audiences)
            .chain(&settings.required_typ);
        if !values.into_iter().all(|v| printable(v)) {
            return Err(ConfigErrorKind::InvalidValue.into());
        }
        let mut cross_origin = CrossOrigin::default();
        cross_origin.enabled = settings.cross_origin;
        for origin in &settings.trusted_origins {
            cross_origin.trust(origin)?;
        }
        let mut sources = settings.sources;
        if sources.is_empty() {
            sources.push(Box::new(BearerHeader::new()));
        }
        let core = Core {
            keys,
            clock: settings.clock,
            store: settings
                .store
                .unwrap_or_else(|| Arc::new(MemoryStore::new())),
            issuer: settings.issuer,
            audiences: settings.audiences,
            required_typ: settings.required_typ,
            leeway,
            max_token_bytes: settings.max_token_bytes,
            ttl,
            max_session,
            counters: Arc::new(Counters::new()),
            _claims: PhantomData,
        };
        let config = Config {
            core: Arc::new(core),
            policy,
            responder,
            sources,
            optional: settings.optional,
            flights: Arc::new(SingleFlight::new(settings.single_flight_capacity)),
            revalidate: settings.revalidate,
            cache: (settings.cache_capacity > 0)
                .then(|| VerifiedCache::new(settings.cache_capacity)),
            cross_origin,
        };
        Ok(SlidingJwtLayer {
            config: Arc::new(config),
        })
    }
}
