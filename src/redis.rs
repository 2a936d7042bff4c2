//! Revocations shared by a cluster through Redis (feature `redis`).
//!
//! Every instance keeps a full local replica of the live revocations and
//! answers checks from it, so the per-request cost is the in-memory store's
//! and never a network round trip. Redis is the shared source:
//!
//! * a revocation is written as `SET {prefix}{kind}:{id} ... EX {until - now}`
//!   (so Redis forgets it with the session cap; `now` is the layer's clock) and
//!   announced with `PUBLISH` on the
//!   channel `{prefix}revocations`;
//! * each instance subscribes to that channel, then loads every live entry
//!   with `SCAN`/`MGET`, then applies announcements as they arrive, and reloads
//!   every `resync_interval` (30 s by default) as a safety net.
//!
//! **Staleness.** An instance sees a revocation made elsewhere as soon as
//! Redis delivers the announcement: one network hop, typically well under a
//! millisecond on a LAN. The replica is only trusted while the subscription
//! is up. If it drops (Redis down, connection reset), the instance knows at
//! once and, with [`FailureMode::Closed`] (the default), refuses every
//! authenticated request with 503 (`StoreUnavailable`) until it has
//! resubscribed and reloaded; with [`FailureMode::Open`] it keeps answering
//! from its replica, which may then miss revocations made elsewhere in the
//! meantime. A silent partition (no reset) is detected by the next reload,
//! so the worst case is `resync_interval + timeout`. A replica that is full
//! (it would have to drop a revocation) is not trusted either: the instance
//! then fails the same way until a reload finds room for every live entry.
//! Every Redis call is bounded
//! by `timeout` (2 s by default): nothing waits forever. State changes are
//! logged with `tracing` (target `tower_sliding_jwt::redis`), without tokens.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_core::Stream;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock::{Clock, SystemClock};
use crate::revoke::{
    BoxFuture, Lookup, MemoryStore, Revocation, RevocationStore, RevocationTarget, StoreError,
    StoreErrorKind, TokenIds,
};

const TARGET: &str = "tower_sliding_jwt::redis";

/// What an instance does while it cannot trust its replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse authenticated requests with 503 until synchronised again.
    #[default]
    Closed,
    /// Keep answering from the local replica (may miss revocations made on
    /// other instances while Redis was unreachable).
    Open,
}

/// Configures and connects a [`RedisStore`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    failure_mode: FailureMode,
    timeout: Duration,
    resync_interval: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("failure_mode", &self.failure_mode)
            .field("timeout", &self.timeout)
            .field("resync_interval", &self.resync_interval)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Prefix of every key and of the channel (default `tsj:`); lets several
    /// applications share one Redis.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do while Redis is unreachable (default [`FailureMode::Closed`]).
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Bound on every Redis call, including the initial connection (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the replica is reloaded in full (default 30 s).
    pub fn with_resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Live revocations the replica may hold (default one million). A
    /// replica that cannot take an entry makes the instance unsynchronised
    /// (see [`FailureMode`]) until a reload finds room for every entry.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock that decides which entries read from Redis are still live
    /// (default [`SystemClock`]). Give it the layer's
    /// clock: the store and the layer must agree on "now".
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Connects, subscribes, loads the live revocations and starts the
    /// background synchronisation task (on the current tokio runtime).
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] for a bad URL or a refused connection,
    /// [`StoreErrorKind::Timeout`] when Redis does not answer within the timeout.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(self.url.as_str()).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let commands = bounded(
            self.timeout,
            client.get_connection_manager_with_config(config),
        )
        .await?;
        let shared = Arc::new(Shared {
            replica: MemoryStore::with_capacity(self.capacity),
            live: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            clock: self.clock,
            synced: tokio::sync::Notify::new(),
            failure_mode: self.failure_mode,
            channel: format!("{}revocations", self.prefix),
            prefix: self.prefix,
            timeout: self.timeout,
            resync_interval: self.resync_interval.max(Duration::from_millis(100)),
            commands,
        });
        let task = tokio::spawn(sync_loop(shared.clone(), client));
        let guard = Arc::new(TaskGuard(task.abort_handle()));
        if tokio::time::timeout(self.timeout, shared.synced.notified())
            .await
            .is_err()
        {
            return Err(StoreErrorKind::Timeout.into());
        }
        Ok(RedisStore {
            shared,
            _task: guard,
        })
    }
}

/// A [`RevocationStore`] shared by every instance through Redis; see the
/// [module documentation](self) for how it synchronises and how stale it can be.
///
/// Clones share one replica and one background task, which stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl RedisStore {
    /// A builder for a store at `url` (e.g. `redis://127.0.0.1:6379/`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tsj:".to_owned(),
            failure_mode: FailureMode::Closed,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(30),
            capacity: 1_000_000,
            clock: Arc::new(SystemClock),
        }
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
        if !shared.trusted() && shared.failure_mode == FailureMode::Closed {
            return Lookup::Ready(Err(StoreErrorKind::Unavailable.into()));
        }
        Lookup::Ready(Ok(shared.replica.status(token, now)))
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
            // `now` is the layer's clock: Redis keeps the entry as long as
            // that clock says it is live, whatever Redis's own clock says.
            let Some(ttl) = revocation.until.checked_sub(now).filter(|ttl| *ttl > 0) else {
                return Ok(());
            };
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SET")
                .arg(format!("{}{}", shared.prefix, entry.key()))
                .arg(entry.value())
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("PUBLISH")
                .arg(&shared.channel)
                .arg(entry.message())
                .ignore();
            let mut connection = shared.commands.clone();
            let result = bounded(shared.timeout, pipe.query_async::<()>(&mut connection)).await;
            if let Err(error) = &result {
                tracing::warn!(target: TARGET, %error, "could not share a revocation through Redis; only this instance knows it");
            }
            result
        })
    }
}

struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    replica: MemoryStore,
    /// Subscribed and loaded.
    live: AtomicBool,
    /// The replica refused an entry since the last complete reload.
    overflow: AtomicBool,
    clock: Arc<dyn Clock>,
    synced: tokio::sync::Notify,
    failure_mode: FailureMode,
    prefix: String,
    channel: String,
    timeout: Duration,
    resync_interval: Duration,
    commands: ConnectionManager,
}

/// One revocation as stored in Redis: `{kind}:{id}` = `{until}|{before}`, and
/// announced as `{kind}|{until}|{before}|{id}`.
struct Entry<'a> {
    kind: char,
    id: &'a str,
    until: i64,
    before: i64,
}

impl<'a> Entry<'a> {
    fn from(revocation: &'a Revocation) -> Self {
        let (kind, id, before) = match &revocation.target {
            RevocationTarget::Session(sid) => ('s', sid.as_str(), 0),
            RevocationTarget::Token(jti) => ('j', jti.as_str(), 0),
            RevocationTarget::Subject { subject, before } => ('u', subject.as_str(), *before),
        };
        Self {
            kind,
            id,
            until: revocation.until,
            before,
        }
    }

    fn key(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }

    fn value(&self) -> String {
        format!("{}|{}", self.until, self.before)
    }

    fn message(&self) -> String {
        format!("{}|{}|{}|{}", self.kind, self.until, self.before, self.id)
    }

    fn parse_message(message: &'a str) -> Option<Self> {
        let mut parts = message.splitn(4, '|');
        let kind = parts.next()?.chars().next()?;
        let until = parts.next()?.parse().ok()?;
        let before = parts.next()?.parse().ok()?;
        Some(Self {
            kind,
            id: parts.next()?,
            until,
            before,
        })
    }

    fn parse_stored(key: &'a str, value: &str) -> Option<Self> {
        let (kind, id) = key.split_once(':')?;
        let (until, before) = value.split_once('|')?;
        Some(Self {
            kind: kind.chars().next()?,
            id,
            until: until.parse().ok()?,
            before: before.parse().ok()?,
        })
    }

    fn revocation(&self) -> Option<Revocation> {
        let target = match self.kind {
            's' => RevocationTarget::Session(self.id.to_owned()),
            'j' => RevocationTarget::Token(self.id.to_owned()),
            'u' => RevocationTarget::Subject {
                subject: self.id.to_owned(),
                before: self.before,
            },
            _ => return None,
        };
        Some(Revocation {
            target,
            until: self.until,
        })
    }
}

impl Shared {
    /// Whether checks may be answered from the replica.
    fn trusted(&self) -> bool {
        self.live.load(Ordering::Acquire) && !self.overflow.load(Ordering::Acquire)
    }

    /// Applies one entry to the replica; `false` when the replica could not
    /// take it (it is then missing a live revocation: not trusted any more).
    fn apply(&self, entry: Option<Entry<'_>>) -> bool {
        match entry.and_then(|e| e.revocation()) {
            Some(revocation) => match self.replica.insert(&revocation, self.clock.now()) {
                Ok(()) => true,
                Err(error) => {
                    if !self.overflow.swap(true, Ordering::AcqRel) {
                        let mode = match self.failure_mode {
                            FailureMode::Closed => {
                                "refusing authenticated requests (503) until a reload finds room"
                            }
                            FailureMode::Open => {
                                "answering from an incomplete replica until a reload finds room"
                            }
                        };
                        tracing::error!(target: TARGET, %error, replica = ?self.replica, "revocation replica is full and misses a revocation; {mode}");
                    }
                    false
                }
            },
            None => {
                tracing::debug!(target: TARGET, "ignored a malformed revocation entry");
                true
            }
        }
    }

    /// Loads every live entry under the prefix into the replica.
    async fn load_all(&self) -> Result<(), StoreError> {
        let mut connection = self.commands.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut complete = true;
        loop {
            let (next, keys): (u64, Vec<String>) = bounded(
                self.timeout,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection),
            )
            .await?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> =
                    bounded(self.timeout, connection.mget(&keys)).await?;
                for (key, value) in keys.iter().zip(values) {
                    let (Some(key), Some(value)) = (key.strip_prefix(self.prefix.as_str()), value)
                    else {
                        continue;
                    };
                    complete &= self.apply(Entry::parse_stored(key, &value));
                }
            }
            if next == 0 {
                // Every live entry is in the replica again: it can be trusted.
                if complete && self.overflow.swap(false, Ordering::AcqRel) {
                    tracing::info!(target: TARGET, entries = self.replica.len(), "revocation replica has room again");
                }
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn glob_escape(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn unavailable(error: redis::RedisError) -> StoreError {
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else {
        StoreErrorKind::Unavailable
    };
    StoreError::new(kind, Some(Box::new(error)))
}

async fn bounded<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(elapsed) => Err(StoreError::new(
            StoreErrorKind::Timeout,
            Some(Box::new(elapsed)),
        )),
    }
}

/// Keeps the replica synchronised; reconnects with backoff when the
/// subscription fails.
async fn sync_loop(shared: Arc<Shared>, client: redis::Client) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let error = subscribe_and_follow(&shared, &client, &mut backoff).await;
        if shared.live.swap(false, Ordering::AcqRel) {
            let mode = match shared.failure_mode {
                FailureMode::Closed => "refusing authenticated requests (503) until it is back",
                FailureMode::Open => "answering from the local replica until it is back",
            };
            tracing::warn!(target: TARGET, %error, "lost the Redis revocation feed; {mode}");
        } else {
            tracing::debug!(target: TARGET, %error, "Redis revocation feed still unavailable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Subscribes, loads, then follows announcements; returns only on failure.
async fn subscribe_and_follow(
    shared: &Shared,
    client: &redis::Client,
    backoff: &mut Duration,
) -> StoreError {
    let mut pubsub = match bounded(shared.timeout, client.get_async_pubsub()).await {
        Ok(pubsub) => pubsub,
        Err(error) => return error,
    };
    if let Err(error) = bounded(shared.timeout, pubsub.subscribe(&shared.channel)).await {
        return error;
    }
    let mut messages = pubsub.into_on_message();
    if let Err(error) = shared.load_all().await {
        return error;
    }
    shared.live.store(true, Ordering::Release);
    shared.synced.notify_one();
    *backoff = Duration::from_millis(50);
    tracing::info!(target: TARGET, entries = shared.replica.len(), "revocation replica synchronised with Redis");
    let mut resync = tokio::time::interval(shared.resync_interval);
    resync.tick().await;
    loop {
        tokio::select! {
            message = poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)) => match message {
                Some(message) => {
                    let entry = std::str::from_utf8(message.get_payload_bytes())
                        .ok()
                        .and_then(Entry::parse_message);
                    shared.apply(entry);
                }
                None => return StoreErrorKind::Unavailable.into(),
            },
            _ = resync.tick() => {
                if let Err(error) = shared.load_all().await {
                    return error;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let revocation = Revocation {
            target: RevocationTarget::Subject {
                subject: "a|b:c".into(),
                before: 7,
            },
            until: 99,
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
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
