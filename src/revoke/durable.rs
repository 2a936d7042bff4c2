//! [`DurableStore`]: revocations that survive a restart, a crash and a power
//! loss, in one local file — the store for a single instance.
//!
//! Checks are answered from memory, by the same structure as
//! [`MemoryStore`]; the file is only written. A revocation is appended as
//! one checksummed record and the file is synced before the revocation is
//! acknowledged, by a writer thread that syncs every revocation waiting at
//! that moment at once (group commit). Opening reads the file back; when
//! dead records outnumber the live ones the file is rewritten with the live
//! entries only (a new file, synced, renamed over the old one).
//!
//! The format: the 8-byte magic `TSJREV1\n`, then records of
//! `length: u32 LE | crc32c(body): u32 LE | body`, the body being
//! `kind: u8 ('s' session, 'j' token, 'u' subject, 'r' replaced token) |
//! until: i64 LE | before: i64 LE (a subject's `before`, a mark's
//! `used_at`) | id bytes`.

// Without the `tracing` feature the events compile to nothing.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::{
    Lookup, MemoryStore, Revocation, RevocationStore, RevocationTarget, StoreError, StoreErrorKind,
    TokenIds,
};
use crate::BoxFuture;
use crate::clock::{Clock, SystemClock};
use crate::log::event;

const MAGIC: &[u8; 8] = b"TSJREV1\n";
/// Length and checksum in front of every record body.
const FRAME: usize = 8;
/// Kind, `until` and `before` in front of the id.
const FIXED: usize = 17;
/// The longest body read back: an id is at most a token's size (1 MiB).
const MAX_BODY: usize = FIXED + 1024 * 1024;
/// The file is rewritten once its records outnumber the live entries by
/// this factor (and it holds at least [`COMPACT_AFTER`] records).
const DEAD_FACTOR: u64 = 2;
const COMPACT_AFTER: u64 = 4096;
/// Live entries copied per batch when compacting.
const COMPACT_BATCH: usize = 4096;
/// The most bytes one write appends before it syncs (a single larger record
/// is written alone): a torn write is never longer than this plus a record.
const MAX_BATCH: usize = 1024 * 1024;
/// The longest tail a torn write can leave.
const MAX_TORN: usize = MAX_BATCH + FRAME + MAX_BODY;

/// A revocation store that keeps every answered revocation on disk: the
/// default choice for a single instance (for a cluster, share one
/// `redis::RedisStore`).
///
/// * **Durable before answered:** [`revoke`](RevocationStore::revoke)
///   completes only once the revocation is in the file and the file is
///   synced (`fdatasync`), so a logout answered 204 survives `kill -9` and a
///   power loss. The sync runs on the store's own writer thread, never on
///   the caller's: revocations waiting at the same moment share one sync.
/// * **Crash-safe:** each record carries a CRC-32C. A torn last write (the
///   records of a batch that was never acknowledged) is dropped when the
///   file is opened, with a warning; a damaged record followed by intact
///   ones means the file itself is damaged, and opening refuses it with an
///   error naming the file — never "open and forget a logout".
/// * **Checks cost what [`MemoryStore`]'s cost:** they are answered from
///   memory; the verify path never touches the disk.
/// * **Bounded:** entries expire as in [`MemoryStore`] (exactly when what
///   they revoke stops verifying), capacity and [`StoreErrorKind::Full`]
///   behave the same, and the file is rewritten with the live entries when
///   dead records outnumber them, so its size follows the live entries.
/// * **Fails closed:** a write or sync that fails (disk full, read-only file
///   system, a removed disk) fails the revocation with
///   [`StoreErrorKind::Unavailable`] (the session is still refused by this
///   process until it restarts; answer the logout with an error so the
///   client retries), and a file that cannot be read is an error at
///   [`open`](Self::open), never an empty store.
/// * The file is created owner-only (`0600`) and locked: a second process
///   opening it gets an error.
///
/// ```
/// use tower_sliding_jwt::{DurableStore, Key, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tsj-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = DurableStore::open(dir.join("revocations.log"))?;
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
/// thread writes what is pending, closes the file and ends, before the drop
/// returns (so the file can be opened again at once).
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
    /// Opens (or creates) the revocation file at `path`, with the defaults:
    /// one million live entries, the system clock.
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

    /// The revocation file.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// The clock that decides, at open and when compacting, which entries
    /// are still live (default: the system clock). Give it the layer's clock.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens the file (creating it, owner-only, when missing), loads its live
    /// entries and starts the writer thread.
    ///
    /// # Errors
    /// [`StoreErrorKind::Unavailable`] when the file cannot be created,
    /// opened, locked (another process has it), read or synced;
    /// [`StoreErrorKind::Corrupted`] when it is not a revocation file or a
    /// record in it is damaged; [`StoreErrorKind::Full`] when it holds more
    /// live entries than the capacity. Every error names the file.
    pub fn open(self) -> Result<DurableStore, StoreError> {
        let path = self.path;
        let failed = |kind: StoreErrorKind, what: &str, error: io::Error| {
            StoreError::new(
                kind,
                Some(Box::new(io::Error::new(
                    error.kind(),
                    format!("revocation file {}: {what}: {error}", path.display()),
                ))),
            )
        };
        let mut file =
            open_file(&path).map_err(|e| failed(StoreErrorKind::Unavailable, "cannot open", e))?;
        file.try_lock().map_err(|e| {
            let e = match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => {
                    io::Error::new(io::ErrorKind::WouldBlock, "another process has it open")
                }
            };
            failed(StoreErrorKind::Unavailable, "cannot lock", e)
        })?;
        let memory = MemoryStore::with_capacity(self.capacity);
        let now = self.clock.now();
        let loaded = load(&mut file, &memory, now).map_err(|e| match e {
            Load::Io(e) => failed(StoreErrorKind::Unavailable, "cannot read", e),
            Load::Corrupted(at) => failed(
                StoreErrorKind::Corrupted,
                "damaged",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the record at byte {at} is damaged, and is not a torn last write"),
                ),
            ),
            Load::NotOurs => failed(
                StoreErrorKind::Corrupted,
                "not a revocation file",
                io::Error::new(io::ErrorKind::InvalidData, "unknown header"),
            ),
            Load::Full(e) => e,
        })?;
        if loaded.torn > 0 {
            event!(
                warn,
                path = %path.display(),
                bytes = loaded.torn,
                "revocation file ended in a torn write (never acknowledged): dropped it"
            );
        }
        file.set_len(loaded.good)
            .and_then(|()| file.seek(SeekFrom::Start(loaded.good)).map(drop))
            .and_then(|()| file.sync_all())
            .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot sync", e))?;
        sync_dir(&path)
            .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot sync its directory", e))?;
        event!(
            info,
            path = %path.display(),
            live = memory.len(),
            records = loaded.records,
            "durable revocation store opened"
        );
        let writer = Writer::start(
            Log {
                file,
                path: path.clone(),
                bytes: loaded.good,
                records: loaded.records,
                broken: None,
            },
            memory.clone(),
            self.clock,
        )
        .map_err(|e| failed(StoreErrorKind::Unavailable, "cannot start its writer", e))?;
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
        // Honoured by this process at once (or refused when full, before
        // anything is written); acknowledged once it is on disk.
        if let Err(error) = self.memory.insert(&revocation, now) {
            return Box::pin(std::future::ready(Err(error)));
        }
        if revocation.until <= now {
            return Box::pin(std::future::ready(Ok(())));
        }
        let done = self.writer.submit(encode(&revocation));
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
}

fn open_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Syncs the directory holding `path`, so a created or renamed file is
/// there after a power loss too.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn encode(revocation: &Revocation) -> Vec<u8> {
    // A session's cut-off keeps its `keep` and `sid` in the id field as
    // `{keep length}:{keep}{sid}`.
    let cutoff;
    let (kind, id, before) = match &revocation.target {
        RevocationTarget::Session(sid) => (b's', sid.as_str(), 0),
        RevocationTarget::Superseded { sid, before, keep } => {
            cutoff = format!("{}:{keep}{sid}", keep.len());
            (b'c', cutoff.as_str(), *before)
        }
        RevocationTarget::Token(jti) => (b'j', jti.as_str(), 0),
        RevocationTarget::Subject { subject, before } => (b'u', subject.as_str(), *before),
        RevocationTarget::Replaced { jti, used_at, .. } => (b'r', jti.as_str(), *used_at),
    };
    let mut body = Vec::with_capacity(FIXED + id.len());
    body.push(kind);
    body.extend_from_slice(&revocation.until.to_le_bytes());
    body.extend_from_slice(&before.to_le_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut record = Vec::with_capacity(FRAME + body.len());
    // An id is at most a token long (1 MiB): the length fits.
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

fn decode(body: &[u8]) -> Option<Revocation> {
    let (&kind, rest) = body.split_first()?;
    let until = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let before = i64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let id = std::str::from_utf8(rest.get(16..)?).ok()?.to_owned();
    let target = match kind {
        b's' => RevocationTarget::Session(id),
        b'j' => RevocationTarget::Token(id),
        b'u' => RevocationTarget::Subject {
            subject: id,
            before,
        },
        b'c' => {
            let (length, rest) = id.split_once(':')?;
            let length: usize = length.parse().ok()?;
            if !rest.is_char_boundary(length) {
                return None;
            }
            let (keep, sid) = rest.split_at(length);
            RevocationTarget::Superseded {
                sid: sid.to_owned(),
                before,
                keep: keep.to_owned(),
            }
        }
        // The subject of a mark is not kept in the file: a mark read back
        // counts against the budget of marks only.
        b'r' => RevocationTarget::Replaced {
            jti: id,
            used_at: before,
            subject: None,
        },
        _ => return None,
    };
    Some(Revocation { target, until })
}

/// What reading the file found.
struct Loaded {
    /// Where the intact records end.
    good: u64,
    /// Intact records.
    records: u64,
    /// Bytes of a torn last write, dropped.
    torn: u64,
}

enum Load {
    Io(io::Error),
    Corrupted(u64),
    NotOurs,
    Full(StoreError),
}

/// The record starting at `at` in `bytes`: its revocation and where the
/// next one starts, or `None` when it is not an intact record.
fn record(bytes: &[u8], at: usize) -> Option<(Revocation, usize)> {
    let frame = bytes.get(at..at.checked_add(FRAME)?)?;
    let length = u32::from_le_bytes(frame[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(frame[4..].try_into().ok()?);
    if !(FIXED..=MAX_BODY).contains(&length) {
        return None;
    }
    let start = at + FRAME;
    let body = bytes.get(start..start.checked_add(length)?)?;
    if crc32c(body) != crc {
        return None;
    }
    Some((decode(body)?, start + length))
}

/// Reads every record of `file` into `memory`; an empty file gets the header.
fn load(file: &mut File, memory: &MemoryStore, now: i64) -> Result<Loaded, Load> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(Load::Io)?;
    if bytes.is_empty() {
        file.write_all(MAGIC).map_err(Load::Io)?;
        return Ok(Loaded {
            good: MAGIC.len() as u64,
            records: 0,
            torn: 0,
        });
    }
    if bytes.len() < MAGIC.len() {
        // A header torn while the file was being created: nothing was ever
        // acknowledged in it.
        if MAGIC.starts_with(&bytes) {
            file.set_len(0).map_err(Load::Io)?;
            file.seek(SeekFrom::Start(0)).map_err(Load::Io)?;
            file.write_all(MAGIC).map_err(Load::Io)?;
            return Ok(Loaded {
                good: MAGIC.len() as u64,
                records: 0,
                torn: bytes.len() as u64,
            });
        }
        return Err(Load::NotOurs);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(Load::NotOurs);
    }
    let mut at = MAGIC.len();
    let mut records = 0;
    while at < bytes.len() {
        match record(&bytes, at) {
            Some((revocation, next)) => {
                memory.insert(&revocation, now).map_err(Load::Full)?;
                records += 1;
                at = next;
            }
            None => {
                // A torn write ends the file and is never longer than one
                // batch; a damaged record further from the end, or one whose
                // length leads to an intact record, is damage to what was
                // acknowledged.
                let rest = bytes.len() - at;
                let next = bytes
                    .get(at..at + 4)
                    .and_then(|length| length.try_into().ok())
                    .map(|length| at + FRAME + u32::from_le_bytes(length) as usize);
                if rest > MAX_TORN || next.is_some_and(|next| record(&bytes, next).is_some()) {
                    return Err(Load::Corrupted(at as u64));
                }
                return Ok(Loaded {
                    good: at as u64,
                    records,
                    torn: (bytes.len() - at) as u64,
                });
            }
        }
    }
    Ok(Loaded {
        good: at as u64,
        records,
        torn: 0,
    })
}

/// The file as the writer thread holds it.
struct Log {
    file: File,
    path: PathBuf,
    /// Where the last synced record ends.
    bytes: u64,
    records: u64,
    /// Why the file cannot be written any more (a failed write could not be
    /// undone): every later revocation fails.
    broken: Option<io::ErrorKind>,
}

impl Log {
    /// Appends `batch` and syncs; on failure, cuts the file back to its last
    /// synced length, so no half-written record stays in front of later ones.
    fn append(&mut self, batch: &[u8], records: u64, fail: bool) -> io::Result<()> {
        if let Some(kind) = self.broken {
            return Err(io::Error::new(
                kind,
                "the revocation file could not be repaired after a failed write",
            ));
        }
        let written = if fail {
            // Tests: a full disk, after half the batch reached the file.
            self.file
                .write_all(&batch[..batch.len() / 2])
                .and_then(|()| {
                    Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "no space left on device",
                    ))
                })
        } else {
            self.file
                .write_all(batch)
                .and_then(|()| self.file.sync_data())
        };
        match written {
            Ok(()) => {
                self.bytes += batch.len() as u64;
                self.records += records;
                Ok(())
            }
            Err(error) => {
                let repaired = self
                    .file
                    .set_len(self.bytes)
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.bytes)).map(drop));
                if repaired.is_err() {
                    self.broken = Some(error.kind());
                }
                Err(error)
            }
        }
    }

    /// Rewrites the file with the live entries of `memory` only: a new file,
    /// synced, renamed over the old one, the directory synced.
    fn compact(&mut self, memory: &MemoryStore, now: i64) -> io::Result<()> {
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".compact");
        let tmp_path = PathBuf::from(tmp_path);
        let mut tmp = OpenOptions::new();
        tmp.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            tmp.mode(0o600);
        }
        let mut tmp = tmp.open(&tmp_path)?;
        let mut out = io::BufWriter::new(&mut tmp);
        out.write_all(MAGIC)?;
        let (mut bytes, mut records) = (MAGIC.len() as u64, 0u64);
        let mut cursor = None;
        loop {
            let (batch, next) = memory.live_batch(cursor.as_ref(), now, COMPACT_BATCH);
            for revocation in &batch {
                let record = encode(revocation);
                out.write_all(&record)?;
                bytes += record.len() as u64;
                records += 1;
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        out.flush()?;
        drop(out);
        tmp.sync_all()?;
        tmp.try_lock()
            .map_err(|_| io::Error::other("cannot lock the compacted file"))?;
        std::fs::rename(&tmp_path, &self.path)?;
        sync_dir(&self.path)?;
        // The renamed file is the revocation file now; append to it.
        tmp.seek(SeekFrom::Start(bytes))?;
        self.file = tmp;
        self.bytes = bytes;
        self.records = records;
        Ok(())
    }
}

/// A revocation waiting to be synced, and its caller's waker.
struct Pending {
    record: Vec<u8>,
    done: Arc<Done>,
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
    log: Option<Log>,
}

/// The writer thread's mailbox.
struct Writer {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Tests: the next write fails as a full disk would.
    fail_next: std::sync::atomic::AtomicBool,
}

impl Writer {
    fn start(log: Log, memory: MemoryStore, clock: Arc<dyn Clock>) -> io::Result<Arc<Handle>> {
        let writer = Arc::new(Self {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                closed: false,
                log: Some(log),
            }),
            wake: Condvar::new(),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = writer.clone();
        let thread = std::thread::Builder::new()
            .name("tsj-revocations".into())
            .spawn(move || write_loop(&shared, &memory, &*clock))?;
        Ok(Arc::new(Handle {
            writer,
            thread: Mutex::new(Some(thread)),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(&self, record: Vec<u8>) -> Durable {
        let done = Arc::new(Done::default());
        self.lock().pending.push(Pending {
            record,
            done: done.clone(),
        });
        self.wake.notify_one();
        Durable(done)
    }
}

/// Takes every waiting revocation, writes them with one sync, completes
/// them, and compacts when dead records outnumber the live ones. Ends, and
/// closes the file, once the store is dropped and nothing is pending.
fn write_loop(writer: &Writer, memory: &MemoryStore, clock: &dyn Clock) {
    loop {
        let (batch, mut log, fail) = {
            let mut queue = writer.lock();
            while queue.pending.is_empty() && !queue.closed {
                queue = writer
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if queue.pending.is_empty() {
                // Closed: the file goes with the log.
                queue.log = None;
                return;
            }
            let Some(log) = queue.log.take() else {
                return;
            };
            let fail = writer
                .fail_next
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            (std::mem::take(&mut queue.pending), log, fail)
        };
        // At most `MAX_BATCH` bytes per write and sync.
        let mut result = Ok(());
        let mut rest = &batch[..];
        while !rest.is_empty() {
            let mut size = 0;
            let count = rest
                .iter()
                .take_while(|p| {
                    size += p.record.len();
                    size <= MAX_BATCH
                })
                .count()
                .max(1);
            let (chunk, later) = rest.split_at(count);
            let bytes: Vec<u8> = chunk
                .iter()
                .flat_map(|p| p.record.iter().copied())
                .collect();
            let written = log.append(&bytes, chunk.len() as u64, fail && result.is_ok());
            for pending in chunk {
                pending.done.complete(match &written {
                    Ok(()) => Ok(()),
                    Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
                });
            }
            if written.is_err() {
                result = written;
            }
            rest = later;
        }
        if result.is_ok()
            && log.records >= COMPACT_AFTER
            && log.records > DEAD_FACTOR * memory.len() as u64
        {
            let now = clock.now();
            memory.purge(now);
            if let Err(error) = log.compact(memory, now) {
                event!(warn, %error, "could not compact the revocation file; it keeps growing until the next try");
            }
        }
        writer.lock().log = Some(log);
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
        let dir = dir("reopen");
        let path = dir.join("revocations");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        store.revoke(session("a", NOW + 100), NOW).await.unwrap();
        store.revoke(session("b", NOW + 10), NOW).await.unwrap();
        store.revoke(session("over", NOW), NOW).await.unwrap();
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "a", NOW) && revoked(&store, "b", NOW));
        assert!(
            !revoked(&store, "over", NOW),
            "an expired revocation is not kept"
        );
        drop(store);
        clock.set(NOW + 50);
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "a", NOW + 50));
        assert_eq!(store.len(), 1, "b expired while the store was closed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }
    }

    #[tokio::test]
    async fn a_torn_last_write_is_dropped_and_damage_before_the_end_refuses_to_open() {
        let dir = dir("torn");
        let path = dir.join("revocations");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        store.revoke(session("a", NOW + 100), NOW).await.unwrap();
        store.revoke(session("b", NOW + 100), NOW).await.unwrap();
        drop(store);
        let good = std::fs::read(&path).unwrap();
        // A crash in the middle of the next write: half a record.
        let next = encode(&session("c", NOW + 100));
        let mut torn = good.clone();
        torn.extend_from_slice(&next[..next.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "a", NOW) && revoked(&store, "b", NOW));
        assert!(!revoked(&store, "c", NOW), "never acknowledged");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "cut back to the intact records"
        );
        drop(store);
        // A damaged record with an intact one after it: the file is damaged.
        let mut damaged = good.clone();
        damaged[MAGIC.len() + FRAME + 3] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let error = open(&path, &clock).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Corrupted);
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains(&path.display().to_string()), "{cause}");
        // Not a revocation file at all, or not a file.
        std::fs::write(&path, b"hello, world").unwrap();
        assert_eq!(
            open(&path, &clock).unwrap_err().kind(),
            StoreErrorKind::Corrupted
        );
        let error = open(&dir, &clock).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Unavailable);
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains(&dir.display().to_string()), "{cause}");
    }

    #[tokio::test]
    async fn a_failed_write_fails_the_revocation_and_leaves_no_half_record() {
        let dir = dir("full");
        let path = dir.join("revocations");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        store.revoke(session("a", NOW + 100), NOW).await.unwrap();
        store.fail_next_write();
        let error = store
            .revoke(session("b", NOW + 100), NOW)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Unavailable);
        assert!(revoked(&store, "b", NOW), "this process still honours it");
        store.revoke(session("c", NOW + 100), NOW).await.unwrap();
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "a", NOW) && revoked(&store, "c", NOW));
        assert!(!revoked(&store, "b", NOW), "it was reported as not durable");
    }

    #[tokio::test]
    async fn one_process_at_a_time_and_full_as_in_memory() {
        let dir = dir("lock");
        let path = dir.join("revocations");
        let clock = ManualClock::new(NOW);
        let store = DurableStore::builder(&path)
            .with_clock(clock.clone())
            .with_capacity(2)
            .open()
            .unwrap();
        assert_eq!(
            open(&path, &clock).unwrap_err().kind(),
            StoreErrorKind::Unavailable
        );
        store.revoke(session("a", NOW + 100), NOW).await.unwrap();
        store.revoke(session("b", NOW + 100), NOW).await.unwrap();
        let error = store
            .revoke(session("c", NOW + 100), NOW)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Full);
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert!(
            !revoked(&store, "c", NOW),
            "a refused revocation is not written"
        );
    }

    #[tokio::test]
    async fn the_file_follows_the_live_entries_not_the_history() {
        let dir = dir("compact");
        let path = dir.join("revocations");
        let clock = ManualClock::new(NOW);
        let store = open(&path, &clock).unwrap();
        let mut now = NOW;
        for round in 0..8 {
            for i in 0..2000 {
                store
                    .revoke(session(&format!("s{round}-{i}"), now + 60), now)
                    .await
                    .unwrap();
            }
            // Those expire; the next round's are the live ones.
            now += 120;
            clock.set(now);
        }
        store
            .revoke(session("kept", now + 10_000), now)
            .await
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let per_record = encode(&session("s0-0000", now)).len() as u64;
        assert!(
            size < 3 * 2000 * per_record + 4096 * per_record,
            "{size} bytes after 16 001 revocations"
        );
        drop(store);
        let store = open(&path, &clock).unwrap();
        assert!(revoked(&store, "kept", now));
    }

    #[test]
    fn every_target_reads_back_as_written() {
        for target in [
            RevocationTarget::Session("s|1:x".into()),
            RevocationTarget::Token("j".into()),
            RevocationTarget::Subject {
                subject: "alice".into(),
                before: 5,
            },
            RevocationTarget::Superseded {
                sid: "s:1|2".into(),
                before: 7,
                keep: "k:é|9".into(),
            },
            RevocationTarget::Replaced {
                jti: "j".into(),
                used_at: 3,
                subject: None,
            },
        ] {
            let revocation = Revocation { target, until: 99 };
            let record = encode(&revocation);
            assert_eq!(decode(&record[FRAME..]), Some(revocation));
        }
    }

    #[test]
    fn crc32c_matches_the_reference() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}
