//! The counting filter in front of [`MemoryStore`](super::MemoryStore)'s maps:
//! levels of 4-bit counters, one cache line per key, so "not revoked" costs a
//! hash and a few atomic loads with no lock; and how it grows, a level at a
//! time, as the store fills (the store counts its entries into the next
//! level in bounded steps, then [`Filter::switch`]es to it).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Entries the smallest filter level is sized for; each next level holds
/// [`GROWTH`] times more, up to the store's capacity.
const FIRST_LEVEL: usize = 1024;
const GROWTH: usize = 4;
/// The largest level the filter grows to, whatever the capacity.
const LARGEST_LEVEL: usize = 1 << 28;
/// Counters a level has per entry it is sized for (a false-positive rate of
/// about 1 % when it holds that many).
pub(super) const COUNTERS_PER_ENTRY: usize = 10;
/// A block is one 64-byte cache line of 4-bit counters: a key's counters all
/// lie in one block, so a look-up touches one cache line.
pub(super) const BLOCK_WORDS: usize = 8;
pub(super) const COUNTERS_PER_WORD: u32 = 16;
pub(super) const COUNTERS_PER_BLOCK: usize = BLOCK_WORDS * COUNTERS_PER_WORD as usize;
/// Counters per key.
pub(super) const HASHES: u32 = 4;
/// A counter that reached this no longer knows its count and stays set.
pub(super) const SATURATED: u64 = 0xF;

/// The filter's levels, allocated as the store fills: readers use the
/// active one; while the store grows, it also counts into the next.
pub(super) struct Filter {
    levels: Box<[OnceLock<Level>]>,
    active: AtomicUsize,
    capacity: usize,
}

impl Filter {
    /// Levels for up to `capacity` entries: [`FIRST_LEVEL`], then
    /// [`GROWTH`] times more each, up to the capacity or [`LARGEST_LEVEL`].
    /// Only the first is allocated now.
    pub(super) fn new(capacity: usize) -> Self {
        let mut sizes = vec![FIRST_LEVEL.min(capacity.max(1))];
        while let Some(&last) = sizes.last() {
            if last >= capacity || last >= LARGEST_LEVEL {
                break;
            }
            sizes.push(last.saturating_mul(GROWTH).min(capacity).min(LARGEST_LEVEL));
        }
        let levels: Box<[OnceLock<Level>]> = sizes.iter().map(|_| OnceLock::new()).collect();
        let _ = levels[0].set(Level::new(sizes[0]));
        Self {
            levels,
            active: AtomicUsize::new(0),
            capacity,
        }
    }

    /// The level readers use.
    pub(super) fn active(&self) -> &Level {
        let active = self.active.load(Ordering::Acquire);
        // The active level is always set before `active` points at it.
        self.levels[active]
            .get()
            .unwrap_or_else(|| unreachable!("filter level {active} not allocated"))
    }

    /// The level being grown into, once allocated.
    pub(super) fn next(&self) -> Option<&Level> {
        let active = self.active.load(Ordering::Acquire);
        self.levels.get(active + 1).and_then(OnceLock::get)
    }

    /// Allocates the next level when the active one holds fewer than `live`
    /// entries and a larger one exists; `true` when the store should now
    /// count its entries into it.
    pub(super) fn start_growing(&self, live: usize) -> bool {
        let active = self.active.load(Ordering::Relaxed);
        if active + 1 >= self.levels.len() || live <= self.active().holds {
            return false;
        }
        let holds = self
            .active()
            .holds
            .saturating_mul(GROWTH)
            .min(self.capacity)
            .min(LARGEST_LEVEL);
        self.levels[active + 1].get_or_init(|| Level::new(holds));
        true
    }

    /// Readers switch to the next level: every live entry is counted in it.
    pub(super) fn switch(&self) {
        self.active.fetch_add(1, Ordering::Release);
    }

    /// Whether the filter has grown past its first level.
    #[cfg(test)]
    pub(super) fn grown(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }
}

/// One size of the counting filter.
pub(super) struct Level {
    /// Entries this level is sized for.
    pub(super) holds: usize,
    blocks: u64,
    pub(super) counters: Box<[AtomicU64]>,
}

impl Level {
    pub(super) fn new(holds: usize) -> Self {
        let blocks = holds
            .saturating_mul(COUNTERS_PER_ENTRY)
            .div_ceil(COUNTERS_PER_BLOCK)
            .max(1);
        Self {
            holds,
            blocks: blocks as u64,
            counters: (0..blocks * BLOCK_WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// The word and bit offset of each of the key's counters: the block from
    /// the hash's high half, the counters in it from its low bits.
    fn slots(&self, hash: u64) -> impl Iterator<Item = (&AtomicU64, u32)> {
        let block = (u128::from(hash >> 32) * u128::from(self.blocks)) >> 32;
        let base = block as usize * BLOCK_WORDS;
        (0..HASHES).map(move |i| {
            let counter = (hash >> (7 * i)) as u32 % COUNTERS_PER_BLOCK as u32;
            let word = &self.counters[base + (counter / COUNTERS_PER_WORD) as usize];
            (word, (counter % COUNTERS_PER_WORD) * 4)
        })
    }

    /// Whether every counter of the key is set: lock-free.
    pub(super) fn contains(&self, hash: u64) -> bool {
        self.slots(hash)
            .all(|(word, shift)| (word.load(Ordering::Acquire) >> shift) & SATURATED != 0)
    }

    /// Counts a key in. Only under the store's write lock (a single writer).
    pub(super) fn add(&self, hash: u64) {
        for (word, shift) in self.slots(hash) {
            let value = word.load(Ordering::Relaxed);
            if (value >> shift) & SATURATED != SATURATED {
                word.store(value + (1 << shift), Ordering::Release);
            }
        }
    }

    /// Counts a key out. Only under the store's write lock, for a key that was
    /// counted in: a counter never drops below the live keys that share it.
    pub(super) fn remove(&self, hash: u64) {
        for (word, shift) in self.slots(hash) {
            let value = word.load(Ordering::Relaxed);
            let count = (value >> shift) & SATURATED;
            if count != 0 && count != SATURATED {
                word.store(value - (1 << shift), Ordering::Release);
            }
        }
    }
}
