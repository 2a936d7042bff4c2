//! Counters of what the layer did, always on and dependency-free:
//! [`SlidingJwtLayer::stats`](crate::SlidingJwtLayer::stats).
//!
//! Each counter is striped over a few cache lines picked per thread, so
//! threads on different cores do not fight over one line: a count is one
//! uncontended relaxed atomic add.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::reject::RejectionKind;

/// Every kind, in the order of [`Stats::rejections`].
const KINDS: &[RejectionKind] = RejectionKind::ALL;

fn index(kind: RejectionKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len())
}

/// What is counted (one slot each).
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Verified,
    CacheHit,
    Renewed,
    Revoked,
    ReuseDetected,
    /// A reuse mark the store had no room for: a renewal refused, or a
    /// first use left unmarked.
    MarkRefused,
    /// A long-lived connection told its session ended (a
    /// `Session::ended` future the watcher resolved).
    StreamEnded,
}

const EVENTS: usize = 7;
/// Event slots, then one slot per rejection kind (and one for kinds added later).
const SLOTS: usize = EVENTS + KINDS.len() + 1;
const STRIPES: usize = 8;

#[repr(align(128))]
struct Stripe([AtomicU64; SLOTS]);

/// The live counters of one layer (shared by its clones and services).
pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
    /// The same counts through the `metrics` facade.
    #[cfg(feature = "metrics")]
    exported: exported::Exported,
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            #[cfg(feature = "metrics")]
            exported: exported::Exported::register(),
        }
    }

    fn add(&self, slot: usize) {
        let stripe = STRIPE.try_with(|s| *s).unwrap_or(0);
        self.stripes[stripe].0[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, event: Event) {
        self.add(event as usize);
        #[cfg(feature = "metrics")]
        self.exported.events[event as usize].increment(1);
    }

    pub(crate) fn rejected(&self, kind: RejectionKind) {
        self.add(EVENTS + index(kind));
        #[cfg(feature = "metrics")]
        if let Some(counter) = self.exported.rejected.get(index(kind)) {
            counter.increment(1);
        }
    }

    fn sum(&self, slot: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[slot].load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            verified: self.sum(Event::Verified as usize),
            cache_hits: self.sum(Event::CacheHit as usize),
            renewed: self.sum(Event::Renewed as usize),
            revoked: self.sum(Event::Revoked as usize),
            reuse_detected: self.sum(Event::ReuseDetected as usize),
            marks_refused: self.sum(Event::MarkRefused as usize),
            streams_ended: self.sum(Event::StreamEnded as usize),
            rejected: std::array::from_fn(|i| self.sum(EVENTS + i)),
        }
    }
}

/// The `metrics` facade's side (feature `metrics`): handles registered once,
/// when the layer is built, with the recorder installed then.
#[cfg(feature = "metrics")]
pub(crate) mod exported {
    use super::{EVENTS, Event, KINDS};

    /// Metric names (Prometheus conventions: `_total` counters, base units).
    pub(crate) const VERIFIED: &str = "sliding_jwt_verified_total";
    pub(crate) const CACHE_HITS: &str = "sliding_jwt_cache_hits_total";
    pub(crate) const RENEWED: &str = "sliding_jwt_renewed_total";
    pub(crate) const REVOKED: &str = "sliding_jwt_revoked_total";
    pub(crate) const REUSE_DETECTED: &str = "sliding_jwt_reuse_detected_total";
    pub(crate) const MARKS_REFUSED: &str = "sliding_jwt_reuse_marks_refused_total";
    pub(crate) const STREAMS_ENDED: &str = "sliding_jwt_streams_ended_total";
    pub(crate) const REJECTED: &str = "sliding_jwt_rejected_total";
    pub(crate) const STORE_SECONDS: &str = "sliding_jwt_store_round_trip_seconds";

    pub(crate) struct Exported {
        pub(crate) events: [metrics::Counter; EVENTS],
        pub(crate) rejected: Vec<metrics::Counter>,
    }

    impl Exported {
        pub(crate) fn register() -> Self {
            let name = |event: Event| match event {
                Event::Verified => VERIFIED,
                Event::CacheHit => CACHE_HITS,
                Event::Renewed => RENEWED,
                Event::Revoked => REVOKED,
                Event::ReuseDetected => REUSE_DETECTED,
                Event::MarkRefused => MARKS_REFUSED,
                Event::StreamEnded => STREAMS_ENDED,
            };
            let events = [
                Event::Verified,
                Event::CacheHit,
                Event::Renewed,
                Event::Revoked,
                Event::ReuseDetected,
                Event::MarkRefused,
                Event::StreamEnded,
            ];
            Self {
                events: events.map(|event| metrics::counter!(name(event))),
                rejected: KINDS
                    .iter()
                    .map(|kind| metrics::counter!(REJECTED, "reason" => kind.as_str()))
                    .collect(),
            }
        }
    }

    /// Records one store round trip (`store` is `redis` or `durable`).
    pub(crate) fn store_round_trip(store: &'static str, started: std::time::Instant) {
        metrics::histogram!(STORE_SECONDS, "store" => store)
            .record(started.elapsed().as_secs_f64());
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// A snapshot of a layer's counters since it was built, e.g. for a metrics
/// endpoint (export them with the metrics library you already use).
///
/// ```
/// # use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims, RejectionKind};
/// # let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32]).unwrap()).build().unwrap();
/// let stats = layer.stats();
/// println!("verified {} renewed {} expired {}", stats.verified(), stats.renewed(),
///          stats.rejected(RejectionKind::Expired));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    verified: u64,
    cache_hits: u64,
    renewed: u64,
    revoked: u64,
    reuse_detected: u64,
    marks_refused: u64,
    streams_ended: u64,
    rejected: [u64; KINDS.len() + 1],
}

impl Stats {
    /// Requests whose token verified (whether or not the verified-token
    /// cache answered), before the revocation check.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Verifications answered by the verified-token cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// Responses that carried a renewed token.
    pub fn renewed(&self) -> u64 {
        self.renewed
    }

    /// Revocations recorded through this layer (logouts, `renew_with`
    /// retiring a token, the [`Revoker`](crate::Revoker)).
    pub fn revoked(&self) -> u64 {
        self.revoked
    }

    /// Replaced tokens that arrived after the reuse grace and whose session
    /// was revoked for it (see
    /// [`with_reuse_detection`](crate::SlidingJwtBuilder::with_reuse_detection)).
    pub fn reuse_detected(&self) -> u64 {
        self.reuse_detected
    }

    /// Reuse marks the revocation store had no room for (its budget of
    /// marks, or the subject's quota, was full): each refused a renewal
    /// (no replacement is issued that could not be marked), or left a
    /// first use unmarked when the room ran out between the two.
    pub fn marks_refused(&self) -> u64 {
        self.marks_refused
    }

    /// Long-lived connections told their session ended
    /// ([`Session::ended`](crate::Session::ended) futures resolved: logout,
    /// ending, reuse, cap, idle, superseded claims, or the store unable to
    /// tell), each once.
    pub fn streams_ended(&self) -> u64 {
        self.streams_ended
    }

    /// Requests refused for `kind`.
    pub fn rejected(&self, kind: RejectionKind) -> u64 {
        self.rejected[index(kind)]
    }

    /// Requests refused, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Every kind with its count, for exporting.
    pub fn rejections(&self) -> impl Iterator<Item = (RejectionKind, u64)> + '_ {
        KINDS.iter().copied().zip(self.rejected.iter().copied())
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("verified", &self.verified)
            .field("cache_hits", &self.cache_hits)
            .field("renewed", &self.renewed)
            .field("revoked", &self.revoked)
            .field("reuse_detected", &self.reuse_detected)
            .field("marks_refused", &self.marks_refused)
            .field("streams_ended", &self.streams_ended)
            .field("rejected", &self.rejected_total())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_slot() {
        let counters = Counters::new();
        for (i, kind) in KINDS.iter().enumerate() {
            for _ in 0..=i {
                counters.rejected(*kind);
            }
        }
        counters.count(Event::Verified);
        let stats = counters.snapshot();
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(stats.rejected(*kind), i as u64 + 1, "{kind:?}");
        }
        assert_eq!(stats.verified(), 1);
        assert_eq!(stats.rejections().count(), KINDS.len());
    }

    #[test]
    fn threads_add_up() {
        let counters = std::sync::Arc::new(Counters::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.count(Event::Renewed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counters.snapshot().renewed(), 4000);
    }
}
