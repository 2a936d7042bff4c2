//! Heap allocations per verified request, counted by a global allocator in
//! this test binary of its own: deterministic, so it is a test and not a bench.
// The counting allocator is the only unsafe code in the repository; the
// library itself forbids it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Key, ManualClock, SlidingJwtLayer, StandardClaims};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
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

/// The tests of this binary count through one global allocator: one at a
/// time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn counted<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let value = f();
    (ALLOCATIONS.load(Ordering::SeqCst) - before, value)
}

#[test]
fn a_verified_request_allocates_less_than_jsonwebtoken_decode() {
    let _serial = serial();
    // With both backends compiled in (`--all-features`), jsonwebtoken's own
    // helpers need an explicit provider; the layer picks aws-lc-rs too.
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

    // A header value whose bytes are shared, as hyper hands them over (slices
    // of its read buffer): the layer's raw token shares them too.
    let authorization = http::HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    let request = || {
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, authorization.clone());
        request
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
    println!("ALLOCS request {request_count}");
    assert_eq!(
        (through_layer(), verify()),
        (request_count, verify_count),
        "deterministic"
    );

    // The verification itself: one pass into the claims (their strings and
    // map entries); the signature is decoded into a reused buffer.
    assert!(
        verify_count as f64 <= 0.55 * jwt_count as f64,
        "verification allocates {verify_count} > 0.55 x jsonwebtoken's {jwt_count}"
    );
    // What a request adds on top, all of it for the handler: the session (one
    // allocation holding the claims, the raw token and the session state) and
    // the extension map (its box, its table, the one entry).
    let request_budget = verify_count + 1 + 3;
    assert!(
        request_count <= request_budget,
        "a request allocates {request_count} > budget {request_budget}"
    );
    assert!(
        request_count <= 12,
        "a request allocates {request_count} > 12"
    );
}

/// Open streams (`Session::ended` futures) cost a bounded number of bytes
/// each, and every byte comes back when they close. Live bytes from this
/// binary's allocator; printed per stream (`--nocapture`). The watcher's
/// thread may allocate meanwhile, so the measurement runs five times and
/// keeps the smallest difference.
#[test]
fn open_streams_cost_bounded_bytes_and_return_them_when_they_close() {
    let _serial = serial();
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256(SECRET).unwrap())
        .with_clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let issuer = layer.issuer();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let mut service = layer.layer(service_fn(move |request: Request<()>| {
        let session = request
            .extensions()
            .get::<tower_sliding_jwt::Session<StandardClaims>>()
            .cloned()
            .unwrap();
        keep.lock().unwrap().push(session);
        ready(Ok::<_, Infallible>(Response::new(())))
    }));
    for i in 0..100 {
        let token = issuer
            .issue(StandardClaims::new(format!("user{i}"), Default::default()))
            .unwrap()
            .into_token();
        let request = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(_)) = pin!(service.call(request)).as_mut().poll(&mut cx) else {
            panic!("the layer answers at once");
        };
    }
    let sessions = held.lock().unwrap().clone();
    // Warm up: the watcher's thread and its feed subscription, once.
    drop(sessions[0].ended());
    let mut per_stream = isize::MAX;
    let mut left = isize::MAX;
    for _ in 0..5 {
        let baseline = LIVE.load(Ordering::SeqCst);
        let streams: Vec<_> = sessions
            .iter()
            .flat_map(|session| (0..10).map(|_| session.ended()))
            .collect();
        let open = LIVE.load(Ordering::SeqCst);
        drop(streams);
        let after = LIVE.load(Ordering::SeqCst);
        per_stream = per_stream.min((open - baseline) / 1000);
        left = left.min(after - baseline);
    }
    println!(
        "open streams: {per_stream} bytes each (1 000 streams over 100 sessions); {left} bytes left after they closed"
    );
    assert!(
        per_stream > 0 && per_stream < 1024,
        "{per_stream} bytes per stream"
    );
    assert!(left <= 0, "{left} bytes stayed after every stream closed");
}
