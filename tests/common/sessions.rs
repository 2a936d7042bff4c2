//! What every shared store's registry must do across the instances of a
//! cluster (Redis on one node, a Redis Cluster, Sentinel, PostgreSQL): a
//! session recorded or ended on one instance is listed so on every other,
//! an ending is honoured everywhere within a second, ownership holds, a
//! renewal moves `last_seen`, and the per-user limit counts every instance.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use tower_sliding_jwt::store::RevocationStore;
use tower_sliding_jwt::{IssuedToken, Key, ManualClock, OnLimit, SlidingJwtLayer};

use super::{Claimset, app, get, hs256, renewed, send, user};

type Layer = SlidingJwtLayer<Key, Claimset>;

async fn login(layer: &Layer, sub: &str, agent: &str) -> IssuedToken<Claimset> {
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

fn sid(issued: &IssuedToken<Claimset>) -> String {
    issued.claims().registered.sid.clone().unwrap()
}

async fn sids(layer: &Layer, sub: &str) -> Vec<String> {
    let mut sids: Vec<String> = layer
        .sessions()
        .list(sub)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    sids.sort();
    sids
}

/// An instance on `store` allowing two sessions per user, `on_limit` past
/// them.
pub fn limited(store: impl RevocationStore, clock: &ManualClock, on_limit: OnLimit) -> Layer {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .with_max_sessions(2, on_limit)
        .build()
        .unwrap()
}

/// Every layer refuses `token` within a second.
async fn refused_everywhere(layers: &[&Layer], token: &str) {
    let started = Instant::now();
    for layer in layers {
        while send(&app(layer), get(token)).await.status() != StatusCode::UNAUTHORIZED {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "an ended session still served after a second"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Runs the cluster checks on `layers` (at least three instances sharing
/// one store, on `clock`), with subjects named after `tag` so several
/// calls on one store do not meet.
pub async fn shared_registry(layers: &[&Layer], clock: &ManualClock, tag: &str) {
    let (alice, bob) = (format!("alice-{tag}"), format!("bob-{tag}"));
    let one = login(layers[0], &alice, "One/1").await;
    let two = login(layers[1], &alice, "Two/2").await;
    let theirs = login(layers[2], &bob, "Bob/1").await;
    let mut both = vec![sid(&one), sid(&two)];
    both.sort();
    for layer in layers {
        assert_eq!(
            sids(layer, &alice).await,
            both,
            "every instance lists every login"
        );
    }
    let listed = layers[2].sessions().list(&alice).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.user_agent.as_deref() == Some("Two/2"))
    );
    // Another user's session is not found, and lives on.
    assert!(
        !layers[0]
            .sessions()
            .end(&alice, &sid(&theirs))
            .await
            .unwrap()
    );
    assert_eq!(
        send(&app(layers[1]), get(theirs.token())).await.status(),
        StatusCode::OK
    );
    // Ended on one instance: refused by all within a second, listed by none.
    assert!(layers[2].sessions().end(&alice, &sid(&one)).await.unwrap());
    refused_everywhere(layers, one.token()).await;
    for layer in layers {
        assert_eq!(sids(layer, &alice).await, [sid(&two)]);
    }
    // A renewal on one instance moves last_seen for all.
    clock.advance(Duration::from_secs(50 * 60));
    let response = send(&app(layers[0]), get(two.token())).await;
    assert!(renewed(&response).is_some(), "renewed");
    let seen = layers[1].sessions().list(&alice).await.unwrap()[0].last_seen;
    assert_eq!(
        seen.unix_timestamp(),
        two.claims().registered.iat.unwrap() + 50 * 60
    );
    // "Log out other devices" from a third login ends the rest everywhere.
    let three = login(layers[1], &alice, "Three/3").await;
    assert_eq!(
        layers[0]
            .sessions()
            .end_all_except(&alice, &sid(&three))
            .await
            .unwrap(),
        1
    );
    refused_everywhere(layers, two.token()).await;
    assert_eq!(sids(layers[2], &alice).await, [sid(&three)]);
    assert_eq!(layers[2].sessions().end_all(&bob).await.unwrap(), 1);
}

/// A limit of two sessions per user, counted over every instance: a third
/// login anywhere ends the least recently seen, everywhere.
pub async fn limit_counts_every_instance(layers: &[&Layer], tag: &str) {
    let carol = format!("carol-{tag}");
    let first = login(layers[0], &carol, "1").await;
    let second = login(layers[1], &carol, "2").await;
    let third = login(layers[2], &carol, "3").await;
    refused_everywhere(layers, first.token()).await;
    let mut kept = vec![sid(&second), sid(&third)];
    kept.sort();
    assert_eq!(sids(layers[0], &carol).await, kept);
}

/// Sixteen logins of one user at once, spread over `layers` (a limit of two
/// sessions, refusing): two succeed, and two sessions are live.
pub async fn simultaneous_logins_keep_the_limit(layers: &[&Layer], tag: &str) {
    let dave = format!("dave-{tag}");
    let logins: Vec<_> = (0..16)
        .map(|i| {
            let issuer = layers[i % layers.len()].issuer();
            let dave = dave.clone();
            tokio::spawn(async move {
                let (parts, ()) = Request::post("/login").body(()).unwrap().into_parts();
                issuer.login(&parts, user(&dave, "user")).await
            })
        })
        .collect();
    let mut succeeded = 0;
    for login in logins {
        match login.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(error) => assert_eq!(
                error.kind(),
                tower_sliding_jwt::IssueErrorKind::TooManySessions
            ),
        }
    }
    assert_eq!(succeeded, 2);
    assert_eq!(sids(layers[0], &dave).await.len(), 2);
}
