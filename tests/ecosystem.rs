//! Fitting the ecosystem (issue 13, points 3-6): problem+json rejections,
//! key formats as tools print them, `Arc` clocks and stores, owned-claims
//! revalidation hooks, login claims without placeholders, and `time`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    Algorithm, Claims, Clock, ConfigErrorKind, CookieSource, HttpResponder, IssuedToken, Key,
    ManualClock, MemoryStore, Realm, RegisteredClaims, Rejection, RejectionKind, Responder,
    RevocationStore, Session, SlidingJwtLayer, StandardClaims, SystemClock, Verdict,
};

const T0: i64 = 1_700_000_000;

fn key() -> Key {
    Key::hs256([7u8; 32]).unwrap()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

// --- 3. JSON rejection bodies -------------------------------------------

#[test]
fn error_codes_tell_missing_credentials_from_an_unavailable_store() {
    let code = |kind| Rejection::new(kind).error_code();
    assert_eq!(code(RejectionKind::MissingCredentials), None);
    assert_eq!(
        code(RejectionKind::StoreUnavailable),
        Some("temporarily_unavailable")
    );
    assert_eq!(code(RejectionKind::CrossSiteRequest), Some("access_denied"));
    assert_eq!(
        code(RejectionKind::DuplicateCredentials),
        Some("invalid_request")
    );
    assert_eq!(code(RejectionKind::Revoked), Some("invalid_token"));
    for &kind in RejectionKind::ALL {
        let rejection = Rejection::new(kind);
        // `None` exactly for "no credentials".
        assert_eq!(
            rejection.error_code().is_none(),
            kind == RejectionKind::MissingCredentials,
            "{kind:?}"
        );
        // Only the RFC 6750 codes go into a challenge.
        let challenge = rejection.challenge(None);
        let challenge = challenge.to_str().unwrap();
        match rejection.error_code() {
            Some(code @ ("invalid_request" | "invalid_token")) => {
                assert!(challenge.contains(code), "{kind:?}")
            }
            _ => assert_eq!(challenge, "Bearer", "{kind:?}"),
        }
    }
    assert_eq!(
        Rejection::new(RejectionKind::MissingCredentials).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Rejection::new(RejectionKind::StoreUnavailable).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

fn problem(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("the body is JSON")
}

#[test]
fn problem_json_bodies_are_generic_unless_the_reason_is_enabled() {
    let generic = HttpResponder::new()
        .with_realm(Realm::new("api").unwrap())
        .with_problem_json();
    let precise = HttpResponder::new()
        .with_problem_json()
        .with_reason_in_body();
    for &kind in RejectionKind::ALL {
        let rejection = Rejection::new(kind);
        let response: Response<String> = generic.respond(&rejection);
        assert_eq!(response.status(), rejection.status(), "{kind:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = problem(response.body());
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["status"], rejection.status().as_u16());
        assert_eq!(
            body["title"],
            rejection.status().canonical_reason().unwrap(),
            "{kind:?}"
        );
        assert_eq!(body["detail"], rejection.public_description());
        match rejection.error_code() {
            Some(code) => assert_eq!(body["error"], code),
            None => assert!(body.get("error").is_none()),
        }
        assert!(body.get("reason").is_none(), "{kind:?} leaks its reason");
        // The headers stay those of the empty-body responder.
        let empty: Response<()> = HttpResponder::new()
            .with_realm(Realm::new("api").unwrap())
            .respond(&rejection);
        assert_eq!(
            response.headers().get("www-authenticate"),
            empty.headers().get("www-authenticate")
        );
        assert_eq!(
            response.headers().get("retry-after"),
            empty.headers().get("retry-after")
        );

        let response: Response<String> = precise.respond(&rejection);
        let body = problem(response.body());
        assert_eq!(body["reason"], kind.as_str(), "{kind:?}");
    }
    let unavailable: Response<String> =
        generic.respond(&Rejection::new(RejectionKind::StoreUnavailable));
    assert_eq!(unavailable.headers()["retry-after"], "1");
    assert!(!unavailable.headers().contains_key("www-authenticate"));
    let missing: Response<String> =
        generic.respond(&Rejection::new(RejectionKind::MissingCredentials));
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"api\""
    );
}

async fn body_text<B>(body: B) -> String
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn problem_json_through_axum_hyper_and_string_services() {
    // axum: a Router accepts the layer, and the body is axum's.
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_responder(HttpResponder::new().with_problem_json())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(layer.clone());
    let response = app
        .oneshot(
            Request::get("/")
                .header("authorization", "Bearer not.a.token")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::MalformedToken)
    );
    let body = problem(&body_text(response.into_body()).await);
    assert_eq!(body["error"], "invalid_token");

    // hyper: `Full<Bytes>`.
    let hyper_like = layer.clone().layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello")))
    }));
    let response = hyper_like
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = problem(&body_text(response.into_body()).await);
    assert_eq!(body["title"], "Unauthorized");

    // String.
    let strings = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("hello")))
    }));
    let response = strings.oneshot(bearer("a.b")).await.unwrap();
    assert_eq!(problem(response.body())["status"], 401);
}

#[tokio::test]
async fn a_closure_responder_with_an_axum_body_fits_a_router() {
    let json = |rejection: &Rejection| {
        let mut response = Response::new(axum::body::Body::from(
            rejection.error_code().unwrap_or("unauthorized"),
        ));
        *response.status_mut() = rejection.status();
        response
    };
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_responder(json)
        .build()
        .unwrap();
    let app: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(layer);
    let response = app
        .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(response.into_body()).await, "unauthorized");
}

// --- 4. Key formats -------------------------------------------------------

/// Signs with `signer`, verifies with a layer built on `verifier`.
async fn signs_for(alg: Algorithm, signer: Key, verifier: Key) {
    let signing = SlidingJwtLayer::<_, StandardClaims>::builder(signer)
        .build()
        .unwrap();
    let verifying = SlidingJwtLayer::<_, StandardClaims>::builder(verifier)
        .build()
        .unwrap();
    let issued = signing
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    let claims = verifying.issuer().verify(issued.token()).await;
    assert!(claims.is_ok(), "{alg:?}: {claims:?}");
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_are_read() {
    for (alg, sec1, pkcs8) in [
        (Algorithm::ES256, "es256-sec1.pem", "es256-private.pem"),
        (Algorithm::ES384, "es384-sec1.pem", "es384-private.pem"),
        (Algorithm::RS256, "rsa-pkcs1.pem", "rsa-private.pem"),
        (Algorithm::PS256, "rsa-pkcs1.pem", "rsa-private.pem"),
    ] {
        let from_legacy = Key::from_pem(alg, read(sec1)).unwrap();
        let from_pkcs8 = Key::from_pem(alg, read(pkcs8)).unwrap();
        // The same key pair: each verifies what the other signs.
        signs_for(alg, from_legacy.clone(), from_pkcs8.clone()).await;
        signs_for(alg, from_pkcs8, from_legacy).await;
    }
}

#[tokio::test]
async fn keys_printed_by_the_openssl_binary_are_read() {
    let dir = std::env::temp_dir().join(format!("tsj-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !openssl(&["version"]) {
        eprintln!("no openssl binary: skipped");
        return;
    }
    let cases = [
        (
            Algorithm::ES256,
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "es256.pem",
            ],
            "es256.pem",
        ),
        (
            Algorithm::ES384,
            vec![
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "es384.pem",
            ],
            "es384.pem",
        ),
        (
            Algorithm::RS256,
            vec!["genrsa", "-traditional", "-out", "rsa.pem", "2048"],
            "rsa.pem",
        ),
    ];
    for (alg, args, file) in cases {
        assert!(openssl(&args), "openssl {args:?}");
        let pem = std::fs::read_to_string(dir.join(file)).unwrap();
        let key = Key::from_pem(alg, &pem).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        signs_for(alg, key.clone(), key).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_key_names_itself_the_format_found_and_the_fix() {
    let detail = |alg, pem: &str| {
        let error = Key::from_pem(alg, pem).unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::InvalidKey);
        let detail = error.detail().expect("a detail").to_owned();
        assert!(error.to_string().ends_with(&detail), "{error}");
        detail
    };
    let block = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");

    assert_eq!(
        detail(Algorithm::ES256, &read("es384-sec1.pem")),
        "ES256 private key: found a SEC1 \"EC PRIVATE KEY\" on P-384; ES256 needs P-256"
    );
    assert_eq!(
        detail(Algorithm::ES384, &read("es256-private.pem")),
        "ES384 private key: the PKCS#8 \"PRIVATE KEY\" is an EC key on P-256; ES384 needs P-384"
    );
    assert_eq!(
        detail(Algorithm::ES256, &read("rsa-pkcs1.pem")),
        "ES256 private key: found a PKCS#1 \"RSA PRIVATE KEY\"; ES256 needs an EC private key on P-256"
    );
    assert_eq!(
        detail(Algorithm::RS256, &read("es256-sec1.pem")),
        "RS256 private key: found a SEC1 \"EC PRIVATE KEY\"; RS256 needs an RSA private key"
    );
    assert_eq!(
        detail(Algorithm::RS256, &read("ed25519-private.pem")),
        "RS256 private key: the PKCS#8 \"PRIVATE KEY\" holds an Ed25519 key; RS256 needs an RSA private key"
    );
    assert_eq!(
        detail(Algorithm::EdDSA, &read("es256-public.pem")),
        "EdDSA private key: found a public key (\"PUBLIC KEY\"); signing needs the private key (use Key::public_pem for a verification-only key)"
    );
    let encrypted = detail(Algorithm::ES256, &block("ENCRYPTED PRIVATE KEY"));
    assert!(
        encrypted.contains("openssl pkcs8 -in key.pem -out key.pkcs8.pem"),
        "{encrypted}"
    );
    let unknown = detail(Algorithm::ES256, &block("SOMETHING ELSE"));
    assert!(
        unknown.contains("openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem"),
        "{unknown}"
    );
    assert!(
        !unknown.contains("SOMETHING"),
        "input is not echoed: {unknown}"
    );
    assert!(detail(Algorithm::ES256, &block("CERTIFICATE")).contains("holds no private key"));
    assert!(detail(Algorithm::ES256, "not a pem").contains("no PEM private key block"));
    assert!(detail(Algorithm::HS256, "x").contains("Key::hmac"));
    // Public keys say what is wrong too.
    let public = |alg, pem: &str| {
        Key::public_pem(alg, pem)
            .unwrap_err()
            .detail()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        public(Algorithm::RS256, &read("es256-public.pem")),
        "RS256 public key: the \"PUBLIC KEY\" does not hold an RSA public key"
    );
    assert!(public(Algorithm::ES256, &read("es256-sec1.pem")).contains("use Key::from_pem"));
    // A bundle: the private key is found after a certificate.
    let bundle = format!("{}{}", block("CERTIFICATE"), read("es256-private.pem"));
    assert!(Key::from_pem(Algorithm::ES256, bundle).is_ok());
    // A SEC1 key whose body is damaged.
    let damaged = read("es256-sec1.pem").replace("MHcCAQEE", "MHcCAQIE");
    assert!(Key::from_pem(Algorithm::ES256, damaged).is_err());
}

#[tokio::test]
async fn der_keys_in_the_other_forms_are_read_too() {
    use base64::Engine as _;
    let der = |pem: &str, label: &str| {
        let body: String = pem
            .split(&format!("-----BEGIN {label}-----"))
            .nth(1)
            .unwrap()
            .split("-----END")
            .next()
            .unwrap()
            .split_ascii_whitespace()
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let sec1 = der(&read("es256-sec1.pem"), "EC PRIVATE KEY");
    let pkcs8_rsa = der(&read("rsa-private.pem"), "PRIVATE KEY");
    let es = Key::from_der(Algorithm::ES256, &sec1).unwrap();
    signs_for(
        Algorithm::ES256,
        es,
        Key::from_pem(Algorithm::ES256, read("es256-private.pem")).unwrap(),
    )
    .await;
    let rs = Key::from_der(Algorithm::RS256, &pkcs8_rsa).unwrap();
    signs_for(
        Algorithm::RS256,
        rs,
        Key::from_pem(Algorithm::RS256, read("rsa-pkcs1.pem")).unwrap(),
    )
    .await;
    assert!(Key::from_der(Algorithm::ES384, &sec1).is_err());
}

// --- 5. Small ergonomics ------------------------------------------------

#[test]
fn clocks_behind_an_arc_plug_in() {
    let manual = ManualClock::new(T0);
    let chosen: Arc<dyn Clock> = if std::env::var_os("NEVER_SET_TSJ").is_some() {
        Arc::new(SystemClock)
    } else {
        Arc::new(manual.clone())
    };
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(chosen)
        .build()
        .unwrap();
    assert_eq!(layer.issuer().now(), T0);
    manual.advance(Duration::from_secs(5));
    assert_eq!(layer.issuer().now(), T0 + 5);

    let shared = Arc::new(manual.clone());
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(shared)
        .build()
        .unwrap();
    assert_eq!(layer.issuer().now(), T0 + 5);
    let boxed: Box<dyn Clock> = Box::new(manual);
    assert_eq!(boxed.now(), T0 + 5);
}

#[tokio::test]
async fn stores_behind_an_arc_plug_in_and_stay_shared() {
    let memory = MemoryStore::new();
    let chosen: Arc<dyn RevocationStore> = Arc::new(memory.clone());
    let clock = ManualClock::new(T0);
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(clock.clone())
        .with_revocation_store(chosen.clone())
        .build()
        .unwrap();
    let other = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(clock)
        .with_revocation_store(Arc::new(memory))
        .build()
        .unwrap();
    let issued = layer
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    assert!(other.issuer().verify(issued.token()).await.is_ok());
    let sid = issued.claims().registered.sid.clone().unwrap();
    layer.revoker().revoke_session(&sid).await.unwrap();
    // Both layers see the revocation: one store behind both.
    for layer in [&layer, &other] {
        assert_eq!(
            layer
                .issuer()
                .verify(issued.token())
                .await
                .unwrap_err()
                .kind(),
            RejectionKind::Revoked
        );
    }
}

/// A stand-in for a database pool.
#[derive(Clone, Default)]
struct Pool {
    queries: Arc<AtomicUsize>,
}

impl Pool {
    async fn is_active(&self, user: &str) -> bool {
        self.queries.fetch_add(1, Ordering::SeqCst);
        user != "mallory"
    }
}

#[tokio::test]
async fn an_owned_claims_hook_is_written_as_async_move() {
    let clock = ManualClock::new(T0);
    let pool = Pool::default();
    let queries = pool.queries.clone();
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(clock.clone())
        .with_revalidation_fn(move |claims| {
            let pool = pool.clone();
            async move {
                let user = claims.registered.sub.unwrap_or_default();
                if pool.is_active(&user).await {
                    Verdict::Approve
                } else {
                    Verdict::Reject
                }
            }
        })
        .build()
        .unwrap();
    let app = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let alice = layer
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    let mallory = layer
        .issuer()
        .issue(StandardClaims::new("mallory", Default::default()))
        .unwrap();
    clock.advance(Duration::from_secs(50 * 60));
    let response = app.clone().oneshot(bearer(alice.token())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("authorization"), "renewed");
    let response = app.oneshot(bearer(mallory.token())).await.unwrap();
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::SessionRejected)
    );
    assert_eq!(queries.load(Ordering::SeqCst), 2);
}

#[derive(Clone, Serialize, Deserialize)]
struct MyClaims {
    #[serde(flatten)]
    registered: RegisteredClaims,
    role: String,
}

impl Claims for MyClaims {
    fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }
    fn registered_mut(&mut self) -> &mut RegisteredClaims {
        &mut self.registered
    }
}

#[tokio::test]
async fn custom_login_claims_need_no_placeholders() {
    let layer = SlidingJwtLayer::<_, MyClaims>::builder(key())
        .with_clock(ManualClock::new(T0))
        .with_issuer("me")
        .build()
        .unwrap();
    let login = MyClaims {
        registered: RegisteredClaims::new("alice"),
        role: "admin".into(),
    };
    let issued = layer.issuer().issue(login).unwrap();
    let claims = layer.issuer().verify(issued.token()).await.unwrap();
    assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
    assert_eq!(claims.registered.exp, T0 + 3600);
    assert_eq!(claims.registered.auth_time, Some(T0));
    assert_eq!(claims.registered.iss.as_deref(), Some("me"));
    assert_eq!(claims.role, "admin");
}

// --- 6. `time` --------------------------------------------------------------

#[tokio::test]
async fn tokens_sessions_and_cookies_speak_time() {
    // 1994-11-06T08:49:37Z, the RFC 9110 example date.
    let t0 = 784_111_777;
    let clock = ManualClock::new(t0);
    let cookie = CookieSource::new("session").unwrap();
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(key())
        .with_clock(clock.clone())
        .with_token_source(cookie.clone())
        .build()
        .unwrap();
    let issued: IssuedToken<StandardClaims> = layer
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    assert_eq!(issued.issued_at().unix_timestamp(), t0);
    assert_eq!(issued.expiry().unix_timestamp(), t0 + 3600);
    assert_eq!(
        issued.expiry() - issued.issued_at(),
        time::Duration::hours(1)
    );
    assert_eq!(
        cookie.set_cookie_for(&issued).unwrap(),
        format!(
            "session={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=3600; Expires=Sun, 06 Nov 1994 09:49:37 GMT",
            issued.token()
        )
    );

    let app = layer.layer(service_fn(|request: Request<()>| async move {
        let session = request
            .extensions()
            .get::<Session<StandardClaims>>()
            .unwrap();
        let seen = format!(
            "{} {} {}",
            session.expiry().unix_timestamp(),
            session.issued_at().unwrap().unix_timestamp(),
            session.authenticated_at().unwrap().unix_timestamp(),
        );
        Ok::<_, Infallible>(Response::new(seen))
    }));
    // 50 minutes in: renewed through the cookie, with both attributes.
    clock.advance(Duration::from_secs(50 * 60));
    let request = Request::get("/")
        .header("cookie", format!("session={}", issued.token()))
        .body(())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.body(), &format!("{} {t0} {t0}", t0 + 3600));
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.ends_with("; Max-Age=3600; Expires=Sun, 06 Nov 1994 10:39:37 GMT"),
        "{set_cookie}"
    );
}
