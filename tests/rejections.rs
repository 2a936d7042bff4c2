//! Rejections: the error code, challenge and status of every kind,
//! problem+json bodies (generic unless the reason is enabled), and responders
//! whose bodies fit axum, hyper and `String` services.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    HttpResponder, Rejection, RejectionKind, SlidingJwtLayer, StandardClaims,
    responder::{Realm, Responder},
};

#[test]
fn error_codes_tell_missing_credentials_from_an_unavailable_store() {
    let code = |kind| Rejection::new(kind).error_code();
    assert_eq!(code(RejectionKind::MissingCredentials), None);
    assert_eq!(
        code(RejectionKind::StoreUnavailable),
        Some("temporarily_unavailable")
    );
    assert_eq!(code(RejectionKind::CrossSiteRequest), Some("access_denied"));
    assert_eq!(
        code(RejectionKind::DuplicateCredentials),
        Some("invalid_request")
    );
    assert_eq!(code(RejectionKind::Revoked), Some("invalid_token"));
    for &kind in RejectionKind::ALL {
        let rejection = Rejection::new(kind);
        // `None` exactly for "no credentials".
        assert_eq!(
            rejection.error_code().is_none(),
            kind == RejectionKind::MissingCredentials,
            "{kind:?}"
        );
        // Only the RFC 6750 codes go into a challenge.
        let challenge = rejection.challenge(None);
        let challenge = challenge.to_str().unwrap();
        match rejection.error_code() {
            Some(code @ ("invalid_request" | "invalid_token")) => {
                assert!(challenge.contains(code), "{kind:?}")
            }
            _ => assert_eq!(challenge, "Bearer", "{kind:?}"),
        }
    }
    assert_eq!(
        Rejection::new(RejectionKind::MissingCredentials).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Rejection::new(RejectionKind::StoreUnavailable).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

fn problem(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("the body is JSON")
}

#[test]
fn problem_json_bodies_are_generic_unless_the_reason_is_enabled() {
    let generic = HttpResponder::new()
        .with_realm(Realm::new("api").unwrap())
        .with_problem_json();
    let precise = HttpResponder::new()
        .with_problem_json()
        .with_reason_in_body();
    for &kind in RejectionKind::ALL {
        let rejection = Rejection::new(kind);
        let response: Response<String> = generic.respond(&rejection);
        assert_eq!(response.status(), rejection.status(), "{kind:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = problem(response.body());
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["status"], rejection.status().as_u16());
        assert_eq!(
            body["title"],
            rejection.status().canonical_reason().unwrap(),
            "{kind:?}"
        );
        assert_eq!(body["detail"], rejection.public_description());
        match rejection.error_code() {
            Some(code) => assert_eq!(body["error"], code),
            None => assert!(body.get("error").is_none()),
        }
        assert!(body.get("reason").is_none(), "{kind:?} leaks its reason");
        // The headers stay those of the empty-body responder.
        let empty: Response<()> = HttpResponder::new()
            .with_realm(Realm::new("api").unwrap())
            .respond(&rejection);
        assert_eq!(
            response.headers().get("www-authenticate"),
            empty.headers().get("www-authenticate")
        );
        assert_eq!(
            response.headers().get("retry-after"),
            empty.headers().get("retry-after")
        );

        let response: Response<String> = precise.respond(&rejection);
        let body = problem(response.body());
        assert_eq!(body["reason"], kind.as_str(), "{kind:?}");
    }
    let unavailable: Response<String> =
        generic.respond(&Rejection::new(RejectionKind::StoreUnavailable));
    assert_eq!(unavailable.headers()["retry-after"], "1");
    assert!(!unavailable.headers().contains_key("www-authenticate"));
    let missing: Response<String> =
        generic.respond(&Rejection::new(RejectionKind::MissingCredentials));
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"api\""
    );
}

async fn body_text<B>(body: B) -> String
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn problem_json_through_axum_hyper_and_string_services() {
    // axum: a Router accepts the layer, and the body is axum's.
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_responder(HttpResponder::new().with_problem_json())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(layer.clone());
    let response = app
        .oneshot(
            Request::get("/")
                .header("authorization", "Bearer not.a.token")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .extensions()
            .get::<Rejection>()
            .map(Rejection::kind),
        Some(RejectionKind::MalformedToken)
    );
    let body = problem(&body_text(response.into_body()).await);
    assert_eq!(body["error"], "invalid_token");

    // hyper: `Full<Bytes>`.
    let hyper_like = layer.clone().layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello")))
    }));
    let response = hyper_like
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = problem(&body_text(response.into_body()).await);
    assert_eq!(body["title"], "Unauthorized");

    // String.
    let strings = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("hello")))
    }));
    let response = strings.oneshot(get("a.b")).await.unwrap();
    assert_eq!(problem(response.body())["status"], 401);
}

#[tokio::test]
async fn a_closure_responder_with_an_axum_body_fits_a_router() {
    let json = |rejection: &Rejection| {
        let mut response = Response::new(axum::body::Body::from(
            rejection.error_code().unwrap_or("unauthorized"),
        ));
        *response.status_mut() = rejection.status();
        response
    };
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_responder(json)
        .build()
        .unwrap();
    let app: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(layer);
    let response = app
        .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(response.into_body()).await, "unauthorized");
}
