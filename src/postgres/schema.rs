//! The tables, created when missing, and every statement the store sends,
//! written once per store with its table prefix.

use sqlx::{AssertSqlSafe, PgPool, Row};

use super::{bounded, invalid};
use crate::revoke::StoreError;
use crate::revoke::row::MAX_RECORD_BYTES;
use crate::revoke::sealed::MAX_SEALED_BYTES;

/// The schema this version writes and reads.
pub(super) const SCHEMA_VERSION: i32 = 3;

/// The longest table prefix: PostgreSQL cuts identifiers at 63 bytes, and
/// the longest name the store makes adds 17.
const MAX_PREFIX: usize = 40;

/// The statements of one store, with its prefix in every name.
pub(super) struct Statements {
    pub(super) channel: String,
    /// `$1` the prefix's lock key: serialises the instances creating the
    /// tables at once.
    create: Vec<String>,
    pub(super) version: String,
    /// The dataset's state: `(seq, epoch)`.
    pub(super) state: String,
    /// Writes a batch of rows and announces them, one statement (one round
    /// trip, one transaction): `$1` rows, `$2` their `until_`, `$3` their
    /// records, `$4` their digests, `$5` the channel; answers the highest
    /// sequence number reserved.
    pub(super) write: String,
    /// Rows after `$1`, at most `$2`, in sequence order: `(seq, until_,
    /// record)`, `record` NULL when it is longer than a record can be or
    /// the row expired before `$3`.
    pub(super) since: String,
    /// A new random epoch: every instance reads everything again.
    pub(super) rotate: String,
    pub(super) purge_revocations: String,
    pub(super) purge_flights: String,
    pub(super) identity: String,
    /// `$1` id, `$2` sealed, `$3` until, `$4` now: installs the offer
    /// unless a live one is there; answers the one that stays, bounded.
    pub(super) claim: String,
    /// `$1` id, `$2` sealed, `$3` until: only when there is no row.
    pub(super) insert_flight: String,
    /// `$1` id: the row, locked.
    pub(super) lock_flight: String,
    /// `$1` id, `$2` sealed, `$3` until.
    pub(super) replace_flight: String,
    /// `$1` id, `$2` now: the live replacement, bounded.
    pub(super) flight: String,
    /// Version 1 to 2: the session registry's table.
    migrate: Vec<String>,
    /// Version 2 to 3: the DPoP replay cache's table.
    migrate_v3: Vec<String>,
    /// `$1` proof id, `$2` until, `$3` now: a row unless a live one is
    /// there; answers a row when this is the proof's first use.
    pub(super) remember_proof: String,
    pub(super) purge_proofs: String,
    /// `$1` subject, `$2` now, `$3` limit: the live rows, insert order.
    pub(super) list_sessions: String,
    /// `$1` subject: a transaction's lock on the subject's rows, so
    /// concurrent logins of one user count each other.
    pub(super) lock_subject: String,
    /// `$1` subject, `$2` sid, `$3` created, `$4` last_seen, `$5` expires,
    /// `$6` cap, `$7` user agent, `$8` address, `$9` sids to remove, `$10`
    /// now, `$11` the most rows: adds the row unless the subject would pass
    /// the limit (then nothing changes); answers a row when it added.
    pub(super) insert_session: String,
    /// `$1` subject, `$2` sid, `$3` last_seen, `$4` expires.
    pub(super) touch_session: String,
    /// `$1` subject, `$2` sids.
    pub(super) remove_sessions: String,
    pub(super) purge_sessions: String,
}

impl Statements {
    pub(super) fn new(prefix: &str) -> Result<Self, StoreError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !prefix.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(invalid(
                "the table prefix must be 1 to 40 lowercase ASCII letters, digits or `_`, not starting with a digit",
            ));
        }
        let p = prefix;
        let max_record = MAX_RECORD_BYTES;
        let max_sealed = MAX_SEALED_BYTES;
        Ok(Self {
            channel: format!("{p}revocations"),
            create: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}state (
                        id smallint PRIMARY KEY CHECK (id = 1),
                        version integer NOT NULL,
                        seq bigint NOT NULL,
                        epoch text NOT NULL)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}revocations (
                        seq bigint PRIMARY KEY,
                        until_ bigint NOT NULL,
                        record bytea NOT NULL,
                        digest bytea NOT NULL UNIQUE)"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {p}revocations_until ON {p}revocations (until_)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {p}flights (
                        id text PRIMARY KEY,
                        sealed bytea NOT NULL,
                        until_ bigint NOT NULL)"
                ),
                format!("CREATE INDEX IF NOT EXISTS {p}flights_until ON {p}flights (until_)"),
                sessions_table(p),
                sessions_index(p),
                proofs_table(p),
                proofs_index(p),
                format!(
                    "INSERT INTO {p}state (id, version, seq, epoch)
                     VALUES (1, {SCHEMA_VERSION}, 0, md5(random()::text || clock_timestamp()::text))
                     ON CONFLICT (id) DO NOTHING"
                ),
            ],
            version: format!("SELECT version FROM {p}state WHERE id = 1"),
            state: format!("SELECT seq, epoch FROM {p}state WHERE id = 1"),
            // The state row's lock, held to the end of the statement's
            // transaction, orders the writers: a row with a higher `seq`
            // is never visible before one with a lower `seq`, so a reader
            // that saw `seq` n has seen every row up to n. Numbers start
            // past any row already there (one planted ahead of the state
            // row would otherwise make every later write collide with it),
            // and catch-ups read no row ahead of the state row. The commit waits
            // for the WAL flush even where the server's default is
            // `synchronous_commit = off` or `local` (set for this
            // transaction only, read at its commit).
            write: format!(
                "WITH durable AS (
                    SELECT set_config('synchronous_commit',
                        CASE WHEN current_setting('synchronous_commit') IN ('off', 'local')
                             THEN 'on' ELSE current_setting('synchronous_commit') END, true)
                ), reserved AS (
                    UPDATE {p}state
                    SET seq = GREATEST(seq, (SELECT coalesce(max(seq), 0) FROM {p}revocations)) + $1
                    WHERE id = 1 RETURNING seq
                ), written AS (
                    INSERT INTO {p}revocations (seq, until_, record, digest)
                    SELECT reserved.seq - $1 + batch.n, batch.until_, batch.record, batch.digest
                    FROM reserved,
                         UNNEST($2::int8[], $3::bytea[], $4::bytea[])
                            WITH ORDINALITY AS batch(until_, record, digest, n)
                    ON CONFLICT (digest) DO NOTHING
                    RETURNING 1
                ), announced AS (
                    SELECT pg_notify($5, reserved.seq::text) FROM reserved
                )
                SELECT reserved.seq FROM reserved, durable, announced"
            ),
            since: format!(
                "SELECT seq, until_,
                        CASE WHEN octet_length(record) <= {max_record} AND until_ >= $3
                             THEN record END
                 FROM {p}revocations
                 WHERE seq > $1 AND seq <= (SELECT seq FROM {p}state WHERE id = 1)
                 ORDER BY seq LIMIT $2"
            ),
            rotate: format!(
                "UPDATE {p}state SET epoch = md5(random()::text || clock_timestamp()::text)
                 WHERE id = 1 RETURNING epoch"
            ),
            purge_revocations: format!(
                "DELETE FROM {p}revocations WHERE seq IN (
                    SELECT seq FROM {p}revocations WHERE until_ < $1 ORDER BY until_ LIMIT $2)"
            ),
            purge_flights: format!(
                "DELETE FROM {p}flights WHERE id IN (
                    SELECT id FROM {p}flights WHERE until_ < $1 ORDER BY until_ LIMIT $2)"
            ),
            identity: "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                              (SELECT timeline_id::text FROM pg_control_checkpoint())"
                .to_owned(),
            // A flight row may be lost in a crash of the server (it is
            // committed with `synchronous_commit = off`): the cost is one
            // more replacement for an old token, never a lost logout.
            claim: format!(
                "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
                 offered AS (
                    INSERT INTO {p}flights AS f (id, sealed, until_) VALUES ($1, $2, $3)
                    ON CONFLICT (id) DO UPDATE SET
                        sealed = CASE WHEN f.until_ < $4 THEN EXCLUDED.sealed ELSE f.sealed END,
                        until_ = CASE WHEN f.until_ < $4 THEN EXCLUDED.until_ ELSE f.until_ END
                    RETURNING octet_length(f.sealed) AS length,
                              CASE WHEN octet_length(f.sealed) <= {max_sealed} THEN f.sealed END AS sealed
                 )
                 SELECT offered.length, offered.sealed FROM offered, relaxed"
            ),
            insert_flight: format!(
                "INSERT INTO {p}flights (id, sealed, until_) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING RETURNING 1"
            ),
            lock_flight: format!(
                "SELECT octet_length(sealed),
                        CASE WHEN octet_length(sealed) <= {max_sealed} THEN sealed END, until_
                 FROM {p}flights WHERE id = $1 FOR UPDATE"
            ),
            replace_flight: format!(
                "UPDATE {p}flights SET sealed = $2, until_ = GREATEST(until_, $3) WHERE id = $1"
            ),
            flight: format!(
                "SELECT octet_length(sealed),
                        CASE WHEN octet_length(sealed) <= {max_sealed} THEN sealed END
                 FROM {p}flights WHERE id = $1 AND until_ >= $2"
            ),
            migrate: vec![
                sessions_table(p),
                sessions_index(p),
                format!("UPDATE {p}state SET version = 2 WHERE id = 1 AND version = 1"),
            ],
            migrate_v3: vec![
                proofs_table(p),
                proofs_index(p),
                format!("UPDATE {p}state SET version = 3 WHERE id = 1 AND version = 2"),
            ],
            // A proof row may be lost in a crash of the server (committed
            // with `synchronous_commit = off`, like a flight): the cost is
            // that proof's replay within its minute, never a lost logout.
            remember_proof: format!(
                "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
                 INSERT INTO {p}proofs AS r (id, until_) SELECT $1, $2 FROM relaxed
                 ON CONFLICT (id) DO UPDATE SET until_ = EXCLUDED.until_ WHERE r.until_ < $3
                 RETURNING 1"
            ),
            purge_proofs: format!(
                "DELETE FROM {p}proofs WHERE id IN (
                    SELECT id FROM {p}proofs WHERE until_ < $1 ORDER BY until_ LIMIT $2)"
            ),
            lock_subject: format!(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, {}))",
                lock_key(p)
            ),
            list_sessions: format!(
                "SELECT sid, created, last_seen, expires, cap, user_agent, address
                 FROM {p}sessions WHERE subject = $1 AND expires > $2 ORDER BY n LIMIT $3"
            ),
            // `kept` counts the rows that stay (the snapshot of a statement
            // does not see its own deletes); a login the server acknowledged
            // survives its crash, as a logout does.
            insert_session: format!(
                "WITH durable AS (
                    SELECT set_config('synchronous_commit',
                        CASE WHEN current_setting('synchronous_commit') IN ('off', 'local')
                             THEN 'on' ELSE current_setting('synchronous_commit') END, true)
                 ), kept AS (
                    SELECT count(*) AS n FROM {p}sessions
                    WHERE subject = $1 AND sid <> $2 AND expires > $10 AND NOT (sid = ANY($9))
                 ), gone AS (
                    DELETE FROM {p}sessions
                    WHERE subject = $1 AND (sid = ANY($9) OR expires <= $10)
                      AND (SELECT n FROM kept) < $11
                 )
                 INSERT INTO {p}sessions AS s
                    (subject, sid, created, last_seen, expires, cap, user_agent, address)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM kept, durable WHERE kept.n < $11
                 ON CONFLICT (subject, sid) DO UPDATE SET
                    created = EXCLUDED.created, last_seen = EXCLUDED.last_seen,
                    expires = EXCLUDED.expires, cap = EXCLUDED.cap,
                    user_agent = EXCLUDED.user_agent, address = EXCLUDED.address
                 RETURNING 1"
            ),
            touch_session: format!(
                "UPDATE {p}sessions
                 SET last_seen = GREATEST(last_seen, $3), expires = GREATEST(expires, $4)
                 WHERE subject = $1 AND sid = $2"
            ),
            remove_sessions: format!("DELETE FROM {p}sessions WHERE subject = $1 AND sid = ANY($2)"),
            purge_sessions: format!(
                "DELETE FROM {p}sessions WHERE (subject, sid) IN (
                    SELECT subject, sid FROM {p}sessions WHERE expires < $1 ORDER BY expires LIMIT $2)"
            ),
        })
    }

    /// Creates the tables when they are missing (one instance at a time,
    /// under an advisory lock), and refuses a schema this version cannot
    /// read. A role that may not create tables works once they exist.
    pub(super) async fn prepare(
        &self,
        pool: &PgPool,
        prefix: &str,
        timeout: std::time::Duration,
    ) -> Result<(), StoreError> {
        let version = match bounded(timeout, self.read_version(pool)).await {
            Ok(version) => version,
            Err(_) => {
                bounded(timeout, self.create(pool, prefix)).await?;
                bounded(timeout, self.read_version(pool)).await?
            }
        };
        let mut version = version;
        // Version 1 gains the registry's table, version 2 the proofs'.
        if version == Some(1) {
            bounded(timeout, self.run(pool, prefix, &self.migrate)).await?;
            version = bounded(timeout, self.read_version(pool)).await?;
        }
        if version == Some(2) {
            bounded(timeout, self.run(pool, prefix, &self.migrate_v3)).await?;
            version = bounded(timeout, self.read_version(pool)).await?;
        }
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(newer) if newer > SCHEMA_VERSION => Err(invalid(&format!(
                "the tables under the prefix `{prefix}` have schema version {newer}, newer than this version of tower-sliding-jwt reads ({SCHEMA_VERSION})"
            ))),
            Some(other) => Err(invalid(&format!(
                "the tables under the prefix `{prefix}` have schema version {other}, which this version cannot migrate"
            ))),
            None => Err(invalid(&format!(
                "the table {prefix}state has no state row: not a table of this store"
            ))),
        }
    }

    async fn read_version(&self, pool: &PgPool) -> Result<Option<i32>, sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(self.version.as_str()))
            .fetch_optional(pool)
            .await?;
        row.map(|row| row.try_get::<i32, _>(0)).transpose()
    }

    async fn create(&self, pool: &PgPool, prefix: &str) -> Result<(), sqlx::Error> {
        self.run(pool, prefix, &self.create).await
    }

    /// Runs `statements` in one transaction, under the prefix's advisory
    /// lock.
    async fn run(
        &self,
        pool: &PgPool,
        prefix: &str,
        statements: &[String],
    ) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(prefix))
            .execute(&mut *tx)
            .await?;
        for statement in statements {
            sqlx::query(AssertSqlSafe(statement.as_str()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// The session registry's table (schema version 2): a row per session,
/// `n` its insert order.
fn sessions_table(p: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}sessions (
            subject text NOT NULL,
            sid text NOT NULL,
            n bigint GENERATED ALWAYS AS IDENTITY,
            created bigint NOT NULL,
            last_seen bigint NOT NULL,
            expires bigint NOT NULL,
            cap bigint NOT NULL,
            user_agent text,
            address text,
            PRIMARY KEY (subject, sid))"
    )
}

fn sessions_index(p: &str) -> String {
    format!("CREATE INDEX IF NOT EXISTS {p}sessions_expires ON {p}sessions (expires)")
}

/// The DPoP replay cache's table (schema version 3): a row per proof
/// (SHA-256 of the key's thumbprint and the proof's `jti`), kept until the
/// proof is too old to be accepted anyway.
fn proofs_table(p: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}proofs (
            id bytea PRIMARY KEY,
            until_ bigint NOT NULL)"
    )
}

fn proofs_index(p: &str) -> String {
    format!("CREATE INDEX IF NOT EXISTS {p}proofs_until ON {p}proofs (until_)")
}

/// The advisory lock key of a prefix: the instances creating the same
/// tables at once take turns.
fn lock_key(prefix: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("tower-sliding-jwt schema {prefix}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_prefixes_are_taken() {
        assert!(Statements::new("tsj_").is_ok());
        assert!(Statements::new("app2_sessions_").is_ok());
        for bad in [
            "",
            "Tsj_",
            "tsj-",
            "tsj;drop table x;--",
            "tsj\"",
            "1tsj",
            "tsj ",
            "é_",
            &"a".repeat(MAX_PREFIX + 1),
        ] {
            assert!(Statements::new(bad).is_err(), "{bad:?}");
        }
    }
}
