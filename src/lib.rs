#![doc = include_str!("docs/crate.md")]
#![doc = include_str!("docs/frameworks.md")]
#![doc = include_str!("docs/renewal.md")]
#![doc = include_str!("docs/sessions.md")]
#![doc = include_str!("docs/user-sessions.md")]
#![doc = include_str!("docs/streams.md")]
#![doc = include_str!("docs/dpop.md")]
#![doc = include_str!("docs/security.md")]
#![doc = include_str!("docs/reuse.md")]
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
pub mod dpop;
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
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod reject;
mod revoke;
mod session;
mod sessions;
mod source;
mod stats;
mod token;

// What an application writes: the layer and its builders, claims, keys,
// sources, the session, the issuer, errors, the stores and the client half.
pub use claims::{Audience, Claims, Confirmation, RegisteredClaims, StandardClaims};
pub use client::{ClientLayer, SlidingJwtClient, TokenStore};
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
pub use layer::policy::{RenewWindow, Throttle};
pub use layer::revalidate::Verdict;
pub use layer::{Issuer, SlidingJwt, SlidingJwtBuilder, SlidingJwtLayer, VerifierBuilder};
pub use origin::Origin;
pub use reject::{GrpcResponder, HttpResponder, Rejection, RejectionKind};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use revoke::{DurableStore, DurableStoreBuilder};
pub use revoke::{EndReason, MemoryStore, Revoker, StoreError, StoreErrorKind};
pub use session::Session;
pub use sessions::routes::SessionRoutes;
pub use sessions::{MAX_SESSIONS_PER_SUBJECT, OnLimit, SessionInfo, SessionMetadata, Sessions};
pub use source::{BearerHeader, CookieSource, HeaderSource, SameSite, TokenSource};
pub use stats::Stats;
/// The date-time type of [`IssuedToken::expiry`], [`Session::expiry`] and
/// friends, re-exported from the `time` crate so the versions always match.
pub use time::OffsetDateTime;
pub use token::{IssuedToken, Lifetimes, RawToken};

pub mod store {
    //! For store authors: the traits a store implements and the types they
    //! exchange with the layer. An application picks a store
    //! ([`MemoryStore`](crate::MemoryStore), `DurableStore` (feature `sqlite`),
    //! `postgres::PostgresStore`, `redis::RedisStore`) and never needs this module, except to name
    //! `Arc<dyn RevocationStore>` when it chooses one at run time.
    //!
    //! # The parts of a store
    //! A store is one value with one part per concern, each its own trait,
    //! so a store implements the parts it can keep and the layer asks for
    //! the parts its configuration needs:
    //!
    //! | part | trait | what the layer needs it for |
    //! |---|---|---|
    //! | revocations | [`RevocationStore`] (`check`, `check_fresh`, `revoke`) | every request, logout, log out everywhere, `renew_with` |
    //! | session cut-offs | [`RevocationStore`] ([`RevocationTarget::Superseded`], [`RevocationStatus::Superseded`], `keeps_cutoffs`) | `renew_with`: every earlier token of the session superseded at once |
    //! | reuse marks | [`RevocationStore`] ([`RevocationTarget::Replaced`], [`RevocationStatus::Replaced`], `keeps_replacements`, `has_room_for_mark`) | stolen-token (reuse) detection |
    //! | shared single flight | [`SharedFlight`], reached through [`RevocationStore::shared_flight`] | one replacement per old token across a cluster; a superseded sibling's successor on every instance |
    //! | session registry | [`SessionRegistry`] (rows of [`SessionRow`]), reached through [`RevocationStore::sessions`] | a user's sessions: [`Issuer::login`](crate::Issuer::login) records, a renewal touches, [`Sessions`](crate::Sessions) lists and ends |
    //! | revocation feed | [`RevocationFeed`], reached through [`RevocationStore::feed`] | long-lived connections end with their session ([`Session::ended`](crate::Session::ended)) |
    //! | replay cache | [`ReplayCache`], reached through [`RevocationStore::replays`] | DPoP proofs refused on every instance once used (Redis, PostgreSQL); without it each layer keeps its own |
    //!
    //! [`RevocationStore`] is the store's entry point: every other part is
    //! reached through one of its methods answering `Option<&dyn Part>` (or,
    //! for the marks, `keeps_replacements`), `None` by default. A layer
    //! configured for a part its store lacks is refused when it is built,
    //! with [`ConfigErrorKind::StoreLacksPart`](crate::ConfigErrorKind::StoreLacksPart)
    //! and a detail naming the part. New parts (a change feed, a replay
    //! cache) join the same way: a trait here and a method on
    //! [`RevocationStore`] with a default, so an existing store keeps
    //! compiling and says plainly what it lacks.
    pub use crate::BoxFuture;
    pub use crate::revoke::{
        EndReason, FailureMode, FeedListener, Lookup, ReplayCache, Revocation, RevocationFeed,
        RevocationStatus, RevocationStore, RevocationTarget, SessionRegistry, SessionRow,
        SharedFlight, TokenIds,
    };
}

pub mod policy {
    //! For custom renewal decisions: the [`RenewalPolicy`] trait and its
    //! parts, and the [`Revalidate`] hook trait. An application that only
    //! moves the window or the throttle uses
    //! [`RenewWindow`](crate::RenewWindow) and [`Throttle`](crate::Throttle)
    //! with the builder, and a closure with
    //! [`with_revalidation_fn`](crate::SlidingJwtBuilder::with_revalidation_fn).
    pub use crate::layer::policy::{
        DefaultPolicy, RenewalContext, RenewalPolicy, SuccessOnly, is_success,
    };
    pub use crate::layer::revalidate::Revalidate;
}

pub mod responder {
    //! For custom rejection responses: the [`Responder`] trait (closures are
    //! responders), and the parts of [`HttpResponder`](crate::HttpResponder):
    //! its body modes and the challenge's realm. The two ready-made
    //! responders, [`HttpResponder`](crate::HttpResponder) and
    //! [`GrpcResponder`](crate::GrpcResponder), are at the crate root.
    pub use crate::reject::{BodyMode, EmptyBody, ProblemJson, Realm, Responder};
}

pub mod future {
    //! The response futures of the services, named in type signatures only.
    pub use crate::client::ClientFuture;
    pub use crate::layer::ResponseFuture;
    pub use crate::sessions::Ended;
}

// The old root paths of items that moved into `store`, `policy`,
// `responder` and `future`, or were renamed: kept, deprecated, for one
// version (hidden from the docs; CHANGELOG lists each with its replacement).
#[deprecated(since = "0.4.0", note = "renamed to `SlidingJwtClient`")]
#[doc(hidden)]
pub type Client<S> = SlidingJwtClient<S>;
#[deprecated(since = "0.4.0", note = "moved to `future::ClientFuture`")]
#[doc(hidden)]
pub type ClientFuture<F> = future::ClientFuture<F>;
#[deprecated(since = "0.4.0", note = "moved to `future::ResponseFuture`")]
#[doc(hidden)]
pub type ResponseFuture<S, ReqB, F, ResB, K, C, P, R> =
    future::ResponseFuture<S, ReqB, F, ResB, K, C, P, R>;
#[deprecated(since = "0.4.0", note = "renamed to `store::RevocationStatus`")]
#[doc(hidden)]
pub type Status = store::RevocationStatus;
#[deprecated(since = "0.4.0", note = "moved to `store::Lookup`")]
#[doc(hidden)]
pub type Lookup = store::Lookup;
#[deprecated(since = "0.4.0", note = "moved to `store::Revocation`")]
#[doc(hidden)]
pub type Revocation = store::Revocation;
#[deprecated(since = "0.4.0", note = "moved to `store::RevocationTarget`")]
#[doc(hidden)]
pub type RevocationTarget = store::RevocationTarget;
#[deprecated(since = "0.4.0", note = "moved to `store::TokenIds`")]
#[doc(hidden)]
pub type TokenIds<'a> = store::TokenIds<'a>;
#[deprecated(since = "0.4.0", note = "moved to `store::RevocationStore`")]
#[doc(hidden)]
pub use store::RevocationStore;
#[deprecated(since = "0.4.0", note = "moved to `store::SharedFlight`")]
#[doc(hidden)]
pub use store::SharedFlight;
#[deprecated(since = "0.4.0", note = "moved to `policy::DefaultPolicy`")]
#[doc(hidden)]
pub type DefaultPolicy = policy::DefaultPolicy;
#[deprecated(since = "0.4.0", note = "moved to `policy::RenewalContext`")]
#[doc(hidden)]
pub type RenewalContext = policy::RenewalContext;
#[deprecated(since = "0.4.0", note = "moved to `policy::RenewalPolicy`")]
#[doc(hidden)]
pub use policy::RenewalPolicy;
#[deprecated(since = "0.4.0", note = "moved to `policy::Revalidate`")]
#[doc(hidden)]
pub use policy::Revalidate;
#[deprecated(since = "0.4.0", note = "moved to `policy::SuccessOnly`")]
#[doc(hidden)]
pub use policy::SuccessOnly;
/// Moved to [`policy::is_success`].
#[deprecated(since = "0.4.0", note = "moved to `policy::is_success`")]
#[doc(hidden)]
pub fn is_success(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    policy::is_success(status, headers)
}
#[deprecated(since = "0.4.0", note = "moved to `responder::BodyMode`")]
#[doc(hidden)]
pub use responder::BodyMode;
#[deprecated(since = "0.4.0", note = "moved to `responder::EmptyBody`")]
#[doc(hidden)]
pub use responder::EmptyBody;
#[deprecated(since = "0.4.0", note = "moved to `responder::ProblemJson`")]
#[doc(hidden)]
pub use responder::ProblemJson;
#[deprecated(since = "0.4.0", note = "moved to `responder::Responder`")]
#[doc(hidden)]
pub use responder::Responder;
#[deprecated(since = "0.4.0", note = "moved to `responder::Realm`")]
#[doc(hidden)]
pub type Realm = responder::Realm;

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
        {
            crate::redis::fuzz_entries(key, value, message);
            // The same value as a field of a session registry hash.
            crate::redis::fuzz_registry_value(value);
        }
        #[cfg(not(feature = "redis"))]
        let _ = (key, value, message);
    }

    /// Checks `proof` as a DPoP proof for a fixed request, and normalises
    /// the same text as an `htu`: never a panic; a normal form is stable.
    pub fn dpop_proof(proof: &str) {
        crate::dpop::fuzz(proof);
    }

    /// Reads a row's `record` as the SQL stores read it back from a shared
    /// database, and the same bytes as a stored session registry row,
    /// checking their bounds.
    pub fn sql_record(record: &[u8]) {
        crate::revoke::row::fuzz_record(record);
        if let Ok(text) = std::str::from_utf8(record) {
            crate::revoke::registry_codec::fuzz_row(text);
        }
    }
}
