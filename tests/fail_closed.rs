//! Regression tests for the edges that used to fail open: each test names the
//! rule it guards and failed before the fix.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    Algorithm, BearerHeader, BoxFuture, CookieSource, DecodingKey, EncodingKey, GrpcResponder,
    IssueErrorKind, Key, Lookup, ManualClock, MemoryStore, RejectionKind, RenewWindow, Revocation,
    RevocationStore, Session, SlidingJwtLayer, StoreError, StoreErrorKind, Throttle, TokenIds,
};

// ---- Finding 1: every HMAC constructor enforces the minimum length --------

#[tokio::test]
async fn an_empty_hmac_key_built_any_way_is_refused_so_attacker_tokens_never_verify() {
    let clock = clock();
    let attacker = forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims_json(T0, T0 + 600, T0),
        &EncodingKey::from_secret(b""),
        Algorithm::HS256,
    );
    let new = Key::new(
        Algorithm::HS256,
        EncodingKey::from_secret(b""),
        DecodingKey::from_secret(b""),
    );
    assert_eq!(
        new.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::WeakSecret
    );
    let verifying = Key::verifying(Algorithm::HS256, DecodingKey::from_secret(b"short"));
    assert_eq!(
        verifying.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::WeakSecret
    );
    // The same forged token against a properly keyed layer: refused.
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let response = send(&app(&layer), get(&attacker)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidSignature));
}

// ---- Finding 2: success-only is the core's rule ---------------------------

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

// ---- Finding 3: never renewed inside the leeway after exp -----------------

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

// ---- Finding 4: renew_with supersedes the previous token ------------------

/// `x-demote` re-issues the token with `role: user`.
async fn demoting(request: Request<()>) -> Result<Response<String>, Infallible> {
    if request.headers().contains_key("x-demote")
        && let Some(session) = request.extensions().get::<Session<Claimset>>()
    {
        let mut claims = session.claims().clone();
        claims.extra.insert("role".into(), "user".into());
        session.renew_with(claims);
    }
    Ok(Response::new(String::new()))
}

#[tokio::test]
async fn renew_with_retires_the_previous_token_so_old_claims_stop_sliding() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let app = layer.layer(service_fn(demoting));
    let admin = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(45));

    // A parallel request already renewed the admin token (old claims).
    let sibling = renewed(&send(&app, get(admin.token())).await).expect("renewed");
    assert_eq!(payload(&sibling)["role"], "admin");

    let mut demote = get(admin.token());
    demote
        .headers_mut()
        .insert("x-demote", "1".parse().unwrap());
    let response = send(&app, demote).await;
    let demoted = renewed(&response).expect("renew_with's token");
    assert_eq!(payload(&demoted)["role"], "user");

    // The pre-demotion token and its earlier replacement are retired...
    for old in [admin.token(), sibling.as_str()] {
        let response = send(&app, get(old)).await;
        assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
    }
    // ...and the demoted token keeps sliding.
    assert_eq!(send(&app, get(&demoted)).await.status(), StatusCode::OK);
    clock.advance(minutes(45));
    let next = renewed(&send(&app, get(&demoted)).await).expect("slides");
    assert_eq!(payload(&next)["role"], "user");
    assert_eq!(payload(&next)["sid"], payload(admin.token())["sid"]);
}

#[tokio::test]
async fn renew_with_issues_nothing_when_the_old_token_cannot_be_retired() {
    let clock = clock();
    let store = FlakyStore::default();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store.clone())
        .build()
        .unwrap();
    let app = layer.layer(service_fn(demoting));
    let admin = layer.issuer().issue(user("alice", "admin")).unwrap();
    store.refuse_writes.store(true, Ordering::SeqCst);
    let mut demote = get(admin.token());
    demote
        .headers_mut()
        .insert("x-demote", "1".parse().unwrap());
    let response = send(&app, demote).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_none(),
        "the old token could not be retired: no second token with other claims"
    );
}

// ---- Finding 5: the re-check before a renewal fails closed ----------------

/// A store whose checks are asynchronous and whose answers can be scripted.
#[derive(Clone, Default)]
struct FlakyStore {
    memory: MemoryStore,
    /// Answer with an error from the `n`-th check on (0 = never).
    fail_from: Arc<AtomicUsize>,
    /// Revoke the session on the second check (a revocation landing mid-request).
    revoke_on_second: Arc<AtomicBool>,
    pending: Arc<AtomicBool>,
    refuse_writes: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
}

impl RevocationStore for FlakyStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        let n = self.checks.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_from = self.fail_from.load(Ordering::SeqCst);
        if n == 2 && self.revoke_on_second.load(Ordering::SeqCst) {
            let revocation = Revocation {
                target: tower_sliding_jwt::RevocationTarget::Session(token.sid.unwrap().to_owned()),
                until: now + 86_400,
            };
            self.memory.insert(&revocation, now).unwrap();
        }
        let answer = if fail_from != 0 && n >= fail_from {
            Err(StoreError::new(StoreErrorKind::Unavailable, None))
        } else {
            Ok(self.memory.status(token, now))
        };
        if self.pending.load(Ordering::SeqCst) {
            Lookup::Pending(Box::pin(async move {
                tokio::task::yield_now().await;
                answer
            }))
        } else {
            Lookup::Ready(answer)
        }
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.refuse_writes.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::new(StoreErrorKind::Unavailable, None)) });
        }
        self.memory.revoke(revocation, now)
    }
}

#[tokio::test]
async fn the_recheck_before_a_renewal_fails_closed_ready_or_pending() {
    for pending in [false, true] {
        for (case, fail_from, revoke_on_second) in
            [("store error", 2, false), ("revoked mid-request", 0, true)]
        {
            let clock = clock();
            let store = FlakyStore::default();
            store.pending.store(pending, Ordering::SeqCst);
            store.fail_from.store(fail_from, Ordering::SeqCst);
            store
                .revoke_on_second
                .store(revoke_on_second, Ordering::SeqCst);
            let layer = SlidingJwtLayer::builder(hs256())
                .with_clock(clock.clone())
                .with_revocation_store(store.clone())
                .build()
                .unwrap();
            let app = app(&layer);
            let login = layer.issuer().issue(user("alice", "user")).unwrap();
            clock.advance(minutes(45));
            let response = send(&app, get(login.token())).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{case}, pending={pending}"
            );
            assert_eq!(store.checks.load(Ordering::SeqCst), 2);
            assert!(
                renewed(&response).is_none(),
                "{case}, pending={pending}: a replacement was issued"
            );
        }
    }
}

// ---- Finding 8: cross-site requests with cookie sessions ------------------

fn cookie_layer(clock: &ManualClock) -> tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset> {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
}

/// A logout handler that counts its calls.
fn logout_app(
    layer: &SlidingJwtLayer<Key, Claimset>,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(service_fn(move |request: Request<()>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let session = request.extensions().get::<Session<Claimset>>().cloned();
            if let Some(session) = session {
                session.end().await.unwrap();
            }
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok::<_, Infallible>(response)
        }
    }))
}

fn logout(token: &str, by_cookie: bool, headers: &[(&'static str, &'static str)]) -> Request<()> {
    let mut request = Request::post("/logout").header("host", "app.example");
    request = if by_cookie {
        request.header("cookie", format!("session={token}"))
    } else {
        request.header("authorization", format!("Bearer {token}"))
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

#[tokio::test]
async fn cross_site_unsafe_requests_with_the_session_cookie_are_refused() {
    let clock = clock();
    let layer = cookie_layer(&clock).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = logout_app(&layer, calls.clone());
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let token = login.token();

    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
        ],
    ] {
        let response = send(&app, logout(token, true, headers)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(rejection(&response), Some(RejectionKind::CrossSiteRequest));
        assert!(response.headers().get("www-authenticate").is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    assert!(
        layer.issuer().verify(token).await.is_ok(),
        "nothing was revoked"
    );

    // Same-origin, a typed URL, a matching Origin, or no browser headers: pass.
    for headers in [
        &[("sec-fetch-site", "same-origin")][..],
        &[("sec-fetch-site", "none")],
        &[("origin", "https://app.example")],
        &[],
    ] {
        let fresh = layer.issuer().issue(user("alice", "user")).unwrap();
        let response = send(&app, logout(fresh.token(), true, headers)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{headers:?}");
    }
    // A bearer token is unaffected by the browser's headers.
    let fresh = layer.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(fresh.token(), false, &[("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn trusted_origins_and_the_opt_out() {
    let clock = clock();
    let layer = cookie_layer(&clock)
        .with_trusted_origin("https://admin.example")
        .build()
        .unwrap();
    let app = logout_app(&layer, Arc::default());
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(
            login.token(),
            true,
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.example"),
            ],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let open = cookie_layer(&clock)
        .with_cross_origin_protection(false)
        .build()
        .unwrap();
    let app = logout_app(&open, Arc::default());
    let login = open.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(login.token(), true, &[("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let bad = cookie_layer(&clock)
        .with_trusted_origin("https://a.example/path")
        .build();
    assert_eq!(
        bad.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::InvalidOrigin
    );
}

#[tokio::test]
async fn cross_site_refusals_over_grpc_are_permission_denied() {
    let clock = clock();
    let layer = cookie_layer(&clock)
        .with_responder(GrpcResponder)
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let mut request = logout(login.token(), true, &[("sec-fetch-site", "cross-site")]);
    *request.method_mut() = Method::POST;
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
}

// ---- Finding 10: renewals larger than the size limit ----------------------

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
