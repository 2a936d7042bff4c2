//! End-to-end: the axum and hyper demos served on `127.0.0.1:0` and driven
//! over real TCP by a hyper client, with a manual clock for the renew window:
//! the contract of examples/README.md, the asymmetric mode, reuse detection,
//! and several demos behind one Redis deployment acting as one.
// Each demo brings its own copy of the shared `demo` module.
#![allow(clippy::duplicate_mod)]

mod common;

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod axum_demo;
#[path = "../examples/hyper.rs"]
#[allow(dead_code)]
mod hyper_demo;
#[cfg(feature = "postgres")]
#[path = "common/postgres_server.rs"]
mod postgres_server;
#[cfg(feature = "redis")]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_sliding_jwt::{ClientLayer, Clock, ManualClock, SystemClock, TokenStore};

use common::payload;

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
    let mut args = vec!["-c".to_owned(), SCRIPT.to_owned(), url.to_owned()];
    args.extend(tokens.iter().map(|t| (*t).to_owned()));
    python("PyJWT", &args).await
}

/// Runs `python3` with `args` when Python with PyJWT and `cryptography` is
/// installed (`None`, with a message, when not), asserting it succeeds;
/// answers its output. `what` names it in messages.
async fn python(what: &str, args: &[String]) -> Option<String> {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .await;
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipping {what}: python3 with PyJWT and cryptography is not installed");
        return None;
    }
    let out = tokio::process::Command::new("python3")
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}{}",
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
        // Another tab inside the grace (plus the demo's 5 s leeway, the
        // clock-skew allowance between instances): served.
        clock.advance(Duration::from_secs(35));
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

/// `login`, from a client whose `User-Agent` is `agent`; answers the
/// bearer credentials.
async fn login_from(
    client: &HttpClient,
    addr: SocketAddr,
    user: &str,
    password: &str,
    agent: &str,
) -> String {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let reply = call(
        client,
        addr,
        Method::POST,
        "/login",
        &[("content-type", "application/json"), ("user-agent", agent)],
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    format!("Bearer {}", reply.json()["token"].as_str().unwrap())
}

fn sid_of(bearer: &str) -> String {
    payload(bearer.strip_prefix("Bearer ").unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every demo at `addrs` refuses `bearer` within a second.
async fn refused_by_all(client: &HttpClient, addrs: &[SocketAddr], bearer: &str) {
    let started = std::time::Instant::now();
    for addr in addrs {
        while get_with(client, *addr, "/me", "authorization", bearer)
            .await
            .status
            != StatusCode::UNAUTHORIZED
        {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "an ended session still served after a second"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The contract's "A user's sessions" over the demos at `addrs` (one demo,
/// or several sharing a store: logins, listings and endings spread over
/// them).
async fn sessions_contract(addrs: &[SocketAddr]) {
    let client = http_client();
    let (first, last) = (addrs[0], addrs[addrs.len() - 1]);
    let phone = login_from(&client, first, "alice", "wonderland", "Phone/1").await;
    let laptop = login_from(&client, last, "alice", "wonderland", "Laptop/2").await;
    let bob = login_from(&client, first, "bob", "builder", "Bob/1").await;
    for addr in addrs {
        let listed = get_with(&client, *addr, "/sessions", "authorization", &laptop).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        let sessions = listed.json()["sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        for session in &sessions {
            let mine = session["sid"] == sid_of(&laptop);
            assert_eq!(session["current"], mine);
            assert_eq!(
                session["user_agent"],
                if mine { "Laptop/2" } else { "Phone/1" }
            );
            assert!(session["created"].is_i64() && session["last_seen"].is_i64());
        }
    }
    // Another user's sid: 404, and bob stays logged in.
    let path = format!("/sessions/{}", sid_of(&bob));
    let reply = call(
        &client,
        first,
        Method::DELETE,
        &path,
        &[("authorization", &laptop)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get_with(&client, last, "/me", "authorization", &bob)
            .await
            .status,
        StatusCode::OK
    );
    // A malformed or over-long sid: 404.
    let long = format!("/sessions/{}", "x".repeat(5000));
    for path in ["/sessions/..%2f", long.as_str()] {
        let reply = call(
            &client,
            first,
            Method::DELETE,
            path,
            &[("authorization", &laptop)],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path:.30}");
    }
    // Ending the phone's session: 401 for its tokens, on every demo.
    let path = format!("/sessions/{}", sid_of(&phone));
    let reply = call(
        &client,
        first,
        Method::DELETE,
        &path,
        &[("authorization", &laptop)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    refused_by_all(&client, addrs, &phone).await;
    // "Log out other devices".
    let tablet = login_from(&client, first, "alice", "wonderland", "Tablet/3").await;
    let reply = call(
        &client,
        last,
        Method::POST,
        "/sessions/end-others",
        &[("authorization", &laptop)],
        "",
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["ended"].as_i64()),
        (StatusCode::OK, Some(1))
    );
    refused_by_all(&client, addrs, &tablet).await;
    assert_eq!(
        get_with(&client, first, "/me", "authorization", &laptop)
            .await
            .status,
        StatusCode::OK
    );
    // The current session ends too.
    let path = format!("/sessions/{}", sid_of(&laptop));
    let reply = call(
        &client,
        last,
        Method::DELETE,
        &path,
        &[("authorization", &laptop)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    refused_by_all(&client, addrs, &laptop).await;
}

#[tokio::test]
async fn demos_list_and_end_a_users_sessions() {
    for which in [Http::Axum, Http::Hyper] {
        let clock = ManualClock::new(SystemClock.now());
        let addr = start(which, &clock).await;
        sessions_contract(&[addr]).await;
        // Cookie mode: a cross-site DELETE with the session cookie is refused
        // and ends nothing.
        let client = http_client();
        let reply = login(&client, addr, "alice", "wonderland").await;
        let token = reply.json()["token"].as_str().unwrap().to_owned();
        let cookie = format!("session={token}");
        let path = format!("/sessions/{}", payload(&token)["sid"].as_str().unwrap());
        let headers = [
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
        ];
        let reply = call(&client, addr, Method::DELETE, &path, &headers, "").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{which:?}");
        assert_eq!(
            get_with(&client, addr, "/me", "cookie", &cookie)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn max_sessions_ends_the_least_recently_seen() {
    for which in [Http::Axum, Http::Hyper] {
        let clock = ManualClock::new(SystemClock.now());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        match which {
            Http::Axum => {
                let builder = axum_demo::demo::builder(SECRET, clock.clone()).unwrap();
                let layer = axum_demo::demo::with_max_sessions(builder, Some("2"))
                    .unwrap()
                    .build()
                    .unwrap();
                let app = axum_demo::app(layer);
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            Http::Hyper => {
                let builder = hyper_demo::demo::builder(SECRET, clock.clone()).unwrap();
                let layer = hyper_demo::demo::with_max_sessions(builder, Some("2"))
                    .unwrap()
                    .build()
                    .unwrap();
                tokio::spawn(hyper_demo::serve(listener, layer));
            }
        }
        let client = http_client();
        let first = login_from(&client, addr, "alice", "wonderland", "1").await;
        clock.advance(Duration::from_secs(60));
        let second = login_from(&client, addr, "alice", "wonderland", "2").await;
        // The first one renews: the second is now the least recently seen.
        clock.advance(Duration::from_secs(45 * 60));
        let renewed = get_with(&client, addr, "/me", "authorization", &first).await;
        let renewed = format!("Bearer {}", renewed.bearer().expect("renewed"));
        let third = login_from(&client, addr, "alice", "wonderland", "3").await;
        assert_eq!(
            get_with(&client, addr, "/me", "authorization", &second)
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "{which:?}"
        );
        assert_eq!(
            get_with(&client, addr, "/me", "authorization", &renewed)
                .await
                .status,
            StatusCode::OK
        );
        let listed = get_with(&client, addr, "/sessions", "authorization", &third)
            .await
            .json();
        let mut sids: Vec<_> = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sid"].as_str().unwrap().to_owned())
            .collect();
        sids.sort();
        let mut expected = vec![sid_of(&first), sid_of(&third)];
        expected.sort();
        assert_eq!(sids, expected, "{which:?}");
    }
    let builder = axum_demo::demo::builder(SECRET, SystemClock).unwrap();
    let error = axum_demo::demo::with_max_sessions(builder, Some("0")).unwrap_err();
    assert!(error.contains("MAX_SESSIONS"), "{error}");
}

/// `GET /events` with `bearer`: the status, and the stream's text as it
/// arrives (the channel closes when the stream ends).
async fn open_events(
    client: &HttpClient,
    addr: SocketAddr,
    bearer: &str,
) -> (StatusCode, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let request = Request::get(format!("http://{addr}/events"))
        .header("authorization", bearer)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    assert!(status != StatusCode::OK || response.headers()["content-type"] == "text/event-stream");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut body = response.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && sender
                    .send(String::from_utf8_lossy(&data).into_owned())
                    .is_err()
            {
                return;
            }
        }
    });
    (status, receiver)
}

/// Reads `events` until it ends (within `bound`): the last event's name and
/// data, if it sent one (`None` when it ended without `session-ended`).
async fn last_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    bound: Duration,
) -> Option<String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(chunk)) => text.push_str(&chunk),
            Ok(None) => break,
            Err(_) => panic!("the stream did not end within {bound:?}: {text}"),
        }
    }
    let last = text.split("\n\n").filter(|e| !e.is_empty()).last()?;
    last.starts_with("event: session-ended\n").then(|| {
        last.lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap_or_default()
            .to_owned()
    })
}

/// The contract's "Long-lived connections" over the demos at `addrs` (the
/// stream on the last one; logins and endings on the first).
async fn events_contract(addrs: &[SocketAddr], clock: &ManualClock) {
    let client = http_client();
    let (first, last) = (addrs[0], addrs[addrs.len() - 1]);
    // Logout: one last `session-ended` naming it, then the end.
    let alice = login_from(&client, first, "alice", "wonderland", "A").await;
    let (status, mut events) = open_events(&client, last, &alice).await;
    assert_eq!(status, StatusCode::OK);
    let first_event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first_event.starts_with("data: "), "{first_event}");
    let reply = call(
        &client,
        first,
        Method::POST,
        "/logout",
        &[("authorization", &alice)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        last_event(&mut events, Duration::from_secs(1))
            .await
            .as_deref(),
        Some("logout")
    );
    assert_eq!(
        open_events(&client, last, &alice).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Ended from another session: "ended".
    let phone = login_from(&client, first, "bob", "builder", "Phone").await;
    let laptop = login_from(&client, last, "bob", "builder", "Laptop").await;
    let (_, mut phone_events) = open_events(&client, last, &phone).await;
    let path = format!("/sessions/{}", sid_of(&phone));
    let reply = call(
        &client,
        first,
        Method::DELETE,
        &path,
        &[("authorization", &laptop)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        last_event(&mut phone_events, Duration::from_secs(1))
            .await
            .as_deref(),
        Some("ended")
    );
    // A renewal does not close it; opening and holding it never renews.
    let (status, mut laptop_events) = open_events(&client, last, &laptop).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(Duration::from_secs(50 * 60));
    let held = get_with(&client, last, "/events", "authorization", &laptop);
    let renewed = get_with(&client, first, "/me", "authorization", &laptop).await;
    let renewed = format!("Bearer {}", renewed.bearer().expect("renewed"));
    drop(held);
    clock.advance(Duration::from_secs(15 * 60));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut seen = String::new();
    while let Ok(chunk) = laptop_events.try_recv() {
        seen.push_str(&chunk);
    }
    assert!(
        !seen.contains("session-ended"),
        "a renewal closed the stream: {seen}"
    );
    // Ended from a later login of the same user (not end-others: the
    // cluster tests still use another session of bob's).
    let tablet = login_from(&client, first, "bob", "builder", "Tablet").await;
    let path = format!("/sessions/{}", sid_of(&laptop));
    let reply = call(
        &client,
        first,
        Method::DELETE,
        &path,
        &[("authorization", &tablet)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        last_event(&mut laptop_events, Duration::from_secs(1))
            .await
            .as_deref(),
        Some("ended")
    );
    assert_eq!(
        get_with(&client, first, "/me", "authorization", &renewed)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demos_end_event_streams_with_their_session() {
    for which in [Http::Axum, Http::Hyper] {
        let clock = ManualClock::new(SystemClock.now());
        let addr = start(which, &clock).await;
        events_contract(&[addr], &clock).await;
    }
}

/// Which shared store a cluster of demos uses.
#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Clone, Copy)]
enum Shared {
    /// `REDIS_URL`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Redis,
    /// `DATABASE_URL`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// Three demo instances (axum, hyper, axum) on their own ports, all with
/// `REDIS_URL=url` (or `DATABASE_URL=url`) and `REUSE_GRACE=30`.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn three_demos(shared: Shared, url: &str, clock: &ManualClock) -> Vec<SocketAddr> {
    let key = || tower_sliding_jwt::Key::hs256(SECRET).unwrap();
    let mut addrs = Vec::new();
    for which in [Http::Axum, Http::Hyper, Http::Axum] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let (clock, grace) = (clock.clone(), Some("30"));
        match which {
            Http::Axum => {
                let layer = match shared {
                    Shared::Redis => axum_demo::demo::cluster_layer(key(), clock, url, grace).await,
                    Shared::Postgres => {
                        axum_demo::demo::database_layer(key(), clock, url, grace).await
                    }
                };
                let app = axum_demo::app(layer.unwrap());
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            Http::Hyper => {
                let layer = match shared {
                    Shared::Redis => {
                        hyper_demo::demo::cluster_layer(key(), clock, url, grace).await
                    }
                    Shared::Postgres => {
                        hyper_demo::demo::database_layer(key(), clock, url, grace).await
                    }
                };
                tokio::spawn(hyper_demo::serve(listener, layer.unwrap()));
            }
        }
    }
    addrs
}

/// The demos behind one Redis deployment act as one: 30 parallel requests
/// with one near-expiry token over the three get one replacement, and a
/// logout on one is refused by all within a second. Answers alice's old and
/// renewed credentials (both logged out).
#[cfg(any(feature = "redis", feature = "postgres"))]
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

/// The shared store is down: every demo at `addrs` answers `credential`
/// with 503 and `Retry-After: 1` within `bound` (fail closed).
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn all_fail_closed(
    client: &HttpClient,
    addrs: &[SocketAddr],
    credential: &str,
    bound: Duration,
) {
    for addr in addrs {
        let deadline = Instant::now() + bound;
        loop {
            let reply = get_with(client, *addr, "/me", "authorization", credential).await;
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
}

/// The shared store is back: every demo at `addrs` serves `credential`
/// again within 10 s, by itself, and still refuses each of `refused`.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn all_recover(
    client: &HttpClient,
    addrs: &[SocketAddr],
    credential: &str,
    refused: &[&str],
) {
    for addr in addrs {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get_with(client, *addr, "/me", "authorization", credential)
            .await
            .status
            != StatusCode::OK
        {
            assert!(Instant::now() < deadline, "{addr} did not recover");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for refused in refused {
            assert_eq!(
                get_with(client, *addr, "/me", "authorization", refused)
                    .await
                    .status,
                StatusCode::UNAUTHORIZED
            );
        }
    }
}

/// `REDIS_URL=redis-cluster://…` and `REDIS_URL=redis-sentinel://…/<name>`:
/// three demos on a 3-master Redis Cluster, then on a master with a replica
/// under three Sentinels, act as one cluster too.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_demos_act_as_one_cluster_on_a_redis_cluster_and_under_sentinels() {
    let cluster = redis_server::RedisCluster::start(3).await;
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(Shared::Redis, &cluster.url(), &clock).await;
    demos_agree(&addrs, &clock).await;
    drop(cluster);
    let sentinels = redis_server::Sentinels::start().await;
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(Shared::Redis, &sentinels.url(), &clock).await;
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
    let addrs = three_demos(Shared::Redis, &url, &clock).await;
    let client = http_client();
    let token = |reply: Reply| reply.json()["token"].as_str().unwrap().to_owned();
    let bob = token(login(&client, addrs[2], "bob", "builder").await);
    let (_, renewed) = demos_agree(&addrs, &clock).await;
    sessions_contract(&addrs).await;
    dpop_cluster_contract(&addrs, &clock).await;

    // Redis down: 503 with Retry-After everywhere (fail closed), and an
    // open event stream ends without saying its session ended.
    let bob = format!("Bearer {bob}");
    let (status, mut bob_events) = open_events(&client, addrs[1], &bob).await;
    assert_eq!(status, StatusCode::OK);
    server.stop();
    all_fail_closed(&client, &addrs, &bob, Duration::from_secs(5)).await;
    assert_eq!(
        last_event(&mut bob_events, Duration::from_secs(5)).await,
        None
    );

    // Back (empty): every instance recovers by itself, and still refuses
    // the session logged out before the outage.
    let _server = redis_server::Server::on(port);
    all_recover(&client, &addrs, &bob, &[&renewed]).await;

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
    // Past the grace plus the 5 s leeway.
    clock.advance(Duration::from_secs(36));
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
    // Last: it moves the clock past every token above.
    events_contract(&addrs, &clock).await;
}

/// `DATABASE_URL=url`: three demos (axum, hyper, axum) on one PostgreSQL
/// act as one cluster, exactly as behind Redis: one replacement per old
/// token, a logout honoured by all within a second; PostgreSQL stopped
/// (`pg_ctl stop -m immediate`) gives 503 with `Retry-After` everywhere,
/// and once it is back every instance recovers by itself with nothing
/// answered lost.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_demos_act_as_one_cluster_on_postgres() {
    let mut server = postgres_server::Postgres::start();
    let clock = ManualClock::new(SystemClock.now());
    let addrs = three_demos(Shared::Postgres, &server.url(), &clock).await;
    let client = http_client();
    let token = |reply: Reply| reply.json()["token"].as_str().unwrap().to_owned();
    let bob = format!(
        "Bearer {}",
        token(login(&client, addrs[2], "bob", "builder").await)
    );
    let (old, renewed) = demos_agree(&addrs, &clock).await;
    sessions_contract(&addrs).await;
    dpop_cluster_contract(&addrs, &clock).await;

    server.stop_immediate();
    all_fail_closed(&client, &addrs, &bob, Duration::from_secs(6)).await;

    server.start_again();
    all_recover(&client, &addrs, &bob, &[&old, &renewed]).await;
    // A fourth demo started now knows the logout too.
    let later = three_demos(Shared::Postgres, &server.url(), &clock).await;
    assert_eq!(
        get_with(&client, later[1], "/me", "authorization", &renewed)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Last: it moves the clock past every token above.
    events_contract(&addrs, &clock).await;
}

/// The outside DPoP client (`tests/outside/dpop_client.py`, PyJWT and
/// `cryptography`) runs `phase` against the demo at `addr` with the
/// server's time; `None` when Python or PyJWT is not installed.
async fn outside_dpop_client(
    phase: &str,
    addr: SocketAddr,
    now: i64,
    state: &std::path::Path,
) -> Option<String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/outside/dpop_client.py");
    let args = [
        script.display().to_string(),
        phase.to_owned(),
        format!("http://{addr}"),
        now.to_string(),
        state.display().to_string(),
    ];
    python(&format!("the outside DPoP client ({phase})"), &args).await
}

/// "Sender-constrained sessions: DPoP": another language's client finds a
/// bound login, the token accepted only with its proof, every refusal with
/// its challenge, replays refused, and a renewal keeping the binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demos_bind_sessions_to_an_outside_clients_dpop_key() {
    for which in [Http::Axum, Http::Hyper] {
        let clock = ManualClock::new(SystemClock.now());
        let addr = start(which, &clock).await;
        let state =
            std::env::temp_dir().join(format!("tsj-dpop-{}-{which:?}.json", std::process::id()));
        let Some(out) = outside_dpop_client("contract", addr, clock.now(), &state).await else {
            return;
        };
        assert!(out.contains("contract kept"), "{which:?}: {out}");
        clock.advance(Duration::from_secs(2500));
        let out = outside_dpop_client("renew", addr, clock.now(), &state)
            .await
            .unwrap();
        assert!(out.contains("renewal kept the binding"), "{which:?}: {out}");
        let _ = std::fs::remove_file(&state);
    }
}

/// DPoP across a cluster of demos: a login bound on one instance is
/// accepted with its proof on every other, a proof used on one is refused
/// by all, and every instance gives the same nonce (derived from the
/// shared key, so each accepts the others').
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn dpop_cluster_contract(addrs: &[SocketAddr], clock: &ManualClock) {
    let client = http_client();
    let key = tower_sliding_jwt::dpop::DpopKey::generate().unwrap();
    let now = clock.now();
    let url = |addr: SocketAddr, path: &str| format!("http://{addr}{path}");
    let proof = key
        .proof("POST", &url(addrs[0], "/login"), None, None, now)
        .unwrap();
    let body = r#"{"username":"alice","password":"wonderland"}"#;
    let reply = call(
        &client,
        addrs[0],
        Method::POST,
        "/login",
        &[("content-type", "application/json"), ("dpop", &proof)],
        body,
    )
    .await;
    assert_eq!(reply.json()["token_type"], "DPoP");
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let nonce = reply.headers["dpop-nonce"].clone();
    let authorization = format!("DPoP {token}");
    for (i, addr) in addrs.iter().enumerate() {
        let proof = key
            .proof("GET", &url(*addr, "/me"), Some(&token), None, now)
            .unwrap();
        let headers = [
            ("authorization", authorization.as_str()),
            ("dpop", proof.as_str()),
        ];
        let reply = call(&client, *addr, Method::GET, "/me", &headers, "").await;
        assert_eq!(reply.status, StatusCode::OK, "instance {i}");
        // The same proof at the next instance: already used.
        let next = addrs[(i + 1) % addrs.len()];
        let headers = [
            ("authorization", authorization.as_str()),
            ("dpop", proof.as_str()),
        ];
        let replay = call(&client, next, Method::GET, "/me", &headers, "").await;
        assert_eq!(
            replay.status,
            StatusCode::UNAUTHORIZED,
            "replayed at the next instance"
        );
        let challenge = replay.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
            "{challenge}"
        );
        // Every instance gives the same nonce.
        let proof = key
            .proof("POST", &url(*addr, "/login"), None, None, now)
            .unwrap();
        let reply = call(
            &client,
            *addr,
            Method::POST,
            "/login",
            &[("content-type", "application/json"), ("dpop", &proof)],
            body,
        )
        .await;
        assert_eq!(reply.headers["dpop-nonce"], nonce, "instance {i}");
    }
}
