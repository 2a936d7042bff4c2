//! Single flight: parallel requests that present the same old token get the
//! same replacement token.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::IssueError;
use crate::token::FlightKey;

/// A [`FlightKey`] is already a keyed hash: its first half is the map's hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `FlightKey`'s `Hash`; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        if self.0 == 0 {
            self.0 = n;
        }
    }
}

/// A replacement already signed for an old token.
struct Flight {
    token: Arc<str>,
    expires_at: i64,
    /// When the old token stops verifying; the entry is useless after that.
    forget_after: i64,
    /// Which record of `Flights::order` is this entry's.
    serial: u64,
}

struct Flights {
    map: HashMap<FlightKey, Flight, BuildHasherDefault<PassThrough>>,
    /// Keys in insertion order, each with the serial of the entry it was
    /// pushed for; a record whose entry was replaced or removed is stale and
    /// skipped when it reaches the front.
    order: VecDeque<(FlightKey, u64)>,
    next_serial: u64,
}

impl Flights {
    /// Whether the front record is the live entry it names (not stale).
    fn is_current(&self, (key, serial): &(FlightKey, u64)) -> bool {
        self.map.get(key).is_some_and(|f| f.serial == *serial)
    }

    /// Pops the front record, dropping its entry if the record is current.
    fn pop_front(&mut self) {
        if let Some(record) = self.order.pop_front()
            && self.is_current(&record)
        {
            self.map.remove(&record.0);
        }
    }
}

/// A bounded map from an old token's canonical identity to its replacement.
///
/// Memory is bounded by `capacity` entries, each at most the size of two
/// tokens (which the size limit bounds), plus at most `2 * capacity` queue
/// records. Every operation is O(1) amortized: entries are reclaimed in
/// insertion order, a few per insert, once their old token expired; when the
/// map is full of live entries the oldest is evicted (a request presenting
/// that old token again then gets a fresh, equally valid replacement).
pub(crate) struct SingleFlight {
    capacity: usize,
    flights: Mutex<Flights>,
}

/// Front records examined per insert to reclaim expired entries early.
const RECLAIM: usize = 4;

impl SingleFlight {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            flights: Mutex::new(Flights {
                map: HashMap::default(),
                order: VecDeque::new(),
                next_serial: 0,
            }),
        }
    }

    /// The replacement for the token whose identity is `key`, signing one with
    /// `sign` if there is none yet. The lock is never held while signing.
    pub(crate) fn get_or_sign(
        &self,
        key: FlightKey,
        now: i64,
        forget_after: i64,
        sign: impl FnOnce() -> Result<(Arc<str>, i64), IssueError>,
    ) -> Result<(Arc<str>, i64), IssueError> {
        if let Some(flight) = self.lock().map.get(&key).filter(|f| f.forget_after > now) {
            return Ok((flight.token.clone(), flight.expires_at));
        }
        let (token, expires_at) = sign()?;
        let mut flights = self.lock();
        // Another request may have signed meanwhile: theirs wins, ours is dropped.
        if let Some(flight) = flights.map.get(&key).filter(|f| f.forget_after > now) {
            return Ok((flight.token.clone(), flight.expires_at));
        }
        self.store(
            &mut flights,
            key,
            token.clone(),
            expires_at,
            forget_after,
            now,
        );
        Ok((token, expires_at))
    }

    /// The live replacement for the old token `key`, if there is one.
    pub(crate) fn get(&self, key: FlightKey, now: i64) -> Option<(Arc<str>, i64)> {
        let flights = self.lock();
        let flight = flights.map.get(&key).filter(|f| f.forget_after > now)?;
        Some((flight.token.clone(), flight.expires_at))
    }

    /// Makes `token` the replacement for the old token `key`, whatever was
    /// there: `renew_with` supersedes a renewal signed with the old claims.
    /// Returns the replacement it displaced, if one was still live.
    pub(crate) fn supersede(
        &self,
        key: FlightKey,
        token: Arc<str>,
        expires_at: i64,
        forget_after: i64,
        now: i64,
    ) -> Option<Arc<str>> {
        let mut flights = self.lock();
        let previous = flights
            .map
            .get(&key)
            .filter(|f| f.forget_after > now)
            .map(|f| f.token.clone());
        self.store(&mut flights, key, token, expires_at, forget_after, now);
        previous
    }

    /// Records `token` as the replacement for `key` (replacing any entry),
    /// reclaiming and evicting in insertion order: O(1) amortized.
    fn store(
        &self,
        flights: &mut Flights,
        key: FlightKey,
        token: Arc<str>,
        expires_at: i64,
        forget_after: i64,
        now: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        // Reclaim a few records at the front: stale ones, and entries whose old
        // token expired (insertion order is roughly expiry order).
        for _ in 0..RECLAIM {
            match flights.order.front() {
                Some(front)
                    if !flights.is_current(front)
                        || flights
                            .map
                            .get(&front.0)
                            .is_some_and(|f| f.forget_after <= now) =>
                {
                    flights.pop_front()
                }
                _ => break,
            }
        }
        // An expired entry under this key is replaced in place (its record
        // goes stale); otherwise make room by evicting in insertion order.
        if !flights.map.contains_key(&key) {
            while flights.map.len() >= self.capacity && !flights.order.is_empty() {
                flights.pop_front();
            }
        }
        let serial = flights.next_serial;
        flights.next_serial += 1;
        flights.map.insert(
            key,
            Flight {
                token,
                expires_at,
                forget_after,
                serial,
            },
        );
        flights.order.push_back((key, serial));
        // Stale records (replaced entries) are dropped in one pass once they
        // are as many as the entries: amortized O(1), memory bounded.
        if flights.order.len() > 2 * self.capacity {
            let Flights { map, order, .. } = &mut *flights;
            order.retain(|(key, serial)| map.get(key).is_some_and(|f| f.serial == *serial));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flights> {
        // The map holds no invariant a panic elsewhere could break.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[cfg(test)]
    fn records(&self) -> usize {
        self.lock().order.len()
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

    /// A key named in the test (the layer derives them from tokens).
    fn k(name: &str) -> FlightKey {
        let hash = |salt: u8| {
            name.bytes().fold(u64::from(salt), |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            })
        };
        FlightKey(hash(1), hash(2))
    }

    #[test]
    fn second_caller_gets_the_first_token() {
        let sf = SingleFlight::new(10);
        let a = sf
            .get_or_sign(k("sig"), 0, 100, || Ok(("one".into(), 50)))
            .unwrap();
        let b = sf
            .get_or_sign(k("sig"), 1, 100, || Ok(("two".into(), 51)))
            .unwrap();
        assert_eq!((&*a.0, a.1), ("one", 50));
        assert_eq!((&*b.0, b.1), ("one", 50));
    }

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let sf = SingleFlight::new(3);
        for i in 0..100 {
            sf.get_or_sign(k(&format!("k{i}")), i, i + 2, || {
                Ok((format!("t{i}").into(), 0))
            })
            .unwrap();
            assert!(sf.len() <= 3);
        }
        // Expired entry is not reused.
        let t = sf
            .get_or_sign(k("k99"), 200, 300, || Ok(("fresh".into(), 0)))
            .unwrap();
        assert_eq!(&*t.0, "fresh");
    }

    fn sign(sf: &SingleFlight, key: &str, now: i64, forget_after: i64, token: &str) -> String {
        let token = token.to_owned();
        sf.get_or_sign(k(key), now, forget_after, || Ok((token.into(), 0)))
            .unwrap()
            .0
            .to_string()
    }

    #[test]
    fn a_full_map_of_live_entries_evicts_the_oldest_and_still_shares() {
        let sf = SingleFlight::new(3);
        for i in 0..3 {
            sign(&sf, &format!("k{i}"), 0, 1000, &format!("t{i}"));
        }
        // Full of live entries: the newest is still shared, the oldest goes.
        assert_eq!(sign(&sf, "k3", 1, 1000, "t3"), "t3");
        assert_eq!(sign(&sf, "k3", 2, 1000, "other"), "t3", "shared while full");
        assert_eq!(sf.len(), 3);
        assert_eq!(sign(&sf, "k1", 3, 1000, "other"), "t1");
        assert_eq!(sign(&sf, "k2", 3, 1000, "other"), "t2");
        assert_eq!(sign(&sf, "k0", 3, 1000, "fresh"), "fresh", "k0 was evicted");
    }

    #[test]
    fn an_entry_is_served_until_its_old_token_expires_and_never_after() {
        let sf = SingleFlight::new(10);
        assert_eq!(sign(&sf, "k", 0, 100, "one"), "one");
        assert_eq!(sign(&sf, "k", 99, 100, "two"), "one");
        assert_eq!(sign(&sf, "k", 100, 200, "three"), "three");
        assert_eq!(sign(&sf, "k", 150, 200, "four"), "three");
    }

    #[test]
    fn bookkeeping_stays_bounded_under_any_pattern() {
        let sf = SingleFlight::new(8);
        // The same keys re-signed after expiry leave stale records behind;
        // they are dropped before they outnumber twice the capacity.
        for round in 0..1000 {
            for k in 0..4 {
                sign(&sf, &format!("k{k}"), round, round + 1, "t");
            }
            assert!(sf.len() <= 8);
            assert!(sf.records() <= 16, "{} records", sf.records());
        }
        // Expired entries are reclaimed by later inserts.
        let sf = SingleFlight::new(1000);
        for i in 0..100 {
            sign(&sf, &format!("old{i}"), 0, 10, "t");
        }
        for i in 0..100 {
            sign(&sf, &format!("new{i}"), 20, 1000, "t");
        }
        assert_eq!(sf.len(), 100, "the expired entries are gone");
    }
}
