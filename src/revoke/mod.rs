//! Revocation: the immediate switch that ends a sliding session.
//!
//! A [`RevocationStore`] is asked on every request, after the token verified
//! and before the inner service runs, whether the token's session (`sid`), the
//! token itself (`jti`) or every session of its subject (`sub`, "log out
//! everywhere") was revoked. A revoked token gets 401 `invalid_token` and is
//! never renewed. (The periodic check, run only before a renewal, is the
//! [`Revalidate`](crate::policy::Revalidate) hook.)

use std::fmt;
use std::sync::Arc;

use crate::BoxFuture;
use crate::claims::RegisteredClaims;

mod admission;
#[cfg(feature = "sqlite")]
mod durable;
mod error;
mod filter;
mod local_registry;
mod memory;
mod registry;
#[cfg(any(feature = "sqlite", feature = "redis", fuzzing))]
pub(crate) mod registry_codec;
mod reuse;
mod revoker;
#[cfg(any(feature = "sqlite", feature = "postgres", fuzzing))]
pub(crate) mod row;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod sealed;

pub(crate) use admission::{Checkpoint, OnReused, Pending, Settled};
#[cfg(feature = "sqlite")]
pub use durable::{DurableStore, DurableStoreBuilder};
pub use error::{StoreError, StoreErrorKind};
pub(crate) use local_registry::LocalRegistry;
pub use memory::MemoryStore;
pub(crate) use registry::{
    MAX_SESSIONS_LIMIT, MAX_SID_BYTES, MAX_SUBJECT_BYTES, MAX_USER_AGENT_BYTES,
};
pub use registry::{SessionRegistry, SessionRow};
pub(crate) use reuse::{OnReuse, ReuseDetection};
pub use revoker::Revoker;
pub(crate) use revoker::record;

/// The longest session cap a layer accepts: 400 days, the ceiling browsers
/// put on a cookie's `Max-Age` (RFC 6265bis). Longer is refused when the
/// layer is built.
pub(crate) const MAX_SESSION_SECS: i64 = 400 * 86_400;

/// The longest any revocation needs to live: a session's cap plus the
/// largest leeway. Stores bound what they write and what they read back by
/// it, so no entry (planted, or from a clock at the edge) can ask for more.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const MAX_REVOCATION_SECS: i64 = MAX_SESSION_SECS + 60;

/// What an instance of a cluster does while it cannot trust its replica of
/// the shared store (Redis, PostgreSQL): the store was unreachable, or its
/// replica is not confirmed current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse authenticated requests with 503 until synchronised again.
    #[default]
    Closed,
    /// Keep answering from the local replica (may miss revocations made on
    /// other instances while the shared store was unreachable).
    Open,
}

/// A check answered by a cluster store's local replica: refused while the
/// replica is not `trusted`, unless `mode` is [`FailureMode::Open`] and the
/// answer is not one a renewal relies on (`fresh`, see
/// [`RevocationStore::check_fresh`]): a stale replica never vouches for a
/// renewal.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn replica_lookup(
    replica: &MemoryStore,
    trusted: bool,
    mode: FailureMode,
    fresh: bool,
    token: &TokenIds<'_>,
    now: i64,
) -> Lookup {
    if !trusted && (fresh || mode == FailureMode::Closed) {
        return Lookup::Ready(Err(StoreErrorKind::Unavailable.into()));
    }
    Lookup::Ready(Ok(replica.status(token, now)))
}

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
    /// Every token of one session issued at or before `before` (its `iat`),
    /// except the one whose `jti` is `keep`, is superseded: it may no longer
    /// be served or renewed with its own claims
    /// ([`Session::renew_with`](crate::Session::renew_with) gave the session
    /// new claims in the token `keep`, issued at `before`). A store answers
    /// [`RevocationStatus::Superseded`] for those tokens; a full revocation
    /// of the session ([`Session`](Self::Session)) overrides it, and of two
    /// cut-offs of one session the later `before` wins (on a tie, the one
    /// recorded last).
    Superseded {
        /// The session's `sid`.
        sid: String,
        /// The cut-off: the `iat` of the token with the new claims.
        before: i64,
        /// The `jti` of the token with the new claims, which stays valid.
        keep: String,
    },
    /// Not a revocation but a mark for reuse detection
    /// ([`with_reuse_detection`](crate::SlidingJwtBuilder::with_reuse_detection)):
    /// the token `jti` was renewed, and its replacement was first used at
    /// `used_at`. A store keeps the earliest `used_at` it is given for a
    /// `jti`, and answers [`RevocationStatus::Replaced`] for the token while no
    /// revocation matches it.
    Replaced {
        /// The `jti` of the replaced token.
        jti: String,
        /// When its replacement was first used.
        used_at: i64,
        /// The tokens' `sub`, when they have one: a store counts a
        /// subject's live marks against a quota
        /// ([`RevocationStore::has_room_for_mark`]), so no one user's
        /// renewals fill the budget every user's marks share. `None` for a
        /// mark read back from where the subject is not kept.
        subject: Option<String>,
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
    /// Why a session (or a token without `sid`) ended, for the streams that
    /// watch it ([`Session::ended`](crate::Session::ended)): a store that
    /// shares revocations carries it with a [`RevocationTarget::Session`]
    /// or [`RevocationTarget::Token`] (this crate's do), so every instance
    /// names the same reason. `None`: not said (read as
    /// [`EndReason::Ended`]).
    pub reason: Option<EndReason>,
}

impl Revocation {
    /// A revocation of `target` until `until`, for no reason said.
    pub fn new(target: RevocationTarget, until: i64) -> Self {
        Self {
            target,
            until,
            reason: None,
        }
    }

    /// The same, for `reason`.
    pub fn with_reason(mut self, reason: EndReason) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Why a session ended, as [`Session::ended`](crate::Session::ended)
/// answers it (and the demos' `session-ended` event names it).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Its user logged out ([`Session::end`](crate::Session::end)).
    Logout,
    /// Ended from another session or by an admin ([`Sessions`](crate::Sessions),
    /// [`Revoker`](crate::Revoker), a login past the limit), or for a reason
    /// not said.
    Ended,
    /// A replaced token came back: reuse detected, the session revoked.
    Reuse,
    /// Its cap was reached.
    Cap,
    /// Idle past its newest token's `exp`: nothing renewed it.
    Idle,
    /// The claims it was opened with were superseded
    /// ([`Session::renew_with`](crate::Session::renew_with)): old claims
    /// never keep a connection alive.
    Superseded,
    /// This instance cannot tell whether the session still lives (the
    /// shared store unreachable past its bound): end the connection
    /// without saying it ended (fail closed); a reconnect gets 503 until
    /// the store is back.
    CannotTell,
}

impl EndReason {
    /// The reason as one lowercase word (`logout`, `ended`, `reuse`, `cap`,
    /// `idle`, `superseded`, `cannot-tell`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Ended => "ended",
            Self::Reuse => "reuse",
            Self::Cap => "cap",
            Self::Idle => "idle",
            Self::Superseded => "superseded",
            Self::CannotTell => "cannot-tell",
        }
    }

    /// The reason a store carries in a session revocation's otherwise
    /// unused `before` (0: not said).
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "redis", feature = "postgres", fuzzing)),
        allow(dead_code)
    )]
    pub(crate) fn code(reason: Option<Self>) -> i64 {
        match reason {
            None | Some(Self::Ended) => 0,
            Some(Self::Logout) => 1,
            Some(Self::Reuse) => 2,
            Some(Self::Superseded) => 3,
            Some(Self::Cap) => 4,
            Some(Self::Idle) => 5,
            Some(Self::CannotTell) => 6,
        }
    }

    /// The reason of [`code`](Self::code); `None` for 0, or a code that no
    /// revocation carries (cap, idle and "cannot tell" are never
    /// revocations: one read back is planted), or one this version does
    /// not know.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "redis", feature = "postgres", fuzzing)),
        allow(dead_code)
    )]
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Logout,
            2 => Self::Reuse,
            3 => Self::Superseded,
            _ => return None,
        })
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// `iat`, for a session's cut-off ([`RevocationTarget::Superseded`]).
    pub issued_at: Option<i64>,
}

impl<'a> TokenIds<'a> {
    /// The identifiers of `claims`.
    pub fn of(claims: &'a RegisteredClaims) -> Self {
        Self {
            sid: claims.sid.as_deref(),
            jti: claims.jti.as_deref(),
            sub: claims.sub.as_deref(),
            authenticated_at: claims.auth_time.or(claims.iat),
            issued_at: claims.iat,
        }
    }
}

/// A store's answer for one token.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Not revoked.
    Active,
    /// Revoked: refuse the request and never renew.
    Revoked,
    /// Not revoked, but renewed, and its replacement was first used at
    /// `used_at` (a [`RevocationTarget::Replaced`] mark). With reuse
    /// detection on, the token is accepted until `used_at` plus the grace,
    /// and arriving later it revokes its whole session.
    Replaced {
        /// When the replacement was first used.
        used_at: i64,
    },
    /// Superseded by a token with new claims (a
    /// [`RevocationTarget::Superseded`] cut-off of its session): never
    /// served or renewed with its own claims. The layer serves the request
    /// as the token that superseded it when its single flight still knows
    /// that token (and hands it to the client), and refuses it otherwise.
    Superseded {
        /// When the token's replacement was first used, if the token was
        /// also renewed (a [`RevocationTarget::Replaced`] mark): past the
        /// reuse grace, the token is a stolen copy all the same, and ends its
        /// session rather than be served as its successor.
        replaced_at: Option<i64>,
    },
}

/// An answer that is ready now, or one that needs I/O.
pub enum Lookup {
    /// Answered without waiting (the in-memory store, a warm cache).
    Ready(Result<RevocationStatus, StoreError>),
    /// Needs I/O; the layer awaits it before calling the inner service.
    Pending(BoxFuture<'static, Result<RevocationStatus, StoreError>>),
}

impl Lookup {
    /// The answer, awaited when it needs I/O.
    pub(crate) async fn resolve(self) -> Result<RevocationStatus, StoreError> {
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

    /// The answer a renewal relies on, asked again just before a replacement
    /// is handed out: like [`check`](Self::check), but [`RevocationStatus::Active`]
    /// only when the store can vouch for it *now*. A store that may serve
    /// checks from state it knows to be stale (a replica that lost its feed,
    /// answering anyway by configuration) answers an error here, so no
    /// replacement is issued while it cannot say "not revoked" (the re-check
    /// before a renewal fails closed).
    /// Defaults to [`check`](Self::check).
    fn check_fresh(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        self.check(token, now)
    }

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

    /// Whether the store forgets every revocation when the process restarts
    /// (only [`MemoryStore`] does here). A layer built on such a store says
    /// so once in its log. Defaults to `false`.
    fn forgets_on_restart(&self) -> bool {
        false
    }

    /// Whether the store keeps a session's cut-off
    /// ([`RevocationTarget::Superseded`]) and answers
    /// [`RevocationStatus::Superseded`] for it, as every store of this crate
    /// does. [`Session::renew_with`](crate::Session::renew_with) then
    /// supersedes every earlier token of the session at once; on a store
    /// that does not, it can only retire the tokens it knows of by `jti`.
    /// Defaults to `false`.
    fn keeps_cutoffs(&self) -> bool {
        false
    }

    /// Whether a reuse mark for a token of `subject` would be kept now: the
    /// store's budget of marks is not full, nor the subject's quota. A layer
    /// with reuse detection asks before it hands out a replacement, and
    /// issues none when the answer is no: a replacement its store could not
    /// mark would escape detection (counted in
    /// [`Stats::marks_refused`](crate::Stats::marks_refused)). Defaults to
    /// `true`.
    fn has_room_for_mark(&self, subject: Option<&str>, now: i64) -> bool {
        let _ = (subject, now);
        true
    }

    /// Whether the store keeps [`RevocationTarget::Replaced`] marks and
    /// answers [`RevocationStatus::Replaced`] for them, as every store of this crate
    /// does. A layer with reuse detection refuses to build on a store that
    /// does not (a store ignoring the marks would let every stolen copy
    /// through unnoticed). Defaults to `false`.
    fn keeps_replacements(&self) -> bool {
        false
    }

    /// The store's session registry, if it keeps one (every store of this
    /// crate does): a row per session recorded at login, so a user can list
    /// their sessions and end the others ([`Sessions`](crate::Sessions)).
    /// `None` by default: logins then record nothing, and listing answers
    /// [`StoreErrorKind::Unsupported`].
    fn sessions(&self) -> Option<&dyn SessionRegistry> {
        None
    }

    /// The store's revocation feed, if it has one (every store of this
    /// crate does): each revocation it takes, recorded here or heard from
    /// another instance, is handed to its listeners, so a long-lived
    /// connection ends with its session ([`Session::ended`](crate::Session::ended)).
    /// `None` by default: such connections then end at once with
    /// [`EndReason::CannotTell`] (nothing would tell them their session
    /// ended).
    fn feed(&self) -> Option<&dyn RevocationFeed> {
        None
    }

    /// The store's cluster-wide replay cache for DPoP proofs, if it shares
    /// one between instances (Redis, PostgreSQL): a proof used on one
    /// instance is refused by all. `None` by default: each layer then keeps
    /// its own bounded cache, which stops replays on that instance only.
    fn replays(&self) -> Option<&dyn ReplayCache> {
        None
    }
}

/// The replay cache part of a store (DPoP, RFC 9449 §11.1): remembers each
/// proof until it could no longer be accepted anyway, so a copied proof is
/// refused on every instance. One write per DPoP request.
pub trait ReplayCache: Send + Sync {
    /// Records the proof `id` (a SHA-256 of the key's thumbprint and the
    /// proof's `jti`: no proof content) until `until` (seconds since the
    /// epoch). `Ok(true)` when this is its first use, `Ok(false)` when it
    /// was seen before; an error refuses the request (503): a proof the
    /// cache could not record is never accepted.
    fn remember(&self, id: [u8; 32], until: i64) -> BoxFuture<'static, Result<bool, StoreError>>;
}

/// What a [`RevocationFeed`] calls with each revocation its store takes;
/// answers `false` to be dropped (its layer is gone). Called on the thread
/// that applied the revocation, with no lock of the store held: keep it
/// short.
pub type FeedListener = Box<dyn Fn(&Revocation) -> bool + Send + Sync>;

/// The revocation feed part of a store: every revocation the store takes
/// — recorded through it, or heard from another instance of a cluster —
/// reaches its listeners, once it is honoured by the store's checks.
pub trait RevocationFeed: Send + Sync {
    /// Adds `listener` for as long as it answers `true`.
    fn subscribe(&self, listener: FeedListener);
}

/// The listeners of a feed, as the in-memory store keeps them.
#[derive(Default)]
pub(crate) struct Listeners {
    any: std::sync::atomic::AtomicBool,
    listeners: std::sync::RwLock<Vec<(FeedListener, std::sync::atomic::AtomicBool)>>,
}

impl Listeners {
    pub(crate) fn subscribe(&self, listener: FeedListener) {
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((listener, std::sync::atomic::AtomicBool::new(false)));
        self.any.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether anyone listens (one atomic load on the insert path).
    pub(crate) fn has_listeners(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands `revocation` to every listener; drops those that are gone.
    pub(crate) fn notify(&self, revocation: &Revocation) {
        use std::sync::atomic::Ordering;
        let mut any_gone = false;
        for (listener, gone) in self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            if !gone.load(Ordering::Relaxed) && !listener(revocation) {
                gone.store(true, Ordering::Relaxed);
                any_gone = true;
            }
        }
        if any_gone {
            let mut listeners = self
                .listeners
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            listeners.retain(|(_, gone)| !gone.load(Ordering::Relaxed));
            self.any.store(!listeners.is_empty(), Ordering::SeqCst);
        }
    }
}

/// A store behind a pointer is the store: every method forwards.
macro_rules! forward_store {
    ($($pointer:ident),+) => {$(
        impl<S: RevocationStore + ?Sized> RevocationStore for $pointer<S> {
            fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
                (**self).check(token, now)
            }

            fn check_fresh(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
                (**self).check_fresh(token, now)
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

            fn forgets_on_restart(&self) -> bool {
                (**self).forgets_on_restart()
            }

            fn keeps_replacements(&self) -> bool {
                (**self).keeps_replacements()
            }

            fn has_room_for_mark(&self, subject: Option<&str>, now: i64) -> bool {
                (**self).has_room_for_mark(subject, now)
            }

            fn keeps_cutoffs(&self) -> bool {
                (**self).keeps_cutoffs()
            }

            fn sessions(&self) -> Option<&dyn SessionRegistry> {
                (**self).sessions()
            }

            fn feed(&self) -> Option<&dyn RevocationFeed> {
                (**self).feed()
            }

            fn replays(&self) -> Option<&dyn ReplayCache> {
                (**self).replays()
            }
        }
    )+};
}

forward_store!(Arc, Box);

/// A single flight shared by the instances of a cluster: the first
/// replacement offered for an old token wins, and every instance hands out
/// the winner.
///
/// The layer asks only when it is about to renew (one round trip per
/// renewal, none per verification), and hands out no replacement when the
/// answer is an error (one the cluster never saw could not be retired by a
/// `renew_with` elsewhere); the old token stays valid meanwhile.
///
/// An old token is named by its canonical identity `old`: bytes that every
/// copy of the token shares (an ECDSA token and its malleated twin included)
/// and that only a holder of the token knows. Key entries by a keyed hash of
/// it, never by the bytes themselves, and never store the old token.
pub trait SharedFlight: Send + Sync + 'static {
    /// Offers `token` (expiring at `expires_at`) as the replacement for the
    /// old token `old`, remembered until `until` (when the old token stops
    /// verifying). Answers the replacement to hand out: `token` when it won,
    /// or the one offered first.
    fn claim(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<(Arc<str>, i64), StoreError>>;

    /// Makes `token` the replacement for `old` whatever was offered before,
    /// atomically, and answers the replacement it displaced, if any:
    /// [`Session::renew_with`](crate::Session::renew_with) revokes that one,
    /// so the old claims stop sliding on every instance. An error means the
    /// layer issues nothing.
    /// The default answers an error, so a flight without it never lets
    /// `renew_with` issue a token (fail closed).
    #[allow(clippy::type_complexity)] // the pair `claim` answers, optional
    fn supersede(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let _ = (old, token, expires_at, until);
        Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())))
    }

    /// The replacement installed for `old`, if any: how an instance that
    /// did not hand it out serves a token [`Session::renew_with`](crate::Session::renew_with)
    /// superseded on another instance (a parallel request's replacement
    /// with the old claims): the request is served as that replacement, and
    /// the client gets it. The default answers `Ok(None)`: such a token is
    /// then refused (401) unless this instance's own single flight knows its
    /// replacement.
    #[allow(clippy::type_complexity)] // the pair `claim` answers, optional
    fn replacement(
        &self,
        old: &[u8],
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let _ = old;
        Box::pin(std::future::ready(Ok(None)))
    }
}
