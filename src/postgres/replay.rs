//! The DPoP replay cache in PostgreSQL: a row per proof in `{prefix}proofs`,
//! inserted unless a live one is there: one statement per DPoP request,
//! shared by every instance; expired rows go with the periodic purge.

use sqlx::AssertSqlSafe;

use super::bounded;
use super::store::PostgresStore;
use crate::BoxFuture;
use crate::revoke::{ReplayCache, StoreError};

impl ReplayCache for PostgresStore {
    fn remember(&self, id: [u8; 32], until: i64) -> BoxFuture<'static, Result<bool, StoreError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            shared.reachable()?;
            shared.query_sent();
            let now = shared.clock.now();
            let row = bounded(
                shared.timeout,
                sqlx::query(AssertSqlSafe(shared.sql.remember_proof.as_str()))
                    .bind(&id[..])
                    .bind(until)
                    .bind(now)
                    .fetch_optional(&shared.pool),
            )
            .await?;
            Ok(row.is_some())
        })
    }
}
