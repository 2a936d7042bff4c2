//! The store: revocations answered from the local replica, written through
//! to PostgreSQL by one writer task per instance (group commit) and
//! announced to the other instances.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use sqlx::AssertSqlSafe;
use tokio::sync::{mpsc, oneshot};

use super::{Counters, PostgresStats, Shared, TARGET};
use super::{TaskGuards, bounded};
use crate::BoxFuture;
use crate::revoke::replica_lookup;
use crate::revoke::row::{MAX_RECORD_BYTES, encode};
use crate::revoke::{
    Lookup, Revocation, RevocationStore, SharedFlight, StoreError, StoreErrorKind, TokenIds,
};

/// Revocations per write statement.
pub(super) const WRITE_BATCH: usize = 500;

/// A [`RevocationStore`] and [`SharedFlight`] shared by every instance
/// through PostgreSQL; see the [module documentation](super) for how it
/// synchronises, how stale it can be and what happens when the database
/// fails.
///
/// Clones share one replica, one pool and one set of background tasks,
/// which stop when the last clone is dropped.
#[derive(Clone)]
pub struct PostgresStore {
    pub(super) shared: Arc<Shared>,
    _tasks: Arc<TaskGuards>,
}

impl PostgresStore {
    pub(super) fn new(shared: Arc<Shared>, tasks: Arc<TaskGuards>) -> Self {
        Self {
            shared,
            _tasks: tasks,
        }
    }

    /// Whether the replica is confirmed current right now: listening,
    /// caught up within its bound, and holding every live revocation.
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

    /// What this store (all its clones) has done so far.
    pub fn stats(&self) -> PostgresStats {
        self.shared.stats.snapshot()
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("channel", &self.shared.sql.channel)
            .field("synchronised", &self.is_synchronised())
            .field("failure_mode", &self.shared.failure_mode)
            .field("replica", &self.shared.replica)
            .finish()
    }
}

impl RevocationStore for PostgresStore {
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
        // `FailureMode::Open` serves requests from a stale replica, but
        // never renews on its word.
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
        let shared = &self.shared;
        // An id no instance could read back is refused before anything is
        // written, here or in the database.
        let row = match Row::of(&revocation) {
            Ok(row) => row,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        // This instance honours it at once, whatever happens to the
        // database; a full replica refuses it.
        if let Err(error) = shared.replica.insert(&revocation, now) {
            return Box::pin(std::future::ready(Err(error)));
        }
        if revocation.until <= now {
            return Box::pin(std::future::ready(Ok(())));
        }
        // Queued now, before the caller awaits: revocations made together
        // share a commit even when their futures are awaited one by one.
        // A write that fails is kept by the writer and written back at the
        // next confirmation. With the queue full (the database slower than
        // the logouts), the caller's future waits for room within the
        // timeout, holding its own row; if it gives up or is dropped first,
        // the row is kept aside the same way (bounded).
        let (done, answer) = oneshot::channel();
        let unsent = match shared.writes.try_send(Write { row, done }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(write)) => Some(write),
            Err(mpsc::error::TrySendError::Closed(write)) => {
                shared.remember_unshared([write.row]);
                return Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())));
            }
        };
        let timeout = shared.timeout;
        // Made before the future, so a future dropped without ever being
        // polled keeps its row aside too.
        let mut unsent = Unsent {
            shared,
            write: unsent,
        };
        Box::pin(async move {
            let committed = async {
                if unsent.write.is_some() {
                    let permit = shared
                        .writes
                        .reserve()
                        .await
                        .map_err(|_| StoreError::from(StoreErrorKind::Unavailable))?;
                    if let Some(write) = unsent.write.take() {
                        permit.send(write);
                    }
                }
                answer
                    .await
                    .unwrap_or_else(|_| Err(StoreErrorKind::Unavailable.into()))
            };
            #[cfg(feature = "metrics")]
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(timeout, committed).await {
                Ok(result) => result,
                Err(elapsed) => Err(StoreError::new(
                    StoreErrorKind::Timeout,
                    Some(Box::new(elapsed)),
                )),
            };
            #[cfg(feature = "metrics")]
            crate::stats::exported::store_round_trip("postgres", started);
            if let Err(error) = &result {
                tracing::warn!(target: TARGET, %error, "could not share a revocation through PostgreSQL in time; this instance honours it, and writes it back if it did not reach the database");
            }
            drop(unsent);
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

/// One revocation as a row: its `until_`, `record` and `digest`.
pub(super) struct Row {
    until: i64,
    record: Vec<u8>,
    digest: Vec<u8>,
}

impl Row {
    /// The row of `revocation`; an error when its ids are longer than any
    /// instance reads back.
    pub(super) fn of(revocation: &Revocation) -> Result<Self, StoreError> {
        let record = encode(revocation);
        if record.len() > MAX_RECORD_BYTES {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                Some("the id is too long to keep (over 16 KiB)".into()),
            ));
        }
        let mut digest = Sha256::new();
        digest.update(revocation.until.to_be_bytes());
        digest.update(&record);
        Ok(Self {
            until: revocation.until,
            digest: digest.finalize().to_vec(),
            record,
        })
    }
}

/// A write its caller could not queue yet: kept aside for the next
/// confirmation if the caller gives up (or is dropped) before it is queued.
struct Unsent<'a> {
    shared: &'a Shared,
    write: Option<Write>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            self.shared.remember_unshared([write.row]);
        }
    }
}

/// A revocation waiting for the writer, and who waits for its commit.
pub(super) struct Write {
    row: Row,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl Shared {
    /// Writes `rows` in one statement, announced; answers the highest
    /// sequence number it reserved.
    pub(super) async fn write(&self, rows: &[&Row]) -> Result<i64, StoreError> {
        let untils: Vec<i64> = rows.iter().map(|row| row.until).collect();
        let records: Vec<&[u8]> = rows.iter().map(|row| row.record.as_slice()).collect();
        let digests: Vec<&[u8]> = rows.iter().map(|row| row.digest.as_slice()).collect();
        self.query_sent();
        let top: Option<i64> = bounded(
            self.timeout,
            sqlx::query_scalar(AssertSqlSafe(self.sql.write.as_str()))
                .bind(rows.len() as i64)
                .bind(untils)
                .bind(records)
                .bind(digests)
                .bind(self.sql.channel.as_str())
                .fetch_optional(&self.pool),
        )
        .await?;
        Counters::add(&self.stats.commits, 1);
        Counters::add(&self.stats.revocations_written, rows.len() as u64);
        top.ok_or_else(|| super::invalid("the store's state row is missing"))
    }
}

/// The writer task: every revocation waiting when it is free goes into one
/// statement (up to [`WRITE_BATCH`]), and each is answered once it is
/// committed.
pub(super) async fn write_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut last = 0;
    while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // Under load (the last commit took several), the callers it just
        // answered are about to queue their next revocations: give them a
        // moment (a few turns of the scheduler, no timer) so they join
        // this commit instead of waiting for the next one.
        if last > 1 {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            while batch.len() < WRITE_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
        }
        last = batch.len();
        let rows: Vec<&Row> = batch.iter().map(|write| &write.row).collect();
        let result = shared.write(&rows).await;
        let mut failed = Vec::new();
        for write in batch.drain(..) {
            let answer = match &result {
                Ok(_) => Ok(()),
                // Each waiter gets the error, its cause as text.
                Err(error) => Err(StoreError::new(
                    error.kind(),
                    std::error::Error::source(error).map(|cause| cause.to_string().into()),
                )),
            };
            let _ = write.done.send(answer);
            if result.is_err() {
                failed.push(write.row);
            }
        }
        if !failed.is_empty() {
            // Whether or not anyone still waits for them.
            shared.remember_unshared(failed);
        }
    }
}
