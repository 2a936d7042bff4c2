//! One Redis handle for a cluster (feature `redis`): revocations and the
//! single flight shared by every instance.
//!
//! [`RedisStore`] is a [`RevocationStore`](crate::store::RevocationStore) that also offers a
//! [`SharedFlight`](crate::store::SharedFlight): `with_revocation_store(store)` is
//! all a layer needs to act as one instance of a cluster. One command
//! connection and one configuration (URL, prefix, timeout, failure mode)
//! serve both, on one node, a Redis Cluster or under Sentinel.
//!
//! # Revocations
//! Every instance keeps a full local replica of the live revocations and
//! answers checks from it, so the per-request cost is the in-memory store's
//! and never a network round trip. Redis is the shared source:
//!
//! * a revocation is written as `SET {prefix}{kind}:{id} ... EX {until - now}`
//!   and announced with `PUBLISH` on the channel `{prefix}revocations`. `now`
//!   is the layer's clock (give the store the same clock with
//!   [`RedisStoreBuilder::with_clock`]): Redis forgets the entry exactly when
//!   what it revokes stops verifying by that clock, whatever Redis's own
//!   clock says. On a clock that agrees with Redis's this is the same instant
//!   as `EXAT {until}`;
//! * each instance subscribes to that channel, then loads every live entry
//!   with `SCAN`/`MGET`, then applies announcements as they arrive, and reloads
//!   every `resync_interval` (30 s by default) as a safety net.
//!
//! # Single flight
//! Parallel requests holding the same near-expiry token get one replacement
//! whichever instance answers. When an instance is about to renew (never on
//! the verify path), it offers its replacement with one round trip:
//! `SET {prefix}flight:{id} {sealed} NX EX {until - now + 60}` pipelined
//! with `STRLEN` and a bounded `GETRANGE` of the same key. The first offer
//! wins; every later one reads the winner, and the layer keeps it in its
//! local single flight so later requests with that old token cost no round
//! trip. `Session::renew_with` replaces the entry atomically (a one-key
//! script) and revokes the replacement it displaced.
//!
//! * `{id}` is HMAC-SHA-256 keyed by the old token's canonical signature
//!   (the same for an ECDSA token and its malleated twin): Redis never sees
//!   the old token or its signature.
//! * `{sealed}` is the replacement and its `exp`, encrypted and authenticated
//!   with keys derived the same way (HMAC-SHA-256 in counter mode, then
//!   HMAC-SHA-256 over the ciphertext, with a random nonce). Only a holder of
//!   the old token can read it, and someone who can write to Redis but does
//!   not hold the old token cannot plant a replacement: an entry that does
//!   not open, or does not hold a compact JWS within 64 KiB, is an error.
//! * It lives until the old token stops verifying (`exp` + leeway, by the
//!   layer's clock, as above).
//! * Any error or a timeout (bounded by the store's timeout; at once while
//!   the revocation feed is down) means no replacement this time: one the
//!   cluster never saw could not be retired by a `renew_with` on another
//!   instance. The old token stays valid; the next request tries again.
//!
//! # Staleness and failures
//! The replica is trusted only while the subscription is up and its last
//! reload succeeded; otherwise, with [`FailureMode::Closed`] (the default),
//! authenticated requests get 503 until it is synchronised again. How stale
//! an instance can be and what each failure does are in the crate guide's
//! "Running a cluster" (sections "How stale an instance can be" and
//! "Failures"): this page keeps the protocol.
//!
//! # Write-back
//! Each instance notes a marker key (`{prefix}marker`, a random value set
//! once per Redis dataset; on a cluster one per master). When it finds a
//! marker gone or changed at a resubscription or a reload (Redis restarted
//! empty or was flushed), when Sentinels name another master or a cluster's
//! masters change (a failover, which may have lost the last writes), or when
//! a revocation of its own could not reach Redis, it writes every live
//! entry of its replica back (`SET ... NX` with the entry's own remaining
//! lifetime, and an announcement; on a cluster each entry to its own slot),
//! in batches each bounded by the timeout, before it trusts its replica
//! again.
//! Instances started afterwards load them. The write-back is idempotent: an
//! entry already in Redis is left as it is.
//!
//! Every Redis call is bounded by `timeout` (2 s by default): nothing waits
//! forever. State changes are logged with `tracing` (target
//! `tower_sliding_jwt::redis`), without tokens.
//!
//! # Topologies
//! The URL names the deployment: `redis://host:port/` (one node),
//! `redis-cluster://h1:p1,h2:p2` (a Redis Cluster: any reachable nodes, the
//! others discovered; every write stays in one slot, every master is
//! scanned and has its own marker), or `redis-sentinel://s1:p1,s2:p2/<name>`
//! (the master those Sentinels name, followed through failovers, with a
//! write-back to each new master). Credentials go before the hosts
//! (`redis-cluster://user:password@h1:p1,h2:p2`); for Sentinel they are the
//! master's. [`RedisStoreBuilder::with_wait_for_replicas`] acknowledges a
//! logout only once replicas have it too. The crate guide's "Running a
//! cluster" covers what each failure does.
//!
//! # TLS
//! `redis://`, `unix://`, `redis-cluster://` and `redis-sentinel://` work
//! out of the box; `rediss://`, `rediss-cluster://` and `rediss-sentinel://`
//! need one of the `redis` crate's TLS features (`tokio-rustls-comp` or
//! `tokio-native-tls-comp`) enabled in your own `Cargo.toml`, and are refused
//! with [`StoreErrorKind::Unavailable`] without it.

mod builder;
mod cluster;
mod flight;
mod registry;
mod replay;
mod store;
mod sync;
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::sync::{PoisonError, RwLock};

use topology::{Commands, Topology};

use crate::clock::Clock;
use crate::revoke::{MAX_REVOCATION_SECS, MemoryStore, StoreError, StoreErrorKind};

pub use crate::revoke::FailureMode;
pub use builder::RedisStoreBuilder;
#[cfg(fuzzing)]
pub(crate) use registry::fuzz_value as fuzz_registry_value;
pub use store::RedisStore;
#[cfg(fuzzing)]
pub(crate) use store::fuzz_entries;

const TARGET: &str = "tower_sliding_jwt::redis";

/// What a [`RedisStore`] has asked of Redis since it connected (all its
/// clones together): for metrics, and to check that the verify path makes
/// no Redis call.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Round trips on the command connection (a pipeline counts once):
    /// revocations, single-flight claims, reloads, write-backs. Checking a
    /// token never makes one.
    pub round_trips: u64,
    /// Replacements offered to the shared single flight.
    pub flight_claims: u64,
    /// Offers the cluster answered with another instance's replacement.
    pub flight_lost: u64,
    /// Offers that failed (Redis unreachable, timeout, a malformed entry):
    /// the layer handed out no replacement.
    pub flight_errors: u64,
    /// Revocations written back to Redis after it lost its data, or after
    /// one of this instance's revocations could not reach it.
    pub written_back: u64,
}

#[derive(Default)]
struct RedisCounters {
    round_trips: AtomicU64,
    flight_claims: AtomicU64,
    flight_lost: AtomicU64,
    flight_errors: AtomicU64,
    written_back: AtomicU64,
}

impl RedisCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RedisStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RedisStats {
            round_trips: get(&self.round_trips),
            flight_claims: get(&self.flight_claims),
            flight_lost: get(&self.flight_lost),
            flight_errors: get(&self.flight_errors),
            written_back: get(&self.written_back),
        }
    }
}

struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the store's clones and its background task share.
struct Shared {
    replica: MemoryStore,
    /// Subscribed and loaded.
    live: AtomicBool,
    /// The replica refused an entry since the last complete reload.
    overflow: AtomicBool,
    /// A revocation of this instance may not have reached Redis: write the
    /// replica back at the next reload.
    unshared: AtomicBool,
    clock: Arc<dyn Clock>,
    synced: tokio::sync::Notify,
    failure_mode: FailureMode,
    prefix: String,
    channel: String,
    timeout: Duration,
    resync_interval: Duration,
    /// Replaced when Sentinels name another master.
    commands: RwLock<Commands>,
    /// The connection `WAIT` is sent on, with `with_wait_for_replicas`.
    waits: RwLock<Option<Commands>>,
    topology: Topology,
    wait: Option<(u32, Duration)>,
    stats: RedisCounters,
}

impl Shared {
    /// Whether checks may be answered from the replica.
    fn trusted(&self) -> bool {
        self.live.load(Ordering::Acquire) && !self.overflow.load(Ordering::Acquire)
    }

    /// An error at once while the revocation feed is down (a flight claim,
    /// a registry read or write): Redis is most likely unreachable, do not
    /// wait for a timeout.
    fn reachable(&self) -> Result<(), StoreError> {
        if self.live.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreErrorKind::Unavailable.into())
        }
    }

    /// The command connection (a cheap clone).
    fn commands(&self) -> Commands {
        self.commands
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One round trip on the command connection, bounded by the timeout.
    async fn query<T: redis::FromRedisValue>(
        &self,
        command: &impl QueryAsync,
    ) -> Result<T, StoreError> {
        RedisCounters::add(&self.stats.round_trips, 1);
        let mut connection = self.commands();
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = bounded(self.timeout, command.run(&mut connection)).await;
        #[cfg(feature = "metrics")]
        crate::stats::exported::store_round_trip("redis", started);
        result
    }
}

impl Shared {
    /// [`query`](Self::query) for a pipeline about `key` (and keyless
    /// commands such as `PUBLISH`): on a cluster, sent to `key`'s master.
    async fn query_on_key<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
        key: &str,
    ) -> Result<T, StoreError> {
        RedisCounters::add(&self.stats.round_trips, 1);
        let mut connection = self.commands();
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = bounded(self.timeout, connection.query_on_key(pipeline, key)).await;
        #[cfg(feature = "metrics")]
        crate::stats::exported::store_round_trip("redis", started);
        result
    }
}

/// A command or a pipeline.
trait QueryAsync {
    fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl QueryAsync for redis::Cmd {
    fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(connection)
    }
}

impl QueryAsync for redis::Pipeline {
    fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(connection)
    }
}

/// A store error for a configuration or an answer the store cannot use.
fn invalid(what: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, Some(what.to_owned().into()))
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
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(elapsed) => Err(StoreError::new(
            StoreErrorKind::Timeout,
            Some(Box::new(elapsed)),
        )),
    }
}

/// Seconds from the layer's `now` until `until`, as Redis's relative `EX`
/// wants them; `None` when that moment has passed.
fn seconds_until(until: i64, now: i64) -> Option<i64> {
    until.checked_sub(now).filter(|ttl| *ttl > 0)
}

/// An `EX` Redis always accepts: no entry needs to live longer than the
/// longest revocation, and a larger value (a planted entry, a cap near
/// `i64::MAX`) would make Redis refuse the whole pipeline it is in.
fn clamp_ttl(ttl: i64) -> i64 {
    ttl.clamp(1, MAX_REVOCATION_SECS)
}
