//! Renewal: rules 3, 4, 7, 8, 9 and 14 (ARCHITECTURE.md), driven by a manual
//! clock. Never a renewal on an error response (whatever the policy), inside
//! the leeway after `exp`, over the size limit, or for a request that outlives
//! its token.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    CookieSource, GrpcResponder, IssueErrorKind, Key, KeyRing, ManualClock, RejectionKind,
    RenewWindow, Renewed, SlidingJwtLayer, Throttle,
};

fn layer_with(key: Key, clock: &ManualClock) -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(key)
        .with_clock(clock.clone())
        .with_issuer("demo")
        .with_audience("api")
        .build()
        .unwrap()
}

#[tokio::test]
async fn near_expiry_token_is_renewed_for_the_same_session() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    let old = payload(login.token());
    assert_eq!(old["auth_time"], T0);
    assert_eq!(old["iat"], T0);
    assert_eq!(old["exp"], T0 + 3600);

    // 39 minutes in: 21 minutes left, outside the 20-minute window.
    clock.advance(minutes(39));
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed(&response).is_none());

    // 41 minutes in: renewed.
    clock.advance(minutes(2));
    let now = T0 + 41 * 60;
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = renewed(&response).expect("renewed");
    assert!(response.headers()["authorization"].is_sensitive());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.extensions().get::<Renewed>().map(|r| r.expires_at),
        Some(now + 3600)
    );

    let new = payload(&token);
    assert_eq!(new["exp"], now + 3600);
    assert_eq!(new["iat"], now);
    assert_ne!(new["jti"], old["jti"]);
    for same in ["sid", "auth_time", "sub", "role", "iss", "aud"] {
        assert_eq!(new[same], old[same], "{same} is copied");
    }
    assert_eq!(header(&token)["alg"], "HS256");
    // The replacement verifies.
    assert_eq!(send(&app, get(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn nbf_is_dropped_and_unknown_claims_survive() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let app = app(&layer);
    let json = format!(
        r#"{{"iss":"demo","aud":"api","sub":"bob","iat":{},"nbf":{},"exp":{},"auth_time":{},"sid":"s","jti":"j","tenant":{{"id":7}},"scope":["a","b"]}}"#,
        T0 - 3000,
        T0 - 3000,
        T0 + 600,
        T0 - 3000
    );
    let response = send(&app, get(&forge_hs256(&json))).await;
    let new = payload(&renewed(&response).unwrap());
    assert!(new.get("nbf").is_none());
    assert_eq!(new["tenant"]["id"], 7);
    assert_eq!(new["scope"], serde_json::json!(["a", "b"]));
    assert_eq!(new["sid"], "s");
}

#[tokio::test]
async fn throttle_blocks_renewals_too_soon_after_issue() {
    let clock = clock();
    // ttl shorter than the window: every token is always in the window.
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_ttl(minutes(10))
        .with_throttle(Throttle::new(Duration::from_secs(60)).unwrap())
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(Duration::from_secs(59));
    assert!(renewed(&send(&app, get(login.token())).await).is_none());
    clock.advance(Duration::from_secs(1));
    let first = renewed(&send(&app, get(login.token())).await).unwrap();
    // The new token is itself throttled.
    clock.advance(Duration::from_secs(30));
    assert!(renewed(&send(&app, get(&first)).await).is_none());
}

#[tokio::test]
async fn fractional_window() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_renew_window(RenewWindow::fraction(0.5).unwrap())
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(29));
    assert!(renewed(&send(&app, get(login.token())).await).is_none());
    clock.advance(minutes(1));
    assert!(renewed(&send(&app, get(login.token())).await).is_some());
}

#[tokio::test]
async fn renewal_stops_at_the_session_cap() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_ttl(minutes(60))
        .with_max_session(minutes(150))
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    let mut token = login.token().to_owned();
    let cap = T0 + 150 * 60;
    let mut renewals = 0;
    // Keep the session busy every 5 minutes for 3 hours.
    for _ in 0..36 {
        clock.advance(minutes(5));
        let response = send(&app, get(&token)).await;
        if clock_now(&clock) >= cap {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                rejection(&response),
                Some(tower_sliding_jwt::RejectionKind::SessionExpired),
                "the cap has no leeway"
            );
            break;
        }
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "at {}",
            clock_now(&clock) - T0
        );
        if let Some(next) = renewed(&response) {
            let exp = payload(&next)["exp"].as_i64().unwrap();
            assert!(exp <= cap, "never past the cap");
            assert!(
                exp > payload(&token)["exp"].as_i64().unwrap(),
                "never earlier than the old exp"
            );
            renewals += 1;
            token = next;
        }
    }
    assert!(clock_now(&clock) >= cap, "the session ended at its cap");
    assert!(renewals >= 2);
    assert_eq!(
        payload(&token)["exp"],
        cap,
        "the last renewal ends exactly at the cap"
    );
}

fn clock_now(clock: &ManualClock) -> i64 {
    use tower_sliding_jwt::Clock;
    clock.now()
}

#[tokio::test]
async fn no_renewal_on_errors_options_logout_or_handler_tokens() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(45));
    let with = |name: &str, value: &str| {
        Request::get("/")
            .header("authorization", format!("Bearer {}", login.token()))
            .header(name, value)
            .body(())
            .unwrap()
    };
    for status in ["400", "403", "404", "500", "503"] {
        let response = send(&app, with("x-status", status)).await;
        assert!(renewed(&response).is_none(), "{status}");
        assert!(!response.headers().contains_key("cache-control"));
    }
    for status in ["201", "204", "302", "304"] {
        assert!(
            renewed(&send(&app, with("x-status", status)).await).is_some(),
            "{status}"
        );
    }
    assert!(renewed(&send(&app, with("x-no-renewal", "1")).await).is_none());
    let response = send(&app, with("x-set-auth", "1")).await;
    assert_eq!(
        response.headers()["authorization"],
        "Bearer from-handler",
        "the handler's token is kept"
    );
    let mut options = get(login.token());
    *options.method_mut() = Method::OPTIONS;
    assert!(renewed(&send(&app, options).await).is_none());
}

#[tokio::test]
async fn grpc_error_status_is_not_renewed() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(45));
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|_req: Request<()>| async {
            let mut response = http::Response::new(String::new());
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("7"));
            Ok::<_, std::convert::Infallible>(response)
        }),
    );
    let response = tower::ServiceExt::oneshot(service, get(login.token()))
        .await
        .unwrap();
    assert!(renewed(&response).is_none());
}

#[tokio::test]
async fn tokens_without_auth_time_are_never_renewed() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let json = format!(
        r#"{{"iss":"demo","aud":"api","iat":{},"exp":{}}}"#,
        T0 - 3000,
        T0 + 600
    );
    let response = send(&app(&layer), get(&forge_hs256(&json))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed(&response).is_none());
}

#[tokio::test]
async fn parallel_requests_with_one_old_token_get_one_replacement() {
    let clock = clock();
    let layer = layer_with(es256(), &clock);
    let app = app(&layer);
    let a = layer.issuer().issue(user("alice", "admin")).unwrap();
    let b = layer.issuer().issue(user("bob", "user")).unwrap();
    clock.advance(minutes(45));
    let requests = (0..16).map(|i| {
        let app = app.clone();
        let token = if i % 2 == 0 {
            a.token().to_owned()
        } else {
            b.token().to_owned()
        };
        tokio::spawn(async move { (i % 2, renewed(&send(&app, get(&token)).await).unwrap()) })
    });
    let mut seen = [Vec::new(), Vec::new()];
    for handle in requests {
        let (who, token) = handle.await.unwrap();
        seen[who].push(token);
    }
    for tokens in &seen {
        assert_eq!(tokens.len(), 8);
        assert!(
            tokens.iter().all(|t| t == &tokens[0]),
            "one replacement per old token"
        );
    }
    assert_ne!(seen[0][0], seen[1][0]);
    assert_eq!(payload(&seen[0][0])["sub"], "alice");
    assert_eq!(payload(&seen[1][0])["sub"], "bob");
    // A request that arrives later with the old token still gets the same one.
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        renewed(&send(&app, get(a.token())).await).unwrap(),
        seen[0][0]
    );
}

#[tokio::test]
async fn cookie_tokens_are_renewed_into_a_cookie() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(tower_sliding_jwt::BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(50));
    let request = Request::get("/")
        .header("cookie", format!("theme=dark; session={}", login.token()))
        .body(())
        .unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !response.headers().contains_key("authorization"),
        "delivered on the cookie channel only"
    );
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(response.headers()["set-cookie"].is_sensitive());
    assert!(cookie.starts_with("session="));
    assert!(
        cookie.contains("; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=3600; Expires="),
        "{cookie}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = cookie
        .trim_start_matches("session=")
        .split(';')
        .next()
        .unwrap();
    assert_eq!(payload(token)["sid"], payload(login.token())["sid"]);

    // Bearer wins when both are present, and the renewal follows it.
    let both = Request::get("/")
        .header("authorization", format!("Bearer {}", login.token()))
        .header("cookie", "session=garbage")
        .body(())
        .unwrap();
    let response = send(&app, both).await;
    assert!(renewed(&response).is_some());
    assert!(!response.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn custom_response_header() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(
            tower_sliding_jwt::BearerHeader::new()
                .with_response_header("x-renewed-token")
                .unwrap(),
        )
        .build()
        .unwrap();
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(50));
    let response = send(&app(&layer), get(login.token())).await;
    assert!(
        response.headers()["x-renewed-token"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ey")
    );
    assert!(!response.headers().contains_key("authorization"));
}

#[tokio::test]
async fn key_rotation_moves_live_sessions_to_the_active_key() {
    let clock = clock();
    let old_key = hs256().with_kid("2026-10").unwrap();
    let old_layer = SlidingJwtLayer::<_, Claimset>::builder(old_key.clone())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let login = old_layer.issuer().issue(user("alice", "admin")).unwrap();
    assert_eq!(header(login.token())["kid"], "2026-10");

    let active = es256().with_kid("2026-11").unwrap();
    let ring = KeyRing::new(active)
        .unwrap()
        .with_verification_key(old_key)
        .unwrap();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(ring)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let app = app(&layer);
    // Before the window: the retired key still verifies.
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed(&response).is_none());
    // In the window: renewed under the active key, alg and kid from that key.
    clock.advance(minutes(45));
    let token = renewed(&send(&app, get(login.token())).await).unwrap();
    assert_eq!(header(&token)["alg"], "ES256");
    assert_eq!(header(&token)["kid"], "2026-11");
    assert_eq!(payload(&token)["sid"], payload(login.token())["sid"]);
    assert_eq!(send(&app, get(&token)).await.status(), StatusCode::OK);
    // The old layer cannot verify the new token: the migration is real.
    assert_eq!(
        send(&app_old(&old_layer), get(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

fn app_old(
    layer: &SlidingJwtLayer<Key, Claimset>,
) -> impl tower::Service<
    Request<()>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
> + Clone {
    app(layer)
}

#[tokio::test]
async fn login_tokens_start_new_sessions() {
    let clock = clock();
    let layer = layer_with(eddsa(), &clock);
    let first = layer.issuer().issue(user("alice", "admin")).unwrap();
    let second = layer.issuer().issue(user("alice", "admin")).unwrap();
    let (a, b) = (payload(first.token()), payload(second.token()));
    assert_ne!(a["sid"], b["sid"]);
    assert_ne!(a["jti"], b["jti"]);
    assert_eq!(a["auth_time"], T0);
    assert_eq!(first.expires_at(), T0 + 3600);
    assert_eq!(first.lifetime(), 3600);
    assert_eq!(header(first.token())["typ"], "JWT");
    assert_eq!(
        send(&app(&layer), get(first.token())).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn renewal_with_es256_and_eddsa() {
    for key in [es256(), eddsa()] {
        let clock = clock();
        let layer = layer_with(key, &clock);
        let app = app(&layer);
        let login = layer.issuer().issue(user("alice", "admin")).unwrap();
        clock.advance(minutes(50));
        let token = renewed(&send(&app, get(login.token())).await).unwrap();
        clock.advance(minutes(30));
        assert_eq!(
            send(&app, get(login.token())).await.status(),
            StatusCode::UNAUTHORIZED,
            "old token expired"
        );
        assert_eq!(
            send(&app, get(&token)).await.status(),
            StatusCode::OK,
            "new token lives on"
        );
    }
}

#[tokio::test]
async fn rejected_requests_are_never_renewed() {
    let clock = clock();
    let layer = layer_with(hs256(), &clock);
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(50));
    // In the window, but tampered: refused, and nothing is signed.
    let mut tampered = login.token().to_owned();
    tampered.pop();
    tampered.push(if login.token().ends_with('A') {
        'B'
    } else {
        'A'
    });
    let response = send(&app, get(&tampered)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key("authorization"));
    assert!(!response.headers().contains_key("cache-control"));
    // Expired beyond the leeway: refused, not revived.
    clock.advance(minutes(11));
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(renewed(&response).is_none());
}

#[tokio::test]
async fn leeway_never_lengthens_a_renewed_token() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_leeway(Duration::from_secs(60))
        .with_max_session(minutes(100))
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(59));
    let token = renewed(&send(&app, get(login.token())).await).unwrap();
    assert_eq!(
        payload(&token)["exp"],
        T0 + 100 * 60,
        "capped exactly, leeway not added"
    );
    assert_eq!(payload(&token)["iat"], T0 + 59 * 60);
}

// ---- Success only, whatever the policy ------------------------------------

#[tokio::test]
async fn a_custom_policy_without_success_only_still_never_renews_on_errors() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_policy((
            RenewWindow::absolute(Duration::from_secs(1200)).unwrap(),
            Throttle::new(Duration::from_secs(60)).unwrap(),
        ))
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    for status in ["500", "404", "401", "403", "503"] {
        let mut request = get(login.token());
        request
            .headers_mut()
            .insert("x-status", status.parse().unwrap());
        let response = send(&app, request).await;
        assert!(renewed(&response).is_none(), "renewed on {status}");
    }
    // gRPC: an error status in the headers (trailers-only) is an error too.
    let grpc = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_policy(RenewWindow::absolute(Duration::from_secs(1200)).unwrap())
        .with_responder(GrpcResponder)
        .build()
        .unwrap();
    let service = grpc.layer(service_fn(|_req: Request<()>| async {
        let mut response = Response::new(String::new());
        response
            .headers_mut()
            .insert("grpc-status", "13".parse().unwrap());
        Ok::<_, Infallible>(response)
    }));
    let login = grpc.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let response = service.oneshot(get(login.token())).await.unwrap();
    assert!(renewed(&response).is_none(), "renewed on a gRPC error");
    // And the same policy does renew a success.
    let app = common::app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    assert!(renewed(&send(&app, get(login.token())).await).is_some());
}

// ---- Never renewed inside the leeway after exp ----------------------------

#[tokio::test]
async fn a_token_past_exp_is_accepted_within_the_leeway_but_never_renewed() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_leeway(Duration::from_secs(60))
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let exp = login.expires_at();
    for late in [0, 1, 59] {
        clock.set(exp + late);
        let response = send(&app, get(login.token())).await;
        assert_eq!(response.status(), StatusCode::OK, "{late} s late: accepted");
        assert!(renewed(&response).is_none(), "{late} s late: renewed");
    }
    clock.set(exp + 60);
    let response = send(&app, get(login.token())).await;
    assert_eq!(rejection(&response), Some(RejectionKind::Expired));
    // One second before exp it is still renewed.
    clock.set(exp - 1);
    assert!(renewed(&send(&app, get(login.token())).await).is_some());
}

// ---- Never a token over the size limit ------------------------------------

#[tokio::test]
async fn a_token_over_the_size_limit_is_never_issued_or_renewed() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_max_token_bytes(400)
        .build()
        .unwrap();
    let app = app(&layer);
    let mut big = user("alice", "user");
    big.extra.insert("pad".into(), "x".repeat(300).into());
    assert_eq!(
        layer.issuer().issue(big).unwrap_err().kind(),
        IssueErrorKind::TooLarge
    );
    // A token that fits, but whose renewal would not (a new 22-character
    // `jti` replaces the one-character one), signed elsewhere with the key.
    let forged = |pad: usize| {
        forge_hs256(&format!(
            r#"{{"sub":"alice","pad":"{}","iat":{T0},"exp":{},"auth_time":{T0},"sid":"s","jti":"j"}}"#,
            "y".repeat(pad),
            T0 + 3600
        ))
    };
    let token = (0..400)
        .map(forged)
        .take_while(|t| t.len() <= 400)
        .last()
        .unwrap();
    assert!(token.len() > 390, "{}", token.len());
    clock.advance(minutes(45));
    let response = send(&app, get(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_none(),
        "a token the layer would refuse was issued"
    );
}

// ---- A request that outlives its token renews nothing ----------------------

#[tokio::test]
async fn a_request_that_outlives_the_tokens_exp_gets_no_replacement() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let signal = gate.clone();
    let app = layer.layer(service_fn(move |_request: Request<()>| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    }));
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    // Inside the renew window when the request starts...
    clock.set(login.expires_at() - 60);
    let request = app.oneshot(get(login.token()));
    let later = async {
        // ...and past `exp` + leeway when it ends: a revocation by `jti`
        // would already be forgotten, so nothing may be issued.
        clock.set(login.expires_at() + 10);
        signal.notify_one();
    };
    let (response, ()) = tokio::join!(request, later);
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "admitted while valid");
    assert!(
        renewed(&response).is_none(),
        "renewed after the token expired"
    );
}

// ---- Activity (rule 17) -----------------------------------------------------

#[tokio::test]
async fn a_request_that_is_not_activity_is_served_and_checked_but_never_renews() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_activity_rule(|method, uri, _| {
            !(method == http::Method::GET && uri.path() == "/poll")
        })
        .build()
        .unwrap();
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let poll = |token: &str| {
        http::Request::get("/poll")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    let response = send(&app, poll(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK, "served as usual");
    assert_eq!(renewed(&response), None, "a poll never slides the session");
    // Every other request is activity.
    assert!(renewed(&send(&app, get(login.token())).await).is_some());
    // A poll is still verified and checked against revocation.
    let sid = login.claims().registered.sid.clone().unwrap();
    layer.revoker().revoke_session(&sid).await.unwrap();
    assert_eq!(
        rejection(&send(&app, poll(login.token())).await),
        Some(RejectionKind::Revoked)
    );
    // Polling alone lets the session time out.
    let other = layer.issuer().issue(user("bob", "user")).unwrap();
    for _ in 0..4 {
        clock.advance(minutes(15));
        let _ = send(&app, poll(other.token())).await;
    }
    clock.advance(minutes(1));
    assert_eq!(
        rejection(&send(&app, poll(other.token())).await),
        Some(RejectionKind::Expired)
    );
}

#[tokio::test]
async fn a_handler_can_say_its_request_is_not_activity() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let app = layer.layer(tower::service_fn(|request: http::Request<()>| async move {
        if let Some(session) = request
            .extensions()
            .get::<tower_sliding_jwt::Session<Claimset>>()
        {
            session.mark_not_activity();
        }
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    }));
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response), None);
}
