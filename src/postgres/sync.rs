//! The background task: keeps the replica current (`LISTEN` and catch-ups
//! by sequence number), writes it back when the database lost its data,
//! and deletes expired rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::watch;

use super::store::{Row, WRITE_BATCH};
use super::{Counters, FailureMode, Shared, TARGET, TaskGuards, bounded};
use crate::revoke::row::read_back;
use crate::revoke::{RevocationTarget, StoreError, StoreErrorKind};

/// Rows per catch-up query: at most 2 000 records of ~16 KiB (32 MiB) in memory at
/// once, whatever was planted in the table.
const READ_BATCH: i64 = 2_000;
/// Expired rows deleted per statement.
const PURGE_BATCH: i64 = 1_000;
/// The least time between two catch-ups that notifications ask for: a
/// flood of `NOTIFY` costs each instance at most one query per gap.
const NOTIFIED_CATCH_UP_GAP: Duration = Duration::from_millis(5);
/// Seconds past `until` a row is kept, for instances whose clock runs
/// behind (by up to the largest leeway).
const PURGE_MARGIN: i64 = 60;

/// What the task remembers between reconnections.
#[derive(Default)]
pub(super) struct SyncState {
    /// The highest sequence number read into the replica.
    seen: i64,
    /// The dataset's `epoch` last seen.
    epoch: Option<String>,
    /// The server's system identifier and timeline last seen (when the
    /// role may read them).
    identity: Option<(String, String)>,
    /// Why the database was found to have lost writes, until the whole
    /// replica is written back (a failed write-back is tried again).
    lost: Option<&'static str>,
    /// The epoch must be rotated (this instance found the loss), until a
    /// rotation succeeds.
    rotate: bool,
}

/// Keeps the replica current; reconnects with backoff when anything fails.
pub(super) async fn sync_loop(shared: Arc<Shared>) {
    // However this task ends (a panic included), the replica is not
    // trusted after it.
    let _untrusted = Untrusted(&shared);
    let mut backoff = Duration::from_millis(50);
    let mut state = SyncState::default();
    loop {
        let error = listen_and_follow(&shared, &mut state, &mut backoff).await;
        if shared.distrust() {
            let mode = match shared.failure_mode {
                FailureMode::Closed => "refusing authenticated requests (503) until it is back",
                FailureMode::Open => "answering from the local replica until it is back",
            };
            tracing::warn!(target: TARGET, %error, "lost the PostgreSQL revocation feed; {mode}");
        } else {
            tracing::debug!(target: TARGET, %error, "PostgreSQL revocation feed still unavailable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Ends trust when dropped.
struct Untrusted<'a>(&'a Shared);

impl Drop for Untrusted<'_> {
    fn drop(&mut self) {
        self.0.distrust();
    }
}

/// Clears `live` whenever the last successful catch-up began longer ago
/// than `confirm_interval` plus the timeout, whatever the follower is doing
/// (a long write-back, a slow statement): the bound on staleness holds
/// without a clock on the check path.
pub(super) async fn watchdog(shared: Arc<Shared>) {
    let bound = shared.confirm_interval + shared.timeout;
    let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    let tick = (bound / 8).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let confirmed = shared.confirmed.load(Ordering::Acquire);
        // Cleared only if no confirmation came in between.
        if confirmed != 0
            && shared.elapsed_ms().saturating_sub(confirmed - 1) > bound_ms
            && shared
                .confirmed
                .compare_exchange(confirmed, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::warn!(target: TARGET, ?bound, "the revocation replica was not confirmed within its bound; not trusted until it is");
        }
    }
}

/// Deletes expired rows every `resync_interval`: until a batch comes back
/// short, within a budget of five timeouts a round, on a task of its own
/// so confirmations never wait for it.
pub(super) async fn purge_loop(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.resync_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the first purge comes an interval later.
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(error) = shared.purge().await {
            tracing::debug!(target: TARGET, %error, "could not delete expired rows; trying again later");
        }
    }
}

/// Listens, reconciles, catches up, then follows; returns only on failure.
async fn listen_and_follow(
    shared: &Shared,
    state: &mut SyncState,
    backoff: &mut Duration,
) -> StoreError {
    let timeout = shared.timeout;
    // `LISTEN` holds a connection of its own (never one of the pool's),
    // opened with the pool's settings.
    let options = (*shared.pool.connect_options()).clone();
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy_with(options);
    let mut listener = match bounded(timeout, PgListener::connect_with(&listen_pool)).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    listener.eager_reconnect(false);
    if let Err(error) = bounded(timeout, listener.listen(&shared.sql.channel)).await {
        return error;
    }
    // Notifications are read by a task of their own (a read is not safe to
    // cancel halfway) and coalesced. A payload is a hint only: anyone who
    // may connect can `NOTIFY`, so a notification never decides anything
    // but to catch up (at most every `NOTIFIED_CATCH_UP_GAP`).
    let (announced, mut announcements) = watch::channel(());
    let reader = tokio::spawn(async move {
        // `Ok(None)`: the connection was lost; an error: the same.
        while let Ok(Some(_)) = listener.try_recv().await {
            announced.send_replace(());
        }
    });
    let _reader = TaskGuards(std::sync::Mutex::new(vec![reader.abort_handle()]));
    // Listening first, then reading: nothing written in between is missed.
    if let Err(error) = shared.reconcile(state, true).await {
        return error;
    }
    match shared.catch_up(state).await {
        Ok(began) => shared.confirm(began),
        Err(error) => return error,
    }
    shared.synced.notify_one();
    *backoff = Duration::from_millis(50);
    tracing::info!(target: TARGET, entries = shared.replica.len(), "revocation replica synchronised with PostgreSQL");
    let mut confirm = tokio::time::interval(shared.confirm_interval);
    confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    confirm.tick().await;
    let mut resync = tokio::time::interval(shared.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        // Each branch answers when the catch-up that confirms began.
        let result = tokio::select! {
            changed = announcements.changed() => match changed {
                Ok(()) => {
                    tokio::time::sleep(NOTIFIED_CATCH_UP_GAP).await;
                    announcements.borrow_and_update();
                    shared.catch_up(state).await
                }
                Err(_) => Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    Some("the LISTEN connection to PostgreSQL was lost".into()),
                )),
            },
            _ = confirm.tick() => match shared.reconcile(state, false).await {
                Ok(()) => shared.catch_up(state).await,
                Err(error) => Err(error),
            },
            _ = resync.tick() => shared.resync(state).await,
        };
        match result {
            Ok(began) => shared.confirm(began),
            Err(error) => return error,
        }
    }
}

impl Shared {
    /// Checks that the database still holds what this instance read
    /// (`full`: the server's identity too), and writes the replica back
    /// when it does not, or when a revocation of this instance may not
    /// have reached it.
    async fn reconcile(&self, state: &mut SyncState, full: bool) -> Result<(), StoreError> {
        self.query_sent();
        let row = bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.state.as_str())).fetch_optional(&self.pool),
        )
        .await?
        .ok_or_else(|| super::invalid("the store's state row is missing"))?;
        let seq: i64 = row.try_get(0).map_err(super::unavailable)?;
        let mut epoch: String = row.try_get(1).map_err(super::unavailable)?;
        let identity = if full {
            self.identity().await?
        } else {
            state.identity.clone()
        };
        if state.epoch.as_ref().is_some_and(|seen| *seen != epoch) {
            state.lost = Some(
                "the tables were created again, or another instance found the database had lost writes",
            );
        } else if seq < state.seen {
            state.lost = Some("the database went back to an earlier state");
            state.rotate = true;
        } else if let (Some(seen), Some(now)) = (&state.identity, &identity)
            && seen != now
        {
            state.lost =
                Some("the server is another cluster or timeline (restored, or a standby promoted)");
            state.rotate = true;
        }
        if state.lost.is_some() {
            // Whatever happens next, everything is read again.
            state.seen = 0;
        }
        if state.rotate {
            // Every other instance finds another epoch at its next
            // confirmation, however far the sequence has moved meanwhile:
            // it writes back and reads everything again too.
            self.query_sent();
            epoch = bounded(
                self.timeout,
                sqlx::query_scalar(AssertSqlSafe(self.sql.rotate.as_str())).fetch_one(&self.pool),
            )
            .await?;
            state.rotate = false;
        }
        // This instance's own rotation is not a change to it.
        state.epoch = Some(epoch);
        state.identity = identity;
        let unshared =
            std::mem::take(&mut *self.unshared.lock().unwrap_or_else(|e| e.into_inner()));
        let result = match (state.lost, unshared.everything) {
            (Some(why), _) => self.write_back(why).await,
            (None, true) => {
                self.write_back("more revocations of this instance than it keeps aside had not reached PostgreSQL")
                    .await
            }
            (None, false) => self.write_rows(&unshared.rows).await,
        };
        match result {
            Ok(()) => {
                state.lost = None;
                Ok(())
            }
            Err(error) => {
                // Tried again at the next confirmation.
                let mut kept = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
                kept.everything |= unshared.everything;
                drop(kept);
                self.remember_unshared(unshared.rows);
                Err(error)
            }
        }
    }

    /// Writes `rows` (this instance's revocations that a failed write did
    /// not commit), in bounded batches.
    async fn write_rows(&self, rows: &[Row]) -> Result<(), StoreError> {
        for batch in rows.chunks(WRITE_BATCH) {
            self.write(&batch.iter().collect::<Vec<_>>()).await?;
            Counters::add(&self.stats.written_back, batch.len() as u64);
        }
        if !rows.is_empty() {
            tracing::warn!(target: TARGET, entries = rows.len(), "wrote back revocations of this instance that had not reached PostgreSQL");
        }
        Ok(())
    }

    /// The server's system identifier and timeline, `None` where the role
    /// may not read them.
    async fn identity(&self) -> Result<Option<(String, String)>, StoreError> {
        self.query_sent();
        match bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.identity.as_str())).fetch_one(&self.pool),
        )
        .await
        {
            Ok(row) => Ok(row
                .try_get::<Option<String>, _>(0)
                .ok()
                .flatten()
                .zip(row.try_get::<Option<String>, _>(1).ok().flatten())),
            Err(error) if is_permission(&error) => {
                tracing::debug!(target: TARGET, "cannot read the server's system identifier; relying on the sequence and epoch checks");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads every row after the last one read into the replica; answers
    /// when it began (an [`elapsed_ms`](Self::elapsed_ms) reading): rows
    /// become visible in sequence order, so the replica then holds every
    /// row committed before that moment.
    async fn catch_up(&self, state: &mut SyncState) -> Result<u64, StoreError> {
        let began = self.elapsed_ms();
        let mut complete = true;
        let from_start = state.seen == 0;
        loop {
            self.query_sent();
            let rows = bounded(
                self.timeout,
                sqlx::query(AssertSqlSafe(self.sql.since.as_str()))
                    .bind(state.seen)
                    .bind(READ_BATCH)
                    .bind(self.clock.now().saturating_sub(PURGE_MARGIN))
                    .fetch_all(&self.pool),
            )
            .await?;
            let read = rows.len();
            for row in rows {
                let seq: i64 = row.try_get(0).map_err(super::unavailable)?;
                let record: Option<Vec<u8>> = row.try_get(2).map_err(super::unavailable)?;
                complete &= self.apply(record.as_deref());
                state.seen = state.seen.max(seq);
            }
            if read < READ_BATCH as usize {
                break;
            }
        }
        // Every live row is in the replica again: it can be trusted.
        if from_start && complete && self.overflow.swap(false, Ordering::AcqRel) {
            tracing::info!(target: TARGET, entries = self.replica.len(), "revocation replica has room again");
        }
        Ok(began)
    }

    /// Puts one row's revocation into the replica; `false` when the
    /// replica could not take it.
    fn apply(&self, record: Option<&[u8]>) -> bool {
        let now = self.clock.now();
        let Some(revocation) = record.and_then(|record| read_back(record, now)) else {
            tracing::debug!(target: TARGET, "ignored a malformed revocation row");
            return true;
        };
        match self.replica.insert(&revocation, now) {
            Ok(()) => true,
            // A reuse mark without room loses one generation's detection;
            // it does not make the replica untrusted.
            Err(_) if matches!(revocation.target, RevocationTarget::Replaced { .. }) => true,
            Err(error) => {
                if !self.overflow.swap(true, Ordering::AcqRel) {
                    tracing::error!(target: TARGET, %error, replica = ?self.replica, "revocation replica is full and misses a revocation; not trusted until a reload finds room");
                }
                false
            }
        }
    }

    /// The periodic round: a full reload while the replica misses an
    /// entry, and the server's identity.
    async fn resync(&self, state: &mut SyncState) -> Result<u64, StoreError> {
        if self.overflow.load(Ordering::Acquire) {
            state.seen = 0;
        }
        self.reconcile(state, true).await?;
        self.catch_up(state).await
    }

    /// Deletes expired rows, in batches, until a batch comes back short or
    /// five timeouts have passed, for each table.
    async fn purge(&self) -> Result<(), StoreError> {
        let before = self.clock.now().saturating_sub(PURGE_MARGIN);
        for statement in [
            &self.sql.purge_revocations,
            &self.sql.purge_flights,
            &self.sql.purge_sessions,
            &self.sql.purge_proofs,
        ] {
            // Each table its own budget: neither starves the other.
            let budget = std::time::Instant::now() + self.timeout * 5;
            while std::time::Instant::now() < budget {
                self.query_sent();
                let deleted = bounded(
                    self.timeout,
                    sqlx::query(AssertSqlSafe(statement.as_str()))
                        .bind(before)
                        .bind(PURGE_BATCH)
                        .execute(&self.pool),
                )
                .await?
                .rows_affected();
                if deleted < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Writes every live replica entry back (a row already there is left
    /// as it is), in bounded batches.
    async fn write_back(&self, why: &str) -> Result<(), StoreError> {
        let mut cursor = None;
        let mut written = 0usize;
        loop {
            let now = self.clock.now();
            let (batch, next) = self.replica.live_batch(cursor.as_ref(), now, WRITE_BATCH);
            let rows: Vec<Row> = batch.iter().filter_map(|r| Row::of(r).ok()).collect();
            if !rows.is_empty() {
                self.write(&rows.iter().collect::<Vec<_>>()).await?;
                written += rows.len();
                Counters::add(&self.stats.written_back, rows.len() as u64);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::warn!(target: TARGET, entries = written, "{why}: wrote the live revocations of this instance back");
        Ok(())
    }
}

/// Whether `error` is PostgreSQL's "insufficient privilege" (42501).
fn is_permission(error: &StoreError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<sqlx::Error>())
        .and_then(|error| error.as_database_error())
        .and_then(|error| error.code())
        .is_some_and(|code| code == "42501")
}
