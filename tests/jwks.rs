//! Several services: publishing the public keys as a JWKS, and verify-only
//! layers that accept another service's tokens.

mod common;

use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_sliding_jwt::{
    Algorithm, Clock, ConfigErrorKind, CookieSource, IssueErrorKind, Jwks, JwksService, Key,
    KeyRing, Keys, MemoryStore, RejectionKind, SlidingJwtLayer,
};

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn mixed_ring() -> KeyRing {
    KeyRing::new(es256().with_kid("es256").unwrap())
        .unwrap()
        .with_verification_key(
            Key::from_pem(Algorithm::ES384, ES384_PRIVATE)
                .unwrap()
                .with_kid("es384")
                .unwrap(),
        )
        .unwrap()
        .with_verification_key(eddsa().with_kid("ed").unwrap())
        .unwrap()
        .with_verification_key(rs256().with_kid("rsa").unwrap())
        .unwrap()
        .with_verification_key(hs256().with_kid("hmac").unwrap())
        .unwrap()
}

// ---- 1. Publishing -------------------------------------------------------

#[test]
fn jwks_holds_the_public_half_of_every_asymmetric_key_active_and_retired() {
    let jwks = mixed_ring().jwks();
    let doc = json(&jwks.to_json());
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "the HMAC key is left out: {doc}");
    let by_kid = |kid: &str| keys.iter().find(|k| k["kid"] == kid).unwrap().clone();
    let ec = by_kid("es256");
    assert_eq!(
        (&ec["kty"], &ec["crv"], &ec["alg"], &ec["use"]),
        (
            &"EC".into(),
            &"P-256".into(),
            &"ES256".into(),
            &"sig".into()
        )
    );
    assert_eq!(by_kid("es384")["crv"], "P-384");
    let ed = by_kid("ed");
    assert_eq!((&ed["kty"], &ed["crv"]), (&"OKP".into(), &"Ed25519".into()));
    let rsa = by_kid("rsa");
    assert_eq!((&rsa["kty"], &rsa["e"]), (&"RSA".into(), &"AQAB".into()));
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} in {key}");
        }
        assert_ne!(key["kty"], "oct");
    }
    // The public halves equal those read from the public PEMs.
    for (alg, public, kid) in [
        (Algorithm::ES256, ES256_PUBLIC, "es256"),
        (Algorithm::EdDSA, ED25519_PUBLIC, "ed"),
        (Algorithm::RS256, RSA_PUBLIC, "rsa"),
    ] {
        let from_pem = Key::public_pem(alg, public).unwrap().with_kid(kid).unwrap();
        let jwk = serde_json::to_value(from_pem.to_jwk().unwrap()).unwrap();
        assert_eq!(jwk, by_kid(kid), "{kid}");
    }
}

#[test]
fn an_hmac_secret_can_never_be_published() {
    let key = hs256();
    assert!(key.to_jwk().is_none());
    assert!(key.thumbprint().is_none());
    assert!(key.jwks().is_empty());
    assert_eq!(
        key.clone().with_thumbprint_kid().unwrap_err().kind(),
        ConfigErrorKind::NoPublicKey
    );
    // A ring of only HMAC keys publishes an empty set, and the service refuses it.
    let ring = KeyRing::new(hs256().with_kid("a").unwrap())
        .unwrap()
        .with_verification_key(Key::hmac(Algorithm::HS512, [9u8; 64]).unwrap())
        .unwrap();
    assert_eq!(
        json(&ring.jwks().to_json()),
        serde_json::json!({"keys": []})
    );
    assert_eq!(
        JwksService::new(&ring).unwrap_err().kind(),
        ConfigErrorKind::NoPublicKey
    );
    // And a JWKS with `oct` keys is never read back as keys.
    let doc = r#"{"keys":[{"kty":"oct","kid":"a","alg":"HS256","k":"dGVzdCBzZWNyZXQgdGhhdCBpcyBhdCBsZWFzdCAzMiBieXRlcyBsb25n"}]}"#;
    assert_eq!(
        KeyRing::from_jwks(doc).unwrap_err().kind(),
        ConfigErrorKind::InvalidJwks
    );
}

#[test]
fn thumbprint_kid_matches_an_independent_implementation_and_is_carried_by_tokens() {
    common::init();
    for key in [es256(), eddsa(), rs256()] {
        let key = key.with_thumbprint_kid().unwrap();
        let thumbprint = key.thumbprint().unwrap();
        assert_eq!(key.kid(), Some(thumbprint.as_str()));
        // jsonwebtoken's own RFC 7638 implementation agrees.
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(serde_json::to_value(key.to_jwk().unwrap()).unwrap()).unwrap();
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            thumbprint
        );
        // Tokens carry it, and a JWKS client verifies them with the published key.
        let alg = key.algorithm();
        let layer = SlidingJwtLayer::<_, Claimset>::builder(key)
            .with_clock(clock())
            .build()
            .unwrap();
        let token = layer.issuer().issue(user("alice", "admin")).unwrap();
        assert_eq!(header(token.token())["kid"], thumbprint);
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(token.token(), &decoding, &validation)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}

async fn serve(
    service: &JwksService,
    method: Method,
    if_none_match: Option<&str>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri("/.well-known/jwks.json");
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = service
        .clone()
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn jwks_service_caches_revalidates_and_refuses_other_methods() {
    let ring = mixed_ring();
    let service = JwksService::new(&ring).unwrap();
    let (status, headers, body) = serve(&service, Method::GET, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert_eq!(body, ring.jwks().to_json());
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    assert_eq!(etag.len(), 45, "quoted base64url SHA-256: {etag}");

    for tag in [etag.clone(), format!("\"other\", W/{etag}"), "*".to_owned()] {
        let (status, headers, body) = serve(&service, Method::GET, Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{tag}");
        assert_eq!(headers["etag"], etag.as_str());
        assert_eq!(headers["cache-control"], "public, max-age=300");
        assert!(body.is_empty());
    }
    let (status, _, body) = serve(&service, Method::GET, Some("\"stale\"")).await;
    assert_eq!((status, body.is_empty()), (StatusCode::OK, false));

    let (status, headers, body) = serve(&service, Method::HEAD, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());

    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let (status, headers, _) = serve(&service, method, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, HEAD");
    }

    let short = service.with_max_age(std::time::Duration::from_secs(60));
    let (_, headers, _) = serve(&short, Method::GET, None).await;
    assert_eq!(headers["cache-control"], "public, max-age=60");
    // The same keys give the same document and the same tag.
    assert_eq!(
        JwksService::new(&mixed_ring()).unwrap().etag(),
        etag.as_str()
    );
}

#[test]
fn a_published_jwks_reads_back_into_the_same_verification_keys() {
    let jwks = mixed_ring().jwks();
    let ring = KeyRing::from_jwks(jwks.to_json()).unwrap();
    assert!(ring.signing_key().is_none());
    assert_eq!(ring.keys().len(), 4);
    assert!(ring.keys().iter().all(|k| !k.can_sign()));
    assert_eq!(ring.jwks(), jwks);
    assert_eq!(Jwks::from_keys(ring.keys()), jwks);
}

// ---- 2. Verify-only layers ----------------------------------------------

/// Service A: issues, verifies and slides, with an ES256 key named by its thumbprint.
fn service_a(
    clock: &tower_sliding_jwt::ManualClock,
    keys: KeyRing,
    store: &MemoryStore,
) -> SlidingJwtLayer<KeyRing, Claimset> {
    SlidingJwtLayer::builder(keys)
        .with_issuer("login")
        .with_audience("api")
        .with_clock(clock.clone())
        .with_revocation_store(store.clone())
        .with_token_source(tower_sliding_jwt::BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
        .build()
        .unwrap()
}

/// Service B: verify-only, from A's published JWKS.
fn service_b(
    clock: &tower_sliding_jwt::ManualClock,
    published: &[u8],
    store: &MemoryStore,
) -> SlidingJwtLayer<KeyRing, Claimset> {
    SlidingJwtLayer::verifier(KeyRing::from_jwks(published).unwrap())
        .with_issuer("login")
        .with_audience("api")
        .with_clock(clock.clone())
        .with_revocation_store(store.clone())
        .with_token_source(tower_sliding_jwt::BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
        .build()
        .unwrap()
}

async fn published(keys: &KeyRing) -> Vec<u8> {
    let (status, _, body) = serve(&JwksService::new(keys).unwrap(), Method::GET, None).await;
    assert_eq!(status, StatusCode::OK);
    body
}

fn cookie_get(token: &str) -> Request<()> {
    Request::get("/")
        .header("cookie", format!("session={token}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn verify_only_service_accepts_the_issuers_tokens_and_renewals_and_never_sends_one_back() {
    let clock = clock();
    let store = MemoryStore::new();
    let keys = KeyRing::new(es256().with_thumbprint_kid().unwrap()).unwrap();
    let a_layer = service_a(&clock, keys.clone(), &store);
    let b_layer = service_b(&clock, &published(&keys).await, &store);
    let (a, b) = (app(&a_layer), app(&b_layer));

    let login = a_layer.issuer().issue(user("alice", "admin")).unwrap();
    let response = send(&b, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    let claims: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["role"], "admin");

    // 50 minutes on: A slides the session; B accepts the old token and the
    // renewal, and sends nothing back, by header or by cookie.
    clock.advance(minutes(50));
    let response = send(&a, get(login.token())).await;
    let renewal = renewed(&response).expect("A renews");
    for request in [get(login.token()), cookie_get(login.token()), get(&renewal)] {
        let response = send(&b, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("authorization").is_none());
        assert!(response.headers().get("set-cookie").is_none());
        assert!(response.headers().get("cache-control").is_none());
        assert!(
            response
                .extensions()
                .get::<tower_sliding_jwt::Renewed>()
                .is_none()
        );
    }
    // Even in its very last second, with a throttle long past: no renewal.
    clock.advance(minutes(9) + std::time::Duration::from_secs(59));
    let response = send(&b, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed(&response).is_none());

    // The renewal keeps working on B after the login token expired.
    clock.advance(minutes(30));
    assert_eq!(
        send(&b, get(login.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&b, get(&renewal)).await.status(), StatusCode::OK);

    // A logout on A is honoured by B (shared store).
    let session = a_layer.issuer().verify(&renewal).await.unwrap();
    a_layer
        .revoker()
        .revoke_session(session.registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    let response = send(&b, get(&renewal)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
}

#[tokio::test]
async fn verify_only_layer_cannot_issue_and_refuses_what_a_verifier_should() {
    let clock = clock();
    let store = MemoryStore::new();
    let keys = KeyRing::new(es256().with_kid("a").unwrap()).unwrap();
    let b_layer = service_b(&clock, &published(&keys).await, &store);
    let error = b_layer
        .issuer()
        .issue(user("mallory", "admin"))
        .unwrap_err();
    assert_eq!(error.kind(), IssueErrorKind::NoSigningKey);

    let b = app(&b_layer);
    // Another key with the same kid, an unknown kid, HS256 with the public key as secret.
    let other = KeyRing::new(
        Key::from_pem(Algorithm::ES256, ES256_OTHER_PRIVATE)
            .unwrap()
            .with_kid("a")
            .unwrap(),
    )
    .unwrap();
    let forged = service_a(&clock, other, &store)
        .issuer()
        .issue(user("mallory", "admin"))
        .unwrap();
    assert_eq!(
        rejection(&send(&b, get(forged.token())).await),
        Some(RejectionKind::InvalidSignature)
    );
    let unknown = service_a(
        &clock,
        KeyRing::new(es256().with_kid("b").unwrap()).unwrap(),
        &store,
    )
    .issuer()
    .issue(user("mallory", "admin"))
    .unwrap();
    assert_eq!(
        rejection(&send(&b, get(unknown.token())).await),
        Some(RejectionKind::UnknownKey)
    );
    let now = clock.now();
    let hmac = forge(
        r#"{"alg":"HS256","typ":"JWT","kid":"a"}"#,
        &claims_json(now, now + 600, now),
        &jsonwebtoken::EncodingKey::from_secret(ES256_PUBLIC.as_bytes()),
        Algorithm::HS256,
    );
    assert_eq!(
        rejection(&send(&b, get(&hmac)).await),
        Some(RejectionKind::AlgorithmNotAllowed)
    );
    assert_eq!(
        send(&b, anonymous()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn verifier_is_built_from_public_keys_only_and_the_full_builder_needs_a_signing_key() {
    let refused = SlidingJwtLayer::<_, Claimset>::verifier(es256())
        .build()
        .unwrap_err();
    assert_eq!(refused.kind(), ConfigErrorKind::UnexpectedSigningKey);
    let refused = SlidingJwtLayer::<_, Claimset>::verifier(KeyRing::new(es256()).unwrap())
        .build()
        .unwrap_err();
    assert_eq!(refused.kind(), ConfigErrorKind::UnexpectedSigningKey);
    assert!(
        SlidingJwtLayer::<_, Claimset>::verifier(es256().verifying_half())
            .build()
            .is_ok()
    );
    let public = Key::public_pem(Algorithm::ES256, ES256_PUBLIC).unwrap();
    assert!(
        SlidingJwtLayer::<_, Claimset>::verifier(public.clone())
            .build()
            .is_ok()
    );
    let ring = KeyRing::verifying([public.clone(), es256().with_kid("x").unwrap()]).unwrap();
    assert!(ring.signing_key().is_none(), "private parts are dropped");
    assert_eq!(
        SlidingJwtLayer::<_, Claimset>::builder(ring)
            .build()
            .unwrap_err()
            .kind(),
        ConfigErrorKind::NotASigningKey
    );
    assert_eq!(
        KeyRing::verifying([]).unwrap_err().kind(),
        ConfigErrorKind::NoPublicKey
    );
    assert_eq!(
        KeyRing::verifying([public.clone(), public])
            .unwrap_err()
            .kind(),
        ConfigErrorKind::DuplicateKeyId
    );
}

#[tokio::test]
async fn rotation_publish_the_new_key_as_retired_first_then_make_it_active() {
    let clock = clock();
    let store = MemoryStore::new();
    let old = es256().with_thumbprint_kid().unwrap();
    let new = eddsa().with_thumbprint_kid().unwrap();
    // Step 1: the new key is published (retired) while the old one signs.
    let step1 = KeyRing::new(old.clone())
        .unwrap()
        .with_verification_key(new.clone())
        .unwrap();
    let a1 = service_a(&clock, step1.clone(), &store);
    let b_layer = service_b(&clock, &published(&step1).await, &store);
    let b = app(&b_layer);
    let login = a1.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(header(login.token())["kid"], old.kid().unwrap());
    assert_eq!(send(&b, get(login.token())).await.status(), StatusCode::OK);

    // Step 2, once every verifier has the new key: it becomes active. A's
    // renewals move to it, and B, which never refetched, accepts them.
    let step2 = KeyRing::new(new.clone())
        .unwrap()
        .with_verification_key(old.clone())
        .unwrap();
    let a2 = service_a(&clock, step2, &store);
    clock.advance(minutes(50));
    let renewal = renewed(&send(&app(&a2), get(login.token())).await).unwrap();
    assert_eq!(header(&renewal)["kid"], new.kid().unwrap());
    assert_eq!(header(&renewal)["alg"], "EdDSA");
    assert_eq!(send(&b, get(&renewal)).await.status(), StatusCode::OK);
    assert_eq!(send(&b, get(login.token())).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn renew_with_on_a_verify_only_layer_sends_nothing_back() {
    use tower::Layer;
    let clock = clock();
    let store = MemoryStore::new();
    let keys = KeyRing::new(es256().with_kid("a").unwrap()).unwrap();
    let a_layer = service_a(&clock, keys.clone(), &store);
    let b_layer = service_b(&clock, &published(&keys).await, &store);
    let handler = tower::service_fn(|request: Request<()>| async move {
        let session = request
            .extensions()
            .get::<tower_sliding_jwt::Session<Claimset>>()
            .unwrap();
        session.renew_with(user("alice", "root"));
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let b = b_layer.layer(handler);
    let login = a_layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(50));
    let response = b.oneshot(get(login.token())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("authorization").is_none());
    assert!(response.headers().get("cache-control").is_none());
}
