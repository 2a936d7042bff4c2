//! The Redis revocation store against a real `redis-server` on loopback,
//! started by the tests themselves. Run with `cargo test --features redis`
//! (`.ci/run` installs `redis-server` when it is missing).
#![cfg(feature = "redis")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tower_sliding_jwt::redis::{FailureMode, RedisStore};
use tower_sliding_jwt::{Clock, Key, ManualClock, RejectionKind, SlidingJwtLayer, StoreErrorKind};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::on(port)
    }

    fn on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for these tests (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn layer(store: RedisStore, clock: &ManualClock) -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .build()
        .unwrap()
}

/// Polls `condition` until it holds; a real network hop is involved, so this
/// waits (bounded) instead of assuming an order.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(
    layer: &SlidingJwtLayer<Key, Claimset>,
    token: &str,
) -> (StatusCode, Option<RejectionKind>) {
    let response = send(&app(layer), get(token)).await;
    (response.status(), rejection(&response))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_every_instance() {
    let server = Server::start();
    let clock = clock();
    let a = layer(
        RedisStore::builder(server.url()).connect().await.unwrap(),
        &clock,
    );
    let b = layer(
        RedisStore::builder(server.url()).connect().await.unwrap(),
        &clock,
    );
    let login = a.issuer().issue(user("alice", "user")).unwrap();
    let other = a.issuer().issue(user("bob", "user")).unwrap();
    assert_eq!(status(&b, login.token()).await.0, StatusCode::OK);

    let sid = login.claims().registered.sid.clone().unwrap();
    a.revoker().revoke_session(&sid).await.unwrap();
    assert_eq!(
        status(&a, login.token()).await.1,
        Some(RejectionKind::Revoked),
        "the revoking instance at once"
    );
    eventually("instance B sees the revocation", || async {
        status(&b, login.token()).await.1 == Some(RejectionKind::Revoked)
    })
    .await;
    assert_eq!(status(&b, other.token()).await.0, StatusCode::OK);

    // Redis forgets the entry with the session cap.
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    // The layer's clock decides how long: Redis keeps it for cap + leeway from
    // the layer's now, whatever Redis's own clock says.
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("tsj:s:{sid}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((86_400..=86_405).contains(&ttl), "ttl {ttl}");

    // An instance that starts later loads what is already revoked.
    let c = layer(
        RedisStore::builder(server.url()).connect().await.unwrap(),
        &clock,
    );
    assert_eq!(
        status(&c, login.token()).await.1,
        Some(RejectionKind::Revoked)
    );
    assert_eq!(status(&c, other.token()).await.0, StatusCode::OK);

    // Log out everywhere, from yet another instance (sessions begun before this second).
    clock.advance(Duration::from_secs(1));
    c.revoker().revoke_subject("bob").await.unwrap();
    eventually("instance A sees the subject revocation", || async {
        status(&a, other.token()).await.1 == Some(RejectionKind::Revoked)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_closed_by_default_and_recovers() {
    let mut server = Server::start();
    let port = server.port;
    let clock = clock();
    let timeout = Duration::from_millis(500);
    let closed_store = RedisStore::builder(server.url())
        .with_timeout(timeout)
        .connect()
        .await
        .unwrap();
    let closed = layer(closed_store.clone(), &clock);
    let open = layer(
        RedisStore::builder(server.url())
            .with_timeout(timeout)
            .with_failure_mode(FailureMode::Open)
            .connect()
            .await
            .unwrap(),
        &clock,
    );
    let login = closed.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(status(&closed, login.token()).await.0, StatusCode::OK);

    server.stop();
    eventually("the closed instance refuses with 503", || async {
        status(&closed, login.token()).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(
        status(&closed, login.token()).await.1,
        Some(RejectionKind::StoreUnavailable)
    );
    assert!(!closed_store.is_synchronised());
    assert_eq!(
        status(&open, login.token()).await.0,
        StatusCode::OK,
        "fail-open keeps serving"
    );

    // A revocation while Redis is down is honoured locally and reported, within the timeout.
    let started = Instant::now();
    let result = open
        .revoker()
        .revoke_session(login.claims().registered.sid.as_deref().unwrap())
        .await;
    assert!(matches!(
        result.unwrap_err().kind(),
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        status(&open, login.token()).await.1,
        Some(RejectionKind::Revoked)
    );

    let bob = closed.issuer().issue(user("bob", "user")).unwrap();
    let _server = Server::on(port);
    eventually("the closed instance serves again", || async {
        status(&closed, bob.token()).await.0 == StatusCode::OK
    })
    .await;
    assert!(closed_store.is_synchronised());
    // The revocation made while Redis was down is written back once it is
    // up again, and reaches the other instance.
    eventually(
        "the closed instance learns the revocation made during the outage",
        || async { status(&closed, login.token()).await.1 == Some(RejectionKind::Revoked) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_never_hangs() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = RedisStore::builder(format!("redis://127.0.0.1:{port}/"))
        .with_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        ),
        "{error}"
    );

    // Something listens but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(2));
        drop(held);
    });
    let error = RedisStore::builder(url)
        .with_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = holder;
    assert!(RedisStore::builder("not a url").connect().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_manual_clock_publishes_its_revocations() {
    let server = Server::start();
    // The layer's time is a month behind the machine's (and Redis's).
    let clock = ManualClock::new(tower_sliding_jwt::SystemClock.now() - 30 * 86_400);
    let store = || {
        RedisStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
    };
    let a = layer(store().await.unwrap(), &clock);
    let b = layer(store().await.unwrap(), &clock);
    let login = a.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(status(&b, login.token()).await.0, StatusCode::OK);
    a.revoker()
        .revoke_session(login.claims().registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    eventually("instance B sees the revocation", || async {
        status(&b, login.token()).await.1 == Some(RejectionKind::Revoked)
    })
    .await;
    // And an instance that starts later finds it in Redis.
    let c = layer(store().await.unwrap(), &clock);
    assert_eq!(
        status(&c, login.token()).await.1,
        Some(RejectionKind::Revoked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_fails_closed_until_a_reload_finds_room() {
    let server = Server::start();
    let clock = clock();
    let small_store = RedisStore::builder(server.url())
        .with_clock(clock.clone())
        .with_capacity(2)
        .with_resync_interval(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let small = layer(small_store.clone(), &clock);
    let big = layer(
        RedisStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap(),
        &clock,
    );
    let alice = big.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(status(&small, alice.token()).await.0, StatusCode::OK);

    // Another instance revokes more sessions than the small replica holds.
    for sid in ["s1", "s2", "s3"] {
        big.revoker().revoke_session(sid).await.unwrap();
    }
    eventually("the full replica refuses with 503", || async {
        status(&small, alice.token()).await.1 == Some(RejectionKind::StoreUnavailable)
    })
    .await;
    assert!(!small_store.is_synchronised());
    // A revocation it made itself is refused and reported, not dropped.
    let refused = small.revoker().revoke_session("s4").await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Full);

    // Past the cap the entries are over: the next reload has room for all.
    clock.advance(Duration::from_secs(86_400 + 5));
    let bob = big.issuer().issue(user("bob", "user")).unwrap();
    eventually("the replica is trusted again", || async {
        status(&small, bob.token()).await.0 == StatusCode::OK
    })
    .await;
    assert!(small_store.is_synchronised());
}
