//! Session control: revocation, revalidation on renewal, logout and
//! renew-with (which retires the token it replaces), through `oneshot` and a
//! manual clock. Revocation stores of the application's own (asynchronous,
//! failing, shared behind an `Arc`), the re-check before a renewal, which
//! fails closed, and revalidation hooks over owned claims.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    BearerHeader, BoxFuture, CookieSource, GrpcResponder, Key, ManualClock, MemoryStore, Rejection,
    RejectionKind, Session, SlidingJwtLayer, StandardClaims, StoreError, StoreErrorKind, Verdict,
    store::{Lookup, Revocation, RevocationStore, TokenIds},
};

type Builder = tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset>;

fn builder(clock: &ManualClock) -> Builder {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
}

/// A handler with session control: `x-logout` ends the session, `x-promote`
/// re-issues the token with `role: admin`, `x-wait` waits for a signal.
async fn handler(
    request: Request<()>,
    gate: Arc<tokio::sync::Notify>,
) -> Result<Response<String>, Infallible> {
    let session = request.extensions().get::<Session<Claimset>>().cloned();
    if request.headers().contains_key("x-wait") {
        gate.notified().await;
    }
    let mut status = StatusCode::OK;
    if let Some(session) = session {
        if request.headers().contains_key("x-logout") {
            status = match session.end().await {
                Ok(()) => StatusCode::NO_CONTENT,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
        }
        if request.headers().contains_key("x-promote") {
            let mut claims = session.claims().clone();
            claims.extra.insert("role".into(), "admin".into());
            // Changing the session's identity is ignored by the layer.
            claims.registered.sid = Some("forged".into());
            claims.registered.auth_time = Some(0);
            session.renew_with(claims);
        }
    }
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    Ok(response)
}

fn app(
    layer: &SlidingJwtLayer<Key, Claimset>,
) -> (
    impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<tokio::sync::Notify>,
) {
    let gate = Arc::new(tokio::sync::Notify::new());
    let signal = gate.clone();
    let service = layer.layer(service_fn(move |request| handler(request, gate.clone())));
    (service, signal)
}

fn with(token: &str, header: &'static str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .header(header, "1")
        .body(())
        .unwrap()
}

fn cookie(token: &str) -> Request<()> {
    Request::get("/")
        .header("cookie", format!("session={token}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45)); // inside the renew window: logout must still not renew

    let mut request = cookie(login.token());
    request
        .headers_mut()
        .insert("x-logout", "1".parse().unwrap());
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .collect::<Vec<_>>();
    assert_eq!(cleared.len(), 1, "only the clearing cookie, no renewal");
    assert_eq!(
        cleared[0],
        "session=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    );
    assert!(response.headers().get("authorization").is_none());

    for request in [cookie(login.token()), get(login.token())] {
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&response), INVALID_TOKEN);
        assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
    }
    // Another session of the same user is untouched.
    let other = layer.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(
        send(&app, get(other.token())).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_token_of_a_revoked_session_is_refused_and_never_renewed() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let renewed_token = renewed(&send(&app, get(login.token())).await).unwrap();
    let sid = login.claims().registered.sid.clone().unwrap();
    layer.revoker().revoke_session(&sid).await.unwrap();
    for token in [login.token(), renewed_token.as_str()] {
        let response = send(&app, get(token)).await;
        assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
        assert!(renewed(&response).is_none());
    }
}

#[tokio::test]
async fn revoking_one_token_leaves_the_rest_of_the_session() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let next = renewed(&send(&app, get(login.token())).await).unwrap();
    layer
        .revoker()
        .revoke_token(login.claims().registered.jti.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        rejection(&send(&app, get(login.token())).await),
        Some(RejectionKind::Revoked)
    );
    assert_eq!(send(&app, get(&next)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn log_out_everywhere_spares_only_later_logins() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, _) = app(&layer);
    let phone = layer.issuer().issue(user("alice", "user")).unwrap();
    let laptop = layer.issuer().issue(user("alice", "user")).unwrap();
    let bob = layer.issuer().issue(user("bob", "user")).unwrap();
    clock.advance(minutes(10));
    layer.revoker().revoke_subject("alice").await.unwrap();
    // Password change flow: the current device logs in again at once.
    let fresh = layer.issuer().issue(user("alice", "user")).unwrap();
    for token in [phone.token(), laptop.token()] {
        assert_eq!(
            rejection(&send(&app, get(token)).await),
            Some(RejectionKind::Revoked)
        );
    }
    assert_eq!(
        send(&app, get(fresh.token())).await.status(),
        StatusCode::OK
    );
    assert_eq!(send(&app, get(bob.token())).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revocations_are_forgotten_after_the_session_cap() {
    let clock = clock();
    let store = MemoryStore::new();
    let layer = builder(&clock)
        .with_revocation_store(store.clone())
        .with_max_session(minutes(120))
        .build()
        .unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let mut request = get(login.token());
    request
        .headers_mut()
        .insert("x-logout", "1".parse().unwrap());
    assert_eq!(send(&app, request).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(store.len(), 1);
    // Past the cap (plus leeway) no token of the session can verify: the entry goes.
    clock.advance(minutes(120) + Duration::from_secs(5));
    store.purge(tower_sliding_jwt::Clock::now(&clock));
    assert_eq!(store.len(), 0);
    // Entries are also dropped while revoking, without an explicit purge.
    let other = layer.issuer().issue(user("bob", "user")).unwrap();
    layer
        .revoker()
        .revoke_session(other.claims().registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    clock.advance(minutes(200));
    layer.revoker().revoke_session("another").await.unwrap();
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn renew_with_issues_updated_claims_for_the_same_session() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(5)); // far from the window: renew_with does not wait for it
    let response = send(&app, with(login.token(), "x-promote")).await;
    let token = renewed(&response).expect("a new token with the new role");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (old, new) = (payload(login.token()), payload(&token));
    assert_eq!(new["role"], "admin");
    assert_eq!(new["sid"], old["sid"], "the session's identity is kept");
    assert_eq!(new["auth_time"], old["auth_time"]);
    assert_ne!(new["jti"], old["jti"]);
    assert_eq!(new["iat"], T0 + 300);
    assert_eq!(new["exp"], T0 + 300 + 3600);
    assert_eq!(send(&app, get(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revalidation_runs_only_for_renewals_and_decides_them() {
    for (verdict, expect_status, expect_renewal) in [
        (Verdict::Approve, StatusCode::OK, Some("user")),
        (
            Verdict::Update(user("alice", "auditor")),
            StatusCode::OK,
            Some("auditor"),
        ),
        (Verdict::Veto, StatusCode::OK, None),
        (Verdict::Reject, StatusCode::UNAUTHORIZED, None),
    ] {
        let clock = clock();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let layer = builder(&clock)
            .with_revalidation(move |claims: &Claimset| {
                counter.fetch_add(1, Ordering::SeqCst);
                assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
                let verdict = verdict.clone();
                async move { verdict }
            })
            .build()
            .unwrap();
        let (app, _) = app(&layer);
        let login = layer.issuer().issue(user("alice", "user")).unwrap();
        assert_eq!(
            send(&app, get(login.token())).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "no renewal due: the hook is not called"
        );

        clock.advance(minutes(45));
        let response = send(&app, get(login.token())).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(response.status(), expect_status);
        let role = renewed(&response).map(|t| payload(&t)["role"].as_str().unwrap().to_owned());
        assert_eq!(role.as_deref(), expect_renewal);
        if expect_status == StatusCode::UNAUTHORIZED {
            assert_eq!(rejection(&response), Some(RejectionKind::SessionRejected));
            assert_eq!(challenge(&response), INVALID_TOKEN);
        }
        if let Some(token) = renewed(&response) {
            assert_eq!(payload(&token)["sid"], payload(login.token())["sid"]);
        }
    }
}

#[tokio::test]
async fn a_revocation_during_the_request_yields_no_live_token() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, gate) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    // The request passes the revocation check, then waits inside the handler
    // (`join!` polls it first); meanwhile the session is revoked.
    let request = app.clone().oneshot(with(login.token(), "x-wait"));
    let revoke = async {
        layer
            .revoker()
            .revoke_session(login.claims().registered.sid.as_deref().unwrap())
            .await
            .unwrap();
        gate.notify_one();
    };
    let (response, ()) = tokio::join!(request, revoke);
    let response = response.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the request was admitted before the revocation"
    );
    assert!(
        renewed(&response).is_none(),
        "but no replacement is issued for a revoked session"
    );
    assert_eq!(
        rejection(&send(&app, get(login.token())).await),
        Some(RejectionKind::Revoked)
    );
}

/// A store that answers over "the network": every check is `Pending`, and it
/// can be switched to fail.
#[derive(Clone, Default)]
struct RemoteStore {
    memory: MemoryStore,
    down: Arc<std::sync::atomic::AtomicBool>,
    checks: Arc<AtomicUsize>,
    /// Fail every check from this one on (0 = never).
    fail_from: Arc<AtomicUsize>,
}

impl RevocationStore for RemoteStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        let n = self.checks.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_from = self.fail_from.load(Ordering::SeqCst);
        let answer = if self.down.load(Ordering::SeqCst) || (fail_from != 0 && n >= fail_from) {
            Err(StoreError::new(StoreErrorKind::Unavailable, None))
        } else {
            Ok(self.memory.status(token, now))
        };
        Lookup::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            answer
        }))
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.memory.revoke(revocation, now)
    }
}

#[tokio::test]
async fn asynchronous_stores_are_awaited_and_fail_closed() {
    let clock = clock();
    let store = RemoteStore::default();
    let layer = builder(&clock)
        .with_revocation_store(store.clone())
        .build()
        .unwrap();
    let (app, _) = app(&layer);
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_some(),
        "renewal works after an asynchronous check"
    );
    assert_eq!(
        store.checks.load(Ordering::SeqCst),
        2,
        "checked on the request and before issuing"
    );

    let mut request = get(login.token());
    request
        .headers_mut()
        .insert("x-logout", "1".parse().unwrap());
    assert_eq!(send(&app, request).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        rejection(&send(&app, get(login.token())).await),
        Some(RejectionKind::Revoked)
    );

    store.down.store(true, Ordering::SeqCst);
    let other = layer.issuer().issue(user("bob", "user")).unwrap();
    let response = send(&app, get(other.token())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "not a credential problem"
    );
    assert_eq!(rejection(&response), Some(RejectionKind::StoreUnavailable));

    let grpc = builder(&clock)
        .with_revocation_store(store.clone())
        .with_responder(GrpcResponder)
        .build()
        .unwrap();
    let service = grpc.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = service.oneshot(get(other.token())).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");

    // The second answer decides: when it is an error, nothing is issued.
    store.down.store(false, Ordering::SeqCst);
    let again = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let checks = store.checks.load(Ordering::SeqCst);
    store.fail_from.store(checks + 2, Ordering::SeqCst);
    let response = send(&app, get(again.token())).await;
    assert_eq!(response.status(), StatusCode::OK, "the first check passed");
    assert_eq!(store.checks.load(Ordering::SeqCst), checks + 2);
    assert!(
        renewed(&response).is_none(),
        "the failed re-check blocks the renewal"
    );
}

#[tokio::test]
async fn a_store_error_on_logout_is_reported() {
    let clock = clock();
    let layer = builder(&clock)
        .with_revocation_store(MemoryStore::with_capacity(1))
        .build()
        .unwrap();
    let (app, _) = app(&layer);
    let a = layer.issuer().issue(user("alice", "user")).unwrap();
    let b = layer.issuer().issue(user("bob", "user")).unwrap();
    assert_eq!(
        send(&app, with(a.token(), "x-logout")).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = send(&app, with(b.token(), "x-logout")).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the handler saw StoreErrorKind::Full"
    );
    assert!(renewed(&response).is_none());
}

// ---- renew_with retires the token it replaces -----------------------------

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

    let demotion = demote(admin.token());
    let response = send(&app, demotion).await;
    let demoted = renewed(&response).expect("renew_with's token");
    assert_eq!(payload(&demoted)["role"], "user");

    // The pre-demotion token is retired...
    let response = send(&app, get(admin.token())).await;
    assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
    // ...its earlier replacement, which carries the old role, is never
    // served with it: its holder is served as the demoted token, and gets it
    // (a client keeping the latest `exp` may hold the sibling)...
    let response = send(&common::app(&layer), get(&sibling)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(seen["role"], "user", "the handler saw the old claims");
    assert_eq!(renewed(&response).as_deref(), Some(demoted.as_str()));
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
    let demotion = demote(admin.token());
    let response = send(&app, demotion).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_none(),
        "the old token could not be retired: no second token with other claims"
    );
}

// ---- The re-check before a renewal fails closed ---------------------------

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
                target: tower_sliding_jwt::store::RevocationTarget::Session(
                    token.sid.unwrap().to_owned(),
                ),
                until: now + 86_400,
                reason: None,
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
            let app = common::app(&layer);
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

// ---- Stores behind an `Arc`, hooks over owned claims ----------------------

#[tokio::test]
async fn stores_behind_an_arc_plug_in_and_stay_shared() {
    let memory = MemoryStore::new();
    let chosen: Arc<dyn RevocationStore> = Arc::new(memory.clone());
    let clock = ManualClock::new(T0);
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(chosen.clone())
        .build()
        .unwrap();
    let other = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
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
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
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
    let response = app.clone().oneshot(get(alice.token())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("authorization"), "renewed");
    let response = app.oneshot(get(mallory.token())).await.unwrap();
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::SessionRejected)
    );
    assert_eq!(queries.load(Ordering::SeqCst), 2);
}

// ---- Per-session lifetimes ("remember me") --------------------------------

#[tokio::test]
async fn a_session_keeps_its_own_lifetimes_across_renewals_and_instances_within_the_limits() {
    use tower_sliding_jwt::{IssueErrorKind, Lifetimes};
    let day = Duration::from_secs(86_400);
    let clock = clock();
    let limited = |clock: &tower_sliding_jwt::ManualClock| {
        SlidingJwtLayer::<_, Claimset>::builder(hs256())
            .with_clock(clock.clone())
            .with_max_session(day)
            .with_lifetime_limits(Lifetimes::new().with_max_session(30 * day))
            .build()
            .unwrap()
    };
    let (a, b) = (limited(&clock), limited(&clock));
    let remembered = a
        .issuer()
        .issue_with(
            user("alice", "user"),
            Lifetimes::new().with_max_session(30 * day),
        )
        .unwrap();
    let plain = a.issuer().issue(user("bob", "user")).unwrap();
    let auth_time = remembered.claims().registered.auth_time.unwrap();
    assert_eq!(
        remembered.claims().registered.session_exp,
        Some(auth_time + 30 * 86_400)
    );
    // Keep both sessions active for two days, alternating instances.
    let (mut alice, mut bob) = (remembered.into_token(), Some(plain.into_token()));
    for step in 0..(2 * 24 * 4) {
        clock.advance(minutes(45));
        let app = if step % 2 == 0 {
            common::app(&a)
        } else {
            common::app(&b)
        };
        let response = send(&app, get(&alice)).await;
        assert_eq!(response.status(), StatusCode::OK, "step {step}");
        if let Some(next) = renewed(&response) {
            assert_eq!(
                payload(&next)["session_exp"],
                auth_time + 30 * 86_400,
                "kept by renewals"
            );
            alice = next;
        }
        if let Some(token) = &bob {
            let response = send(&app, get(token)).await;
            if response.status() == StatusCode::UNAUTHORIZED {
                assert_eq!(rejection(&response), Some(RejectionKind::SessionExpired));
                bob = None;
            } else if let Some(next) = renewed(&response) {
                bob = Some(next);
            }
        }
    }
    assert!(
        bob.is_none(),
        "a session without its own lifetimes ends at the layer's day"
    );
    // A token can never ask for more than the layer allows.
    let error = a
        .issuer()
        .issue_with(
            user("mallory", "user"),
            Lifetimes::new().with_max_session(31 * day),
        )
        .unwrap_err();
    assert_eq!(error.kind(), IssueErrorKind::InvalidLifetime);
    // A forged `session_exp` beyond the limit is cut to the limit.
    let now = tower_sliding_jwt::Clock::now(&clock);
    let forged = forge_hs256(&format!(
        r#"{{"sub":"m","sid":"s","jti":"j","iat":{now},"exp":{},"auth_time":{},"session_exp":{}}}"#,
        now + 600,
        now - 31 * 86_400,
        now + 86_400
    ));
    let response = send(&common::app(&a), get(&forged)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::SessionExpired));
    // Without limits, a session may only ask for less.
    let default_limits = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let error = default_limits
        .issuer()
        .issue_with(
            user("alice", "user"),
            Lifetimes::new().with_max_session(2 * day),
        )
        .unwrap_err();
    assert_eq!(error.kind(), IssueErrorKind::InvalidLifetime);
    let short = default_limits
        .issuer()
        .issue_with(
            user("alice", "user"),
            Lifetimes::new().with_ttl(Duration::from_secs(600)),
        )
        .unwrap();
    assert_eq!(short.lifetime(), 600);
}

/// Echoes the claims the handler sees; `x-demote` re-issues the token with
/// `role: user` (`renew_with`).
async fn demoting_echo(request: Request<()>) -> Result<Response<String>, Infallible> {
    let session = request.extensions().get::<Session<Claimset>>().cloned();
    demoting(request).await?;
    let body = session.map_or_else(String::new, |session| {
        serde_json::to_string(session.claims()).unwrap()
    });
    Ok(Response::new(body))
}

/// The role a response's body says the handler saw.
fn role_seen(response: &Response<String>) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(response.body()).unwrap()["role"].clone()
}

/// A role change racing an ordinary renewal in the same second never logs
/// the user out, through the client layer: the poll's replacement (old role)
/// and the demoted token expire at the same second, the client keeps the
/// one it had first, and is served with the new role from then on — also
/// when it renews later.
#[tokio::test]
async fn a_role_change_racing_a_renewal_never_logs_the_client_out() {
    use tower::Layer as _;
    use tower_sliding_jwt::{ClientLayer, TokenStore};
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let server = layer.layer(service_fn(demoting_echo));
    let admin = layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(45));
    // Two requests with the same token in the same second: a poll renews it
    // (old role), a settings change demotes the user.
    let poll = renewed(&send(&server, get(admin.token())).await).expect("renewed");
    let demotion = demote(admin.token());
    let demoted = renewed(&send(&server, demotion).await).expect("renew_with's token");
    assert_eq!(payload(&poll)["exp"], payload(&demoted)["exp"]);
    // The poll's answer arrives first; the demoted token does not expire
    // later, so a client keeping the latest `exp` keeps the poll's.
    let tokens = TokenStore::new(&poll).with_clock(clock.clone());
    tokens.offer(&demoted);
    let client = ClientLayer::for_channel(tokens.clone()).layer(server.clone());
    for _ in 0..2 {
        let response = client
            .clone()
            .oneshot(Request::get("/me").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the role change logged the user out"
        );
        assert_eq!(role_seen(&response), "user", "served with the old role");
        assert!(tokens.token().is_some());
    }
    // Renewals go on from the demoted token.
    clock.advance(minutes(45));
    let response = client
        .clone()
        .oneshot(Request::get("/me").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(role_seen(&response), "user");
    let held = tokens.token().expect("a token");
    assert_eq!(payload(&held)["role"], "user");
    assert!(payload(&held)["exp"].as_i64() > payload(&demoted)["exp"].as_i64());
}

/// Older generations: T1 renewed into T2, T2 into T3, then `renew_with` on
/// T3. No earlier token of the session is served or renewed with the old
/// claims afterwards, whatever the single flight still holds.
#[tokio::test]
async fn renew_with_supersedes_every_earlier_generation_of_the_session() {
    let clock = clock();
    // A wide window, so three generations are valid at once.
    let layer = builder(&clock)
        .with_single_flight_capacity(1)
        .with_renew_window(tower_sliding_jwt::RenewWindow::absolute(minutes(50)).unwrap())
        .build()
        .unwrap();
    let server = layer.layer(service_fn(demoting_echo));
    let t1 = layer.issuer().issue(user("alice", "admin")).unwrap();
    let t1 = t1.token().to_owned();
    clock.advance(minutes(11));
    let t2 = renewed(&send(&server, get(&t1)).await).expect("t2");
    clock.advance(minutes(11));
    let t3 = renewed(&send(&server, get(&t2)).await).expect("t3");
    clock.advance(minutes(1));
    let demotion = demote(&t3);
    let t4 = renewed(&send(&server, demotion).await).expect("renew_with's token");
    assert_eq!(payload(&t4)["role"], "user");
    for old in [&t1, &t2, &t3] {
        let response = send(&server, get(old)).await;
        if response.status() == StatusCode::OK {
            assert_eq!(
                role_seen(&response),
                "user",
                "an old generation served with the old role"
            );
        } else {
            assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
        }
        assert!(
            renewed(&response).is_none_or(|token| payload(&token)["role"] == "user"),
            "an old generation renewed with the old role"
        );
    }
    let response = send(&server, get(&t4)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(role_seen(&response), "user");
}

/// A sibling signed while the `renew_with` handler still ran (an `iat`
/// later than that request's arrival) is superseded too: never served or
/// renewed with the old claims once the new token is out.
#[tokio::test]
async fn a_sibling_signed_while_renew_with_ran_is_superseded_too() {
    let clock = clock();
    let layer = builder(&clock).build().unwrap();
    let (app, gate) = app(&layer);
    let user_token = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    // The promotion arrives, and its handler waits (`join!` polls it
    // first)...
    let mut promote = with(user_token.token(), "x-promote");
    promote.headers_mut().insert("x-wait", "1".parse().unwrap());
    let promoting = app.clone().oneshot(promote);
    // ...while, two seconds later, a poll renews the same token with the
    // old role.
    let poll = async {
        clock.advance(Duration::from_secs(2));
        let sibling = renewed(&send(&app, get(user_token.token())).await).expect("renewed");
        gate.notify_one();
        sibling
    };
    let (promoted, sibling) = tokio::join!(promoting, poll);
    assert_eq!(payload(&sibling)["role"], "user");
    assert!(payload(&sibling)["iat"].as_i64() > Some(T0 + 45 * 60));
    let promoted = renewed(&promoted.unwrap()).expect("renew_with's token");
    assert_eq!(payload(&promoted)["role"], "admin");
    // The sibling is never served with the old role again.
    let response = send(&common::app(&layer), get(&sibling)).await;
    if response.status() == StatusCode::OK {
        assert_eq!(role_seen(&response), "admin", "served with the old role");
        assert_eq!(renewed(&response).as_deref(), Some(promoted.as_str()));
    } else {
        assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
    }
}
