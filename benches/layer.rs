//! Criterion benchmarks: the layer against plain `jsonwebtoken` on the same
//! token, claims and checks. `cargo bench --bench layer`.
//!
//! ids: `verify/{HS256,ES256,EdDSA}/{layer,jsonwebtoken}`,
//! `verify/{HS256,ES256}/layer-cached`, `renew/{HS256,ES256,EdDSA}/{layer,jsonwebtoken}`,
//! `passthrough/bare`, `reject/{garbage,expired}/layer`,
//! `claims/{1,10,50}/{layer,jsonwebtoken}` (HS256 with that many custom claims).
//! `cargo bench --bench compare` measures the same pairs interleaved.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::Service;
use tower_sliding_jwt::ManualClock;

fn bench_verify(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    for alg in algorithms() {
        let fresh = token(&alg, &claims(NOW, NOW + 3600, 0, 0));
        let authorization = header(&fresh);
        let mut service = service((alg.key)(), &clock, 0);
        assert_eq!(call(&mut service, request(&authorization)).status(), 200);
        c.bench_function(&format!("verify/{}/layer", alg.name), |b| {
            b.iter(|| call(&mut service, black_box(request(&authorization))))
        });
        if alg.name != "EdDSA" {
            let mut cached = common::service((alg.key)(), &clock, 1024);
            c.bench_function(&format!("verify/{}/layer-cached", alg.name), |b| {
                b.iter(|| call(&mut cached, black_box(request(&authorization))))
            });
        }
        let validation = validation(alg.alg);
        c.bench_function(&format!("verify/{}/jsonwebtoken", alg.name), |b| {
            b.iter(|| decode(black_box(&fresh), &alg, &validation))
        });
    }
}

fn bench_renew(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    for alg in algorithms() {
        let pool = renewal_pool(&alg, if alg.name == "HS256" { 4096 } else { 512 });
        let headers: Vec<_> = pool.iter().map(|t| header(t)).collect();
        let key = (alg.key)();
        c.bench_function(&format!("renew/{}/layer", alg.name), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // A fresh layer per pass over the pool empties the single-flight map.
                    let mut service = service(key.clone(), &clock, 0);
                    let batch = (iters - done).min(pool.len() as u64) as usize;
                    let start = Instant::now();
                    for authorization in &headers[..batch] {
                        black_box(call(&mut service, request(authorization)));
                    }
                    elapsed += start.elapsed();
                    done += batch as u64;
                }
                elapsed
            })
        });
        let validation = validation(alg.alg);
        let mut n = 0usize;
        c.bench_function(&format!("renew/{}/jsonwebtoken", alg.name), |b| {
            b.iter(|| {
                n += 1;
                decode_and_renew(black_box(&pool[n % pool.len()]), &alg, &validation, n)
            })
        });
    }
}

fn bench_other(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    let hs = &algorithms()[0];
    let mut bare = inner();
    let x = header("x");
    c.bench_function("passthrough/bare", |b| {
        b.iter(|| black_box(bare.call(black_box(request(&x)))))
    });
    let mut service = service((hs.key)(), &clock, 0);
    let garbage = header(&"x".repeat(300));
    c.bench_function("reject/garbage/layer", |b| {
        b.iter(|| call(&mut service, black_box(request(&garbage))))
    });
    let expired = header(&token(hs, &claims(NOW - 7200, NOW - 3600, 0, 0)));
    assert_eq!(call(&mut service, request(&expired)).status(), 401);
    c.bench_function("reject/expired/layer", |b| {
        b.iter(|| call(&mut service, black_box(request(&expired))))
    });

    let validation = validation(hs.alg);
    for extra in [1, 10, 50] {
        let fresh = token(hs, &claims(NOW, NOW + 3600, 0, extra));
        let authorization = header(&fresh);
        c.bench_function(&format!("claims/{extra}/layer"), |b| {
            b.iter(|| call(&mut service, black_box(request(&authorization))))
        });
        c.bench_function(&format!("claims/{extra}/jsonwebtoken"), |b| {
            b.iter(|| decode(black_box(&fresh), hs, &validation))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = bench_verify, bench_renew, bench_other
}
criterion_main!(benches);
