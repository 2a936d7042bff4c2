//! Concurrency and load, on loopback and bounded in count and time.
//!
//! * `mixed_load_on_the_axum_demo` (in `cargo test`): 64 connections send
//!   valid, near-expiry and invalid tokens, mixed, to the axum demo. No error
//!   but the expected 401s, and every near-expiry token converges on a single
//!   replacement.
//! * `a_million_tokens_leave_memory_flat` (ignored by default; run it with
//!   `cargo test --release --test load -- --ignored --nocapture`): one million
//!   distinct near-expiry tokens through the single-flight map and a revocation
//!   store that keeps revoking, reporting resident memory before and after.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod axum_demo;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum_demo::demo::{self, DemoClaims};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{
    Clock, ManualClock, MemoryStore, SlidingJwtLayer, SystemClock,
    store::{Revocation, RevocationTarget},
};

const SECRET: &[u8] = b"load test secret, at least 32 bytes long";
const CONNECTIONS: usize = 64;
const REQUESTS_PER_CONNECTION: usize = 60;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Valid,
    NearExpiry,
    Invalid,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_on_the_axum_demo() {
    let now = SystemClock.now();
    let clock = ManualClock::new(now - 45 * 60);
    let layer = demo::layer(SECRET, clock.clone()).unwrap();
    // Near-expiry tokens: issued 45 minutes ago, 15 minutes left.
    let near: Vec<String> = (0..16)
        .map(|i| {
            layer
                .issuer()
                .issue(demo::claims(&format!("old{i}"), "user"))
                .unwrap()
                .into_token()
        })
        .collect();
    clock.set(now);
    let valid: Vec<String> = (0..16)
        .map(|i| {
            layer
                .issuer()
                .issue(demo::claims(&format!("new{i}"), "user"))
                .unwrap()
                .into_token()
        })
        .collect();
    let invalid: Vec<String> = valid
        .iter()
        .map(|t| format!("{}A", &t[..t.len() - 1].replace('.', ".x")))
        .collect();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_demo::app(layer);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let replacements: Arc<Mutex<HashMap<String, HashSet<String>>>> = Arc::default();
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let (valid, near, invalid, replacements) = (
            valid.clone(),
            near.clone(),
            invalid.clone(),
            replacements.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(driver);
            let mut counts = HashMap::new();
            for n in 0..REQUESTS_PER_CONNECTION {
                let pick = connection * 7 + n;
                let (kind, token) = match pick % 3 {
                    0 => (Kind::Valid, &valid[pick % valid.len()]),
                    1 => (Kind::NearExpiry, &near[pick % near.len()]),
                    _ => (Kind::Invalid, &invalid[pick % invalid.len()]),
                };
                let request = Request::get("/me")
                    .header("host", "localhost")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let renewed = response
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                response.into_body().collect().await.unwrap();
                match kind {
                    Kind::Valid => assert_eq!((status, renewed.as_deref()), (StatusCode::OK, None)),
                    Kind::Invalid => assert_eq!(
                        (status, renewed.as_deref()),
                        (StatusCode::UNAUTHORIZED, None)
                    ),
                    Kind::NearExpiry => {
                        assert_eq!(status, StatusCode::OK);
                        let renewed = renewed.expect("near-expiry tokens are renewed");
                        replacements
                            .lock()
                            .unwrap()
                            .entry(token.clone())
                            .or_default()
                            .insert(renewed);
                    }
                }
                *counts.entry(status.as_u16()).or_insert(0usize) += 1;
            }
            counts
        }));
    }
    let mut totals: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        for (status, count) in task.await.unwrap() {
            *totals.entry(status).or_default() += count;
        }
    }
    let total = CONNECTIONS * REQUESTS_PER_CONNECTION;
    assert_eq!(totals.values().sum::<usize>(), total);
    assert_eq!(
        totals.keys().copied().collect::<HashSet<_>>(),
        HashSet::from([200, 401]),
        "{totals:?}"
    );
    let replacements = replacements.lock().unwrap();
    assert_eq!(
        replacements.len(),
        near.len(),
        "every near-expiry token was used"
    );
    for (old, new) in replacements.iter() {
        assert_eq!(new.len(), 1, "{} replacements for one old token", new.len());
        let _ = old;
    }
}

fn ok(_: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[test]
#[ignore = "long: one million tokens; run with --release --ignored"]
fn a_million_tokens_leave_memory_flat() {
    const TOKENS: u64 = 1_000_000;
    let start = 1_800_000_000;
    let clock = ManualClock::new(start);
    let store = MemoryStore::new();
    let layer =
        SlidingJwtLayer::<_, DemoClaims>::builder(tower_sliding_jwt::Key::hs256(SECRET).unwrap())
            .with_clock(clock.clone())
            .with_ttl(Duration::from_secs(600))
            .with_revocation_store(store.clone())
            .build()
            .unwrap();
    let mut service = layer.layer(service_fn(ok as fn(_) -> _));
    let issuer_clock = ManualClock::new(start);
    let issuer =
        SlidingJwtLayer::<_, DemoClaims>::builder(tower_sliding_jwt::Key::hs256(SECRET).unwrap())
            .with_clock(issuer_clock.clone())
            .with_ttl(Duration::from_secs(600))
            .build()
            .unwrap()
            .issuer();
    let mut cx = Context::from_waker(Waker::noop());
    let mut baseline = 0;
    let mut renewed = 0u64;
    for n in 0..TOKENS {
        // A thousand requests a second; each token was issued 9 minutes ago.
        let now = start + (n / 1000) as i64;
        clock.set(now);
        issuer_clock.set(now - 540);
        let token = issuer.issue(demo::claims("user", "user")).unwrap();
        let request = Request::get("/")
            .header("authorization", format!("Bearer {}", token.token()))
            .body(())
            .unwrap();
        let Poll::Ready(Ok(response)) = pin!(service.call(request)).as_mut().poll(&mut cx) else {
            panic!()
        };
        renewed += u64::from(response.headers().contains_key("authorization"));
        // Every tenth session is logged out, remembered for five minutes.
        if n % 10 == 0 {
            let sid = token.claims().registered.sid.clone().unwrap();
            store
                .insert(
                    &Revocation {
                        target: RevocationTarget::Session(sid),
                        until: now + 300,
                        reason: None,
                    },
                    now,
                )
                .unwrap();
        }
        if n == 100_000 {
            baseline = resident_kib();
            println!(
                "after 100k tokens: {baseline} KiB resident, {} revocations held",
                store.len()
            );
        }
    }
    let after = resident_kib();
    println!(
        "after {TOKENS} tokens: {after} KiB resident, {} revocations held, {renewed} renewed",
        store.len()
    );
    assert_eq!(renewed, TOKENS);
    assert!(
        store.len() <= 40_000,
        "revocations are forgotten: {}",
        store.len()
    );
    assert!(
        after < baseline + 32 * 1024,
        "resident memory grew from {baseline} KiB to {after} KiB"
    );
}

#[cfg(feature = "redis")]
#[path = "common/redis_server.rs"]
mod redis_server;

/// One HTTP/1 connection's worth of requests to `/me`; returns the statuses
/// and the renewed tokens.
#[cfg(feature = "redis")]
async fn drive(
    addr: std::net::SocketAddr,
    tokens: Vec<String>,
) -> Vec<(StatusCode, String, Option<String>)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(driver);
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        let request = Request::get("/me")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let renewed = response
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().trim_start_matches("Bearer ").to_owned());
        response.into_body().collect().await.unwrap();
        out.push((status, token, renewed));
    }
    out
}

/// The cluster under load, on loopback: three axum demo instances behind one
/// `redis-server`, 64 connections spread over them. First only verification
/// (fresh tokens, some revoked): throughput, and no Redis command at all.
/// Then near-expiry tokens: one replacement per old token across the cluster,
/// and the Redis commands that cost. Bounded: a fixed number of requests,
/// and at most a minute. Prints its figures (`--nocapture`).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_load_on_three_axum_demos() {
    let server = Deployment::Single(redis_server::Server::start());
    cluster_load(&server).await;
}

/// The same load on a 3-master Redis Cluster, and on a master with a
/// replica under three Sentinels.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_load_on_a_redis_cluster_and_under_sentinels() {
    let cluster = Deployment::Cluster(redis_server::RedisCluster::start(3).await);
    cluster_load(&cluster).await;
    drop(cluster);
    let sentinels = Deployment::Sentinel(redis_server::Sentinels::start().await);
    cluster_load(&sentinels).await;
}

/// Where the load test's Redis runs.
#[cfg(feature = "redis")]
enum Deployment {
    Single(redis_server::Server),
    Cluster(redis_server::RedisCluster),
    Sentinel(redis_server::Sentinels),
}

#[cfg(feature = "redis")]
impl Deployment {
    fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(cluster) => cluster.url(),
            Self::Sentinel(sentinels) => sentinels.url(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "one redis-server",
            Self::Cluster(_) => "a 3-master Redis Cluster",
            Self::Sentinel(_) => "Sentinels (master + replica)",
        }
    }

    /// Commands the store's Redis executed (on a Sentinel deployment, only
    /// the commands a store sends: Sentinels ping and publish on their own).
    async fn commands(&self) -> u64 {
        match self {
            Self::Single(server) => server.commands().await,
            Self::Cluster(cluster) => cluster.commands().await,
            Self::Sentinel(sentinels) => {
                redis_server::store_commands_at(&sentinels.master.url()).await
            }
        }
    }
}

#[cfg(feature = "redis")]
async fn cluster_load(server: &Deployment) {
    const PER_CONNECTION: usize = 100;
    let now = SystemClock.now();
    let clock = ManualClock::new(now - 45 * 60);
    let mut addrs = Vec::new();
    let mut issuer = None;
    let mut revoker = None;
    for _ in 0..3 {
        let layer = demo::cluster_layer(
            tower_sliding_jwt::Key::hs256(SECRET).unwrap(),
            clock.clone(),
            &server.url(),
            None,
        )
        .await
        .unwrap();
        issuer.get_or_insert_with(|| layer.issuer());
        revoker.get_or_insert_with(|| layer.revoker());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let app = axum_demo::app(layer);
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let (issuer, revoker) = (issuer.unwrap(), revoker.unwrap());
    let issue = |name: String| issuer.issue(demo::claims(&name, "user")).unwrap();
    let near: Vec<String> = (0..16)
        .map(|i| issue(format!("old{i}")).into_token())
        .collect();
    clock.set(now);
    let fresh: Vec<_> = (0..64).map(|i| issue(format!("new{i}"))).collect();
    for token in &fresh[..4] {
        revoker
            .revoke_session(token.claims().registered.sid.as_deref().unwrap())
            .await
            .unwrap();
    }
    // Every instance has the revocations before the measurement starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh: Vec<String> = fresh.into_iter().map(|t| t.into_token()).collect();

    let run = |pick: &dyn Fn(usize, usize) -> String| {
        (0..CONNECTIONS)
            .map(|c| {
                let tokens: Vec<String> = (0..PER_CONNECTION).map(|n| pick(c, n)).collect();
                tokio::spawn(drive(addrs[c % 3], tokens))
            })
            .collect::<Vec<_>>()
    };
    let bounded = Duration::from_secs(60);

    // Verification only.
    let before = server.commands().await;
    let started = std::time::Instant::now();
    let tasks = run(&|c, n| fresh[(c * 7 + n) % fresh.len()].clone());
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        for (status, _, renewed) in tokio::time::timeout(bounded, task).await.unwrap().unwrap() {
            assert!(renewed.is_none());
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let verify_commands = server.commands().await - before;
    let total = CONNECTIONS * PER_CONNECTION;
    println!(
        "{}: verify: {total} requests over 3 instances, 64 connections in {elapsed:?}: {:.0} requests/s; {statuses:?}; Redis commands: {verify_commands}",
        server.name(),
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        statuses.get(&401).copied(),
        Some(total / 16),
        "revoked ones refused"
    );
    assert_eq!(verify_commands, 0, "the verify path makes no Redis call");

    // Near-expiry tokens, each presented on every instance in parallel.
    let before = server.commands().await;
    let started = std::time::Instant::now();
    let tasks = run(&|c, n| near[(c + n) % near.len()].clone());
    let mut replacements: HashMap<String, HashSet<String>> = HashMap::new();
    for task in tasks {
        for (status, old, renewed) in tokio::time::timeout(bounded, task).await.unwrap().unwrap() {
            assert_eq!(status, StatusCode::OK);
            replacements
                .entry(old)
                .or_default()
                .insert(renewed.expect("renewed"));
        }
    }
    let elapsed = started.elapsed();
    let renew_commands = server.commands().await - before;
    println!(
        "{}: renew: {total} requests with 16 near-expiry tokens in {elapsed:?}: {:.0} requests/s; Redis commands: {renew_commands} ({:.2} per old token per instance)",
        server.name(),
        total as f64 / elapsed.as_secs_f64(),
        renew_commands as f64 / 48.0
    );
    assert_eq!(replacements.len(), near.len());
    for new in replacements.values() {
        assert_eq!(
            new.len(),
            1,
            "one replacement per old token across the cluster"
        );
    }
    // One SET + GET per claim; each instance claims an old token only until
    // it knows the winner.
    assert!(renew_commands >= 2 * 16, "{renew_commands}");
    assert!(renew_commands <= 2 * total as u64, "{renew_commands}");
}

/// Per-renewal cost, sequential, through the layer (`oneshot`): the local
/// single flight (memory store) against the Redis one (one round trip to a
/// loopback `redis-server`). Run with
/// `cargo test --release --features redis --test load -- --ignored --nocapture per_renewal`.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn per_renewal_cost_with_and_without_redis_single_flight() {
    const N: usize = 5_000;
    let server = redis_server::Server::start();
    let now = 1_800_000_000;
    let clock = ManualClock::new(now);
    let issuer_clock = ManualClock::new(now - 45 * 60);
    let issuer = demo::layer(SECRET, issuer_clock).unwrap().issuer();
    let redis_store = tower_sliding_jwt::redis::RedisStore::builder(server.url())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    let cluster = redis_server::RedisCluster::start(3).await;
    let cluster_store = tower_sliding_jwt::redis::RedisStore::builder(cluster.url())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    let sentinels = redis_server::Sentinels::start().await;
    let sentinel_store = tower_sliding_jwt::redis::RedisStore::builder(sentinels.url())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    let layers = [
        ("verify only, memory store", None),
        ("renewal, local single flight (memory store)", Some(None)),
        (
            "renewal, Redis single flight (one node)",
            Some(Some(&redis_store)),
        ),
        (
            "renewal, Redis single flight (3-master cluster)",
            Some(Some(&cluster_store)),
        ),
        (
            "renewal, Redis single flight (Sentinel master)",
            Some(Some(&sentinel_store)),
        ),
    ];
    for (name, renew) in layers {
        let builder = demo::builder(SECRET, clock.clone()).unwrap();
        let layer = match renew {
            Some(Some(store)) => builder.with_revocation_store(store.clone()),
            _ => builder.with_revocation_store(MemoryStore::new()),
        }
        .build()
        .unwrap();
        let issue = if renew.is_some() {
            issuer.clone()
        } else {
            layer.issuer()
        };
        let tokens: Vec<String> = (0..N)
            .map(|i| {
                issue
                    .issue(demo::claims(&format!("u{i}"), "user"))
                    .unwrap()
                    .into_token()
            })
            .collect();
        let service = layer.layer(service_fn(ok as fn(_) -> _));
        let started = std::time::Instant::now();
        for token in &tokens {
            let request = Request::get("/")
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap();
            let response = tower::ServiceExt::oneshot(service.clone(), request)
                .await
                .unwrap();
            assert_eq!(
                response.headers().contains_key("authorization"),
                renew.is_some()
            );
        }
        let per = started.elapsed() / N as u32;
        println!("{name}: {per:?} per request ({N} sequential)");
    }
    println!("Redis: {:?}", redis_store.stats());
}

#[cfg(feature = "postgres")]
#[path = "common/postgres_server.rs"]
mod postgres_server;

/// Per-renewal cost, sequential, through the layer (`oneshot`), interleaved
/// in rounds so the host's phases hit every store alike: the local single
/// flight, Redis's (one loopback round trip) and PostgreSQL's (one
/// statement). Run with `cargo test --release --features redis,postgres
/// --test load -- --ignored --nocapture per_renewal_cost_on`.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn per_renewal_cost_on_redis_and_postgres() {
    use tower_sliding_jwt::store::RevocationStore;
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 500;
    let now = 1_800_000_000;
    let clock = ManualClock::new(now);
    let issuer = demo::layer(SECRET, ManualClock::new(now - 45 * 60))
        .unwrap()
        .issuer();
    let redis = redis_server::Server::start();
    let postgres = postgres_server::Postgres::start();
    let stores: Vec<(&str, std::sync::Arc<dyn RevocationStore>)> = vec![
        (
            "local single flight (memory store)",
            std::sync::Arc::new(MemoryStore::new()),
        ),
        (
            "Redis single flight (one node)",
            std::sync::Arc::new(
                tower_sliding_jwt::redis::RedisStore::builder(redis.url())
                    .with_clock(clock.clone())
                    .connect()
                    .await
                    .unwrap(),
            ),
        ),
        (
            "PostgreSQL single flight",
            std::sync::Arc::new(
                tower_sliding_jwt::postgres::PostgresStore::builder(postgres.url())
                    .with_clock(clock.clone())
                    .connect()
                    .await
                    .unwrap(),
            ),
        ),
    ];
    let services: Vec<_> = stores
        .iter()
        .map(|(_, store)| {
            demo::builder(SECRET, clock.clone())
                .unwrap()
                .with_revocation_store(store.clone())
                .build()
                .unwrap()
                .layer(service_fn(ok as fn(_) -> _))
        })
        .collect();
    let mut spent = vec![Duration::ZERO; services.len()];
    for round in 0..ROUNDS {
        for (which, service) in services.iter().enumerate() {
            let tokens: Vec<String> = (0..PER_ROUND)
                .map(|i| {
                    issuer
                        .issue(demo::claims(&format!("u{round}-{which}-{i}"), "user"))
                        .unwrap()
                        .into_token()
                })
                .collect();
            let started = std::time::Instant::now();
            for token in &tokens {
                let request = Request::get("/")
                    .header("authorization", format!("Bearer {token}"))
                    .body(())
                    .unwrap();
                let response = tower::ServiceExt::oneshot(service.clone(), request)
                    .await
                    .unwrap();
                assert!(response.headers().contains_key("authorization"));
            }
            spent[which] += started.elapsed();
        }
    }
    let per: Vec<Duration> = spent
        .iter()
        .map(|total| *total / (ROUNDS * PER_ROUND) as u32)
        .collect();
    for ((name, _), per) in stores.iter().zip(&per) {
        println!("renewal, {name}: {per:?} per request");
    }
    println!(
        "PostgreSQL / Redis: {:.2}",
        per[2].as_secs_f64() / per[1].as_secs_f64()
    );
}

/// A store that forwards everything to `S` but keeps no session registry:
/// the same store with the registry off, for the comparisons below.
#[cfg(all(feature = "redis", feature = "postgres"))]
struct NoRegistry(std::sync::Arc<dyn tower_sliding_jwt::store::RevocationStore>);

#[cfg(all(feature = "redis", feature = "postgres"))]
impl tower_sliding_jwt::store::RevocationStore for NoRegistry {
    fn check(
        &self,
        token: &tower_sliding_jwt::store::TokenIds<'_>,
        now: i64,
    ) -> tower_sliding_jwt::store::Lookup {
        self.0.check(token, now)
    }

    fn check_fresh(
        &self,
        token: &tower_sliding_jwt::store::TokenIds<'_>,
        now: i64,
    ) -> tower_sliding_jwt::store::Lookup {
        self.0.check_fresh(token, now)
    }

    fn revoke<'a>(
        &'a self,
        revocation: tower_sliding_jwt::store::Revocation,
        now: i64,
    ) -> tower_sliding_jwt::BoxFuture<'a, Result<(), tower_sliding_jwt::StoreError>> {
        self.0.revoke(revocation, now)
    }

    fn shared_flight(&self) -> Option<&dyn tower_sliding_jwt::store::SharedFlight> {
        self.0.shared_flight()
    }

    fn keeps_cutoffs(&self) -> bool {
        self.0.keeps_cutoffs()
    }

    fn keeps_replacements(&self) -> bool {
        self.0.keeps_replacements()
    }
}

/// The cost of a login and of a renewal with the session registry and
/// without it, per store, sequential, interleaved in rounds: memory,
/// durable (SQLite, a group commit per write), Redis (one node) and
/// PostgreSQL. Run with `cargo test --release --features
/// redis,postgres,sqlite --test load -- --ignored --nocapture
/// login_and_renewal_cost`.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn login_and_renewal_cost_with_and_without_the_registry() {
    use std::sync::Arc;
    use tower_sliding_jwt::store::RevocationStore;
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 300;
    let now = 1_800_000_000;
    let clock = ManualClock::new(now);
    let (_servers, redis, postgres) = cluster_stores(&clock).await;
    let dir = std::env::temp_dir().join(format!("tsj-load-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let durable: Arc<dyn RevocationStore> = Arc::new(
        tower_sliding_jwt::DurableStore::builder(dir.join("r.sqlite3"))
            .with_clock(clock.clone())
            .open()
            .unwrap(),
    );
    let memory: Arc<dyn RevocationStore> = Arc::new(MemoryStore::new());
    let mut stores: Vec<(String, Arc<dyn RevocationStore>)> = Vec::new();
    for (name, store) in [
        ("memory", memory),
        ("durable", durable),
        ("Redis", redis),
        ("PostgreSQL", postgres),
    ] {
        stores.push((format!("{name}, registry"), store.clone()));
        stores.push((format!("{name}, no registry"), Arc::new(NoRegistry(store))));
    }
    // Logins at `now - 45 min` (so each token is due for renewal at `now`).
    let login_clock = ManualClock::new(now - 45 * 60);
    let layers: Vec<_> = stores
        .iter()
        .map(|(_, store)| {
            let at_login = demo::builder(SECRET, login_clock.clone())
                .unwrap()
                .with_revocation_store(store.clone())
                .build()
                .unwrap();
            let at_renewal = demo::builder(SECRET, clock.clone())
                .unwrap()
                .with_revocation_store(store.clone())
                .build()
                .unwrap()
                .layer(service_fn(ok as fn(_) -> _));
            (at_login, at_renewal)
        })
        .collect();
    let (parts, ()) = Request::post("/login")
        .header("user-agent", "load/1")
        .body(())
        .unwrap()
        .into_parts();
    let mut logins = vec![Duration::ZERO; stores.len()];
    let mut renewals = vec![Duration::ZERO; stores.len()];
    for round in 0..ROUNDS {
        for (which, (at_login, at_renewal)) in layers.iter().enumerate() {
            let issuer = at_login.issuer();
            let mut tokens = Vec::with_capacity(PER_ROUND);
            let started = std::time::Instant::now();
            for i in 0..PER_ROUND {
                let claims = demo::claims(&format!("u{round}-{which}-{i}"), "user");
                tokens.push(issuer.login(&parts, claims).await.unwrap().into_token());
            }
            logins[which] += started.elapsed();
            let started = std::time::Instant::now();
            for token in &tokens {
                let request = Request::get("/")
                    .header("authorization", format!("Bearer {token}"))
                    .body(())
                    .unwrap();
                let response = tower::ServiceExt::oneshot(at_renewal.clone(), request)
                    .await
                    .unwrap();
                assert!(response.headers().contains_key("authorization"));
            }
            renewals[which] += started.elapsed();
        }
    }
    let n = (ROUNDS * PER_ROUND) as u32;
    for (i, (name, _)) in stores.iter().enumerate() {
        println!(
            "{name}: login {:?}, renewal {:?}",
            logins[i] / n,
            renewals[i] / n
        );
    }
    for pair in (0..stores.len()).step_by(2) {
        println!(
            "{}: registry / none: login {:.2}, renewal {:.2}",
            stores[pair].0,
            logins[pair].as_secs_f64() / logins[pair + 1].as_secs_f64(),
            renewals[pair].as_secs_f64() / renewals[pair + 1].as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a DPoP request costs on each store beside a bearer request on the
/// same layer: the proof's verification (EdDSA, the demos' client's key),
/// and on Redis and PostgreSQL the cluster-wide replay write. Sequential,
/// interleaved. `cargo test --release --features
/// redis,postgres,sqlite --test load -- --ignored --nocapture dpop_request_cost`.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn dpop_request_cost_by_store() {
    use tower::ServiceExt;
    use tower_sliding_jwt::store::RevocationStore;
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 300;
    let now = 1_800_000_000;
    let clock = ManualClock::new(now);
    let (_servers, redis, postgres) = cluster_stores(&clock).await;
    let stores: Vec<(&str, Arc<dyn RevocationStore>)> = vec![
        ("memory (local replay cache)", Arc::new(MemoryStore::new())),
        ("Redis", redis),
        ("PostgreSQL", postgres),
    ];
    let key = tower_sliding_jwt::dpop::DpopKey::generate().unwrap();
    let mut totals = vec![(Duration::ZERO, Duration::ZERO); stores.len()];
    for _ in 0..ROUNDS {
        for (index, (_, store)) in stores.iter().enumerate() {
            let layer = demo::builder(SECRET, clock.clone())
                .unwrap()
                .with_revocation_store(store.clone())
                .build()
                .unwrap();
            let mut claims = demo::claims("alice", "admin");
            claims.registered.cnf = Some(tower_sliding_jwt::Confirmation::jkt(key.thumbprint()));
            let bound = layer.issuer().issue(claims).unwrap().token().to_owned();
            let bearer = layer
                .issuer()
                .issue(demo::claims("bob", "user"))
                .unwrap()
                .token()
                .to_owned();
            let service = layer.layer(service_fn(ok as fn(_) -> _));
            let proofs: Vec<String> = (0..PER_ROUND)
                .map(|_| {
                    key.proof("GET", "http://api.test/me", Some(&bound), None, now)
                        .unwrap()
                })
                .collect();
            let started = std::time::Instant::now();
            for proof in &proofs {
                let request = Request::get("/me")
                    .header("host", "api.test")
                    .header("authorization", format!("DPoP {bound}"))
                    .header("dpop", proof)
                    .body(())
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
            totals[index].0 += started.elapsed();
            let started = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                let request = Request::get("/me")
                    .header("authorization", format!("Bearer {bearer}"))
                    .body(())
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
            totals[index].1 += started.elapsed();
        }
    }
    let n = (ROUNDS * PER_ROUND) as f64;
    for ((name, _), (dpop, bearer)) in stores.iter().zip(&totals) {
        eprintln!(
            "{name}: DPoP request {:.1} µs, bearer request {:.1} µs",
            dpop.as_secs_f64() * 1e6 / n,
            bearer.as_secs_f64() * 1e6 / n
        );
    }
}

/// A throw-away Redis and PostgreSQL (kept alive by the first value) and a
/// store on each, on `clock`: what the timing tests compare.
#[cfg(all(feature = "redis", feature = "postgres"))]
async fn cluster_stores(
    clock: &ManualClock,
) -> (
    (redis_server::Server, postgres_server::Postgres),
    Arc<dyn tower_sliding_jwt::store::RevocationStore>,
    Arc<dyn tower_sliding_jwt::store::RevocationStore>,
) {
    let servers = (
        redis_server::Server::start(),
        postgres_server::Postgres::start(),
    );
    let redis = tower_sliding_jwt::redis::RedisStore::builder(servers.0.url())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    let postgres = tower_sliding_jwt::postgres::PostgresStore::builder(servers.1.url())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    (servers, Arc::new(redis), Arc::new(postgres))
}
