//! [`MemoryStore`]: revocations in this process's memory, behind the
//! counting filter. It forgets on restart.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::filter::{Filter, Level};
use super::{
    FeedListener, Listeners, LocalRegistry, Lookup, Revocation, RevocationFeed, RevocationStatus,
    RevocationStore, RevocationTarget, SessionRegistry, SessionRow, StoreError, StoreErrorKind,
    TokenIds,
};
use crate::BoxFuture;

/// Expired entries dropped, and entries copied into a growing filter level,
/// per insert: bounded work, and expired entries go faster than new ones come.
const STEP: usize = 32;

/// Live reuse marks one subject may hold, by default: a user renewing a
/// hundred sessions once a minute with hour-long tokens holds about 6 000.
/// A subject past it gets no more renewals while reuse detection is on
/// ([`RevocationStore::has_room_for_mark`]), so no one user's renewals can
/// fill the budget every user's marks share.
pub(crate) const MARKS_PER_SUBJECT: usize = 10_000;
/// Expired entries dropped per write-lock hold by [`MemoryStore::purge`].
const PURGE_BATCH: usize = 1024;

/// What an id names: a session, a token, a subject, or a replaced token
/// (a reuse-detection mark, looked up by the token's `jti`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IdKind {
    Session = 0,
    Token = 1,
    Subject = 2,
    Replaced = 3,
}

impl IdKind {
    /// The kind an id is hashed as in the filter: a mark shares its token's
    /// counters, so a check hashes a `jti` once for both.
    fn filtered_as(self) -> u64 {
        match self {
            Self::Replaced => Self::Token as u64,
            kind => kind as u64,
        }
    }
}

/// A live entry's value. `before` is a subject's `before`, or a mark's
/// `used_at`.
#[derive(Clone, Copy)]
struct Slot {
    until: i64,
    before: i64,
}

/// An entry in expiry order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    until: i64,
    kind: IdKind,
    key: Arc<str>,
}

/// Where [`MemoryStore::live_batch`] continues.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct LiveCursor(Due);

struct Entries {
    /// Per kind: id -> slot.
    maps: [HashMap<Arc<str>, Slot>; 4],
    /// Every entry of `maps` exactly once, in the order they expire.
    due: BTreeSet<Due>,
    /// While the filter grows into the next level: that level counts exactly
    /// the entries up to this one, in `due` order (none yet for `Some(None)`).
    growing: Option<Option<Due>>,
    /// The subject of each live mark that named one, and each subject's
    /// count of them (bounded by the marks' budget).
    mark_subjects: HashMap<Arc<str>, Arc<str>>,
    marks_per_subject: HashMap<Arc<str>, usize>,
    /// The token each session's cut-off keeps (sessions whose slot holds a
    /// cut-off, not a full revocation).
    cutoff_keeps: HashMap<Arc<str>, Arc<str>>,
}

impl Entries {
    fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    /// Whether the entry is already counted in the level being grown into.
    fn in_next(&self, due: &Due) -> bool {
        matches!(&self.growing, Some(Some(upto)) if due <= upto)
    }
}

struct MemoryInner {
    /// The counting filter: its active level counts every live entry, so a
    /// zero counter answers "not revoked" with a few atomic loads, no lock
    /// and no allocation.
    filter: Filter,
    /// Live entries per kind: a check skips (does not even hash) an id of a
    /// kind the store holds none of, e.g. `sub` while nobody was logged
    /// out everywhere.
    live: [AtomicUsize; 4],
    /// Per-store random seed of the filter's hash.
    seed: u64,
    entries: RwLock<Entries>,
    capacity: usize,
    /// Live marks one subject may hold.
    mark_quota: AtomicUsize,
    /// The session registry: a row per session recorded at login.
    registry: LocalRegistry,
    /// Who hears of each revocation taken (the layers' stream watchers).
    feed: Listeners,
    /// Checks that had to look in the map (filter hits).
    #[cfg(test)]
    locked_checks: AtomicUsize,
    /// Entries visited by housekeeping (reclaiming, growing the filter).
    #[cfg(test)]
    work: AtomicUsize,
}

/// The in-memory revocation store, the default: **it forgets on restart** —
/// for tests and development. A restart or a crash forgets every logout,
/// "log out everywhere" and `renew_with` retirement, so ended sessions come
/// back until their cap; in production use `DurableStore` (feature `sqlite`)
/// (one instance) or `redis::RedisStore` (a cluster).
///
/// * The common answer, "not revoked", costs a hash and a few atomic loads in
///   one cache line per id: no lock is taken and nothing is allocated unless
///   all of an id's counters in the filter are set (an id that is revoked, or
///   about 1 % of the others), which costs a shared read lock and a map
///   look-up. The filter grows with the entries it holds, so the check stays
///   as cheap when full.
/// * An entry lives exactly until its `until`: it stops counting at that
///   second, and its memory is reclaimed a few at a time by later inserts (a
///   bounded number per insert, in expiry order) or by [`MemoryStore::purge`].
///   No operation does work proportional to the number of entries.
/// * Memory is bounded by `capacity` live entries (BENCHMARKS.md in the
///   repository gives the bytes per entry): a
///   revocation beyond it is refused with [`StoreErrorKind::Full`] (and logged)
///   rather than dropped, so the caller knows the token is still valid.
///   Reuse-detection marks ([`RevocationTarget::Replaced`]) have a budget of
///   their own of the same size: they never crowd out a revocation.
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

impl MemoryStore {
    /// A store for up to one million live revocations.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000)
    }

    /// A store for up to `capacity` live revocations. Memory is taken as
    /// entries arrive, not up front.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                filter: Filter::new(capacity),
                live: Default::default(),
                seed: std::collections::hash_map::RandomState::new().hash_one(0u8) | 1,
                entries: RwLock::new(Entries {
                    maps: Default::default(),
                    due: BTreeSet::new(),
                    growing: None,
                    mark_subjects: HashMap::new(),
                    marks_per_subject: HashMap::new(),
                    cutoff_keeps: HashMap::new(),
                }),
                capacity,
                mark_quota: AtomicUsize::new(MARKS_PER_SUBJECT),
                registry: LocalRegistry::new(capacity),
                feed: Listeners::default(),
                #[cfg(test)]
                locked_checks: AtomicUsize::new(0),
                #[cfg(test)]
                work: AtomicUsize::new(0),
            }),
        }
    }

    /// Live reuse marks one subject (`sub`) may hold (default 10 000, at
    /// most the capacity): past it, that subject's renewals are refused
    /// while reuse detection is on, and other subjects' marks still have
    /// room. Clones share the setting.
    pub fn with_mark_quota(self, per_subject: usize) -> Self {
        self.inner.mark_quota.store(per_subject, Ordering::Relaxed);
        self
    }

    /// The session registry kept beside the revocations.
    #[cfg(feature = "sqlite")]
    pub(crate) fn registry(&self) -> &LocalRegistry {
        &self.inner.registry
    }

    /// Whether a mark for a token of `subject` has room now: the marks'
    /// budget and the subject's quota (expired entries are reclaimed first).
    fn mark_room(&self, subject: Option<&str>, now: i64) -> bool {
        let mut entries = self.write();
        self.expire(&mut entries, now, STEP);
        let quota = self.inner.mark_quota.load(Ordering::Relaxed);
        entries.maps[IdKind::Replaced as usize].len() < self.inner.capacity
            && subject.is_none_or(|subject| {
                entries.marks_per_subject.get(subject).copied().unwrap_or(0) < quota
            })
    }

    /// Live and not yet reclaimed entries.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry whose `until` is not after `now`, a bounded batch per
    /// write-lock hold so checks are never blocked for long. Entries already
    /// stop counting at their `until` without it; this only reclaims memory
    /// early (inserts reclaim a few expired entries each).
    pub fn purge(&self, now: i64) {
        self.inner.registry.purge(now);
        loop {
            let mut entries = self.write();
            let dropped = self.expire(&mut entries, now, PURGE_BATCH);
            self.grow_step(&mut entries);
            if dropped < PURGE_BATCH {
                return;
            }
        }
    }

    /// Records a revocation synchronously. A revocation whose `until` is not
    /// after `now` is already over: nothing is stored. Revoking an id again
    /// keeps the later `until` (and, for a subject, the later `before`).
    ///
    /// # Errors
    /// [`StoreErrorKind::Full`] when the store already holds `capacity` live
    /// entries and this revocation is a new one; it is logged, and nothing is
    /// recorded.
    pub fn insert(&self, revocation: &Revocation, now: i64) -> Result<(), StoreError> {
        self.apply(revocation, now)?;
        // Every revocation this store takes, its own or one a replica
        // hears of, reaches the streams watching its session.
        if revocation.until > now && self.inner.feed.has_listeners() {
            self.inner.feed.notify(revocation);
        }
        Ok(())
    }

    fn apply(&self, revocation: &Revocation, now: i64) -> Result<(), StoreError> {
        let until = revocation.until;
        if until <= now {
            return Ok(());
        }
        let (kind, key, before) = match &revocation.target {
            RevocationTarget::Session(sid) => (IdKind::Session, sid, 0),
            // A session's cut-off shares its slot: `before` 0 is the whole
            // session, any other value the cut-off (never 0).
            RevocationTarget::Superseded { sid, before, .. } => {
                (IdKind::Session, sid, (*before).max(1))
            }
            RevocationTarget::Token(jti) => (IdKind::Token, jti, 0),
            RevocationTarget::Subject { subject, before } => (IdKind::Subject, subject, *before),
            RevocationTarget::Replaced { jti, used_at, .. } => (IdKind::Replaced, jti, *used_at),
        };
        let keep = match &revocation.target {
            RevocationTarget::Superseded { keep, .. } => Some(keep.as_str()),
            _ => None,
        };
        let mut entries = self.write();
        self.expire(&mut entries, now, STEP);
        let hash = self.hash(kind, key);
        let existing = entries.maps[kind as usize].get_key_value(key.as_str());
        if let Some((key, slot)) = existing.map(|(k, s)| (k.clone(), *s)) {
            let updated = Slot {
                until: slot.until.max(until),
                // A mark keeps the first use; a subject the latest `before`;
                // a session its full revocation, else its latest cut-off.
                before: match kind {
                    IdKind::Replaced => slot.before.min(before),
                    IdKind::Session if slot.before == 0 || before == 0 => 0,
                    IdKind::Session if before >= slot.before => before,
                    _ => slot.before.max(before),
                },
            };
            if kind == IdKind::Session {
                if updated.before == 0 {
                    entries.cutoff_keeps.remove(&key);
                } else if let Some(keep) = keep.filter(|_| before >= slot.before) {
                    entries.cutoff_keeps.insert(key.clone(), keep.into());
                }
            }
            if updated.until != slot.until {
                let old = Due {
                    until: slot.until,
                    kind,
                    key: key.clone(),
                };
                let new = Due {
                    until: updated.until,
                    kind,
                    key: key.clone(),
                };
                // Only the position in the expiry order changes; the level
                // being grown into must still count exactly the entries up to
                // its cursor.
                match (entries.in_next(&old), entries.in_next(&new)) {
                    (true, false) => {
                        if let Some(next) = self.next_level() {
                            next.remove(hash)
                        }
                    }
                    (false, true) => {
                        if let Some(next) = self.next_level() {
                            next.add(hash)
                        }
                    }
                    _ => {}
                }
                entries.due.remove(&old);
                entries.due.insert(new);
            }
            entries.maps[kind as usize].insert(key, updated);
        } else {
            // Reuse marks have a budget of their own: a flood of renewals
            // never makes a logout be refused.
            let marks = entries.maps[IdKind::Replaced as usize].len();
            let held = if kind == IdKind::Replaced {
                marks
            } else {
                entries.len() - marks
            };
            let subject = match &revocation.target {
                RevocationTarget::Replaced {
                    subject: Some(subject),
                    ..
                } => Some(subject.as_str()),
                _ => None,
            };
            let quota = self.inner.mark_quota.load(Ordering::Relaxed);
            let over_quota = subject.is_some_and(|subject| {
                entries.marks_per_subject.get(subject).copied().unwrap_or(0) >= quota
            });
            if held >= self.inner.capacity || over_quota {
                drop(entries);
                if kind != IdKind::Replaced {
                    crate::log::event!(
                        error,
                        capacity = self.inner.capacity,
                        "revocation store full of live entries: revocation refused, the token stays valid"
                    );
                }
                return Err(StoreErrorKind::Full.into());
            }
            let key: Arc<str> = key.as_str().into();
            let due = Due {
                until,
                kind,
                key: key.clone(),
            };
            // Counted in before the entry is visible, under the write lock.
            self.inner.live[kind as usize].fetch_add(1, Ordering::AcqRel);
            self.active_level().add(hash);
            if entries.in_next(&due)
                && let Some(next) = self.next_level()
            {
                next.add(hash);
            }
            if let Some(keep) = keep {
                entries.cutoff_keeps.insert(key.clone(), keep.into());
            }
            if let Some(subject) = subject {
                let subject: Arc<str> = entries
                    .marks_per_subject
                    .get_key_value(subject)
                    .map_or_else(|| subject.into(), |(known, _)| known.clone());
                *entries
                    .marks_per_subject
                    .entry(subject.clone())
                    .or_insert(0) += 1;
                entries.mark_subjects.insert(key.clone(), subject);
            }
            entries.maps[kind as usize].insert(key, Slot { until, before });
            entries.due.insert(due);
            self.start_growing(&mut entries);
        }
        self.grow_step(&mut entries);
        Ok(())
    }

    /// Up to `limit` entries live at `now` (their `until` after it), in
    /// expiry order, starting after `cursor`; and the cursor to continue
    /// from, `None` once every live entry was listed. One shared read-lock
    /// hold per batch, so checks and inserts are never blocked for long.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn live_batch(
        &self,
        cursor: Option<&LiveCursor>,
        now: i64,
        limit: usize,
    ) -> (Vec<Revocation>, Option<LiveCursor>) {
        let entries = self.read();
        let from = match cursor {
            Some(LiveCursor(due)) => Bound::Excluded(due.clone()),
            None => Bound::Unbounded,
        };
        let mut batch = Vec::with_capacity(limit.min(entries.due.len()));
        let mut last: Option<&Due> = None;
        for due in entries
            .due
            .range((from, Bound::Unbounded))
            .filter(|due| due.until > now)
        {
            if batch.len() == limit {
                return (batch, last.cloned().map(LiveCursor));
            }
            let Some(slot) = entries.maps[due.kind as usize].get(&due.key) else {
                continue;
            };
            let id = due.key.to_string();
            let target = match due.kind {
                IdKind::Session if slot.before == 0 => RevocationTarget::Session(id),
                IdKind::Session => RevocationTarget::Superseded {
                    before: slot.before,
                    keep: entries
                        .cutoff_keeps
                        .get(due.key.as_ref())
                        .map(|keep| keep.to_string())
                        .unwrap_or_default(),
                    sid: id,
                },
                IdKind::Token => RevocationTarget::Token(id),
                IdKind::Subject => RevocationTarget::Subject {
                    subject: id,
                    before: slot.before,
                },
                IdKind::Replaced => RevocationTarget::Replaced {
                    subject: entries
                        .mark_subjects
                        .get(due.key.as_ref())
                        .map(|subject| subject.to_string()),
                    jti: id,
                    used_at: slot.before,
                },
            };
            batch.push(Revocation::new(target, slot.until));
            last = Some(due);
        }
        (batch, None)
    }

    /// Whether the token is revoked at `now`, synchronously.
    pub fn status(&self, token: &TokenIds<'_>, now: i64) -> RevocationStatus {
        let level = self.active_level();
        let holds = |kind: IdKind| self.inner.live[kind as usize].load(Ordering::Acquire) > 0;
        let sid = token
            .sid
            .filter(|_| holds(IdKind::Session))
            .filter(|sid| level.contains(self.hash(IdKind::Session, sid)));
        let jti = token
            .jti
            .filter(|_| holds(IdKind::Token) || holds(IdKind::Replaced))
            .filter(|jti| level.contains(self.hash(IdKind::Token, jti)));
        let sub = token
            .sub
            .filter(|_| holds(IdKind::Subject))
            .filter(|sub| level.contains(self.hash(IdKind::Subject, sub)));
        if sid.is_none() && jti.is_none() && sub.is_none() {
            return RevocationStatus::Active;
        }
        #[cfg(test)]
        self.inner.locked_checks.fetch_add(1, Ordering::Relaxed);
        let entries = self.read();
        let live = |kind: IdKind, id: Option<&str>| {
            id.and_then(|id| entries.maps[kind as usize].get(id))
                .filter(|slot| slot.until > now)
        };
        let session = live(IdKind::Session, sid);
        let revoked = session.is_some_and(|slot| slot.before == 0)
            || live(IdKind::Token, jti).is_some()
            // Unknown authentication time: assume the worst.
            || live(IdKind::Subject, sub)
                .is_some_and(|slot| token.authenticated_at.is_none_or(|at| at < slot.before));
        if revoked {
            return RevocationStatus::Revoked;
        }
        // A cut-off: every token of the session issued at or before it but
        // the one that carries the new claims (unknown issue time: assume
        // the worst).
        let replaced_at = live(IdKind::Replaced, jti).map(|slot| slot.before);
        if let (Some(slot), Some(sid)) = (session, sid) {
            let kept = entries.cutoff_keeps.get(sid).map(|keep| &**keep);
            if token.issued_at.is_none_or(|iat| iat <= slot.before) && token.jti != kept {
                return RevocationStatus::Superseded { replaced_at };
            }
        }
        match replaced_at {
            Some(used_at) => RevocationStatus::Replaced { used_at },
            None => RevocationStatus::Active,
        }
    }

    /// Drops up to `budget` entries whose `until` is not after `now`, in
    /// expiry order; returns how many it dropped.
    fn expire(&self, entries: &mut Entries, now: i64, budget: usize) -> usize {
        let mut dropped = 0;
        while dropped < budget && entries.due.first().is_some_and(|due| due.until <= now) {
            let Some(due) = entries.due.pop_first() else {
                break;
            };
            entries.maps[due.kind as usize].remove(&due.key);
            if due.kind == IdKind::Session {
                entries.cutoff_keeps.remove(&due.key);
            }
            if due.kind == IdKind::Replaced
                && let Some(subject) = entries.mark_subjects.remove(&due.key)
                && let Some(count) = entries.marks_per_subject.get_mut(&subject)
            {
                *count -= 1;
                if *count == 0 {
                    entries.marks_per_subject.remove(&subject);
                }
            }
            // Counted out after the entry is gone from the map.
            let hash = self.hash(due.kind, &due.key);
            self.active_level().remove(hash);
            self.inner.live[due.kind as usize].fetch_sub(1, Ordering::AcqRel);
            if entries.in_next(&due)
                && let Some(next) = self.next_level()
            {
                next.remove(hash);
            }
            dropped += 1;
            #[cfg(test)]
            self.inner.work.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }

    /// Starts growing the filter when the active level holds more entries
    /// than it is sized for.
    fn start_growing(&self, entries: &mut Entries) {
        if entries.growing.is_none() && self.inner.filter.start_growing(entries.len()) {
            entries.growing = Some(None);
        }
    }

    /// Counts a bounded batch of entries into the level being grown into;
    /// once it counts them all, readers switch to it.
    fn grow_step(&self, entries: &mut Entries) {
        let Some(upto) = &entries.growing else {
            return;
        };
        let Some(next) = self.next_level() else {
            entries.growing = None;
            return;
        };
        let from = match upto {
            Some(due) => Bound::Excluded(due.clone()),
            None => Bound::Unbounded,
        };
        let mut last = None;
        let mut done = true;
        for (counted, due) in entries.due.range((from, Bound::Unbounded)).enumerate() {
            if counted == STEP {
                done = false;
                break;
            }
            next.add(self.hash(due.kind, &due.key));
            last = Some(due);
            #[cfg(test)]
            self.inner.work.fetch_add(1, Ordering::Relaxed);
        }
        if done {
            entries.growing = None;
            self.inner.filter.switch();
        } else if let Some(last) = last {
            entries.growing = Some(Some(last.clone()));
        }
    }

    fn active_level(&self) -> &Level {
        self.inner.filter.active()
    }

    fn next_level(&self) -> Option<&Level> {
        self.inner.filter.next()
    }

    /// A seeded hash of the id: a filter hit only costs a map look-up (whose
    /// hasher is keyed), so speed matters more than strength here.
    fn hash(&self, kind: IdKind, key: &str) -> u64 {
        const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes = key.as_bytes();
        let mut hash =
            self.inner.seed ^ (kind.filtered_as() + 1).wrapping_mul(MUL) ^ bytes.len() as u64;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(MUL);
            hash ^= hash >> 29;
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(MUL);
        // MurmurHash3's finaliser: every output bit depends on every input bit.
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        hash ^ (hash >> 33)
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

    fn forgets_on_restart(&self) -> bool {
        true
    }

    fn keeps_replacements(&self) -> bool {
        true
    }

    fn keeps_cutoffs(&self) -> bool {
        true
    }

    fn has_room_for_mark(&self, subject: Option<&str>, now: i64) -> bool {
        self.mark_room(subject, now)
    }

    fn sessions(&self) -> Option<&dyn SessionRegistry> {
        Some(self)
    }

    fn feed(&self) -> Option<&dyn RevocationFeed> {
        Some(self)
    }
}

impl RevocationFeed for MemoryStore {
    fn subscribe(&self, listener: FeedListener) {
        self.inner.feed.subscribe(listener);
    }
}

/// The registry in memory: answered at once, bounded by the store's
/// capacity in rows (a row is about 150 bytes plus its `sid`, subject, user
/// agent and address: 2 KiB at most).
impl SessionRegistry for MemoryStore {
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>> {
        Box::pin(std::future::ready(Ok(self
            .inner
            .registry
            .list(subject, now))))
    }

    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = self.inner.registry.insert(row, &remove, max_rows, now);
        Box::pin(std::future::ready(result))
    }

    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.registry.touch(subject, sid, last_seen, expires);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.registry.remove(subject, &sids);
        Box::pin(std::future::ready(Ok(())))
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
            issued_at: Some(at),
        }
    }

    fn revoke(store: &MemoryStore, target: RevocationTarget, until: i64, now: i64) {
        store
            .insert(
                &Revocation {
                    target,
                    until,
                    reason: None,
                },
                now,
            )
            .unwrap();
    }

    #[test]
    fn sessions_tokens_and_subjects() {
        let store = MemoryStore::new();
        assert_eq!(
            store.status(&ids("s1", "j1", "alice", 10), 100),
            RevocationStatus::Active
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
        assert_eq!(
            store.status(&ids("s1", "x", "x", 10), 100),
            RevocationStatus::Revoked
        );
        assert_eq!(
            store.status(&ids("x", "j2", "x", 10), 100),
            RevocationStatus::Revoked
        );
        assert_eq!(
            store.status(&ids("x", "x", "bob", 49), 100),
            RevocationStatus::Revoked
        );
        assert_eq!(
            store.status(&ids("x", "x", "bob", 50), 100),
            RevocationStatus::Active,
            "a login from that second on is not revoked"
        );
        let unknown_time = TokenIds {
            authenticated_at: None,
            ..ids("x", "x", "bob", 0)
        };
        assert_eq!(store.status(&unknown_time, 100), RevocationStatus::Revoked);
        assert_eq!(
            store.status(&ids("s2", "j1", "alice", 10), 100),
            RevocationStatus::Active
        );
        // Expired entries no longer count, and are purged.
        assert_eq!(
            store.status(&ids("s1", "x", "x", 10), 1000),
            RevocationStatus::Active
        );
        assert_eq!(store.len(), 3);
        store.purge(1000);
        assert_eq!(store.len(), 0);
        assert!(
            store
                .active_level()
                .counters
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == 0),
            "counted out of the filter"
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
                reason: None,
            },
            100,
        );
        assert_eq!(full.unwrap_err().kind(), StoreErrorKind::Full);
        // Once entries expire there is room again.
        revoke(&store, RevocationTarget::Session("c".into()), 400, 300);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn live_entries_are_listed_in_bounded_batches() {
        let store = MemoryStore::new();
        for i in 0..10 {
            store
                .insert(&session(&format!("s{i}"), 200 + i), 100)
                .unwrap();
        }
        revoke(
            &store,
            RevocationTarget::Subject {
                subject: "bob".into(),
                before: 42,
            },
            300,
            100,
        );
        let mut listed = Vec::new();
        let mut cursor = None;
        let mut batches = 0;
        loop {
            // At 203 the first four sessions are over (an entry ends at its `until`).
            let (batch, next) = store.live_batch(cursor.as_ref(), 203, 3);
            assert!(batch.len() <= 3);
            listed.extend(batch);
            batches += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(batches, 3);
        assert_eq!(listed.len(), 7);
        assert_eq!(listed[0], session("s4", 204));
        assert_eq!(
            listed.last().unwrap(),
            &Revocation {
                target: RevocationTarget::Subject {
                    subject: "bob".into(),
                    before: 42
                },
                until: 300,
                reason: None,
            }
        );
    }

    #[test]
    fn a_session_cut_off_spares_its_kept_token_and_later_ones_and_yields_to_a_logout() {
        let store = MemoryStore::new();
        let cutoff = |before: i64, keep: &str| Revocation {
            target: RevocationTarget::Superseded {
                sid: "s".into(),
                before,
                keep: keep.into(),
            },
            until: 1_000,
            reason: None,
        };
        let token = |jti: &'static str, iat: i64| TokenIds {
            issued_at: Some(iat),
            ..ids("s", jti, "alice", 0)
        };
        store.insert(&cutoff(100, "new"), 50).unwrap();
        assert_eq!(
            store.status(&token("old", 90), 60),
            RevocationStatus::Superseded { replaced_at: None }
        );
        assert_eq!(
            store.status(&token("sibling", 100), 60),
            RevocationStatus::Superseded { replaced_at: None }
        );
        assert_eq!(
            store.status(&token("new", 100), 60),
            RevocationStatus::Active
        );
        assert_eq!(
            store.status(&token("later", 101), 60),
            RevocationStatus::Active
        );
        // An earlier cut-off arriving late changes nothing; a later one wins.
        store.insert(&cutoff(80, "older"), 50).unwrap();
        assert_eq!(
            store.status(&token("new", 100), 60),
            RevocationStatus::Active
        );
        store.insert(&cutoff(120, "newest"), 50).unwrap();
        assert_eq!(
            store.status(&token("new", 100), 60),
            RevocationStatus::Superseded { replaced_at: None }
        );
        assert_eq!(
            store.status(&token("newest", 120), 60),
            RevocationStatus::Active
        );
        // A logout ends them all, and no later cut-off revives any.
        revoke(&store, RevocationTarget::Session("s".into()), 1_000, 50);
        store.insert(&cutoff(130, "after"), 50).unwrap();
        assert_eq!(
            store.status(&token("after", 130), 60),
            RevocationStatus::Revoked
        );
        assert_eq!(
            store.status(&token("later", 140), 60),
            RevocationStatus::Revoked
        );
    }

    #[test]
    fn repeated_revocation_keeps_the_longest() {
        let store = MemoryStore::new();
        revoke(&store, RevocationTarget::Session("a".into()), 500, 100);
        revoke(&store, RevocationTarget::Session("a".into()), 200, 100);
        assert_eq!(
            store.status(&ids("a", "x", "x", 0), 300),
            RevocationStatus::Revoked
        );
    }

    fn session(id: &str, until: i64) -> Revocation {
        Revocation {
            target: RevocationTarget::Session(id.into()),
            until,
            reason: None,
        }
    }

    fn sid(id: &str) -> TokenIds<'_> {
        TokenIds {
            sid: Some(id),
            jti: None,
            sub: None,
            authenticated_at: None,
            issued_at: None,
        }
    }

    #[test]
    fn a_full_store_takes_a_logout_exactly_when_an_entry_expires() {
        let store = MemoryStore::with_capacity(2);
        store.insert(&session("a", 200), 100).unwrap();
        store.insert(&session("b", 300), 100).unwrap();
        let full = store.insert(&session("c", 400), 199).unwrap_err();
        assert_eq!(full.kind(), StoreErrorKind::Full);
        assert_eq!(store.status(&sid("c"), 199), RevocationStatus::Active);
        assert_eq!(store.status(&sid("a"), 199), RevocationStatus::Revoked);
        // At a's `until` it is over, and its place is free at that second.
        assert_eq!(store.status(&sid("a"), 200), RevocationStatus::Active);
        store.insert(&session("c", 400), 200).unwrap();
        assert_eq!(store.status(&sid("c"), 200), RevocationStatus::Revoked);
        assert_eq!(store.len(), 2);
        // Revoking a stored id again needs no room.
        store.insert(&session("b", 500), 200).unwrap();
        assert_eq!(store.status(&sid("b"), 450), RevocationStatus::Revoked);
    }

    #[test]
    fn expired_entries_are_reclaimed_by_the_next_inserts_without_a_purge() {
        let store = MemoryStore::new();
        for i in 0..100 {
            store
                .insert(&session(&format!("old{i}"), 110), 100)
                .unwrap();
        }
        // Ten seconds later, not a minute: each insert reclaims expired entries.
        for i in 0..10 {
            store
                .insert(&session(&format!("new{i}"), 500), 110)
                .unwrap();
        }
        assert_eq!(store.len(), 10);
    }

    #[test]
    fn a_full_store_refuses_without_touching_its_entries() {
        const CAPACITY: usize = 10_000;
        let store = MemoryStore::with_capacity(CAPACITY);
        for i in 0..CAPACITY {
            store.insert(&session(&format!("s{i}"), 1000), 100).unwrap();
        }
        let work = || store.inner.work.load(Ordering::Relaxed);
        let before = work();
        for i in 0..100 {
            let refused = store.insert(&session(&format!("x{i}"), 1000), 100);
            assert_eq!(refused.unwrap_err().kind(), StoreErrorKind::Full);
        }
        assert_eq!(work(), before, "a refusal visits no entry");
        assert_eq!(store.len(), CAPACITY);
    }

    #[test]
    fn a_million_revocations_keep_the_check_lock_free() {
        const ENTRIES: usize = 1_000_000;
        let store = MemoryStore::new();
        for i in 0..ENTRIES {
            store
                .insert(&session(&format!("revoked-{i}"), 1000), 100)
                .unwrap();
        }
        assert_eq!(
            store.status(&sid("revoked-123456"), 100),
            RevocationStatus::Revoked
        );
        let locked = || store.inner.locked_checks.load(Ordering::Relaxed);
        let before = locked();
        for i in 0..10_000 {
            let id = format!("live-session-{i}");
            assert_eq!(store.status(&sid(&id), 100), RevocationStatus::Active);
        }
        let hits = locked() - before;
        assert!(hits < 300, "{hits} of 10 000 checks took the lock");
        // Inserting a million entries did O(1) work each.
        let work = store.inner.work.load(Ordering::Relaxed);
        assert!(work < 4 * ENTRIES, "{work} entry visits");
    }

    #[test]
    fn the_filter_grows_without_missing_an_entry_and_counts_every_expiry_out() {
        let store = MemoryStore::with_capacity(100_000);
        let mut model = HashMap::new();
        // Entries expiring at every second, some revoked again for longer,
        // while the filter grows through its levels.
        for i in 0..50_000i64 {
            let now = 100 + i / 100;
            let (id, until) = if i % 7 == 0 {
                (format!("s{}", i / 2), now + 600)
            } else {
                (format!("s{i}"), now + 1 + i % 300)
            };
            store.insert(&session(&id, until), now).unwrap();
            let slot = model.entry(id).or_insert(until);
            *slot = (*slot).max(until);
            if i % 997 == 0 {
                for (id, until) in model.iter().step_by(37) {
                    let expect = if *until > now {
                        RevocationStatus::Revoked
                    } else {
                        RevocationStatus::Active
                    };
                    assert_eq!(store.status(&sid(id), now), expect, "{id} at {now}");
                }
            }
        }
        assert!(store.inner.filter.grown(), "the filter grew");
        store.purge(i64::MAX);
        assert!(store.is_empty());
        assert!(
            store
                .active_level()
                .counters
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == 0),
            "every entry counted out"
        );
    }
}
