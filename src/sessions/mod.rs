//! A user's sessions: the [`Sessions`] handle that lists and ends them over
//! the store's session registry (its part is in `revoke/registry.rs`), the
//! login's metadata, the limit, what every session of a layer shares
//! ([`SessionEnv`]), and the ready-made routes (`routes.rs`, behind the
//! layer; nothing here imports them).
//!
//! The registry lists sessions, it never admits them: verification stays
//! stateless, and a token whose session was never recorded is served as
//! before. A row is written at login ([`Issuer::login`](crate::Issuer::login))
//! and touched by each renewal; a session is *listed* while its newest
//! token's `exp` has not passed and the revocation store does not refuse it
//! (so a logout, a reuse detection or a "log out everywhere" hides it at
//! once, whatever became of its row). Ending a session revokes it first and
//! deletes its row second: a crash between the two leaves a revoked row,
//! which the next listing hides and deletes.

// Without the `tracing` feature the events compile to nothing.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use time::OffsetDateTime;

use crate::BoxFuture;
use crate::clock::{Clock, datetime};
use crate::dpop::DpopGuard;
use crate::error::{IssueError, IssueErrorKind};
use crate::log::event;
use crate::revoke::{
    EndReason, MAX_SESSION_SECS, MAX_SID_BYTES, MAX_SUBJECT_BYTES, MAX_USER_AGENT_BYTES,
    Revocation, RevocationStatus, RevocationStore, RevocationTarget, SessionRegistry, SessionRow,
    StoreError, StoreErrorKind, TokenIds, record,
};
use crate::stats::Counters;

pub(crate) mod routes;
mod watch;

pub use watch::Ended;
pub(crate) use watch::Watcher;

/// What every session of a layer shares (the store, the clock, the
/// counters, the session limits), behind one `Arc`: a request's
/// [`Session`](crate::Session) pays one reference count for all, and a
/// [`Sessions`] handle is this.
pub(crate) struct SessionEnv {
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Arc<Counters>,
    /// The layer's leeway: a revocation outlives the session's cap by it.
    pub(crate) leeway: i64,
    /// The longest session cap the layer may sign (its `max_session`, or
    /// `with_lifetime_limits`' maximum): a session ended outside a request
    /// stays ended at least this long after it began, whatever cap its row
    /// recorded at login (a later token may carry a longer one).
    pub(crate) max_session: i64,
    /// Live sessions one subject may have.
    pub(crate) max_sessions: usize,
    pub(crate) on_limit: OnLimit,
    /// The long-lived connections waiting for their session to end.
    pub(crate) watcher: Watcher,
    /// The DPoP checks, when the layer takes bound tokens; its channel
    /// (`Authorization: DPoP`) is then the layer's source 0.
    pub(crate) dpop: Option<Arc<DpopGuard>>,
}

/// The live sessions one subject may have when the layer sets no limit of
/// its own ([`with_max_sessions`](crate::SlidingJwtBuilder::with_max_sessions)):
/// a login past it ends the least recently seen session.
pub const MAX_SESSIONS_PER_SUBJECT: usize = 100;

/// What a login past the per-user limit does
/// ([`with_max_sessions`](crate::SlidingJwtBuilder::with_max_sessions)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLimit {
    /// End the least recently seen session first (ties: the oldest
    /// created, then the first recorded), then log in.
    #[default]
    EndLeastRecent,
    /// Refuse the login ([`IssueErrorKind::TooManySessions`]).
    Refuse,
}

/// What a login records beside the session's times: small, and chosen by
/// the application. [`SessionMetadata::of`] keeps the request's
/// `User-Agent` (cut to 256 bytes, control characters
/// dropped); the client address only when the application adds it.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMetadata {
    /// The user agent shown in the list.
    pub user_agent: Option<String>,
    /// The client address, if the application opts in.
    pub address: Option<String>,
}

impl SessionMetadata {
    /// Nothing recorded.
    pub fn none() -> Self {
        Self::default()
    }

    /// The request's `User-Agent`, cleaned and cut.
    pub fn of(request: &Parts) -> Self {
        let user_agent = request
            .headers
            .get(http::header::USER_AGENT)
            .map(|value| clean(&String::from_utf8_lossy(value.as_bytes())))
            .filter(|agent| !agent.is_empty());
        Self {
            user_agent,
            address: None,
        }
    }

    /// Also records `address` (e.g. the peer's IP; think of your users'
    /// privacy and your retention rules before you do).
    pub fn with_address(mut self, address: impl fmt::Display) -> Self {
        self.address = Some(clean(&address.to_string()));
        self
    }
}

/// `text` without control characters, cut to 256 bytes at a
/// character boundary.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// One live session of a subject, as listed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its `sid`.
    pub sid: String,
    /// Whether it is the session making the request
    /// ([`Session::sessions`](crate::Session::sessions)); always `false`
    /// from [`Sessions::list`].
    pub current: bool,
    /// When it began.
    pub created: OffsetDateTime,
    /// Its login or latest renewal.
    pub last_seen: OffsetDateTime,
    /// When its newest token expires (it ends then unless renewed).
    pub expires: OffsetDateTime,
    /// The login's user agent.
    pub user_agent: Option<String>,
    /// The login's client address, when recorded.
    pub address: Option<String>,
}

impl SessionInfo {
    fn of(row: SessionRow, current: Option<&str>) -> Self {
        Self {
            current: current == Some(row.sid.as_str()),
            sid: row.sid,
            created: datetime(row.created),
            last_seen: datetime(row.last_seen),
            expires: datetime(row.expires),
            user_agent: row.user_agent,
            address: row.address,
        }
    }
}

/// Lists and ends the sessions of any subject, outside a request (an admin
/// page, a password change). Get one from
/// [`SlidingJwtLayer::sessions`](crate::SlidingJwtLayer::sessions); from a
/// handler, [`Session::sessions`](crate::Session::sessions) and friends do
/// the same for the caller.
///
/// Every method checks ownership itself: a `sid` that is not a live
/// session of that subject is "not found", whoever owns it. Ending revokes
/// the session (every token of it gets 401 at once, on every instance
/// sharing the store) and then deletes its row. A store error is an error,
/// never a partial answer presented as complete.
///
/// ```
/// use tower_sliding_jwt::{Key, SessionMetadata, SlidingJwtLayer, StandardClaims};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?).build()?;
/// let (request, ()) = http::Request::get("/login")
///     .header("user-agent", "curl/8")
///     .body(())?
///     .into_parts();
/// let issued = layer
///     .issuer()
///     .login(&request, StandardClaims::new("alice", Default::default()))
///     .await?;
/// let sessions = layer.sessions();
/// let listed = sessions.list("alice").await?;
/// assert_eq!(listed.len(), 1);
/// assert_eq!(listed[0].user_agent.as_deref(), Some("curl/8"));
/// // An admin ends them all (after a password change, also
/// // `layer.revoker().revoke_subject("alice")`: it covers sessions the
/// // registry never recorded, e.g. tokens from `Issuer::issue`).
/// assert_eq!(sessions.end_all("alice").await?, 1);
/// assert!(sessions.list("alice").await?.is_empty());
/// # let _ = (issued, SessionMetadata::none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Sessions {
    pub(crate) env: Arc<SessionEnv>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("max_sessions", &self.env.max_sessions)
            .field("on_limit", &self.env.on_limit)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// The live sessions of `subject`, most recently seen first.
    ///
    /// # Errors
    /// The store's error; [`StoreErrorKind::Unsupported`] when the store
    /// keeps no registry.
    pub async fn list(&self, subject: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.list_marked(subject, None).await
    }

    /// Ends session `sid` of `subject`; `false` (and nothing touched) when
    /// it is not a live session of that subject.
    ///
    /// # Errors
    /// As [`list`](Self::list), or the store's error when it cannot record
    /// the revocation (the session then goes on).
    pub async fn end(&self, subject: &str, sid: &str) -> Result<bool, StoreError> {
        let now = self.env.clock.now();
        let live = self.live(subject, now).await?;
        let Some(row) = live.into_iter().find(|row| row.sid == sid) else {
            return Ok(false);
        };
        self.end_rows(subject, vec![row], now).await.map(|n| n == 1)
    }

    /// Ends every live session of `subject` but `keep`; answers how many
    /// ended.
    ///
    /// # Errors
    /// As [`end`](Self::end); on an error some sessions may have ended,
    /// none is reported as ended that did not.
    pub async fn end_all_except(&self, subject: &str, keep: &str) -> Result<usize, StoreError> {
        self.end_where(subject, Some(keep)).await
    }

    /// Ends every live session of `subject`; answers how many ended.
    ///
    /// # Errors
    /// As [`end_all_except`](Self::end_all_except).
    pub async fn end_all(&self, subject: &str) -> Result<usize, StoreError> {
        self.end_where(subject, None).await
    }

    pub(crate) async fn list_marked(
        &self,
        subject: &str,
        current: Option<&str>,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.env.clock.now();
        let mut live = self.live(subject, now).await?;
        live.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(b.created.cmp(&a.created))
        });
        Ok(live
            .into_iter()
            .map(|row| SessionInfo::of(row, current))
            .collect())
    }

    async fn end_where(&self, subject: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let now = self.env.clock.now();
        let live = self.live(subject, now).await?;
        let ending: Vec<SessionRow> = live
            .into_iter()
            .filter(|row| Some(row.sid.as_str()) != keep)
            .collect();
        self.end_rows(subject, ending, now).await
    }

    /// Revokes each of `rows`, then deletes them; answers how many it
    /// revoked. The first failed revocation stops it with that error.
    async fn end_rows(
        &self,
        subject: &str,
        rows: Vec<SessionRow>,
        now: i64,
    ) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let registry = self.registry()?;
        let env = &self.env;
        let mut ended = Vec::with_capacity(rows.len());
        let mut failed = None;
        for row in rows {
            // Until the latest moment a token of it could verify: its
            // recorded cap, or a longer one a later token may carry (up to
            // the layer's longest); never more than the longest cap a
            // layer accepts (a row read back from a shared store asks for
            // no more).
            let longest = now.saturating_add(MAX_SESSION_SECS);
            let revocation = Revocation {
                target: RevocationTarget::Session(row.sid.clone()),
                until: row
                    .cap
                    .max(row.expires)
                    .max(row.created.saturating_add(env.max_session))
                    .min(longest)
                    .saturating_add(env.leeway),
                reason: Some(EndReason::Ended),
            };
            match record(&*env.store, revocation, now, &env.counters).await {
                Ok(()) => ended.push(row.sid),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        let count = ended.len();
        // The sessions are over once revoked; a row left behind (the store
        // failed here) is hidden by every listing and deleted by the next.
        if let Err(error) = registry.remove(subject, ended).await {
            event!(warn, %error, "ended sessions' rows stay until the next listing");
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(count),
        }
    }

    fn registry(&self) -> Result<&dyn SessionRegistry, StoreError> {
        self.env.store.sessions().ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Unsupported,
                Some("the revocation store keeps no session registry".into()),
            )
        })
    }

    /// The rows of `subject` that are live: not expired, and not refused by
    /// the revocation store. Rows of sessions that ended are deleted on the
    /// way (bounded: one subject's rows).
    async fn live(&self, subject: &str, now: i64) -> Result<Vec<SessionRow>, StoreError> {
        let registry = self.registry()?;
        if subject.len() > MAX_SUBJECT_BYTES {
            return Ok(Vec::new());
        }
        let rows = registry.list(subject, now).await?;
        let mut live = Vec::with_capacity(rows.len());
        let mut ended = Vec::new();
        for row in rows {
            let ids = TokenIds {
                sid: Some(&row.sid),
                jti: None,
                sub: Some(subject),
                authenticated_at: Some(row.created),
                issued_at: None,
            };
            match self.env.store.check(&ids, now).resolve().await? {
                RevocationStatus::Revoked => ended.push(row.sid),
                _ => live.push(row),
            }
        }
        if !ended.is_empty()
            && let Err(error) = registry.remove(subject, ended).await
        {
            event!(debug, %error, "ended sessions' rows stay until the next listing");
        }
        Ok(live)
    }

    /// Records a login's session: ends the least recently seen sessions (or
    /// refuses) when the subject is at its limit, then inserts the row. A
    /// store without a registry records nothing.
    pub(crate) async fn admit(&self, row: SessionRow) -> Result<(), IssueError> {
        let store_error =
            |error: StoreError| IssueError::new(IssueErrorKind::Store, Some(Box::new(error)));
        let Some(registry) = self.env.store.sessions() else {
            return Ok(());
        };
        if !recordable(&row.subject, &row.sid) {
            return Ok(());
        }
        let limit = self.env.max_sessions;
        // A login of the same user at the same moment may take the last
        // place between the count and the insert (the store refuses the
        // insert then, changing nothing): count again, a few times.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let now = self.env.clock.now();
            let mut live = self.live(&row.subject, now).await.map_err(store_error)?;
            live.retain(|other| other.sid != row.sid);
            let mut remove = Vec::new();
            if live.len() >= limit {
                if self.env.on_limit == OnLimit::Refuse {
                    return Err(IssueError::new(IssueErrorKind::TooManySessions, None));
                }
                // `live` is in insert order: a stable sort keeps it for ties.
                live.sort_by(|a, b| {
                    a.last_seen
                        .cmp(&b.last_seen)
                        .then(a.created.cmp(&b.created))
                });
                let excess = live.len() + 1 - limit;
                let victims: Vec<SessionRow> = live.into_iter().take(excess).collect();
                remove = victims.iter().map(|row| row.sid.clone()).collect();
                let ended = self
                    .end_rows(&row.subject, victims, now)
                    .await
                    .map_err(store_error)?;
                event!(
                    info,
                    ended,
                    "a login past the limit ended the least recently seen sessions"
                );
            }
            match registry.insert(row.clone(), remove, limit, now).await {
                Err(error) if error.kind() == StoreErrorKind::Full && attempts < 3 => continue,
                result => return result.map_err(store_error),
            }
        }
    }
}

/// The registry update of a renewal: `None` when the store keeps no
/// registry or the token names no session of a subject.
pub(crate) fn touch(
    env: &SessionEnv,
    registered: &crate::claims::RegisteredClaims,
    expires: i64,
    now: i64,
) -> Option<BoxFuture<'static, Result<(), StoreError>>> {
    let registry = env.store.sessions()?;
    let (sub, sid) = (registered.sub.as_deref()?, registered.sid.as_deref()?);
    if !recordable(sub, sid) {
        return None;
    }
    Some(registry.touch(sub, sid, now, expires))
}

/// `future`'s answer when it has one without waiting (a store answering
/// from memory): `Ok(None)` done, or the future to await.
#[allow(clippy::type_complexity)]
pub(crate) fn unless_ready(
    mut future: BoxFuture<'static, Result<(), StoreError>>,
) -> Result<Option<BoxFuture<'static, Result<(), StoreError>>>, StoreError> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(answer) => answer.map(|()| None),
        std::task::Poll::Pending => Ok(Some(future)),
    }
}

/// Awaits `first` and `second` (when there is one) together.
pub(crate) async fn both<A, B>(
    first: BoxFuture<'static, A>,
    second: Option<BoxFuture<'static, B>>,
) -> (A, Option<B>) {
    let (mut first, mut second) = (Some(first), second);
    let (mut a, mut b) = (None, None);
    std::future::poll_fn(|cx| {
        if let Some(future) = &mut first
            && let std::task::Poll::Ready(answer) = future.as_mut().poll(cx)
        {
            a = Some(answer);
            first = None;
        }
        if let Some(future) = &mut second
            && let std::task::Poll::Ready(answer) = future.as_mut().poll(cx)
        {
            b = Some(answer);
            second = None;
        }
        match (second.is_none(), a.take()) {
            (true, Some(a)) => std::task::Poll::Ready((a, b.take())),
            (_, answer) => {
                a = answer;
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// Whether the registry keeps a session of `subject` named `sid` (a longer
/// one is served, never recorded): the same bound at login and renewal.
fn recordable(subject: &str, sid: &str) -> bool {
    subject.len() <= MAX_SUBJECT_BYTES && sid.len() <= MAX_SID_BYTES
}

/// Whether `sid` may name a session in a route: short, and base64url or a
/// few other URL-safe characters.
pub(crate) fn plausible_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_SID_BYTES
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_cleaned_and_cut_at_a_character_boundary() {
        let agent = format!("\té{}", "x".repeat(100 * 1024));
        let (parts, ()) = http::Request::get("/")
            .header("user-agent", agent.as_bytes())
            .body(())
            .unwrap()
            .into_parts();
        let kept = SessionMetadata::of(&parts).user_agent.unwrap();
        assert!(kept.len() <= MAX_USER_AGENT_BYTES && kept.len() >= MAX_USER_AGENT_BYTES - 1);
        assert!(kept.starts_with('é'));
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        assert_eq!(SessionMetadata::of(&parts), SessionMetadata::none());
    }

    #[test]
    fn route_sids_are_short_and_url_safe() {
        assert!(plausible_sid("AbC-_09"));
        assert!(!plausible_sid(""));
        assert!(!plausible_sid("a/b"));
        assert!(!plausible_sid("a%20b"));
        assert!(!plausible_sid(&"a".repeat(MAX_SID_BYTES + 1)));
    }
}
