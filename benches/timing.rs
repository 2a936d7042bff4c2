//! Does a rejection's cost reveal anything? `cargo bench --bench timing`.
//!
//! * `timing/bad-signature/{first,last}-byte`: HS256 signatures wrong in their
//!   first or in their last byte. The comparison is constant-time in both
//!   backends (RustCrypto: `digest::Mac::verify_slice` uses
//!   `subtle::ConstantTimeEq`; aws-lc-rs: `hmac::verify` uses
//!   `constant_time::verify_slices_are_equal`), so these match.
//! * `timing/good-signature/{expired,wrong-audience}`: a valid signature over
//!   claims that fail validation. These cost more than a bad signature by the
//!   claims parse, by design: claims are parsed only after the signature
//!   verified (RFC 8725 §3.3), and only the key holder can produce them.
//! * `timing/bad-signature/es256`: for comparison, an ES256 forgery.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Key, ManualClock, SlidingJwtLayer, StandardClaims};

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"benchmark secret that is at least 32 bytes long";
const ES256_PRIVATE: &str = include_str!("../tests/keys/es256-private.pem");

fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn call<S>(service: &mut S, token: &str) -> u16
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let request = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(service.call(request)).as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status().as_u16(),
        _ => unreachable!(),
    }
}

fn token(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

/// Flips one bit of the signature's byte `index` (from the start, or the end when negative).
fn corrupt(token: &str, index: isize) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let at = if index < 0 {
        bytes.len() - index.unsigned_abs()
    } else {
        index as usize
    };
    bytes[at] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn bench(c: &mut Criterion) {
    #[cfg(feature = "aws_lc_rs")]
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    let clock = ManualClock::new(NOW);
    let layer = |key: Key| {
        SlidingJwtLayer::<_, StandardClaims>::builder(key)
            .with_clock(clock.clone())
            .with_audience("api")
            .build()
            .unwrap()
            .layer(service_fn(ok as fn(_) -> _))
    };
    let hs = EncodingKey::from_secret(SECRET);
    let claims = serde_json::json!({"sub":"alice","role":"admin","aud":"api","iat":NOW,"exp":NOW + 600,"sid":"s","jti":"j","auth_time":NOW});
    let valid = token(claims.clone(), Algorithm::HS256, &hs);
    let mut service = layer(Key::hs256(SECRET).unwrap());
    assert_eq!(call(&mut service, &valid), 200);

    let cases = [
        ("timing/bad-signature/first-byte", corrupt(&valid, 0)),
        ("timing/bad-signature/last-byte", corrupt(&valid, -1)),
        (
            "timing/good-signature/expired",
            token(
                serde_json::json!({"aud":"api","exp":NOW - 600}),
                Algorithm::HS256,
                &hs,
            ),
        ),
        (
            "timing/good-signature/wrong-audience",
            token(
                serde_json::json!({"sub":"alice","role":"admin","aud":"other","iat":NOW,"exp":NOW + 600,"sid":"s","jti":"j","auth_time":NOW}),
                Algorithm::HS256,
                &hs,
            ),
        ),
    ];
    for (id, token) in &cases {
        assert_eq!(call(&mut service, token), 401, "{id}");
        c.bench_function(id, |b| b.iter(|| call(&mut service, black_box(token))));
    }

    let es = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap();
    let mut es_service = layer(Key::from_pem(Algorithm::ES256, ES256_PRIVATE).unwrap());
    let forged = corrupt(&token(claims, Algorithm::ES256, &es), -1);
    assert_eq!(call(&mut es_service, &forged), 401);
    c.bench_function("timing/bad-signature/es256", |b| {
        b.iter(|| call(&mut es_service, black_box(&forged)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
