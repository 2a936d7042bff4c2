//! Counters (`layer.stats()`) and `tracing` events: what they report, and
//! that a token, a secret or the claims never appear in the logs.

mod common;

use common::*;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{RejectionKind, Session, SlidingJwtLayer};

#[test]
fn counters_and_events_report_without_leaking() {
    let captured = Captured::default();
    let subscriber = captured.subscriber();
    let clock = clock();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_verified_cache(64)
        .build()
        .unwrap();
    let login = layer
        .issuer()
        .issue(user("alice", "wonderland-role"))
        .unwrap();
    let app = layer.layer(service_fn(|request: Request<()>| async move {
        let mut response = Response::new(String::new());
        if request.headers().contains_key("x-logout") {
            let session = request.extensions().get::<Session<Claimset>>().unwrap();
            session.end().await.unwrap();
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        Ok::<_, std::convert::Infallible>(response)
    }));

    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let send = |request| app.clone().oneshot(request);
            assert_eq!(send(get(login.token())).await.unwrap().status(), 200);
            assert_eq!(send(get(login.token())).await.unwrap().status(), 200);
            clock.advance(minutes(45));
            let renewed = send(get(login.token())).await.unwrap();
            assert!(renewed.headers().contains_key("authorization"));
            let forged = format!("{}x", login.token());
            assert_eq!(send(get(&forged)).await.unwrap().status(), 401);
            assert_eq!(send(anonymous()).await.unwrap().status(), 401);
            let mut logout = get(login.token());
            logout
                .headers_mut()
                .insert("x-logout", "1".parse().unwrap());
            assert_eq!(send(logout).await.unwrap().status(), 204);
            let revoked = send(get(login.token())).await.unwrap();
            assert_eq!(rejection_of(&revoked), Some(RejectionKind::Revoked));
        });
    });

    let stats = layer.stats();
    assert_eq!(stats.verified(), 5, "{stats:?}");
    assert_eq!(
        stats.cache_hits(),
        4,
        "the first verification filled the cache"
    );
    assert_eq!(stats.renewed(), 1);
    assert_eq!(stats.revoked(), 1);
    assert_eq!(stats.rejected(RejectionKind::InvalidSignature), 1);
    assert_eq!(stats.rejected(RejectionKind::MissingCredentials), 1);
    assert_eq!(stats.rejected(RejectionKind::Revoked), 1);
    assert_eq!(stats.rejected_total(), 3);

    let logs = captured.text();
    for expected in [
        "tower_sliding_jwt",
        "request refused",
        "kind=invalid signature",
        "kind=no credentials",
        "kind=token revoked",
        "renewed",
        "revoked",
    ] {
        assert!(logs.contains(expected), "missing {expected:?} in:\n{logs}");
    }
    let token = login.token();
    for secret in [
        token,
        token.rsplit('.').next().unwrap(),
        token.split('.').nth(1).unwrap(),
        std::str::from_utf8(SECRET).unwrap(),
        "wonderland-role",
    ] {
        assert!(!logs.contains(secret), "the logs carry {secret:?}:\n{logs}");
    }
}

fn rejection_of(response: &Response<String>) -> Option<RejectionKind> {
    rejection(response)
}

#[test]
fn grpc_rejections_are_logged_with_what_was_sent() {
    let captured = Captured::default();
    let subscriber = captured.subscriber();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock())
        .with_responder(tower_sliding_jwt::GrpcResponder)
        .build()
        .unwrap();
    let app = app(&layer);
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = runtime.block_on(send(&app, get("x.y.z")));
        assert_eq!(response.headers()["grpc-status"], "16");
    });
    let log = captured.text();
    let line = log
        .lines()
        .find(|line| line.contains("request refused"))
        .expect("the rejection is logged");
    assert!(line.contains("status=200"), "{line}");
    assert!(
        line.contains("grpc_status=\"16\"") || line.contains("grpc_status=16"),
        "{line}"
    );
    assert!(!line.contains("status=401"), "{line}");
}
