//! The session registry in PostgreSQL: the table `{prefix}sessions`, a row
//! per session, read and written straight (one statement each), so every
//! instance lists what any instance recorded or ended at once.

use sqlx::{AssertSqlSafe, Row};

use super::store::PostgresStore;
use super::{Shared, bounded};
use crate::BoxFuture;
use crate::revoke::{
    MAX_SESSIONS_LIMIT, MAX_SID_BYTES, MAX_USER_AGENT_BYTES, SessionRegistry, SessionRow,
};
use crate::revoke::{StoreError, StoreErrorKind};

/// The most rows a listing reads: past the largest limit, a subject's rows
/// were planted, and the rest are not read.
const MAX_ROWS: i64 = 2 * MAX_SESSIONS_LIMIT as i64;

impl Shared {
    async fn list_sessions(
        &self,
        subject: String,
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.reachable()?;
        self.query_sent();
        let rows = bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.list_sessions.as_str()))
                .bind(&subject)
                .bind(now)
                .bind(MAX_ROWS + 1)
                .fetch_all(&self.pool),
        )
        .await?;
        // More rows than any limit lets a subject have: planted, and a
        // listing of part of them would be presented as complete.
        if rows.len() > MAX_ROWS as usize {
            return Err(super::invalid("too many session rows for one subject"));
        }
        let short = |text: &Option<String>| {
            text.as_ref()
                .is_none_or(|t| t.len() <= MAX_USER_AGENT_BYTES)
        };
        let mut sessions = Vec::with_capacity(rows.len());
        let mut garbage = Vec::new();
        for row in rows {
            let read = (|| -> Result<SessionRow, sqlx::Error> {
                let mut session = SessionRow::new(row.try_get::<String, _>(0)?, subject.clone());
                session.created = row.try_get(1)?;
                session.last_seen = row.try_get(2)?;
                session.expires = row.try_get(3)?;
                session.cap = row.try_get(4)?;
                session.user_agent = row.try_get(5)?;
                session.address = row.try_get(6)?;
                Ok(session)
            })();
            let session = read.map_err(super::unavailable)?;
            // A row this crate could not have written is skipped, and
            // deleted: it would count against the subject's limit.
            if session.sid.len() <= MAX_SID_BYTES
                && short(&session.user_agent)
                && short(&session.address)
            {
                sessions.push(session);
            } else {
                garbage.push(session.sid);
            }
        }
        if !garbage.is_empty() {
            self.remove_sessions(subject, garbage).await?;
        }
        Ok(sessions)
    }

    async fn insert_session(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.reachable()?;
        self.query_sent();
        // One transaction holding the subject's lock: the count of a login
        // sees every login of the same user committed before it (without
        // it, simultaneous logins would each count the others out).
        let added = bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(AssertSqlSafe(self.sql.lock_subject.as_str()))
                .bind(&row.subject)
                .execute(&mut *tx)
                .await?;
            let added = sqlx::query(AssertSqlSafe(self.sql.insert_session.as_str()))
                .bind(&row.subject)
                .bind(&row.sid)
                .bind(row.created)
                .bind(row.last_seen)
                .bind(row.expires)
                .bind(row.cap)
                .bind(&row.user_agent)
                .bind(&row.address)
                .bind(&remove)
                .bind(now)
                .bind(i64::try_from(max_rows).unwrap_or(i64::MAX))
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(added)
        })
        .await?;
        match added {
            Some(_) => Ok(()),
            None => Err(StoreError::new(
                StoreErrorKind::Full,
                Some("this subject has as many sessions as it may".into()),
            )),
        }
    }

    async fn touch_session(
        &self,
        subject: String,
        sid: String,
        last_seen: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        self.reachable()?;
        self.query_sent();
        bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.touch_session.as_str()))
                .bind(&subject)
                .bind(&sid)
                .bind(last_seen)
                .bind(expires)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    async fn remove_sessions(&self, subject: String, sids: Vec<String>) -> Result<(), StoreError> {
        if sids.is_empty() {
            return Ok(());
        }
        self.reachable()?;
        self.query_sent();
        bounded(
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sql.remove_sessions.as_str()))
                .bind(&subject)
                .bind(&sids)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }
}

/// Straight to the database (one statement each), shared by every instance.
impl SessionRegistry for PostgresStore {
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>> {
        let (shared, subject) = (self.shared.clone(), subject.to_owned());
        Box::pin(async move { shared.list_sessions(subject, now).await })
    }

    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.insert_session(row, remove, max_rows, now).await })
    }

    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (shared, subject, sid) = (self.shared.clone(), subject.to_owned(), sid.to_owned());
        Box::pin(async move { shared.touch_session(subject, sid, last_seen, expires).await })
    }

    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (shared, subject) = (self.shared.clone(), subject.to_owned());
        Box::pin(async move { shared.remove_sessions(subject, sids).await })
    }
}
