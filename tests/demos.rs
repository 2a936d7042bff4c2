//! End-to-end: the axum, hyper and tonic demos served on `127.0.0.1:0` and
//! driven over real TCP by a hyper client and a tonic client, with a manual
//! clock for the renew window. Then the example binaries themselves.
// Each demo brings its own copy of the shared `demo` module.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod axum_demo;
#[path = "../examples/hyper.rs"]
#[allow(dead_code)]
mod hyper_demo;
#[cfg(feature = "redis")]
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "../examples/tonic.rs"]
#[allow(dead_code)]
mod tonic_demo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_sliding_jwt::{ClientLayer, Clock, ManualClock, SystemClock, TokenStore};

const SECRET: &[u8] = b"end-to-end test secret, at least 32 bytes";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn bearer(&self) -> Option<String> {
        let value = self.headers.get("authorization")?.to_str().unwrap();
        Some(value.strip_prefix("Bearer ").unwrap().to_owned())
    }

    fn set_cookie(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

async fn get_with(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    name: &str,
    value: &str,
) -> Reply {
    call(client, addr, Method::GET, path, &[(name, value)], "").await
}

async fn call(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Http {
    Axum,
    Hyper,
}

async fn start(which: Http, clock: &ManualClock) -> SocketAddr {
    start_with(which, clock, None).await
}

/// A demo in HMAC mode, or in asymmetric mode with this PKCS#8 PEM private
/// key (as `$JWT_PRIVATE_KEY` would give it).
async fn start_with(which: Http, clock: &ManualClock, private_pem: Option<&str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match which {
        Http::Axum => {
            let layer = match private_pem {
                None => axum_demo::demo::layer(SECRET, clock.clone()).unwrap(),
                Some(pem) => axum_demo::demo::layer_with_key(
                    axum_demo::demo::private_key(pem).unwrap(),
                    clock.clone(),
                )
                .unwrap(),
            };
            let app = axum_demo::app(layer);
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        Http::Hyper => {
            let layer = match private_pem {
                None => hyper_demo::demo::layer(SECRET, clock.clone()).unwrap(),
                Some(pem) => hyper_demo::demo::layer_with_key(
                    hyper_demo::demo::private_key(pem).unwrap(),
                    clock.clone(),
                )
                .unwrap(),
            };
            tokio::spawn(hyper_demo::serve(listener, layer));
        }
    }
    addr
}

async fn login(client: &HttpClient, addr: SocketAddr, user: &str, password: &str) -> Reply {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    call(
        client,
        addr,
        Method::POST,
        "/login",
        &[("content-type", "application/json")],
        &body,
    )
    .await
}

/// The demos' contract (examples/README.md), for both HTTP demos: login,
/// `/me`, `/admin`, renewal by header and by cookie, no renewal on a 403,
/// logout, 401 afterwards.
async fn http_contract(which: Http) {
    let clock = ManualClock::new(SystemClock.now());
    let addr = start(which, &clock).await;
    let client = http_client();
    let health = call(&client, addr, Method::GET, "/health", &[], "").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok"),
        "{which:?}"
    );

    // Login: bad credentials, malformed bodies, success.
    assert_eq!(
        login(&client, addr, "alice", "nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    for malformed in ["{", "[]", r#"{"username":"alice"}"#, "not json"] {
        let reply = call(
            &client,
            addr,
            Method::POST,
            "/login",
            &[("content-type", "application/json")],
            malformed,
        )
        .await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 422),
            "{which:?} {malformed}: {}",
            reply.status
        );
    }
    // "Keep me signed in": a 30-day cap instead of one day.
    let remembered = call(
        &client,
        addr,
        Method::POST,
        "/login",
        &[("content-type", "application/json")],
        r#"{"username":"alice","password":"wonderland","remember":true}"#,
    )
    .await;
    assert_eq!(remembered.status, StatusCode::OK, "{which:?}");
    let claims = payload(remembered.json()["token"].as_str().unwrap());
    assert_eq!(
        claims["session_exp"].as_i64().unwrap() - claims["auth_time"].as_i64().unwrap(),
        30 * 86_400,
        "{which:?}"
    );
    let reply = login(&client, addr, "alice", "wonderland").await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    assert!(
        payload(&token).get("session_exp").is_none(),
        "the layer's day otherwise"
    );
    let cookie = &reply.set_cookie()[0];
    let expected =
        format!("session={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=3600; Expires=");
    assert!(
        cookie.starts_with(&expected) && cookie.ends_with(" GMT"),
        "{cookie}"
    );
    let claims = payload(&token);
    for claim in [
        "sub",
        "role",
        "iss",
        "aud",
        "iat",
        "exp",
        "jti",
        "sid",
        "auth_time",
    ] {
        assert!(claims.get(claim).is_some(), "{which:?}: claim {claim}");
    }
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("tower-sliding-jwt-demo"), Some("demo-api"))
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let bearer = format!("Bearer {token}");
    let me = get_with(&client, addr, "/me", "authorization", &bearer).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        (me.json()["sub"].as_str(), me.json()["role"].as_str()),
        (Some("alice"), Some("admin"))
    );
    assert_eq!(me.json()["sid"], claims["sid"]);
    assert!(me.bearer().is_none(), "a fresh token is not renewed");
    assert_eq!(
        call(&client, addr, Method::GET, "/me", &[], "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &client,
            addr,
            Method::GET,
            "/admin",
            &[("authorization", &bearer)],
            ""
        )
        .await
        .status,
        StatusCode::OK
    );

    // Bob is not an admin: 403, and no renewal on it even inside the window.
    let bob = login(&client, addr, "bob", "builder").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(Duration::from_secs(45 * 60));
    let forbidden = call(
        &client,
        addr,
        Method::GET,
        "/admin",
        &[("authorization", &format!("Bearer {bob}"))],
        "",
    )
    .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(forbidden.bearer().is_none());

    // A background poll inside the window: served, never renewed (not activity).
    let poll = get_with(&client, addr, "/notifications", "authorization", &bearer).await;
    assert_eq!(poll.status, StatusCode::OK, "{which:?}");
    assert_eq!(poll.json(), serde_json::json!([]));
    assert!(poll.bearer().is_none(), "a poll never renews");

    // Inside the window: renewed by header...
    let renewed = get_with(&client, addr, "/me", "authorization", &bearer).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(renewed.headers["cache-control"], "no-store");
    let next = renewed.bearer().expect("renewed in the window");
    assert_eq!(payload(&next)["sid"], claims["sid"]);
    assert_eq!(payload(&next)["exp"].as_i64().unwrap(), clock.now() + 3600);
    // ...and by cookie, on the cookie channel.
    let by_cookie = call(
        &client,
        addr,
        Method::GET,
        "/me",
        &[("cookie", &format!("session={token}"))],
        "",
    )
    .await;
    let set = by_cookie.set_cookie();
    assert!(
        set[0].starts_with("session=ey") && set[0].contains("; Max-Age=3600; Expires="),
        "{set:?}"
    );
    assert!(by_cookie.bearer().is_none());

    // The client-side layer over hyper's client adopts the renewal.
    let tokens = TokenStore::new(&bob);
    let layer = ClientLayer::for_origin(&format!("http://{addr}"), tokens.clone()).unwrap();
    let service = layer.layer(client.clone());
    // The same server under another name is another origin: no token goes there.
    let elsewhere = format!("http://localhost:{}/me", addr.port());
    let request = Request::get(elsewhere)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(tokens.token().unwrap(), bob, "a foreign 401 is not read");
    let request = Request::get(format!("http://{addr}/me"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(tokens.token().unwrap(), bob, "swapped to the renewed token");
    assert_eq!(tokens.expires_at(), Some(clock.now() + 3600));
    assert_eq!(
        payload(&tokens.token().unwrap())["sid"],
        payload(&bob)["sid"]
    );

    // Logout ends the session: every token of it gets 401.
    let logout = call(
        &client,
        addr,
        Method::POST,
        "/logout",
        &[("authorization", &format!("Bearer {next}"))],
        "",
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    for old in [&token, &next] {
        let reply = call(
            &client,
            addr,
            Method::GET,
            "/me",
            &[("authorization", &format!("Bearer {old}"))],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{which:?}");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // Logging out by cookie expires the cookie.
    let carol = login(&client, addr, "bob", "builder").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A cross-site POST carrying the cookie is refused and revokes nothing, by
    // rule 11 (ARCHITECTURE.md); the same request with a bearer token is a
    // bearer request.
    for cross_site in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let cookie = format!("session={carol}");
        let refused = call(
            &client,
            addr,
            Method::POST,
            "/logout",
            &[("cookie", &cookie), cross_site],
            "",
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{which:?} {cross_site:?}"
        );
        assert!(refused.set_cookie().is_empty());
    }
    let me = get_with(
        &client,
        addr,
        "/me",
        "authorization",
        &format!("Bearer {carol}"),
    )
    .await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the refused requests revoked nothing"
    );
    let logout = call(
        &client,
        addr,
        Method::POST,
        "/logout",
        &[("cookie", &format!("session={carol}"))],
        "",
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        logout.set_cookie(),
        [
            "session=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ]
    );
}

#[tokio::test]
async fn axum_demo_keeps_the_contract() {
    http_contract(Http::Axum).await;
}

#[tokio::test]
async fn hyper_demo_keeps_the_contract() {
    http_contract(Http::Hyper).await;
}

#[tokio::test]
async fn tonic_demo_keeps_the_contract() {
    let clock = ManualClock::new(SystemClock.now());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = tonic_demo::grpc_layer(SECRET, clock.clone()).unwrap();
    let login = layer
        .issuer()
        .issue(tonic_demo::demo::claims("alice", "admin"))
        .unwrap();
    tokio::spawn(tonic_demo::serve(listener, layer));
    let address = format!("http://{addr}");

    // No token: UNAUTHENTICATED.
    let mut anonymous = tonic_demo::connect(address.clone(), TokenStore::empty())
        .await
        .unwrap();
    let status = anonymous
        .say_hello(tonic_demo::hello("nobody"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // A forged token: UNAUTHENTICATED.
    let forged = format!("{}x", login.token());
    let refused = TokenStore::new(&forged);
    let mut bad = tonic_demo::connect(address.clone(), refused.clone())
        .await
        .unwrap();
    assert_eq!(
        bad.say_hello(tonic_demo::hello("mallory"))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    assert!(
        refused.token().is_none(),
        "UNAUTHENTICATED in the headers clears the refused token"
    );

    let tokens = TokenStore::new(login.token());
    let mut greeter = tonic_demo::connect(address, tokens.clone()).await.unwrap();
    let reply = greeter.say_hello(tonic_demo::hello("world")).await.unwrap();
    assert!(reply.get_ref().message.contains("world") && reply.get_ref().message.contains("alice"));
    assert!(reply.metadata().get("authorization").is_none());
    assert_eq!(tokens.token().unwrap(), login.token());

    // Inside the window: the renewal arrives in the initial metadata and the
    // client layer swaps to it.
    clock.advance(Duration::from_secs(50 * 60));
    let reply = greeter.say_hello(tonic_demo::hello("again")).await.unwrap();
    let renewed = reply
        .metadata()
        .get("authorization")
        .expect("renewed token in metadata")
        .to_str()
        .unwrap();
    let renewed = renewed.strip_prefix("Bearer ").unwrap();
    assert_eq!(tokens.token().as_deref(), Some(renewed));
    assert_eq!(tokens.expires_at(), Some(clock.now() + 3600));
    assert_eq!(payload(renewed)["sid"], payload(login.token())["sid"]);
    // The old token expires; the client carries on with the new one.
    clock.advance(Duration::from_secs(20 * 60));
    assert!(greeter.say_hello(tonic_demo::hello("later")).await.is_ok());
}

const ES256_PEM: &str = include_str!("keys/es256-private.pem");
const ED25519_PEM: &str = include_str!("keys/ed25519-private.pem");

/// Verifies `token` as an outside JWKS client would: the key whose `kid` the
/// token names, from the published set, with jsonwebtoken's own code.
fn verify_with_jwks(jwks: &serde_json::Value, token: &str) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["demo-api"]);
    validation.set_issuer(&["tower-sliding-jwt-demo"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims
}

/// PyJWT's `PyJWKClient` verifies `tokens` with the JWKS at `url`; `None`
/// when Python or PyJWT (with `cryptography`) is not installed.
async fn pyjwt_verify(url: &str, tokens: &[&str]) -> Option<String> {
    const SCRIPT: &str = r#"
import sys, jwt
client = jwt.PyJWKClient(sys.argv[1])
for token in sys.argv[2:]:
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256", "EdDSA"],
                        audience="demo-api", issuer="tower-sliding-jwt-demo")
    print("verified", key.key_id, claims["sub"], claims["sid"], claims["exp"])
"#;
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .await;
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipping the PyJWT check: python3 with PyJWT and cryptography is not installed");
        return None;
    }
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(url)
        .args(tokens)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "PyJWT refused: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// The optional asymmetric mode: `kid` = thumbprint, the JWKS route, and
/// tokens and renewals that outside JWKS clients verify.
async fn asymmetric_contract(which: Http, pem: &str, alg: &str) {
    // Login 50 minutes ago, so the renewal below is issued at the real time
    // (outside clients check `iat` and `exp` against their own clock).
    let clock = ManualClock::new(SystemClock.now() - 50 * 60);
    let addr = start_with(which, &clock, Some(pem)).await;
    let client = http_client();
    let reply = call(
        &client,
        addr,
        Method::GET,
        "/.well-known/jwks.json",
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{which:?}");
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["cache-control"], "public, max-age=300");
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    let jwks = reply.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], alg);
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none());
    let revalidated = call(
        &client,
        addr,
        Method::GET,
        "/.well-known/jwks.json",
        &[("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);

    let reply = login(&client, addr, "alice", "wonderland").await;
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let header = |token: &str| {
        let part = token.split('.').next().unwrap();
        use base64::Engine as _;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&json).unwrap()
    };
    assert_eq!(header(&token)["alg"], alg);
    assert_eq!(
        header(&token)["kid"],
        keys[0]["kid"],
        "kid = the thumbprint"
    );
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    assert_eq!(
        keys[0]["kid"].as_str().unwrap(),
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap()
    );
    assert_eq!(verify_with_jwks(&jwks, &token)["sub"], "alice");

    clock.advance(Duration::from_secs(50 * 60));
    let reply = get_with(
        &client,
        addr,
        "/me",
        "authorization",
        &format!("Bearer {token}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let renewal = reply.bearer().expect("renewed");
    assert_eq!(header(&renewal)["kid"], keys[0]["kid"]);
    let renewed = verify_with_jwks(&jwks, &renewal);
    assert_eq!(renewed["sid"], payload(&token)["sid"]);

    let url = format!("http://{addr}/.well-known/jwks.json");
    if let Some(out) = pyjwt_verify(&url, &[&token, &renewal]).await {
        eprintln!("PyJWT ({which:?}, {alg}):\n{out}");
        assert_eq!(out.matches("verified").count(), 2, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demos_publish_their_public_key_in_asymmetric_mode() {
    // With both backends compiled in, jsonwebtoken's own helpers (the
    // outside client here) need an explicit default.
    #[cfg(feature = "aws_lc_rs")]
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
    for which in [Http::Axum, Http::Hyper] {
        asymmetric_contract(which, ES256_PEM, "ES256").await;
        asymmetric_contract(which, ED25519_PEM, "EdDSA").await;
        // HMAC mode: no such route.
        let addr = start(which, &ManualClock::new(SystemClock.now())).await;
        let reply = call(
            &http_client(),
            addr,
            Method::GET,
            "/.well-known/jwks.json",
            &[],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{which:?}");
    }
}

#[test]
fn demos_refuse_a_private_key_they_cannot_use() {
    let rsa = include_str!("keys/rsa-private.pem");
    let p384 = include_str!("keys/es384-private.pem");
    for pem in [rsa, p384, "not a pem"] {
        let error = axum_demo::demo::private_key(pem).unwrap_err();
        assert!(error.contains("P-256 or Ed25519"), "{error}");
    }
}

/// `REUSE_GRACE=30` (in-process, on a manual clock): the old token after its
/// replacement was used and the grace passed gets 401 `invalid_token`, and
/// ends the session; inside the grace it is served.
#[tokio::test]
async fn reuse_grace_ends_a_session_whose_replaced_token_comes_back() {
    for which in [Http::Axum, Http::Hyper] {
        let clock = ManualClock::new(SystemClock.now());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        match which {
            Http::Axum => {
                let builder = axum_demo::demo::builder(SECRET, clock.clone()).unwrap();
                let layer = axum_demo::demo::with_reuse_grace(builder, Some("30"))
                    .unwrap()
                    .build()
                    .unwrap();
                let app = axum_demo::app(layer);
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            Http::Hyper => {
                let builder = hyper_demo::demo::builder(SECRET, clock.clone()).unwrap();
                let layer = hyper_demo::demo::with_reuse_grace(builder, Some("30"))
                    .unwrap()
                    .build()
                    .unwrap();
                tokio::spawn(hyper_demo::serve(listener, layer));
            }
        }
        let client = http_client();
        let old = login(&client, addr, "alice", "wonderland").await.json()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let old = format!("Bearer {old}");
        clock.advance(Duration::from_secs(45 * 60));
        let next = get_with(&client, addr, "/me", "authorization", &old).await;
        let next = format!("Bearer {}", next.bearer().expect("renewed"));
        assert_eq!(
            get_with(&client, addr, "/me", "authorization", &next)
                .await
                .status,
            StatusCode::OK
        );
        // Another tab inside the grace: served.
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            get_with(&client, addr, "/me", "authorization", &old)
                .await
                .status,
            StatusCode::OK,
            "{which:?}"
        );
        clock.advance(Duration::from_secs(1));
        let reused = get_with(&client, addr, "/me", "authorization", &old).await;
        assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{which:?}");
        assert!(
            reused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        assert_eq!(
            get_with(&client, addr, "/me", "authorization", &next)
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "{which:?}: the session is over"
        );
    }
    // A value that is not a number of seconds is refused, not ignored.
    let builder = axum_demo::demo::builder(SECRET, SystemClock).unwrap();
    let error = axum_demo::demo::with_reuse_grace(builder, Some("thirty")).unwrap_err();
    assert!(error.contains("REUSE_GRACE"), "{error}");
}

/// Three demo instances (axum, hyper, axum) on their own ports, all with
/// `REDIS_URL=url` and `REUSE_GRACE=30`.
#[cfg(feature = "redis")]
async fn three_demos(url: &str, clock: &ManualClock) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for which in [Http::Axum, Http::Hyper, Http::Axum] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        match which {
            Http::Axum => {
                let layer = axum_demo::demo::cluster_layer(
                    tower_sliding_jwt::Key::hs256(SECRET).unwrap(),
                    clock.clone(),
                    url,
                    Some("30"),
                )
                .await
                .unwrap();
                let app = axum_demo::app(layer);
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            Http::Hyper => {
                let layer = hyper_demo::demo::cluster_layer(
                    tower_sliding_jwt::Key::hs256(SECRET).unwrap(),
                    clock.clone(),
                    url,
                    Some("30"),
                )
                .await
                .unwrap();
                tokio::spawn(hyper_demo::serve(listener, layer));
            }
        }
    }
    addrs
}

/// The demos behind one Redis deployment act as one: 30 parallel requests
/// with one near-expiry token over the three get one replacement, and a
/// logout on one is refused by all within a second. Answers alice's old and
/// renewed credentials (both logged out).
#[cfg(feature = "redis")]
async fn demos_agree(addrs: &[SocketAddr], clock: &ManualClock) -> (String, String) {
    let client = http_client();
    let token = |reply: Reply| reply.json()["token"].as_str().unwrap().to_owned();
    let alice = token(login(&client, addrs[0], "alice", "wonderland").await);

    // Near expiry: 30 parallel requests over the three instances.
    clock.advance(Duration::from_secs(50 * 60));
    let bearer = format!("Bearer {alice}");
    let requests: Vec<_> = (0..30)
        .map(|i| {
            let (client, addr, bearer) = (client.clone(), addrs[i % 3], bearer.clone());
            tokio::spawn(
                async move { get_with(&client, addr, "/me", "authorization", &bearer).await },
            )
        })
        .collect();
    let mut replacements = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        replacements.push(reply.bearer().expect("renewed"));
    }
    replacements.sort();
    replacements.dedup();
    assert_eq!(replacements.len(), 1, "one replacement across the cluster");

    // Logout on one instance: every instance refuses the session within a second.
    let renewed = format!("Bearer {}", replacements[0]);
    let logout = call(
        &client,
        addrs[1],
        Method::POST,
        "/logout",
        &[("authorization", &renewed)],
        "",
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let started = Instant::now();
    for addr in addrs {
        for credential in [&bearer, &renewed] {
            while get_with(&client, *addr, "/me", "authorization", credential)
                .await
                .status
                != StatusCode::UNAUTHORIZED
            {
                assert!(started.elapsed() < Duration::from_secs(1));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (bearer, renewed)
}

/// `REDIS_URL=redis-cluster://…` and `REDIS_URL=redis-sentinel://…/<name>`:
/// three demos on a 3-master Redis Cluster, then on a master with a replica
/// under three Sentinels, act as one cluster too.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_demos_act_as_one_cluster_on_a_redis_cluster_and_under_sentinels() {
    let cluster = redis_server::RedisCluster::start(3).await;
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(&cluster.url(), &clock).await;
    demos_agree(&addrs, &clock).await;
    drop(cluster);
    let sentinels = redis_server::Sentinels::start().await;
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(&sentinels.url(), &clock).await;
    demos_agree(&addrs, &clock).await;
}

/// Three demo instances (axum, hyper, axum) on their own ports behind one
/// `redis-server`, as `REDIS_URL` sets them up: one replacement per old token
/// whichever instance answers, logout honoured by all within a second, 503
/// with `Retry-After` while Redis is down, and recovery by itself.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_demos_act_as_one_cluster_behind_redis() {
    let mut server = redis_server::Server::start();
    let port = server.port;
    let url = server.url();
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(&url, &clock).await;
    let client = http_client();
    let token = |reply: Reply| reply.json()["token"].as_str().unwrap().to_owned();
    let bob = token(login(&client, addrs[2], "bob", "builder").await);
    let (_, renewed) = demos_agree(&addrs, &clock).await;

    // Redis down: 503 with Retry-After everywhere (fail closed).
    let bob = format!("Bearer {bob}");
    server.stop();
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = get_with(&client, *addr, "/me", "authorization", &bob).await;
            if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(reply.headers["retry-after"], "1");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} still answers {}",
                reply.status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Back (empty): every instance recovers by itself, and still refuses
    // the session logged out before the outage.
    let _server = redis_server::Server::on(port);
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get_with(&client, *addr, "/me", "authorization", &bob)
            .await
            .status
            != StatusCode::OK
        {
            assert!(Instant::now() < deadline, "{addr} did not recover");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            get_with(&client, *addr, "/me", "authorization", &renewed)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    // REUSE_GRACE=30 with REDIS_URL: renewed on one instance, the
    // replacement used on another, the old token back on the third after
    // the grace is refused, and the session is over everywhere.
    let carol = format!(
        "Bearer {}",
        token(login(&client, addrs[0], "alice", "wonderland").await)
    );
    clock.advance(Duration::from_secs(50 * 60));
    let next = get_with(&client, addrs[0], "/me", "authorization", &carol).await;
    let next = format!("Bearer {}", next.bearer().expect("renewed"));
    assert_eq!(
        get_with(&client, addrs[1], "/me", "authorization", &next)
            .await
            .status,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(31));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get_with(&client, addrs[2], "/me", "authorization", &carol).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            assert!(
                reply.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("invalid_token")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reuse not caught: {}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(5);
        while get_with(&client, *addr, "/me", "authorization", &next)
            .await
            .status
            != StatusCode::UNAUTHORIZED
        {
            assert!(
                Instant::now() < deadline,
                "{addr} still serves the reused session"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The example binaries, run as a user would: `PORT`, the `listening on` line,
/// `/health`, and a clear refusal of a short secret.
#[test]
fn example_binaries_start_and_answer() {
    let examples = examples_dir();
    for name in ["axum", "hyper", "tonic"] {
        let binary = examples.join(name);
        assert!(
            binary.exists(),
            "{} is missing: `cargo test` builds the examples",
            binary.display()
        );

        let short = Command::new(&binary)
            .env("JWT_SECRET", "too short")
            .env("PORT", "0")
            .output()
            .unwrap();
        assert!(!short.status.success(), "{name} must refuse a short secret");
        assert!(
            String::from_utf8_lossy(&short.stderr).contains("at least 32 bytes"),
            "{name}"
        );

        if name != "tonic" {
            // Cluster mode with no Redis there: a clear refusal, never a
            // password from the URL.
            let mut child = Command::new(&binary)
                .env("REDIS_URL", "redis://:hunter2@127.0.0.1:1/")
                .env("PORT", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    panic!(
                        "{name} with an unreachable REDIS_URL did not exit (a stale binary? `cargo test` builds the examples)"
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(!status.success(), "{name}: {stderr}");
            assert!(stderr.contains("REDIS_URL"), "{name}: {stderr}");
            assert!(!stderr.contains("hunter2"), "{name}: {stderr}");
        }

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&binary)
            .env("PORT", port.to_string())
            .env_remove("JWT_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("listening on http://127.0.0.1:{port}"),
            "{name}"
        );
        let mut warning = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut warning)
            .unwrap();
        assert!(
            warning.contains("JWT_SECRET is not set"),
            "{name}: {warning}"
        );

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(error) => panic!("{name}: {error}"),
            }
        };
        if name != "tonic" {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
            assert!(response.ends_with("ok"), "{name}: {response}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// The HTTP example binaries with `JWT_PRIVATE_KEY`: the JWKS route answers,
/// and a key file that cannot be used is refused with a clear message.
#[test]
fn example_binaries_asymmetric_mode() {
    let examples = examples_dir();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    for name in ["axum", "hyper"] {
        let binary = examples.join(name);
        for bad in ["rsa-private.pem", "no-such-file.pem"] {
            let refused = Command::new(&binary)
                .env("JWT_PRIVATE_KEY", keys.join(bad))
                .env("PORT", "0")
                .output()
                .unwrap();
            assert!(!refused.status.success(), "{name} {bad}");
            assert!(
                String::from_utf8_lossy(&refused.stderr).contains("JWT_PRIVATE_KEY"),
                "{name} {bad}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&binary)
            .env("PORT", port.to_string())
            .env("JWT_PRIVATE_KEY", keys.join("ed25519-private.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "{name}: {line}");
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("cache-control: public, max-age=300"),
            "{name}: {response}"
        );
        assert!(response.contains(r#""kty":"OKP""#), "{name}: {response}");
        assert!(response.contains(r#""alg":"EdDSA""#), "{name}: {response}");
    }
}

/// One request to a demo binary on `port`; the status and the body.
fn raw_http(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn login_over(port: u16, user: &str, password: &str) -> String {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let (status, reply) = raw_http(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{reply}");
    let start = reply.find('{').unwrap();
    let end = reply.rfind('}').unwrap();
    let json: serde_json::Value = serde_json::from_str(&reply[start..=end]).unwrap();
    json["token"].as_str().unwrap().to_owned()
}

fn authorized(port: u16, method: &str, path: &str, token: &str) -> u16 {
    raw_http(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\n\r\n"
        ),
    )
    .0
}

/// Starts a demo binary on a free port with `env`, after its `listening on` line.
fn start_demo(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> (std::process::Child, u16) {
    let binary = examples_dir().join(name);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(&binary);
    command
        .env("PORT", port.to_string())
        .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{name}: {line}");
    (child, port)
}

/// The binaries read `REUSE_GRACE`: a number turns reuse detection on (the
/// demo still keeps its contract), anything else stops it with a clear error.
#[test]
fn the_binaries_read_reuse_grace() {
    for name in ["axum", "hyper"] {
        let (mut child, port) = start_demo(name, &[("REUSE_GRACE", "30".as_ref())]);
        let alice = login_over(port, "alice", "wonderland");
        assert_eq!(authorized(port, "GET", "/me", &alice), 200, "{name}");
        child.kill().unwrap();
        child.wait().unwrap();
        let output = Command::new(examples_dir().join(name))
            .env("PORT", "0")
            .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
            .env("REUSE_GRACE", "soon")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("REUSE_GRACE"), "{name}: {stderr}");
    }
}

/// `REVOCATION_PATH`: a logout answered 204 survives `kill -9` and a restart
/// on the same file, and the restart logs nobody else out.
#[test]
fn a_logout_survives_kill_9_and_a_restart_with_revocation_path() {
    for name in ["axum", "hyper"] {
        let dir = std::env::temp_dir().join(format!("tsj-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("revocations");
        let env = [("REVOCATION_PATH", path.as_os_str())];
        let (mut child, port) = start_demo(name, &env);
        let alice = login_over(port, "alice", "wonderland");
        let bob = login_over(port, "bob", "builder");
        assert_eq!(authorized(port, "GET", "/me", &alice), 200);
        assert_eq!(authorized(port, "POST", "/logout", &alice), 204, "{name}");
        assert_eq!(authorized(port, "GET", "/me", &alice), 401);
        // Killed right after the logout was answered.
        child.kill().unwrap();
        child.wait().unwrap();
        let (mut child, port) = start_demo(name, &env);
        assert_eq!(
            authorized(port, "GET", "/me", &alice),
            401,
            "{name}: the logout was forgotten"
        );
        assert_eq!(
            authorized(port, "GET", "/me", &bob),
            200,
            "{name}: bob was logged out"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // Without REVOCATION_PATH the demo says it forgets: memory only.
        let (mut child, port) = start_demo(name, &[]);
        assert_eq!(
            authorized(port, "GET", "/me", &alice),
            200,
            "in memory: forgotten"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `cargo run --features jwks --example services`: an issuer, a verify-only
/// service on its JWKS and a client keeping one token fresh across both.
#[cfg(feature = "jwks")]
#[test]
fn the_several_services_example_runs() {
    let binary = examples_dir().join("services");
    let mut child = Command::new(&binary)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the services example did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{out}{err}");
    for line in [
        "orders service: 200",
        "renewal adopted by the client",
        "orders service with the renewed token: 200",
        "logout at the issuer: 204",
        "the issuer refused the token: session ended",
        "issuer /me after logout: 401; the client holds a token: false",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// Where `cargo test` puts the example binaries it builds.
fn examples_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
}
