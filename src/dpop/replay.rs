//! The layer's own replay cache: bounded, in two generations per shard, so
//! forgetting is dropping the older generation and no entry is scanned.

use std::collections::HashMap;
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
            per_shard: capacity.div_ceil(SHARDS).max(1),
            window: window.max(1),
        }
    }

    /// Records `id` (valid until `until`), unless it was seen.
    pub(crate) fn remember(&self, id: [u8; 32], until: i64, now: i64) -> Remembered {
        let shard = &self.shards[usize::from(id[0]) % SHARDS];
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
            return Remembered::Full;
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
        id[0] = 0; // one shard
        id
    }

    #[test]
    fn replays_are_seen_until_forgotten_and_a_full_cache_refuses() {
        let cache = LocalReplay::new(SHARDS * 3, 70);
        assert_eq!(cache.remember(id(1), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(2), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(3), 1070, 1000), Remembered::First);
        assert_eq!(cache.remember(id(4), 1070, 1000), Remembered::Full);
        assert_eq!(cache.remember(id(1), 1070, 1060), Remembered::Seen);
        assert_eq!(cache.remember(id(1), 1070, 1070), Remembered::Seen);
        // Two windows later everything is forgotten, and there is room.
        assert_eq!(cache.remember(id(4), 1300, 1141), Remembered::First);
        assert_eq!(cache.remember(id(1), 1300, 1141), Remembered::First);
    }
}
