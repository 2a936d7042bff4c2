//! Long-lived connections end with their session: `Session::ended` resolves
//! with the reason — logout, ended elsewhere, reuse, cap, idle, superseded
//! claims, a store that cannot tell — and a renewal does not resolve it.
//! One watcher per layer wakes exactly the ended session's connections.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode};
use tower::{Layer, service_fn};
use tower_sliding_jwt::store::{Lookup, Revocation, RevocationStore, TokenIds};
use tower_sliding_jwt::{
    BoxFuture, EndReason, IssuedToken, Key, ManualClock, MemoryStore, Session, SlidingJwtLayer,
    StoreError, StoreErrorKind,
};

type Layer_ = SlidingJwtLayer<Key, Claimset>;
type Held = Arc<Mutex<Option<Session<Claimset>>>>;

/// The layer around a handler that keeps the request's session in `held`
/// and obeys `x-logout` (ends it) and `x-demote` (renew_with).
fn app(
    layer: &Layer_,
    held: Held,
) -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(service_fn(move |request: Request<()>| {
        let held = held.clone();
        async move {
            let session = request
                .extensions()
                .get::<Session<Claimset>>()
                .cloned()
                .unwrap();
            if request.headers().contains_key("x-logout") {
                session.end().await.unwrap();
            }
            if request.headers().contains_key("x-demote") {
                let mut claims = session.claims().clone();
                claims.extra.insert("role".into(), "user".into());
                session.renew_with(claims);
            }
            *held.lock().unwrap() = Some(session);
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    }))
}

async fn login(layer: &Layer_, sub: &str) -> IssuedToken<Claimset> {
    let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
    layer
        .issuer()
        .login(&parts, user(sub, "user"))
        .await
        .unwrap()
}

/// The session of a request with `token`.
async fn session_of(layer: &Layer_, token: &str) -> Session<Claimset> {
    let held: Held = Arc::default();
    let response = send(&app(layer, held.clone()), get(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    held.lock().unwrap().take().unwrap()
}

fn with(token: &str, header: &'static str) -> Request<()> {
    let mut request = get(token);
    request.headers_mut().insert(header, "1".parse().unwrap());
    request
}

/// `ended`'s reason, waiting at most two seconds (the watcher looks at the
/// clock four times a second).
async fn within_two_seconds(ended: impl Future<Output = EndReason>) -> Option<EndReason> {
    tokio::time::timeout(Duration::from_secs(2), ended)
        .await
        .ok()
}

/// Whether `ended` is still pending after the watcher had time to look.
async fn still_open(ended: &mut (impl Future<Output = EndReason> + Unpin)) -> bool {
    tokio::time::timeout(Duration::from_millis(700), ended)
        .await
        .is_err()
}

fn layer_on(clock: &ManualClock, store: impl RevocationStore) -> Layer_ {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_logout_ends_exactly_that_sessions_streams() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let alice = login(&layer, "alice").await;
    let bob = login(&layer, "bob").await;
    let alice_session = session_of(&layer, alice.token()).await;
    let bob_session = session_of(&layer, bob.token()).await;
    let (one, two) = (alice_session.ended(), alice_session.ended());
    let mut other = Box::pin(bob_session.ended());
    let before = layer.stats().streams_ended();
    send(
        &app(&layer, Arc::default()),
        with(alice.token(), "x-logout"),
    )
    .await;
    assert_eq!(within_two_seconds(one).await, Some(EndReason::Logout));
    assert_eq!(within_two_seconds(two).await, Some(EndReason::Logout));
    assert!(still_open(&mut other).await, "bob's stream goes on");
    assert_eq!(layer.stats().streams_ended() - before, 2);
    // Opened after the logout: ended at once.
    assert_eq!(
        within_two_seconds(alice_session.ended()).await,
        Some(EndReason::Ended)
    );
}

#[tokio::test]
async fn ended_from_another_session_by_an_admin_or_everywhere() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let phone = login(&layer, "alice").await;
    let laptop = login(&layer, "alice").await;
    let tablet = login(&layer, "alice").await;
    let phone_stream = session_of(&layer, phone.token()).await.ended();
    let tablet_stream = session_of(&layer, tablet.token()).await.ended();
    let laptop_session = session_of(&layer, laptop.token()).await;
    let phone_sid = phone.claims().registered.sid.clone().unwrap();
    assert!(laptop_session.end_session(&phone_sid).await.unwrap());
    assert_eq!(
        within_two_seconds(phone_stream).await,
        Some(EndReason::Ended)
    );
    let mut laptop_stream = Box::pin(laptop_session.ended());
    assert_eq!(laptop_session.end_others().await.unwrap(), 1);
    assert_eq!(
        within_two_seconds(tablet_stream).await,
        Some(EndReason::Ended)
    );
    assert!(
        still_open(&mut laptop_stream).await,
        "end_others keeps the current one"
    );
    clock.advance(Duration::from_secs(1));
    layer.revoker().revoke_subject("alice").await.unwrap();
    assert_eq!(
        within_two_seconds(laptop_stream).await,
        Some(EndReason::Ended)
    );
}

#[tokio::test]
async fn renewals_keep_a_stream_open_and_idleness_and_the_cap_end_it() {
    let clock = clock();
    let layer: Layer_ = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_max_session(Duration::from_secs(2 * 3600))
        .build()
        .unwrap();
    let alice = login(&layer, "alice").await;
    let mut stream = Box::pin(session_of(&layer, alice.token()).await.ended());
    clock.advance(Duration::from_secs(50 * 60));
    let renewed =
        renewed(&send(&app(&layer, Arc::default()), get(alice.token())).await).expect("renewed");
    // Past the first token's exp: the renewal keeps the stream.
    clock.advance(Duration::from_secs(15 * 60));
    assert!(
        still_open(&mut stream).await,
        "a renewal does not end the stream"
    );
    clock.advance(Duration::from_secs(40 * 60));
    let last = renewed_of(&layer, &renewed).await;
    assert_eq!(payload(&last)["exp"], T0 + 2 * 3600, "the cap");
    clock.advance(Duration::from_secs(14 * 60));
    assert!(still_open(&mut stream).await);
    clock.advance(Duration::from_secs(60));
    assert_eq!(within_two_seconds(stream).await, Some(EndReason::Cap));

    // Idle: recorded or not, nothing renews it past its exp.
    let bob = login(&layer, "bob").await;
    let unrecorded = layer.issuer().issue(user("carol", "user")).unwrap();
    let bob_stream = session_of(&layer, bob.token()).await.ended();
    let carol_stream = session_of(&layer, unrecorded.token()).await.ended();
    // Served until exp plus the leeway: idle only then (a reconnect at
    // that moment is refused).
    clock.advance(Duration::from_secs(3600));
    let mut bob_stream = Box::pin(bob_stream);
    assert!(still_open(&mut bob_stream).await, "inside the leeway");
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        send(&app(&layer, Arc::default()), get(bob.token()))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(within_two_seconds(bob_stream).await, Some(EndReason::Idle));
    assert_eq!(
        within_two_seconds(carol_stream).await,
        Some(EndReason::Idle)
    );
}

async fn renewed_of(layer: &Layer_, token: &str) -> String {
    renewed(&send(&app(layer, Arc::default()), get(token)).await).expect("renewed")
}

#[tokio::test]
async fn a_renewal_elsewhere_moves_the_deadline_through_the_registry() {
    // Two layers on one store: the stream on the first, the renewal on the
    // second (as two instances): the first reads the row at the deadline.
    let clock = clock();
    let store = MemoryStore::new();
    let here = layer_on(&clock, store.clone());
    let there = layer_on(&clock, store.clone());
    let alice = login(&here, "alice").await;
    let mut stream = Box::pin(session_of(&here, alice.token()).await.ended());
    clock.advance(Duration::from_secs(50 * 60));
    renewed_of(&there, alice.token()).await;
    clock.advance(Duration::from_secs(15 * 60));
    assert!(
        still_open(&mut stream).await,
        "renewed on the other instance"
    );
    clock.advance(Duration::from_secs(50 * 60 + 5));
    assert_eq!(within_two_seconds(stream).await, Some(EndReason::Idle));
}

#[tokio::test]
async fn superseded_claims_and_reuse_end_their_streams() {
    let clock = clock();
    let layer: Layer_ = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_reuse_detection(Duration::from_secs(30))
        .build()
        .unwrap();
    let alice = login(&layer, "alice").await;
    let old_claims = session_of(&layer, alice.token()).await.ended();
    clock.advance(Duration::from_secs(60));
    let demoted = renewed(
        &send(
            &app(&layer, Arc::default()),
            with(alice.token(), "x-demote"),
        )
        .await,
    )
    .expect("renew_with's token");
    assert_eq!(
        within_two_seconds(old_claims).await,
        Some(EndReason::Superseded)
    );
    // A stream opened with the new claims lives on; a reused token ends it.
    let mut new_claims = Box::pin(session_of(&layer, &demoted).await.ended());
    assert!(still_open(&mut new_claims).await);
    clock.advance(Duration::from_secs(45 * 60));
    let next = renewed_of(&layer, &demoted).await;
    send(&app(&layer, Arc::default()), get(&next)).await;
    clock.advance(Duration::from_secs(60));
    let reused = send(&app(&layer, Arc::default()), get(&demoted)).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(within_two_seconds(new_claims).await, Some(EndReason::Reuse));
}

/// A memory store whose checks fail on demand (a cluster store past its
/// bound), and which may hide its feed.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    failing: Arc<std::sync::atomic::AtomicBool>,
    feed: bool,
    /// Answers every check through a future (a store doing I/O).
    pending: bool,
}

impl RevocationStore for Flaky {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Lookup::Ready(Err(StoreErrorKind::Unavailable.into()));
        }
        match self.inner.check(token, now) {
            Lookup::Ready(answer) if self.pending => Lookup::Pending(Box::pin(async move {
                tokio::task::yield_now().await;
                answer
            })),
            lookup => lookup,
        }
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.revoke(revocation, now)
    }

    fn feed(&self) -> Option<&dyn tower_sliding_jwt::store::RevocationFeed> {
        if self.feed { self.inner.feed() } else { None }
    }
}

#[tokio::test]
async fn a_store_that_cannot_tell_ends_every_stream() {
    let clock = clock();
    let store = Flaky {
        inner: MemoryStore::new(),
        failing: Arc::default(),
        feed: true,
        pending: false,
    };
    let layer = layer_on(&clock, store.clone());
    let alice = layer.issuer().issue(user("alice", "user")).unwrap();
    let bob = layer.issuer().issue(user("bob", "user")).unwrap();
    let streams = [
        session_of(&layer, alice.token()).await.ended(),
        session_of(&layer, bob.token()).await.ended(),
    ];
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for stream in streams {
        assert_eq!(
            within_two_seconds(stream).await,
            Some(EndReason::CannotTell)
        );
    }
    // A store without a feed cannot tell a stream its session ended.
    let silent = layer_on(
        &clock,
        Flaky {
            feed: false,
            ..store.clone()
        },
    );
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let session = session_of(&silent, alice.token()).await;
    assert_eq!(
        within_two_seconds(session.ended()).await,
        Some(EndReason::CannotTell)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_streams_and_one_logout_wake_exactly_one_sessions_streams() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let mut sessions = Vec::new();
    for i in 0..100 {
        let login = login(&layer, &format!("user{i}")).await;
        sessions.push((session_of(&layer, login.token()).await, login));
    }
    // Ten streams per session.
    let streams: Vec<_> = sessions
        .iter()
        .flat_map(|(session, _)| (0..10).map(|_| tokio::spawn(session.ended())))
        .collect();
    let before = layer.stats().streams_ended();
    send(
        &app(&layer, Arc::default()),
        with(sessions[7].1.token(), "x-logout"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        layer.stats().streams_ended() - before,
        10,
        "exactly one session's streams"
    );
    for (i, stream) in streams.into_iter().enumerate() {
        if i / 10 == 7 {
            assert_eq!(stream.await.unwrap(), EndReason::Logout);
        } else {
            assert!(!stream.is_finished(), "stream {i}");
            stream.abort();
        }
    }
}

#[tokio::test]
async fn a_revoked_token_ends_the_streams_opened_with_it_and_a_gone_layer_ends_all() {
    let clock = clock();
    let layer = layer_on(&clock, MemoryStore::new());
    let alice = login(&layer, "alice").await;
    let stolen_stream = session_of(&layer, alice.token()).await.ended();
    clock.advance(Duration::from_secs(50 * 60));
    let renewed = renewed_of(&layer, alice.token()).await;
    let mut owner_stream = Box::pin(session_of(&layer, &renewed).await.ended());
    let jti = alice.claims().registered.jti.clone().unwrap();
    layer.revoker().revoke_token(&jti).await.unwrap();
    assert_eq!(
        within_two_seconds(stolen_stream).await,
        Some(EndReason::Ended)
    );
    assert!(
        still_open(&mut owner_stream).await,
        "the session's other token goes on"
    );
    // The layer and every session of it gone: nothing could end the
    // stream any more, so it ends.
    drop(layer);
    assert_eq!(
        within_two_seconds(owner_stream).await,
        Some(EndReason::CannotTell)
    );
}

#[tokio::test]
async fn a_store_answering_through_futures_is_asked_once_when_a_stream_opens() {
    let clock = clock();
    let inner = MemoryStore::new();
    let store = Flaky {
        inner: inner.clone(),
        failing: Arc::default(),
        feed: true,
        pending: true,
    };
    let layer = layer_on(&clock, store);
    let alice = layer.issuer().issue(user("alice", "user")).unwrap();
    let session = session_of(&layer, alice.token()).await;
    // Revoked between the request and the stream, behind the feed's back.
    let sid = alice.claims().registered.sid.clone().unwrap();
    inner
        .insert(
            &Revocation::new(
                tower_sliding_jwt::store::RevocationTarget::Session(sid),
                T0 + 86_400,
            ),
            T0,
        )
        .unwrap();
    assert_eq!(
        within_two_seconds(session.ended()).await,
        Some(EndReason::Ended)
    );
}
