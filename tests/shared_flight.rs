//! A single flight shared by the instances of a cluster (the hook the Redis
//! store implements), with an in-memory stand-in for the shared part.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use http::StatusCode;
use tower_sliding_jwt::{
    BoxFuture, Key, MemoryStore, SlidingJwtLayer, StoreError, StoreErrorKind,
    store::{Lookup, Revocation, RevocationStore, SharedFlight, TokenIds},
};

/// A replacement token and its `exp`.
type Replacement = (Arc<str>, i64);

/// What the instances share: the first replacement offered per old token.
#[derive(Clone, Default)]
struct Cluster {
    winners: Arc<Mutex<HashMap<Vec<u8>, Replacement>>>,
    claims: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

/// One instance's store: its own revocations, the cluster's single flight.
#[derive(Clone)]
struct InstanceStore {
    memory: MemoryStore,
    cluster: Cluster,
}

impl SharedFlight for Cluster {
    fn claim(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        _until: i64,
    ) -> BoxFuture<'static, Result<(Arc<str>, i64), StoreError>> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        let answer = if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(StoreErrorKind::Unavailable, None))
        } else {
            let mut winners = self.winners.lock().unwrap();
            Ok(winners
                .entry(old.to_owned())
                .or_insert((token, expires_at))
                .clone())
        };
        Box::pin(async move {
            tokio::task::yield_now().await;
            answer
        })
    }

    fn supersede(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        _until: i64,
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let answer = if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(StoreErrorKind::Unavailable, None))
        } else {
            let mut winners = self.winners.lock().unwrap();
            Ok(winners.insert(old.to_owned(), (token, expires_at)))
        };
        Box::pin(async move { answer })
    }
}

impl RevocationStore for InstanceStore {
    fn check(&self, token: &TokenIds<'_>, now: i64) -> Lookup {
        self.memory.check(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: Revocation,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.memory.revoke(revocation, now)
    }

    fn shared_flight(&self) -> Option<&dyn SharedFlight> {
        Some(&self.cluster)
    }
}

fn instances(
    cluster: &Cluster,
    clock: &tower_sliding_jwt::ManualClock,
) -> Vec<SlidingJwtLayer<Key, Claimset>> {
    (0..3)
        .map(|_| {
            SlidingJwtLayer::builder(hs256())
                .with_clock(clock.clone())
                .with_revocation_store(InstanceStore {
                    memory: MemoryStore::new(),
                    cluster: cluster.clone(),
                })
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn parallel_requests_on_three_instances_get_one_replacement() {
    let clock = clock();
    let cluster = Cluster::default();
    let layers = instances(&cluster, &clock);
    let apps: Vec<_> = layers.iter().map(app).collect();
    let login = layers[0].issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));

    let requests = (0..30).map(|i| send(&apps[i % 3], get(login.token())));
    let responses = futures_join_all(requests).await;
    let mut replacements: Vec<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status(), StatusCode::OK);
            renewed(r).expect("every response carries the replacement")
        })
        .collect();
    replacements.sort();
    replacements.dedup();
    assert_eq!(replacements.len(), 1, "one replacement across the cluster");
    // Each instance asked the cluster at most for its first requests; later
    // ones were answered from its local copy of the winner.
    assert!(cluster.claims.load(Ordering::SeqCst) <= 30);
    let again = cluster.claims.load(Ordering::SeqCst);
    for app in &apps {
        assert_eq!(
            renewed(&send(app, get(login.token())).await).as_deref(),
            Some(replacements[0].as_str())
        );
    }
    assert_eq!(
        cluster.claims.load(Ordering::SeqCst),
        again,
        "known locally: no round trip"
    );
}

#[tokio::test]
async fn an_unavailable_cluster_hands_out_no_replacement_until_it_answers() {
    let clock = clock();
    let cluster = Cluster::default();
    cluster.down.store(true, Ordering::SeqCst);
    let layers = instances(&cluster, &clock);
    let app = app(&layers[0]);
    let login = layers[0].issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    // A replacement the cluster never heard of could not be retired by a
    // `renew_with` on another instance: none is handed out.
    let response = send(&app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK, "served as usual");
    assert_eq!(renewed(&response), None);
    cluster.down.store(false, Ordering::SeqCst);
    let first = renewed(&send(&app, get(login.token())).await).expect("renewed once it answers");
    assert_eq!(send(&app, get(&first)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_revocation_during_the_round_trip_blocks_the_replacement() {
    let clock = clock();
    let cluster = Cluster::default();
    let layers = instances(&cluster, &clock);
    let app = app(&layers[0]);
    let login = layers[0].issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(45));
    let sid = login.claims().registered.sid.clone().unwrap();
    let request = send(&app, get(login.token()));
    let revoke = async {
        // The claim yields once: revoke while it is in flight.
        layers[0].revoker().revoke_session(&sid).await.unwrap();
    };
    let (response, ()) = tokio::join!(request, revoke);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        renewed(&response).is_none(),
        "revoked meanwhile: nothing issued"
    );
}

/// A tiny `join_all` so the test needs no futures crate.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.extend(results.into_iter().flatten());
    outputs
}
