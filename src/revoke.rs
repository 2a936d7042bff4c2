//! Revocation: the immediate switch that ends a sliding session.
//!
//! A [`RevocationStore`] is asked on every request, after the token verified
//! and before the inner service runs, whether the token's session (`sid`), the
//! token itself (`jti`) or every session of its subject (`sub`, "log out
//! everywhere") was revoked. A revoked token gets 401 `invalid_token` and is
//! never renewed. (The periodic check, run only before a renewal, is the
//! [`Revalidate`](crate::Revalidate) hook.)

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::claims::RegisteredClaims;
use crate::reject::RejectionKind;

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
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether the token with these ids is revoked at time `now`.
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup;

    /// Records a revocation. `now` is the layer's clock, for housekeeping.
    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A store could not answer or record.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Why a store failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreErrorKind {
    /// The backend cannot be reached or is not synchronised.
    #[error("revocation store unavailable")]
    Unavailable,
    /// The backend did not answer in time.
    #[error("revocation store timed out")]
    Timeout,
    /// The store holds as many live entries as it may.
    #[error("revocation store is full")]
    Full,
    /// The token has neither `sid` nor `jti`, so nothing identifies it.
    #[error("token has no sid or jti to revoke")]
    NotRevocable,
}

impl StoreError {
    /// An error of `kind`, with its cause.
    pub fn new(
        kind: StoreErrorKind,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { kind, source }
    }

    /// Why the store failed.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreErrorKind> for StoreError {
    fn from(kind: StoreErrorKind) -> Self {
        Self::new(kind, None)
    }
}

const FILTER_BITS: usize = 1 << 16;
const PURGE_EVERY: i64 = 60;

#[derive(Default)]
struct Entries {
    /// sid -> until
    sessions: HashMap<Box<str>, i64>,
    /// jti -> until
    tokens: HashMap<Box<str>, i64>,
    /// sub -> (before, until)
    subjects: HashMap<Box<str>, (i64, i64)>,
    next_purge: i64,
}

impl Entries {
    fn len(&self) -> usize {
        self.sessions.len() + self.tokens.len() + self.subjects.len()
    }

    fn purge(&mut self, now: i64) {
        self.sessions.retain(|_, until| *until > now);
        self.tokens.retain(|_, until| *until > now);
        self.subjects.retain(|_, (_, until)| *until > now);
        self.next_purge = now.saturating_add(PURGE_EVERY);
    }
}

struct MemoryInner {
    /// A bit per hash bucket of every live entry: a clear bit answers
    /// "not revoked" with one atomic load, no lock, no allocation.
    filter: Box<[AtomicU64]>,
    /// Per-store random seed of the filter's hash.
    seed: u64,
    entries: RwLock<Entries>,
    capacity: usize,
}

/// The in-memory revocation store, the default.
///
/// * The common answer, "not revoked", costs a few hashes and atomic loads: no
///   lock is taken and nothing is allocated unless one of the token's ids hashes
///   to the bucket of a live revocation (then a shared read lock and a map look-up).
/// * Entries are dropped once their `until` has passed (checked at most once a
///   minute, when revoking, or by [`MemoryStore::purge`]), so memory is bounded by
///   the revocations of live sessions, and by `capacity` in any case: revoking
///   beyond it fails with [`StoreErrorKind::Full`] rather than grow.
/// * One process only: clones share the same entries, other instances do not
///   see them (use a shared store such as the `redis` feature's for a cluster).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Session = 1,
    Token = 2,
    Subject = 3,
}

impl MemoryStore {
    /// A store for up to one million live revocations.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000)
    }

    /// A store for up to `capacity` live revocations.
    pub fn with_capacity(capacity: usize) -> Self {
        let filter = (0..FILTER_BITS / 64).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(MemoryInner {
                filter,
                seed: std::collections::hash_map::RandomState::new().hash_one(0u8) | 1,
                entries: RwLock::new(Entries::default()),
                capacity,
            }),
        }
    }

    /// Live and not yet purged entries.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry whose `until` is not after `now`.
    pub fn purge(&self, now: i64) {
        let mut entries = self.write();
        entries.purge(now);
        self.rebuild_filter(&entries);
    }

    /// Records a revocation synchronously.
    ///
    /// # Errors
    /// [`StoreErrorKind::Full`] when the store already holds `capacity` live entries.
    pub fn insert(&self, revocation: &Revocation, now: i64) -> Result<(), StoreError> {
        let mut entries = self.write();
        if now >= entries.next_purge || entries.len() >= self.inner.capacity {
            entries.purge(now);
            self.rebuild_filter(&entries);
        }
        if entries.len() >= self.inner.capacity {
            return Err(StoreErrorKind::Full.into());
        }
        let until = revocation.until;
        // Set the filter bit before the entry is visible, under the write lock.
        match &revocation.target {
            RevocationTarget::Session(sid) => {
                self.mark(Kind::Session, sid);
                let slot = entries.sessions.entry(sid.as_str().into()).or_insert(until);
                *slot = (*slot).max(until);
            }
            RevocationTarget::Token(jti) => {
                self.mark(Kind::Token, jti);
                let slot = entries.tokens.entry(jti.as_str().into()).or_insert(until);
                *slot = (*slot).max(until);
            }
            RevocationTarget::Subject { subject, before } => {
                self.mark(Kind::Subject, subject);
                let slot = entries
                    .subjects
                    .entry(subject.as_str().into())
                    .or_insert((*before, until));
                *slot = (slot.0.max(*before), slot.1.max(until));
            }
        }
        Ok(())
    }

    /// Whether the token is revoked at `now`, synchronously.
    pub fn status(&self, token: &TokenIds<'_>, now: i64) -> Status {
        let sid = token.sid.filter(|sid| self.marked(Kind::Session, sid));
        let jti = token.jti.filter(|jti| self.marked(Kind::Token, jti));
        let sub = token.sub.filter(|sub| self.marked(Kind::Subject, sub));
        if sid.is_none() && jti.is_none() && sub.is_none() {
            return Status::Active;
        }
        let entries = self.read();
        let live = |until: Option<&i64>| until.is_some_and(|until| *until > now);
        let revoked = sid.is_some_and(|sid| live(entries.sessions.get(sid)))
            || jti.is_some_and(|jti| live(entries.tokens.get(jti)))
            || sub.is_some_and(|sub| {
                entries.subjects.get(sub).is_some_and(|(before, until)| {
                    // Unknown authentication time: assume the worst.
                    *until > now && token.authenticated_at.is_none_or(|at| at < *before)
                })
            });
        if revoked {
            Status::Revoked
        } else {
            Status::Active
        }
    }

    fn bit(&self, kind: Kind, key: &str) -> (usize, u64) {
        // FNV-1a from a random seed: a filter hit only costs a map look-up
        // (whose hasher is keyed), so speed matters more than strength here.
        let mut hash = self.inner.seed ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for &byte in key.as_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        let hash = (hash ^ (hash >> 29)) as usize % FILTER_BITS;
        (hash / 64, 1u64 << (hash % 64))
    }

    fn mark(&self, kind: Kind, key: &str) {
        let (word, mask) = self.bit(kind, key);
        self.inner.filter[word].fetch_or(mask, Ordering::Release);
    }

    fn marked(&self, kind: Kind, key: &str) -> bool {
        let (word, mask) = self.bit(kind, key);
        self.inner.filter[word].load(Ordering::Acquire) & mask != 0
    }

    /// Recomputes the filter from the remaining entries. Runs under the write
    /// lock; each word only loses the bits of dropped entries, so a concurrent
    /// reader never misses a live one.
    fn rebuild_filter(&self, entries: &Entries) {
        let mut words = vec![0u64; FILTER_BITS / 64];
        let keys = entries
            .sessions
            .keys()
            .map(|k| (Kind::Session, k))
            .chain(entries.tokens.keys().map(|k| (Kind::Token, k)))
            .chain(entries.subjects.keys().map(|k| (Kind::Subject, k)));
        for (kind, key) in keys {
            let (word, mask) = self.bit(kind, key);
            words[word] |= mask;
        }
        for (atomic, word) in self.inner.filter.iter().zip(words) {
            atomic.store(word, Ordering::Release);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl RevocationStore for MemoryStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        Lookup::Ready(Ok(self.status(token, now)))
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.insert(&revocation, now);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(sid: &'a str, jti: &'a str, sub: &'a str, at: i64) -> TokenIds<'a> {
        TokenIds {
            sid: Some(sid),
            jti: Some(jti),
            sub: Some(sub),
            authenticated_at: Some(at),
        }
    }

    fn revoke(store: &MemoryStore, target: RevocationTarget, until: i64, now: i64) {
        store.insert(&Revocation { target, until }, now).unwrap();
    }

    #[test]
    fn sessions_tokens_and_subjects() {
        let store = MemoryStore::new();
        assert_eq!(
            store.status(&ids("s1", "j1", "alice", 10), 100),
            Status::Active
        );
        revoke(&store, RevocationTarget::Session("s1".into()), 1000, 100);
        revoke(&store, RevocationTarget::Token("j2".into()), 1000, 100);
        revoke(
            &store,
            RevocationTarget::Subject {
                subject: "bob".into(),
                before: 50,
            },
            1000,
            100,
        );
        assert_eq!(store.status(&ids("s1", "x", "x", 10), 100), Status::Revoked);
        assert_eq!(store.status(&ids("x", "j2", "x", 10), 100), Status::Revoked);
        assert_eq!(
            store.status(&ids("x", "x", "bob", 49), 100),
            Status::Revoked
        );
        assert_eq!(
            store.status(&ids("x", "x", "bob", 50), 100),
            Status::Active,
            "a login from that second on is not revoked"
        );
        let unknown_time = TokenIds {
            authenticated_at: None,
            ..ids("x", "x", "bob", 0)
        };
        assert_eq!(store.status(&unknown_time, 100), Status::Revoked);
        assert_eq!(
            store.status(&ids("s2", "j1", "alice", 10), 100),
            Status::Active
        );
        // Expired entries no longer count, and are purged.
        assert_eq!(store.status(&ids("s1", "x", "x", 10), 1000), Status::Active);
        assert_eq!(store.len(), 3);
        store.purge(1000);
        assert_eq!(store.len(), 0);
        assert!(
            store
                .inner
                .filter
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == 0)
        );
    }

    #[test]
    fn capacity_bounds_memory() {
        let store = MemoryStore::with_capacity(2);
        revoke(&store, RevocationTarget::Session("a".into()), 200, 100);
        revoke(&store, RevocationTarget::Session("b".into()), 200, 100);
        let full = store.insert(
            &Revocation {
                target: RevocationTarget::Session("c".into()),
                until: 200,
            },
            100,
        );
        assert_eq!(full.unwrap_err().kind(), StoreErrorKind::Full);
        // Once entries expire there is room again.
        revoke(&store, RevocationTarget::Session("c".into()), 400, 300);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn repeated_revocation_keeps_the_longest() {
        let store = MemoryStore::new();
        revoke(&store, RevocationTarget::Session("a".into()), 500, 100);
        revoke(&store, RevocationTarget::Session("a".into()), 200, 100);
        assert_eq!(store.status(&ids("a", "x", "x", 0), 300), Status::Revoked);
    }
}
