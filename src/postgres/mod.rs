//! One PostgreSQL database for a cluster (feature `postgres`): revocations,
//! reuse marks, session cut-offs and the single flight shared by every
//! instance, through [sqlx](https://docs.rs/sqlx) (re-exported as
//! [`sqlx`], so an application passing its own pool names the
//! same version).
//!
//! [`PostgresStore`] is a [`RevocationStore`](crate::store::RevocationStore)
//! that also offers a [`SharedFlight`](crate::store::SharedFlight), exactly
//! as [`RedisStore`](crate::redis::RedisStore) does: `with_revocation_store(store)`
//! is all a layer needs to act as one instance of a cluster. Build it from a
//! URL, or from the application's own [`PgPool`](sqlx::PgPool) to share the
//! connections it already has:
//!
//! ```no_run
//! use tower_sliding_jwt::postgres::{PostgresStore, sqlx::PgPool};
//!
//! # async fn run(pool: PgPool) -> Result<(), tower_sliding_jwt::StoreError> {
//! let store = PostgresStore::from_pool(pool).connect().await?;
//! // or: PostgresStore::builder("postgres://app@db/app").connect().await?
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Revocations
//! Every instance keeps a full local replica of the live revocations and
//! answers checks from it: the per-request cost is the in-memory store's,
//! never a query. PostgreSQL is the shared source:
//!
//! * a revocation is one row of `{prefix}revocations`, committed before the
//!   revocation is answered (the commit waits for the WAL flush, whatever
//!   the server's `synchronous_commit` default). One writer task per
//!   instance puts every revocation waiting at that moment into one
//!   statement (group commit), so a logout storm shares the flushes;
//! * each row gets the next sequence number of the dataset, taken under the
//!   lock of the one state row, so rows become visible in sequence order,
//!   and its transaction announces it with `NOTIFY` on the channel
//!   `{prefix}revocations`;
//! * each instance `LISTEN`s, then reads every row after the last number it
//!   has read (a catch-up), and does so again after every notification (a
//!   hint only: anyone who may connect can `NOTIFY`, so its payload decides
//!   nothing, and a flood of them costs one catch-up per 5 ms at most),
//!   every `confirm_interval` (1 s by default), and after every
//!   reconnection: a notification missed while disconnected loses nothing.
//!   A revocation that could not be written is kept aside (up to 10 000;
//!   past that, the whole replica) and written back at the next
//!   confirmation, whether or not its caller still waits; so is one whose
//!   caller gave up while the write queue was full (the database slower
//!   than the logouts).
//!
//! # Single flight
//! `{prefix}flights` holds one row per old token near its renewal: the
//! first replacement offered wins (`INSERT ... ON CONFLICT`), in one round
//! trip, and every instance hands out the winner. The row's key and its
//! sealed value are derived from the old token exactly as the Redis store's
//! are (the database never sees the old token, and cannot plant a
//! replacement: an entry that does not open is an error). Flight rows are
//! committed with `synchronous_commit = off`: a server crash may lose the
//! last ones, which costs one more replacement for an old token, never a
//! logout.
//!
//! # Pools and poolers
//! A store built from a URL keeps four connections (not pinged before each
//! use) and one for `LISTEN`. One built with [`PostgresStore::from_pool`]
//! sends its catch-ups, writes and flight statements through the
//! application's pool: size the pool for them, as a catch-up that waits for
//! a connection longer than the timeout ends trust (503) like an
//! unreachable database. `LISTEN` needs a session: behind PgBouncer in
//! transaction mode notifications are not delivered, and instances fall
//! back to the catch-up every `confirm_interval`; give the store a direct
//! URL (or a session-mode pool).
//!
//! # Staleness and failures
//! The replica is trusted only while the `LISTEN` connection is up and the
//! last successful catch-up began within `confirm_interval` plus `timeout`
//! (3 s by default; a watchdog task enforces it whatever the follower is
//! doing, so a check reads two flags and no clock); otherwise, with
//! [`FailureMode::Closed`] (the default),
//! authenticated requests get 503 with `Retry-After` until it is confirmed
//! again, which the store does by itself (reconnecting with backoff, at
//! most 2 s apart). A revocation made on another instance reaches this one
//! within the notification's delay, and at worst within `confirm_interval`.
//!
//! # Write-back
//! A database that lost writes is noticed by what it holds: its state row's
//! sequence number below the highest this instance has read, another
//! `epoch` (the tables were dropped and created again), or another system
//! identifier or timeline (a restored backup, a promoted standby; read from
//! `pg_control_system()` and `pg_control_checkpoint()` where the role may).
//! The instance then gives the dataset a new epoch (so every other instance
//! does the same at its next confirmation, however far the sequence has
//! moved meanwhile), writes every live entry of its replica back (a row
//! already there is left as it is: each row carries a digest of its
//! content) and reads the whole table again before it trusts its replica;
//! a write-back that fails is tried again. What this cannot see: a database
//! that went back and took more new rows than it lost before any instance
//! confirmed (within `confirm_interval`), on the same system identifier and
//! timeline.
//! A revocation of its own that could not reach the database is written
//! back the same way once the database answers.
//!
//! # The schema
//! Created when missing (one instance at a time, under an advisory lock),
//! with the prefix `tsj_` unless [`PostgresStoreBuilder::with_table_prefix`]
//! names another:
//!
//! ```sql
//! CREATE TABLE tsj_state (        -- one row
//!     id smallint PRIMARY KEY CHECK (id = 1),
//!     version integer NOT NULL,   -- the schema version: 3
//!     seq bigint NOT NULL,        -- the highest sequence number given
//!     epoch text NOT NULL);       -- random, set when the tables are made
//! CREATE TABLE tsj_revocations (
//!     seq bigint PRIMARY KEY,
//!     until_ bigint NOT NULL,     -- when the row can go
//!     record bytea NOT NULL,      -- kind | until | before | id (as DurableStore's)
//!     digest bytea NOT NULL UNIQUE); -- SHA-256 of until_ and record
//! CREATE INDEX tsj_revocations_until ON tsj_revocations (until_);
//! CREATE TABLE tsj_flights (
//!     id text PRIMARY KEY,        -- keyed hash of the old token
//!     sealed bytea NOT NULL,      -- the replacement, sealed
//!     until_ bigint NOT NULL);
//! CREATE INDEX tsj_flights_until ON tsj_flights (until_);
//! CREATE TABLE tsj_sessions (     -- the session registry (version 2)
//!     subject text NOT NULL,
//!     sid text NOT NULL,
//!     n bigint GENERATED ALWAYS AS IDENTITY,  -- insert order
//!     created bigint NOT NULL,
//!     last_seen bigint NOT NULL,
//!     expires bigint NOT NULL,    -- the newest token's exp: the row can go then
//!     cap bigint NOT NULL,
//!     user_agent text,
//!     address text,
//!     PRIMARY KEY (subject, sid));
//! CREATE INDEX tsj_sessions_expires ON tsj_sessions (expires);
//! CREATE TABLE tsj_proofs (       -- the DPoP replay cache (version 3)
//!     id bytea PRIMARY KEY,       -- SHA-256 of the key's thumbprint and the proof's jti
//!     until_ bigint NOT NULL);    -- when the proof is too old to be accepted anyway
//! CREATE INDEX tsj_proofs_until ON tsj_proofs (until_);
//! INSERT INTO tsj_state (id, version, seq, epoch)
//!     VALUES (1, 3, 0, md5(random()::text || clock_timestamp()::text));
//! ```
//!
//! The tables are created unqualified: in the first schema of the
//! connection's `search_path`.
//!
//! Expired rows are deleted by each instance in batches of 1 000 every
//! resync interval (30 s by default), until a batch comes back short or five
//! timeouts have passed, on a task of its own; catch-ups skip expired rows'
//! records; every value read back is bounded (a record longer than a
//! 16 KiB id and its 17-byte header, a sealed replacement longer than a
//! 64 KiB token and its 57 bytes of sealing, is skipped as garbage).
//!
//! **Grants.** No superuser: the role needs `CONNECT` on the database,
//! `USAGE` on the schema, and `CREATE` on it for the first start (since
//! PostgreSQL 15 ordinary roles may no longer create tables in `public`;
//! or run the statements above once as another role), then
//! `SELECT, INSERT, UPDATE, DELETE` on the five tables:
//!
//! ```sql
//! GRANT SELECT, INSERT, UPDATE, DELETE ON tsj_state, tsj_revocations, tsj_flights, tsj_sessions, tsj_proofs TO app;
//! ```
//!
//! The system
//! identifier and timeline checks use functions every role may call by
//! default; where they are revoked, the store relies on the sequence and
//! epoch checks alone.
//!
//! **Migrations.** The version in `{prefix}state` says what wrote the
//! tables. A store refuses to start on a version it does not know (a newer
//! crate wrote them), naming it, and migrates an older one in place at its
//! first start, under the same advisory lock: version 1 (0.4.0 before the
//! session registry) gains `tsj_sessions`, version 2 (0.4.0 before DPoP)
//! gains `tsj_proofs` (a role that may not create tables needs them made
//! once by another: the statements above). An instance of an older
//! version refuses to *start* on newer tables (it keeps running if started
//! before): upgrade every instance.
//!
//! # Session registry
//! A user's sessions ([`Sessions`](crate::Sessions)) are rows of
//! `tsj_sessions`, read and written straight, one statement each: a login
//! inserts (and, at the layer's limit, deletes the sessions it ended, in
//! the same statement, committed durably as a revocation is), a renewal
//! updates `last_seen` and `expires`, a listing reads one subject's rows.
//! Every instance lists what any instance recorded or ended at once. A
//! login's insert runs in a transaction holding an advisory lock on the
//! subject (`hashtextextended(subject, <prefix's key>)`), so logins of one
//! user on several instances at once count each other and the limit
//! holds. Expired rows go with the purge above; a listing deletes rows the
//! crate could not have written and refuses a subject with more than 2 000.

mod builder;
mod flight;
mod registry;
mod replay;
mod schema;
mod store;
mod sync;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sqlx;

pub use crate::revoke::FailureMode;
pub use builder::PostgresStoreBuilder;
pub use store::PostgresStore;

use crate::clock::Clock;
use crate::revoke::{MemoryStore, StoreError, StoreErrorKind};
use schema::Statements;

const TARGET: &str = "tower_sliding_jwt::postgres";

/// What a [`PostgresStore`] has done since it connected (all its clones
/// together): for metrics, and to check that the verify path sends no
/// query.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostgresStats {
    /// Statements sent: writes, catch-ups, single-flight claims, purges.
    /// Checking a token never sends one.
    pub queries: u64,
    /// Transactions that wrote revocations (one per group of revocations
    /// waiting together).
    pub commits: u64,
    /// Revocations written (each counted once, in whichever commit took it).
    pub revocations_written: u64,
    /// Replacements offered to the shared single flight.
    pub flight_claims: u64,
    /// Offers answered with another instance's replacement.
    pub flight_lost: u64,
    /// Offers that failed: the layer handed out no replacement.
    pub flight_errors: u64,
    /// Revocations written back after the database lost its data, or after
    /// one of this instance's revocations could not reach it.
    pub written_back: u64,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    commits: AtomicU64,
    revocations_written: AtomicU64,
    flight_claims: AtomicU64,
    flight_lost: AtomicU64,
    flight_errors: AtomicU64,
    written_back: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PostgresStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PostgresStats {
            queries: get(&self.queries),
            commits: get(&self.commits),
            revocations_written: get(&self.revocations_written),
            flight_claims: get(&self.flight_claims),
            flight_lost: get(&self.flight_lost),
            flight_errors: get(&self.flight_errors),
            written_back: get(&self.written_back),
        }
    }
}

/// Aborts the store's background tasks when the last clone goes.
struct TaskGuards(Mutex<Vec<tokio::task::AbortHandle>>);

impl Drop for TaskGuards {
    fn drop(&mut self) {
        let handles = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        for handle in handles.drain(..) {
            handle.abort();
        }
    }
}

/// What the store's clones and its tasks share.
struct Shared {
    replica: MemoryStore,
    pool: sqlx::PgPool,
    sql: Statements,
    /// The replica refused an entry since the last complete reload.
    overflow: AtomicBool,
    /// Revocations of this instance that did not reach the database,
    /// written back at the next confirmation.
    unshared: Mutex<Unshared>,
    /// 0 while the replica is not trusted (not listening, not caught up
    /// since the last failure, or not confirmed within the bound);
    /// otherwise 1 + the milliseconds after `started` at which the last
    /// successful catch-up began (the replica holds every row committed
    /// before then). One atomic, so the watchdog never clears a newer
    /// confirmation than the one it judged late.
    confirmed: AtomicU64,
    started: std::time::Instant,
    clock: Arc<dyn Clock>,
    synced: tokio::sync::Notify,
    failure_mode: FailureMode,
    timeout: Duration,
    confirm_interval: Duration,
    resync_interval: Duration,
    writes: tokio::sync::mpsc::Sender<store::Write>,
    stats: Counters,
}

impl Shared {
    /// Whether checks may be answered from the replica: listening, not
    /// missing an entry, and confirmed current within the bound (the
    /// background task clears `live` when a confirmation is late, so a
    /// check reads two flags and no clock).
    fn trusted(&self) -> bool {
        self.live() && !self.overflow.load(Ordering::Acquire)
    }

    /// Listening, caught up, and confirmed within the bound.
    fn live(&self) -> bool {
        self.confirmed.load(Ordering::Acquire) != 0
    }

    /// An error at once while the store is not listening (a flight claim,
    /// a registry read or write): the database is most likely unreachable,
    /// do not wait for a timeout.
    fn reachable(&self) -> Result<(), StoreError> {
        if self.live() {
            Ok(())
        } else {
            Err(StoreErrorKind::Unavailable.into())
        }
    }

    /// Not trusted until the next confirmation; whether it was before.
    fn distrust(&self) -> bool {
        self.confirmed.swap(0, Ordering::AcqRel) != 0
    }

    /// Milliseconds since the store started: the clock of confirmations.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The replica is current as of `began` (an [`elapsed_ms`](Self::elapsed_ms)
    /// reading taken before the catch-up that just succeeded): trusted again.
    fn confirm(&self, began: u64) {
        self.confirmed
            .store(began.saturating_add(1), Ordering::Release);
    }

    /// Remembers rows a failed write did not commit, for the next
    /// confirmation to write back (all of the replica once more than
    /// [`UNSHARED_ROWS`] wait).
    fn remember_unshared(&self, rows: impl IntoIterator<Item = store::Row>) {
        let mut unshared = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            if unshared.rows.len() < UNSHARED_ROWS {
                unshared.rows.push(row);
            } else {
                unshared.everything = true;
            }
        }
    }

    fn query_sent(&self) {
        Counters::add(&self.stats.queries, 1);
    }
}

/// Rows of failed writes kept to be written back; past it, the whole
/// replica is written back.
const UNSHARED_ROWS: usize = 10_000;

/// What a failed write left to write back.
#[derive(Default)]
struct Unshared {
    rows: Vec<store::Row>,
    /// More failed than [`UNSHARED_ROWS`]: write the whole replica back.
    everything: bool,
}

/// A store error for a configuration or an answer the store cannot use.
fn invalid(what: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, Some(what.to_owned().into()))
}

fn unavailable(error: sqlx::Error) -> StoreError {
    let kind = match error {
        sqlx::Error::PoolTimedOut => StoreErrorKind::Timeout,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, Some(Box::new(error)))
}

/// `future`, bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(elapsed) => Err(StoreError::new(
            StoreErrorKind::Timeout,
            Some(Box::new(elapsed)),
        )),
    }
}
