//! Reuse detection (rule 18), driven by a manual clock: a renewed token
//! arriving more than the grace after its replacement's first use revokes
//! the session; races inside the grace, a replacement that never reached its
//! client and other sessions are not reuse; a store error fails closed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower_sliding_jwt::{
    BoxFuture, ConfigErrorKind, Key, ManualClock, MemoryStore, RegisteredClaims, RejectionKind,
    RenewWindow, SlidingJwtLayer, StoreError, StoreErrorKind,
    store::{Lookup, Revocation, RevocationStatus, RevocationStore, RevocationTarget, TokenIds},
};

const GRACE: u64 = 30;
/// The layer's default leeway: a replaced token is admitted until its
/// replacement's first use plus the grace plus the leeway.
const LEEWAY: u64 = 5;

fn layer_on(
    store: impl RevocationStore,
    clock: &ManualClock,
    window: Option<RenewWindow>,
) -> SlidingJwtLayer<Key, Claimset> {
    let mut builder = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .with_reuse_detection(Duration::from_secs(GRACE));
    if let Some(window) = window {
        builder = builder.with_renew_window(window);
    }
    builder.build().unwrap()
}

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Logs in, and renews the login token 41 minutes later (inside the default
/// 20-minute window): the login token and its replacement.
async fn renewed_once(
    layer: &SlidingJwtLayer<Key, Claimset>,
    clock: &ManualClock,
) -> (String, String) {
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(41));
    let response = send(&app(layer), get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    let replacement = renewed(&response).expect("renewed");
    (login.token().to_owned(), replacement)
}

async fn status_of(
    layer: &SlidingJwtLayer<Key, Claimset>,
    token: &str,
) -> (StatusCode, Option<RejectionKind>) {
    let response = send(&app(layer), get(token)).await;
    (response.status(), rejection(&response))
}

#[tokio::test]
async fn a_replaced_token_after_the_grace_revokes_the_whole_session() {
    let clock = clock();
    let reused_sids = Arc::new(Mutex::new(Vec::new()));
    let seen = reused_sids.clone();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_reuse_detection(seconds(GRACE))
        .with_on_reuse(move |claims: &Claimset| {
            seen.lock()
                .unwrap()
                .push(claims.registered.sid.clone().unwrap());
        })
        .build()
        .unwrap();
    let (old, new) = renewed_once(&layer, &clock).await;
    let replacement = payload(&new);
    assert_eq!(replacement["prev_jti"], payload(&old)["jti"]);
    assert_eq!(replacement["prev_exp"], payload(&old)["exp"]);

    // The replacement is used; the old token comes back after the grace.
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    let response = send(&app(&layer), get(&old)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection(&response), Some(RejectionKind::TokenReused));
    assert_eq!(challenge(&response), INVALID_TOKEN);
    assert!(renewed(&response).is_none());

    // The whole session is over: the replacement too, until the cap.
    assert_eq!(
        status_of(&layer, &new).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
    assert_eq!(layer.stats().reuse_detected(), 1);
    assert_eq!(layer.stats().rejected(RejectionKind::TokenReused), 1);
    let sid = payload(&old)["sid"].as_str().unwrap().to_owned();
    assert_eq!(*reused_sids.lock().unwrap(), vec![sid]);
}

#[tokio::test]
async fn parallel_requests_inside_the_grace_are_not_reuse() {
    let clock = clock();
    let layer = layer_on(MemoryStore::new(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    // Another tab, a retry: the old token inside the grace still works and
    // gets the same replacement.
    clock.advance(seconds(GRACE));
    let response = send(&app(&layer), get(&old)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response).as_deref(), Some(new.as_str()));
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    assert_eq!(layer.stats().reuse_detected(), 0);
}

#[tokio::test]
async fn a_replacement_that_never_reached_its_client_is_not_reuse() {
    let clock = clock();
    let layer = layer_on(MemoryStore::new(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    // The response with the replacement was lost: the replacement is never
    // used, and the old token keeps working long after any grace.
    clock.advance(minutes(5));
    let response = send(&app(&layer), get(&old)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response).as_deref(), Some(new.as_str()));
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    assert_eq!(layer.stats().reuse_detected(), 0);
}

#[tokio::test]
async fn other_sessions_of_the_same_user_are_not_reuse() {
    let clock = clock();
    let layer = layer_on(MemoryStore::new(), &clock, None);
    let other = layer.issuer().issue(user("alice", "user")).unwrap();
    let (_, new) = renewed_once(&layer, &clock).await;
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    clock.advance(minutes(5));
    // The other login of alice was never renewed: not a replaced token.
    assert_eq!(status_of(&layer, other.token()).await.0, StatusCode::OK);
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    assert_eq!(layer.stats().reuse_detected(), 0);
}

#[tokio::test]
async fn an_older_generation_is_caught_too() {
    let clock = clock();
    // Renew as soon as the throttle allows, so three generations live at once.
    let layer = layer_on(
        MemoryStore::new(),
        &clock,
        Some(RenewWindow::fraction(0.99).unwrap()),
    );
    let first = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(seconds(61));
    let second = renewed(&send(&app(&layer), get(first.token())).await).expect("renewed");
    clock.advance(seconds(61));
    let third = renewed(&send(&app(&layer), get(&second)).await).expect("renewed again");
    assert_eq!(status_of(&layer, &third).await.0, StatusCode::OK);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    // The first token was replaced (its replacement used 92 s ago).
    assert_eq!(
        status_of(&layer, first.token()).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
    assert_eq!(
        status_of(&layer, &third).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
}

#[tokio::test]
async fn off_by_default_a_replaced_token_keeps_working() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let (old, new) = renewed_once(&layer, &clock).await;
    assert!(payload(&new).get("prev_jti").is_none());
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    clock.advance(minutes(5));
    assert_eq!(status_of(&layer, &old).await.0, StatusCode::OK);
    assert_eq!(layer.stats().reuse_detected(), 0);
}

/// A memory store that counts what it is asked to write and can be made to
/// fail writes of marks or every check.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    marks: Arc<AtomicUsize>,
    fail_marks: Arc<AtomicBool>,
    fail_checks: Arc<AtomicBool>,
    fail_sessions: Arc<AtomicBool>,
}

impl RevocationStore for Flaky {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        if self.fail_checks.load(Ordering::SeqCst) {
            return Lookup::Ready(Err(StoreErrorKind::Unavailable.into()));
        }
        self.inner.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if matches!(revocation.target, RevocationTarget::Session(_))
            && self.fail_sessions.load(Ordering::SeqCst)
        {
            return Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())));
        }
        if matches!(revocation.target, RevocationTarget::Replaced { .. }) {
            self.marks.fetch_add(1, Ordering::SeqCst);
            if self.fail_marks.load(Ordering::SeqCst) {
                return Box::pin(std::future::ready(Err(StoreErrorKind::Unavailable.into())));
            }
        }
        self.inner.revoke(revocation, now)
    }

    fn keeps_replacements(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn one_mark_per_generation_and_none_on_later_requests() {
    let clock = clock();
    let store = Flaky::default();
    let layer = layer_on(store.clone(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    // The login token replaced nothing: no mark.
    assert_eq!(store.marks.load(Ordering::SeqCst), 0);
    for _ in 0..5 {
        assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    }
    assert_eq!(store.marks.load(Ordering::SeqCst), 1, "one mark, then none");
    // The mark lives exactly until the old token stops verifying.
    let old_exp = payload(&old)["exp"].as_i64().unwrap();
    let jti = payload(&old)["jti"].as_str().unwrap().to_owned();
    let claims = RegisteredClaims {
        jti: Some(jti),
        ..RegisteredClaims::default()
    };
    let at = |now: i64| store.inner.status(&TokenIds::of(&claims), now);
    assert!(matches!(at(old_exp + 4), RevocationStatus::Replaced { .. }));
    assert_eq!(at(old_exp + 5), RevocationStatus::Active);
}

#[tokio::test]
async fn a_mark_that_cannot_be_written_fails_closed_and_is_tried_again() {
    let clock = clock();
    let store = Flaky::default();
    let layer = layer_on(store.clone(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    store.fail_marks.store(true, Ordering::SeqCst);
    assert_eq!(
        status_of(&layer, &new).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(RejectionKind::StoreUnavailable)
        )
    );
    store.fail_marks.store(false, Ordering::SeqCst);
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    assert_eq!(store.marks.load(Ordering::SeqCst), 2);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    assert_eq!(
        status_of(&layer, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
}

/// Renews, uses the replacement, and sends the old token after the grace
/// while `failing` says the store fails (503, not a reuse: the client
/// retries), then once it works again (401 `TokenReused`). Answers the layer
/// and the replacement.
async fn reuse_through_a_failing_store(
    failing: fn(&Flaky) -> &AtomicBool,
) -> (SlidingJwtLayer<Key, Claimset>, String) {
    let clock = clock();
    let store = Flaky::default();
    let layer = layer_on(store.clone(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    failing(&store).store(true, Ordering::SeqCst);
    assert_eq!(
        status_of(&layer, &old).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(RejectionKind::StoreUnavailable)
        )
    );
    failing(&store).store(false, Ordering::SeqCst);
    assert_eq!(
        status_of(&layer, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
    (layer, new)
}

#[tokio::test]
async fn a_check_that_fails_refuses_with_503_not_a_reuse() {
    reuse_through_a_failing_store(|store| &store.fail_checks).await;
}

/// A store that knows nothing of marks (as a custom store written before
/// reuse detection existed).
struct Unaware(MemoryStore);

impl RevocationStore for Unaware {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        self.0.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.revoke(revocation, now)
    }
}

#[test]
fn a_store_that_keeps_no_marks_is_refused_at_build_time() {
    let error = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_revocation_store(Unaware(MemoryStore::new()))
        .with_reuse_detection(seconds(GRACE))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::StoreLacksPart);
    assert!(error.to_string().contains("reuse marks"), "{error}");
    assert!(error.to_string().contains("keeps_replacements"), "{error}");
    let error = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_reuse_detection(seconds(2 * 86_400))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::InvalidDuration);
}

#[tokio::test]
async fn the_issuers_verify_refuses_a_reused_token_without_ending_the_session() {
    let clock = clock();
    let layer = layer_on(MemoryStore::new(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    // `verify` marks the replacement's first use, as the layer does...
    layer.issuer().verify(&new).await.unwrap();
    clock.advance(seconds(GRACE + LEEWAY + 1));
    assert_eq!(
        layer.issuer().verify(&old).await.unwrap_err().kind(),
        RejectionKind::TokenReused
    );
    // ...but a token kept for later (a queued message) is not a stolen
    // copy: the session goes on.
    layer.issuer().verify(&new).await.unwrap();
    assert_eq!(layer.stats().reuse_detected(), 0);
    // The layer itself ends it.
    assert_eq!(
        status_of(&layer, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
    assert_eq!(
        layer.issuer().verify(&new).await.unwrap_err().kind(),
        RejectionKind::Revoked
    );
}

/// A request with the old token that outlives the grace (a slow handler,
/// a response delivered late) hands back no replacement: the client has
/// moved on, and the stale replacement would count as reuse later.
#[tokio::test]
async fn a_request_that_outlives_the_grace_hands_back_no_stale_replacement() {
    let clock = clock();
    let layer = layer_on(MemoryStore::new(), &clock, None);
    let (old, new) = renewed_once(&layer, &clock).await;
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    // Inside the grace the old token arrives again, and its handler takes
    // ten minutes.
    clock.advance(seconds(10));
    let slow_clock = clock.clone();
    let slow = tower::Layer::layer(
        &layer,
        tower::service_fn(move |_request: http::Request<()>| {
            slow_clock.advance(minutes(10));
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                String::new(),
            )))
        }),
    );
    let response = send(&slow, get(&old)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_none(),
        "a stale replacement was handed back"
    );
    // A quick request inside the grace still gets it (checked before the
    // ten minutes: see parallel_requests_inside_the_grace_are_not_reuse).
    assert_eq!(layer.stats().reuse_detected(), 0);
}

/// Marks have a budget of their own: a store full of marks issues no
/// replacement it could not mark (counted; the old token stays valid and is
/// served), never refuses a logout, and never locks a session out.
#[tokio::test]
async fn a_store_full_of_marks_neither_refuses_logouts_nor_locks_sessions_out() {
    let clock = clock();
    let layer = layer_on(MemoryStore::with_capacity(1), &clock, None);
    let app = app(&layer);
    let alice = layer.issuer().issue(user("alice", "user")).unwrap();
    let bob = layer.issuer().issue(user("bob", "user")).unwrap();
    clock.advance(minutes(41));
    let response = send(&app, get(alice.token())).await;
    let replacement = renewed(&response).expect("renewed");
    assert_eq!(status_of(&layer, &replacement).await.0, StatusCode::OK);
    // The one mark the store has room for is taken: Bob is served, but gets
    // no replacement that would escape detection.
    let response = send(&app, get(bob.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed(&response).is_none(), "an unmarkable replacement");
    assert_eq!(layer.stats().marks_refused(), 1);
    assert_eq!(status_of(&layer, bob.token()).await.0, StatusCode::OK);
    // And a logout still has its room.
    let sid = bob.claims().registered.sid.clone().unwrap();
    layer.revoker().revoke_session(&sid).await.unwrap();
    assert_eq!(
        status_of(&layer, bob.token()).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
}

/// One user's renewals cannot use up the marks every user shares: past its
/// quota a subject gets no more replacements (counted), and another user's
/// renewals are still marked, so a stolen copy of theirs is still caught.
#[tokio::test]
async fn one_users_flood_of_renewals_cannot_hide_another_users_reuse() {
    let clock = clock();
    // Room for three marks in all, two per subject.
    let layer = layer_on(
        MemoryStore::with_capacity(3).with_mark_quota(2),
        &clock,
        None,
    );
    let app = app(&layer);
    let mallory: Vec<_> = (0..3)
        .map(|_| layer.issuer().issue(user("mallory", "user")).unwrap())
        .collect();
    let alice = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(41));
    let mut refused = 0;
    for login in &mallory {
        let response = send(&app, get(login.token())).await;
        assert_eq!(response.status(), StatusCode::OK);
        match renewed(&response) {
            Some(replacement) => {
                assert_eq!(status_of(&layer, &replacement).await.0, StatusCode::OK)
            }
            None => refused += 1,
        }
    }
    assert_eq!(refused, 1, "mallory's third renewal is past her quota");
    assert_eq!(layer.stats().marks_refused(), 1);
    let response = send(&app, get(alice.token())).await;
    let replacement = renewed(&response).expect("alice still renews");
    assert_eq!(status_of(&layer, &replacement).await.0, StatusCode::OK);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    assert_eq!(
        status_of(&layer, alice.token()).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
}

/// Detection that cannot end the session answers 503, so the client
/// retries and the next arrival tries again (fail closed).
#[tokio::test]
async fn a_detection_whose_revocation_fails_answers_503_and_is_tried_again() {
    let (layer, new) = reuse_through_a_failing_store(|store| &store.fail_sessions).await;
    assert_eq!(
        status_of(&layer, &new).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
}

#[tokio::test]
async fn the_verified_cache_does_not_hide_a_reuse() {
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_verified_cache(100)
        .with_reuse_detection(seconds(GRACE))
        .build()
        .unwrap();
    let (old, new) = renewed_once(&layer, &clock).await;
    // Cached while still good.
    assert_eq!(status_of(&layer, &old).await.0, StatusCode::OK);
    assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
    clock.advance(seconds(GRACE + LEEWAY + 1));
    assert_eq!(
        status_of(&layer, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
}

#[tokio::test]
async fn marks_in_the_durable_store_survive_a_restart() {
    let clock = clock();
    let dir = std::env::temp_dir().join(format!("tsj-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("revocations");
    let open = || {
        tower_sliding_jwt::DurableStore::builder(&path)
            .with_clock(clock.clone())
            .open()
            .unwrap()
    };
    let (old, new) = {
        let layer = layer_on(open(), &clock, None);
        let (old, new) = renewed_once(&layer, &clock).await;
        assert_eq!(status_of(&layer, &new).await.0, StatusCode::OK);
        (old, new)
    };
    // A restart: a new process opens the same file.
    clock.advance(seconds(GRACE + LEEWAY + 1));
    let layer = layer_on(open(), &clock, None);
    assert_eq!(
        status_of(&layer, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
    drop(layer);
    // ...and the session's revocation is on disk too.
    let layer = layer_on(open(), &clock, None);
    assert_eq!(
        status_of(&layer, &new).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances sharing a store, B's clock 4 s ahead of A's (within the
/// 5 s leeway): the replacement is first used on A, and a parallel tab
/// presents the old token on B at the end of the grace by A's clock. Not
/// reuse: the grace is compared with the leeway added.
#[tokio::test]
async fn a_parallel_tab_on_an_instance_whose_clock_runs_ahead_within_the_leeway_is_not_reuse() {
    use tower_sliding_jwt::Clock as _;
    let store = MemoryStore::new();
    let a_clock = clock();
    let b_clock = ManualClock::new(a_clock.now() + 4);
    let a = layer_on(store.clone(), &a_clock, None);
    let b = layer_on(store, &b_clock, None);
    let (old, new) = renewed_once(&a, &a_clock).await;
    b_clock.advance(minutes(41));
    assert_eq!(status_of(&a, &new).await.0, StatusCode::OK);
    a_clock.advance(seconds(GRACE));
    b_clock.advance(seconds(GRACE));
    let response = send(&app(&b), get(&old)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        rejection(&response)
    );
    assert_eq!(b.stats().reuse_detected(), 0);
    // Past the grace and the leeway on B's clock, it is reuse.
    b_clock.advance(seconds(LEEWAY - 4 + 1));
    assert_eq!(
        status_of(&b, &old).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
    );
}

/// A token `renew_with` superseded that had also been renewed, arriving
/// past the grace after its replacement's first use, is a stolen copy: it
/// ends the session, and is never served as the token that superseded it.
#[tokio::test]
async fn a_superseded_token_past_the_grace_is_reuse_not_a_way_to_the_new_token() {
    use tower::{Layer, service_fn};
    let clock = clock();
    // A wide window, so renewals can come a minute apart.
    let layer = layer_on(
        MemoryStore::new(),
        &clock,
        Some(RenewWindow::absolute(minutes(59)).unwrap()),
    );
    let server = layer.layer(service_fn(demoting));
    let t0 = layer.issuer().issue(user("alice", "admin")).unwrap();
    let t0 = t0.token().to_owned();
    clock.advance(minutes(11));
    let s = renewed(&send(&server, get(&t0)).await).expect("s");
    clock.advance(seconds(61));
    // S's first use (T0 marked replaced), and S renewed into S2.
    let s2 = renewed(&send(&server, get(&s)).await).expect("s2");
    clock.advance(seconds(1));
    // A tab still holding T0 (inside the grace) changes the role: S, T0's
    // replacement, is displaced.
    let demotion = demote(&t0);
    let demoted = renewed(&send(&server, demotion).await).expect("renew_with's token");
    assert_eq!(payload(&demoted)["role"], "user");
    // S2's first use marks S replaced.
    let _ = send(&server, get(&s2)).await;
    // A copy of S, long past the grace: reuse, never the new token.
    clock.advance(seconds(GRACE + LEEWAY + 1));
    let response = send(&app(&layer), get(&s)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::TokenReused));
    assert!(renewed(&response).is_none());
    assert_eq!(
        status_of(&layer, &demoted).await,
        (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
    );
}
