//! A user's sessions: logins recorded, listed with their user agents, ended
//! one by one or all but the current, capped per user; the ready-made
//! routes behind the layer; ownership, hostile `sid`s and store failures.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::store::{
    Lookup, Revocation, RevocationStore, SessionRegistry, SessionRow, TokenIds,
};
use tower_sliding_jwt::{
    BoxFuture, ConfigErrorKind, IssueErrorKind, IssuedToken, Key, ManualClock, MemoryStore,
    OnLimit, SessionMetadata, SessionRoutes, SlidingJwtLayer, StoreError, StoreErrorKind,
};

type Layer_ = SlidingJwtLayer<Key, Claimset>;

fn layer_on(clock: &ManualClock, store: impl RevocationStore) -> Layer_ {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .build()
        .unwrap()
}

/// The layer around the session routes (under `/sessions`) and the echo
/// handler (everywhere else).
fn service(
    layer: &Layer_,
) -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(service_fn(|request: Request<()>| async move {
        if request.uri().path().starts_with("/sessions") {
            SessionRoutes::<Claimset>::new()
                .with_prefix("/sessions")
                .oneshot(request)
                .await
        } else {
            app_handler(request).await
        }
    }))
}

async fn app_handler(request: Request<()>) -> Result<Response<String>, Infallible> {
    let _ = request;
    Ok(Response::new("ok".to_owned()))
}

async fn login(layer: &Layer_, sub: &str, agent: &str) -> IssuedToken<Claimset> {
    let (parts, ()) = Request::post("/login")
        .header("user-agent", agent)
        .body(())
        .unwrap()
        .into_parts();
    layer
        .issuer()
        .login(&parts, user(sub, "user"))
        .await
        .unwrap()
}

fn call(method: &str, path: &str, token: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

async fn listed(
    app: &(impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone),
    token: &str,
) -> Vec<serde_json::Value> {
    let response = send(app, call("GET", "/sessions", token)).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    body["sessions"].as_array().unwrap().clone()
}

fn sid(issued: &IssuedToken<Claimset>) -> String {
    issued.claims().registered.sid.clone().unwrap()
}

#[tokio::test]
async fn two_logins_are_listed_with_their_user_agents_and_the_current_one_flagged() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let app = service(&layer);
    let phone = login(&layer, "alice", "Phone/1").await;
    clock.advance(std::time::Duration::from_secs(10));
    let laptop = login(&layer, "alice", "Laptop/2").await;
    login(&layer, "bob", "Other/3").await;
    let sessions = listed(&app, laptop.token()).await;
    assert_eq!(sessions.len(), 2, "bob's session is not alice's");
    // Most recently seen first; times in seconds; one current.
    assert_eq!(sessions[0]["sid"], sid(&laptop));
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[0]["user_agent"], "Laptop/2");
    assert_eq!(sessions[0]["created"], T0 + 10);
    assert_eq!(sessions[0]["last_seen"], T0 + 10);
    assert_eq!(sessions[1]["sid"], sid(&phone));
    assert_eq!(sessions[1]["current"], false);
    assert_eq!(sessions[1]["user_agent"], "Phone/1");
}

#[tokio::test]
async fn another_users_sid_is_not_found_and_stays_alive_and_hostile_sids_touch_nothing() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let app = service(&layer);
    let alice = login(&layer, "alice", "A").await;
    let bob = login(&layer, "bob", "B").await;
    let path = format!("/sessions/{}", sid(&bob));
    assert_eq!(
        send(&app, call("DELETE", &path, alice.token()))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&app, get(bob.token())).await.status(), StatusCode::OK);
    assert_eq!(layer.sessions().list("bob").await.unwrap().len(), 1);
    // Over-long, malformed, nested: 404, nothing ended.
    let long = format!("/sessions/{}", "a".repeat(10_000));
    for path in [
        long.as_str(),
        "/sessions/%2e%2e",
        "/sessions/a/b",
        "/sessions/*",
    ] {
        let response = send(&app, call("DELETE", path, alice.token())).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(layer.sessions().list("alice").await.unwrap().len(), 1);
    // A path only starting with the prefix is not under it.
    let second = login(&layer, "alice", "A2").await;
    let glued = format!("/sessions{}", sid(&second));
    assert_eq!(
        send(&app, call("DELETE", &glued, alice.token()))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get(second.token())).await.status(),
        StatusCode::OK
    );
    assert_eq!(layer.sessions().list("alice").await.unwrap().len(), 2);
    // Wrong methods name what is allowed.
    let response = send(&app, call("POST", "/sessions", alice.token())).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    // The admin handle checks ownership too.
    assert!(!layer.sessions().end("alice", &sid(&bob)).await.unwrap());
    assert_eq!(send(&app, get(bob.token())).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn ending_one_or_the_others_refuses_their_tokens_at_once() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let app = service(&layer);
    let one = login(&layer, "alice", "1").await;
    let two = login(&layer, "alice", "2").await;
    let three = login(&layer, "alice", "3").await;
    let path = format!("/sessions/{}", sid(&one));
    assert_eq!(
        send(&app, call("DELETE", &path, three.token()))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, get(one.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Gone from the list, and a second DELETE is 404.
    assert_eq!(listed(&app, three.token()).await.len(), 2);
    assert_eq!(
        send(&app, call("DELETE", &path, three.token()))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let response = send(&app, call("POST", "/sessions/end-others", three.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), r#"{"ended":1}"#);
    assert_eq!(
        send(&app, get(two.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, get(three.token())).await.status(),
        StatusCode::OK
    );
    let left = listed(&app, three.token()).await;
    assert_eq!(
        (left.len(), &left[0]["current"]),
        (1, &serde_json::Value::Bool(true))
    );
    // The current session ends too, recorded or not.
    let path = format!("/sessions/{}", sid(&three));
    assert_eq!(
        send(&app, call("DELETE", &path, three.token()))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, get(three.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let unrecorded = layer.issuer().issue(user("alice", "user")).unwrap();
    let path = format!("/sessions/{}", sid(&unrecorded));
    assert_eq!(
        send(&app, call("DELETE", &path, unrecorded.token()))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, get(unrecorded.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_login_past_the_limit_ends_the_least_recently_seen() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_max_sessions(2, OnLimit::EndLeastRecent)
        .build()
        .unwrap();
    let app = service(&layer);
    let first = login(&layer, "alice", "1").await;
    clock.advance(std::time::Duration::from_secs(60));
    let second = login(&layer, "alice", "2").await;
    // The first session renews: now the second is the least recently seen.
    clock.advance(std::time::Duration::from_secs(45 * 60));
    let response = send(&app, get(first.token())).await;
    let renewed = renewed(&response).expect("a renewal");
    clock.advance(std::time::Duration::from_secs(60));
    let third = login(&layer, "alice", "3").await;
    assert_eq!(
        send(&app, get(second.token())).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&app, get(&renewed)).await.status(), StatusCode::OK);
    let sids: Vec<_> = listed(&app, third.token())
        .await
        .iter()
        .map(|s| s["sid"].clone())
        .collect();
    assert_eq!(sids, [sid(&third), sid(&first)]);
    // Ties on last_seen: the oldest created goes; on both, the first recorded.
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_max_sessions(2, OnLimit::EndLeastRecent)
        .build()
        .unwrap();
    let a = login(&layer, "bob", "a").await;
    let b = login(&layer, "bob", "b").await;
    login(&layer, "bob", "c").await;
    let left: Vec<_> = layer
        .sessions()
        .list("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    assert!(
        left.contains(&sid(&b)) && !left.contains(&sid(&a)),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_refusing_limit_refuses_the_login_and_ends_nothing() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_max_sessions(1, OnLimit::Refuse)
        .build()
        .unwrap();
    let first = login(&layer, "alice", "1").await;
    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
    let refused = layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), IssueErrorKind::TooManySessions);
    assert_eq!(
        send(&service(&layer), get(first.token())).await.status(),
        StatusCode::OK
    );
    // Once the first ends, there is room again.
    assert_eq!(layer.sessions().end_all("alice").await.unwrap(), 1);
    layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap();
}

#[tokio::test]
async fn renewals_move_last_seen_and_unrecorded_sessions_are_served_but_never_listed() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let app = service(&layer);
    let recorded = login(&layer, "alice", "A").await;
    let unrecorded = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(std::time::Duration::from_secs(50 * 60));
    let renewed_recorded = renewed(&send(&app, get(recorded.token())).await).expect("renewed");
    let renewed_unrecorded = renewed(&send(&app, get(unrecorded.token())).await).expect("renewed");
    let sessions = layer.sessions().list("alice").await.unwrap();
    assert_eq!(sessions.len(), 1, "a renewal never adds a session");
    assert_eq!(sessions[0].last_seen.unix_timestamp(), T0 + 50 * 60);
    assert_eq!(sessions[0].created.unix_timestamp(), T0);
    // Listed while its newest token lives: past the first token's exp too.
    clock.advance(std::time::Duration::from_secs(30 * 60));
    assert_eq!(
        send(&app, get(&renewed_recorded)).await.status(),
        StatusCode::OK
    );
    assert_eq!(listed(&app, &renewed_unrecorded).await.len(), 1);
    assert_eq!(listed(&app, &renewed_unrecorded).await[0]["current"], false);
    // Idle past its newest exp: no longer listed.
    clock.advance(std::time::Duration::from_secs(60 * 60));
    assert!(layer.sessions().list("alice").await.unwrap().is_empty());
}

#[tokio::test]
async fn sessions_ended_by_logout_or_log_out_everywhere_are_not_listed() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let app = layer.layer(service_fn(|request: Request<()>| async move {
        let session = request
            .extensions()
            .get::<tower_sliding_jwt::Session<Claimset>>()
            .cloned()
            .unwrap();
        session.end().await.unwrap();
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let one = login(&layer, "alice", "1").await;
    login(&layer, "alice", "2").await;
    send(&app, get(one.token())).await;
    assert_eq!(layer.sessions().list("alice").await.unwrap().len(), 1);
    clock.advance(std::time::Duration::from_secs(1));
    layer.revoker().revoke_subject("alice").await.unwrap();
    assert!(layer.sessions().list("alice").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_million_logins_cannot_grow_a_users_sessions_past_the_limit() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::with_capacity(1000));
    let (parts, ()) = Request::post("/login")
        .header("user-agent", "x".repeat(100 * 1024))
        .body(())
        .unwrap()
        .into_parts();
    let issuer = layer.issuer();
    for _ in 0..3 * tower_sliding_jwt::MAX_SESSIONS_PER_SUBJECT {
        issuer.login(&parts, user("mallory", "user")).await.unwrap();
    }
    let sessions = layer.sessions().list("mallory").await.unwrap();
    assert_eq!(sessions.len(), tower_sliding_jwt::MAX_SESSIONS_PER_SUBJECT);
    assert!(
        sessions
            .iter()
            .all(|s| s.user_agent.as_ref().unwrap().len() == 256)
    );
    // Other users still log in.
    login(&layer, "alice", "A").await;
}

#[test]
fn max_sessions_is_checked_when_the_layer_is_built() {
    let zero = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_max_sessions(0, OnLimit::EndLeastRecent)
        .build()
        .unwrap_err();
    assert_eq!(zero.kind(), ConfigErrorKind::InvalidValue);
    let lacking = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_revocation_store(Failing::new(false).without_registry())
        .with_max_sessions(3, OnLimit::Refuse)
        .build()
        .unwrap_err();
    assert_eq!(lacking.kind(), ConfigErrorKind::StoreLacksPart);
}

/// A memory store whose registry (and, with `check`, its checks) fail on demand.
#[derive(Clone)]
struct Failing {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
    registry: bool,
}

impl Failing {
    fn new(failing: bool) -> Self {
        Self {
            inner: MemoryStore::new(),
            failing: Arc::new(AtomicBool::new(failing)),
            registry: true,
        }
    }

    fn without_registry(mut self) -> Self {
        self.registry = false;
        self
    }

    fn set(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn answer<T: Send + 'static>(
        &self,
        ok: BoxFuture<'static, Result<T, StoreError>>,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        if self.failing.load(Ordering::SeqCst) {
            Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())))
        } else {
            ok
        }
    }
}

impl RevocationStore for Failing {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        self.inner.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.revoke(revocation, now)
    }

    fn sessions(&self) -> Option<&dyn SessionRegistry> {
        self.registry.then_some(self as &dyn SessionRegistry)
    }
}

impl SessionRegistry for Failing {
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>> {
        self.answer(SessionRegistry::list(&self.inner, subject, now))
    }

    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())));
        }
        SessionRegistry::insert(&self.inner, row, remove, max_rows, now)
    }

    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())));
        }
        SessionRegistry::touch(&self.inner, subject, sid, last_seen, expires)
    }

    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.answer(SessionRegistry::remove(&self.inner, subject, sids))
    }
}

#[tokio::test]
async fn a_failing_registry_is_503_never_a_partial_answer_and_renews_nothing() {
    let clock = clock();
    let store = Failing::new(false);
    let layer = layer_on(&clock, store.clone());
    let app = service(&layer);
    let alice = login(&layer, "alice", "A").await;
    let other = login(&layer, "alice", "B").await;
    store.set(true);
    // A login the store cannot record hands out no token.
    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
    let refused = layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), IssueErrorKind::Store);
    for (method, path) in [
        ("GET", "/sessions".to_owned()),
        ("POST", "/sessions/end-others".to_owned()),
        ("DELETE", format!("/sessions/{}", sid(&other))),
    ] {
        let response = send(&app, call(method, &path, alice.token())).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(
        send(&app, get(other.token())).await.status(),
        StatusCode::OK,
        "nothing ended"
    );
    // A renewal the registry cannot follow is not handed out; the token
    // stays good, and the next request renews once the store is back.
    clock.advance(std::time::Duration::from_secs(50 * 60));
    for _ in 0..2 {
        // The second request finds the replacement in the single flight:
        // it is not handed out either while the registry cannot follow.
        let response = send(&app, get(alice.token())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(renewed(&response), None);
    }
    store.set(false);
    clock.advance(std::time::Duration::from_secs(2 * 60));
    assert!(renewed(&send(&app, get(alice.token())).await).is_some());
    let _ = SessionMetadata::none();
}

#[tokio::test]
async fn renew_with_moves_the_rows_expiry_too() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let demoter = layer.layer(service_fn(demoting));
    let alice = login(&layer, "alice", "A").await;
    clock.advance(std::time::Duration::from_secs(10 * 60));
    let demoted =
        renewed(&send(&demoter, demote(alice.token())).await).expect("renew_with's token");
    // Past the first token's exp, inside the new one's: still listed.
    clock.advance(std::time::Duration::from_secs(55 * 60));
    let sessions = layer.sessions().list("alice").await.unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "a session renew_with kept alive is listed"
    );
    assert_eq!(sessions[0].last_seen.unix_timestamp(), T0 + 10 * 60);
    assert_eq!(
        sessions[0].expires.unix_timestamp(),
        payload(&demoted)["exp"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn a_session_ended_outside_a_request_stays_ended_past_its_recorded_cap() {
    use tower_sliding_jwt::store::RevocationStatus;
    let clock = clock();
    let store = MemoryStore::new();
    let day = std::time::Duration::from_secs(86_400);
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store.clone())
        .with_lifetime_limits(tower_sliding_jwt::Lifetimes::new().with_max_session(30 * day))
        .build()
        .unwrap();
    let alice = login(&layer, "alice", "A").await;
    assert!(layer.sessions().end("alice", &sid(&alice)).await.unwrap());
    // Its row said one day; a later token of it could carry up to thirty
    // (the layer's limit): the revocation lasts that long.
    let ids = TokenIds::of(&alice.claims().registered);
    for days in [2, 29] {
        let at = T0 + days * 86_400;
        assert!(
            matches!(
                store.check(&ids, at),
                Lookup::Ready(Ok(RevocationStatus::Revoked))
            ),
            "day {days}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_logins_of_one_user_keep_the_limit() {
    for on_limit in [OnLimit::Refuse, OnLimit::EndLeastRecent] {
        let clock = clock();
        let layer = SlidingJwtLayer::builder(hs256())
            .with_clock(clock.clone())
            .with_max_sessions(2, on_limit)
            .build()
            .unwrap();
        let logins: Vec<_> = (0..16)
            .map(|_| {
                let issuer = layer.issuer();
                tokio::spawn(async move {
                    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
                    issuer.login(&parts, user("alice", "user")).await
                })
            })
            .collect();
        let mut succeeded = 0;
        for login in logins {
            if login.await.unwrap().is_ok() {
                succeeded += 1;
            }
        }
        let live = layer.sessions().list("alice").await.unwrap().len();
        assert!(live <= 2, "{on_limit:?}: {live} live sessions");
        if on_limit == OnLimit::Refuse {
            assert_eq!(succeeded, 2);
        }
    }
}
