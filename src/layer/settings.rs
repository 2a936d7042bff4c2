//! The verification settings, written once for both builders
//! ([`SlidingJwtBuilder`](super::SlidingJwtBuilder) and
//! [`VerifierBuilder`](super::VerifierBuilder)): each builder reaches its
//! settings through a private `settings_mut`.

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
        /// me"): a token lifetime up to `limits`' ttl and a cap up to its
        /// `max_session`, each at least the layer's default and the cap at
        /// most 400 days; a limit not set is the layer's default. Default:
        /// the defaults themselves (a session may only ask for less). A
        /// verify-only layer needs the issuer's limits too, or it caps longer
        /// sessions at its own `max_session` — and refuses tokens whose `exp`
        /// lies further ahead than its longest ttl plus the leeway
        /// ([`LifetimeTooLong`](crate::RejectionKind::LifetimeTooLong); a
        /// verify-only layer's ttl is the default hour). Lowering a limit in a
        /// deploy refuses live tokens longer than the new one.
        ///
        /// ```
        /// use std::time::Duration;
        /// use tower_sliding_jwt::{Key, Lifetimes, SlidingJwtLayer, StandardClaims};
        ///
        /// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
        /// let day = Duration::from_secs(86_400);
        /// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
        ///     .with_lifetime_limits(Lifetimes::new().with_max_session(30 * day))
        ///     .build()?;
        /// # let _ = layer;
        /// # Ok(())
        /// # }
        /// ```
        pub fn with_lifetime_limits(mut self, limits: $crate::token::Lifetimes) -> Self {
            self.settings_mut().lifetime_limits = Some(limits);
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

        /// Anonymous requests pass: a request without a token passes through
        /// as anonymous (no `Session` in its extensions); a request with a
        /// bad token is still refused. Off by default.
        pub fn with_anonymous(mut self, anonymous: bool) -> Self {
            self.settings_mut().anonymous = anonymous;
            self
        }

        /// Renamed [`with_anonymous`](Self::with_anonymous).
        #[deprecated(since = "0.4.0", note = "renamed to `with_anonymous`")]
        pub fn with_optional(self, optional: bool) -> Self {
            self.with_anonymous(optional)
        }

        /// Reuse detection (stolen-token detection, off by default): once a renewed token's
        /// replacement has been used, the renewed token arriving more than
        /// `grace` (plus the leeway, see below) later is a stolen or leaked
        /// copy. Its whole session is
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
        /// The first use is stamped by the instance that saw it and compared
        /// by the instance that sees the old token, each by its own clock:
        /// the layer adds the leeway ([`with_leeway`](Self::with_leeway),
        /// the clock-skew allowance) to the grace, so instances whose clocks
        /// differ by up to the leeway never mistake a parallel tab for
        /// reuse. Skew beyond the leeway must be covered by the grace.
        ///
        /// A renewal then writes the old token's `jti` and `exp` into the
        /// replacement (`prev_jti`, `prev_exp`); the first request with the
        /// replacement that an instance admits writes one mark to the store
        /// (until the old token expires), and none afterwards. A store error
        /// (other than no room) while writing it refuses that request with
        /// 503 (fail closed). The
        /// layer refuses to build on a store that does not keep marks
        /// ([`RevocationStore::keeps_replacements`](crate::store::RevocationStore::keeps_replacements));
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
        /// token seen before skips the signature check and the JSON parse (an
        /// ECDSA or RSA verification becomes a look-up; BENCHMARKS.md in the
        /// repository has the figures).
        /// `exp`, `nbf`, the session cap and revocation are still checked on every
        /// request, and a change of [`Keys::version`](crate::Keys::version) empties it. Off by default.
        ///
        /// Memory: at most `capacity` tokens and their claims, each bounded by
        /// the token size limit ([`with_max_token_bytes`](Self::with_max_token_bytes)). When full, expired tokens are
        /// dropped first, then an eighth of the rest. The trade-off: a forged token
        /// still costs a full verification, and the cache is one more place where
        /// valid tokens sit in memory.
        pub fn with_verified_cache(mut self, capacity: usize) -> Self {
            self.settings_mut().cache_capacity = capacity;
            self
        }

        /// Cross-origin protection for cookie-borne tokens (default on): an unsafe
        /// request whose token came from a cookie is refused with 403 when it
        /// comes from another site. The rules are in the crate docs'
        /// [security model](crate#cross-origin-protection-for-cookie-borne-tokens). Turn it off
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

        /// Sender-constrained sessions (DPoP, RFC 9449): tokens bound to a
        /// key the client holds (`cnf.jkt`), each request carrying a fresh
        /// proof signed by it, so a copied token is worthless without the
        /// key. The layer then also reads `Authorization: DPoP <token>`
        /// (before its other sources), checks the `DPoP` proof header
        /// (method, URL, age, the token's hash, one use per proof, the
        /// server nonce when required), renews bound tokens as
        /// `Authorization: DPoP <new>` with the same binding, and
        /// [`Issuer::login`](crate::Issuer::login) binds the tokens of
        /// logins that carry a proof. In [`DpopMode::Allowed`](crate::dpop::DpopMode::Allowed)
        /// bearer tokens are still accepted; a bound token is never
        /// accepted as a bearer token or from a cookie. Without this
        /// setting, a token carrying `cnf` is refused.
        pub fn with_dpop(mut self, dpop: $crate::dpop::Dpop) -> Self {
            self.settings_mut().dpop = Some(dpop);
            self
        }
    };
}
