//! What the benches share: the keys, the 9-claim token of the baseline, the
//! layer configuration and a runtime-free driver.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Key, ManualClock, SlidingJwt, SlidingJwtLayer, StandardClaims};

pub const NOW: i64 = 1_800_000_000;
pub const SECRET: &[u8] = b"benchmark secret that is at least 32 bytes long";
pub const ES256_PRIVATE: &str = include_str!("../../tests/keys/es256-private.pem");
const ES256_PUBLIC: &str = include_str!("../../tests/keys/es256-public.pem");
pub const ED25519_PRIVATE: &str = include_str!("../../tests/keys/ed25519-private.pem");
const ED25519_PUBLIC: &str = include_str!("../../tests/keys/ed25519-public.pem");

pub type Claims = StandardClaims;
pub type Inner = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<()>, Infallible>>>;
pub type Service_ = SlidingJwt<
    Inner,
    Key,
    Claims,
    tower_sliding_jwt::policy::DefaultPolicy,
    tower_sliding_jwt::HttpResponder,
>;

/// One algorithm, as both sides see it.
pub struct Alg {
    pub name: &'static str,
    pub alg: Algorithm,
    pub key: fn() -> Key,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

pub fn algorithms() -> Vec<Alg> {
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

/// The baseline's 9-claim payload (a ~390-byte HS256 token), plus `extra`
/// custom claims `c0..`.
pub fn claims(iat: i64, exp: i64, n: usize, extra: usize) -> Claims {
    let mut value = serde_json::json!({
        "sub": "alice", "role": "admin", "iss": "bench", "aud": "bench-api",
        "iat": iat, "exp": exp, "jti": format!("jti-{n:08}"), "sid": "session-0001", "auth_time": iat,
    });
    for i in 0..extra {
        value[format!("c{i}")] = serde_json::json!(format!("value-{i}"));
    }
    serde_json::from_value(value).unwrap()
}

/// `claims` signed with the header this crate's issuer writes
/// (`{"alg":..,"typ":"JWT"}`): the tokens a sliding-session layer sees.
pub fn token(alg: &Alg, claims: &Claims) -> String {
    signed(&own_header(alg), claims, alg)
}

/// `claims` signed with jsonwebtoken's own header (`{"typ":"JWT","alg":..}`):
/// a token another issuer wrote, whose header the layer parses.
pub fn foreign_token(alg: &Alg, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg.alg), claims, &alg.encoding).unwrap()
}

fn own_header(alg: &Alg) -> String {
    URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name))
}

fn signed<T: serde::Serialize>(header_b64: &str, claims: &T, alg: &Alg) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let message = format!("{header_b64}.{payload}");
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &alg.encoding, alg.alg).unwrap();
    format!("{message}.{signature}")
}

/// The same checks the layer makes: algorithm, `exp`, `iss`, `aud`, 5 s leeway.
pub fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 5;
    validation.set_issuer(&["bench"]);
    validation.set_audience(&["bench-api"]);
    validation
}

pub fn inner() -> Inner {
    fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
        ready(Ok(Response::new(())))
    }
    service_fn(ok as fn(_) -> _)
}

pub fn layer(key: Key, clock: &ManualClock, cache: usize) -> SlidingJwtLayer<Key, Claims> {
    let builder = SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api");
    let builder = if cache > 0 {
        builder.with_verified_cache(cache)
    } else {
        builder
    };
    builder.build().unwrap()
}

pub fn service(key: Key, clock: &ManualClock, cache: usize) -> Service_ {
    layer(key, clock, cache).layer(inner())
}

/// [`service`] on a durable store in a fresh file under the temp directory.
pub fn durable_service(key: Key, clock: &ManualClock) -> Service_ {
    let path = std::env::temp_dir().join(format!("tsj-bench-compare-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = tower_sliding_jwt::DurableStore::builder(&path)
        .with_clock(clock.clone())
        .open()
        .unwrap();
    SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .with_revocation_store(store)
        .build()
        .unwrap()
        .layer(inner())
}

/// [`service`] with reuse detection on (a 30 s grace), on the memory store.
pub fn reuse_service(key: Key, clock: &ManualClock) -> Service_ {
    SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .with_reuse_detection(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
        .layer(inner())
}

/// The baseline's claims as a renewal with reuse detection writes them: they
/// name the token they replaced (`prev_jti` number `n`).
pub fn replacement_claims(iat: i64, exp: i64, n: usize) -> Claims {
    let mut claims = claims(iat, exp, n, 0);
    claims.registered.prev_jti = Some(format!("prev-{n:08}"));
    claims.registered.prev_exp = Some(exp - 60);
    claims
}

/// A prepared `Authorization: Bearer <token>` value: cloning it is a
/// reference-count increment, as for a header hyper has already parsed.
pub fn header(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).unwrap()
}

/// A request carrying `authorization`, built as cheaply as possible so that
/// the measurement is the layer's work, not the harness's.
pub fn request(authorization: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(AUTHORIZATION, authorization.clone());
    request
}

/// Drives a service whose futures are ready at once; returns the response.
pub fn call<S>(service: &mut S, request: Request<()>) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    match pin!(service.call(request)).as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => unreachable!("inner service is always ready"),
    }
}

/// Ten typed claims of a user's own type.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Custom {
    pub role: String,
    pub tenant: u64,
    pub email: String,
    pub name: String,
    pub locale: String,
    pub plan: String,
    pub admin: bool,
    pub quota: u32,
    pub groups: Vec<String>,
    pub org: String,
}

/// The same, written as jsonwebtoken users write it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flattened {
    #[serde(flatten)]
    pub registered: tower_sliding_jwt::RegisteredClaims,
    #[serde(flatten)]
    pub custom: Custom,
}

pub type CustomClaims = StandardClaims<Custom>;

/// A 9-registered + 10-typed-claims token.
pub fn custom_token(alg: &Alg) -> String {
    let claims = claims(NOW, NOW + 3600, 0, 0);
    let custom = Custom {
        role: "admin".into(),
        tenant: 42,
        email: "alice@example.com".into(),
        name: "Alice Liddell".into(),
        locale: "en-GB".into(),
        plan: "enterprise".into(),
        admin: true,
        quota: 1000,
        groups: vec!["ops".into(), "dev".into()],
        org: "wonderland".into(),
    };
    let claims = Flattened {
        registered: claims.registered,
        custom,
    };
    signed(&own_header(alg), &claims, alg)
}

pub type CustomService = SlidingJwt<
    Inner,
    Key,
    CustomClaims,
    tower_sliding_jwt::policy::DefaultPolicy,
    tower_sliding_jwt::HttpResponder,
>;

pub fn custom_service(key: Key, clock: &ManualClock) -> CustomService {
    SlidingJwtLayer::<_, CustomClaims>::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .build()
        .unwrap()
        .layer(inner())
}

/// jsonwebtoken's decode of the flattened struct.
pub fn decode_flattened(token: &str, alg: &Alg, validation: &Validation) -> Flattened {
    jsonwebtoken::decode::<Flattened>(token, &alg.decoding, validation)
        .unwrap()
        .claims
}

/// `jsonwebtoken::decode` of `token`, with the same checks.
pub fn decode(token: &str, alg: &Alg, validation: &Validation) -> Claims {
    jsonwebtoken::decode::<Claims>(token, &alg.decoding, validation)
        .unwrap()
        .claims
}

/// `decode` + `encode` of the renewed claims: what a hand-written renewal does.
pub fn decode_and_renew(token: &str, alg: &Alg, validation: &Validation, n: usize) -> String {
    let mut claims = decode(token, alg, validation);
    claims.registered.iat = Some(NOW);
    claims.registered.exp = NOW + 3600;
    claims.registered.jti = Some(format!("jti-{n:08}"));
    jsonwebtoken::encode(&Header::new(alg.alg), &claims, &alg.encoding).unwrap()
}

/// Distinct near-expiry tokens, so that single flight never skips a signing.
pub fn renewal_pool(alg: &Alg, size: usize) -> Vec<String> {
    (0..size)
        .map(|n| token(alg, &claims(NOW - 3000, NOW + 600, n, 0)))
        .collect()
}

/// A layer taking DPoP (allowed) for `http://bench.test`, with room for
/// `capacity` proofs in its replay cache.
pub fn dpop_service(key: Key, clock: &ManualClock, capacity: usize) -> Service_ {
    SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("bench")
        .with_audience("bench-api")
        .with_dpop(
            tower_sliding_jwt::dpop::Dpop::allowed()
                .with_public_url("http://bench.test")
                .with_replay_capacity(capacity),
        )
        .build()
        .unwrap()
        .layer(inner())
}

/// The DPoP request of one proof: `Authorization: DPoP <token>` (a
/// prepared value) and the proof.
pub fn dpop_request(authorization: &HeaderValue, proof: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    let headers = request.headers_mut();
    headers.insert(AUTHORIZATION, authorization.clone());
    headers.insert("dpop", proof.clone());
    request
}

/// What an application verifying DPoP with jsonwebtoken alone does: the
/// token, then the proof with the key its header carries (its claims read
/// as a map; no `exp` in a proof).
pub fn decode_with_proof(token: &str, alg: &Alg, validation: &Validation, proof: &str) {
    let _ = decode(token, alg, validation);
    let header = jsonwebtoken::decode_header(proof).unwrap();
    let jwk = header.jwk.unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut proof_validation = Validation::new(header.alg);
    proof_validation.validate_exp = false;
    proof_validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
        proof,
        &key,
        &proof_validation,
    )
    .unwrap()
    .claims;
    std::hint::black_box(claims);
}
