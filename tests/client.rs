//! The client layer's rules (`ClientLayer`, `TokenStore`), each through
//! `tower::service_fn` + `oneshot`, with the public API only.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderName, Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{ClientLayer, ConfigErrorKind, TokenStore};

const API: &str = "https://api.example.com";
const SID: &str = "session-1";

/// A compact JWS with header `{"alg":alg}` and the JSON `payload`.
fn jwt(alg: &str, payload: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// A token without a `sid`, expiring at `exp`.
fn token(exp: i64) -> String {
    jwt("HS256", &format!(r#"{{"exp":{exp}}}"#))
}

/// A token of session `sid`, expiring at `exp`.
fn session(sid: &str, exp: i64) -> String {
    jwt("HS256", &format!(r#"{{"exp":{exp},"sid":"{sid}"}}"#))
}

/// Sends a request for `uri` through `layer` to a server answering `status`
/// with `headers`; returns the `Authorization` the server saw.
async fn exchange(
    layer: &ClientLayer,
    uri: &str,
    status: u16,
    headers: &[(&str, &str)],
) -> Option<String> {
    exchange_with(layer, Request::get(uri).body(()).unwrap(), status, headers).await
}

async fn exchange_with(
    layer: &ClientLayer,
    request: Request<()>,
    status: u16,
    headers: &[(&str, &str)],
) -> Option<String> {
    let seen = Arc::new(Mutex::new(None));
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    let response = response.body(()).unwrap();
    let server = {
        let seen = seen.clone();
        service_fn(move |request: Request<()>| {
            *seen.lock().unwrap() = request
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let response = response.clone();
            async move { Ok::<_, Infallible>(response) }
        })
    };
    layer.layer(server).oneshot(request).await.unwrap();
    seen.lock().unwrap().take()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn bound(tokens: &TokenStore) -> ClientLayer {
    ClientLayer::for_origin(API, tokens.clone()).unwrap()
}

fn counter() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&str) + Send + Sync + 'static,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let calls = calls.clone();
        move |token: &str| calls.lock().unwrap().push(token.to_owned())
    };
    (calls, record)
}

#[test]
fn for_origin_refuses_what_is_not_an_origin() {
    let tokens = TokenStore::empty();
    for bad in [
        "api.example.com",
        "https://api.example.com/v1",
        "https://api.example.com?x",
        "https://user@api.example.com",
        "ftp://api.example.com",
    ] {
        let error = ClientLayer::for_origin(bad, tokens.clone()).expect_err(bad);
        assert_eq!(error.kind(), ConfigErrorKind::InvalidOrigin);
    }
    let layer = ClientLayer::for_origin("https://API.example.com:443/", tokens).unwrap();
    assert_eq!(
        layer.origin().unwrap().to_string(),
        "https://api.example.com:443"
    );
    assert!(
        ClientLayer::for_channel(TokenStore::empty())
            .origin()
            .is_none()
    );
}

#[tokio::test]
async fn token_is_sent_to_the_bound_origin() {
    let login = session(SID, 100);
    let layer = bound(&TokenStore::new(&login));
    for uri in [
        "https://api.example.com/me",
        "https://API.EXAMPLE.COM:443/me?x=1",
    ] {
        assert_eq!(
            exchange(&layer, uri, 200, &[]).await,
            Some(bearer(&login)),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn token_is_not_sent_to_another_origin() {
    let layer = bound(&TokenStore::new(&session(SID, 100)));
    for uri in [
        "https://evil.test/",
        "http://api.example.com/me",
        "https://api.example.com:8443/me",
        "https://api.example.com.evil.test/me",
        "https://api.example.com@evil.test/me",
        "/me",
    ] {
        assert_eq!(exchange(&layer, uri, 200, &[]).await, None, "{uri}");
    }
}

#[tokio::test]
async fn responses_from_another_origin_are_never_read() {
    let login = session(SID, 100);
    let tokens = TokenStore::new(&login);
    let (changes, on_change) = counter();
    let (refusals, on_unauthorized) = counter();
    let layer = bound(&tokens)
        .with_on_token_change(on_change)
        .with_on_unauthorized(move || on_unauthorized("401"));
    // A well-formed renewal of our own session, but from elsewhere.
    let renewal = bearer(&session(SID, 200));
    exchange(
        &layer,
        "https://evil.test/",
        200,
        &[("authorization", &renewal)],
    )
    .await;
    exchange(&layer, "/relative", 200, &[("authorization", &renewal)]).await;
    exchange(&layer, "https://evil.test/", 401, &[]).await;
    exchange(&layer, "https://evil.test/", 200, &[("grpc-status", "16")]).await;
    assert_eq!(tokens.token(), Some(login));
    assert!(changes.lock().unwrap().is_empty());
    assert!(refusals.lock().unwrap().is_empty());
}

/// The incident: a third party's 404 carried an `alg: none` token expiring at
/// `i64::MAX`, which replaced the real token and blocked every renewal after.
#[tokio::test]
async fn alg_none_from_a_foreign_404_is_not_adopted() {
    let login = session(SID, 100);
    let tokens = TokenStore::new(&login);
    let layer = bound(&tokens);
    let payload = format!(r#"{{"exp":{},"sid":"{SID}"}}"#, i64::MAX);
    let signed = jwt("none", &payload);
    // `alg: none` tokens usually come without a signature; some carry one.
    let unsigned = format!("{}.", signed.trim_end_matches("c2ln").trim_end_matches('.'));
    for forged in [unsigned, signed] {
        let value = bearer(&forged);
        exchange(
            &layer,
            "https://third-party.test/x",
            404,
            &[("authorization", &value)],
        )
        .await;
        assert_eq!(tokens.token().as_deref(), Some(login.as_str()));
        // Not from the origin's own success either.
        exchange(
            &layer,
            "https://api.example.com/me",
            200,
            &[("authorization", &value)],
        )
        .await;
        assert_eq!(tokens.token().as_deref(), Some(login.as_str()));
    }
    // The genuine renewal still gets through.
    let renewed = session(SID, 200);
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    assert_eq!(tokens.token(), Some(renewed));
}

#[tokio::test]
async fn error_responses_from_the_origin_are_not_adopted() {
    let tokens = TokenStore::new(&session(SID, 100));
    let layer = bound(&tokens);
    let renewal = bearer(&session(SID, 200));
    for status in [400, 403, 404, 500, 503] {
        exchange(
            &layer,
            "https://api.example.com/me",
            status,
            &[("authorization", &renewal)],
        )
        .await;
        assert_eq!(tokens.expires_at(), Some(100), "{status}");
    }
    for grpc_status in ["2", "13", "14", "bogus"] {
        exchange(
            &layer,
            "https://api.example.com/me",
            200,
            &[("authorization", &renewal), ("grpc-status", grpc_status)],
        )
        .await;
        assert_eq!(tokens.expires_at(), Some(100), "grpc-status {grpc_status}");
    }
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &renewal), ("grpc-status", "0")],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(200), "grpc OK in the headers");
    let later = bearer(&session(SID, 300));
    exchange(
        &layer,
        "https://api.example.com/old",
        302,
        &[("authorization", &later)],
    )
    .await;
    assert_eq!(
        tokens.expires_at(),
        Some(300),
        "a redirect may carry a renewal"
    );
}

#[tokio::test]
async fn a_token_of_another_session_is_not_adopted() {
    let tokens = TokenStore::new(&session(SID, 100));
    let layer = bound(&tokens);
    for other in [session("session-2", 200), token(200)] {
        exchange(
            &layer,
            "https://api.example.com/me",
            200,
            &[("authorization", &bearer(&other))],
        )
        .await;
        assert_eq!(tokens.expires_at(), Some(100));
    }
}

#[tokio::test]
async fn an_earlier_exp_is_not_adopted() {
    let tokens = TokenStore::new(&session(SID, 300));
    let layer = bound(&tokens);
    for older in [session(SID, 200), session(SID, 300)] {
        exchange(
            &layer,
            "https://api.example.com/me",
            200,
            &[("authorization", &bearer(&older))],
        )
        .await;
        assert_eq!(tokens.token(), Some(session(SID, 300)));
    }
}

#[tokio::test]
async fn only_one_well_formed_bearer_value_is_read() {
    let tokens = TokenStore::new(&session(SID, 100));
    let layer = bound(&tokens);
    let renewal = session(SID, 200);
    for headers in [
        vec![("authorization", renewal.clone())],
        vec![("authorization", format!("Basic {renewal}"))],
        vec![
            ("authorization", bearer(&renewal)),
            ("authorization", bearer(&renewal)),
        ],
    ] {
        let headers: Vec<_> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        exchange(&layer, "https://api.example.com/me", 200, &headers).await;
        assert_eq!(tokens.expires_at(), Some(100), "{headers:?}");
    }
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &format!("bearer  {renewal}"))],
    )
    .await;
    assert_eq!(
        tokens.expires_at(),
        Some(200),
        "the scheme is case-insensitive"
    );
}

/// The server layer's refusal of a token (RFC 6750 §3.1).
const REFUSED: (&str, &str) = (
    "www-authenticate",
    "Bearer error=\"invalid_token\", error_description=\"the access token is invalid or expired\"",
);

#[tokio::test]
async fn the_server_refusing_the_token_is_reported_and_clears_the_store() {
    let tokens = TokenStore::new(&session(SID, 100));
    let (refusals, on_unauthorized) = counter();
    let layer = bound(&tokens).with_on_unauthorized(move || on_unauthorized("401"));
    exchange(&layer, "https://api.example.com/me", 401, &[REFUSED]).await;
    assert_eq!(refusals.lock().unwrap().len(), 1);
    assert!(tokens.token().is_none(), "the refused token is forgotten");
    // Parameters in another order, unquoted, another scheme case.
    tokens.replace(&session(SID, 100));
    let other_form = (
        "www-authenticate",
        "bearer realm=\"api\", error=invalid_token",
    );
    exchange(&layer, "https://api.example.com/me", 401, &[other_form]).await;
    assert_eq!(refusals.lock().unwrap().len(), 2);
    assert!(tokens.token().is_none());

    // gRPC: UNAUTHENTICATED in the headers (a trailers-only response), with
    // the refused token's challenge, as the server layer's GrpcResponder sends it.
    tokens.replace(&session(SID, 100));
    exchange(
        &layer,
        "https://api.example.com/rpc",
        200,
        &[("grpc-status", "16"), REFUSED],
    )
    .await;
    assert_eq!(refusals.lock().unwrap().len(), 3);
    assert!(tokens.token().is_none());

    // Configured to keep the token: only the callback.
    tokens.replace(&session(SID, 100));
    let keep = layer.clone().with_clear_on_unauthorized(false);
    exchange(&keep, "https://api.example.com/me", 401, &[REFUSED]).await;
    assert_eq!(refusals.lock().unwrap().len(), 4);
    assert_eq!(tokens.expires_at(), Some(100));
}

#[tokio::test]
async fn any_other_401_passes_through_and_keeps_the_session() {
    let tokens = TokenStore::new(&session(SID, 100));
    let (refusals, on_unauthorized) = counter();
    let layer = bound(&tokens).with_on_unauthorized(move || on_unauthorized("401"));
    for headers in [
        // A wrong password at a login route, a handler's own 401...
        &[][..],
        &[("www-authenticate", "Basic realm=\"login\"")],
        // ...a bare challenge (the server saw no token), another error.
        &[("www-authenticate", "Bearer")],
        &[("www-authenticate", "Bearer error=\"insufficient_scope\"")],
        &[(
            "www-authenticate",
            "Bearer error_description=\"invalid_token\"",
        )],
    ] {
        exchange(&layer, "https://api.example.com/login", 401, headers).await;
        assert_eq!(tokens.expires_at(), Some(100), "{headers:?}");
    }
    assert!(refusals.lock().unwrap().is_empty(), "no session ended");
    // A refusal of `invalid_token` with another status is no refusal either.
    exchange(&layer, "https://api.example.com/me", 403, &[REFUSED]).await;
    assert_eq!(tokens.expires_at(), Some(100));
    // A gRPC handler's own UNAUTHENTICATED (a wrong one-time code, say).
    exchange(
        &layer,
        "https://api.example.com/rpc",
        200,
        &[("grpc-status", "16"), ("grpc-message", "wrong code")],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(100));
    assert!(refusals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unauthorized_keeps_a_token_set_since() {
    let tokens = TokenStore::new(&session(SID, 100));
    let layer = bound(&tokens);
    let relogin = session("session-2", 500);
    let server = {
        let tokens = tokens.clone();
        let relogin = relogin.clone();
        service_fn(move |_request: Request<()>| {
            // A new login completes while this request is in flight.
            tokens.replace(&relogin);
            async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(401)
                        .header(REFUSED.0, REFUSED.1)
                        .body(())
                        .unwrap(),
                )
            }
        })
    };
    let request = Request::get("https://api.example.com/me").body(()).unwrap();
    layer.layer(server).oneshot(request).await.unwrap();
    assert_eq!(tokens.token(), Some(relogin));
}

#[tokio::test]
async fn token_change_callback_gets_the_new_token() {
    let tokens = TokenStore::new(&session(SID, 100));
    let (changes, on_change) = counter();
    let layer = bound(&tokens).with_on_token_change(on_change);
    exchange(&layer, "https://api.example.com/me", 200, &[]).await;
    let renewed = session(SID, 200);
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    // Not adopted (same exp again): no call.
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    assert_eq!(*changes.lock().unwrap(), std::slice::from_ref(&renewed));
    assert_eq!(
        exchange(&layer, "https://api.example.com/me", 200, &[]).await,
        Some(bearer(&renewed)),
        "the next request carries the renewal"
    );
}

#[tokio::test]
async fn a_request_with_its_own_authorization_keeps_it() {
    let tokens = TokenStore::new(&session(SID, 100));
    let (refusals, on_unauthorized) = counter();
    let layer = bound(&tokens).with_on_unauthorized(move || on_unauthorized("401"));
    let own = Request::get("https://api.example.com/me")
        .header("authorization", "Basic dTpw")
        .body(())
        .unwrap();
    let renewal = bearer(&session(SID, 200));
    let seen = exchange_with(&layer, own, 200, &[("authorization", &renewal)]).await;
    assert_eq!(seen.as_deref(), Some("Basic dTpw"));
    assert_eq!(tokens.expires_at(), Some(100), "not a renewal of our token");
    let own = Request::get("https://api.example.com/me")
        .header("authorization", "Basic dTpw")
        .body(())
        .unwrap();
    exchange_with(&layer, own, 401, &[]).await;
    assert!(refusals.lock().unwrap().is_empty(), "not our token refused");
    assert_eq!(tokens.expires_at(), Some(100));
}

#[tokio::test]
async fn for_channel_serves_every_request() {
    let login = session(SID, 100);
    let tokens = TokenStore::new(&login);
    let layer = ClientLayer::for_channel(tokens.clone());
    // tonic's `Grpc::new` sends relative URIs; the channel adds its origin.
    assert_eq!(
        exchange(&layer, "/helloworld.Greeter/SayHello", 200, &[]).await,
        Some(bearer(&login))
    );
    let renewed = session(SID, 200);
    exchange(
        &layer,
        "/helloworld.Greeter/SayHello",
        200,
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    assert_eq!(tokens.token(), Some(renewed));
}

#[tokio::test]
async fn renewal_from_a_custom_response_header() {
    let tokens = TokenStore::new(&session(SID, 100));
    let layer = bound(&tokens).with_response_header(HeaderName::from_static("x-renewed-token"));
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("authorization", &bearer(&session(SID, 150)))],
    )
    .await;
    assert_eq!(
        tokens.expires_at(),
        Some(100),
        "only the configured header is read"
    );
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("x-renewed-token", &session(SID, 200))],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(200), "bare");
    exchange(
        &layer,
        "https://api.example.com/me",
        200,
        &[("x-renewed-token", &bearer(&session(SID, 300)))],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(300), "Bearer");
}

#[tokio::test]
async fn renewals_larger_than_the_limit_are_not_read() {
    let tokens = TokenStore::new(&session(SID, 100));
    let padded = jwt(
        "HS256",
        &format!(
            r#"{{"exp":200,"sid":"{SID}","pad":"{}"}}"#,
            "x".repeat(9000)
        ),
    );
    let value = bearer(&padded);
    exchange(
        &bound(&tokens),
        "https://api.example.com/me",
        200,
        &[("authorization", &value)],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(100));
    let roomy = bound(&tokens).with_max_token_bytes(16 * 1024);
    exchange(
        &roomy,
        "https://api.example.com/me",
        200,
        &[("authorization", &value)],
    )
    .await;
    assert_eq!(tokens.expires_at(), Some(200));
}

#[test]
fn debug_never_shows_the_token() {
    let login = session(SID, 100);
    let tokens = TokenStore::new(&login);
    let layer = bound(&tokens).with_on_token_change(|_| {});
    let client = layer.layer(());
    for debug in [
        format!("{tokens:?}"),
        format!("{layer:?}"),
        format!("{client:?}"),
    ] {
        assert!(
            !debug.contains(&login) && !debug.contains("c2ln"),
            "{debug}"
        );
    }
}

#[tokio::test]
async fn with_the_issuers_keys_only_a_token_that_verifies_is_adopted() {
    use tower_sliding_jwt::{
        Algorithm, Key, KeyRing, ManualClock, SlidingJwtLayer, StandardClaims,
    };
    let private = include_str!("keys/es256-private.pem");
    let public = include_str!("keys/es256-public.pem");
    let clock = ManualClock::new(1_800_000_000);
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(
        Key::from_pem(Algorithm::ES256, private).unwrap(),
    )
    .with_clock(clock.clone())
    .build()
    .unwrap();
    let login = layer
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    clock.advance(std::time::Duration::from_secs(45 * 60));
    let server = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let request = Request::get("/")
        .header("authorization", format!("Bearer {}", login.token()))
        .body(())
        .unwrap();
    let response = server.oneshot(request).await.unwrap();
    let renewal =
        response.headers()["authorization"].to_str().unwrap()["Bearer ".len()..].to_owned();

    let keys = KeyRing::verifying([Key::public_pem(Algorithm::ES256, public).unwrap()]).unwrap();
    let tokens = TokenStore::new(login.token())
        .with_clock(clock.clone())
        .with_verification_keys(keys);
    // Same claims as the genuine renewal, but not signed by the issuer.
    let (input, _) = renewal.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
    assert!(!tokens.offer(&forged), "a forgery is never adopted");
    assert!(!tokens.offer(&format!("{input}.")), "nor an unsigned one");
    assert!(tokens.offer(&renewal), "the issuer's renewal is");
    assert_eq!(tokens.token().as_deref(), Some(renewal.as_str()));
}
