//! Long-lived connections end with their session: one [`Watcher`] per
//! layer, fed by the store's revocation feed and a clock, wakes exactly the
//! connections ([`Ended`] futures) of a session that ended.
//!
//! * **Revocations** reach the watcher through the store's feed the moment
//!   the store honours them — recorded here, or heard from another instance
//!   (Redis's announcements, PostgreSQL's catch-ups) — with the reason the
//!   revocation carries. A look-up by `sid` (or subject, for "log out
//!   everywhere") finds the connections to wake: no work for the others.
//! * **Time** (the cap, and idle past the newest known `exp`) is one
//!   ordered set of deadlines per layer, looked at by one thread every
//!   quarter of a second: no timer per connection. A renewal on this
//!   instance moves its session's deadline at once; at the deadline of a
//!   session with a row in the registry, its connections read the row
//!   once (a renewal on another instance moved it) before they call it
//!   idle.
//! * **Fail closed:** while the store cannot vouch for its answers
//!   ([`RevocationStore::check_fresh`] fails: a cluster store's replica
//!   past its bound), every watched connection ends with
//!   [`EndReason::CannotTell`]; so does every connection on a store without
//!   a feed.
//!
//! Memory is one entry per watched session and one per connection, freed
//! when the connection's future is dropped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::BoxFuture;
use crate::claims::RegisteredClaims;
use crate::clock::Clock;
use crate::revoke::{
    EndReason, Lookup, Revocation, RevocationStatus, RevocationStore, RevocationTarget, SessionRow,
    StoreError, TokenIds,
};
use crate::stats::{Counters, Event};

/// How often the watcher looks at the clock and the store's health.
const TICK: Duration = Duration::from_millis(250);

/// The connections of one layer that wait for their session to end.
pub(crate) struct Watcher {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    store: Arc<dyn RevocationStore>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// The layer's leeway: a token is served until its `exp` plus this,
    /// so a session is idle only then.
    leeway: i64,
    /// Open connections: the renewal path skips the lock when none.
    open: AtomicUsize,
    /// Subscribed to the store's feed, and the thread started (or tried).
    started: AtomicBool,
    /// The clock's thread runs: without it nothing would end a connection
    /// by time or by the store's health, so none is kept open.
    ticking: AtomicBool,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Arc<str>, Watched>,
    /// Subject -> the keys of its watched sessions ("log out everywhere").
    subjects: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// `jti` -> the key of the session a connection opened with that token
    /// belongs to (a revocation of that one token ends them).
    tokens: HashMap<Arc<str>, Arc<str>>,
    /// (deadline, key): the next moment something is due, per session.
    due: BTreeSet<(i64, Arc<str>)>,
    next_id: u64,
}

/// One watched session.
struct Watched {
    /// Its `sid`; `None` for a token without one.
    sid: Option<Arc<str>>,
    subject: Option<Arc<str>>,
    /// `auth_time` (or `iat`): a "log out everywhere" before it ends it.
    created: i64,
    cap: Option<i64>,
    /// The newest `exp` known for it.
    expires: i64,
    /// Where it sits in `due`.
    deadline: i64,
    connections: Vec<Arc<Connection>>,
}

/// One connection's side: what ended it, or that it should read the
/// registry, and whom to wake.
struct Connection {
    id: u64,
    /// The token it was opened with (a `renew_with` cut-off, or a
    /// revocation of that token, ends it).
    issued_at: i64,
    jti: Option<Arc<str>>,
    state: Mutex<Signal>,
}

#[derive(Default)]
struct Signal {
    ended: Option<EndReason>,
    /// Its session reached its known `exp`: read the registry once.
    check: bool,
    waker: Option<Waker>,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, Signal> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakers collected under the watcher's lock, woken once it is released
/// (a waker that polls at once must not find the lock held).
#[derive(Default)]
struct Wake(Vec<Waker>);

impl Drop for Wake {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

impl Watcher {
    pub(crate) fn new(
        store: Arc<dyn RevocationStore>,
        clock: Arc<dyn Clock>,
        counters: Arc<Counters>,
        leeway: i64,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                store,
                clock,
                counters,
                leeway,
                open: AtomicUsize::new(0),
                started: AtomicBool::new(false),
                ticking: AtomicBool::new(false),
            }),
        }
    }

    /// A future that resolves when the session of `claims` (capped at
    /// `cap`) ends.
    pub(crate) fn watch(&self, claims: &RegisteredClaims, cap: Option<i64>) -> Ended {
        let shared = &self.shared;
        // Nothing would tell this connection its session ended (no feed,
        // no clock): it does not stay open on that (fail closed).
        if shared.store.feed().is_none() || !shared.start() {
            shared.counters.count(Event::StreamEnded);
            return Ended::done(EndReason::CannotTell, Arc::downgrade(shared));
        }
        let mut ended = self.add(claims, cap);
        // Registered first, then checked: a revocation landing between the
        // two is seen by one or the other.
        if claims.sid.is_some() || claims.jti.is_some() {
            let now = shared.clock.now();
            match shared.store.check(&TokenIds::of(claims), now) {
                Lookup::Ready(answer) => {
                    if let (Some(reason), Some(connection)) =
                        (first_answer(answer), &ended.connection)
                    {
                        let mut wake = Wake::default();
                        shared.deliver(connection, reason, &mut wake);
                    }
                }
                // Awaited by the future's first polls.
                Lookup::Pending(lookup) => ended.first = Some(lookup),
            }
        }
        ended
    }

    fn add(&self, claims: &RegisteredClaims, cap: Option<i64>) -> Ended {
        let shared = &self.shared;
        let mut state = shared.lock();
        let state = &mut *state;
        state.next_id += 1;
        let id = state.next_id;
        // A token with neither `sid` nor `jti` is a session of its own.
        let key: Arc<str> = match (&claims.sid, &claims.jti) {
            (Some(sid), _) => Arc::from(sid.as_str()),
            (None, Some(jti)) => Arc::from(format!("\0{jti}")),
            (None, None) => Arc::from(format!("\0\0{id}")),
        };
        let connection = Arc::new(Connection {
            id,
            issued_at: claims.iat.unwrap_or(i64::MIN),
            jti: claims.jti.as_deref().map(Arc::from),
            state: Mutex::new(Signal::default()),
        });
        let watched = state
            .sessions
            .entry(key.clone())
            .or_insert_with(|| Watched {
                sid: claims.sid.as_deref().map(Arc::from),
                subject: claims.sub.as_deref().map(Arc::from),
                created: claims.auth_time.or(claims.iat).unwrap_or(i64::MIN),
                cap,
                expires: claims.exp,
                deadline: i64::MAX,
                connections: Vec::new(),
            });
        watched.expires = watched.expires.max(claims.exp);
        watched.connections.push(connection.clone());
        if let Some(subject) = &watched.subject {
            state
                .subjects
                .entry(subject.clone())
                .or_default()
                .insert(key.clone());
        }
        if let Some(jti) = &connection.jti {
            state.tokens.insert(jti.clone(), key.clone());
        }
        shared.schedule(state, &key);
        shared.open.fetch_add(1, Ordering::Relaxed);
        Ended {
            connection: Some(connection),
            key,
            shared: Arc::downgrade(shared),
            first: None,
            reading: None,
            done: None,
        }
    }

    /// A renewal on this instance: the session of `sid` lives until at
    /// least `expires`.
    pub(crate) fn renewed(&self, sid: &str, expires: i64) {
        if self.shared.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.shared.extend(sid, expires);
    }

    /// Connections open (tests).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }
}

/// What the store's first answer for a new connection's token means.
fn first_answer(answer: Result<RevocationStatus, StoreError>) -> Option<EndReason> {
    match answer {
        Ok(RevocationStatus::Revoked) => Some(EndReason::Ended),
        Ok(RevocationStatus::Superseded { .. }) => Some(EndReason::Superseded),
        Err(_) => Some(EndReason::CannotTell),
        Ok(_) => None,
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("open", &self.shared.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Clears `ticking` when the clock's thread ends, however it ends (a
/// panic in a store's `check_fresh` included), and ends every connection:
/// nothing would end them by time any more.
struct Ticking(Weak<Shared>);

impl Drop for Ticking {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.ticking.store(false, Ordering::SeqCst);
            shared.end_all(EndReason::CannotTell);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to the store's feed and starts the clock's thread, once;
    /// whether the thread runs.
    fn start(self: &Arc<Self>) -> bool {
        if !self.started.swap(true, Ordering::SeqCst) {
            if let Some(feed) = self.store.feed() {
                let weak = Arc::downgrade(self);
                feed.subscribe(Box::new(move |revocation| match weak.upgrade() {
                    Some(shared) => {
                        shared.revoked(revocation);
                        true
                    }
                    None => false,
                }));
            }
            self.ticking.store(true, Ordering::SeqCst);
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("tsj-session-watch".into())
                .spawn(move || {
                    let _ticking = Ticking(weak.clone());
                    loop {
                        std::thread::park_timeout(TICK);
                        let Some(shared) = weak.upgrade() else {
                            return;
                        };
                        shared.tick();
                    }
                });
            if spawned.is_err() {
                self.ticking.store(false, Ordering::SeqCst);
            }
        }
        self.ticking.load(Ordering::SeqCst)
    }

    /// A revocation the store took: wakes the connections it ends.
    fn revoked(&self, revocation: &Revocation) {
        let reason = revocation.reason.unwrap_or(EndReason::Ended);
        let mut wake = Wake::default();
        let state = self.lock();
        if state.sessions.is_empty() {
            return;
        }
        match &revocation.target {
            RevocationTarget::Session(sid) => self.end(&state, sid, reason, &mut wake),
            RevocationTarget::Token(jti) => {
                // The connections opened with that very token.
                if let Some(watched) = state
                    .tokens
                    .get(jti.as_str())
                    .and_then(|key| state.sessions.get(key))
                {
                    for connection in &watched.connections {
                        if connection.jti.as_deref() == Some(jti.as_str()) {
                            self.deliver(connection, reason, &mut wake);
                        }
                    }
                }
            }
            RevocationTarget::Subject { subject, before } => {
                if let Some(keys) = state.subjects.get(subject.as_str()) {
                    for key in keys {
                        if state
                            .sessions
                            .get(key)
                            .is_some_and(|watched| watched.created < *before)
                        {
                            self.end(&state, key, reason, &mut wake);
                        }
                    }
                }
            }
            RevocationTarget::Superseded { sid, before, keep } => {
                // Every connection opened with a token the cut-off covers.
                if let Some(watched) = state.sessions.get(sid.as_str()) {
                    for connection in &watched.connections {
                        if connection.issued_at <= *before
                            && connection.jti.as_deref() != Some(keep.as_str())
                        {
                            self.deliver(connection, EndReason::Superseded, &mut wake);
                        }
                    }
                }
            }
            // A reuse mark ends nothing by itself.
            _ => {}
        }
        drop(state);
    }

    /// Ends every connection of session `key`.
    fn end(&self, state: &State, key: &str, reason: EndReason, wake: &mut Wake) {
        if let Some(watched) = state.sessions.get(key) {
            for connection in &watched.connections {
                self.deliver(connection, reason, wake);
            }
        }
    }

    /// Ends every watched connection.
    fn end_all(&self, reason: EndReason) {
        let mut wake = Wake::default();
        let state = self.lock();
        for watched in state.sessions.values() {
            for connection in &watched.connections {
                self.deliver(connection, reason, &mut wake);
            }
        }
        drop(state);
    }

    /// Tells one connection its session ended (once); its waker goes to
    /// `wake`.
    fn deliver(&self, connection: &Connection, reason: EndReason, wake: &mut Wake) {
        let mut signal = connection.lock();
        if signal.ended.is_some() {
            return;
        }
        signal.ended = Some(reason);
        self.counters.count(Event::StreamEnded);
        if let Some(waker) = signal.waker.take() {
            wake.0.push(waker);
        }
    }

    /// Puts session `key` at its next deadline: its cap, or its newest
    /// `exp` plus the leeway (its token is served until then).
    fn schedule(&self, state: &mut State, key: &Arc<str>) {
        let Some(watched) = state.sessions.get_mut(key) else {
            return;
        };
        let idle = watched.expires.saturating_add(self.leeway);
        let deadline = watched.cap.map_or(idle, |cap| cap.min(idle));
        if deadline != watched.deadline {
            state.due.remove(&(watched.deadline, key.clone()));
            state.due.insert((deadline, key.clone()));
            watched.deadline = deadline;
        }
    }

    /// The session of `key` lives until at least `expires`.
    fn extend(&self, key: &str, expires: i64) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(key) = state
            .sessions
            .get_key_value(key)
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        if let Some(watched) = state.sessions.get_mut(&key) {
            watched.expires = watched.expires.max(expires);
        }
        self.schedule(state, &key);
    }

    /// What is due by the clock, and the store's health.
    fn tick(&self) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = self.clock.now();
        // While the store cannot vouch for its answers, no connection can
        // be told whether its session lives: they all end. (A store that
        // answers only asynchronously is not asked here: its errors reach
        // the requests.)
        let probe = TokenIds {
            sid: Some("tsj-watch-probe"),
            jti: None,
            sub: None,
            authenticated_at: None,
            issued_at: None,
        };
        if let Lookup::Ready(Err(_)) = self.store.check_fresh(&probe, now) {
            self.end_all(EndReason::CannotTell);
            return;
        }
        let mut wake = Wake::default();
        let mut state = self.lock();
        let state = &mut *state;
        while let Some((deadline, key)) = state.due.first().cloned() {
            if deadline > now {
                break;
            }
            state.due.remove(&(deadline, key.clone()));
            let Some(watched) = state.sessions.get_mut(&key) else {
                continue;
            };
            watched.deadline = i64::MAX;
            if watched.cap.is_some_and(|cap| cap <= now) {
                self.end(state, &key, EndReason::Cap, &mut wake);
            } else if watched.sid.is_some()
                && watched.subject.is_some()
                && self.store.sessions().is_some()
            {
                // A renewal elsewhere may have moved it: each connection
                // reads the registry's row once, on its own task.
                for connection in &watched.connections {
                    let mut signal = connection.lock();
                    signal.check = true;
                    if let Some(waker) = signal.waker.take() {
                        wake.0.push(waker);
                    }
                }
            } else {
                self.end(state, &key, EndReason::Idle, &mut wake);
            }
        }
    }

    /// A connection's registry read: the rows of its session's subject.
    fn read_row(
        &self,
        key: &str,
    ) -> Option<BoxFuture<'static, Result<Vec<SessionRow>, StoreError>>> {
        let subject = self.lock().sessions.get(key)?.subject.clone()?;
        let registry = self.store.sessions()?;
        Some(registry.list(&subject, self.clock.now()))
    }

    /// What a connection's registry read found.
    fn row_read(&self, key: &str, answer: Result<Vec<SessionRow>, StoreError>) {
        let now = self.clock.now();
        let mut wake = Wake::default();
        let rows = match answer {
            Ok(rows) => rows,
            Err(_) => {
                let state = self.lock();
                self.end(&state, key, EndReason::CannotTell, &mut wake);
                return;
            }
        };
        let listed = rows
            .iter()
            .find(|row| *row.sid == *key)
            .map(|row| row.expires);
        let state = self.lock();
        // A renewal here may have moved it meanwhile too.
        let known = state.sessions.get(key).map(|watched| watched.expires);
        let expires = listed.max(known);
        match expires {
            Some(expires) if expires.saturating_add(self.leeway) > now => {
                drop(state);
                self.extend(key, expires);
            }
            _ => self.end(&state, key, EndReason::Idle, &mut wake),
        }
    }

    /// A connection closed: it is forgotten, and its session with its last
    /// connection.
    fn forget(&self, key: &Arc<str>, id: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(watched) = state.sessions.get_mut(key) else {
            return;
        };
        let Some(position) = watched.connections.iter().position(|c| c.id == id) else {
            return;
        };
        let connection = watched.connections.swap_remove(position);
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(jti) = &connection.jti
            && !watched
                .connections
                .iter()
                .any(|other| other.jti.as_deref() == Some(jti))
        {
            state.tokens.remove(jti);
        }
        if watched.connections.is_empty() {
            let deadline = watched.deadline;
            let subject = watched.subject.clone();
            state.sessions.remove(key);
            state.due.remove(&(deadline, key.clone()));
            if let Some(subject) = subject
                && let Some(keys) = state.subjects.get_mut(&subject)
            {
                keys.remove(key);
                if keys.is_empty() {
                    state.subjects.remove(&subject);
                }
            }
            // The last connection gone: the maps' memory goes too (a map
            // keeps its capacity otherwise).
            if state.sessions.is_empty() {
                state.sessions = HashMap::new();
                state.subjects = HashMap::new();
                state.tokens = HashMap::new();
            }
        }
    }
}

/// The layer is gone: nothing will tell its connections their session
/// ended any more, so they end now.
impl Drop for Shared {
    fn drop(&mut self) {
        self.end_all(EndReason::CannotTell);
    }
}

/// Resolves, with the reason, when the session of the request it was made
/// for ends: [`Session::ended`](crate::Session::ended). `Send` and
/// `'static`: race a stream against it, or spawn it. Dropping it (the
/// connection closed) releases what it holds in the layer.
#[must_use = "a future does nothing unless polled"]
pub struct Ended {
    connection: Option<Arc<Connection>>,
    key: Arc<str>,
    shared: Weak<Shared>,
    /// The store's first answer for the token, when it needs I/O.
    first: Option<BoxFuture<'static, Result<RevocationStatus, StoreError>>>,
    /// The registry read in flight, when the session reached its known
    /// `exp`.
    reading: Option<BoxFuture<'static, Result<Vec<SessionRow>, StoreError>>>,
    /// Resolved at once (no feed, no clock).
    done: Option<EndReason>,
}

impl Ended {
    fn done(reason: EndReason, shared: Weak<Shared>) -> Self {
        Self {
            connection: None,
            key: Arc::from(""),
            shared,
            first: None,
            reading: None,
            done: Some(reason),
        }
    }
}

impl fmt::Debug for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ended").finish_non_exhaustive()
    }
}

impl Future for Ended {
    type Output = EndReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        if let Some(reason) = self.done {
            return Poll::Ready(reason);
        }
        let Some(connection) = self.connection.clone() else {
            return Poll::Ready(EndReason::CannotTell);
        };
        if let Some(first) = &mut self.first
            && let Poll::Ready(answer) = first.as_mut().poll(cx)
        {
            self.first = None;
            if let (Some(reason), Some(shared)) = (first_answer(answer), self.shared.upgrade()) {
                let mut wake = Wake::default();
                shared.deliver(&connection, reason, &mut wake);
            }
        }
        loop {
            if let Some(reading) = &mut self.reading {
                let answer = match reading.as_mut().poll(cx) {
                    Poll::Ready(answer) => answer,
                    Poll::Pending => {
                        // Still told at once if the session ends meanwhile.
                        let mut signal = connection.lock();
                        if let Some(reason) = signal.ended {
                            return Poll::Ready(reason);
                        }
                        signal.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                };
                self.reading = None;
                match self.shared.upgrade() {
                    Some(shared) => shared.row_read(&self.key, answer),
                    None => return Poll::Ready(EndReason::CannotTell),
                }
            }
            {
                let mut signal = connection.lock();
                if let Some(reason) = signal.ended {
                    return Poll::Ready(reason);
                }
                if !signal.check {
                    signal.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                signal.check = false;
            }
            let Some(shared) = self.shared.upgrade() else {
                return Poll::Ready(EndReason::CannotTell);
            };
            match shared.read_row(&self.key) {
                Some(reading) => self.reading = Some(reading),
                None => shared.row_read(&self.key, Ok(Vec::new())),
            }
        }
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let (Some(connection), Some(shared)) = (&self.connection, self.shared.upgrade()) {
            shared.forget(&self.key, connection.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::revoke::MemoryStore;

    fn claims(sid: &str, sub: &str, exp: i64) -> RegisteredClaims {
        RegisteredClaims {
            sid: Some(sid.into()),
            sub: Some(sub.into()),
            jti: Some(format!("j-{sid}")),
            iat: Some(100),
            auth_time: Some(100),
            exp,
            ..RegisteredClaims::default()
        }
    }

    #[test]
    fn a_closed_connection_leaves_nothing_behind_and_a_revocation_wakes_only_its_session() {
        let store = MemoryStore::new();
        let counters = Arc::new(Counters::new());
        let watcher = Watcher::new(
            Arc::new(store.clone()),
            Arc::new(ManualClock::new(1000)),
            counters.clone(),
            5,
        );
        let mut a = watcher.watch(&claims("a", "u", 5000), Some(9000));
        let b = watcher.watch(&claims("b", "u", 5000), Some(9000));
        let other = watcher.watch(&claims("c", "v", 5000), None);
        assert_eq!(watcher.open(), 3);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
        // "Log out everywhere" for `u` from second 101: both of `u`, not `v`.
        store
            .insert(
                &Revocation::new(
                    RevocationTarget::Subject {
                        subject: "u".into(),
                        before: 101,
                    },
                    9000,
                ),
                1000,
            )
            .unwrap();
        assert_eq!(
            Pin::new(&mut a).poll(&mut cx),
            Poll::Ready(EndReason::Ended)
        );
        assert_eq!(counters.snapshot().streams_ended(), 2);
        drop((a, b, other));
        assert_eq!(watcher.open(), 0);
        let state = watcher.shared.lock();
        assert!(state.sessions.is_empty() && state.subjects.is_empty() && state.due.is_empty());
    }
}
