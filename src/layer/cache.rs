//! The opt-in verified-token cache: a token seen before skips the signature
//! check and the JSON parse; its times, the session cap and revocation are
//! still checked on every request.
//!
//! A hit costs one keyed hash of the token's signature segment, a shared
//! read lock on one of 16 shards, a comparison of the full token, and a
//! reference-count increment: the claims are never copied. Writers hold a
//! shard's lock only for O(1) work (insert, evict the oldest entry).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use crate::keys::Key;
use crate::token::Verified;
use crate::token::jws::signature_part;

const SHARDS: usize = 16;

/// The map's keys are already keyed hashes: use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Shard<C> {
    /// The key set's version the entries were verified under.
    version: u64,
    map: HashMap<u64, Arc<Verified<C>>, BuildHasherDefault<Identity>>,
    /// Every key of `map` once, oldest first: eviction is O(1).
    order: VecDeque<u64>,
}

/// A bounded map from exact token bytes to verified claims.
pub(crate) struct VerifiedCache<C> {
    hasher: RandomState,
    per_shard: usize,
    shards: Box<[RwLock<Shard<C>>]>,
}

impl<C> VerifiedCache<C> {
    pub(crate) fn new(capacity: usize) -> Self {
        let count = SHARDS.min(capacity.max(1));
        let shards = (0..count)
            .map(|_| {
                RwLock::new(Shard {
                    version: 0,
                    map: HashMap::default(),
                    order: VecDeque::new(),
                })
            })
            .collect();
        Self {
            hasher: RandomState::new(),
            per_shard: (capacity / count).max(1),
            shards,
        }
    }

    /// A keyed hash of the token's signature: short to hash, and unique per
    /// token for every token that verified. Tokens that share a signature
    /// (forgeries) share a slot, and the full comparison tells them apart.
    fn locate(&self, token: &str) -> (u64, &RwLock<Shard<C>>) {
        // A signature's first 16 characters (96 bits of a MAC or signature)
        // pick the slot; the whole token is compared on a hit.
        let signature = signature_part(token).as_bytes();
        let hash = self.hasher.hash_one(&signature[..signature.len().min(16)]);
        let shard = &self.shards[(hash >> 32) as usize % self.shards.len()];
        (hash, shard)
    }

    /// The verified token `token` if it verified before under keys of
    /// `version`, by a key that is still one of `keys` (so a key set that
    /// changes without a new version never serves a token of a removed key).
    pub(crate) fn get(&self, token: &str, version: u64, keys: &[Key]) -> Option<Arc<Verified<C>>> {
        let (hash, shard) = self.locate(token);
        let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
        if shard.version != version {
            return None;
        }
        let verified = shard.map.get(&hash)?;
        (verified.token.as_bytes() == token.as_bytes()
            && keys.iter().any(|k| k.id() == verified.key.id))
        .then(|| verified.clone())
    }

    /// Remembers a verified token. A full shard drops its oldest entry;
    /// memory stays bounded by the capacity.
    pub(crate) fn insert(&self, verified: Arc<Verified<C>>, version: u64) {
        let (hash, shard) = self.locate(verified.token.as_str());
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        if shard.version != version {
            shard.map.clear();
            shard.order.clear();
            shard.version = version;
        }
        if let Some(slot) = shard.map.get_mut(&hash) {
            *slot = verified;
            return;
        }
        if shard.map.len() >= self.per_shard
            && let Some(oldest) = shard.order.pop_front()
        {
            shard.map.remove(&oldest);
        }
        shard.map.insert(hash, verified);
        shard.order.push_back(hash);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

impl<C> fmt::Debug for VerifiedCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &(self.per_shard * self.shards.len()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::StandardClaims;
    use crate::token::RawToken;

    fn verified(token: &str, key: &Key) -> Arc<Verified<StandardClaims>> {
        Arc::new(Verified {
            claims: StandardClaims::default(),
            token: RawToken::copy(token),
            key: crate::token::KeyRef {
                id: key.id(),
                alg: key.algorithm(),
            },
        })
    }

    #[test]
    fn bounded_and_emptied_by_a_key_change() {
        let key = Key::hs256([1u8; 32]).unwrap();
        let keys = std::slice::from_ref(&key);
        let cache = VerifiedCache::new(64);
        for i in 0..1000 {
            cache.insert(verified(&format!("h.p.s{i}"), &key), 1);
            assert!(cache.len() <= 64);
        }
        assert!(cache.get("h.p.s999", 1, keys).is_some(), "the newest stays");
        assert!(cache.get("h.p.s0", 1, keys).is_none(), "the oldest went");
        assert!(
            cache.get("h.p.s999", 2, keys).is_none(),
            "other keys: not trusted"
        );
        cache.insert(verified("h.p.new", &key), 2);
        assert!(cache.get("h.p.new", 2, keys).is_some());
        assert!(
            cache.get("h.p.s999", 2, keys).is_none(),
            "a key change empties it"
        );
    }

    #[test]
    fn the_whole_token_must_match() {
        let key = Key::hs256([1u8; 32]).unwrap();
        let keys = std::slice::from_ref(&key);
        let cache = VerifiedCache::new(16);
        cache.insert(verified("header.payload.sig", &key), 0);
        assert!(cache.get("header.payload.sig", 0, keys).is_some());
        assert!(
            cache.get("header.forged.sig", 0, keys).is_none(),
            "same signature, other payload: not a hit"
        );
    }

    #[test]
    fn a_removed_key_is_never_trusted_even_without_a_new_version() {
        let old = Key::hs256([1u8; 32]).unwrap();
        let new = Key::hs256([2u8; 32]).unwrap();
        let cache = VerifiedCache::new(16);
        cache.insert(verified("h.p.s", &old), 0);
        assert!(cache.get("h.p.s", 0, &[new.clone(), old.clone()]).is_some());
        assert!(
            cache.get("h.p.s", 0, &[new]).is_none(),
            "the key set changed but the version did not: still not served"
        );
    }
}
