//! The opt-in verified-token cache: a token seen before skips the signature
//! check and the JSON parse; its times, the session cap and revocation are
//! still checked on every request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use crate::claims::Claims;
use crate::keys::Key;

struct Entries<C> {
    /// The key set's version the entries were verified under.
    version: u64,
    /// Token -> (claims, id of the key that verified it).
    map: HashMap<Box<str>, (C, u64)>,
}

/// A bounded map from exact token bytes to verified claims.
pub(crate) struct VerifiedCache<C> {
    capacity: usize,
    entries: RwLock<Entries<C>>,
}

impl<C: Claims> VerifiedCache<C> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: RwLock::new(Entries {
                version: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// The claims of `token` if it verified before under keys of `version`,
    /// by a key that is still one of `keys` (so a key set that changes without
    /// a new version still never serves a token of a removed key).
    pub(crate) fn get(&self, token: &str, version: u64, keys: &[Key]) -> Option<C> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if entries.version != version {
            return None;
        }
        let (claims, key) = entries.map.get(token)?;
        keys.iter().any(|k| k.id() == *key).then(|| claims.clone())
    }

    /// Remembers a verified token. When full, entries whose token expired go
    /// first, then an eighth of the rest; memory stays bounded by `capacity`.
    pub(crate) fn insert(
        &self,
        token: &str,
        claims: &C,
        key: u64,
        version: u64,
        expired_before: i64,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.version != version {
            entries.map.clear();
            entries.version = version;
        }
        if entries.map.len() >= self.capacity {
            entries
                .map
                .retain(|_, (c, _)| c.registered().exp > expired_before);
        }
        if entries.map.len() >= self.capacity {
            let evict: Vec<Box<str>> = entries
                .map
                .keys()
                .take((self.capacity / 8).max(1))
                .cloned()
                .collect();
            for key in evict {
                entries.map.remove(&key);
            }
        }
        entries.map.insert(token.into(), (claims.clone(), key));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

impl<C> fmt::Debug for VerifiedCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::StandardClaims;

    fn claims(exp: i64) -> StandardClaims {
        let mut claims = StandardClaims::default();
        claims.registered.exp = exp;
        claims
    }

    #[test]
    fn bounded_and_emptied_by_a_key_change() {
        let key = Key::hs256([1u8; 32]).unwrap();
        let keys = std::slice::from_ref(&key);
        let cache = VerifiedCache::new(16);
        for i in 0..100 {
            cache.insert(&format!("t{i}"), &claims(i), key.id(), 1, 0);
            assert!(cache.len() <= 16);
        }
        assert!(cache.get("t99", 1, keys).is_some());
        assert!(
            cache.get("t99", 2, keys).is_none(),
            "other keys: not trusted"
        );
        cache.insert("new", &claims(5), key.id(), 2, 0);
        assert_eq!(cache.len(), 1, "a key change empties the cache");
        // Expired entries go first.
        let cache = VerifiedCache::new(2);
        cache.insert("old", &claims(10), key.id(), 0, 0);
        cache.insert("live", &claims(100), key.id(), 0, 0);
        cache.insert("newer", &claims(100), key.id(), 0, 50);
        assert!(cache.get("old", 0, keys).is_none());
        assert!(cache.get("live", 0, keys).is_some());
    }

    #[test]
    fn a_removed_key_is_never_trusted_even_without_a_new_version() {
        let old = Key::hs256([1u8; 32]).unwrap();
        let new = Key::hs256([2u8; 32]).unwrap();
        let cache = VerifiedCache::new(16);
        cache.insert("t", &claims(100), old.id(), 0, 0);
        assert!(cache.get("t", 0, &[new.clone(), old.clone()]).is_some());
        assert!(
            cache.get("t", 0, &[new]).is_none(),
            "the key set changed but the version did not: still not served"
        );
    }
}
