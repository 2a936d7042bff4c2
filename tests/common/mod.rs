//! Shared helpers for the behaviour tests: keys, a test app, token forging.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::Value;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_sliding_jwt::{
    Algorithm, Claims, EncodingKey, Key, ManualClock, NoRenewal, Rejection, RejectionKind, Session,
    SlidingJwt, SlidingJwtLayer, StandardClaims,
};

pub const SECRET: &[u8] = b"test secret that is at least 32 bytes long";
pub const T0: i64 = 1_800_000_000;

pub const ES256_PRIVATE: &str = include_str!("../keys/es256-private.pem");
pub const ES256_PUBLIC: &str = include_str!("../keys/es256-public.pem");
pub const ES256_OTHER_PRIVATE: &str = include_str!("../keys/es256-other-private.pem");
pub const ES384_PRIVATE: &str = include_str!("../keys/es384-private.pem");
pub const ED25519_PRIVATE: &str = include_str!("../keys/ed25519-private.pem");
pub const ED25519_PUBLIC: &str = include_str!("../keys/ed25519-public.pem");
pub const RSA_PRIVATE: &str = include_str!("../keys/rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../keys/rsa-public.pem");

/// With both backends compiled in, jsonwebtoken's own helpers (used here to
/// forge tokens) need an explicit default; the layer picks aws-lc-rs too.
pub fn init() {
    #[cfg(feature = "aws_lc_rs")]
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

pub fn hs256() -> Key {
    Key::hs256(SECRET).unwrap()
}

pub fn es256() -> Key {
    Key::from_pem(Algorithm::ES256, ES256_PRIVATE).unwrap()
}

pub fn eddsa() -> Key {
    Key::from_pem(Algorithm::EdDSA, ED25519_PRIVATE).unwrap()
}

pub fn rs256() -> Key {
    Key::from_pem(Algorithm::RS256, RSA_PRIVATE).unwrap()
}

pub type Claimset = StandardClaims;

/// Claims for a user with a role, as the demos use.
pub fn user(sub: &str, role: &str) -> Claimset {
    let mut extra = serde_json::Map::new();
    extra.insert("role".into(), Value::from(role));
    StandardClaims::new(sub, extra)
}

/// A handler that echoes what the layer gave it and obeys a few test headers:
/// `x-status` sets the status, `x-no-renewal` asks for no renewal,
/// `x-set-auth` sets its own `authorization` response header.
pub type Handler = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>,
>;

/// The layer with default policy and responder around [`Handler`], as
/// [`app`] builds it.
pub type App = tower_sliding_jwt::SlidingJwt<
    Handler,
    tower_sliding_jwt::Key,
    Claimset,
    tower_sliding_jwt::policy::DefaultPolicy,
    tower_sliding_jwt::HttpResponder,
>;

pub fn app<K, P, R>(
    layer: &SlidingJwtLayer<K, Claimset, P, R>,
) -> SlidingJwt<Handler, K, Claimset, P, R> {
    layer.layer(service_fn(handler as fn(_) -> _))
}

fn handler(request: Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> {
    let session = request.extensions().get::<Session<Claimset>>();
    let body = match session {
        Some(session) => {
            assert_eq!(
                session.token().as_str().split('.').count(),
                3,
                "claims and raw token travel together"
            );
            serde_json::to_string(session.claims()).unwrap()
        }
        None => "anonymous".to_owned(),
    };
    let mut response = Response::new(body);
    if let Some(status) = request.headers().get("x-status") {
        *response.status_mut() = StatusCode::from_bytes(status.as_bytes()).unwrap();
    }
    if request.headers().contains_key("x-no-renewal") {
        response.extensions_mut().insert(NoRenewal);
    }
    if request.headers().contains_key("x-set-auth") {
        response.headers_mut().insert(
            "authorization",
            HeaderValue::from_static("Bearer from-handler"),
        );
    }
    std::future::ready(Ok(response))
}

pub fn get(token: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

pub fn anonymous() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

pub async fn send<S>(app: &S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
{
    app.clone().oneshot(request).await.unwrap()
}

pub fn rejection(response: &Response<String>) -> Option<RejectionKind> {
    response
        .extensions()
        .get::<Rejection>()
        .map(Rejection::kind)
}

pub fn challenge(response: &Response<String>) -> &str {
    response
        .headers()
        .get("www-authenticate")
        .map_or("", |v| v.to_str().unwrap())
}

pub const INVALID_TOKEN: &str =
    "Bearer error=\"invalid_token\", error_description=\"the access token is invalid or expired\"";
pub const INVALID_REQUEST: &str = "Bearer error=\"invalid_request\", error_description=\"the request's credentials are malformed\"";

/// The token a response renewed into, from `Authorization: Bearer`.
pub fn renewed(response: &Response<String>) -> Option<String> {
    let value = response.headers().get("authorization")?.to_str().unwrap();
    Some(value.strip_prefix("Bearer ").unwrap().to_owned())
}

pub fn part(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

pub fn header(token: &str) -> Value {
    part(token, 0)
}

pub fn payload(token: &str) -> Value {
    part(token, 1)
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header and payload JSON, signed with `key`/`alg`.
pub fn forge(header_json: &str, payload_json: &str, key: &EncodingKey, alg: Algorithm) -> String {
    init();
    let input = format!("{}.{}", b64(header_json), b64(payload_json));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

/// A token with this payload JSON, signed HS256 with the test secret.
pub fn forge_hs256(payload_json: &str) -> String {
    forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        payload_json,
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
}

/// A valid payload for `now`: a session that began at `auth_time`.
pub fn claims_json(now: i64, exp: i64, auth_time: i64) -> String {
    format!(
        r#"{{"sub":"alice","role":"admin","iat":{now},"exp":{exp},"auth_time":{auth_time},"sid":"s1","jti":"j1"}}"#
    )
}

pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

pub fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

pub fn sub_of<C: Claims>(claims: &C) -> Option<&str> {
    claims.registered().sub.as_deref()
}

/// A handler for role changes: `x-demote` re-issues the token with
/// `role: user` (`Session::renew_with`).
/// A request with `token` that asks [`demoting`] to demote the user.
pub fn demote(token: &str) -> Request<()> {
    let mut request = get(token);
    request
        .headers_mut()
        .insert("x-demote", HeaderValue::from_static("1"));
    request
}

pub async fn demoting(request: Request<()>) -> Result<Response<String>, Infallible> {
    if request.headers().contains_key("x-demote")
        && let Some(session) = request.extensions().get::<Session<Claimset>>()
    {
        let mut claims = session.claims().clone();
        claims.extra.insert("role".into(), "user".into());
        session.renew_with(claims);
    }
    Ok(Response::new(String::new()))
}

/// Everything a `tracing` subscriber writes.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// A subscriber writing every event, down to `TRACE`, into this buffer.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
