//! The single flight shared through PostgreSQL: the first replacement
//! offered for an old token wins, sealed with keys only holders of the old
//! token can derive (as the Redis store's).

use std::sync::Arc;

use sqlx::{AssertSqlSafe, Row as _};

use super::store::PostgresStore;
use super::{Counters, Shared, bounded};
use crate::BoxFuture;
use crate::revoke::sealed::{FlightKeys, MAX_SEALED_BYTES, MAX_TOKEN_BYTES, Malformed};
use crate::revoke::{SharedFlight, StoreError};

/// Seconds a flight row outlives its old token by the writer's clock, so an
/// instance whose clock runs behind (by up to the largest leeway) still
/// finds it while the old token verifies there.
const CLOCK_MARGIN: i64 = 60;

impl SharedFlight for PostgresStore {
    fn claim(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<(Arc<str>, i64), StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.claim(keys, token, expires_at, until).await })
    }

    fn supersede(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.supersede(keys, token, expires_at, until).await })
    }

    fn replacement(
        &self,
        old: &[u8],
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.replacement(keys).await })
    }
}

/// A stored entry's length and its bytes (NULL when over the bound).
type Stored = (Option<i32>, Option<Vec<u8>>);

impl Shared {
    async fn claim(
        &self,
        keys: FlightKeys,
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> Result<(Arc<str>, i64), StoreError> {
        let now = self.clock.now();
        if until <= now {
            // The old token no longer verifies: nobody else can ask.
            return Ok((token, expires_at));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed.into());
        }
        Counters::add(&self.stats.flight_claims, 1);
        let answer = self.offer(&keys, &token, expires_at, until, now).await;
        match answer {
            Ok(Some(winner)) => {
                Counters::add(&self.stats.flight_lost, 1);
                Ok(winner)
            }
            Ok(None) => Ok((token, expires_at)),
            Err(error) => {
                Counters::add(&self.stats.flight_errors, 1);
                Err(error)
            }
        }
    }

    /// `None` when this offer won, the winner otherwise.
    async fn offer(
        &self,
        keys: &FlightKeys,
        token: &str,
        expires_at: i64,
        until: i64,
        now: i64,
    ) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        self.reachable()?;
        let sealed = keys.seal(expires_at, token)?;
        self.query_sent();
        let row = bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.claim.as_str()))
                .bind(keys.id.as_str())
                .bind(sealed.as_slice())
                .bind(until.saturating_add(CLOCK_MARGIN))
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await?;
        let stored: Stored = (row.try_get(0).ok(), row.try_get(1).ok().flatten());
        match stored {
            (_, Some(stored)) if stored == sealed => Ok(None),
            (_, Some(stored)) => Ok(Some(keys.open(&stored)?)),
            _ => Err(Malformed.into()),
        }
    }

    /// The live replacement stored for the old token of `keys`, if one
    /// sealed for it is there (read bounded; anything else is garbage).
    async fn replacement(&self, keys: FlightKeys) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        self.reachable()?;
        self.query_sent();
        let row = bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.flight.as_str()))
                .bind(keys.id.as_str())
                .bind(self.clock.now())
                .fetch_optional(&self.pool),
        )
        .await?;
        let stored = row.and_then(|row| row.try_get::<Option<Vec<u8>>, _>(1).ok().flatten());
        Ok(stored.and_then(|stored| keys.open(&stored).ok()))
    }

    /// Installs `token` as the replacement whatever was offered before,
    /// and answers the live replacement it displaced (if it was one sealed
    /// for this old token: anything else was never handed out). One
    /// transaction: the row is inserted, or locked and then replaced, so a
    /// parallel claim either sees the new replacement or is displaced and
    /// answered here.
    async fn supersede(
        &self,
        keys: FlightKeys,
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        let now = self.clock.now();
        if until <= now {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed.into());
        }
        self.reachable()?;
        let sealed = keys.seal(expires_at, &token)?;
        let until = until.saturating_add(CLOCK_MARGIN);
        self.query_sent();
        let displaced = bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            // A row deleted (expired) between the two steps: try again.
            for _ in 0..3 {
                let inserted = sqlx::query(AssertSqlSafe(self.sql.insert_flight.as_str()))
                    .bind(keys.id.as_str())
                    .bind(sealed.as_slice())
                    .bind(until)
                    .fetch_optional(&mut *tx)
                    .await?;
                if inserted.is_some() {
                    tx.commit().await?;
                    return Ok(None);
                }
                let Some(row) = sqlx::query(AssertSqlSafe(self.sql.lock_flight.as_str()))
                    .bind(keys.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    continue;
                };
                let previous: Option<Vec<u8>> = row.try_get(1)?;
                let previous_until: i64 = row.try_get(2)?;
                sqlx::query(AssertSqlSafe(self.sql.replace_flight.as_str()))
                    .bind(keys.id.as_str())
                    .bind(sealed.as_slice())
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(previous.filter(|_| previous_until >= now));
            }
            Err(sqlx::Error::RowNotFound)
        })
        .await?;
        Ok(displaced
            .filter(|previous| previous.len() <= MAX_SEALED_BYTES)
            .and_then(|previous| keys.open(&previous).ok()))
    }
}
