//! Token decoding and validation. Half the inputs are raw token strings; the
//! other half are arbitrary header and claims JSON *signed with the right
//! key*, so the JSON parsing and claim validation behind the signature check
//! are reached too.
#![no_main]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{HeaderSource, Key, ManualClock, SlidingJwtLayer, StandardClaims};

const SECRET: &[u8] = b"fuzzing secret that is at least 32 bytes";

fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn layer() -> &'static SlidingJwtLayer<Key, StandardClaims> {
    static LAYER: OnceLock<SlidingJwtLayer<Key, StandardClaims>> = OnceLock::new();
    LAYER.get_or_init(|| {
        SlidingJwtLayer::builder(Key::hs256(SECRET).unwrap())
            .with_clock(ManualClock::new(1_800_000_000))
            .with_issuer("fuzz")
            .with_audience("fuzz-api")
            // A raw header: no `Bearer ` framing to get past.
            .with_token_source(HeaderSource::new("x-token").unwrap())
            .build()
            .unwrap()
    })
}

fn signed(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(token) => token.to_owned(),
            Err(_) => return,
        }
    } else {
        let split = (mode as usize >> 1).min(rest.len());
        let (header, payload) = rest.split_at(split);
        // Keep a well-formed header half the time so the claims get parsed.
        if mode & 2 == 0 {
            signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest)
        } else {
            signed(header, payload)
        }
    };
    let Ok(value) = http::HeaderValue::from_str(&token) else {
        return;
    };
    let mut request = Request::get("/").body(()).unwrap();
    request.headers_mut().insert("x-token", value);
    let mut service = layer().layer(service_fn(ok as fn(_) -> _));
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
