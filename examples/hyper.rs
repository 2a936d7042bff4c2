//! The hyper demo server: hyper 1 and hyper-util, no framework (see
//! `examples/README.md`). It behaves exactly like the axum demo.
//!
//! ```sh
//! cargo run --example hyper
//! # A cluster: several instances behind one Redis (`redis-server` on 6379).
//! REDIS_URL=redis://127.0.0.1:6379/ PORT=3001 cargo run --features redis --example hyper
//! REDIS_URL=redis://127.0.0.1:6379/ PORT=3002 cargo run --features redis --example hyper
//! # Or on one PostgreSQL database.
//! DATABASE_URL=postgres://app:secret@127.0.0.1/app PORT=3001 cargo run --features postgres --example hyper
//! ```
#![allow(unreachable_pub)]

#[path = "demo/mod.rs"]
pub mod demo;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use demo::DemoClaims;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_sliding_jwt::{
    CookieSource, Issuer, JwksService, Key, Session, SessionMetadata, SessionRoutes,
    SlidingJwtLayer, SystemClock,
};

/// Whole bodies, and the `GET /events` stream.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole body.
fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

struct State<P> {
    /// `/me`, `/admin` and `/logout`, behind the sliding-JWT layer.
    protected: P,
    issuer: Issuer<Key, DemoClaims>,
    cookie: CookieSource,
    /// `GET /.well-known/jwks.json`, in asymmetric mode only.
    jwks: Option<JwksService>,
}

/// Serves the demo on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, layer: SlidingJwtLayer<Key, DemoClaims>) {
    let state = Arc::new(State {
        protected: layer.layer(service_fn(protected)),
        issuer: layer.issuer(),
        cookie: demo::session_cookie(),
        jwks: demo::jwks(&layer),
    });
    let app = service_fn(move |request: Request<Incoming>| route(request, state.clone()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            // Errors here are a client hanging up mid-request: nothing to do.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
        });
    }
}

async fn route<P>(
    request: Request<Incoming>,
    state: Arc<State<P>>,
) -> Result<Response<Body>, Infallible>
where
    P: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Clone,
{
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => Ok(text(StatusCode::OK, "ok")),
        (&Method::POST, "/login") => Ok(login(request, &state).await),
        (_, "/me" | "/admin" | "/logout" | "/notifications" | "/events") => {
            state.protected.clone().oneshot(request).await
        }
        (_, path) if path == "/sessions" || path.starts_with("/sessions/") => {
            state.protected.clone().oneshot(request).await
        }
        (_, "/.well-known/jwks.json") if state.jwks.is_some() => {
            let jwks = state.jwks.clone().expect("checked");
            let response = jwks.oneshot(request).await?;
            Ok(response.map(|body| full(body.into_bytes())))
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    }
}

/// The authenticated routes; the layer has verified the token and put the
/// claims and the session into the request's extensions.
async fn protected(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // `GET /sessions`, `DELETE /sessions/{sid}`, `POST /sessions/end-others`.
    if request.uri().path().starts_with("/sessions") {
        let routes = SessionRoutes::<DemoClaims>::new().with_prefix("/sessions");
        let response = routes.oneshot(request).await?;
        return Ok(response.map(full));
    }
    let session = request
        .extensions()
        .get::<Session<DemoClaims>>()
        .cloned()
        .expect("set by the layer");
    let claims = session.claims();
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/me") => json(StatusCode::OK, &demo::me(claims)),
        (&Method::GET, "/admin") if claims.extra.role == "admin" => {
            text(StatusCode::OK, "welcome, admin")
        }
        // A handler-side check: the 403 carries no renewal.
        (&Method::GET, "/admin") => text(StatusCode::FORBIDDEN, "forbidden"),
        // A background poll: not activity (the layer's rule), never renews.
        (&Method::GET, "/notifications") => json(StatusCode::OK, &serde_json::json!([])),
        // Server-Sent Events until the session ends (see `demo::Events`);
        // not activity, so holding it never renews.
        (&Method::GET, "/events") => {
            let mut response = Response::new(demo::Events::new(&session).boxed_unsync());
            demo::Events::headers(response.headers_mut());
            response
        }
        (&Method::POST, "/logout") => match session.end().await {
            Ok(()) => empty(StatusCode::NO_CONTENT),
            Err(_) => empty(StatusCode::SERVICE_UNAVAILABLE),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    })
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    /// "Keep me signed in": a 30-day session cap instead of one day.
    #[serde(default)]
    remember: bool,
}

async fn login<P>(request: Request<Incoming>, state: &State<P>) -> Response<Body> {
    // A login body is tiny: refuse anything over 16 KiB rather than buffer it.
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let Ok(credentials) = serde_json::from_slice::<Credentials>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected {\"username\": ..., \"password\": ...}",
        );
    };
    let Some(role) = demo::authenticate(&credentials.username, &credentials.password) else {
        return empty(StatusCode::UNAUTHORIZED);
    };
    // A DPoP client learns the nonce to use next.
    let nonce = parts
        .headers
        .contains_key("dpop")
        .then(|| state.issuer.dpop_nonce())
        .flatten();
    let with_nonce = |mut response: Response<Body>| {
        if let Some(nonce) = &nonce {
            response.headers_mut().insert("dpop-nonce", nonce.clone());
        }
        response
    };
    // A login with a DPoP proof gets a token bound to the proof's key.
    let cnf = match demo::dpop_binding(&state.issuer, &parts).await {
        Ok(cnf) => cnf,
        Err((status, error)) => {
            return with_nonce(json(status, &serde_json::json!({ "error": error })));
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
            SessionMetadata::of(&parts),
        )
        .await
    {
        Ok(issued) => issued,
        Err(error) => {
            let mut response = empty(demo::login_failed(&error));
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    let mut response = json(StatusCode::OK, &demo::login_body(issued.token(), bound));
    let headers = response.headers_mut();
    // The same token for browsers (cookie) and API clients (JSON body); a
    // bound token never goes into a cookie (it would be refused there).
    if !bound {
        let Ok(cookie) = state.cookie.set_cookie_for(&issued) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        headers.insert(SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_nonce(response)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[tokio::main]
async fn main() -> ExitCode {
    demo::exit(run().await)
}

async fn run() -> Result<(), String> {
    let (key, port) = demo::key_settings(3000)?;
    let layer = demo::layer_from_env("hyper", key, SystemClock).await?;
    let listener = demo::listen(port).await?;
    tokio::select! {
        () = serve(listener, layer) => Ok(()),
        () = demo::shutdown() => Ok(()),
    }
}
