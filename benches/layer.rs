//! Criterion benchmarks: the layer against plain `jsonwebtoken` on the same
//! token, claims and checks.
//!
//! `cargo bench --bench layer` — ids: `verify/{alg}/{layer,jsonwebtoken}`,
//! `renew/{alg}/{layer,jsonwebtoken}`, `passthrough/bare`,
//! `reject/{garbage,expired}/layer`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Key, ManualClock, SlidingJwtLayer, StandardClaims};

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"benchmark secret that is at least 32 bytes long";
const ES256_PRIVATE: &str = include_str!("../tests/keys/es256-private.pem");
const ES256_PUBLIC: &str = include_str!("../tests/keys/es256-public.pem");
const ED25519_PRIVATE: &str = include_str!("../tests/keys/ed25519-private.pem");
const ED25519_PUBLIC: &str = include_str!("../tests/keys/ed25519-public.pem");

type Claims = StandardClaims;

struct Alg {
    name: &'static str,
    alg: Algorithm,
    key: fn() -> Key,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

fn algorithms() -> Vec<Alg> {
    // With both backends compiled in, jsonwebtoken's own encode/decode need an
    // explicit provider; the layer picks aws-lc-rs in that case too.
    #[cfg(feature = "aws_lc_rs")]
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    vec![
        Alg {
            name: "HS256",
            alg: Algorithm::HS256,
            key: || Key::hs256(SECRET).unwrap(),
            encoding: EncodingKey::from_secret(SECRET),
            decoding: DecodingKey::from_secret(SECRET),
        },
        Alg {
            name: "ES256",
            alg: Algorithm::ES256,
            key: || Key::from_pem(Algorithm::ES256, ES256_PRIVATE).unwrap(),
            encoding: EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap(),
            decoding: DecodingKey::from_ec_pem(ES256_PUBLIC.as_bytes()).unwrap(),
        },
        Alg {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            key: || Key::from_pem(Algorithm::EdDSA, ED25519_PRIVATE).unwrap(),
            encoding: EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap(),
            decoding: DecodingKey::from_ed_pem(ED25519_PUBLIC.as_bytes()).unwrap(),
        },
    ]
}

/// A 9-claim payload like the demo's: sub, role, iss, aud, iat, exp, jti, sid, auth_time.
fn claims(iat: i64, exp: i64, n: usize) -> Claims {
    serde_json::from_value(serde_json::json!({
        "sub": "alice", "role": "admin", "iss": "bench", "aud": "bench-api",
        "iat": iat, "exp": exp, "jti": format!("jti-{n:08}"), "sid": "session-0001", "auth_time": iat,
    }))
    .unwrap()
}

fn token(alg: &Alg, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg.alg), claims, &alg.encoding).unwrap()
}

fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 5;
    validation.set_issuer(&["bench"]);
    validation.set_audience(&["bench-api"]);
    validation
}

type Inner = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>>;

fn inner() -> Inner {
    fn ok(_: Request<()>) -> Ready<Result<Response<String>, Infallible>> {
        ready(Ok(Response::new(String::new())))
    }
    service_fn(ok as fn(_) -> _)
}

fn layer(key: Key, clock: &ManualClock) -> SlidingJwtLayer<Key, Claims> {
    SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .build()
        .unwrap()
}

/// Drives a service whose futures are ready at once.
fn call<S>(service: &mut S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    match pin!(service.call(request)).as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => unreachable!("inner service is always ready"),
    }
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn bench_verify(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    for alg in algorithms() {
        let fresh = token(&alg, &claims(NOW, NOW + 3600, 0));
        let mut service = layer((alg.key)(), &clock).layer(inner());
        assert_eq!(call(&mut service, bearer(&fresh)).status(), 200);
        c.bench_function(&format!("verify/{}/layer", alg.name), |b| {
            b.iter(|| call(&mut service, black_box(bearer(&fresh))))
        });
        let validation = validation(alg.alg);
        c.bench_function(&format!("verify/{}/jsonwebtoken", alg.name), |b| {
            b.iter(|| {
                // The header map is built as for the layer so both sides pay the same.
                let request = black_box(bearer(&fresh));
                let value = request.headers()["authorization"].to_str().unwrap();
                jsonwebtoken::decode::<Claims>(&value[7..], &alg.decoding, &validation).unwrap()
            })
        });
    }
}

fn bench_renew(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    for alg in algorithms() {
        // Distinct near-expiry tokens, so single flight never skips the signing.
        let pool: Vec<String> = (0..512)
            .map(|n| token(&alg, &claims(NOW - 3000, NOW + 600, n)))
            .collect();
        let key = (alg.key)();
        c.bench_function(&format!("renew/{}/layer", alg.name), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // A fresh layer per pass over the pool empties the single-flight map.
                    let mut service = layer(key.clone(), &clock).layer(inner());
                    let batch = (iters - done).min(pool.len() as u64) as usize;
                    let start = Instant::now();
                    for token in &pool[..batch] {
                        let response = call(&mut service, bearer(token));
                        debug_assert!(response.headers().contains_key("authorization"));
                        black_box(response);
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
                let request = black_box(bearer(&pool[n % pool.len()]));
                n += 1;
                let value = request.headers()["authorization"].to_str().unwrap();
                let mut data =
                    jsonwebtoken::decode::<Claims>(&value[7..], &alg.decoding, &validation)
                        .unwrap();
                data.claims.registered.iat = Some(NOW);
                data.claims.registered.exp = NOW + 3600;
                data.claims.registered.jti = Some(format!("jti-{n:08}"));
                jsonwebtoken::encode(&Header::new(alg.alg), &data.claims, &alg.encoding).unwrap()
            })
        });
    }
}

fn bench_other(c: &mut Criterion) {
    let clock = ManualClock::new(NOW);
    let hs = &algorithms()[0];
    let mut bare = inner();
    c.bench_function("passthrough/bare", |b| {
        b.iter(|| call(&mut bare, black_box(bearer("x"))))
    });
    let mut service = layer((hs.key)(), &clock).layer(inner());
    let garbage = "x".repeat(300);
    c.bench_function("reject/garbage/layer", |b| {
        b.iter(|| call(&mut service, black_box(bearer(&garbage))))
    });
    let expired = token(hs, &claims(NOW - 7200, NOW - 3600, 0));
    assert_eq!(call(&mut service, bearer(&expired)).status(), 401);
    c.bench_function("reject/expired/layer", |b| {
        b.iter(|| call(&mut service, black_box(bearer(&expired))))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = bench_verify, bench_renew, bench_other
}
criterion_main!(benches);
