//! Heap allocations per verified request, counted by a global allocator in
//! this test binary of its own: deterministic, so it is a test and not a bench.
// The counting allocator is the only unsafe code in the repository; the
// library itself forbids it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Key, ManualClock, SlidingJwtLayer, StandardClaims};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"allocation test secret, 32 bytes or more";

fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn counted<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let value = f();
    (ALLOCATIONS.load(Ordering::SeqCst) - before, value)
}

#[test]
fn a_verified_request_allocates_less_than_jsonwebtoken_decode() {
    // With both backends compiled in (`--all-features`), jsonwebtoken's own
    // encode/decode need an explicit provider; the layer picks aws-lc-rs too.
    #[cfg(feature = "aws_lc_rs")]
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    // The 9-claim token of the benchmarks.
    let claims = serde_json::json!({
        "sub": "alice", "role": "admin", "iss": "bench", "aud": "bench-api",
        "iat": NOW, "exp": NOW + 3600, "jti": "jti-00000001", "sid": "session-0001", "auth_time": NOW,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();

    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256(SECRET).unwrap())
        .with_clock(ManualClock::new(NOW))
        .with_issuer("bench")
        .with_audience("bench-api")
        .build()
        .unwrap();
    let mut service = layer.layer(service_fn(ok as fn(_) -> _));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_issuer(&["bench"]);
    validation.set_audience(&["bench-api"]);
    let decoding = DecodingKey::from_secret(SECRET);

    let request = || {
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    let mut through_layer = || {
        let request = request();
        counted(|| {
            let mut cx = Context::from_waker(Waker::noop());
            let Poll::Ready(Ok(response)) = pin!(service.call(request)).as_mut().poll(&mut cx)
            else {
                panic!()
            };
            assert_eq!(response.status(), 200);
            drop(response);
        })
        .0
    };
    let decode = || {
        counted(|| jsonwebtoken::decode::<StandardClaims>(&token, &decoding, &validation).unwrap())
            .0
    };
    let issuer = layer.issuer();
    let verify = || {
        counted(|| {
            let mut cx = Context::from_waker(Waker::noop());
            let Poll::Ready(result) = pin!(issuer.verify(&token)).as_mut().poll(&mut cx) else {
                panic!()
            };
            result.unwrap()
        })
        .0
    };

    // Warm up once (thread-local key preparation, lazy statics), then count.
    through_layer();
    decode();
    verify();
    let (request_count, verify_count, jwt_count) = (through_layer(), verify(), decode());
    println!(
        "allocations: verification {verify_count}, whole request through the layer {request_count}, \
         jsonwebtoken::decode {jwt_count}"
    );
    assert_eq!(
        (through_layer(), verify()),
        (request_count, verify_count),
        "deterministic"
    );

    // The verification itself: one pass into the claims (their strings and
    // map entries) plus the decoded signature the backend's verifier takes.
    assert!(
        verify_count as f64 <= 0.6 * jwt_count as f64,
        "verification allocates {verify_count} > 0.6 x jsonwebtoken's {jwt_count}"
    );
    // What a request adds on top, all of it for the handler: the extension map
    // (its box and table) with three entries (claims, raw token, session), the
    // raw token, the session handle, and the session's copy of the claims.
    let claims_copy = verify_count - 1;
    let request_budget = verify_count + 2 + 3 + 1 + 1 + claims_copy;
    assert!(
        request_count <= request_budget,
        "a request allocates {request_count} > budget {request_budget}"
    );
}
