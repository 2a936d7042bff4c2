//! The store: revocations answered from the local replica, written through
//! to Redis and announced to the other instances.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::topology::{self, Commands};
use super::{
    RedisCounters, RedisStats, RedisStoreBuilder, Shared, TARGET, TaskGuard, bounded, clamp_ttl,
    seconds_until,
};
use crate::BoxFuture;
use crate::revoke::{
    EndReason, Lookup, Revocation, RevocationStore, RevocationTarget, SharedFlight, StoreError,
    StoreErrorKind, TokenIds,
};
use crate::revoke::{MAX_REVOCATION_SECS, replica_lookup};

/// A [`RevocationStore`] and [`SharedFlight`] shared by every instance
/// through Redis; see the [module documentation](super) for how it
/// synchronises, how stale it can be and what happens when Redis fails.
///
/// Clones share one replica, one connection manager and one background task,
/// which stops when the last clone is dropped.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl RedisStore {
    pub(super) fn new(shared: Arc<Shared>, task: Arc<TaskGuard>) -> Self {
        Self {
            shared,
            _task: task,
        }
    }

    /// A builder for a store at `url`: one node (`redis://127.0.0.1:6379/`),
    /// a Redis Cluster (`redis-cluster://10.0.0.1:7000,10.0.0.2:7000`) or
    /// the master named by Sentinels
    /// (`redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url.into())
    }

    /// Whether the replica is synchronised with Redis right now: subscribed,
    /// loaded, and holding every live revocation (not full).
    pub fn is_synchronised(&self) -> bool {
        self.shared.trusted()
    }

    /// Live revocations in the local replica.
    pub fn len(&self) -> usize {
        self.shared.replica.len()
    }

    /// Whether the local replica holds no revocation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What this store (all its clones) has asked of Redis so far.
    pub fn stats(&self) -> RedisStats {
        self.shared.stats.snapshot()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .field("synchronised", &self.is_synchronised())
            .field("failure_mode", &self.shared.failure_mode)
            .field("replica", &self.shared.replica)
            .finish()
    }
}

impl RevocationStore for RedisStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        let shared = &self.shared;
        replica_lookup(
            &shared.replica,
            shared.trusted(),
            shared.failure_mode,
            false,
            token,
            now,
        )
    }

    fn check_fresh(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        // `FailureMode::Open` serves requests from a stale replica, but never
        // renews on its word.
        let shared = &self.shared;
        replica_lookup(
            &shared.replica,
            shared.trusted(),
            shared.failure_mode,
            true,
            token,
            now,
        )
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let shared = &self.shared;
            // This instance honours it at once, whatever happens to Redis; a
            // full replica refuses it (logged), and nothing is published.
            shared.replica.insert(&revocation, now)?;
            let entry = Entry::from(&revocation);
            // The other instances skip ids this long as garbage: say it
            // did not reach them, rather than answer a logout honoured by
            // one instance only.
            if entry.id.len() > MAX_ID_BYTES || entry.keep.len() > MAX_KEEP_BYTES {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    Some("the id is too long to share through Redis".into()),
                ));
            }
            let Some(ttl) = seconds_until(revocation.until, now) else {
                return Ok(());
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            // A reuse mark keeps the cluster's first use: only the first
            // instance's is stored (every replica keeps the earliest it hears).
            let first_only = matches!(revocation.target, RevocationTarget::Replaced { .. });
            entry.write(&mut pipe, &shared.prefix, &shared.channel, ttl, first_only);
            let key = entry.full_key(&shared.prefix);
            let mut result = shared.query_on_key::<()>(&pipe, &key).await;
            if result.is_ok()
                && !first_only
                && let Some((replicas, wait)) = shared.wait
            {
                result = shared.wait_for_replicas(&entry, replicas, wait).await;
            }
            if let Err(error) = &result {
                // Written back with the whole replica once Redis answers again.
                shared.unshared.store(true, Ordering::Release);
                tracing::warn!(target: TARGET, %error, "could not share a revocation through Redis; only this instance knows it until Redis is back");
            }
            result
        })
    }

    fn shared_flight(&self) -> Option<&dyn SharedFlight> {
        Some(self)
    }

    fn keeps_replacements(&self) -> bool {
        true
    }

    fn keeps_cutoffs(&self) -> bool {
        true
    }

    fn has_room_for_mark(&self, subject: Option<&str>, now: i64) -> bool {
        self.shared.replica.has_room_for_mark(subject, now)
    }

    fn sessions(&self) -> Option<&dyn crate::store::SessionRegistry> {
        Some(self)
    }

    fn replays(&self) -> Option<&dyn crate::store::ReplayCache> {
        Some(self)
    }

    fn feed(&self) -> Option<&dyn crate::store::RevocationFeed> {
        // Every revocation reaches the in-memory part (the replica).
        Some(&self.shared.replica)
    }
}

impl Shared {
    /// `WAIT` on the node that took `entry`: an error unless `replicas`
    /// replicas acknowledged it within `wait`.
    async fn wait_for_replicas(
        &self,
        entry: &Entry<'_>,
        replicas: u32,
        wait: std::time::Duration,
    ) -> Result<(), StoreError> {
        let command = topology::wait_command(replicas, wait);
        let key = entry.full_key(&self.prefix);
        let mut connection = self
            .waits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| self.commands());
        RedisCounters::add(&self.stats.round_trips, 1);
        let reply = bounded(self.timeout, async {
            match &mut connection {
                Commands::Cluster(cluster) => {
                    cluster
                        .route_command(command, topology::route_of(&key))
                        .await
                }
                single => command.query_async(single).await,
            }
        })
        .await?;
        match reply {
            redis::Value::Int(acknowledged) if acknowledged >= i64::from(replicas) => Ok(()),
            _ => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                Some(
                    format!("fewer than {replicas} replicas acknowledged the revocation in time")
                        .into(),
                ),
            )),
        }
    }
}

/// The longest id (`sid`, `jti`, `sub`) read back from Redis; a longer one
/// is garbage and skipped.
pub(super) const MAX_ID_BYTES: usize = 16 * 1024;

/// The longest `jti` a session's cut-off keeps (it is part of the stored
/// value, whose length every load reads back bounded): a longer one is
/// refused before anything is written.
pub(super) const MAX_KEEP_BYTES: usize = 1024;

/// Writes a subject revocation `until|before`, keeping the later `until`
/// (and the longer time to live) and the later `before` of what is there:
/// one key, so it stays in one slot of a Redis Cluster. A value that is not
/// two integers is replaced.
const LATEST_CUTOFF: &str = r"
local current = redis.call('GET', KEYS[1])
local until_, before, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if current then
  local cu, cb = string.match(current, '^(%-?%d+)|(%-?%d+)$')
  if cu and cb then
    if tonumber(cu) > until_ then until_ = tonumber(cu) end
    if tonumber(cb) > before then before = tonumber(cb) end
    local left = redis.call('TTL', KEYS[1])
    if left > ttl then ttl = left end
  end
end
redis.call('SET', KEYS[1], string.format('%d|%d', until_, before), 'EX', ttl)
return 1
";

/// Writes a session's cut-off `until|before|keep`, keeping the later
/// `until` (and the longer time to live) and the later `before` with its
/// `keep` (on a tie, the one written now): one key, one slot.
const LATEST_SESSION_CUTOFF: &str = r"
local current = redis.call('GET', KEYS[1])
local until_, before, keep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if current then
  local cu, cb, ck = string.match(current, '^(%-?%d+)|(%-?%d+)|(.*)$')
  if cu and cb then
    if tonumber(cu) > until_ then until_ = tonumber(cu) end
    if tonumber(cb) > before then before = tonumber(cb); keep = ck end
    local left = redis.call('TTL', KEYS[1])
    if left > ttl then ttl = left end
  end
end
redis.call('SET', KEYS[1], string.format('%d|%d|', until_, before) .. keep, 'EX', ttl)
return 1
";

/// One revocation as stored in Redis: `{kind}:{id}` = `{until}|{before}`, and
/// announced as `{kind}|{until}|{before}|{id}`; the kind is `s` (session),
/// `j` (token), `u` (subject, `before` its `before`), `r` (a reuse mark,
/// `before` its `used_at`) or `c` (a session's cut-off: stored as
/// `{until}|{before}|{keep}`, announced with the id `{keep length}:{keep}{sid}`).
pub(super) struct Entry<'a> {
    kind: char,
    id: &'a str,
    until: i64,
    before: i64,
    /// The token a cut-off keeps; empty for the other kinds.
    keep: &'a str,
}

impl<'a> Entry<'a> {
    pub(super) fn from(revocation: &'a Revocation) -> Self {
        let keep = match &revocation.target {
            RevocationTarget::Superseded { keep, .. } => keep.as_str(),
            _ => "",
        };
        let reason = EndReason::code(revocation.reason);
        let (kind, id, before) = match &revocation.target {
            RevocationTarget::Session(sid) => ('s', sid.as_str(), reason),
            RevocationTarget::Superseded { sid, before, .. } => ('c', sid.as_str(), *before),
            RevocationTarget::Token(jti) => ('j', jti.as_str(), reason),
            RevocationTarget::Subject { subject, before } => ('u', subject.as_str(), *before),
            RevocationTarget::Replaced { jti, used_at, .. } => ('r', jti.as_str(), *used_at),
        };
        Self {
            kind,
            id,
            until: revocation.until,
            before,
            keep,
        }
    }

    fn key(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }

    /// The key in Redis, under `prefix`.
    pub(super) fn full_key(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.key())
    }

    fn value(&self) -> String {
        if self.kind == 'c' {
            return format!("{}|{}|{}", self.until, self.before, self.keep);
        }
        format!("{}|{}", self.until, self.before)
    }

    fn message(&self) -> String {
        if self.kind == 'c' {
            return format!(
                "{}|{}|{}|{}:{}{}",
                self.kind,
                self.until,
                self.before,
                self.keep.len(),
                self.keep,
                self.id
            );
        }
        format!("{}|{}|{}|{}", self.kind, self.until, self.before, self.id)
    }

    /// Adds the entry's `SET` (living `ttl` seconds; only if absent with
    /// `only_new`) and its announcement to `pipe`, their replies ignored.
    pub(super) fn write(
        &self,
        pipe: &mut redis::Pipeline,
        prefix: &str,
        channel: &str,
        ttl: i64,
        only_new: bool,
    ) {
        if self.kind == 'c' {
            pipe.cmd("EVAL")
                .arg(LATEST_SESSION_CUTOFF)
                .arg(1)
                .arg(self.full_key(prefix))
                .arg(self.until)
                .arg(self.before)
                .arg(self.keep)
                .arg(clamp_ttl(ttl))
                .ignore();
        } else if self.kind == 'u' {
            // "Log out everywhere": the latest cut-off wins, whatever the
            // order the instances' writes (or a write-back) arrive in, as
            // every replica keeps it. A plain `SET` would let an instance
            // with a clock behind leave the earlier `before` in Redis, and
            // an instance loaded afterwards would accept sessions started
            // between the two.
            pipe.cmd("EVAL")
                .arg(LATEST_CUTOFF)
                .arg(1)
                .arg(self.full_key(prefix))
                .arg(self.until)
                .arg(self.before)
                .arg(clamp_ttl(ttl))
                .ignore();
        } else {
            let set = pipe.cmd("SET").arg(self.full_key(prefix)).arg(self.value());
            if only_new {
                set.arg("NX");
            }
            set.arg("EX").arg(clamp_ttl(ttl)).ignore();
        }
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(self.message())
            .ignore();
    }

    pub(super) fn parse_message(message: &'a str) -> Option<Self> {
        let mut parts = message.splitn(4, '|');
        let kind = parts.next()?.chars().next()?;
        let until = parts.next()?.parse().ok()?;
        let before = parts.next()?.parse().ok()?;
        let mut id = parts.next()?;
        let mut keep = "";
        if kind == 'c' {
            let (length, rest) = id.split_once(':')?;
            let length: usize = length.parse().ok()?;
            if !rest.is_char_boundary(length) {
                return None;
            }
            (keep, id) = rest.split_at(length);
        }
        Some(Self {
            kind,
            id,
            until,
            before,
            keep,
        })
    }

    pub(super) fn parse_stored(key: &'a str, value: &'a str) -> Option<Self> {
        let (kind, id) = key.split_once(':')?;
        let kind = kind.chars().next()?;
        let mut parts = value.splitn(3, '|');
        let until = parts.next()?.parse().ok()?;
        let before = parts.next()?.parse().ok()?;
        let keep = match (kind, parts.next()) {
            ('c', Some(keep)) => keep,
            ('c', None) => return None,
            (_, None) => "",
            (_, Some(_)) => return None,
        };
        Some(Self {
            kind,
            id,
            until,
            before,
            keep,
        })
    }

    /// The revocation this entry holds, read back at `now`: its `until`
    /// bounded by the longest a revocation can need (an entry asking for
    /// more was planted, or written by a clock far ahead), its id by
    /// [`MAX_ID_BYTES`]; `None` for anything else.
    pub(super) fn revocation_at(&self, now: i64) -> Option<Revocation> {
        let mut revocation = self.revocation()?;
        if self.id.len() > MAX_ID_BYTES || self.keep.len() > MAX_KEEP_BYTES {
            return None;
        }
        revocation.until = revocation
            .until
            .min(now.saturating_add(MAX_REVOCATION_SECS));
        Some(revocation)
    }

    pub(super) fn revocation(&self) -> Option<Revocation> {
        let target = match self.kind {
            's' => RevocationTarget::Session(self.id.to_owned()),
            'j' => RevocationTarget::Token(self.id.to_owned()),
            'u' => RevocationTarget::Subject {
                subject: self.id.to_owned(),
                before: self.before,
            },
            // A cut-off keeps one token, and is never `before` 0 (that is
            // the whole session, written as `s`).
            'c' if self.before != 0 && !self.keep.is_empty() => RevocationTarget::Superseded {
                sid: self.id.to_owned(),
                before: self.before,
                keep: self.keep.to_owned(),
            },
            // Redis keeps no subject for a mark: one read back counts
            // against the replica's budget of marks only.
            'r' => RevocationTarget::Replaced {
                jti: self.id.to_owned(),
                used_at: self.before,
                subject: None,
            },
            _ => return None,
        };
        // A session's (or a lone token's) `before` carries why it ended.
        let reason = match self.kind {
            's' | 'j' => EndReason::from_code(self.before),
            _ => None,
        };
        Some(Revocation {
            target,
            until: self.until,
            reason,
        })
    }
}

/// Reads what a party with write access to Redis may have planted, as the
/// sync task reads it, and checks every bound it must keep (fuzzing only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_entries(key: &str, value: &str, message: &str) {
    const NOW: i64 = 1_800_000_000;
    for entry in [
        Entry::parse_stored(key, value),
        Entry::parse_message(message),
    ]
    .into_iter()
    .flatten()
    {
        let Some(revocation) = entry.revocation_at(NOW) else {
            continue;
        };
        assert!(revocation.until <= NOW + MAX_REVOCATION_SECS);
        assert!(entry.id.len() <= MAX_ID_BYTES);
        // What the replica writes back is an `EX` Redis accepts.
        if let Some(ttl) = seconds_until(revocation.until, NOW) {
            assert!((1..=MAX_REVOCATION_SECS).contains(&clamp_ttl(ttl)));
            let mut pipe = redis::pipe();
            Entry::from(&revocation).write(&mut pipe, "tsj:", "tsj:revocations", ttl, true);
        }
        let again = Entry::from(&revocation).message();
        let parsed = Entry::parse_message(&again).and_then(|e| e.revocation());
        assert_eq!(
            parsed.as_ref(),
            Some(&revocation),
            "announcements round-trip"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cut_off_round_trips_whatever_its_ids_hold() {
        let revocation = Revocation {
            target: RevocationTarget::Superseded {
                sid: "s|1:2".into(),
                before: 7,
                keep: "k|é:3".into(),
            },
            until: 99,
            reason: None,
        };
        let entry = Entry::from(&revocation);
        let message = entry.message();
        let parsed = Entry::parse_message(&message).and_then(|e| e.revocation());
        assert_eq!(parsed.as_ref(), Some(&revocation));
        let (key, value) = (entry.key(), entry.value());
        let stored = Entry::parse_stored(&key, &value).and_then(|e| e.revocation());
        assert_eq!(stored.as_ref(), Some(&revocation));
        // A cut-off keeping nothing, or at `before` 0 (the whole session), is garbage.
        assert!(
            Entry::parse_stored("c:s", "99|7|")
                .and_then(|e| e.revocation())
                .is_none()
        );
        assert!(
            Entry::parse_stored("c:s", "99|0|k")
                .and_then(|e| e.revocation())
                .is_none()
        );
        assert!(Entry::parse_message("c|99|7|9:k").is_none());
        assert!(Entry::parse_stored("s:s", "99|0|extra").is_none());
    }

    #[test]
    fn entries_round_trip() {
        let revocation = Revocation {
            target: RevocationTarget::Subject {
                subject: "a|b:c".into(),
                before: 7,
            },
            until: 99,
            reason: None,
        };
        let entry = Entry::from(&revocation);
        let message = entry.message();
        assert_eq!(
            Entry::parse_message(&message)
                .unwrap()
                .revocation()
                .unwrap(),
            revocation
        );
        let key = entry.key();
        assert_eq!(
            Entry::parse_stored(&key, &entry.value())
                .unwrap()
                .revocation()
                .unwrap(),
            revocation
        );
        assert!(
            Entry::parse_message("x|1|2|id")
                .unwrap()
                .revocation()
                .is_none()
        );
        assert!(Entry::parse_message("s|notanumber|2|id").is_none());
    }
}
