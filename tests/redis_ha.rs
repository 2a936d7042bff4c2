//! The Redis store on highly available deployments, against real servers
//! the tests start on loopback: a 3-master Redis Cluster (one master killed
//! and restarted empty), and a master with a replica under three Sentinels
//! (the master killed, a failover). Revocations agreed within a second, one
//! replacement per old token, nothing lost, a logout afterwards reaching
//! everyone, and no Redis command on the verify path.
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/sessions.rs"]
mod sessions;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_server::{RedisCluster, Sentinels};
use tower_sliding_jwt::redis::RedisStore;
use tower_sliding_jwt::{IssuedToken, Key, ManualClock, RejectionKind, SlidingJwtLayer};

type Layer = SlidingJwtLayer<Key, Claimset>;

async fn instance(url: &str, clock: &ManualClock) -> Layer {
    let store = RedisStore::builder(url)
        .with_clock(clock.clone())
        .with_resync_interval(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .build()
        .unwrap()
}

async fn status(layer: &Layer, token: &str) -> (StatusCode, Option<RejectionKind>) {
    let response = send(&app(layer), get(token)).await;
    (response.status(), rejection(&response))
}

/// Polls until `condition` holds, for at most `within`.
async fn within<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn sid(token: &IssuedToken<Claimset>) -> String {
    token.claims().registered.sid.clone().unwrap()
}

/// Logs in `n` users on `layer`; revokes every other session through
/// `revoking`; every layer refuses those and serves the others within a second.
async fn revocations_agree(layers: &[&Layer], n: usize) -> (Vec<String>, Vec<String>) {
    let sessions: Vec<_> = (0..n)
        .map(|i| {
            layers[0]
                .issuer()
                .issue(user(&format!("user{i}"), "user"))
                .unwrap()
        })
        .collect();
    let (revoked, live): (Vec<_>, Vec<_>) =
        sessions.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, session) in &revoked {
        layers[1]
            .revoker()
            .revoke_session(&sid(session))
            .await
            .unwrap();
    }
    for layer in layers {
        for (_, session) in &revoked {
            within(
                Duration::from_secs(1),
                "a logout reaches every instance",
                || async { status(layer, session.token()).await.0 == StatusCode::UNAUTHORIZED },
            )
            .await;
        }
        for (_, session) in &live {
            assert_eq!(status(layer, session.token()).await.0, StatusCode::OK);
        }
    }
    let tokens = |list: Vec<(usize, &IssuedToken<Claimset>)>| {
        list.into_iter()
            .map(|(_, s)| s.token().to_owned())
            .collect()
    };
    (tokens(revoked), tokens(live))
}

/// A logout of `token`'s session on `on` is refused by every layer within
/// a second.
async fn late_logout_reaches(on: &Layer, layers: &[&Layer], token: &str) {
    on.revoker()
        .revoke_session(payload(token)["sid"].as_str().unwrap())
        .await
        .unwrap();
    for layer in layers {
        within(
            Duration::from_secs(1),
            "a later logout reaches everyone",
            || async { status(layer, token).await.0 == StatusCode::UNAUTHORIZED },
        )
        .await;
    }
}

/// Thirty parallel requests with one near-expiry token over the layers get
/// one replacement.
async fn one_replacement(layers: &[&Layer], clock: &ManualClock) {
    let login = layers[0].issuer().issue(user("parallel", "user")).unwrap();
    clock.advance(minutes(45));
    let requests: Vec<_> = (0..30)
        .map(|i| {
            let app = app(layers[i % layers.len()]);
            let token = login.token().to_owned();
            tokio::spawn(async move { send(&app, get(&token)).await })
        })
        .collect();
    let mut replacements = Vec::new();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        replacements.extend(renewed(&response));
    }
    replacements.sort();
    replacements.dedup();
    assert_eq!(
        replacements.len(),
        1,
        "one replacement across the instances"
    );
    clock.advance(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_agrees_and_loses_nothing_when_a_master_restarts_empty() {
    let mut cluster = RedisCluster::start(3).await;
    let clock = clock();
    let a = instance(&cluster.url(), &clock).await;
    let b = instance(&cluster.url(), &clock).await;
    let c = instance(&cluster.url(), &clock).await;
    sessions::shared_registry(&[&a, &b, &c], &clock, "cluster").await;
    let (revoked, live) = revocations_agree(&[&a, &b, &c], 24).await;
    // Revocation keys sit on every master.
    let mut holders = Vec::new();
    for token in &revoked {
        let key = format!("tsj:s:{}", payload(token)["sid"].as_str().unwrap());
        holders.push(cluster.node_of(&key).await);
    }
    holders.sort();
    holders.dedup();
    assert_eq!(holders.len(), 3, "sessions spread over the three masters");

    // The verify path makes no Redis command on any node.
    let before = cluster.commands().await;
    for _ in 0..50 {
        for layer in [&a, &b, &c] {
            assert_eq!(status(layer, &live[0]).await.0, StatusCode::OK);
        }
    }
    assert_eq!(
        cluster.commands().await - before,
        0,
        "no command per verification"
    );

    one_replacement(&[&a, &b, &c], &clock).await;

    // One master dies and comes back empty, keeping its place in the cluster.
    cluster.nodes[0].kill();
    // Never accepted meanwhile: refused (401), or 503 while an instance
    // cannot vouch for its replica.
    for layer in [&a, &b, &c] {
        for token in &revoked {
            assert_ne!(status(layer, token).await.0, StatusCode::OK);
        }
    }
    cluster.nodes[0].start();
    cluster.wait_until_ok().await;
    // The instances notice the empty shard and write back what it lost.
    let lost: Vec<String> = revoked
        .iter()
        .map(|token| format!("tsj:s:{}", payload(token)["sid"].as_str().unwrap()))
        .collect();
    let took = within(
        Duration::from_secs(15),
        "the lost shard is written back",
        || async {
            for key in &lost {
                if !cluster.exists(key).await {
                    return false;
                }
            }
            true
        },
    )
    .await;
    println!("the empty master was refilled {took:?} after it was back");
    for layer in [&a, &b, &c] {
        within(
            Duration::from_secs(10),
            "the instances serve again",
            || async { status(layer, &live[0]).await.0 == StatusCode::OK },
        )
        .await;
        for token in &revoked {
            assert_eq!(status(layer, token).await.0, StatusCode::UNAUTHORIZED);
        }
    }
    // An instance started afterwards knows every revocation.
    let d = instance(&cluster.url(), &clock).await;
    for token in &revoked {
        assert_eq!(
            status(&d, token).await,
            (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
        );
    }
    // A logout after the recovery reaches everyone.
    late_logout_reaches(&c, &[&a, &b, &c, &d], live.last().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_fail_over_and_the_instances_follow_losing_nothing() {
    let mut setup = Sentinels::start().await;
    let clock = clock();
    let a = instance(&setup.url(), &clock).await;
    let b = instance(&setup.url(), &clock).await;
    let c = instance(&setup.url(), &clock).await;
    sessions::shared_registry(&[&a, &b, &c], &clock, "sentinel").await;
    let (revoked, live) = revocations_agree(&[&a, &b, &c], 8).await;

    // The verify path makes no command on the master or the replica (the
    // Sentinels' own PING, INFO and hello PUBLISH, and replication, are not
    // the store's: only the commands the store uses are counted).
    let nodes = [setup.master.url(), setup.replica.url()];
    let count = || async {
        let mut total = 0;
        for url in &nodes {
            total += redis_server::store_commands_at(url).await;
        }
        total
    };
    let before = count().await;
    for _ in 0..50 {
        for layer in [&a, &b, &c] {
            assert_eq!(status(layer, &live[0]).await.0, StatusCode::OK);
        }
    }
    assert_eq!(count().await - before, 0, "no command per verification");

    one_replacement(&[&a, &b, &c], &clock).await;

    // A wait as long as the store's timeout could never be answered in time.
    let too_long = RedisStore::builder(setup.url())
        .with_wait_for_replicas(1, Duration::from_secs(5))
        .connect()
        .await;
    assert!(
        too_long.is_err(),
        "a wait longer than the timeout is refused"
    );

    // A logout acknowledged by the replica too survives the failover.
    let waiting = RedisStore::builder(setup.url())
        .with_clock(clock.clone())
        .with_wait_for_replicas(1, Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let acknowledged = a.issuer().issue(user("acked", "user")).unwrap();
    tower_sliding_jwt::store::RevocationStore::revoke(
        &waiting,
        tower_sliding_jwt::store::Revocation {
            target: tower_sliding_jwt::store::RevocationTarget::Session(sid(&acknowledged)),
            until: clock_now(&clock) + 86_400,
            reason: None,
        },
        clock_now(&clock),
    )
    .await
    .expect("the replica acknowledged");

    // A logout the replica never got: the replica is stopped, the master
    // gives up on it (`repl-timeout` 1 s), takes the logout, and dies.
    let unreplicated = a.issuer().issue(user("lost", "user")).unwrap();
    setup.replica.pause();
    within(
        Duration::from_secs(10),
        "the master drops its replica",
        || async {
            let info =
                redis_server::query_at(&setup.master.url(), redis::cmd("INFO").arg("replication"))
                    .await
                    .ok()
                    .and_then(|value| redis::from_redis_value::<String>(value).ok())
                    .unwrap_or_default();
            info.contains("connected_slaves:0")
        },
    )
    .await;
    a.revoker()
        .revoke_session(&sid(&unreplicated))
        .await
        .unwrap();
    let lost_key = format!("tsj:s:{}", sid(&unreplicated));

    // The master dies: the Sentinels promote the replica.
    let old_port = setup.master.port;
    setup.master.kill();
    setup.replica.resume();
    let started = Instant::now();
    within(
        Duration::from_secs(30),
        "the Sentinels promote the replica",
        || async {
            setup
                .master_port()
                .await
                .is_some_and(|port| port != old_port)
        },
    )
    .await;
    let every = |extra: &[&IssuedToken<Claimset>]| -> Vec<String> {
        revoked
            .iter()
            .cloned()
            .chain(extra.iter().map(|token| token.token().to_owned()))
            .collect()
    };
    let all_revoked = every(&[&acknowledged, &unreplicated]);
    for layer in [&a, &b, &c] {
        within(
            Duration::from_secs(15),
            "the instances follow the new master",
            || async { status(layer, &live[0]).await.0 == StatusCode::OK },
        )
        .await;
        for token in &all_revoked {
            assert_eq!(status(layer, token).await.0, StatusCode::UNAUTHORIZED);
        }
    }
    println!(
        "instances followed the failover {:?} after the master died",
        started.elapsed()
    );
    // The new master lacked the last logout: the instances wrote it back.
    within(
        Duration::from_secs(5),
        "the logout the replica missed is written back",
        || async { redis_server::exists_at(&setup.replica.url(), &lost_key).await },
    )
    .await;
    // An instance started after the failover knows every revocation.
    let d = instance(&setup.url(), &clock).await;
    for token in &all_revoked {
        assert_eq!(status(&d, token).await.0, StatusCode::UNAUTHORIZED);
    }
    // A logout after the failover reaches everyone.
    late_logout_reaches(&b, &[&a, &b, &c, &d], live.last().unwrap()).await;
    // With no replica left, a store that waits for one says so.
    let error = tower_sliding_jwt::store::RevocationStore::revoke(
        &waiting,
        tower_sliding_jwt::store::Revocation {
            target: tower_sliding_jwt::store::RevocationTarget::Session("nobody".into()),
            until: clock_now(&clock) + 86_400,
            reason: None,
        },
        clock_now(&clock),
    )
    .await;
    assert!(error.is_err(), "acknowledged without a replica");
}

fn clock_now(clock: &ManualClock) -> i64 {
    tower_sliding_jwt::Clock::now(clock)
}
