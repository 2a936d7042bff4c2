//! [`DurableStore`]: revocations that survive a restart, a crash and a power
//! loss, in one local SQLite database (feature `sqlite`) — the store for a
//! single instance.
//!
//! Checks are answered from memory, by the same structure as
//! [`MemoryStore`]; the database is only written. A revocation becomes one
//! row, committed (WAL, `synchronous=FULL`) before the revocation is
//! acknowledged, by a writer thread that commits every revocation waiting
//! at that moment in one transaction (group commit). Opening checks the
//! database (`PRAGMA quick_check`) and reads the live rows back, each
//! checked against its own checksum; expired rows are deleted in bounded
//! batches as the writer goes.
//!
//! The session registry lives in the same database and the same memory:
//! listing is answered from memory, and a login, a renewal's touch or an
//! ending is committed by the same writer before it is acknowledged.
//!
//! The schema (version 2, in `PRAGMA user_version`; a version 1 file gains
//! the `sessions` table when opened):
//!
//! ```sql
//! CREATE TABLE revocations (
//!     seq      INTEGER PRIMARY KEY,  -- write order
//!     until_   INTEGER NOT NULL,     -- when the row can go
//!     record   BLOB NOT NULL,        -- kind | until | before | id
//!     checksum INTEGER NOT NULL      -- CRC-32C of until_ and record
//! );
//! CREATE INDEX revocations_until ON revocations (until_);
//! CREATE TABLE sessions (
//!     subject  TEXT NOT NULL,
//!     sid      TEXT NOT NULL,
//!     seq      INTEGER NOT NULL,     -- insert order
//!     expires  INTEGER NOT NULL,     -- when the row can go
//!     row      TEXT NOT NULL,        -- the row as JSON
//!     checksum INTEGER NOT NULL,     -- CRC-32C of expires and row
//!     PRIMARY KEY (subject, sid)
//! );
//! CREATE INDEX sessions_expires ON sessions (expires);
//! CREATE INDEX sessions_seq ON sessions (seq);
//! ```

// Without the `tracing` feature the events compile to nothing.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use rusqlite::{Connection, OpenFlags, params};

use super::registry_codec as codec;
use super::row::{MAX_RECORD_BYTES, decode, encode};
use super::{
    Lookup, MemoryStore, Revocation, RevocationStore, StoreError, StoreErrorKind, TokenIds,
};
use super::{SessionRegistry, SessionRow};
use crate::BoxFuture;
use crate::clock::{Clock, SystemClock};
use crate::log::event;

/// The schema this version writes and reads.
const SCHEMA_VERSION: i64 = 2;

/// The session registry's table (schema version 2).
const SESSIONS_TABLE: &str = "CREATE TABLE sessions (
         subject TEXT NOT NULL,
         sid TEXT NOT NULL,
         seq INTEGER NOT NULL,
         expires INTEGER NOT NULL,
         row TEXT NOT NULL,
         checksum INTEGER NOT NULL,
         PRIMARY KEY (subject, sid)
     );
     CREATE INDEX sessions_expires ON sessions (expires);
     CREATE INDEX sessions_seq ON sessions (seq);";
/// Expired rows deleted per transaction.
const PURGE_BATCH: i64 = 1000;
/// Rows per read while loading.
const LOAD_BATCH: i64 = 10_000;

/// A revocation store that keeps every answered revocation in a local SQLite
/// database (feature `sqlite`): the default choice for a single instance
/// (for a cluster, share one `redis::RedisStore`).
///
/// * **Durable before answered:** [`revoke`](RevocationStore::revoke)
///   completes only once the revocation is committed (WAL,
///   `synchronous=FULL`), so a logout answered 204 survives `kill -9` and a
///   power loss. Commits run on the store's own writer thread, never on the
///   caller's: revocations waiting at the same moment share one transaction.
/// * **Damage is refused, never forgotten:** opening runs
///   `PRAGMA quick_check`, and every row carries a checksum of its values: a
///   damaged database, or a flipped bit inside a value, makes
///   [`open`](Self::open) fail with [`StoreErrorKind::Corrupted`] naming the
///   file — never "open and forget a logout".
/// * **Checks cost what [`MemoryStore`]'s cost:** they are answered from
///   memory; the verify path never touches the disk.
/// * **Bounded:** entries expire as in [`MemoryStore`] (exactly when what
///   they revoke stops verifying), capacity and [`StoreErrorKind::Full`]
///   behave the same, expired rows are deleted in bounded batches, and an
///   id over 16 KiB is refused before anything is written.
/// * **Fails closed:** a commit that fails (disk full, read-only file
///   system) fails the revocation with [`StoreErrorKind::Unavailable`] (the
///   session is still refused by this process until it restarts; answer the
///   logout with an error so the client retries).
/// * **One process per file:** a sidecar `<path>.lock` is locked while the
///   store is open; a second opener gets an error. The database's `-wal` and
///   `-shm` files are part of the store. The files are owner-only (`0600`).
/// * **SQLite:** through `rusqlite`, with SQLite compiled in (`bundled`). A
///   build links one `libsqlite3-sys`; this one is the version sqlx 0.9's
///   SQLite driver uses, so an application on sqlx shares it.
///
/// ```
/// use tower_sliding_jwt::{DurableStore, Key, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tsj-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = DurableStore::open(dir.join("revocations.sqlite3"))?;
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_revocation_store(store)
///     .build()?;
/// # let _ = layer;
/// # drop(std::fs::remove_dir_all(&dir));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DurableStore {
    memory: MemoryStore,
    writer: Arc<Handle>,
    path: Arc<Path>,
}

/// The store's hold on its writer thread: when the last clone goes, the
/// thread commits what is pending, closes the database, releases the lock
/// and ends, before the drop returns (so the file can be opened again at
/// once).
struct Handle {
    writer: Arc<Writer>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::ops::Deref for Handle {
    type Target = Writer;

    fn deref(&self) -> &Writer {
        &self.writer
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.writer.lock().closed = true;
        self.writer.wake.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The writer thread never panics; if it did, there is nothing
            // left to wait for.
            let _ = thread.join();
        }
    }
}

/// Configures a [`DurableStore`].
pub struct DurableStoreBuilder {
    path: PathBuf,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DurableStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableStoreBuilder")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl DurableStore {
    /// Opens (or creates) the revocation database at `path`, with the
    /// defaults: one million live entries, the system clock.
    ///
    /// # Errors
    /// See [`DurableStoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder(path).open()
    }

    /// A builder for a store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> DurableStoreBuilder {
        DurableStoreBuilder {
            path: path.as_ref().to_owned(),
            capacity: 1_000_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// Live (and not yet reclaimed) revocations.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revocation database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions committed so far (each holds every revocation that was
    /// waiting when it began): for measuring group commit.
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.writer
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    fn fail_next_write(&self) {
        self.writer
            .fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl DurableStoreBuilder {
    /// Live revocations the store may hold (default one million), as
    /// [`MemoryStore::with_capacity`]: a new one beyond it is refused with
    /// [`StoreErrorKind::Full`]. Reuse-detection marks have a budget of the
    /// same size of their own.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock that decides, at open and when purging, which entries are
    /// still live (default: the system clock). Give it the layer's clock.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens the database (creating it, owner-only, when missing), checks it,
    /// loads its live entries and starts the writer thread.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when the database or its lock file
    /// cannot be created, opened, locked (another process has it) or read;
    /// [`StoreErrorKind::Corrupted`] when it is not a SQLite database,
    /// fails `quick_check`, has another schema version, or a row's checksum
    /// or value is wrong; [`StoreErrorKind::Full`] when it holds more live
    /// entries than the capacity. Every error names the file.
    pub fn open(self) -> Result<DurableStore, StoreError> {
        let path = self.path;
        let failed = |kind: StoreErrorKind, what: &str, error: &dyn fmt::Display| {
            StoreError::new(
                kind,
                Some(Box::new(io::Error::other(format!(
                    "revocation database {}: {what}: {error}",
                    path.display()
                )))),
            )
        };
        // One process per file: a sidecar lock, never a second handle on
        // the database itself.
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = owner_only(&PathBuf::from(lock_path))
            .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot open its lock file", &e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => {
                failed(StoreErrorKind::Unavailable, "cannot lock", &e)
            }
            std::fs::TryLockError::WouldBlock => failed(
                StoreErrorKind::Unavailable,
                "cannot lock",
                &"another process has it open",
            ),
        })?;
        // Created owner-only before SQLite opens it.
        owner_only(&path).map_err(|e| failed(StoreErrorKind::Unavailable, "cannot create", &e))?;
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot open", &e))?;
        prepare(&db).map_err(|e| match e {
            Prepare::Sql(e) if is_damage(&e) => failed(StoreErrorKind::Corrupted, "damaged", &e),
            Prepare::Sql(e) => failed(StoreErrorKind::Unavailable, "cannot prepare", &e),
            Prepare::Damaged(what) => failed(StoreErrorKind::Corrupted, "damaged", &what),
        })?;
        let memory = MemoryStore::with_capacity(self.capacity);
        let now = self.clock.now();
        let rows = load(&db, &memory, now).map_err(|e| match e {
            Load::Sql(e) if is_damage(&e) => failed(StoreErrorKind::Corrupted, "damaged", &e),
            Load::Sql(e) => failed(StoreErrorKind::Unavailable, "cannot read", &e),
            Load::Damaged(seq) => failed(
                StoreErrorKind::Corrupted,
                "damaged",
                &format_args!("row {seq} does not match its checksum"),
            ),
            Load::Full(e) => e,
        })?;
        let sessions = load_sessions(&db, &memory, now).map_err(|e| match e {
            Load::Sql(e) if is_damage(&e) => failed(StoreErrorKind::Corrupted, "damaged", &e),
            Load::Sql(e) => failed(StoreErrorKind::Unavailable, "cannot read", &e),
            Load::Damaged(seq) => failed(
                StoreErrorKind::Corrupted,
                "damaged",
                &format_args!("session row {seq} does not match its checksum"),
            ),
            Load::Full(e) => e,
        })?;
        event!(
            info,
            path = %path.display(),
            live = memory.len(),
            rows,
            sessions,
            "durable revocation store opened"
        );
        let writer = Writer::start(db, lock, self.clock)
            .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot start its writer", &e))?;
        Ok(DurableStore {
            memory,
            writer,
            path: path.into(),
        })
    }
}

impl fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.path)
            .field("live", &self.memory.len())
            .finish_non_exhaustive()
    }
}

impl RevocationStore for DurableStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        self.memory.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let record = encode(&revocation);
        // An id the store could not read back is refused before anything
        // is written, here or in memory.
        if record.len() > MAX_RECORD_BYTES {
            return Box::pin(std::future::ready(Err(StoreError::new(
                StoreErrorKind::Unavailable,
                Some("the id is too long to keep (over 16 KiB)".into()),
            ))));
        }
        // Honoured by this process at once (or refused when full, before
        // anything is written); acknowledged once it is committed.
        if let Err(error) = self.memory.insert(&revocation, now) {
            return Box::pin(std::future::ready(Err(error)));
        }
        if revocation.until <= now {
            return Box::pin(std::future::ready(Ok(())));
        }
        let done = self.writer.submit(Op::Revocation {
            until: revocation.until,
            record,
        });
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        Box::pin(async move {
            let done = done.await;
            #[cfg(feature = "metrics")]
            crate::stats::exported::store_round_trip("durable", started);
            done.map_err(|error| {
                event!(warn, %error, "a revocation could not be made durable; this process honours it until it restarts");
                StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error)))
            })
        })
    }

    fn keeps_replacements(&self) -> bool {
        true
    }

    fn keeps_cutoffs(&self) -> bool {
        true
    }

    fn has_room_for_mark(&self, subject: Option<&str>, now: i64) -> bool {
        self.memory.has_room_for_mark(subject, now)
    }

    fn sessions(&self) -> Option<&dyn SessionRegistry> {
        Some(self)
    }

    fn feed(&self) -> Option<&dyn crate::store::RevocationFeed> {
        // Every revocation reaches the in-memory part.
        Some(&self.memory)
    }
}

/// Answered from memory; each change committed before it is acknowledged.
impl SessionRegistry for DurableStore {
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>> {
        Box::pin(std::future::ready(Ok(self
            .memory
            .registry()
            .list(subject, now))))
    }

    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let registry = self.memory.registry();
        if let Err(error) = registry.insert(row.clone(), &remove, max_rows, now) {
            return Box::pin(std::future::ready(Err(error)));
        }
        let (subject, sid) = (row.subject.clone(), row.sid.clone());
        let done = self.writer.submit(Op::Session { row, remove });
        let memory = self.memory.clone();
        Box::pin(async move {
            done.await.map_err(|error| {
                // Not on disk: not listed either (its login hands out no
                // token).
                memory.registry().remove(&subject, &[sid]);
                not_durable(error)
            })
        })
    }

    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        match self
            .memory
            .registry()
            .touch(subject, sid, last_seen, expires)
        {
            None => Box::pin(std::future::ready(Ok(()))),
            Some(row) => {
                let done = self.writer.submit(Op::Session {
                    row,
                    remove: Vec::new(),
                });
                Box::pin(async move { done.await.map_err(not_durable) })
            }
        }
    }

    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.memory.registry().remove(subject, &sids);
        let done = self.writer.submit(Op::Ended {
            subject: subject.to_owned(),
            sids,
        });
        Box::pin(async move { done.await.map_err(not_durable) })
    }
}

fn not_durable(error: io::Error) -> StoreError {
    event!(warn, %error, "a session registry change could not be made durable");
    StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error)))
}

/// Opens (creating when missing) `path`, owner-only.
fn owner_only(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Whether SQLite's error says the file is damaged or not a database.
fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

enum Prepare {
    Sql(rusqlite::Error),
    Damaged(String),
}

impl From<rusqlite::Error> for Prepare {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

/// WAL, full syncs, a structural check, and the schema (created when the
/// database is new, refused when it is another version).
fn prepare(db: &Connection) -> Result<(), Prepare> {
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = db.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Prepare::Damaged(format!(
            "cannot use write-ahead logging (journal mode {mode})"
        )));
    }
    db.execute_batch("PRAGMA synchronous=FULL;")?;
    let check: String = db.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(Prepare::Damaged(format!("quick_check: {check}")));
    }
    let version: i64 = db.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match version {
        0 => {
            let tables: i64 =
                db.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
            if tables != 0 {
                return Err(Prepare::Damaged(
                    "a database that is not a revocation store".into(),
                ));
            }
            db.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 CREATE TABLE revocations (
                     seq INTEGER PRIMARY KEY,
                     until_ INTEGER NOT NULL,
                     record BLOB NOT NULL,
                     checksum INTEGER NOT NULL
                 );
                 CREATE INDEX revocations_until ON revocations (until_);
                 {SESSIONS_TABLE}
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
            Ok(())
        }
        // Version 1 (no registry): the sessions table joins it.
        1 => {
            db.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 {SESSIONS_TABLE}
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
            Ok(())
        }
        SCHEMA_VERSION => Ok(()),
        other => Err(Prepare::Damaged(format!(
            "schema version {other}; this version reads {SCHEMA_VERSION}"
        ))),
    }
}

/// The checksum of a row: CRC-32C of its `until_` and its `record`.
fn checksum(until: i64, record: &[u8]) -> i64 {
    let mut bytes = Vec::with_capacity(8 + record.len());
    bytes.extend_from_slice(&until.to_le_bytes());
    bytes.extend_from_slice(record);
    i64::from(crc32c(&bytes))
}

enum Load {
    Sql(rusqlite::Error),
    Damaged(i64),
    Full(StoreError),
}

impl From<rusqlite::Error> for Load {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

/// Reads every live row into `memory`, in write order, each checked against
/// its checksum and bounds; answers how many it read.
fn load(db: &Connection, memory: &MemoryStore, now: i64) -> Result<u64, Load> {
    let mut statement = db.prepare(
        "SELECT seq, until_, record, checksum FROM revocations
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let (mut after, mut rows) = (i64::MIN, 0u64);
    loop {
        let mut batch = statement.query(params![after, LOAD_BATCH])?;
        let mut read = 0;
        while let Some(row) = batch.next()? {
            read += 1;
            let seq: i64 = row.get(0)?;
            let until: i64 = row.get(1)?;
            let record = row.get_ref(2)?.as_blob().map_err(|_| Load::Damaged(seq))?;
            let sum: i64 = row.get(3)?;
            after = seq;
            if record.len() > MAX_RECORD_BYTES || checksum(until, record) != sum {
                return Err(Load::Damaged(seq));
            }
            let revocation = decode(record).ok_or(Load::Damaged(seq))?;
            if revocation.until != until {
                return Err(Load::Damaged(seq));
            }
            rows += 1;
            if until > now {
                memory.insert(&revocation, now).map_err(Load::Full)?;
            }
        }
        if read < LOAD_BATCH {
            return Ok(rows);
        }
    }
}

/// Reads the registry's live rows into `memory`, in insert order, each
/// checked against its checksum and bounds; answers how many.
fn load_sessions(db: &Connection, memory: &MemoryStore, now: i64) -> Result<u64, Load> {
    let mut statement = db.prepare(
        "SELECT seq, expires, row, checksum FROM sessions WHERE expires > ?1 ORDER BY seq",
    )?;
    let mut batch = statement.query(params![now])?;
    let mut rows = 0;
    while let Some(stored) = batch.next()? {
        let seq: i64 = stored.get(0)?;
        let expires: i64 = stored.get(1)?;
        let text = stored
            .get_ref(2)?
            .as_str()
            .map_err(|_| Load::Damaged(seq))?;
        let sum: i64 = stored.get(3)?;
        if checksum(expires, text.as_bytes()) != sum {
            return Err(Load::Damaged(seq));
        }
        let row = codec::decode(text)
            .filter(|row| row.expires == expires)
            .ok_or(Load::Damaged(seq))?;
        memory.registry().restore(row);
        rows += 1;
    }
    Ok(rows)
}

/// The database as the writer thread holds it.
struct Db {
    db: Connection,
    /// Held while the store is open: one process per file.
    _lock: File,
}

impl Db {
    /// Commits `batch` in one transaction.
    fn commit(&mut self, batch: &[Pending], fail: bool) -> rusqlite::Result<()> {
        let transaction = self.db.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO revocations (until_, record, checksum) VALUES (?1, ?2, ?3)",
            )?;
            let mut upsert = transaction.prepare_cached(
                "INSERT OR REPLACE INTO sessions (subject, sid, seq, expires, row, checksum)
                 VALUES (?1, ?2,
                     coalesce((SELECT seq FROM sessions WHERE subject = ?1 AND sid = ?2),
                              (SELECT max(seq) + 1 FROM sessions), 0),
                     ?3, ?4, ?5)",
            )?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM sessions WHERE subject = ?1 AND sid = ?2")?;
            for Pending { op, .. } in batch {
                match op {
                    Op::Revocation { until, record } => {
                        insert.execute(params![until, record, checksum(*until, record)])?;
                    }
                    Op::Session { row, remove } => {
                        for sid in remove {
                            delete.execute(params![row.subject, sid])?;
                        }
                        let text = codec::encode(row);
                        let sum = checksum(row.expires, text.as_bytes());
                        upsert.execute(params![row.subject, row.sid, row.expires, text, sum])?;
                    }
                    Op::Ended { subject, sids } => {
                        for sid in sids {
                            delete.execute(params![subject, sid])?;
                        }
                    }
                }
            }
        }
        if fail {
            // Tests: the commit fails as a full disk would; nothing stays.
            transaction.rollback()?;
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            ));
        }
        transaction.commit()
    }

    /// Deletes up to [`PURGE_BATCH`] rows that expired by `now` and still
    /// match their checksum (a damaged row is kept, and refused at the next
    /// open); answers how many it deleted.
    fn purge(&mut self, now: i64) -> rusqlite::Result<usize> {
        let transaction = self.db.transaction()?;
        let expired: Vec<i64> = {
            let mut select = transaction.prepare_cached(
                "SELECT seq, until_, record, checksum FROM revocations
                 WHERE until_ <= ?1 LIMIT ?2",
            )?;
            let rows = select.query_map(params![now, PURGE_BATCH], |row| {
                let (seq, until, record, sum): (i64, i64, Vec<u8>, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let intact = checksum(until, &record) == sum
                    && decode(&record).is_some_and(|r| r.until == until && until <= now);
                Ok(intact.then_some(seq))
            })?;
            rows.filter_map(Result::transpose)
                .collect::<rusqlite::Result<_>>()?
        };
        {
            let mut delete =
                transaction.prepare_cached("DELETE FROM revocations WHERE seq = ?1")?;
            for seq in &expired {
                delete.execute([seq])?;
            }
        }
        // The registry's expired rows, a bounded batch too.
        let rows = transaction.execute(
            "DELETE FROM sessions WHERE rowid IN
                 (SELECT rowid FROM sessions WHERE expires <= ?1 LIMIT ?2)",
            params![now, PURGE_BATCH],
        )?;
        transaction.commit()?;
        Ok(expired.len().max(rows))
    }
}

/// A write waiting to be committed, and its caller's waker.
struct Pending {
    op: Op,
    done: Arc<Done>,
}

/// What one write does.
enum Op {
    Revocation {
        until: i64,
        record: Vec<u8>,
    },
    /// A registry row added or replaced (removing `remove` of its subject
    /// in the same transaction).
    Session {
        row: SessionRow,
        remove: Vec<String>,
    },
    /// Registry rows deleted.
    Ended {
        subject: String,
        sids: Vec<String>,
    },
}

#[derive(Default)]
struct Done {
    state: Mutex<(Option<io::Result<()>>, Option<Waker>)>,
}

impl Done {
    fn complete(&self, result: io::Result<()>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = Some(result);
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }
}

/// Completes once the revocation is on disk (or failed to be written).
struct Durable(Arc<Done>);

impl Future for Durable {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct Queue {
    pending: Vec<Pending>,
    /// The last store handle is gone: the thread ends.
    closed: bool,
}

/// The writer thread's mailbox.
struct Writer {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Transactions committed.
    commits: std::sync::atomic::AtomicU64,
    /// Tests: the next commit fails as a full disk would.
    fail_next: std::sync::atomic::AtomicBool,
}

impl Writer {
    fn start(db: Connection, lock: File, clock: Arc<dyn Clock>) -> io::Result<Arc<Handle>> {
        let writer = Arc::new(Self {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            commits: std::sync::atomic::AtomicU64::new(0),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = writer.clone();
        let db = Db { db, _lock: lock };
        let thread = std::thread::Builder::new()
            .name("tsj-revocations".into())
            .spawn(move || write_loop(&shared, db, &*clock))?;
        Ok(Arc::new(Handle {
            writer,
            thread: Mutex::new(Some(thread)),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(&self, op: Op) -> Durable {
        let done = Arc::new(Done::default());
        self.lock().pending.push(Pending {
            op,
            done: done.clone(),
        });
        self.wake.notify_one();
        Durable(done)
    }
}

/// Takes every waiting revocation, commits them in one transaction,
/// completes them, then deletes a bounded batch of expired rows. Ends, and
/// closes the database, once the store is dropped and nothing is pending.
fn write_loop(writer: &Writer, mut db: Db, clock: &dyn Clock) {
    let mut expired_left = true;
    loop {
        let (batch, fail) = {
            let mut queue = writer.lock();
            while queue.pending.is_empty() && !queue.closed {
                queue = writer
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if queue.pending.is_empty() {
                // Closed: the database and its lock go with `db`.
                return;
            }
            let fail = writer
                .fail_next
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            (std::mem::take(&mut queue.pending), fail)
        };
        let committed = db.commit(&batch, fail);
        if committed.is_ok() {
            writer
                .commits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for pending in &batch {
            pending.done.complete(match &committed {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::other(error.to_string())),
            });
        }
        // Housekeeping after the answers: a bounded batch of expired rows.
        if committed.is_ok() || expired_left {
            let now = clock.now();
            match db.purge(now) {
                Ok(deleted) => expired_left = deleted as i64 == PURGE_BATCH,
                Err(error) => {
                    event!(warn, %error, "could not delete expired revocations; they stay until the next try");
                }
            }
        }
    }
}

/// CRC-32C (Castagnoli), bit-reflected, table-driven.
fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::revoke::RevocationTarget;
    use crate::revoke::row::MAX_ID_BYTES;

    const NOW: i64 = 1_800_000_000;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tsj-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn session(sid: &str, until: i64) -> Revocation {
        Revocation {
            target: RevocationTarget::Session(sid.into()),
            until,
            reason: None,
        }
    }

    fn revoked(store: &DurableStore, sid: &str, now: i64) -> bool {
        let ids = TokenIds {
            sid: Some(sid),
            jti: None,
            sub: None,
            authenticated_at: None,
            issued_at: None,
        };
        matches!(
            store.check(&ids, now),
            Lookup::Ready(Ok(super::super::RevocationStatus::Revoked))
        )
    }

    fn open(path: &Path, clock: &ManualClock) -> Result<DurableStore, StoreError> {
        DurableStore::builder(path).with_clock(clock.clone()).open()
    }

    #[tokio::test]
    async fn revocations_survive_a_reopen_and_expire_on_time() {
        let path = dir("reopen").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        {
            let store = open(&path, &clock).unwrap();
            store.revoke(session("a", NOW + 100), NOW).await.unwrap();
            store.revoke(session("b", NOW + 10), NOW).await.unwrap();
            let cutoff = Revocation {
                target: RevocationTarget::Superseded {
                    sid: "c".into(),
                    before: NOW,
                    keep: "k".into(),
                },
                until: NOW + 100,
                reason: None,
            };
            store.revoke(cutoff, NOW).await.unwrap();
        }
        clock.advance(std::time::Duration::from_secs(20));
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "a", NOW + 20));
        assert!(!revoked(&store, "b", NOW + 20), "expired while closed");
        assert_eq!(store.len(), 2);
        // Expired rows are deleted as the writer goes.
        store
            .revoke(session("d", NOW + 100), NOW + 20)
            .await
            .unwrap();
        drop(store);
        let db = Connection::open(&path).unwrap();
        let rows: i64 = db
            .query_row("SELECT count(*) FROM revocations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }

    fn row(sid: &str, subject: &str, expires: i64) -> SessionRow {
        let mut row = SessionRow::new(sid, subject);
        (row.created, row.last_seen, row.expires, row.cap) = (NOW, NOW, expires, NOW + 1000);
        row.user_agent = Some("agent".into());
        row
    }

    fn sids(store: &DurableStore, subject: &str, now: i64) -> Vec<String> {
        store
            .memory
            .registry()
            .list(subject, now)
            .into_iter()
            .map(|row| row.sid)
            .collect()
    }

    #[tokio::test]
    async fn the_session_registry_survives_a_reopen_in_insert_order() {
        let path = dir("registry").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        {
            let store = open(&path, &clock).unwrap();
            SessionRegistry::insert(&store, row("b", "u", NOW + 100), vec![], 10, NOW)
                .await
                .unwrap();
            SessionRegistry::insert(&store, row("a", "u", NOW + 100), vec![], 10, NOW)
                .await
                .unwrap();
            SessionRegistry::insert(&store, row("x", "u", NOW + 10), vec![], 10, NOW)
                .await
                .unwrap();
            SessionRegistry::insert(&store, row("c", "u", NOW + 100), vec!["b".into()], 10, NOW)
                .await
                .unwrap();
            SessionRegistry::touch(&store, "u", "a", NOW + 5, NOW + 500)
                .await
                .unwrap();
            SessionRegistry::remove(&store, "u", vec!["c".into()])
                .await
                .unwrap();
            SessionRegistry::insert(&store, row("d", "v", NOW + 100), vec![], 10, NOW)
                .await
                .unwrap();
        }
        clock.advance(std::time::Duration::from_secs(20));
        let store = open(&path, &clock).unwrap();
        assert_eq!(
            sids(&store, "u", NOW + 20),
            ["a"],
            "b removed, x expired, c ended"
        );
        let a = &store.memory.registry().list("u", NOW + 20)[0];
        assert_eq!(
            (a.last_seen, a.expires, a.user_agent.as_deref()),
            (NOW + 5, NOW + 500, Some("agent"))
        );
        assert_eq!(sids(&store, "v", NOW + 20), ["d"]);
        // A failed commit leaves nothing listed.
        store.fail_next_write();
        let failed =
            SessionRegistry::insert(&store, row("e", "v", NOW + 100), vec![], 10, NOW + 20).await;
        assert_eq!(failed.unwrap_err().kind(), StoreErrorKind::Unavailable);
        assert_eq!(sids(&store, "v", NOW + 20), ["d"]);
    }

    #[tokio::test]
    async fn a_version_1_file_gains_the_registry_and_a_damaged_row_is_refused() {
        let clock = ManualClock::new(NOW);
        let path = dir("v1").join("revocations.sqlite3");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE revocations (seq INTEGER PRIMARY KEY, until_ INTEGER NOT NULL,
                     record BLOB NOT NULL, checksum INTEGER NOT NULL);
                 CREATE INDEX revocations_until ON revocations (until_);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        {
            let store = open(&path, &clock).unwrap();
            SessionRegistry::insert(&store, row("a", "u", NOW + 100), vec![], 10, NOW)
                .await
                .unwrap();
        }
        assert_eq!(sids(&open(&path, &clock).unwrap(), "u", NOW), ["a"]);
        let db = Connection::open(&path).unwrap();
        db.execute(
            "UPDATE sessions SET row = replace(row, 'agent', 'agenT')",
            [],
        )
        .unwrap();
        drop(db);
        assert_eq!(
            open(&path, &clock).unwrap_err().kind(),
            StoreErrorKind::Corrupted
        );
    }

    #[tokio::test]
    async fn a_damaged_database_or_row_is_refused_never_opened_and_forgotten() {
        let clock = ManualClock::new(NOW);
        // A flipped bit inside a row's value.
        let path = dir("flip").join("revocations.sqlite3");
        {
            let store = open(&path, &clock).unwrap();
            store
                .revoke(session("alice", NOW + 100), NOW)
                .await
                .unwrap();
        }
        {
            let db = Connection::open(&path).unwrap();
            db.execute(
                "UPDATE revocations SET record = CAST(replace(CAST(record AS TEXT), 'alice', 'alicf') AS BLOB)",
                [],
            )
            .unwrap();
        }
        let error = open(&path, &clock).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Corrupted);
        assert!(
            std::error::Error::source(&error)
                .is_some_and(|cause| cause.to_string().contains("revocations.sqlite3")),
            "{error:?}"
        );
        // Garbage where the database was.
        let path = dir("garbage").join("revocations.sqlite3");
        std::fs::write(&path, vec![0x5Au8; 8192]).unwrap();
        assert_eq!(
            open(&path, &clock).unwrap_err().kind(),
            StoreErrorKind::Corrupted
        );
        // Another program's SQLite database.
        let path = dir("foreign").join("other.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x);")
            .unwrap();
        assert_eq!(
            open(&path, &clock).unwrap_err().kind(),
            StoreErrorKind::Corrupted
        );
    }

    #[tokio::test]
    async fn an_over_long_id_is_refused_with_nothing_written() {
        let path = dir("long").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(store.revoke(session(&long, NOW + 100), NOW).await.is_err());
        assert!(
            !revoked(&store, &long, NOW),
            "refused, yet honoured in memory"
        );
        assert!(store.is_empty());
        store
            .revoke(session(&"y".repeat(MAX_ID_BYTES - 1), NOW + 100), NOW)
            .await
            .unwrap();
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert_eq!(store.len(), 1, "the file opens, with what was answered");
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_revocation_and_leaves_nothing() {
        let path = dir("fail").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        store.fail_next_write();
        assert!(store.revoke(session("a", NOW + 100), NOW).await.is_err());
        store.revoke(session("b", NOW + 100), NOW).await.unwrap();
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert!(!revoked(&store, "a", NOW), "a failed commit left a row");
        assert!(revoked(&store, "b", NOW));
    }

    #[tokio::test]
    async fn one_process_at_a_time_and_full_as_in_memory() {
        let path = dir("lock").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        let store = DurableStore::builder(&path)
            .with_clock(clock.clone())
            .with_capacity(1)
            .open()
            .unwrap();
        let second = open(&path, &clock).unwrap_err();
        assert_eq!(second.kind(), StoreErrorKind::Unavailable);
        store.revoke(session("a", NOW + 100), NOW).await.unwrap();
        assert_eq!(
            store
                .revoke(session("b", NOW + 100), NOW)
                .await
                .unwrap_err()
                .kind(),
            StoreErrorKind::Full
        );
        drop(store);
        // Released by the drop: open again at once.
        assert!(open(&path, &clock).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_revocations_share_commits() {
        let path = dir("group").join("revocations.sqlite3");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        let revocations: Vec<_> = (0..64)
            .map(|i| store.revoke(session(&format!("s{i}"), NOW + 100), NOW))
            .collect();
        for revocation in revocations {
            revocation.await.unwrap();
        }
        assert!(
            store.commits() < 64,
            "{} commits for 64 revocations",
            store.commits()
        );
        assert_eq!(store.len(), 64);
    }

    #[test]
    fn crc32c_matches_the_reference() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}
