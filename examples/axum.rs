//! The axum demo server (see `examples/README.md`).
//!
//! ```sh
//! cargo run --example axum
//! # A cluster: several instances behind one Redis (`redis-server` on 6379).
//! REDIS_URL=redis://127.0.0.1:6379/ PORT=3001 cargo run --features redis --example axum
//! REDIS_URL=redis://127.0.0.1:6379/ PORT=3002 cargo run --features redis --example axum
//! # Or on one PostgreSQL database.
//! DATABASE_URL=postgres://app:secret@127.0.0.1/app PORT=3001 cargo run --features postgres --example axum
//! curl -s localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"wonderland"}'
//! curl -s localhost:3000/me -H "authorization: Bearer $TOKEN"
//! ```

#![allow(unreachable_pub)]

#[path = "demo/mod.rs"]
pub mod demo;

use std::process::ExitCode;

use axum::Router;
use axum::extract::{Json, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use demo::DemoClaims;
use serde::Deserialize;
use tower_sliding_jwt::extract::Authenticated;
use tower_sliding_jwt::{
    CookieSource, Issuer, Key, Session, SessionMetadata, SessionRoutes, SlidingJwtLayer,
    SystemClock,
};

#[derive(Clone)]
struct AppState {
    issuer: Issuer<Key, DemoClaims>,
    cookie: CookieSource,
}

/// The whole application, so tests can serve it on any listener and clock.
pub fn app(layer: SlidingJwtLayer<Key, DemoClaims>) -> Router {
    let state = AppState {
        issuer: layer.issuer(),
        cookie: demo::session_cookie(),
    };
    // Only these routes need a token: `route_layer` wraps them and nothing else.
    let jwks = demo::jwks(&layer);
    let protected = Router::new()
        .route("/me", get(me))
        .route("/admin", get(admin))
        .route("/logout", post(logout))
        .route("/notifications", get(notifications))
        .route("/events", get(events))
        // `GET /sessions`, `DELETE /sessions/{sid}`, `POST /sessions/end-others`.
        .nest_service("/sessions", SessionRoutes::<DemoClaims>::new())
        .route_layer(layer);
    let mut router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/login", post(login));
    // Asymmetric mode only: the public key, for other services and clients.
    if let Some(jwks) = jwks {
        router = router.route_service("/.well-known/jwks.json", jwks);
    }
    router.merge(protected).with_state(state)
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    /// "Keep me signed in": a 30-day session cap instead of one day.
    #[serde(default)]
    remember: bool,
}

/// `POST /login`: a new session. Axum's `Json` extractor answers a malformed
/// body with 400 or 422 before this runs.
async fn login(
    State(state): State<AppState>,
    request: Parts,
    Json(credentials): Json<Credentials>,
) -> Response {
    let Some(role) = demo::authenticate(&credentials.username, &credentials.password) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut headers = HeaderMap::new();
    // A DPoP client learns the nonce to use next.
    if request.headers.contains_key("dpop")
        && let Some(nonce) = state.issuer.dpop_nonce()
    {
        headers.insert("dpop-nonce", nonce);
    }
    // A login with a DPoP proof gets a token bound to the proof's key.
    let cnf = match demo::dpop_binding(&state.issuer, &request).await {
        Ok(cnf) => cnf,
        Err((status, error)) => {
            return (status, headers, Json(serde_json::json!({ "error": error }))).into_response();
        }
    };
    let bound = cnf.is_some();
    let mut claims = demo::claims(&credentials.username, role);
    claims.registered.cnf = cnf;
    // The session is recorded with the request's user agent, so the user
    // can list it (`GET /sessions`) and end it from another device.
    let issued = match state
        .issuer
        .login_with(
            claims,
            demo::lifetimes(credentials.remember),
            SessionMetadata::of(&request),
        )
        .await
    {
        Ok(issued) => issued,
        Err(error) => {
            let status = demo::login_failed(&error);
            return (status, [(header::RETRY_AFTER, "1")]).into_response();
        }
    };
    // The same token for browsers (cookie) and API clients (JSON body); a
    // bound token never goes into a cookie (it would be refused there).
    if !bound {
        let Ok(cookie) = state.cookie.set_cookie_for(&issued) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (headers, Json(demo::login_body(issued.token(), bound))).into_response()
}

/// `GET /me`: the verified claims, put into the request by the layer.
async fn me(claims: Authenticated<DemoClaims>) -> Json<serde_json::Value> {
    Json(demo::me(&claims))
}

/// `GET /admin`: a handler-side role check; the 403 carries no renewal.
async fn admin(claims: Authenticated<DemoClaims>) -> Result<&'static str, StatusCode> {
    if claims.extra.role == "admin" {
        Ok("welcome, admin")
    } else {
        Err(StatusCode::FORBIDDEN)
    }
}

/// `GET /notifications`: a background poll. The layer's activity rule says
/// it is not activity, so it never renews the token.
async fn notifications(_session: Session<DemoClaims>) -> Json<serde_json::Value> {
    Json(serde_json::json!([]))
}

/// `GET /events`: Server-Sent Events until the session ends (see
/// `demo::Events`); not activity, so holding it never renews.
async fn events(session: Session<DemoClaims>) -> Response {
    let mut response = Response::new(axum::body::Body::new(demo::Events::new(&session)));
    demo::Events::headers(response.headers_mut());
    response
}

/// `POST /logout`: revokes the session; any of its tokens gets 401 from now on.
async fn logout(session: Session<DemoClaims>) -> StatusCode {
    match session.end().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    demo::exit(run().await)
}

async fn run() -> Result<(), String> {
    let (key, port) = demo::key_settings(3000)?;
    let layer = demo::layer_from_env("axum", key, SystemClock).await?;
    let listener = demo::listen(port).await?;
    axum::serve(listener, app(layer))
        .with_graceful_shutdown(demo::shutdown())
        .await
        .map_err(|e| e.to_string())
}
