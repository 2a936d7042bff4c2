//! The counting filter in front of [`MemoryStore`](super::MemoryStore)'s maps:
//! levels of 4-bit counters, one cache line per key, so "not revoked" costs a
//! hash and a few atomic loads with no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Entries the smallest filter level is sized for; each next level holds
/// [`GROWTH`] times more, up to the store's capacity.
pub(super) const FIRST_LEVEL: usize = 1024;
pub(super) const GROWTH: usize = 4;
/// The largest level the filter grows to, whatever the capacity.
pub(super) const LARGEST_LEVEL: usize = 1 << 28;
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
