//! Cross-origin protection with cookie sessions: an unsafe request that carries
//! the session cookie from another site is refused (403, or gRPC
//! `PERMISSION_DENIED`) before the handler runs; bearer tokens are unaffected.
//! Trusted origins and the opt-out.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    BearerHeader, CookieSource, GrpcResponder, Key, ManualClock, RejectionKind, Session,
    SlidingJwtLayer,
};

fn cookie_layer(clock: &ManualClock) -> tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset> {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(BearerHeader::new())
        .with_token_source(CookieSource::new("session").unwrap())
}

/// A logout handler that counts its calls.
fn logout_app(
    layer: &SlidingJwtLayer<Key, Claimset>,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(service_fn(move |request: Request<()>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let session = request.extensions().get::<Session<Claimset>>().cloned();
            if let Some(session) = session {
                session.end().await.unwrap();
            }
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok::<_, Infallible>(response)
        }
    }))
}

fn logout(token: &str, by_cookie: bool, headers: &[(&'static str, &'static str)]) -> Request<()> {
    let mut request = Request::post("/logout").header("host", "app.example");
    request = if by_cookie {
        request.header("cookie", format!("session={token}"))
    } else {
        request.header("authorization", format!("Bearer {token}"))
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

#[tokio::test]
async fn cross_site_unsafe_requests_with_the_session_cookie_are_refused() {
    let clock = clock();
    let layer = cookie_layer(&clock).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = logout_app(&layer, calls.clone());
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let token = login.token();

    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
        ],
    ] {
        let response = send(&app, logout(token, true, headers)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(rejection(&response), Some(RejectionKind::CrossSiteRequest));
        assert!(response.headers().get("www-authenticate").is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    assert!(
        layer.issuer().verify(token).await.is_ok(),
        "nothing was revoked"
    );

    // Same-origin, a typed URL, a matching Origin, or no browser headers: pass.
    for headers in [
        &[("sec-fetch-site", "same-origin")][..],
        &[("sec-fetch-site", "none")],
        &[("origin", "https://app.example")],
        &[],
    ] {
        let fresh = layer.issuer().issue(user("alice", "user")).unwrap();
        let response = send(&app, logout(fresh.token(), true, headers)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{headers:?}");
    }
    // A bearer token is unaffected by the browser's headers.
    let fresh = layer.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(fresh.token(), false, &[("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn trusted_origins_and_the_opt_out() {
    let clock = clock();
    let layer = cookie_layer(&clock)
        .with_trusted_origin("https://admin.example")
        .build()
        .unwrap();
    let app = logout_app(&layer, Arc::default());
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(
            login.token(),
            true,
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.example"),
            ],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let open = cookie_layer(&clock)
        .with_cross_origin_protection(false)
        .build()
        .unwrap();
    let app = logout_app(&open, Arc::default());
    let login = open.issuer().issue(user("alice", "user")).unwrap();
    let response = send(
        &app,
        logout(login.token(), true, &[("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let bad = cookie_layer(&clock)
        .with_trusted_origin("https://a.example/path")
        .build();
    assert_eq!(
        bad.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::InvalidOrigin
    );
}

#[tokio::test]
async fn cross_site_refusals_over_grpc_are_permission_denied() {
    let clock = clock();
    let layer = cookie_layer(&clock)
        .with_responder(GrpcResponder)
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    let mut request = logout(login.token(), true, &[("sec-fetch-site", "cross-site")]);
    *request.method_mut() = Method::POST;
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
}
