//! The registry kept in this process's memory: [`MemoryStore`]'s, and the
//! part of `DurableStore` that answers (its database only keeps a copy).
//!
//! [`MemoryStore`]: crate::MemoryStore

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{SessionRow, StoreError, StoreErrorKind};

/// Rows per subject, in insert order, bounded by a capacity over all
/// subjects.
pub(crate) struct LocalRegistry {
    rows: Mutex<Rows>,
    capacity: usize,
}

#[derive(Default)]
struct Rows {
    by_subject: HashMap<String, Vec<SessionRow>>,
    total: usize,
    /// When a full registry may next sweep every subject for expired rows
    /// (at most once a second, so a full registry is not swept per login).
    next_sweep: i64,
}

impl Rows {
    /// Drops the expired rows of `subject`.
    fn expire(&mut self, subject: &str, now: i64) {
        if let Some(rows) = self.by_subject.get_mut(subject) {
            let before = rows.len();
            rows.retain(|row| row.expires > now);
            self.total -= before - rows.len();
            if rows.is_empty() {
                self.by_subject.remove(subject);
            }
        }
    }

    /// Drops every expired row.
    fn sweep(&mut self, now: i64) {
        let mut total = 0;
        self.by_subject.retain(|_, rows| {
            rows.retain(|row| row.expires > now);
            total += rows.len();
            !rows.is_empty()
        });
        self.total = total;
    }
}

impl LocalRegistry {
    /// A registry for up to `capacity` rows.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rows: Mutex::new(Rows::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rows held (expired ones not yet dropped included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }

    pub(crate) fn list(&self, subject: &str, now: i64) -> Vec<SessionRow> {
        let mut rows = self.lock();
        rows.expire(subject, now);
        rows.by_subject.get(subject).cloned().unwrap_or_default()
    }

    /// Deletes the rows `remove` of `row.subject` and adds `row`, or
    /// refuses with [`StoreErrorKind::Full`] changing nothing.
    pub(crate) fn insert(
        &self,
        row: SessionRow,
        remove: &[String],
        max_rows: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut rows = self.lock();
        rows.expire(&row.subject, now);
        let held = rows.by_subject.get(&row.subject).map_or(0, |subject| {
            subject
                .iter()
                .filter(|r| r.sid != row.sid && !remove.contains(&r.sid))
                .count()
        });
        if held + 1 > max_rows {
            return Err(full("this subject has as many sessions as it may"));
        }
        let freed = rows
            .by_subject
            .get(&row.subject)
            .map_or(0, |subject| subject.len() - held);
        if rows.total - freed >= self.capacity && now >= rows.next_sweep {
            rows.next_sweep = now.saturating_add(1);
            rows.sweep(now);
        }
        if rows.total - freed >= self.capacity {
            return Err(full("the session registry is full"));
        }
        let subject = rows.by_subject.entry(row.subject.clone()).or_default();
        let before = subject.len();
        subject.retain(|r| r.sid != row.sid && !remove.contains(&r.sid));
        subject.push(row);
        let after = subject.len();
        rows.total = rows.total + after - before;
        Ok(())
    }

    /// Answers the updated row, if there is one.
    pub(crate) fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> Option<SessionRow> {
        let mut rows = self.lock();
        let row = rows
            .by_subject
            .get_mut(subject)?
            .iter_mut()
            .find(|row| row.sid == sid)?;
        row.last_seen = row.last_seen.max(last_seen);
        row.expires = row.expires.max(expires);
        Some(row.clone())
    }

    pub(crate) fn remove(&self, subject: &str, sids: &[String]) {
        let mut rows = self.lock();
        let Some(held) = rows.by_subject.get_mut(subject) else {
            return;
        };
        let before = held.len();
        held.retain(|row| !sids.contains(&row.sid));
        let removed = before - held.len();
        if held.is_empty() {
            rows.by_subject.remove(subject);
        }
        rows.total -= removed;
    }

    /// Drops every expired row.
    pub(crate) fn purge(&self, now: i64) {
        self.lock().sweep(now);
    }

    /// Puts back a row read from a database. No limit applies: the
    /// database held it (a file may hold more than the capacity, after a
    /// lowered capacity or deletions that failed on disk; new logins are
    /// then refused until rows expire, and no listing misses a session).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn restore(&self, row: SessionRow) {
        let mut rows = self.lock();
        rows.total += 1;
        rows.by_subject
            .entry(row.subject.clone())
            .or_default()
            .push(row);
    }
}

fn full(what: &'static str) -> StoreError {
    StoreError::new(StoreErrorKind::Full, Some(what.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sid: &str, subject: &str, expires: i64) -> SessionRow {
        let mut row = SessionRow::new(sid, subject);
        row.expires = expires;
        row
    }

    #[test]
    fn a_subject_cannot_pass_its_limit_and_the_registry_its_capacity() {
        let registry = LocalRegistry::new(3);
        registry.insert(row("a", "u", 100), &[], 2, 0).unwrap();
        registry.insert(row("b", "u", 100), &[], 2, 0).unwrap();
        let refused = registry.insert(row("c", "u", 100), &[], 2, 0).unwrap_err();
        assert_eq!(refused.kind(), StoreErrorKind::Full);
        // Replacing one in the same step is within the limit.
        registry
            .insert(row("c", "u", 100), &["a".into()], 2, 0)
            .unwrap();
        let sids: Vec<_> = registry.list("u", 0).into_iter().map(|r| r.sid).collect();
        assert_eq!(sids, ["b", "c"]);
        registry.insert(row("x", "v", 100), &[], 2, 0).unwrap();
        assert_eq!(
            registry
                .insert(row("y", "w", 100), &[], 2, 0)
                .unwrap_err()
                .kind(),
            StoreErrorKind::Full
        );
        // Expired rows make room (a full registry sweeps).
        registry.insert(row("y", "w", 200), &[], 2, 100).unwrap();
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn touch_raises_and_never_adds() {
        let registry = LocalRegistry::new(10);
        assert!(registry.touch("u", "a", 5, 50).is_none());
        assert_eq!(registry.len(), 0);
        registry.insert(row("a", "u", 100), &[], 2, 0).unwrap();
        let touched = registry.touch("u", "a", 5, 50).unwrap();
        assert_eq!((touched.last_seen, touched.expires), (5, 100));
        let touched = registry.touch("u", "a", 7, 150).unwrap();
        assert_eq!((touched.last_seen, touched.expires), (7, 150));
        assert!(registry.list("u", 149).len() == 1 && registry.list("u", 150).is_empty());
    }
}
