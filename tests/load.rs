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
    Clock, ManualClock, MemoryStore, Revocation, RevocationTarget, SlidingJwtLayer, SystemClock,
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
