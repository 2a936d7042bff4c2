//! A whole request through the layer with arbitrary `Authorization` and
//! `Cookie` header bytes: never a panic, always one of the expected statuses.
#![no_main]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{BearerHeader, CookieSource, Key, ManualClock, SlidingJwtLayer, StandardClaims};

type Handler = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<()>, Infallible>>>;

fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn layer() -> &'static SlidingJwtLayer<Key, StandardClaims> {
    static LAYER: OnceLock<SlidingJwtLayer<Key, StandardClaims>> = OnceLock::new();
    LAYER.get_or_init(|| {
        SlidingJwtLayer::builder(Key::hs256(b"fuzzing secret that is at least 32 bytes").unwrap())
            .with_clock(ManualClock::new(1_800_000_000))
            .with_token_source(BearerHeader::new())
            .with_token_source(CookieSource::new("session").unwrap())
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Split the input into up to three header values at 0xFF bytes.
    let mut parts = data.split(|&b| b == 0xFF);
    let mut request = Request::get("/").body(()).unwrap();
    for (index, part) in parts.by_ref().take(3).enumerate() {
        let name = if index == 1 {
            "cookie"
        } else {
            "authorization"
        };
        if let Ok(value) = HeaderValue::from_bytes(part) {
            request.headers_mut().append(name, value);
        }
    }
    let mut service: tower_sliding_jwt::SlidingJwt<Handler, _, _, _, _> =
        layer().layer(service_fn(ok as fn(_) -> _));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(response)) = pin!(service.call(request)).as_mut().poll(&mut cx) else {
        panic!("the layer with the in-memory store answers at once");
    };
    assert!(
        matches!(response.status().as_u16(), 200 | 400 | 401),
        "{}",
        response.status()
    );
});
