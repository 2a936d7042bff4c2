//! The Redis revocation store against a real `redis-server` on loopback,
//! started by the tests themselves. Run with `cargo test --features redis`
//! (`.ci/run` installs `redis-server` when it is missing).
#![cfg(feature = "redis")]

mod common;
#[path = "common/dpop.rs"]
mod dpop_cluster;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/sessions.rs"]
mod sessions;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_server::Server;
use tower_sliding_jwt::redis::{FailureMode, RedisStore};
use tower_sliding_jwt::{Clock, Key, ManualClock, RejectionKind, SlidingJwtLayer, StoreErrorKind};

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

// ---------------------------------------------------------------------------
// One cluster: three (or four) layers with separate stores sharing one Redis.
// ---------------------------------------------------------------------------

struct Instance {
    store: RedisStore,
    layer: SlidingJwtLayer<Key, Claimset>,
    app: App,
}

async fn instance(
    server: &Server,
    clock: &ManualClock,
    configure: impl FnOnce(
        tower_sliding_jwt::redis::RedisStoreBuilder,
    ) -> tower_sliding_jwt::redis::RedisStoreBuilder,
) -> Instance {
    let store = configure(RedisStore::builder(server.url()).with_clock(clock.clone()))
        .connect()
        .await
        .unwrap();
    let layer = layer(store.clone(), clock);
    let app = app(&layer);
    Instance { store, layer, app }
}

async fn cluster(server: &Server, clock: &ManualClock, timeout: Duration) -> Vec<Instance> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(server, clock, |b| b.with_timeout(timeout)).await);
    }
    instances
}

async fn connection(server: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn flight_keys(server: &Server) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("tsj:flight:*")
        .query_async(&mut connection(server).await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_requests_over_three_instances_get_one_replacement() {
    let server = Server::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let login = instances[0]
        .layer
        .issuer()
        .issue(user("alice", "user"))
        .unwrap();
    clock.advance(minutes(45));

    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let app = instances[i % 3].app.clone();
            let token = login.token().to_owned();
            tokio::spawn(async move { send(&app, get(&token)).await })
        })
        .collect();
    let mut replacements = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        replacements.push(renewed(&response).expect("every response carries the replacement"));
    }
    replacements.sort();
    replacements.dedup();
    assert_eq!(
        replacements.len(),
        1,
        "one replacement across the cluster: {replacements:?}"
    );
    let claims: u64 = instances
        .iter()
        .map(|i| i.store.stats().flight_claims)
        .sum();
    let lost: u64 = instances.iter().map(|i| i.store.stats().flight_lost).sum();
    assert!(claims >= 3, "every instance asked the cluster ({claims})");
    assert_eq!(lost, claims - 1, "one offer won, every other read it");
    assert_eq!(
        instances
            .iter()
            .map(|i| i.store.stats().flight_errors)
            .sum::<u64>(),
        0
    );
    // Each instance now knows the winner locally: no more round trips.
    let before: u64 = instances.iter().map(|i| i.store.stats().round_trips).sum();
    for instance in &instances {
        let response = send(&instance.app, get(login.token())).await;
        assert_eq!(
            renewed(&response).as_deref(),
            Some(replacements[0].as_str())
        );
    }
    let after: u64 = instances.iter().map(|i| i.store.stats().round_trips).sum();
    assert_eq!(after, before);

    // One entry, keyed by a hash, holding no token in the clear, living
    // until the old token stops verifying (exp + leeway, by the layer's clock)
    // and a minute more, for instances whose clocks run behind.
    let keys = flight_keys(&server).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let signature = login.token().rsplit('.').next().unwrap();
    assert!(!keys[0].contains(signature));
    let mut redis = connection(&server).await;
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    for secret in [login.token(), replacements[0].as_str()] {
        let part = secret.rsplit('.').next().unwrap().as_bytes();
        assert!(!value.windows(part.len()).any(|w| w == part));
    }
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    let until = login.claims().registered.exp + 5 + 60 - clock.now();
    assert!(
        (until - 2..=until).contains(&ttl),
        "ttl {ttl}, expected {until}"
    );
    // The replacement is a good token everywhere.
    for instance in &instances {
        assert_eq!(
            send(&instance.app, get(&replacements[0])).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_instance_is_refused_by_the_others_within_a_second() {
    let server = Server::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let login = instances[1]
        .layer
        .issuer()
        .issue(user("alice", "user"))
        .unwrap();
    for instance in &instances {
        assert_eq!(
            send(&instance.app, get(login.token())).await.status(),
            StatusCode::OK
        );
    }
    let started = Instant::now();
    instances[0]
        .layer
        .revoker()
        .revoke_session(login.claims().registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    for instance in &instances {
        loop {
            let response = send(&instance.app, get(login.token())).await;
            if response.status() == StatusCode::UNAUTHORIZED {
                assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "still accepted after a second"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    println!(
        "logout honoured by all three instances in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_closed_within_the_timeout_and_a_restarted_empty_one_is_refilled() {
    let mut server = Server::start();
    let port = server.port;
    let clock = clock();
    let timeout = Duration::from_secs(1);
    let instances = cluster(&server, &clock, timeout).await;
    let issuer = instances[0].layer.issuer();
    let alice = issuer.issue(user("alice", "user")).unwrap();
    let bob = issuer.issue(user("bob", "user")).unwrap();
    let sid = alice.claims().registered.sid.clone().unwrap();
    // Revoked before the outage, on one instance; every instance knows it.
    instances[2]
        .layer
        .revoker()
        .revoke_session(&sid)
        .await
        .unwrap();
    for instance in &instances {
        eventually("every instance sees the revocation", || async {
            rejection(&send(&instance.app, get(alice.token())).await)
                == Some(RejectionKind::Revoked)
        })
        .await;
    }

    server.stop();
    let killed = Instant::now();
    for instance in &instances {
        loop {
            let response = send(&instance.app, get(bob.token())).await;
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(rejection(&response), Some(RejectionKind::StoreUnavailable));
                assert_eq!(response.headers()["retry-after"], "1");
                break;
            }
            assert!(
                killed.elapsed() < timeout,
                "still serving after the timeout"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!(
        "all three instances refused with 503 {:?} after the kill",
        killed.elapsed()
    );

    // Back, empty: every instance recovers by itself and writes back.
    let _server = Server::on(port);
    for instance in &instances {
        eventually("the instance serves again", || async {
            send(&instance.app, get(bob.token())).await.status() == StatusCode::OK
        })
        .await;
        assert_eq!(
            rejection(&send(&instance.app, get(alice.token())).await),
            Some(RejectionKind::Revoked),
            "its replica kept the revocation through the outage"
        );
    }
    // Redis has it again, with its own lifetime (the session cap, from the
    // layer's now).
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("tsj:s:{sid}"))
        .query_async(&mut connection(&_server).await)
        .await
        .unwrap();
    assert!((86_000..=86_405).contains(&ttl), "ttl {ttl}");

    // A fourth instance, started now, refuses the session revoked before the outage.
    let fourth = instance(&_server, &clock, |b| b.with_timeout(timeout)).await;
    assert_eq!(
        rejection(&send(&fourth.app, get(alice.token())).await),
        Some(RejectionKind::Revoked)
    );
    assert_eq!(
        send(&fourth.app, get(bob.token())).await.status(),
        StatusCode::OK
    );
    let written: u64 = instances.iter().map(|i| i.store.stats().written_back).sum();
    assert!(written >= 1, "written back: {written}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_is_refilled_at_the_next_reload() {
    let server = Server::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_resync_interval(Duration::from_millis(100))
    })
    .await;
    a.layer.revoker().revoke_session("gone").await.unwrap();
    let mut redis = connection(&server).await;
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    // No reconnection: the reload notices the dataset changed.
    eventually("the revocation is back in Redis", || {
        let mut redis = redis.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg("tsj:s:gone")
                .query_async(&mut redis)
                .await
                .unwrap();
            exists
        }
    })
    .await;
    let b = instance(&server, &clock, |b| b).await;
    assert_eq!(b.store.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_serves_from_a_stale_replica_but_renews_nothing_until_it_is_back() {
    let mut server = Server::start();
    let port = server.port;
    let clock = clock();
    let timeout = Duration::from_millis(500);
    let open = instance(&server, &clock, |b| {
        b.with_timeout(timeout)
            .with_resync_interval(Duration::from_millis(200))
            .with_failure_mode(FailureMode::Open)
    })
    .await;
    let login = open.layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    server.stop();
    eventually("the store notices", || async {
        !open.store.is_synchronised()
    })
    .await;
    // Served from the replica (that is what Open means), but the store
    // cannot say "not revoked" now: no replacement (rule 6).
    let response = send(&open.app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response), None, "no renewal on a stale replica");
    let _server = Server::on(port);
    eventually("the store is back", || async {
        open.store.is_synchronised()
    })
    .await;
    let response = send(&open.app, get(login.token())).await;
    assert!(
        renewed(&response).is_some(),
        "renewed once synchronised again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_flight_entry_is_not_handed_out() {
    let server = Server::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let b = instance(&server, &clock, |b| b).await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let from_a = renewed(&send(&a.app, get(login.token())).await).unwrap();
    // Someone with write access to Redis plants a token of their choosing.
    let planted = b.layer.issuer().issue(user("mallory", "admin")).unwrap();
    let keys = flight_keys(&server).await;
    assert_eq!(keys.len(), 1);
    let mut redis = connection(&server).await;
    for value in [planted.token().as_bytes().to_vec(), b"garbage".to_vec()] {
        let () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(value)
            .arg("KEEPTTL")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let response = send(&b.app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        renewed(&response),
        None,
        "b could not read a's entry: no replacement, never the planted one"
    );
    assert_eq!(b.store.stats().flight_errors, 1);
    let _ = from_a;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_path_makes_no_redis_calls() {
    let server = Server::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let tokens: Vec<_> = (0..30)
        .map(|i| {
            instances[0]
                .layer
                .issuer()
                .issue(user(&format!("user{i}"), "user"))
                .unwrap()
        })
        .collect();
    instances[0]
        .layer
        .revoker()
        .revoke_session(tokens[0].claims().registered.sid.as_deref().unwrap())
        .await
        .unwrap();
    for instance in &instances {
        eventually("the revocation arrived", || async {
            rejection(&send(&instance.app, get(tokens[0].token())).await).is_some()
        })
        .await;
    }
    let server_before = server.commands().await;
    let stores_before: u64 = instances.iter().map(|i| i.store.stats().round_trips).sum();
    let mut statuses = Vec::new();
    for round in 0..10 {
        for (i, token) in tokens.iter().enumerate() {
            let instance = &instances[(i + round) % 3];
            statuses.push(send(&instance.app, get(token.token())).await.status());
        }
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        10
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        290
    );
    let stores_after: u64 = instances.iter().map(|i| i.store.stats().round_trips).sum();
    assert_eq!(stores_after, stores_before, "no round trip from the stores");
    assert_eq!(
        server.commands().await,
        server_before,
        "redis-server executed nothing for 300 verifications"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_with_on_one_instance_retires_the_replacement_another_instance_handed_out() {
    use tower::{Layer, service_fn};
    let server = Server::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let admin = instances[0]
        .layer
        .issuer()
        .issue(user("alice", "admin"))
        .unwrap();
    clock.advance(minutes(45));
    // A renews T: its replacement R1 (old role) wins the shared flight.
    let r1 = renewed(&send(&instances[0].app, get(admin.token())).await).expect("renewed");
    assert_eq!(payload(&r1)["role"], "admin");
    // B demotes on T.
    let b = instances[1].layer.layer(service_fn(demoting));
    let demotion = demote(admin.token());
    let r2 = renewed(&send(&b, demotion).await).expect("renew_with's token");
    assert_eq!(payload(&r2)["role"], "user");
    // R1 is never served with the old role again, on any instance (the one
    // that handed it out included): its holder is served as R2 and gets it.
    for instance in &instances {
        let response = send(&instance.app, get(&r1)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let seen: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(seen["role"], "user");
        assert_eq!(renewed(&response).as_deref(), Some(r2.as_str()));
    }
    // A third instance presenting T gets the new replacement or a 401,
    // never R1.
    let response = send(&instances[2].app, get(admin.token())).await;
    match renewed(&response) {
        Some(token) => assert_eq!(token, r2),
        None => assert_eq!(rejection(&response), Some(RejectionKind::Revoked)),
    }
    assert_eq!(status(&instances[2].layer, &r2).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_with_issues_nothing_when_the_shared_flight_cannot_answer() {
    use tower::{Layer, service_fn};
    let mut server = Server::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_timeout(Duration::from_millis(300))
            .with_failure_mode(FailureMode::Open)
    })
    .await;
    let admin = a.layer.issuer().issue(user("alice", "admin")).unwrap();
    server.stop();
    eventually("the store notices", || async { !a.store.is_synchronised() }).await;
    let app = a.layer.layer(service_fn(demoting));
    let demotion = demote(admin.token());
    let response = send(&app, demotion).await;
    assert_eq!(
        renewed(&response),
        None,
        "nothing issued while Redis is away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_planted_to_outlive_any_session_neither_blocks_the_write_back_nor_lives_long()
{
    let server = Server::start();
    let clock = clock();
    let mut redis = connection(&server).await;
    // Someone with write access plants an entry whose remaining life Redis
    // would refuse as an `EX` (over 9.2e15 s).
    let () = redis::cmd("SET")
        .arg("tsj:s:poison")
        .arg(format!("{}|0", i64::MAX))
        .query_async(&mut redis)
        .await
        .unwrap();
    let a = instance(&server, &clock, |b| {
        b.with_resync_interval(Duration::from_millis(100))
    })
    .await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    let sid = login.claims().registered.sid.clone().unwrap();
    a.layer.revoker().revoke_session(&sid).await.unwrap();
    // Redis loses everything; the instance writes its replica back, the
    // planted entry with it, but bounded.
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    eventually("the logout is written back", || {
        let mut redis = redis.clone();
        let key = format!("tsj:s:{sid}");
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            exists
        }
    })
    .await;
    let ttl: i64 = redis::cmd("TTL")
        .arg("tsj:s:poison")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (1..=400 * 86_400 + 60).contains(&ttl),
        "no revocation lives longer than a session can: {ttl}"
    );
    assert!(a.store.is_synchronised(), "not 503 for good");
    assert_eq!(
        status(&a.layer, login.token()).await.1,
        Some(RejectionKind::Revoked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_entry_in_redis_is_skipped_as_garbage() {
    let server = Server::start();
    let clock = clock();
    let mut redis = connection(&server).await;
    // Would parse as a revocation of session `padded` (the zeros are a
    // number), if it were read whole: it is 100 KiB.
    let value = format!("{}|{}1", T0 + 3600, "0".repeat(100 * 1024));
    let () = redis::cmd("SET")
        .arg("tsj:s:padded")
        .arg(value)
        .query_async(&mut redis)
        .await
        .unwrap();
    let big_id = format!("tsj:s:{}", "x".repeat(20 * 1024));
    let () = redis::cmd("SET")
        .arg(big_id)
        .arg(format!("{}|0", T0 + 3600))
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg("tsj:s:real")
        .arg(format!("{}|0", T0 + 3600))
        .query_async(&mut redis)
        .await
        .unwrap();
    let a = instance(&server, &clock, |b| b).await;
    assert!(a.store.is_synchronised());
    assert_eq!(a.store.len(), 1, "only the well-formed entry is loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_on_one_instance_of_a_replacement_used_on_another_is_caught_on_a_third() {
    let server = Server::start();
    let clock = clock();
    let mut layers = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        let layer = SlidingJwtLayer::builder(hs256())
            .with_clock(clock.clone())
            .with_revocation_store(store)
            .with_reuse_detection(Duration::from_secs(30))
            .build()
            .unwrap();
        layers.push(layer);
    }
    let (a, b, c) = (&layers[0], &layers[1], &layers[2]);
    let login = a.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(41));
    let response = send(&app(a), get(login.token())).await;
    let replacement = renewed(&response).expect("renewed on A");
    // Used on B; inside the grace the old token still works on C and gets
    // the cluster's one replacement.
    assert_eq!(status(b, &replacement).await.0, StatusCode::OK);
    let response = send(&app(c), get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response).as_deref(), Some(replacement.as_str()));
    // After the grace, the old token on C is a stolen copy...
    // Past the grace plus the default 5 s leeway.
    clock.advance(Duration::from_secs(36));
    let mut caught = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if status(c, login.token()).await
            == (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
        {
            caught = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(caught, "the mark written on B reached C");
    assert_eq!(c.stats().reuse_detected(), 1);
    // ...and the session is over on every instance.
    for layer in [a, b, c] {
        eventually("the session is revoked everywhere", || async {
            status(layer, &replacement).await
                == (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
        })
        .await;
    }
    // One mark in Redis, living until the old token stops verifying.
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!(
            "tsj:r:{}",
            payload(login.token())["jti"].as_str().unwrap()
        ))
        .query_async(&mut connection(&server).await)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 19 * 60 + 5, "mark ttl {ttl}");
}

/// "Log out everywhere" from two instances whose clocks differ, the later
/// cut-off written first: Redis keeps the later one, so an instance started
/// afterwards still refuses a session that began between the two cut-offs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_log_out_everywhere_wins_in_redis_whatever_the_order() {
    let server = Server::start();
    let now = tower_sliding_jwt::SystemClock.now();
    // B's clock runs four seconds behind A's (within the leeway).
    let ahead = ManualClock::new(now);
    let behind = ManualClock::new(now - 4);
    let a = instance(&server, &ahead, |b| b).await;
    let b = instance(&server, &behind, |b| b).await;
    // Alice logged in two seconds ago: after B's cut-off, before A's.
    let login_clock = ManualClock::new(now - 2);
    let login = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(login_clock)
        .build()
        .unwrap()
        .issuer()
        .issue(user("alice", "user"))
        .unwrap();
    a.layer.revoker().revoke_subject("alice").await.unwrap();
    b.layer.revoker().revoke_subject("alice").await.unwrap();
    let late = instance(&server, &ahead, |b| b).await;
    assert_eq!(
        status(&late.layer, login.token()).await.1,
        Some(RejectionKind::Revoked),
        "an instance loaded from Redis accepted a session the later cut-off ended"
    );
    for instance in [&a, &b] {
        assert_eq!(
            status(&instance.layer, login.token()).await.1,
            Some(RejectionKind::Revoked)
        );
    }
}

/// An instance started after a `renew_with` loads the session's cut-off
/// from Redis: the sibling another instance handed out with the old claims
/// is not served with them there either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_later_honours_a_renew_with_cut_off() {
    use tower::{Layer, service_fn};
    let server = Server::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let admin = a.layer.issuer().issue(user("alice", "admin")).unwrap();
    clock.advance(minutes(45));
    let sibling = renewed(&send(&a.app, get(admin.token())).await).expect("renewed");
    let demoting_app = a.layer.layer(service_fn(demoting));
    let demotion = demote(admin.token());
    let demoted = renewed(&send(&demoting_app, demotion).await).expect("renew_with's token");
    let late = instance(&server, &clock, |b| b).await;
    let response = send(&late.app, get(&sibling)).await;
    if response.status() == StatusCode::OK {
        let seen: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(
            seen["role"], "user",
            "the late instance served the old role"
        );
        assert_eq!(renewed(&response).as_deref(), Some(demoted.as_str()));
    } else {
        assert_eq!(rejection(&response), Some(RejectionKind::Revoked));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_are_shared_by_every_instance() {
    let server = Server::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let layers: Vec<_> = instances.iter().map(|i| &i.layer).collect();
    sessions::shared_registry(&layers, &clock, "one-node").await;
    // The limit counts every instance's logins.
    let mut limited = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        limited.push(sessions::limited(
            store,
            &clock,
            tower_sliding_jwt::OnLimit::EndLeastRecent,
        ));
    }
    sessions::limit_counts_every_instance(&limited.iter().collect::<Vec<_>>(), "one-node").await;
    let mut refusing = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        refusing.push(sessions::limited(
            store,
            &clock,
            tower_sliding_jwt::OnLimit::Refuse,
        ));
    }
    sessions::simultaneous_logins_keep_the_limit(&refusing.iter().collect::<Vec<_>>(), "one-node")
        .await;
    // A subject's rows sit in one hash, hash-tagged by a digest of it.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tsj:sessions:*")
        .query_async(&mut connection(&server).await)
        .await
        .unwrap();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.len() == "tsj:sessions:{}".len() + 32),
        "{keys:?}"
    );
    // A field the crate did not write is not listed, and is deleted (it
    // would count against the user's limit).
    use sha2::Digest as _;
    let tag: String = sha2::Sha256::digest(b"erin")[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("tsj:sessions:{{{tag}}}");
    let layer = &instances[0].layer;
    let (parts, ()) = http::Request::post("/login").body(()).unwrap().into_parts();
    layer
        .issuer()
        .login(&parts, user("erin", "user"))
        .await
        .unwrap();
    let mut redis = connection(&server).await;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("planted")
        .arg(format!("{} 0 0 not json", T0 + 86_400))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(layer.sessions().list("erin").await.unwrap().len(), 1);
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(fields.len(), 1, "{fields:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_refuses_logins_and_listings_with_503() {
    let mut server = Server::start();
    let clock = clock();
    let one = instance(&server, &clock, |b| {
        b.with_timeout(Duration::from_millis(300))
    })
    .await;
    let (parts, ()) = http::Request::post("/login").body(()).unwrap().into_parts();
    let issued = one
        .layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap();
    server.stop();
    eventually("the store notices", || async {
        !one.store.is_synchronised()
    })
    .await;
    let refused = one
        .layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), tower_sliding_jwt::IssueErrorKind::Store);
    let listing = one.layer.sessions().list("alice").await.unwrap_err();
    assert!(matches!(
        listing.kind(),
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ));
    let _ = issued;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_proofs_are_refused_on_every_instance_once_used() {
    let server = Server::start();
    let clock = clock();
    let store = || {
        RedisStore::builder(server.url())
            .with_clock(clock.clone())
            // The other tests of this binary load the machine meanwhile.
            .with_timeout(Duration::from_secs(10))
            .connect()
    };
    let a = dpop_cluster::instance(store().await.unwrap(), &clock);
    let b = dpop_cluster::instance(store().await.unwrap(), &clock);
    dpop_cluster::proofs_and_nonces_are_shared(&a, &b, T0, "one-node").await;
    // One key per proof, expiring with it.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tsj:dpop:*")
        .query_async(&mut connection(&server).await)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
}
