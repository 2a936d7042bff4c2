//! [`PostgresStoreBuilder`]: a [`PostgresStore`]'s settings, and connecting it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use super::schema::Statements;
use super::{Counters, FailureMode, PostgresStore, Shared, TaskGuards, store, sync};
use crate::clock::{Clock, SystemClock};
use crate::revoke::{MemoryStore, StoreError, StoreErrorKind};

/// The longest timeout or interval taken (longer ones are cut to it).
const HOUR: Duration = Duration::from_secs(3600);

/// Where the connections come from.
#[derive(Clone)]
pub(super) enum Source {
    Url(String),
    Pool(sqlx::PgPool),
}

impl PostgresStore {
    /// A builder for a store on its own pool of connections to `url`
    /// (`postgres://user:password@host:port/database`; four connections,
    /// not pinged before each use, plus one for `LISTEN`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Url(url.into()))
    }

    /// A builder for a store on the application's own pool: its queries
    /// share the pool's connections; `LISTEN` gets a connection of its own
    /// with the pool's settings. sqlx pings a connection before each use
    /// unless the pool was built with
    /// [`test_before_acquire(false)`](sqlx::pool::PoolOptions::test_before_acquire),
    /// as the store's own pool is: the ping is one more round trip on each
    /// renewal through the shared single flight.
    pub fn from_pool(pool: sqlx::PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Pool(pool))
    }
}

/// Configures and connects a [`PostgresStore`].
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    source: Source,
    prefix: String,
    failure_mode: FailureMode,
    timeout: Duration,
    confirm_interval: Duration,
    resync_interval: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("PostgresStoreBuilder")
            .field("prefix", &self.prefix)
            .field("failure_mode", &self.failure_mode)
            .field("timeout", &self.timeout)
            .field("confirm_interval", &self.confirm_interval)
            .field("resync_interval", &self.resync_interval)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    pub(super) fn new(source: Source) -> Self {
        Self {
            source,
            prefix: "tsj_".to_owned(),
            failure_mode: FailureMode::Closed,
            timeout: Duration::from_secs(2),
            confirm_interval: Duration::from_secs(1),
            resync_interval: Duration::from_secs(30),
            capacity: 1_000_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Prefix of the tables and of the notification channel (default
    /// `tsj_`): lets several applications share one database. 1 to 40
    /// lowercase ASCII letters, digits or `_`, not starting with a digit
    /// ([`connect`](Self::connect) refuses anything else). Every instance
    /// of a cluster must use the same prefix.
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do while the replica cannot be trusted (default
    /// [`FailureMode::Closed`]).
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Bound on every statement, on taking a connection, and on waiting
    /// for a revocation's commit (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the replica is confirmed current without an announcement
    /// (default 1 s; at least 50 ms). The replica is not trusted once a
    /// confirmation is later than this plus the timeout: how stale an
    /// instance can be when notifications are lost.
    pub fn with_confirm_interval(mut self, interval: Duration) -> Self {
        self.confirm_interval = interval;
        self
    }

    /// How often the server's identity is checked and expired rows are
    /// deleted (default 30 s).
    pub fn with_resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Live revocations the replica may hold (default one million), as
    /// [`RedisStoreBuilder::with_capacity`](crate::redis::RedisStoreBuilder::with_capacity)
    /// (feature `redis`): a replica that cannot take a revocation is not
    /// trusted until a reload finds room for every entry.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock that decides which rows are live and when they can go
    /// (default [`SystemClock`]). Give it the layer's clock: the store and
    /// the layer must agree on "now".
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Connects, creates the tables when missing, loads the live
    /// revocations and starts the background tasks (on the current tokio
    /// runtime).
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] for a bad URL or prefix, a refused
    /// connection, a schema this version cannot read or tables it may not
    /// create; [`StoreErrorKind::Timeout`] when the database does not
    /// answer: each statement is bounded by the timeout (preparing the
    /// tables takes up to three), and loading the replica by ten timeouts.
    /// A database down at start is an error: retry `connect` (the demos
    /// exit with a message).
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        let sql = Statements::new(&self.prefix)?;
        let timeout = self.timeout.clamp(Duration::from_millis(10), HOUR);
        let pool = match self.source {
            Source::Pool(pool) => pool,
            // No ping before each use: a broken connection fails its
            // statement, which is bounded and answered as an error anyway,
            // and the ping would double the cost of a renewal.
            Source::Url(url) => PgPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .acquire_timeout(timeout)
                .connect_lazy(&url)
                .map_err(super::unavailable)?,
        };
        sql.prepare(&pool, &self.prefix, timeout).await?;
        let (writes, queue) = tokio::sync::mpsc::channel(store::WRITE_BATCH * 4);
        let shared = Arc::new(Shared {
            replica: MemoryStore::with_capacity(self.capacity),
            pool,
            sql,
            overflow: AtomicBool::new(false),
            unshared: Mutex::default(),
            confirmed: AtomicU64::new(0),
            started: std::time::Instant::now(),
            clock: self.clock,
            synced: tokio::sync::Notify::new(),
            failure_mode: self.failure_mode,
            // Bounds a clock can add to without overflow.
            timeout,
            confirm_interval: self.confirm_interval.clamp(Duration::from_millis(50), HOUR),
            resync_interval: self.resync_interval.clamp(Duration::from_millis(100), HOUR),
            writes,
            stats: Counters::default(),
        });
        let writer = tokio::spawn(store::write_loop(shared.clone(), queue));
        let follower = tokio::spawn(sync::sync_loop(shared.clone()));
        let watchdog = tokio::spawn(sync::watchdog(shared.clone()));
        let purger = tokio::spawn(sync::purge_loop(shared.clone()));
        let tasks = Arc::new(TaskGuards(Mutex::new(vec![
            writer.abort_handle(),
            follower.abort_handle(),
            watchdog.abort_handle(),
            purger.abort_handle(),
        ])));
        // Loading a large table may take longer than one statement's bound.
        let wait = timeout.saturating_mul(10);
        if tokio::time::timeout(wait, shared.synced.notified())
            .await
            .is_err()
        {
            return Err(StoreErrorKind::Timeout.into());
        }
        Ok(PostgresStore::new(shared, tasks))
    }
}
