//! Remote JWKS (feature `jwks`): a verify-only layer on a key set fetched
//! from a real HTTP server on 127.0.0.1:0 that rotates its keys, fails, hangs
//! and serves garbage. Time for the cooldown comes from a manual clock; only
//! polling loops on real I/O wait.
#![cfg(feature = "jwks")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_sliding_jwt::{
    Algorithm, Clock, ConfigErrorKind, GrpcResponder, HyperFetcher, JwksErrorKind, Key, KeyRing,
    Keys, ManualClock, RejectionKind, RemoteJwks, SlidingJwtLayer,
};

#[derive(Clone)]
enum Mode {
    Serve(Vec<u8>),
    Fail,
    Hang,
    Garbage,
    Huge,
}

#[derive(Clone)]
struct JwksServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = JwksServer {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let state = server.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer().await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    async fn answer(&self) -> Response<Full<Bytes>> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.lock().unwrap().clone();
        let (status, body) = match mode {
            Mode::Serve(body) => (StatusCode::OK, body),
            Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()),
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                (StatusCode::OK, Vec::new())
            }
            Mode::Garbage => (StatusCode::OK, b"<html>not a key set</html>".to_vec()),
            Mode::Huge => {
                let mut body = b"{\"keys\":[]".to_vec();
                body.resize(2 * 1024 * 1024, b' ');
                body.push(b'}');
                (StatusCode::OK, body)
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn remote(&self, clock: &ManualClock) -> RemoteJwks {
        RemoteJwks::builder(
            format!("http://{}/.well-known/jwks.json", self.addr)
                .parse()
                .unwrap(),
            // The test issuer is on loopback: plain HTTP, explicitly.
            HyperFetcher::plain_http(),
        )
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::from_secs(3600))
        .with_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
    }
}

/// Polls `condition` on real I/O, failing after 5 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Gives a background fetch that should not happen the chance to show up.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn key(kid: &str, pem: &str) -> Key {
    Key::from_pem(Algorithm::ES256, pem)
        .unwrap()
        .with_kid(kid)
        .unwrap()
}

fn k1() -> Key {
    key("k1", ES256_PRIVATE)
}

fn k2() -> Key {
    key("k2", ES256_OTHER_PRIVATE)
}

fn jwks_of(keys: &[Key]) -> Mode {
    Mode::Serve(KeyRing::verifying(keys.to_vec()).unwrap().jwks().to_json())
}

fn issuer(clock: &ManualClock, key: Key) -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(key)
        .with_issuer("login")
        .with_clock(clock.clone())
        .build()
        .unwrap()
}

fn signed(clock: &ManualClock, key: Key) -> String {
    issuer(clock, key)
        .issuer()
        .issue(user("alice", "user"))
        .unwrap()
        .into_token()
}

fn verifier(clock: &ManualClock, remote: RemoteJwks) -> SlidingJwtLayer<RemoteJwks, Claimset> {
    SlidingJwtLayer::verifier(remote)
        .with_issuer("login")
        .with_clock(clock.clone())
        .with_verified_cache(100)
        .build()
        .unwrap()
}

#[tokio::test]
async fn before_the_first_load_requests_get_503_with_retry_after_never_401() {
    let clock = clock();
    let server = JwksServer::start(Mode::Fail).await;
    let remote = server.remote(&clock);
    let layer = verifier(&clock, remote.clone());
    let b = app(&layer);
    let grpc = app(&SlidingJwtLayer::verifier(remote.clone())
        .with_issuer("login")
        .with_clock(clock.clone())
        .with_responder(GrpcResponder)
        .build()
        .unwrap());
    eventually("first attempt", || server.hits() >= 1).await;
    assert!(!remote.is_ready());
    let token = signed(&clock, k1());
    let response = send(&b, get(&token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(rejection(&response), Some(RejectionKind::KeysUnavailable));
    let response = send(&grpc, get(&token)).await;
    assert_eq!(response.headers()["grpc-status"], "14");
    // An unknown kid before the first load is 503 too, and prompts no fetch.
    let hits = server.hits();
    clock.advance(Duration::from_secs(3600));
    let stranger = signed(&clock, key("zz", ES256_OTHER_PRIVATE));
    assert_eq!(
        send(&b, get(&stranger)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    server.set(jwks_of(&[k1()]));
    assert!(remote.refresh().await.unwrap(), "the first set is a change");
    assert!(server.hits() > hits);
    let token = signed(&clock, k1());
    assert_eq!(send(&b, get(&token)).await.status(), StatusCode::OK);
    assert_eq!(remote.version(), 1);
}

#[tokio::test]
async fn the_first_load_is_retried_by_itself() {
    let clock = clock();
    let server = JwksServer::start(Mode::Fail).await;
    let remote = server.remote(&clock);
    eventually("first attempt", || server.hits() >= 1).await;
    server.set(jwks_of(&[k1()]));
    // Back-off: the second attempt comes about a second later.
    eventually("retried and loaded", || remote.is_ready()).await;
    assert_eq!(remote.verification_keys().len(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_found_on_its_unknown_kid_without_blocking_the_request() {
    let clock = clock();
    let server = JwksServer::start(jwks_of(&[k1()])).await;
    let remote = server.remote(&clock);
    let b = app(&verifier(&clock, remote.clone()));
    eventually("loaded", || remote.is_ready()).await;
    assert_eq!((server.hits(), remote.version()), (1, 1));
    let old = signed(&clock, k1());
    assert_eq!(send(&b, get(&old)).await.status(), StatusCode::OK);

    // The issuer publishes k2 and signs with it.
    server.set(jwks_of(&[k1(), k2()]));
    let new = signed(&clock, k2());
    // Within the cooldown of the first load: 401, and no fetch.
    let response = send(&b, get(&new)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::UnknownKey));
    settle().await;
    assert_eq!(server.hits(), 1);

    // Past it: this request is still answered at once (401), the set is
    // fetched behind it, and the next request finds k2.
    clock.advance(Duration::from_secs(30));
    let start = Instant::now();
    let response = send(&b, get(&new)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::UnknownKey));
    assert!(start.elapsed() < Duration::from_millis(250), "not blocked");
    eventually("k2 fetched", || remote.version() == 2).await;
    assert_eq!(send(&b, get(&new)).await.status(), StatusCode::OK);
    assert_eq!(send(&b, get(&old)).await.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);

    // k1 is withdrawn: once fetched, its tokens are refused, cache or not.
    server.set(jwks_of(&[k2()]));
    assert!(remote.refresh().await.unwrap());
    assert_eq!(remote.version(), 3);
    assert_eq!(
        rejection(&send(&b, get(&old)).await),
        Some(RejectionKind::UnknownKey)
    );
    assert_eq!(send(&b, get(&new)).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let clock = clock();
    let server = JwksServer::start(jwks_of(&[k1()])).await;
    let remote = server.remote(&clock);
    let b = app(&verifier(&clock, remote.clone()));
    eventually("loaded", || remote.is_ready()).await;
    let t0 = clock.now();
    let now = t0;
    let claims = claims_json(now, now + 3600, now).replace("\"sid\"", "\"iss\":\"login\",\"sid\"");
    let unknown: Vec<String> = (0..100)
        .map(|i| {
            let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"flood-{i}"}}"#);
            let encoding =
                jsonwebtoken::EncodingKey::from_ec_pem(ES256_OTHER_PRIVATE.as_bytes()).unwrap();
            forge(&header, &claims, &encoding, Algorithm::ES256)
        })
        .collect();

    let windows = 5;
    let per_window = 1000;
    let mut requests = 0;
    for window in 0..windows {
        // Window 0 starts with the first load; each later one a cooldown
        // after the previous. Time moves within a window, never to its end.
        clock.set(t0 + 30 * window as i64);
        let tasks: Vec<_> = (0..10)
            .map(|task| {
                let (b, unknown, clock) = (b.clone(), unknown.clone(), clock.clone());
                tokio::spawn(async move {
                    for i in 0..per_window / 10 {
                        if task == 0 && i % 4 == 3 {
                            clock.advance(Duration::from_secs(1));
                        }
                        let token = &unknown[(task * 31 + i) % unknown.len()];
                        let response = send(&b, get(token)).await;
                        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 25 s passed inside the window; go to its last second.
        clock.advance(Duration::from_secs(4));
        for token in unknown.iter().take(10) {
            assert_eq!(
                send(&b, get(token)).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        requests += per_window + 10;
        let expected = 1 + window;
        eventually("the window's fetch", || server.hits() >= expected).await;
        settle().await;
        assert_eq!(server.hits(), expected, "window {window}");
        // The set did not change: the verified-token cache was kept.
        assert_eq!(remote.version(), 1);
    }
    eprintln!(
        "cooldown test: {requests} requests with unknown kids over {windows} cooldown windows -> {} fetches (1 initial load + {} prompted)",
        server.hits(),
        server.hits() - 1
    );
}

#[tokio::test]
async fn failed_slow_huge_or_garbage_refreshes_keep_the_last_good_set() {
    let clock = clock();
    let server = JwksServer::start(jwks_of(&[k1()])).await;
    let remote = server.remote(&clock);
    let b = app(&verifier(&clock, remote.clone()));
    eventually("loaded", || remote.is_ready()).await;
    let token = signed(&clock, k1());
    assert_eq!(send(&b, get(&token)).await.status(), StatusCode::OK);

    let oct = br#"{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":"dGVzdCBzZWNyZXQgdGhhdCBpcyBhdCBsZWFzdCAzMiBieXRlcyBsb25n"}]}"#;
    for (mode, kind) in [
        (Mode::Fail, JwksErrorKind::Status),
        (Mode::Garbage, JwksErrorKind::InvalidDocument),
        (Mode::Serve(oct.to_vec()), JwksErrorKind::NoUsableKey),
        (
            Mode::Serve(b"{\"keys\":[]}".to_vec()),
            JwksErrorKind::NoUsableKey,
        ),
        (Mode::Huge, JwksErrorKind::TooLarge),
        (Mode::Hang, JwksErrorKind::Timeout),
    ] {
        server.set(mode);
        let start = Instant::now();
        let error = remote.refresh().await.unwrap_err();
        assert_eq!(error.kind(), kind);
        assert!(start.elapsed() < Duration::from_secs(2), "{kind:?} bounded");
        assert_eq!(remote.version(), 1, "{kind:?}");
        assert!(remote.is_ready());
        assert_eq!(
            send(&b, get(&token)).await.status(),
            StatusCode::OK,
            "{kind:?}"
        );
    }
    // The same set again: no change, no new version.
    server.set(jwks_of(&[k1()]));
    assert!(!remote.refresh().await.unwrap());
    assert_eq!(remote.version(), 1);
}

#[tokio::test]
async fn a_server_that_is_down_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let remote = RemoteJwks::builder(
        format!("http://{addr}/jwks.json").parse().unwrap(),
        HyperFetcher::plain_http(),
    )
    .with_timeout(Duration::from_secs(2))
    .build()
    .unwrap();
    assert_eq!(
        remote.refresh().await.unwrap_err().kind(),
        JwksErrorKind::Transport
    );
    assert!(!remote.is_ready());
}

#[tokio::test]
async fn keys_are_fetched_over_tls_unless_plain_http_is_allowed_explicitly() {
    let issuer = JwksServer::start(jwks_of(&[k1()])).await;
    let uri: http::Uri = format!("http://{}/.well-known/jwks.json", issuer.addr)
        .parse()
        .unwrap();
    // The default fetcher never speaks plain HTTP: nobody on the path can
    // hand this service keys of their own.
    let tls_only = RemoteJwks::builder(uri.clone(), HyperFetcher::new())
        .with_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let error = tls_only.refresh().await.unwrap_err();
    assert_eq!(error.kind(), JwksErrorKind::Transport);
    assert!(!tls_only.is_ready());
    assert_eq!(issuer.hits(), 0, "not a byte was sent in the clear");
    // Allowed explicitly (an issuer on loopback), the same URL loads.
    let plain = RemoteJwks::builder(uri, HyperFetcher::plain_http())
        .with_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    plain.refresh().await.unwrap();
    assert!(plain.is_ready());
}

#[test]
fn a_remote_set_needs_a_runtime_and_sane_durations() {
    let uri: http::Uri = "http://127.0.0.1:1/jwks.json".parse().unwrap();
    let error = RemoteJwks::builder(uri.clone(), HyperFetcher::default())
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::NoRuntime);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for builder in [
            RemoteJwks::builder(uri.clone(), HyperFetcher::new()).with_cooldown(Duration::ZERO),
            RemoteJwks::builder(uri.clone(), HyperFetcher::new())
                .with_cooldown(Duration::from_millis(500)),
            RemoteJwks::builder(uri.clone(), HyperFetcher::new())
                .with_refresh_interval(Duration::ZERO),
            RemoteJwks::builder(uri.clone(), HyperFetcher::new()).with_timeout(Duration::ZERO),
        ] {
            assert_eq!(
                builder.build().unwrap_err().kind(),
                ConfigErrorKind::InvalidDuration
            );
        }
        // A remote set cannot back a layer that issues.
        let remote = RemoteJwks::builder(uri.clone(), HyperFetcher::new())
            .build()
            .unwrap();
        assert!(remote.signing_key().is_none());
        assert_eq!(
            SlidingJwtLayer::<_, Claimset>::builder(remote)
                .build()
                .unwrap_err()
                .kind(),
            ConfigErrorKind::NotASigningKey
        );
    });
}
