//! Criterion: what a verify-only layer costs per request next to the full
//! layer, on the same fresh token (no renewal due). `cargo bench --bench verifier`
//! (add `--features jwks` for the remote key set).
//!
//! ids: `verify/{HS256,ES256,EdDSA}/{full,verifier}`,
//! `verify/{HS256,ES256}/{full,verifier}-cached`, `verify/ES256/remote`
//! (feature `jwks`: a `RemoteJwks` loaded from an in-memory fetcher),
//! `near-expiry/ES256/verifier` (inside the renew window: still no renewal).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::Layer;
use tower_sliding_jwt::{Key, KeyRing, Keys, ManualClock, SlidingJwtLayer};

fn verifier<K: Keys>(keys: K, clock: &ManualClock, cache: usize) -> SlidingJwtLayer<K, Claims> {
    SlidingJwtLayer::verifier(keys)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .with_verified_cache(cache)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    for alg in algorithms() {
        let fresh = token(&alg, &claims(NOW, NOW + 3600, 0, 0));
        let authorization = header(&fresh);
        let public = || KeyRing::verifying([(alg.key)()]).unwrap();
        let caches: &[usize] = if alg.name == "EdDSA" {
            &[0]
        } else {
            &[0, 1024]
        };
        for &cache in caches {
            let suffix = if cache > 0 { "-cached" } else { "" };
            let mut full = service((alg.key)(), &clock, cache);
            let mut verify_only = verifier(public(), &clock, cache).layer(inner());
            assert_eq!(call(&mut full, request(&authorization)).status(), 200);
            assert_eq!(
                call(&mut verify_only, request(&authorization)).status(),
                200
            );
            c.bench_function(&format!("verify/{}/full{suffix}", alg.name), |b| {
                b.iter(|| call(&mut full, black_box(request(&authorization))))
            });
            c.bench_function(&format!("verify/{}/verifier{suffix}", alg.name), |b| {
                b.iter(|| call(&mut verify_only, black_box(request(&authorization))))
            });
        }
        if alg.name == "ES256" {
            // 50 minutes old: inside the renew window, where the full layer
            // would renew; the verifier only verifies.
            let old = token(&alg, &claims(NOW - 3000, NOW + 600, 0, 0));
            let authorization = header(&old);
            let mut verify_only = verifier(public(), &clock, 0).layer(inner());
            let response = call(&mut verify_only, request(&authorization));
            assert!(response.headers().get("authorization").is_none());
            c.bench_function("near-expiry/ES256/verifier", |b| {
                b.iter(|| call(&mut verify_only, black_box(request(&authorization))))
            });
            remote(c, &clock, (alg.key)(), &fresh);
        }
    }
}

#[cfg(feature = "jwks")]
fn remote(c: &mut Criterion, clock: &ManualClock, key: Key, fresh: &str) {
    use bytes::Bytes;
    use tower_sliding_jwt::{BoxFuture, JwksError, JwksFetcher, RemoteJwks};

    struct Fixed(Bytes);
    impl JwksFetcher for Fixed {
        fn fetch<'a>(
            &'a self,
            _: &'a http::Uri,
            _: usize,
        ) -> BoxFuture<'a, Result<Bytes, JwksError>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }
    let document = Bytes::from(key.jwks().to_json());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = runtime.block_on(async {
        let keys = RemoteJwks::builder("http://issuer/jwks".parse().unwrap(), Fixed(document))
            .build()
            .unwrap();
        keys.refresh().await.unwrap();
        keys
    });
    let authorization = header(fresh);
    let mut service = verifier(keys, clock, 0).layer(inner());
    assert_eq!(call(&mut service, request(&authorization)).status(), 200);
    c.bench_function("verify/ES256/remote", |b| {
        b.iter(|| call(&mut service, black_box(request(&authorization))))
    });
}

#[cfg(not(feature = "jwks"))]
fn remote(_: &mut Criterion, _: &ManualClock, _: Key, _: &str) {}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    targets = bench
}
criterion_main!(benches);
