#![doc = include_str!("docs/crate.md")]
#![doc = include_str!("docs/frameworks.md")]
#![doc = include_str!("docs/renewal.md")]
#![doc = include_str!("docs/sessions.md")]
#![doc = include_str!("docs/security.md")]
#![doc = include_str!("docs/rejections.md")]
#![doc = include_str!("docs/browsers.md")]
#![doc = include_str!("docs/clients.md")]
#![doc = include_str!("docs/services.md")]
#![doc = include_str!("docs/cluster.md")]
#![doc = include_str!("docs/observability.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod claims;
mod client;
mod clock;
mod error;
mod extensions;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod jwks;
mod keys;
mod layer;
mod log;
mod origin;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod reject;
mod revoke;
mod session;
mod source;
mod stats;
mod token;

pub use claims::{Audience, Claims, RegisteredClaims, StandardClaims};
pub use client::{ClientFuture, ClientLayer, SlidingJwtClient, TokenStore};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
pub use extensions::{NoRenewal, Renewed};
pub use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
#[cfg(feature = "jwks")]
pub use jwks::{
    HyperFetcher, JwksError, JwksErrorKind, JwksFetcher, MAX_JWKS_BYTES, RemoteJwks,
    RemoteJwksBuilder,
};
pub use jwks::{JwksBody, JwksService};
pub use keys::{Jwk, Jwks, Key, KeyRing, KeySnapshot, Keys};
pub use layer::policy::{
    DefaultPolicy, RenewWindow, RenewalContext, RenewalPolicy, SuccessOnly, Throttle, is_success,
};
pub use layer::revalidate::{Revalidate, Verdict};
pub use layer::{
    Issuer, ResponseFuture, SlidingJwt, SlidingJwtBuilder, SlidingJwtLayer, VerifierBuilder,
};
pub use origin::Origin;
pub use reject::{
    BodyMode, EmptyBody, GrpcResponder, HttpResponder, ProblemJson, Realm, Rejection,
    RejectionKind, Responder,
};
pub use revoke::{
    DurableStore, DurableStoreBuilder, Lookup, MemoryStore, Revocation, RevocationStore,
    RevocationTarget, Revoker, SharedFlight, Status, StoreError, StoreErrorKind, TokenIds,
};
pub use session::Session;
pub use source::{BearerHeader, CookieSource, HeaderSource, SameSite, TokenSource};
pub use stats::Stats;
/// The date-time type of [`IssuedToken::expiry`], [`Session::expiry`] and
/// friends, re-exported from the `time` crate so the versions always match.
pub use time::OffsetDateTime;
pub use token::{IssuedToken, Lifetimes, RawToken};

/// A boxed future, as stores, hooks and fetchers return them on their slow
/// path.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Entry points for the fuzz targets (`cargo fuzz` builds with `--cfg
/// fuzzing`); not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Reads a stored Redis revocation (`key`, `value`) and an announcement
    /// (`message`) as the Redis store would, checking its bounds.
    pub fn redis_entries(key: &str, value: &str, message: &str) {
        #[cfg(feature = "redis")]
        crate::redis::fuzz_entries(key, value, message);
        #[cfg(not(feature = "redis"))]
        let _ = (key, value, message);
    }
}
