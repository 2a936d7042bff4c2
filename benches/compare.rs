//! Interleaved comparison: each `layer`/`jsonwebtoken` pair is measured in
//! alternating 25 ms slices over many rounds, and the median of the per-round
//! ratios is printed, so the host's fast and slow phases cancel out.
//!
//! `cargo bench --bench compare` prints one line per pair:
//! `RATIO <id> <median per-round ratio (layer / baseline)>`. Set `COMPARE` to
//! run only the ids containing its value.

mod common;
#[cfg(feature = "postgres")]
#[path = "../tests/common/postgres_server.rs"]
mod postgres_server;

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use tower_sliding_jwt::ManualClock;

const SLICE: Duration = Duration::from_millis(25);
const ROUNDS: usize = 41;

/// Nanoseconds per operation over one slice; `op(i)` runs operation `i`.
fn slice(op: &mut dyn FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < SLICE {
        for _ in 0..16 {
            op(n);
            n += 1;
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Runs `op` `n` times: under `COMPARE_OPS`, callgrind's inclusive count of
/// this function (and of [`baseline_ops`]) is the instructions of `n` operations.
#[inline(never)]
fn layer_ops(op: &mut dyn FnMut(usize), n: usize) {
    for i in 0..n {
        op(i);
    }
}

/// The baseline's side of [`layer_ops`].
#[inline(never)]
fn baseline_ops(op: &mut dyn FnMut(usize), n: usize) {
    // Not the same body as `layer_ops`, so the two are not merged into one symbol.
    for i in 0..black_box(n) {
        op(i);
    }
}

fn compare(id: &str, layer: &mut dyn FnMut(usize), baseline: &mut dyn FnMut(usize)) {
    // `COMPARE=verify/HS256 cargo bench --bench compare` runs the ids that
    // contain that text (e.g. under a profiler); a final `$` asks for that id alone.
    if let Ok(only) = std::env::var("COMPARE") {
        let wanted = match only.strip_suffix('$') {
            Some(exact) => id == exact,
            None => id.contains(only.as_str()),
        };
        if !wanted {
            return;
        }
    }
    // `COMPARE_OPS=N` runs each side N times, untimed, for an instruction
    // count that does not depend on the host's load:
    // `COMPARE='verify/HS256$' COMPARE_OPS=2000 valgrind --tool=callgrind <bench binary>`,
    // then `callgrind_annotate --inclusive=yes` and divide `layer_ops` by `baseline_ops`.
    if let Some(n) = std::env::var("COMPARE_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        // Warm-up outside the counted calls (first-use allocations, caches).
        for i in 0..16 {
            layer(i);
            baseline(i);
        }
        layer_ops(layer, n);
        baseline_ops(baseline, n);
        println!("COUNTED {id} {n}");
        return;
    }
    // Warm up both sides.
    slice(layer);
    slice(baseline);
    let mut rounds: Vec<(f64, f64)> = (0..ROUNDS)
        .map(|round| {
            // Alternate which side goes first.
            if round % 2 == 0 {
                let a = slice(layer);
                (a, slice(baseline))
            } else {
                let b = slice(baseline);
                (slice(layer), b)
            }
        })
        .collect();
    rounds.sort_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)));
    let (a, b) = rounds[ROUNDS / 2];
    println!("RATIO {id} {:.3}", a / b);
    println!("#     {id}: layer {a:.0} ns, baseline {b:.0} ns (median round)");
}

fn main() {
    // Arguments cargo passes to bench targets (`--bench`) are ignored.
    let clock = ManualClock::new(NOW);
    let algs = algorithms();
    let hs = &algs[0];
    let hs_validation = validation(hs.alg);
    let hs_fresh = token(hs, &claims(NOW, NOW + 3600, 0, 0));
    let mut jwt_hs_verify = |_| {
        black_box(decode(&hs_fresh, hs, &hs_validation));
    };

    for alg in &algs {
        let fresh = token(alg, &claims(NOW, NOW + 3600, 0, 0));
        let authorization = header(&fresh);
        let validation = validation(alg.alg);
        let mut service = service((alg.key)(), &clock, 0);
        let mut baseline = |_| {
            black_box(decode(&fresh, alg, &validation));
        };
        compare(
            &format!("verify/{}", alg.name),
            &mut |_| {
                black_box(call(&mut service, request(&authorization)));
            },
            &mut baseline,
        );
        if alg.name == "HS256" {
            // The verification alone (what `Issuer::verify` does), without the
            // per-request extensions and session handle.
            let issuer = layer((alg.key)(), &clock, 0).issuer();
            let mut core = |_| {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let verified = std::pin::pin!(issuer.verify(&fresh)).as_mut().poll(&mut cx);
                assert!(matches!(black_box(verified), std::task::Poll::Ready(Ok(_))));
            };
            compare("verify-core/HS256", &mut core, &mut baseline);
            // A token another issuer signed: the same claims under
            // jsonwebtoken's header, which the layer decodes and parses.
            let foreign = foreign_token(alg, &claims(NOW, NOW + 3600, 0, 0));
            let foreign_header = header(&foreign);
            compare(
                "verify/HS256+foreign-header",
                &mut |_| {
                    black_box(call(&mut service, request(&foreign_header)));
                },
                &mut |_| {
                    black_box(decode(&foreign, alg, &validation));
                },
            );
            // The same request on the durable store: checks never touch the disk.
            let mut durable = durable_service((alg.key)(), &clock);
            compare(
                "verify/HS256+durable",
                &mut |_| {
                    black_box(call(&mut durable, request(&authorization)));
                },
                &mut baseline,
            );
            // On the PostgreSQL store (feature `postgres`): checks are
            // answered by its replica, never by a query.
            #[cfg(feature = "postgres")]
            {
                let server = postgres_server::Postgres::start();
                let runtime = tokio::runtime::Runtime::new().unwrap();
                let store = runtime
                    .block_on(
                        tower_sliding_jwt::postgres::PostgresStore::builder(server.url())
                            .with_clock(clock.clone())
                            .connect(),
                    )
                    .unwrap();
                let mut postgres = tower::Layer::layer(
                    &tower_sliding_jwt::SlidingJwtLayer::<_, Claims>::builder((alg.key)())
                        .with_clock(clock.clone())
                        .with_issuer("bench")
                        .with_audience("bench-api")
                        .with_revocation_store(store.clone())
                        .build()
                        .unwrap(),
                    inner(),
                );
                let queries = store.stats().queries;
                compare(
                    "verify/HS256+postgres",
                    &mut |_| {
                        black_box(call(&mut postgres, request(&authorization)));
                    },
                    &mut baseline,
                );
                // Background confirmations (one a second) are the only queries.
                eprintln!(
                    "verify/HS256+postgres: {} queries meanwhile (the store's own confirmations)",
                    store.stats().queries - queries
                );
                drop((postgres, store, runtime, server));
            }
        }
        if alg.name == "HS256" {
            // DPoP allowed, a bearer request: what the bearer requests of a
            // layer that also takes DPoP pay.
            let mut allowed = dpop_service((alg.key)(), &clock, 16);
            compare(
                "verify/HS256+dpop-allowed",
                &mut |_| {
                    black_box(call(&mut allowed, request(&authorization)));
                },
                &mut baseline,
            );
            // A bound token with a fresh proof per request (ES256, EdDSA):
            // the token and one asymmetric verification. A fresh layer per
            // pass over the pool (its replay cache would refuse a reuse).
            for (name, proof_alg, pem) in [
                ("ES256", tower_sliding_jwt::Algorithm::ES256, ES256_PRIVATE),
                (
                    "EdDSA",
                    tower_sliding_jwt::Algorithm::EdDSA,
                    ED25519_PRIVATE,
                ),
            ] {
                let dpop_key = tower_sliding_jwt::dpop::DpopKey::from_key(
                    tower_sliding_jwt::Key::from_pem(proof_alg, pem).unwrap(),
                )
                .unwrap();
                let mut bound = claims(NOW, NOW + 3600, 0, 0);
                bound.registered.cnf =
                    Some(tower_sliding_jwt::Confirmation::jkt(dpop_key.thumbprint()));
                let bound = token(alg, &bound);
                let dpop_authorization =
                    http::HeaderValue::try_from(format!("DPoP {bound}")).unwrap();
                let proofs: Vec<String> = (0..4096)
                    .map(|_| {
                        dpop_key
                            .proof("GET", "http://bench.test/", Some(&bound), None, NOW)
                            .unwrap()
                    })
                    .collect();
                let proof_headers: Vec<_> = proofs
                    .iter()
                    .map(|p| http::HeaderValue::try_from(p.as_str()).unwrap())
                    .collect();
                let mut dpop = dpop_service((alg.key)(), &clock, 2 * proofs.len());
                compare(
                    &format!("verify/HS256+dpop-{name}"),
                    &mut |i| {
                        if i % proofs.len() == 0 {
                            dpop = dpop_service((alg.key)(), &clock, 2 * proofs.len());
                        }
                        let request =
                            dpop_request(&dpop_authorization, &proof_headers[i % proofs.len()]);
                        let response = call(&mut dpop, request);
                        debug_assert_eq!(response.status(), 200);
                        black_box(response);
                    },
                    &mut |i| {
                        decode_with_proof(&bound, alg, &validation, &proofs[i % proofs.len()]);
                    },
                );
            }
        }
        if alg.name == "HS256" {
            // Reuse detection on, with a replacement whose predecessor this
            // instance already marked (every request after the first).
            let replacement = token(alg, &replacement_claims(NOW, NOW + 3600, 0));
            let replacement_header = header(&replacement);
            let mut reuse = reuse_service((alg.key)(), &clock);
            let mut replacement_baseline = |_| {
                black_box(decode(&replacement, alg, &validation));
            };
            compare(
                "verify/HS256+reuse",
                &mut |_| {
                    black_box(call(&mut reuse, request(&replacement_header)));
                },
                &mut replacement_baseline,
            );
            // The first use of each replacement: one mark written to the
            // (memory) store; a fresh layer per pass over the pool.
            let pool: Vec<_> = (0..8192)
                .map(|n| header(&token(alg, &replacement_claims(NOW, NOW + 3600, n))))
                .collect();
            compare(
                "verify/HS256+reuse-first-use",
                &mut |i| {
                    if i % pool.len() == 0 {
                        reuse = reuse_service((alg.key)(), &clock);
                    }
                    black_box(call(&mut reuse, request(&pool[i % pool.len()])));
                },
                &mut replacement_baseline,
            );
        }
        if alg.name == "ES256" || alg.name == "HS256" {
            let mut cached = common::service((alg.key)(), &clock, 1024);
            let mut through_cache = |_| {
                black_box(call(&mut cached, request(&authorization)));
            };
            compare(
                &format!("verify-cached/{}", alg.name),
                &mut through_cache,
                &mut baseline,
            );
        }
    }

    for alg in &algs {
        // Enough distinct near-expiry tokens for a slice; a fresh layer per
        // pass over the pool, so single flight never skips a signing.
        let pool = renewal_pool(alg, if alg.name == "HS256" { 8192 } else { 1024 });
        let headers: Vec<_> = pool.iter().map(|t| header(t)).collect();
        let validation = validation(alg.alg);
        let key = (alg.key)();
        let mut service = service(key.clone(), &clock, 0);
        compare(
            &format!("renew/{}", alg.name),
            &mut |i| {
                if i % pool.len() == 0 {
                    service = common::service(key.clone(), &clock, 0);
                }
                black_box(call(&mut service, request(&headers[i % pool.len()])));
            },
            &mut |i| {
                black_box(decode_and_renew(&pool[i % pool.len()], alg, &validation, i));
            },
        );
    }

    // How the cost moves as the claims grow (HS256, 9 + n claims).
    for extra in [1, 10, 50] {
        let fresh = token(hs, &claims(NOW, NOW + 3600, 0, extra));
        let authorization = header(&fresh);
        let mut service = service((hs.key)(), &clock, 0);
        compare(
            &format!("claims/{extra}"),
            &mut |_| {
                black_box(call(&mut service, request(&authorization)));
            },
            &mut |_| {
                black_box(decode(&fresh, hs, &hs_validation));
            },
        );
    }

    // Your own claims type: RegisteredClaims + 10 typed fields. The layer reads
    // it as `StandardClaims<Custom>` (one pass); the baseline decodes the usual
    // `#[serde(flatten)]` struct with jsonwebtoken.
    let custom = custom_token(hs);
    let authorization = header(&custom);
    let mut custom_layer = custom_service((hs.key)(), &clock);
    compare(
        "claims/custom",
        &mut |_| {
            black_box(call(&mut custom_layer, request(&authorization)));
        },
        &mut |_| {
            black_box(decode_flattened(&custom, hs, &hs_validation));
        },
    );

    let mut service = service((hs.key)(), &clock, 0);
    let garbage = header(&"x".repeat(300));
    let mut reject_garbage = |_| {
        black_box(call(&mut service, request(&garbage)));
    };
    compare("reject/garbage", &mut reject_garbage, &mut jwt_hs_verify);
    let expired = header(&token(hs, &claims(NOW - 7200, NOW - 3600, 0, 0)));
    let mut reject_expired = |_| {
        black_box(call(&mut service, request(&expired)));
    };
    compare("reject/expired", &mut reject_expired, &mut jwt_hs_verify);
}
