//! DPoP (RFC 9449): bound logins, tokens accepted only with a proof by
//! their key, every refusal with its challenge, replays, nonces, renewals
//! keeping the binding, and the client half keeping a bound session alive
//! over HTTP and gRPC.

mod common;
#[path = "common/dpop.rs"]
mod dpop_cluster;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use http::{HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::dpop::{Dpop, DpopKey};
use tower_sliding_jwt::{
    ClientLayer, Confirmation, GrpcResponder, IssueErrorKind, Key, KeyRing, ManualClock,
    RejectionKind, SlidingJwtLayer, TokenStore,
};

const HOST: &str = "api.test";
const URL: &str = "http://api.test/";

fn layer_with(clock: &ManualClock, dpop: Dpop) -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_dpop(dpop)
        .build()
        .unwrap()
}

/// `GET /` on `api.test` with `authorization` and `dpop` as given.
fn request(authorization: Option<String>, proofs: &[&str]) -> Request<()> {
    let mut builder = Request::get("/").header("host", HOST);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    for proof in proofs {
        builder = builder.header("dpop", *proof);
    }
    builder.body(()).unwrap()
}

fn dpop_get(token: &str, proof: &str) -> Request<()> {
    request(Some(format!("DPoP {token}")), &[proof])
}

async fn bound_login(layer: &SlidingJwtLayer<Key, Claimset>, key: &DpopKey, now: i64) -> String {
    let proof = key
        .proof("POST", "http://api.test/login", None, None, now)
        .unwrap();
    let parts = dpop_cluster::login_parts(&proof);
    let issued = layer
        .issuer()
        .login(&parts, user("alice", "admin"))
        .await
        .unwrap();
    assert_eq!(
        issued.claims().registered.cnf,
        Some(Confirmation::jkt(key.thumbprint()))
    );
    issued.token().to_owned()
}

fn dpop_challenge(response: &Response<String>) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_bound_token_is_accepted_only_with_a_proof_by_its_key() {
    let clock = clock();
    let layer = layer_with(&clock, Dpop::allowed());
    let app = app(&layer);
    let key = DpopKey::generate().unwrap();
    let token = bound_login(&layer, &key, T0).await;

    let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
    let ok = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // The same proof again: a replay.
    let replay = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(rejection(&replay), Some(RejectionKind::InvalidDpopProof));
    let challenges = dpop_challenge(&replay);
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].starts_with("DPoP error=\"invalid_dpop_proof\", algs=\"ES256"));

    // No proof; a proof by another key; as a bearer token; from no scheme.
    let none = send(&app, request(Some(format!("DPoP {token}")), &[])).await;
    assert_eq!(rejection(&none), Some(RejectionKind::InvalidDpopProof));
    let thief = DpopKey::generate().unwrap();
    let stolen = thief.proof("GET", URL, Some(&token), None, T0).unwrap();
    let stolen = send(&app, dpop_get(&token, &stolen)).await;
    assert_eq!(rejection(&stolen), Some(RejectionKind::InvalidDpopProof));
    let fresh = key.proof("GET", URL, Some(&token), None, T0).unwrap();
    let bearer = send(&app, request(Some(format!("Bearer {token}")), &[&fresh])).await;
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection(&bearer), Some(RejectionKind::SchemeMismatch));
    let challenges = dpop_challenge(&bearer);
    assert_eq!(challenges[0], INVALID_TOKEN);
    assert!(challenges[1].starts_with("DPoP error=\"invalid_token\", algs="));

    // An unbound (bearer) login: accepted as Bearer, refused under DPoP.
    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
    let plain = layer
        .issuer()
        .login(&parts, user("bob", "user"))
        .await
        .unwrap();
    assert_eq!(plain.claims().registered.cnf, None);
    let plain = plain.token().to_owned();
    assert_eq!(send(&app, get(&plain)).await.status(), StatusCode::OK);
    let proof = key.proof("GET", URL, Some(&plain), None, T0).unwrap();
    let under_dpop = send(&app, dpop_get(&plain, &proof)).await;
    assert_eq!(rejection(&under_dpop), Some(RejectionKind::SchemeMismatch));

    // No credentials at all: both challenges, without an error.
    let missing = send(&app, request(None, &[])).await;
    let challenges = dpop_challenge(&missing);
    assert_eq!(challenges[0], "Bearer");
    assert!(challenges[1].starts_with("DPoP algs="));
}

/// A proof signed by the ES256 test key with exactly this header and payload.
fn es256_proof(header: &str, payload: &str) -> String {
    forge(
        header,
        payload,
        &EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap(),
        Algorithm::ES256,
    )
}

fn es256_jwk() -> String {
    let key = Key::from_pem(Algorithm::ES256, ES256_PRIVATE).unwrap();
    let jwk = serde_json::to_value(key.to_jwk().unwrap()).unwrap();
    format!(
        r#"{{"kty":"EC","crv":"P-256","x":{},"y":{}}}"#,
        jwk["x"], jwk["y"]
    )
}

#[tokio::test]
async fn hostile_proofs_are_clear_401s() {
    common::init();
    let clock = clock();
    let layer = layer_with(&clock, Dpop::allowed());
    let app = app(&layer);
    let es256 = DpopKey::from_key(Key::from_pem(Algorithm::ES256, ES256_PRIVATE).unwrap()).unwrap();
    let mut claims = user("alice", "admin");
    claims.registered.cnf = Some(Confirmation::jkt(es256.thumbprint()));
    let token = layer.issuer().issue(claims).unwrap().token().to_owned();
    let ath = b64(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let jwk = es256_jwk();
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#);
    let payload = |htm: &str, htu: &str, iat: i64, jti: &str| {
        format!(r#"{{"jti":"{jti}","htm":"{htm}","htu":"{htu}","iat":{iat},"ath":"{ath}"}}"#)
    };
    // The well-formed proof passes: every case below changes one thing.
    let good = es256_proof(&header, &payload("GET", URL, T0, "good"));
    assert_eq!(
        send(&app, dpop_get(&token, &good)).await.status(),
        StatusCode::OK
    );

    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let mut bad: Vec<(&str, String)> = vec![
        (
            "huge",
            format!("{}.{}.{}", b64(&header), "A".repeat(100_000), "A"),
        ),
        (
            "nested",
            es256_proof(
                &format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"x":{nested}}}"#),
                &payload("GET", URL, T0, "n"),
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(format!(r#"{{"typ":"dpop+jwt","alg":"none","jwk":{jwk}}}"#)),
                b64(payload("GET", URL, T0, "none"))
            ),
        ),
        (
            "HMAC",
            forge(
                &format!(r#"{{"typ":"dpop+jwt","alg":"HS256","jwk":{jwk}}}"#),
                &payload("GET", URL, T0, "hs"),
                &EncodingKey::from_secret(SECRET),
                Algorithm::HS256,
            ),
        ),
        (
            "private jwk",
            es256_proof(
                &header.replace(r#""kty":"EC""#, r#""kty":"EC","d":"AAAA""#),
                &payload("GET", URL, T0, "d"),
            ),
        ),
        (
            "mismatched kid",
            es256_proof(
                &header.replace(r#""alg":"ES256""#, r#""alg":"ES256","kid":"other""#),
                &payload("GET", URL, T0, "kid"),
            ),
        ),
        (
            "jku",
            es256_proof(
                &header.replace(r#""alg":"ES256""#, r#""alg":"ES256","jku":"https://evil/""#),
                &payload("GET", URL, T0, "jku"),
            ),
        ),
        (
            "typ",
            es256_proof(
                &header.replace("dpop+jwt", "JWT"),
                &payload("GET", URL, T0, "typ"),
            ),
        ),
        (
            "wrong curve",
            es256_proof(
                &header.replace("P-256", "P-384"),
                &payload("GET", URL, T0, "crv"),
            ),
        ),
        (
            "future iat",
            es256_proof(&header, &payload("GET", URL, T0 + 6, "f")),
        ),
        (
            "old iat",
            es256_proof(&header, &payload("GET", URL, T0 - 61, "o")),
        ),
        (
            "method",
            es256_proof(&header, &payload("POST", URL, T0, "m")),
        ),
        (
            "host",
            es256_proof(&header, &payload("GET", "http://evil.test/", T0, "h")),
        ),
        (
            "port",
            es256_proof(&header, &payload("GET", "http://api.test:8080/", T0, "p")),
        ),
        (
            "scheme",
            es256_proof(&header, &payload("GET", "https://api.test/", T0, "s")),
        ),
        (
            "path",
            es256_proof(&header, &payload("GET", "http://api.test/admin", T0, "pa")),
        ),
        (
            "jti of 1 MiB",
            es256_proof(&header, &payload("GET", URL, T0, &"j".repeat(1 << 20))),
        ),
        (
            "long jti",
            es256_proof(&header, &payload("GET", URL, T0, &"j".repeat(300))),
        ),
        (
            "ath",
            es256_proof(
                &header,
                &payload("GET", URL, T0, "ath").replace(&ath, &b64([0u8; 32])),
            ),
        ),
        (
            "no ath",
            es256_proof(
                &header,
                &format!(r#"{{"jti":"x","htm":"GET","htu":"{URL}","iat":{T0}}}"#),
            ),
        ),
        (
            "duplicate member",
            es256_proof(
                &header,
                &format!(
                    r#"{{"jti":"a","jti":"b","htm":"GET","htu":"{URL}","iat":{T0},"ath":"{ath}"}}"#
                ),
            ),
        ),
        ("not a JWS", "not-a-proof".to_owned()),
    ];
    // A signature by another key than the jwk's.
    let other = forge(
        &header,
        &payload("GET", URL, T0, "other"),
        &EncodingKey::from_ec_pem(ES256_OTHER_PRIVATE.as_bytes()).unwrap(),
        Algorithm::ES256,
    );
    bad.push(("foreign signature", other));
    for (what, proof) in &bad {
        let response = send(&app, dpop_get(&token, proof)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            rejection(&response),
            Some(RejectionKind::InvalidDpopProof),
            "{what}"
        );
        assert!(
            dpop_challenge(&response)[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
            "{what}"
        );
    }
    // Two DPoP headers, each good on its own.
    let one = es256_proof(&header, &payload("GET", URL, T0, "one"));
    let two = es256_proof(&header, &payload("GET", URL, T0, "two"));
    let response = send(&app, request(Some(format!("DPoP {token}")), &[&one, &two])).await;
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidDpopProof));
    // A duplicate Authorization stays a malformed request.
    let response = send(
        &app,
        Request::get("/")
            .header("host", HOST)
            .header("authorization", format!("DPoP {token}"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", &one)
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Other algorithms the layer accepts: ES384, EdDSA, RSA.
    for (alg, pem) in [
        (Algorithm::ES384, ES384_PRIVATE),
        (Algorithm::EdDSA, ED25519_PRIVATE),
        (Algorithm::RS256, RSA_PRIVATE),
        (Algorithm::PS256, RSA_PRIVATE),
    ] {
        let key = DpopKey::from_key(Key::from_pem(alg, pem).unwrap()).unwrap();
        let mut claims = user("alice", "admin");
        claims.registered.cnf = Some(Confirmation::jkt(key.thumbprint()));
        let token = layer.issuer().issue(claims).unwrap().token().to_owned();
        let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
        let response = send(&app, dpop_get(&token, &proof)).await;
        assert_eq!(response.status(), StatusCode::OK, "{alg:?}");
    }
}

#[tokio::test]
async fn renewals_keep_the_binding_and_come_back_under_dpop() {
    let clock = clock();
    let layer = layer_with(&clock, Dpop::allowed());
    let app = app(&layer);
    let key = DpopKey::generate().unwrap();
    let token = bound_login(&layer, &key, T0).await;
    clock.advance(Duration::from_secs(2500));
    let now = T0 + 2500;
    let proof = key.proof("GET", URL, Some(&token), None, now).unwrap();
    let response = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let value = response.headers()["authorization"].to_str().unwrap();
    let renewed = value.strip_prefix("DPoP ").expect("renewed under DPoP");
    assert_eq!(payload(renewed)["cnf"], payload(&token)["cnf"]);
    assert_ne!(renewed, token);
    // The renewal needs its proof too, and works with one.
    let bearer = send(&app, get(renewed)).await;
    assert_eq!(rejection(&bearer), Some(RejectionKind::SchemeMismatch));
    clock.advance(Duration::from_secs(1500));
    let proof = key
        .proof("GET", URL, Some(renewed), None, now + 1500)
        .unwrap();
    assert_eq!(
        send(&app, dpop_get(renewed, &proof)).await.status(),
        StatusCode::OK
    );
    let old = key
        .proof("GET", URL, Some(&token), None, now + 1500)
        .unwrap();
    assert_eq!(
        rejection(&send(&app, dpop_get(&token, &old)).await),
        Some(RejectionKind::Expired),
        "the first token expired: only the renewal carries the session on"
    );
}

#[tokio::test]
async fn required_mode_refuses_bearer_tokens_and_logins_without_a_proof() {
    let clock = clock();
    let layer = layer_with(&clock, Dpop::required());
    let app = app(&layer);
    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
    let refused = layer.issuer().login(&parts, user("bob", "user")).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        IssueErrorKind::InvalidDpopProof
    );
    let bearer = layer.issuer().issue(user("bob", "user")).unwrap();
    let response = send(&app, get(bearer.token())).await;
    assert_eq!(rejection(&response), Some(RejectionKind::SchemeMismatch));
    let key = DpopKey::generate().unwrap();
    let token = bound_login(&layer, &key, T0).await;
    let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
    assert_eq!(
        send(&app, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
    // A login proof replayed, or for another URL, is refused.
    let proof = key
        .proof("POST", "http://api.test/elsewhere", None, None, T0)
        .unwrap();
    let parts = dpop_cluster::login_parts(&proof);
    let refused = layer.issuer().login(&parts, user("bob", "user")).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        IssueErrorKind::InvalidDpopProof
    );
}

#[tokio::test]
async fn nonces_are_demanded_shared_by_secret_and_sent_ahead() {
    let clock = clock();
    let dpop = || {
        Dpop::allowed()
            .with_nonce_secret(SECRET)
            .with_required_nonce(true)
    };
    let layer = layer_with(&clock, dpop());
    let other = SlidingJwtLayer::<Key, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_dpop(dpop())
        .build()
        .unwrap();
    let (app, other_app) = (common::app(&layer), common::app(&other));
    let key = DpopKey::generate().unwrap();
    // The login needs the nonce too.
    let proof = key
        .proof("POST", "http://api.test/login", None, None, T0)
        .unwrap();
    let parts = dpop_cluster::login_parts(&proof);
    let refused = layer.issuer().login(&parts, user("alice", "admin")).await;
    assert_eq!(refused.unwrap_err().kind(), IssueErrorKind::UseDpopNonce);
    let nonce = layer.issuer().dpop_nonce().unwrap();
    let nonce = nonce.to_str().unwrap();
    let proof = key
        .proof("POST", "http://api.test/login", None, Some(nonce), T0)
        .unwrap();
    let parts = dpop_cluster::login_parts(&proof);
    let token = layer
        .issuer()
        .login(&parts, user("alice", "admin"))
        .await
        .unwrap()
        .token()
        .to_owned();

    let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
    let response = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::UseDpopNonce));
    assert!(dpop_challenge(&response)[0].starts_with("DPoP error=\"use_dpop_nonce\""));
    let given = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    // The other instance accepts this instance's nonce, and sends the next.
    let proof = key
        .proof("GET", URL, Some(&token), Some(&given), T0)
        .unwrap();
    let response = send(&other_app, dpop_get(&token, &proof)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("dpop-nonce"));
    // A forged or stale nonce is refused.
    let proof = key
        .proof("GET", URL, Some(&token), Some("AAAA"), T0)
        .unwrap();
    let response = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::UseDpopNonce));
    clock.advance(Duration::from_secs(1200));
    let proof = key
        .proof("GET", URL, Some(&token), Some(&given), T0 + 1200)
        .unwrap();
    let response = send(&app, dpop_get(&token, &proof)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::UseDpopNonce));
}

#[tokio::test]
async fn a_full_replay_cache_demands_a_nonce_and_never_accepts_unremembered() {
    let clock = clock();
    let layer = layer_with(&clock, Dpop::allowed().with_replay_capacity(16));
    let app = app(&layer);
    let key = DpopKey::generate().unwrap();
    let token = bound_login(&layer, &key, T0).await;
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..64 {
        let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
        let response = send(&app, dpop_get(&token, &proof)).await;
        match rejection(&response) {
            None => accepted += 1,
            Some(RejectionKind::UseDpopNonce) => {
                refused += 1;
                assert!(response.headers().contains_key("dpop-nonce"));
            }
            other => panic!("{other:?}"),
        }
    }
    // 16 shards of one proof each (the login's proof took one place).
    assert!(accepted <= 16, "{accepted} accepted");
    assert_eq!(accepted + refused, 64);
    // Once the proofs are too old to be accepted, room frees up.
    clock.advance(Duration::from_secs(200));
    let proof = key.proof("GET", URL, Some(&token), None, T0 + 200).unwrap();
    assert_eq!(
        send(&app, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn layers_without_dpop_refuse_bound_tokens() {
    let clock = clock();
    let with = layer_with(&clock, Dpop::allowed());
    let key = DpopKey::generate().unwrap();
    let token = bound_login(&with, &key, T0).await;
    let without = SlidingJwtLayer::<Key, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let response = send(&app(&without), get(&token)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::SchemeMismatch));
    let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
    let response = send(&app(&without), dpop_get(&token, &proof)).await;
    assert_eq!(
        rejection(&response),
        Some(RejectionKind::MissingCredentials)
    );
    let verifier = SlidingJwtLayer::<_, Claimset>::verifier(KeyRing::verifying([hs256()]).unwrap())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let response = send(&app(&verifier), get(&token)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::SchemeMismatch));
    let verified = with.issuer().verify(&token).await;
    assert_eq!(verified.unwrap_err().kind(), RejectionKind::SchemeMismatch);
    // A layer with DPoP built verify-only checks the proof like any other.
    let verifier = SlidingJwtLayer::<_, Claimset>::verifier(KeyRing::verifying([hs256()]).unwrap())
        .with_clock(clock.clone())
        .with_dpop(Dpop::required())
        .build()
        .unwrap();
    let response = send(&app(&verifier), dpop_get(&token, &proof)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The demo's shape in process: `POST /login` binds with the request's
/// proof, everything else is the echo handler; a handler that is not a
/// route answers 404.
fn server(
    layer: &SlidingJwtLayer<Key, Claimset>,
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    let issuer = layer.issuer();
    let inner = service_fn(move |request: Request<String>| {
        let issuer = issuer.clone();
        async move {
            let (parts, _) = request.into_parts();
            if parts.uri.path() == "/login" {
                let mut response = Response::new(String::new());
                match issuer.login(&parts, user("alice", "admin")).await {
                    Ok(issued) => *response.body_mut() = issued.token().to_owned(),
                    Err(error) => {
                        *response.status_mut() = StatusCode::BAD_REQUEST;
                        *response.body_mut() = format!("{:?}", error.kind());
                        if let Some(nonce) = issuer.dpop_nonce() {
                            response.headers_mut().insert("dpop-nonce", nonce);
                        }
                    }
                }
                return Ok(response);
            }
            Ok::<_, Infallible>(Response::new("ok".to_owned()))
        }
    });
    layer.layer(inner)
}

#[tokio::test]
async fn the_client_layer_keeps_a_bound_session_alive_with_nonces() {
    let clock = clock();
    let dpop = Dpop::allowed()
        .with_nonce_secret(SECRET)
        .with_required_nonce(true);
    let layer = SlidingJwtLayer::<Key, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_dpop(dpop)
        .with_anonymous(true)
        .build()
        .unwrap();
    let tokens = TokenStore::empty().with_clock(clock.clone());
    let client = ClientLayer::for_origin("http://api.test", tokens.clone())
        .unwrap()
        .with_dpop(DpopKey::generate().unwrap());
    let retry = client.nonce_retry();
    let service = retry.layer(client.layer(server(&layer)));
    let call = |path: &str, method: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://api.test{path}"))
            .body(String::new())
            .unwrap()
    };
    // The login's first proof has no nonce: the retry carries the one given.
    let login = service
        .clone()
        .oneshot(call("/login", "POST"))
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "{}", login.body());
    assert!(tokens.replace(login.body()));
    let first = tokens.token().unwrap();
    assert!(payload(&first)["cnf"]["jkt"].is_string());
    // Requests every 20 minutes for 3 hours: the session slides on.
    for step in 1..=9 {
        clock.advance(Duration::from_secs(1200));
        let response = service.clone().oneshot(call("/me", "GET")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "step {step}");
    }
    let last = tokens.token().unwrap();
    assert_ne!(last, first, "renewals were adopted");
    assert_eq!(payload(&last)["cnf"], payload(&first)["cnf"]);
    // A renewal bound to another key is never adopted.
    clock.advance(Duration::from_secs(100));
    let mut claims = user("alice", "admin");
    claims.registered.sid = payload(&last)["sid"].as_str().map(str::to_owned);
    claims.registered.cnf = Some(Confirmation::jkt("another-key"));
    let foreign = layer.issuer().issue(claims).unwrap();
    assert!(!tokens.offer(foreign.token()));
}

#[tokio::test]
async fn grpc_clients_send_proofs_for_the_configured_origin() {
    let clock = clock();
    let layer = SlidingJwtLayer::<Key, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_responder(GrpcResponder)
        .with_dpop(Dpop::required().with_public_url("http://grpc.test"))
        .build()
        .unwrap();
    let key = DpopKey::generate().unwrap();
    let mut claims = user("alice", "admin");
    claims.registered.cnf = Some(Confirmation::jkt(key.thumbprint()));
    let issued = layer.issuer().issue(claims).unwrap();
    let tokens = TokenStore::new(issued.token()).with_clock(clock.clone());
    let grpc = layer.layer(service_fn(|_: Request<()>| async {
        let mut response = Response::new(String::new());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("0"));
        Ok::<_, Infallible>(response)
    }));
    let unbound = ClientLayer::for_channel(tokens.clone())
        .with_dpop(key.clone())
        .layer(grpc.clone());
    let call = || {
        Request::post("/helloworld.Greeter/SayHello")
            .body(())
            .unwrap()
    };
    // Without the origin, the proof cannot name the URL: refused.
    let response = unbound.oneshot(call()).await.unwrap();
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidDpopProof));
    assert_eq!(response.headers()["grpc-status"], "16");
    let client = ClientLayer::for_channel(tokens.clone())
        .with_dpop(key)
        .with_dpop_origin("http://grpc.test")
        .unwrap()
        .layer(grpc);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(1200));
        let response = client.clone().oneshot(call()).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "0");
    }
    assert_ne!(tokens.token().unwrap(), issued.token(), "renewed over gRPC");
}

/// A store whose replay cache answers as told: "seen" (another instance
/// took the proof) or an error (the cache is unreachable).
struct SharedReplays {
    inner: tower_sliding_jwt::MemoryStore,
    answer: Result<bool, ()>,
}

impl tower_sliding_jwt::store::RevocationStore for SharedReplays {
    fn check(
        &self,
        token: &tower_sliding_jwt::store::TokenIds<'_>,
        now: i64,
    ) -> tower_sliding_jwt::store::Lookup {
        self.inner.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: tower_sliding_jwt::store::Revocation,
        now: i64,
    ) -> tower_sliding_jwt::BoxFuture<'a, Result<(), tower_sliding_jwt::StoreError>> {
        self.inner.revoke(revocation, now)
    }

    fn replays(&self) -> Option<&dyn tower_sliding_jwt::store::ReplayCache> {
        Some(self)
    }
}

impl tower_sliding_jwt::store::ReplayCache for SharedReplays {
    fn remember(
        &self,
        _id: [u8; 32],
        _until: i64,
    ) -> tower_sliding_jwt::BoxFuture<'static, Result<bool, tower_sliding_jwt::StoreError>> {
        let answer = self
            .answer
            .map_err(|()| tower_sliding_jwt::StoreErrorKind::Unavailable.into());
        Box::pin(std::future::ready(answer))
    }
}

#[tokio::test]
async fn the_clusters_replay_cache_is_asked_and_fails_closed() {
    let clock = clock();
    let key = DpopKey::generate().unwrap();
    for (answer, expected) in [
        (Ok(true), None),
        (Ok(false), Some(RejectionKind::InvalidDpopProof)),
        (Err(()), Some(RejectionKind::StoreUnavailable)),
    ] {
        let layer = SlidingJwtLayer::<Key, Claimset>::builder(hs256())
            .with_clock(clock.clone())
            .with_revocation_store(SharedReplays {
                inner: tower_sliding_jwt::MemoryStore::new(),
                answer,
            })
            .with_dpop(Dpop::allowed())
            .build()
            .unwrap();
        let mut claims = user("alice", "admin");
        claims.registered.cnf = Some(Confirmation::jkt(key.thumbprint()));
        let token = layer.issuer().issue(claims).unwrap().token().to_owned();
        let proof = key.proof("GET", URL, Some(&token), None, T0).unwrap();
        let response = send(&app(&layer), dpop_get(&token, &proof)).await;
        assert_eq!(rejection(&response), expected, "{answer:?}");
        // A login's proof goes through the same cache.
        let proof = key
            .proof("POST", "http://api.test/login", None, None, T0)
            .unwrap();
        let parts = dpop_cluster::login_parts(&proof);
        let login = layer.issuer().login(&parts, user("alice", "admin")).await;
        match answer {
            Ok(true) => assert!(login.is_ok()),
            Ok(false) => assert_eq!(login.unwrap_err().kind(), IssueErrorKind::InvalidDpopProof),
            Err(()) => assert_eq!(login.unwrap_err().kind(), IssueErrorKind::Store),
        }
    }
}

#[tokio::test]
async fn weak_proof_keys_are_refused() {
    common::init();
    let clock = clock();
    let layer = layer_with(&clock, Dpop::allowed());
    let app = app(&layer);
    let bind = |jwk: &str| {
        // The token is bound to the key the jwk describes, as a login with
        // such a proof would bind it.
        let canonical: serde_json::Value = serde_json::from_str(jwk).unwrap();
        let input = match canonical["kty"].as_str().unwrap() {
            "OKP" => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, canonical["x"]),
            _ => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                canonical["e"], canonical["n"]
            ),
        };
        let jkt = b64(<sha2::Sha256 as sha2::Digest>::digest(input.as_bytes()));
        let mut claims = user("mallory", "user");
        claims.registered.cnf = Some(Confirmation::jkt(jkt));
        layer.issuer().issue(claims).unwrap().token().to_owned()
    };
    // Ed25519's identity point: the signature (R = identity, S = 0)
    // verifies for any message without the strict checks.
    let identity = b64({
        let mut x = [0u8; 32];
        x[0] = 1;
        x
    });
    let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{identity}"}}"#);
    let token = bind(&jwk);
    let ath = b64(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{jwk}}}"#);
    let payload = format!(r#"{{"jti":"x","htm":"GET","htu":"{URL}","iat":{T0},"ath":"{ath}"}}"#);
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let forged = format!("{}.{}.{}", b64(&header), b64(&payload), b64(signature));
    let response = send(&app, dpop_get(&token, &forged)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidDpopProof));

    // An RSA modulus with a leading zero octet (a key padded to pass the
    // size check), signed by the real key.
    let rsa = Key::from_pem(Algorithm::RS256, RSA_PRIVATE).unwrap();
    let public = serde_json::to_value(rsa.to_jwk().unwrap()).unwrap();
    let mut n = vec![0u8];
    n.extend(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            public["n"].as_str().unwrap(),
        )
        .unwrap(),
    );
    let jwk = format!(r#"{{"kty":"RSA","n":"{}","e":{}}}"#, b64(&n), public["e"]);
    let token = bind(&jwk);
    let ath = b64(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let padded = forge(
        &format!(r#"{{"typ":"dpop+jwt","alg":"RS256","jwk":{jwk}}}"#),
        &format!(r#"{{"jti":"y","htm":"GET","htu":"{URL}","iat":{T0},"ath":"{ath}"}}"#),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        Algorithm::RS256,
    );
    let response = send(&app, dpop_get(&token, &padded)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidDpopProof));
}

/// Claims whose `renewed` drops every claim it does not know, `cnf` too.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Forgetful {
    #[serde(flatten)]
    registered: tower_sliding_jwt::RegisteredClaims,
}

impl tower_sliding_jwt::Claims for Forgetful {
    fn registered(&self) -> &tower_sliding_jwt::RegisteredClaims {
        &self.registered
    }

    fn registered_mut(&mut self) -> &mut tower_sliding_jwt::RegisteredClaims {
        &mut self.registered
    }

    fn renewed(mut self, issued_at: i64, expires_at: i64, jti: String) -> Self {
        self.registered.cnf = None;
        self.registered.iat = Some(issued_at);
        self.registered.exp = expires_at;
        self.registered.jti = Some(jti);
        self
    }
}

#[tokio::test]
async fn a_claims_type_cannot_unbind_a_renewal() {
    let clock = clock();
    let layer = SlidingJwtLayer::<Key, Forgetful>::builder(hs256())
        .with_clock(clock.clone())
        .with_dpop(Dpop::allowed())
        .build()
        .unwrap();
    let key = DpopKey::generate().unwrap();
    let mut claims = Forgetful {
        registered: tower_sliding_jwt::RegisteredClaims::new("alice"),
    };
    claims.registered.cnf = Some(Confirmation::jkt(key.thumbprint()));
    let token = layer.issuer().issue(claims).unwrap().token().to_owned();
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    clock.advance(Duration::from_secs(2500));
    let proof = key
        .proof("GET", URL, Some(&token), None, T0 + 2500)
        .unwrap();
    let response = service.oneshot(dpop_get(&token, &proof)).await.unwrap();
    let renewed = response.headers()["authorization"].to_str().unwrap();
    let renewed = renewed.strip_prefix("DPoP ").unwrap();
    assert_eq!(payload(renewed)["cnf"]["jkt"], key.thumbprint());
}
