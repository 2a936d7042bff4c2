//! [`SlidingJwtBuilder`]: every setting of a layer that issues and renews,
//! checked when it is built.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::cache::VerifiedCache;
use super::cross_origin::CrossOrigin;
use super::layer::SlidingJwtLayer;
use super::policy::{DefaultPolicy, RenewWindow, RenewalPolicy, Throttle, default_policy, secs};
use super::revalidate::{OwnedClaims, Revalidate, Verdict};
use super::single_flight::SingleFlight;
use super::{ActivityRule, Config};
use crate::claims::Claims;
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::keys::{Key, Keys, provider};
use crate::log::event;
use crate::reject::HttpResponder;
use crate::revoke::MAX_SESSIONS_LIMIT;
use crate::revoke::{
    Checkpoint, MAX_SESSION_SECS, MemoryStore, OnReuse, ReuseDetection, RevocationStore,
};
use crate::sessions::{MAX_SESSIONS_PER_SUBJECT, OnLimit, SessionEnv, Watcher};
use crate::source::{BearerHeader, TokenSource};
use crate::stats::Counters;
use crate::token::{Lifetimes, TokenEngine};

impl<K: Keys, C: Claims> SlidingJwtLayer<K, C> {
    /// Starts a configuration with the production defaults: tokens live 1 hour, are
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
                lifetime_limits: None,
                anonymous: false,
                single_flight_capacity: 10_000,
                store: None,
                revalidate: None,
                activity: None,
                reuse_grace: None,
                on_reuse: None,
                max_sessions: None,
                cache_capacity: 0,
                cross_origin: true,
                trusted_origins: Vec::new(),
                dpop: None,
            },
        }
    }
}

/// Whether a layer being built issues and renews, or only verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
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
pub(super) struct Settings<C> {
    pub(super) sources: Vec<Box<dyn TokenSource>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) issuer: Option<String>,
    pub(super) audiences: Vec<String>,
    pub(super) required_typ: Option<String>,
    pub(super) leeway: Duration,
    pub(super) max_token_bytes: usize,
    pub(super) ttl: Duration,
    pub(super) max_session: Duration,
    /// The most a session's own lifetimes may ask for; `None`: the defaults.
    pub(super) lifetime_limits: Option<Lifetimes>,
    pub(super) anonymous: bool,
    pub(super) single_flight_capacity: usize,
    pub(super) store: Option<Arc<dyn RevocationStore>>,
    pub(super) revalidate: Option<Box<dyn Revalidate<C>>>,
    pub(super) activity: Option<Box<ActivityRule>>,
    pub(super) reuse_grace: Option<Duration>,
    pub(super) on_reuse: Option<Box<OnReuse<C>>>,
    /// Live sessions per subject, and what a login past them does.
    pub(super) max_sessions: Option<(usize, OnLimit)>,
    pub(super) cache_capacity: usize,
    pub(super) cross_origin: bool,
    pub(super) trusted_origins: Vec<String>,
    pub(super) dpop: Option<crate::dpop::Dpop>,
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
            .field("anonymous", &self.settings.anonymous)
            .field("revalidate", &self.settings.revalidate.is_some())
            .finish_non_exhaustive()
    }
}

fn printable(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl<K, C, P, R> SlidingJwtBuilder<K, C, P, R> {
    verification_settings!();

    pub(super) fn settings_mut(&mut self) -> &mut Settings<C> {
        &mut self.settings
    }

    /// Lifetime of every new token (default 1 hour).
    ///
    /// It also bounds what the layer accepts: a token whose `exp` lies more
    /// than the longest ttl this layer may sign (this one, or
    /// [`with_lifetime_limits`](Self::with_lifetime_limits)' maximum) plus
    /// the leeway ahead was not signed by it, and is refused
    /// ([`LifetimeTooLong`](crate::RejectionKind::LifetimeTooLong)). So
    /// lowering the ttl in a deploy refuses live tokens signed with the longer
    /// one: lower it in two steps, or accept those logins ending.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// How many live sessions one user (`sub`) may have, and what a login
    /// past `n` does: end the least recently seen session first
    /// ([`OnLimit::EndLeastRecent`]), or refuse the login
    /// ([`OnLimit::Refuse`]). Counted over every instance sharing the store,
    /// by [`Issuer::login`](crate::Issuer::login) (tokens from
    /// [`Issuer::issue`](crate::Issuer::issue) are not recorded). Without
    /// it, [`MAX_SESSIONS_PER_SUBJECT`](crate::MAX_SESSIONS_PER_SUBJECT)
    /// with [`OnLimit::EndLeastRecent`]. `n` from 1 to 1 000; the store
    /// must keep a session registry.
    pub fn with_max_sessions(mut self, n: usize, on_limit: OnLimit) -> Self {
        self.settings.max_sessions = Some((n, on_limit));
        self
    }

    /// How many old tokens the single-flight map remembers (default 10 000).
    pub fn with_single_flight_capacity(mut self, capacity: usize) -> Self {
        self.settings.single_flight_capacity = capacity;
        self
    }

    /// A hook that runs, before the inner service, whenever a renewal is about
    /// to happen: it may approve, update the claims, veto the renewal, or
    /// reject the request. See [`Revalidate`].
    pub fn with_revalidation(mut self, hook: impl Revalidate<C>) -> Self {
        self.settings.revalidate = Some(Box::new(hook));
        self
    }

    /// Decides from each request (method, URI, headers) whether it counts as
    /// activity: only activity slides a session. A request that does not — a background poll, a
    /// health probe with a token — is verified, checked against the
    /// revocation store and served as usual, but never renews: an idle user's
    /// session still times out while a page polls. Default: every request
    /// counts. A handler can also say so for its own request with
    /// [`Session::mark_not_activity`](crate::Session::mark_not_activity).
    ///
    /// ```
    /// use http::Method;
    /// use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims};
    ///
    /// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
    /// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
    ///     .with_activity_rule(|method, uri, headers| {
    ///         !(method == Method::GET && uri.path() == "/notifications")
    ///             && !headers.contains_key("x-background")
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_activity_rule(
        mut self,
        is_activity: impl Fn(&http::Method, &http::Uri, &http::HeaderMap) -> bool
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.settings.activity = Some(Box::new(is_activity));
        self
    }

    /// Renamed [`with_activity_rule`](Self::with_activity_rule).
    #[deprecated(since = "0.4.0", note = "renamed to `with_activity_rule`")]
    pub fn with_activity(
        self,
        is_activity: impl Fn(&http::Method, &http::Uri, &http::HeaderMap) -> bool
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.with_activity_rule(is_activity)
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
    /// cannot sign, a lifetime is zero, the session cap exceeds 400 days,
    /// the lifetimes, renew window and throttle could never renew a token
    /// ([`NeverRenews`](ConfigErrorKind::NeverRenews), with a detail naming
    /// the settings and a fix),
    /// the leeway exceeds 60 s, the token
    /// limit is below 64 bytes or above 1 MiB, an issuer, audience or `typ`
    /// is empty or not printable ASCII, or a trusted origin is not
    /// `scheme://host[:port]`.
    pub fn build(self) -> Result<SlidingJwtLayer<K, C, P, R>, ConfigError> {
        self.build_as(Mode::Issue)
    }

    /// [`build`](Self::build) for a layer that issues and renews, or for a
    /// verify-only one (which must not hold a signing key).
    pub(super) fn build_as(self, mode: Mode) -> Result<SlidingJwtLayer<K, C, P, R>, ConfigError> {
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
        if max_session > MAX_SESSION_SECS {
            return Err(
                ConfigError::new(ConfigErrorKind::InvalidDuration).with_detail(format!(
                    "max_session is {max_session} s; at most {MAX_SESSION_SECS} s (400 days, the \
                 longest a browser keeps a cookie) is accepted: lower with_max_session"
                )),
            );
        }
        if mode == Mode::Issue {
            never_renews(&policy, ttl, max_session)?;
        }
        let (ttl_limit, max_session_limit) = match settings.lifetime_limits {
            None => (ttl, max_session),
            Some(limits) => {
                let limit = |d: Option<Duration>, default: i64| {
                    d.map_or(Some(default), secs)
                        .ok_or(ConfigErrorKind::InvalidDuration)
                };
                let ttl_limit = limit(limits.ttl(), ttl)?;
                let max_session_limit = limit(limits.max_session(), max_session)?;
                if ttl_limit < ttl
                    || max_session_limit < max_session
                    || max_session_limit > MAX_SESSION_SECS
                {
                    return Err(ConfigError::new(ConfigErrorKind::InvalidDuration).with_detail(format!(
                        "lifetime limits ({ttl_limit} s, {max_session_limit} s) must be at least the \
                         defaults (ttl {ttl} s, max_session {max_session} s) and the session limit at \
                         most {MAX_SESSION_SECS} s"
                    )));
                }
                (ttl_limit, max_session_limit)
            }
        };
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
        let dpop = match settings.dpop {
            None => None,
            Some(dpop) => {
                // The DPoP channel is read first: index 0.
                sources.insert(0, Box::new(BearerHeader::dpop()));
                Some(Arc::new(dpop.build(leeway)?))
            }
        };
        crate::session::register_claims_type::<C>();
        let store = settings
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let reuse =
            match settings.reuse_grace {
                None => None,
                Some(grace) => {
                    let grace = secs(grace)
                        .filter(|&grace| grace <= 86_400)
                        .ok_or_else(|| {
                            ConfigError::new(ConfigErrorKind::InvalidDuration)
                                .with_detail("the reuse grace must be at most one day".to_owned())
                        })?;
                    if !store.keeps_replacements() {
                        return Err(ConfigError::new(ConfigErrorKind::StoreLacksPart).with_detail(
                        "reuse detection needs the store part \"reuse marks\": a revocation \
                         store that keeps replacement marks (RevocationStore::keeps_replacements); \
                         this one does not"
                            .to_owned(),
                    ));
                    }
                    Some(ReuseDetection::new(grace, settings.on_reuse))
                }
            };
        if store.forgets_on_restart() {
            event!(
                warn,
                "revocations are kept in memory: a restart or crash forgets every logout; \
                 use DurableStore (one instance) or redis::RedisStore (a cluster)"
            );
        }
        let (max_sessions, on_limit) = match settings.max_sessions {
            None => (MAX_SESSIONS_PER_SUBJECT, OnLimit::EndLeastRecent),
            Some((n, _)) if !(1..=MAX_SESSIONS_LIMIT).contains(&n) => {
                return Err(ConfigError::new(ConfigErrorKind::InvalidValue).with_detail(format!(
                    "with_max_sessions takes 1 to {MAX_SESSIONS_LIMIT} sessions per user, not {n}"
                )));
            }
            Some(_) if store.sessions().is_none() => {
                return Err(
                    ConfigError::new(ConfigErrorKind::StoreLacksPart).with_detail(
                        "with_max_sessions needs the store part \"session registry\" \
                     (RevocationStore::sessions); this store keeps none"
                            .to_owned(),
                    ),
                );
            }
            Some(limit) => limit,
        };
        let counters = Arc::new(Counters::new());
        let env = Arc::new(SessionEnv {
            watcher: Watcher::new(
                store.clone(),
                settings.clock.clone(),
                counters.clone(),
                leeway,
            ),
            store: store.clone(),
            clock: settings.clock.clone(),
            counters: counters.clone(),
            leeway,
            max_session: max_session_limit,
            max_sessions,
            on_limit,
            dpop,
        });
        let checkpoint = Checkpoint::new(store, counters, reuse, leeway);
        let engine = TokenEngine {
            keys,
            clock: settings.clock,
            issuer: settings.issuer,
            audiences: settings.audiences,
            required_typ: settings.required_typ,
            leeway,
            max_token_bytes: settings.max_token_bytes,
            ttl,
            max_session,
            ttl_limit,
            max_session_limit,
            _claims: PhantomData,
        };
        let config = Config {
            engine: Arc::new(engine),
            checkpoint: Arc::new(checkpoint),
            env,
            policy,
            responder,
            sources,
            anonymous: settings.anonymous,
            flights: Arc::new(SingleFlight::new(settings.single_flight_capacity)),
            successors: Arc::new(SingleFlight::new(settings.single_flight_capacity)),
            revalidate: settings.revalidate,
            cache: (settings.cache_capacity > 0)
                .then(|| VerifiedCache::new(settings.cache_capacity)),
            cross_origin,
            activity: settings.activity,
        };
        Ok(SlidingJwtLayer {
            config: Arc::new(config),
        })
    }
}

/// Refuses a default-policy configuration under which no request in a
/// token's life could renew it (rule 3): renewal needs an age (`now - iat`)
/// of at least the throttle and inside the renew window, before `exp`, and
/// a gain of at least the throttle before the session cap. A custom policy
/// is its author's to check.
fn never_renews<P: RenewalPolicy>(
    policy: &P,
    ttl: i64,
    max_session: i64,
) -> Result<(), ConfigError> {
    let Some((window, throttle, _)) =
        (policy as &dyn std::any::Any).downcast_ref::<DefaultPolicy>()
    else {
        return Ok(());
    };
    let window = window.seconds(ttl);
    let interval = throttle.interval();
    let never =
        |detail: String| Err(ConfigError::new(ConfigErrorKind::NeverRenews).with_detail(detail));
    if interval >= ttl {
        return never(format!(
            "ttl {ttl} s is not longer than the throttle {interval} s: a token expires before it may \
             be renewed; lower the throttle (with_throttle(Throttle::new(..)), e.g. {} s) or raise with_ttl",
            (ttl / 4).max(1)
        ));
    }
    if window == 0 || ttl.saturating_sub(window) >= ttl {
        return never(format!(
            "the renew window is {window} s for a ttl of {ttl} s: no token is ever inside it; widen \
             with_renew_window"
        ));
    }
    if max_session.saturating_sub(ttl) < interval.max(1) {
        return never(format!(
            "max_session {max_session} s leaves less than the throttle ({interval} s) beyond the first \
             token's ttl {ttl} s, so a renewal could never push exp out; raise with_max_session or \
             lower with_ttl"
        ));
    }
    Ok(())
}
