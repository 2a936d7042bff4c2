//! Verification: rules 1, 2, 10, 11 and 12 (ARCHITECTURE.md), through `oneshot`.

mod common;

use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode};
use tower_sliding_jwt::{
    GrpcResponder, HeaderSource, HttpResponder, Key, Rejection, RejectionKind, SlidingJwtLayer,
    responder::Realm,
};

fn layer() -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock())
        .build()
        .unwrap()
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_its_claims() {
    let layer = layer();
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    let response = send(&app(&layer), get(token.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["role"], "admin");
    assert_eq!(
        body["sid"],
        token.claims().registered.sid.as_deref().unwrap()
    );
    assert!(
        !response.headers().contains_key("authorization"),
        "a fresh token is not renewed"
    );
    assert!(rejection(&response).is_none());
}

#[tokio::test]
async fn missing_token_gets_a_bare_challenge() {
    let response = send(&app(&layer()), anonymous()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), "Bearer");
    assert_eq!(
        rejection(&response),
        Some(RejectionKind::MissingCredentials)
    );
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn realm_is_added_to_every_challenge() {
    let responder = HttpResponder::new().with_realm(Realm::new("demo").unwrap());
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_responder(responder)
        .build()
        .unwrap();
    let app = app(&layer);
    assert_eq!(
        challenge(&send(&app, anonymous()).await),
        "Bearer realm=\"demo\""
    );
    let response = send(&app, get("a.b.c")).await;
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"demo\", error=\"invalid_token\", error_description=\"the access token is invalid or expired\""
    );
}

#[tokio::test]
async fn non_bearer_scheme_counts_as_no_token() {
    let request = Request::get("/")
        .header("authorization", "Basic YWxpY2U6d29uZGVybGFuZA==")
        .body(())
        .unwrap();
    let response = send(&app(&layer()), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), "Bearer");
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let layer = layer();
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    let request = Request::get("/")
        .header("authorization", format!("bEARER {}", token.token()))
        .body(())
        .unwrap();
    assert_eq!(send(&app(&layer), request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn duplicate_authorization_is_invalid_request() {
    let layer = layer();
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    let bearer = format!("Bearer {}", token.token());
    let request = Request::get("/")
        .header("authorization", &bearer)
        .header("authorization", &bearer)
        .body(())
        .unwrap();
    let response = send(&app(&layer), request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenge(&response), INVALID_REQUEST);
    assert_eq!(
        rejection(&response),
        Some(RejectionKind::DuplicateCredentials)
    );
}

#[tokio::test]
async fn expiry_honours_leeway_but_leeway_is_bounded() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_leeway(Duration::from_secs(5))
        .build()
        .unwrap();
    let app = app(&layer);
    let now = T0;
    let within_leeway = forge_hs256(&claims_json(now - 100, now - 4, now - 100));
    assert_eq!(
        send(&app, get(&within_leeway)).await.status(),
        StatusCode::OK
    );
    let expired = forge_hs256(&claims_json(now - 100, now - 5, now - 100));
    let response = send(&app, get(&expired)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), INVALID_TOKEN);
    assert_eq!(rejection(&response), Some(RejectionKind::Expired));

    let too_lenient = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_leeway(Duration::from_secs(61))
        .build();
    assert_eq!(
        too_lenient.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::LeewayTooLarge
    );
}

#[tokio::test]
async fn future_nbf_is_refused() {
    let app = app(&layer());
    let now = T0;
    let later = forge_hs256(&format!(r#"{{"exp":{},"nbf":{}}}"#, now + 600, now + 10));
    let response = send(&app, get(&later)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::NotYetValid));
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let skewed = forge_hs256(&format!(r#"{{"exp":{},"nbf":{}}}"#, now + 600, now + 5));
    assert_eq!(send(&app, get(&skewed)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn issuer_and_audience_are_enforced() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_issuer("demo")
        .with_audience("api")
        .with_audience("admin-api")
        .build()
        .unwrap();
    let app = app(&layer);
    let exp = T0 + 600;
    let cases = [
        (format!(r#"{{"exp":{exp},"iss":"demo","aud":"api"}}"#), None),
        (
            format!(r#"{{"exp":{exp},"iss":"demo","aud":["x","admin-api"]}}"#),
            None,
        ),
        (
            format!(r#"{{"exp":{exp},"aud":"api"}}"#),
            Some(RejectionKind::WrongIssuer),
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"evil","aud":"api"}}"#),
            Some(RejectionKind::WrongIssuer),
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"demo"}}"#),
            Some(RejectionKind::WrongAudience),
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"demo","aud":["x","y"]}}"#),
            Some(RejectionKind::WrongAudience),
        ),
        (
            format!(r#"{{"exp":{exp},"iss":"demo","aud":[]}}"#),
            Some(RejectionKind::WrongAudience),
        ),
    ];
    for (payload, expected) in cases {
        let response = send(&app, get(&forge_hs256(&payload))).await;
        assert_eq!(rejection(&response), expected, "{payload}");
    }
    // The issuer writes what the layer checks.
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    assert_eq!(payload(token.token())["iss"], "demo");
    assert_eq!(
        payload(token.token())["aud"],
        serde_json::json!(["api", "admin-api"])
    );
    assert_eq!(
        send(&app, get(token.token())).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn typ_is_checked_when_configured() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_required_typ("JWT")
        .build()
        .unwrap();
    let app = app(&layer);
    let payload = format!(r#"{{"exp":{}}}"#, T0 + 600);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let with = |header: &str| forge(header, &payload, &key, jsonwebtoken::Algorithm::HS256);
    assert_eq!(
        send(&app, get(&with(r#"{"alg":"HS256","typ":"jwt"}"#)))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(
            &app,
            get(&with(r#"{"alg":"HS256","typ":"application/JWT"}"#))
        )
        .await
        .status(),
        StatusCode::OK
    );
    for header in [r#"{"alg":"HS256","typ":"at+jwt"}"#, r#"{"alg":"HS256"}"#] {
        let response = send(&app, get(&with(header))).await;
        assert_eq!(
            rejection(&response),
            Some(RejectionKind::WrongType),
            "{header}"
        );
    }
    // The issuer's own tokens pass.
    let token = layer.issuer().issue(user("a", "b")).unwrap();
    assert_eq!(
        send(&app, get(token.token())).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn optional_mode_passes_anonymous_requests_but_not_bad_tokens() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_anonymous(true)
        .build()
        .unwrap();
    let app = app(&layer);
    let response = send(&app, anonymous()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "anonymous");
    let response = send(&app, get("not-a-jwt")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), INVALID_TOKEN);
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    assert_ne!(send(&app, get(token.token())).await.body(), "anonymous");
}

#[tokio::test]
async fn sources_are_tried_in_order_and_the_query_is_never_read() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_token_source(HeaderSource::new("x-auth-token").unwrap())
        .with_token_source(tower_sliding_jwt::CookieSource::new("session").unwrap())
        .build()
        .unwrap();
    let app = app(&layer);
    let token = layer.issuer().issue(user("alice", "admin")).unwrap();
    let via_header = Request::get("/")
        .header("x-auth-token", token.token())
        .body(())
        .unwrap();
    assert_eq!(send(&app, via_header).await.status(), StatusCode::OK);
    let via_cookie = Request::get("/")
        .header("cookie", format!("session={}", token.token()))
        .body(())
        .unwrap();
    assert_eq!(send(&app, via_cookie).await.status(), StatusCode::OK);
    // Authorization is not configured here, and the query string is never a source.
    let via_bearer = get(token.token());
    assert_eq!(
        send(&app, via_bearer).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let via_query = Request::get(format!(
        "/?access_token={}&token={}",
        token.token(),
        token.token()
    ))
    .body(())
    .unwrap();
    assert_eq!(challenge(&send(&app, via_query).await), "Bearer");
}

#[tokio::test]
async fn grpc_responder_answers_unauthenticated() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_responder(GrpcResponder)
        .build()
        .unwrap();
    let app = app(&layer);
    for (request, refused_token) in [(anonymous(), false), (get("x.y.z"), true)] {
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert!(response.headers().contains_key("grpc-message"));
        // A refused token carries its challenge, so the client half can tell
        // it from a handler's own UNAUTHENTICATED; no credentials carry none.
        assert_eq!(
            response.headers().contains_key("www-authenticate"),
            refused_token
        );
        if refused_token {
            assert_eq!(challenge(&response), INVALID_TOKEN);
        }
    }
}

#[tokio::test]
async fn closures_are_responders() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_responder(|rejection: &Rejection| {
            let mut response = Response::new(format!("{{\"error\":\"{}\"}}", rejection.kind()));
            *response.status_mut() = rejection.status();
            response
        })
        .build()
        .unwrap();
    let response = send(&app(&layer), get("x.y.z")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.body(), "{\"error\":\"malformed token\"}");
    assert_eq!(
        rejection(&response),
        Some(RejectionKind::MalformedToken),
        "the layer still records the reason"
    );
}

#[tokio::test]
async fn rejections_never_echo_the_token() {
    let layer = layer();
    let app = app(&layer);
    let valid = layer.issuer().issue(user("alice", "admin")).unwrap();
    let tampered = format!("{}x", valid.token());
    let expired = forge_hs256(&claims_json(T0 - 7200, T0 - 3600, T0 - 7200));
    for token in [tampered.as_str(), expired.as_str()] {
        let response = send(&app, get(token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let rejection = response.extensions().get::<Rejection>().unwrap();
        for text in [
            format!("{rejection}"),
            format!("{rejection:?}"),
            format!("{:?}", response.headers()),
            response.body().clone(),
        ] {
            assert!(
                !text.contains(token) && !text.contains(token.split('.').nth(1).unwrap()),
                "{text}"
            );
        }
    }
    assert!(!format!("{valid:?}").contains(valid.token()));
}

#[tokio::test]
async fn session_past_its_cap_is_refused() {
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_max_session(Duration::from_secs(86_400))
        .build()
        .unwrap();
    let app = app(&layer);
    // Still-valid exp, but the session began more than a day ago: no leeway on the cap.
    let capped = forge_hs256(&claims_json(T0 - 60, T0 + 600, T0 - 86_400));
    let response = send(&app, get(&capped)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::SessionExpired));
    assert_eq!(challenge(&response), INVALID_TOKEN);
    let almost = forge_hs256(&claims_json(T0 - 60, T0 + 600, T0 - 86_399));
    assert_eq!(send(&app, get(&almost)).await.status(), StatusCode::OK);
}

#[test]
fn service_and_future_fit_axum_hyper_and_tonic() {
    // axum's Router::layer and hyper/tonic servers need Clone + Send + Sync
    // services with Send futures.
    fn check<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn check_future<F: std::future::Future + Send + 'static>(_: F) {}
    let layer = layer();
    check(&layer);
    let app = app(&layer);
    check(&app);
    let mut service = app.clone();
    check_future(tower::Service::call(&mut service, anonymous()));
}

#[tokio::test]
async fn works_with_every_algorithm_family() {
    use tower_sliding_jwt::Algorithm;
    let keys = [
        es256(),
        eddsa(),
        rs256(),
        Key::from_pem(Algorithm::PS256, RSA_PRIVATE).unwrap(),
        Key::from_pem(Algorithm::ES384, ES384_PRIVATE).unwrap(),
        Key::hmac(Algorithm::HS384, [3u8; 48]).unwrap(),
        Key::hmac(Algorithm::HS512, [4u8; 64]).unwrap(),
    ];
    for key in keys {
        let alg = key.algorithm();
        let layer = SlidingJwtLayer::<_, Claimset>::builder(key)
            .with_clock(clock())
            .build()
            .unwrap();
        let app = app(&layer);
        let token = layer.issuer().issue(user("alice", "admin")).unwrap();
        assert_eq!(header(token.token())["alg"], format!("{alg:?}"));
        assert_eq!(
            send(&app, get(token.token())).await.status(),
            StatusCode::OK,
            "{alg:?}"
        );
        let mut tampered = token.token().to_owned();
        tampered.insert_str(tampered.find('.').unwrap() + 1, "eyJ4IjoxfQ");
        assert_eq!(
            send(&app, get(&tampered)).await.status(),
            StatusCode::UNAUTHORIZED,
            "{alg:?}"
        );
    }
}

#[tokio::test]
async fn the_verified_cache_still_checks_time_cap_and_revocation() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_max_session(Duration::from_secs(7200))
        .with_verified_cache(64)
        .build()
        .unwrap();
    let app = app(&layer);
    let alice = layer.issuer().issue(user("alice", "admin")).unwrap();
    let bob = layer.issuer().issue(user("bob", "user")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            send(&app, get(alice.token())).await.status(),
            StatusCode::OK
        );
        assert_eq!(send(&app, get(bob.token())).await.status(), StatusCode::OK);
    }
    // A tampered copy is a different key: fully verified, and refused.
    // (Another last character: 'A' unless the token already ends with one.)
    let token = alice.token();
    let other = if token.ends_with('A') { 'E' } else { 'A' };
    let tampered = format!("{}{other}", &token[..token.len() - 1]);
    assert_eq!(
        send(&app, get(&tampered)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Revocation is checked on cached tokens.
    layer
        .revoker()
        .revoke_session(bob.claims().registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        rejection(&send(&app, get(bob.token())).await),
        Some(RejectionKind::Revoked)
    );
    // So is expiry: the cached claims are re-validated against the clock.
    clock.advance(Duration::from_secs(3600 + 5));
    assert_eq!(
        rejection(&send(&app, get(alice.token())).await),
        Some(RejectionKind::Expired)
    );
}

/// A token whose `exp` lies further ahead than anything this layer signs
/// (minted elsewhere with the same key) is refused: it would outlive every
/// revocation of its session. Up to the ttl plus the leeway is accepted.
#[tokio::test]
async fn a_token_living_longer_than_the_layer_could_sign_is_refused() {
    let app = app(&layer());
    // Years ahead, without `auth_time`: no session cap would ever stop it.
    let forever = forge_hs256(&format!(
        r#"{{"sub":"alice","role":"admin","iat":{T0},"exp":{},"sid":"s1","jti":"j1"}}"#,
        T0 + 5 * 365 * 86_400
    ));
    let response = send(&app, get(&forever)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection(&response), Some(RejectionKind::LifetimeTooLong));
    assert_eq!(challenge(&response), INVALID_TOKEN);
    // One second past the ttl plus the leeway (3600 + 5): refused; at it: served.
    let just_over = forge_hs256(&claims_json(T0, T0 + 3606, T0));
    let response = send(&app, get(&just_over)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::LifetimeTooLong));
    let at_the_limit = forge_hs256(&claims_json(T0, T0 + 3605, T0));
    assert_eq!(
        send(&app, get(&at_the_limit)).await.status(),
        StatusCode::OK
    );
}
