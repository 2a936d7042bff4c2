//! The layer's own replay cache: bounded, in two generations per shard, so
//! forgetting is dropping the older generation and no entry is scanned.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Shards, so parallel requests rarely wait for one another.
const SHARDS: usize = 16;

/// What remembering a proof found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remembered {
    /// First use: recorded.
    First,
    /// Used before: a replay.
    Seen,
    /// The cache is full and cannot record it (never accepted).
    Full,
}

struct Generations {
    started: i64,
    current: HashMap<[u8; 32], i64>,
    previous: HashMap<[u8; 32], i64>,
}

/// Proof ids by shard; each entry lives at least one `window` (longer than
/// any proof is accepted) and at most two.
pub(crate) struct LocalReplay {
    shards: Vec<Mutex<Generations>>,
    /// Picks a proof's shard with a key of this process: ids are hashes of
    /// what a client chose, so a plain byte would let one client aim every
    /// proof at one shard and fill it.
    shard_of: std::collections::hash_map::RandomState,
    per_shard: usize,
    window: i64,
}

impl LocalReplay {
    /// A cache of about `capacity` proofs, each kept at least `window` seconds.
    pub(crate) fn new(capacity: usize, window: i64) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Generations {
                    started: i64::MIN,
                    current: HashMap::new(),
                    previous: HashMap::new(),
                })
            })
            .collect();
        Self {
            shards,
            shard_of: std::collections::hash_map::RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            window: window.max(1),
        }
    }

    /// Records `id` (valid until `until`), unless it was seen.
    pub(crate) fn remember(&self, id: [u8; 32], until: i64, now: i64) -> Remembered {
        let index = self.shard_of.hash_one(id) as usize % self.shards.len();
        self.remember_in(index, id, until, now)
    }

    fn remember_in(&self, index: usize, id: [u8; 32], until: i64, now: i64) -> Remembered {
        let shard = &self.shards[index];
        // A poisoned shard still holds sound maps: every change is one insert.
        let mut g = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.saturating_sub(g.started) >= self.window {
            let stale = now.saturating_sub(g.started) >= self.window.saturating_mul(2);
            g.previous = std::mem::take(&mut g.current);
            if stale {
                g.previous.clear();
            }
            g.started = now;
        }
        let seen = |map: &HashMap<[u8; 32], i64>| map.get(&id).is_some_and(|&u| u >= now);
        if seen(&g.current) || seen(&g.previous) {
            return Remembered::Seen;
        }
        if g.current.len() + g.previous.len() >= self.per_shard {
            // Make room from what no longer needs remembering first.
            g.current.retain(|_, until| *until >= now);
            g.previous.retain(|_, until| *until >= now);
            if g.current.len() + g.previous.len() >= self.per_shard {
                return Remembered::Full;
            }
        }
        g.current.insert(id, until);
        Remembered::First
    }
}

impl std::fmt::Debug for LocalReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReplay")
            .field("per_shard", &self.per_shard)
            .field("window", &self.window)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn replays_are_seen_until_forgotten_and_a_full_cache_refuses() {
        // One shard's worth: three proofs in all (per shard, 1).
        let mut cache = LocalReplay::new(SHARDS * 3, 70);
        cache.shards.truncate(1);
        cache.per_shard = 3;
        let cache = Single(cache);
        assert_eq!(cache.remember(id(1), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(2), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(3), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(4), 1070, 1000), Remembered::Full);
        assert_eq!(cache.remember(id(1), 1070, 1060), Remembered::Seen);
        assert_eq!(cache.remember(id(1), 1070, 1070), Remembered::Seen);
        // Two windows later everything is forgotten, and there is room.
        assert_eq!(cache.remember(id(4), 1300, 1141), Remembered::First);
        assert_eq!(cache.remember(id(1), 1300, 1141), Remembered::First);
        // Full of live entries: refused; once they expire, room is made
        // without waiting for the generation to turn.
        assert_eq!(cache.remember(id(5), 1150, 1141), Remembered::First);
        assert_eq!(cache.remember(id(6), 1150, 1141), Remembered::Full);
        assert_eq!(cache.remember(id(6), 1200, 1160), Remembered::First);
    }

    /// A cache of one shard, for exact counts.
    struct Single(LocalReplay);

    impl Single {
        fn remember(&self, id: [u8; 32], until: i64, now: i64) -> Remembered {
            self.0.remember_in(0, id, until, now)
        }
    }
}
