//! [`RedisStoreBuilder`]: a [`RedisStore`]'s settings, and connecting it.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::sync;
use super::topology::Topology;
use super::{RedisCounters, RedisStore, Shared, TaskGuard};
use crate::clock::{Clock, SystemClock};
use crate::revoke::{FailureMode, MemoryStore, StoreError, StoreErrorKind};

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
    wait: Option<(u32, Duration)>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("failure_mode", &self.failure_mode)
            .field("timeout", &self.timeout)
            .field("resync_interval", &self.resync_interval)
            .field("capacity", &self.capacity)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            prefix: "tsj:".to_owned(),
            failure_mode: FailureMode::Closed,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(30),
            capacity: 1_000_000,
            clock: Arc::new(SystemClock),
            wait: None,
        }
    }

    /// Prefix of every key and of the channel (default `tsj:`); lets several
    /// applications share one Redis. Every instance of a cluster must use
    /// the same prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do while Redis is unreachable (default [`FailureMode::Closed`]).
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Bound on every Redis call, including the initial connection and each
    /// single-flight round trip (default 2 s).
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
    /// replica that cannot take a revocation makes the instance
    /// unsynchronised (see [`FailureMode`]) until a reload finds room for
    /// every entry. Reuse-detection marks have a budget of the same size of
    /// their own; a mark without room is dropped (that renewal loses its
    /// detection) and never makes the replica untrusted.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock that decides which entries read from Redis are still live
    /// and how long entries live in Redis (default
    /// [`SystemClock`]). Give it the layer's clock: the
    /// store and the layer must agree on "now".
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A revocation is acknowledged only once `replicas` replicas of the
    /// master (or, on a cluster, of the shard) that took it have it too
    /// (`WAIT replicas timeout` after the write, on a connection of its own;
    /// off by default; `timeout` must be shorter than the store's timeout,
    /// or [`connect`](Self::connect) refuses). Reuse-detection marks are not
    /// waited for. The way to
    /// keep a logout through a failover that happens right after it:
    /// asynchronous replication may otherwise lose the last writes of a
    /// master that dies (the instances then write their replicas back, but
    /// an instance that restarted meanwhile no longer holds the logout). A
    /// revocation that fewer replicas acknowledged within `timeout` is
    /// honoured by this instance and announced, but answered with
    /// [`StoreErrorKind::Unavailable`].
    pub fn with_wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Connects, subscribes, loads the live revocations and starts the
    /// background synchronisation task (on the current tokio runtime).
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] for a bad URL (or `rediss://` without
    /// a TLS feature of the `redis` crate) or a refused connection,
    /// [`StoreErrorKind::Timeout`] when Redis does not answer within the timeout.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let topology = Topology::parse(&self.url, self.timeout)?;
        let (commands, master) = topology.connect(self.timeout).await?;
        // `WAIT` blocks the connection it is sent on: it gets its own.
        let waits = match self.wait {
            None => None,
            Some((_, wait)) if wait >= self.timeout => {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    Some(
                        "with_wait_for_replicas: the wait must be shorter than the store's timeout"
                            .into(),
                    ),
                ));
            }
            Some(_) => Some(topology.connect(self.timeout).await?.0),
        };
        let shared = Arc::new(Shared {
            replica: MemoryStore::with_capacity(self.capacity),
            live: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            unshared: AtomicBool::new(false),
            clock: self.clock,
            synced: tokio::sync::Notify::new(),
            failure_mode: self.failure_mode,
            channel: format!("{}revocations", self.prefix),
            prefix: self.prefix,
            timeout: self.timeout,
            resync_interval: self.resync_interval.max(Duration::from_millis(100)),
            commands: RwLock::new(commands),
            waits: RwLock::new(waits),
            topology,
            wait: self.wait,
            stats: RedisCounters::default(),
        });
        let task = tokio::spawn(sync::sync_loop(shared.clone(), master));
        let guard = Arc::new(TaskGuard(task.abort_handle()));
        if tokio::time::timeout(self.timeout, shared.synced.notified())
            .await
            .is_err()
        {
            return Err(StoreErrorKind::Timeout.into());
        }
        Ok(RedisStore::new(shared, guard))
    }
}
