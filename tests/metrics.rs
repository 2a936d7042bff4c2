//! The `metrics` feature: a recorder installed before the layer is built
//! sees exact counts for a login, renewal, rejection, reuse and logout
//! sequence, under the documented Prometheus names, and a histogram of the
//! durable store's round trips.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use http::StatusCode;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower_sliding_jwt::SlidingJwtLayer;

/// Every counter by its name and labels (`name{label=value}`), and every
/// histogram's samples.
#[derive(Default)]
struct Captured {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn name(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

struct Capture(&'static Captured);

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.0.counters.lock().unwrap();
        Counter::from_arc(counters.entry(name(key)).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.0.histograms.lock().unwrap();
        Histogram::from_arc(histograms.entry(name(key)).or_default().clone())
    }
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<&'static Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured: &'static Captured = Box::leak(Box::default());
        metrics::set_global_recorder(Capture(captured)).unwrap();
        captured
    })
}

fn count(name: &str) -> u64 {
    captured()
        .counters
        .lock()
        .unwrap()
        .get(name)
        .map_or(0, |counter| counter.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_session_is_counted_exactly_under_the_documented_names() {
    let captured = captured();
    let dir = std::env::temp_dir().join(format!("tsj-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let clock = clock();
    let store = tower_sliding_jwt::DurableStore::builder(dir.join("revocations"))
        .with_clock(clock.clone())
        .open()
        .unwrap();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .with_reuse_detection(Duration::from_secs(30))
        .build()
        .unwrap();
    let app = app(&layer);

    // Login, two requests, a renewal, the replacement used.
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(
        send(&app, get(login.token())).await.status(),
        StatusCode::OK
    );
    clock.advance(minutes(41));
    let renewal = send(&app, get(login.token())).await;
    let replacement = renewed(&renewal).expect("renewed");
    assert_eq!(send(&app, get(&replacement)).await.status(), StatusCode::OK);
    // Two refusals of two kinds.
    assert_eq!(
        send(&app, anonymous()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, get("garbage")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The old token after the grace: reuse, which revokes the session.
    // Past the grace plus the default 5 s leeway.
    clock.advance(Duration::from_secs(36));
    assert_eq!(
        send(&app, get(login.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // And the replacement is refused as revoked.
    assert_eq!(
        send(&app, get(&replacement)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(count("sliding_jwt_verified_total"), 5);
    assert_eq!(count("sliding_jwt_cache_hits_total"), 0);
    assert_eq!(count("sliding_jwt_renewed_total"), 1);
    assert_eq!(count("sliding_jwt_reuse_detected_total"), 1);
    assert_eq!(count("sliding_jwt_revoked_total"), 1);
    assert_eq!(
        count("sliding_jwt_rejected_total{reason=missing_credentials}"),
        1
    );
    assert_eq!(
        count("sliding_jwt_rejected_total{reason=malformed_token}"),
        1
    );
    assert_eq!(count("sliding_jwt_rejected_total{reason=token_reused}"), 1);
    assert_eq!(count("sliding_jwt_rejected_total{reason=revoked}"), 1);
    // `stats()` says the same.
    let stats = layer.stats();
    assert_eq!(stats.verified(), 5);
    assert_eq!(stats.rejected_total(), 4);

    // The durable store's round trips: the reuse mark and the session's
    // revocation, each synced before it was answered.
    let histograms = captured.histograms.lock().unwrap();
    let samples = histograms
        .get("sliding_jwt_store_round_trip_seconds{store=durable}")
        .expect("a histogram of durable round trips");
    let samples = samples.0.lock().unwrap();
    assert_eq!(samples.len(), 2);
    assert!(
        samples
            .iter()
            .all(|seconds| *seconds >= 0.0 && *seconds < 60.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
