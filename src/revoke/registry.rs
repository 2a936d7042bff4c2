//! The session registry part of a store ([`SessionRegistry`], its
//! [`SessionRow`]s) and the bounds every store holds rows to. What the
//! layer does with it (listing, ending, limits) is in `sessions/`.

use crate::BoxFuture;
use crate::revoke::StoreError;
#[cfg(doc)]
use crate::revoke::StoreErrorKind;

/// The highest limit [`with_max_sessions`](crate::SlidingJwtBuilder::with_max_sessions)
/// accepts.
pub(crate) const MAX_SESSIONS_LIMIT: usize = 1000;

/// The longest user agent a row keeps, in bytes (longer ones are cut at a
/// character boundary).
pub(crate) const MAX_USER_AGENT_BYTES: usize = 256;

/// The longest `sid` the registry takes (the layer's are 22 characters):
/// a longer one names no session.
pub(crate) const MAX_SID_BYTES: usize = 128;

/// The longest `sub` the registry takes: a longer subject's sessions are
/// not recorded (its tokens still work).
pub(crate) const MAX_SUBJECT_BYTES: usize = 1024;

/// What the registry keeps of one session. A store returns these from
/// [`SessionRegistry::list`] and keeps every field as it was given.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session's `sid`.
    pub sid: String,
    /// Its subject (`sub`).
    pub subject: String,
    /// When it began (`auth_time`), Unix seconds.
    pub created: i64,
    /// Its login or latest renewal, Unix seconds.
    pub last_seen: i64,
    /// The `exp` of its newest token: the row is over then.
    pub expires: i64,
    /// Its cap: no token of it outlives this (a revocation of it is kept
    /// until then, plus the leeway).
    pub cap: i64,
    /// The login's user agent, cut to 256 bytes.
    pub user_agent: Option<String>,
    /// The login's client address, when the application recorded one.
    pub address: Option<String>,
}

impl SessionRow {
    /// A row for session `sid` of `subject`; every time is 0 and there is no
    /// metadata until set.
    pub fn new(sid: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            sid: sid.into(),
            subject: subject.into(),
            created: 0,
            last_seen: 0,
            expires: 0,
            cap: 0,
            user_agent: None,
            address: None,
        }
    }
}

/// The session registry part of a store: a row per session recorded at
/// login, so a user can list their sessions and end the others.
///
/// Reached through [`RevocationStore::sessions`](crate::store::RevocationStore::sessions).
/// Every store of this crate keeps one. The layer calls
/// [`insert`](Self::insert) once per login, [`touch`](Self::touch) once per
/// renewal and [`list`](Self::list) once per listing or ending; it decides
/// which sessions are live (checking each row against the revocations) and
/// which to end, so a store only keeps rows. Rows of one subject are few (at
/// most the layer's limit, [`MAX_SESSIONS_PER_SUBJECT`](crate::MAX_SESSIONS_PER_SUBJECT) by default).
///
/// A store must bound what it holds: `insert` refuses with
/// [`StoreErrorKind::Full`] rather than let a subject exceed `max_rows`
/// live rows or the store exceed its capacity, and rows whose `expires`
/// passed are deleted in bounded work.
pub trait SessionRegistry: Send + Sync + 'static {
    /// The rows of `subject` whose `expires` is after `now`, oldest insert
    /// first.
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>>;

    /// In one atomic step: deletes the rows of `row.subject` named in
    /// `remove`, then adds `row` (replacing a row with the same `sid`).
    /// Refuses with [`StoreErrorKind::Full`], changing nothing, when the
    /// subject would then have more than `max_rows` rows whose `expires` is
    /// after `now`, or the store is full.
    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// A renewal of session `sid` of `subject`: sets the row's `last_seen`
    /// and raises its `expires` to at least `expires`. A session with no row
    /// gets none (`Ok`).
    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Deletes the rows of `subject` named in `sids` (missing ones are
    /// ignored).
    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
}
