//! The application's own claim types: login claims need no placeholders, the
//! layer fills in the registered claims.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use tower_sliding_jwt::{Claims, ManualClock, RegisteredClaims, SlidingJwtLayer};

#[derive(Clone, Serialize, Deserialize)]
struct MyClaims {
    #[serde(flatten)]
    registered: RegisteredClaims,
    role: String,
}

impl Claims for MyClaims {
    fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }
    fn registered_mut(&mut self) -> &mut RegisteredClaims {
        &mut self.registered
    }
}

#[tokio::test]
async fn custom_login_claims_need_no_placeholders() {
    let layer = SlidingJwtLayer::<_, MyClaims>::builder(hs256())
        .with_clock(ManualClock::new(T0))
        .with_issuer("me")
        .build()
        .unwrap();
    let login = MyClaims {
        registered: RegisteredClaims::new("alice"),
        role: "admin".into(),
    };
    let issued = layer.issuer().issue(login).unwrap();
    let claims = layer.issuer().verify(issued.token()).await.unwrap();
    assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
    assert_eq!(claims.registered.exp, T0 + 3600);
    assert_eq!(claims.registered.auth_time, Some(T0));
    assert_eq!(claims.registered.iss.as_deref(), Some("me"));
    assert_eq!(claims.role, "admin");
}

#[test]
fn asking_for_another_claims_type_than_the_layer_produces_is_a_loud_500() {
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;
    use tower_sliding_jwt::StandardClaims;
    use tower_sliding_jwt::extract::Authenticated;

    let captured = Captured::default();
    let subscriber = captured.subscriber();
    let layer = SlidingJwtLayer::<_, MyClaims>::builder(hs256())
        .with_clock(ManualClock::new(T0))
        .with_anonymous(true)
        .build()
        .unwrap();
    let login = layer
        .issuer()
        .issue(MyClaims {
            registered: RegisteredClaims::new("alice"),
            role: "admin".into(),
        })
        .unwrap();
    // The handler asks for `StandardClaims`; the layer produces `MyClaims`.
    async fn wrong(user: Authenticated<StandardClaims>) -> String {
        user.registered.sub.clone().unwrap_or_default()
    }
    async fn right(user: Authenticated<MyClaims>) -> String {
        user.role.clone()
    }
    async fn maybe(user: Option<Authenticated<StandardClaims>>) -> &'static str {
        if user.is_some() {
            "someone"
        } else {
            "anonymous"
        }
    }
    let app = Router::new()
        .route("/wrong", get(wrong))
        .route("/right", get(right))
        .route("/maybe", get(maybe))
        .layer(layer);
    let outside = Router::new().route("/outside", get(wrong));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let status_and_body = |app: Router, request: http::Request<axum::body::Body>| {
        runtime.block_on(async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        })
    };
    let with_token = |path: &str| {
        http::Request::get(path)
            .header("authorization", format!("Bearer {}", login.token()))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let (status, body) = tracing::subscriber::with_default(subscriber, || {
        status_and_body(app.clone(), with_token("/wrong"))
    });
    assert_eq!(status, http::StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.is_empty(), "no type names reach the client: {body:?}");
    let log = captured.text();
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains("StandardClaims") && log.contains("MyClaims"),
        "{log}"
    );
    // The right type works; the optional form with a token is loud too.
    assert_eq!(
        status_and_body(app.clone(), with_token("/right")).0,
        http::StatusCode::OK
    );
    assert_eq!(
        status_and_body(app.clone(), with_token("/maybe")).0,
        http::StatusCode::INTERNAL_SERVER_ERROR
    );
    // Anonymous in optional mode: `None`; outside any layer: 401 as before.
    let anonymous = || {
        http::Request::get("/maybe")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(status_and_body(app, anonymous()).1, "anonymous");
    let request = http::Request::get("/outside")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        status_and_body(outside, request).0,
        http::StatusCode::UNAUTHORIZED
    );
}
