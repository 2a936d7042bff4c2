//! Revocation: the immediate switch that ends a sliding session.
//!
//! A [`RevocationStore`] is asked on every request, after the token verified
//! and before the inner service runs, whether the token's session (`sid`), the
//! token itself (`jti`) or every session of its subject (`sub`, "log out
//! everywhere") was revoked. A revoked token gets 401 `invalid_token` and is
//! never renewed. (The periodic check, run only before a renewal, is the
//! [`Revalidate`](crate::Revalidate) hook.)

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::claims::RegisteredClaims;
use crate::reject::RejectionKind;

mod error;
mod filter;
mod memory;
mod revoker;

pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use revoker::Revoker;
pub(crate) use revoker::record;

/// A boxed future, as revocation stores and hooks return them on their slow path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What is revoked.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    /// Every token of one session (logout).
    Session(String),
    /// One token.
    Token(String),
    /// Every session of a subject that authenticated before `before`
    /// ("log out everywhere", password change).
    Subject {
        /// The `sub` claim.
        subject: String,
        /// Sessions whose `auth_time` is earlier than this are revoked.
        before: i64,
    },
}

/// A revocation and how long it must be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// What is revoked.
    pub target: RevocationTarget,
    /// When the entry can be forgotten: no token it matches can verify after
    /// this time (the session cap, or the token's own expiry).
    pub until: i64,
}

/// The identifiers of a verified token that a store looks up.
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub struct TokenIds<'a> {
    /// `sid`.
    pub sid: Option<&'a str>,
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `sub`.
    pub sub: Option<&'a str>,
    /// `auth_time`, or `iat` when the token has no `auth_time`.
    pub authenticated_at: Option<i64>,
}

impl<'a> TokenIds<'a> {
    /// The identifiers of `claims`.
    pub fn of(claims: &'a RegisteredClaims) -> Self {
        Self {
            sid: claims.sid.as_deref(),
            jti: claims.jti.as_deref(),
            sub: claims.sub.as_deref(),
            authenticated_at: claims.auth_time.or(claims.iat),
        }
    }
}

/// A store's answer for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Active,
    /// Revoked: refuse the request and never renew.
    Revoked,
}

/// What a store's answer means for the request: admitted, or refused with
/// `Revoked` (401) or, when the store failed, `StoreUnavailable` (503).
pub(crate) fn admit(answer: Result<Status, StoreError>) -> Result<(), RejectionKind> {
    match answer {
        Ok(Status::Active) => Ok(()),
        Ok(Status::Revoked) => Err(RejectionKind::Revoked),
        Err(_) => Err(RejectionKind::StoreUnavailable),
    }
}

/// An answer that is ready now, or one that needs I/O.
pub enum Lookup {
    /// Answered without waiting (the in-memory store, a warm cache).
    Ready(Result<Status, StoreError>),
    /// Needs I/O; the layer awaits it before calling the inner service.
    Pending(BoxFuture<'static, Result<Status, StoreError>>),
}

impl Lookup {
    /// The answer, awaited when it needs I/O.
    pub(crate) async fn resolve(self) -> Result<Status, StoreError> {
        match self {
            Self::Ready(answer) => answer,
            Self::Pending(lookup) => lookup.await,
        }
    }
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(answer) => f.debug_tuple("Ready").field(answer).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Where revocations are kept.
///
/// `check` runs on every authenticated request: answer [`Lookup::Ready`]
/// whenever possible, and never hold a lock across an `.await` in the
/// [`Lookup::Pending`] future.
///
/// Implemented for `Arc<S>` and `Box<S>` of any store, `Arc<dyn RevocationStore>`
/// included, so a store chosen at run time needs no second builder chain:
///
/// ```
/// use std::sync::Arc;
/// use tower_sliding_jwt::{Key, MemoryStore, RevocationStore, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// // E.g. a Redis store in production, memory in development.
/// let store: Arc<dyn RevocationStore> = Arc::new(MemoryStore::new());
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_revocation_store(store.clone())
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether the token with these ids is revoked at time `now`.
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup;

    /// Records a revocation. `now` is the layer's clock, for housekeeping.
    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The single flight this store shares with the other instances of a
    /// cluster, if it has one (the Redis store does): parallel requests with
    /// the same old token then get one replacement whichever instance
    /// answers. `None` by default: single flight stays per process.
    fn shared_flight(&self) -> Option<&dyn SharedFlight> {
        None
    }
}

impl<S: RevocationStore + ?Sized> RevocationStore for Arc<S> {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        (**self).check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).revoke(revocation, now)
    }

    fn shared_flight(&self) -> Option<&dyn SharedFlight> {
        (**self).shared_flight()
    }
}

impl<S: RevocationStore + ?Sized> RevocationStore for Box<S> {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        (**self).check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).revoke(revocation, now)
    }

    fn shared_flight(&self) -> Option<&dyn SharedFlight> {
        (**self).shared_flight()
    }
}

/// A single flight shared by the instances of a cluster: the first
/// replacement offered for an old token wins, and every instance hands out
/// the winner.
///
/// The layer asks only when it is about to renew (one round trip per
/// renewal, none per verification), and falls back to its own replacement
/// when the answer is an error: both tokens are valid, so that is safe.
pub trait SharedFlight: Send + Sync + 'static {
    /// Offers `token` (expiring at `expires_at`) as the replacement for the
    /// old token whose signature segment is `old_signature`, remembered until
    /// `until` (when the old token stops verifying). Answers the replacement
    /// to hand out: `token` when it won, or the one offered first.
    /// Implementations key it by a hash of `old_signature`, never the token.
    fn claim(
        &self,
        old_signature: &str,
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<(Arc<str>, i64), StoreError>>;
}
