//! Single flight: parallel requests that present the same old token get the
//! same replacement token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::IssueError;

/// A replacement already signed for an old token.
struct Flight {
    token: Arc<str>,
    expires_at: i64,
    /// When the old token stops verifying; the entry is useless after that.
    forget_after: i64,
}

/// A bounded map from an old token's signature to its replacement.
///
/// Memory is bounded by `capacity` entries, each at most the size of two
/// tokens (which the size limit bounds). Entries go when the old token
/// expires; when the map is full of live entries a renewal still happens but is
/// not shared (parallel requests may then get different, equally valid tokens).
pub(crate) struct SingleFlight {
    capacity: usize,
    map: Mutex<HashMap<Box<str>, Flight>>,
}

impl SingleFlight {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The replacement for the token whose signature is `key`, signing one with
    /// `sign` if there is none yet. The lock is never held while signing.
    pub(crate) fn get_or_sign(
        &self,
        key: &str,
        now: i64,
        forget_after: i64,
        sign: impl FnOnce() -> Result<(String, i64), IssueError>,
    ) -> Result<(Arc<str>, i64), IssueError> {
        if let Some(flight) = self.lock().get(key).filter(|f| f.forget_after > now) {
            return Ok((flight.token.clone(), flight.expires_at));
        }
        let (token, expires_at) = sign()?;
        let token: Arc<str> = token.into();
        let mut map = self.lock();
        // Another request may have signed meanwhile: theirs wins, ours is dropped.
        if let Some(flight) = map.get(key).filter(|f| f.forget_after > now) {
            return Ok((flight.token.clone(), flight.expires_at));
        }
        if map.len() >= self.capacity {
            map.retain(|_, f| f.forget_after > now);
        }
        if map.len() < self.capacity {
            map.insert(
                key.into(),
                Flight {
                    token: token.clone(),
                    expires_at,
                    forget_after,
                },
            );
        }
        Ok((token, expires_at))
    }

    /// Makes `token` the replacement for the old token `key`, whatever was
    /// there: `renew_with` supersedes a renewal signed with the old claims.
    /// Returns the replacement it displaced, if one was still live.
    pub(crate) fn supersede(
        &self,
        key: &str,
        token: Arc<str>,
        expires_at: i64,
        forget_after: i64,
        now: i64,
    ) -> Option<Arc<str>> {
        let mut map = self.lock();
        let flight = Flight {
            token,
            expires_at,
            forget_after,
        };
        if let Some(slot) = map.get_mut(key) {
            let previous = std::mem::replace(slot, flight);
            return (previous.forget_after > now).then_some(previous.token);
        }
        if map.len() >= self.capacity {
            map.retain(|_, f| f.forget_after > now);
        }
        if map.len() < self.capacity {
            map.insert(key.into(), flight);
        }
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Flight>> {
        // The map holds no invariant a panic elsewhere could break.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl fmt::Debug for SingleFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_caller_gets_the_first_token() {
        let sf = SingleFlight::new(10);
        let a = sf
            .get_or_sign("sig", 0, 100, || Ok(("one".into(), 50)))
            .unwrap();
        let b = sf
            .get_or_sign("sig", 1, 100, || Ok(("two".into(), 51)))
            .unwrap();
        assert_eq!((&*a.0, a.1), ("one", 50));
        assert_eq!((&*b.0, b.1), ("one", 50));
    }

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let sf = SingleFlight::new(3);
        for i in 0..100 {
            sf.get_or_sign(&format!("k{i}"), i, i + 2, || Ok((format!("t{i}"), 0)))
                .unwrap();
            assert!(sf.len() <= 3);
        }
        // Expired entry is not reused.
        let t = sf
            .get_or_sign("k99", 200, 300, || Ok(("fresh".into(), 0)))
            .unwrap();
        assert_eq!(&*t.0, "fresh");
    }
}
