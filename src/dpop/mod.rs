//! DPoP (RFC 9449): sessions bound to a key the client holds, so a copied
//! token is worthless without that key.
//!
//! The server half is configured with
//! [`SlidingJwtBuilder::with_dpop`](crate::SlidingJwtBuilder::with_dpop)
//! and a [`Dpop`]; the client half with
//! [`ClientLayer::with_dpop`](crate::ClientLayer::with_dpop) and a
//! [`DpopKey`]. The guide "Sender-constrained sessions (DPoP)" in the crate
//! documentation says when to choose it and what it costs.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::error::{ConfigError, ConfigErrorKind};
use crate::keys::{alg_name, provider};
use crate::reject::RejectionKind;

mod client;
mod htu;
mod key;
mod nonce;
mod proof;
mod replay;

pub(crate) use client::ClientDpop;
pub use client::{NonceRetry, NonceRetryFuture, NonceRetryLayer};
pub use key::DpopKey;
pub(crate) use proof::Checked;

use nonce::Nonces;
use replay::{LocalReplay, Remembered};

/// The `DPoP` request header (the proof) and the `DPoP-Nonce` response header.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The response header carrying the server's nonce.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Whether bearer tokens are still accepted beside DPoP-bound ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Bound tokens (with their proof) and bearer tokens are both accepted;
    /// a login with a proof gets a bound token, one without a bearer token.
    Allowed,
    /// Only bound tokens are accepted, and a login must carry a proof.
    Required,
}

/// The DPoP settings of a layer
/// ([`with_dpop`](crate::SlidingJwtBuilder::with_dpop)).
///
/// ```
/// use std::time::Duration;
/// use tower_sliding_jwt::dpop::Dpop;
/// use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_dpop(
///         Dpop::allowed()
///             .with_public_url("https://api.example.com")
///             .with_nonce_secret([9u8; 32])
///             .with_required_nonce(true),
///     )
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Dpop {
    mode: DpopMode,
    algorithms: Vec<Algorithm>,
    public_url: Option<String>,
    max_age: Duration,
    nonce_secret: Option<Vec<u8>>,
    require_nonce: bool,
    nonce_period: Duration,
    replay_capacity: usize,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("mode", &self.mode)
            .field("algorithms", &self.algorithms)
            .field("public_url", &self.public_url)
            .field("max_age", &self.max_age)
            .field(
                "nonce_secret",
                &self.nonce_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("require_nonce", &self.require_nonce)
            .field("nonce_period", &self.nonce_period)
            .field("replay_capacity", &self.replay_capacity)
            .finish()
    }
}

/// Proof algorithms accepted by default.
const DEFAULT_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
];

impl Dpop {
    fn new(mode: DpopMode) -> Self {
        Self {
            mode,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            public_url: None,
            max_age: Duration::from_secs(60),
            nonce_secret: None,
            require_nonce: false,
            nonce_period: Duration::from_secs(300),
            replay_capacity: 100_000,
        }
    }

    /// Bound and bearer tokens are both accepted ([`DpopMode::Allowed`]).
    pub fn allowed() -> Self {
        Self::new(DpopMode::Allowed)
    }

    /// Only bound tokens are accepted ([`DpopMode::Required`]).
    pub fn required() -> Self {
        Self::new(DpopMode::Required)
    }

    /// The proof algorithms accepted (default: ES256, ES384, EdDSA, RS256,
    /// RS384, RS512, PS256, PS384); listed in the challenges' `algs`.
    /// HMAC algorithms are refused when the layer is built.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The URL clients reach the service at (`https://api.example.com`,
    /// with an optional path prefix), when it sits behind a proxy or
    /// terminates TLS itself: a proof's `htu` is then compared with this
    /// base followed by the request's path. Without it, the URL is the
    /// request's own (`http`, or the scheme of an absolute request URI,
    /// and `:authority` or `Host`). Forwarded headers are never read.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// How old a proof's `iat` may be (default 60 s); it may lie up to the
    /// layer's leeway ahead.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The secret server nonces derive from (at least 32 bytes). Every
    /// instance given the same secret accepts the others' nonces, with no
    /// shared state. It is derived under a label of its own, so passing
    /// the token signing secret is safe. Default: a random secret (this
    /// instance alone accepts its nonces).
    pub fn with_nonce_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.nonce_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Requires the server's nonce in every proof (RFC 9449 §8): a proof
    /// without a current one gets 401 `use_dpop_nonce` and a `DPoP-Nonce`
    /// header; responses to DPoP requests carry the nonce to use next.
    pub fn with_required_nonce(mut self, required: bool) -> Self {
        self.require_nonce = required;
        self
    }

    /// How often the nonce changes (default 5 minutes). A nonce is good
    /// for the step it was made for and the steps on either side.
    pub fn with_nonce_period(mut self, period: Duration) -> Self {
        self.nonce_period = period;
        self
    }

    /// How many proofs the layer's own replay cache holds (default
    /// 100 000, about 6 MiB). Each is kept until its `iat` is too old
    /// anyway; when it is full, proofs are refused with `use_dpop_nonce`
    /// (never accepted unremembered) until room frees up.
    pub fn with_replay_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// Checks the settings and prepares what each request needs.
    pub(crate) fn build(self, leeway: i64) -> Result<DpopGuard, ConfigError> {
        let invalid = |detail: &str| {
            ConfigError::new(ConfigErrorKind::InvalidValue).with_detail(detail.to_owned())
        };
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|alg| alg.family() == AlgorithmFamily::Hmac)
        {
            return Err(invalid(
                "DPoP proof algorithms must be asymmetric (ES256, ES384, EdDSA, RSA) and at least one",
            ));
        }
        let max_age = i64::try_from(self.max_age.as_secs())
            .ok()
            .filter(|&s| (1..=3600).contains(&s))
            .ok_or_else(|| invalid("the DPoP proof max age must be 1 s to 1 hour"))?;
        let period = i64::try_from(self.nonce_period.as_secs())
            .ok()
            .filter(|&s| (10..=86_400).contains(&s))
            .ok_or_else(|| invalid("the DPoP nonce period must be 10 s to 1 day"))?;
        if !(1..=100_000_000).contains(&self.replay_capacity) {
            return Err(invalid(
                "the DPoP replay capacity must be 1 to 100 000 000 proofs",
            ));
        }
        let base = match &self.public_url {
            None => None,
            Some(url) => Some(htu::base(url).ok_or_else(|| {
                ConfigError::new(ConfigErrorKind::InvalidOrigin).with_detail(
                    "the DPoP public URL must be an absolute http(s) URL without query or fragment"
                        .to_owned(),
                )
            })?),
        };
        let nonces = match &self.nonce_secret {
            Some(secret) => Nonces::new(secret, period)?,
            None => Nonces::random(period)?,
        };
        let mut algs = String::new();
        for alg in &self.algorithms {
            if !algs.is_empty() {
                algs.push(' ');
            }
            algs.push_str(alg_name(*alg));
        }
        let challenge = |error: Option<&str>| {
            let value = match error {
                None => format!("DPoP algs=\"{algs}\""),
                Some(error) => format!("DPoP error=\"{error}\", algs=\"{algs}\""),
            };
            HeaderValue::try_from(value)
                .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidValue, e))
        };
        Ok(DpopGuard {
            mode: self.mode,
            challenges: [
                challenge(None)?,
                challenge(Some("invalid_token"))?,
                challenge(Some("invalid_dpop_proof"))?,
                challenge(Some("use_dpop_nonce"))?,
            ],
            algorithms: self.algorithms,
            base,
            max_age,
            leeway,
            nonces,
            require_nonce: self.require_nonce,
            // Long enough that a proof is refused by its `iat` before it is
            // forgotten.
            replay: LocalReplay::new(
                self.replay_capacity,
                max_age
                    .saturating_add(leeway.saturating_mul(2))
                    .saturating_add(1),
            ),
            provider: provider()?,
        })
    }
}

/// A layer's DPoP checks, built from a [`Dpop`].
pub(crate) struct DpopGuard {
    pub(crate) mode: DpopMode,
    algorithms: Vec<Algorithm>,
    /// `DPoP algs=...` without an error, and with `invalid_token`,
    /// `invalid_dpop_proof` and `use_dpop_nonce`.
    challenges: [HeaderValue; 4],
    base: Option<String>,
    max_age: i64,
    leeway: i64,
    nonces: Nonces,
    require_nonce: bool,
    replay: LocalReplay,
    provider: &'static CryptoProvider,
}

impl fmt::Debug for DpopGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopGuard")
            .field("mode", &self.mode)
            .field("algorithms", &self.algorithms)
            .field("base", &self.base)
            .field("max_age", &self.max_age)
            .field("require_nonce", &self.require_nonce)
            .finish_non_exhaustive()
    }
}

impl DpopGuard {
    /// Checks the request's one `DPoP` proof for `method` and `uri`, with
    /// the access token it accompanies (`None` at login), the nonce when
    /// required, and the layer's own replay cache.
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        token: Option<&str>,
        now: i64,
    ) -> Result<Checked, RejectionKind> {
        let invalid = RejectionKind::InvalidDpopProof;
        let mut proofs = headers.get_all(DPOP).iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(invalid);
        };
        let proof = proof.to_str().map_err(|_| invalid)?;
        let url = htu::of_request(self.base.as_deref(), uri, headers).ok_or(invalid)?;
        let expected = proof::Expected {
            method: method.as_str(),
            url: &url,
            token,
            now,
            max_age: self.max_age,
            leeway: self.leeway,
        };
        let checked =
            proof::check(self.provider, &self.algorithms, proof, &expected).ok_or(invalid)?;
        if self.require_nonce
            && !checked
                .nonce
                .as_deref()
                .is_some_and(|nonce| self.nonces.accepts(nonce, now))
        {
            return Err(RejectionKind::UseDpopNonce);
        }
        match self.replay.remember(checked.id, self.until(&checked), now) {
            Remembered::First => Ok(checked),
            Remembered::Seen => Err(invalid),
            // Never accepted unremembered.
            Remembered::Full => Err(RejectionKind::UseDpopNonce),
        }
    }

    /// Until when a cache must remember `checked`: after it, its `iat` is
    /// too old to be accepted, also by an instance whose clock lags this
    /// one's by up to the leeway.
    pub(crate) fn until(&self, checked: &Checked) -> i64 {
        checked
            .iat
            .saturating_add(self.max_age)
            .saturating_add(self.leeway)
            .saturating_add(1)
    }

    /// Whether responses to DPoP requests carry the next nonce.
    pub(crate) fn requires_nonce(&self) -> bool {
        self.require_nonce
    }

    /// The `DPoP-Nonce` value to send now.
    pub(crate) fn nonce(&self, now: i64) -> HeaderValue {
        HeaderValue::try_from(self.nonces.current(now))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Adds the DPoP challenge (and a nonce where one is asked for) to a
    /// refusal of `kind`: beside the `Bearer` challenge for a missing or
    /// bad token, alone for a proof problem.
    pub(crate) fn challenge(&self, kind: RejectionKind, headers: &mut HeaderMap, now: i64) {
        let rejection = crate::reject::Rejection::new(kind);
        let value = match (kind, rejection.error_code()) {
            (RejectionKind::UseDpopNonce, _) => &self.challenges[3],
            (RejectionKind::InvalidDpopProof, _) => &self.challenges[2],
            (_, None) => &self.challenges[0],
            (_, Some("invalid_token")) => &self.challenges[1],
            _ => return,
        };
        headers.append(http::header::WWW_AUTHENTICATE, value.clone());
        if kind == RejectionKind::UseDpopNonce || self.require_nonce {
            headers.insert(DPOP_NONCE, self.nonce(now));
        }
    }
}

/// The fuzz target's entry: `proof` checked for a fixed request (any
/// algorithm the layer takes), and normalised as a URL, twice.
#[cfg(fuzzing)]
pub(crate) fn fuzz(proof: &str) {
    let expected = proof::Expected {
        method: "GET",
        url: "http://api.test/me",
        token: Some("a.b.c"),
        now: 1_800_000_000,
        max_age: 60,
        leeway: 5,
    };
    if let Ok(provider) = provider() {
        let _ = proof::check(provider, &DEFAULT_ALGORITHMS, proof, &expected);
    }
    if let Some(normal) = htu::normalise(proof) {
        assert_eq!(htu::normalise(&normal).as_deref(), Some(normal.as_str()));
    }
}
