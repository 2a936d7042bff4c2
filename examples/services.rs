//! Several services, one session: an issuer with ES256 and its JWKS, a
//! verify-only service that loads those keys over HTTP, and a client whose
//! `ClientLayer`s keep one token fresh across both — all on loopback ports,
//! printing what happens.
//!
//! ```sh
//! cargo run --features jwks --example services
//! ```
//!
//! A manual clock, shared by the three parties, stands in for the hour it
//! takes a token to reach its renew window. The key is the repository's
//! test key: never use it for anything else.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};
use tower_sliding_jwt::extract::Authenticated;
use tower_sliding_jwt::{
    Algorithm, ClientLayer, Clock, HyperFetcher, JwksService, Key, ManualClock, RemoteJwks,
    Session, SlidingJwtLayer, StandardClaims, TokenStore,
};

const ISSUER: &str = "login-service";
const AUDIENCE: &str = "shop";
const KEY: &str = include_str!("../tests/keys/es256-private.pem");

type Claims = StandardClaims;

async fn serve(router: Router) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(origin)
}

/// The issuer: `POST /login`, `GET /me` and `POST /logout` behind the
/// sliding layer, and its public keys at `/.well-known/jwks.json`.
async fn issuer(clock: &ManualClock) -> Result<String, Box<dyn std::error::Error>> {
    let key = Key::from_pem(Algorithm::ES256, KEY)?.with_thumbprint_kid()?;
    let layer = SlidingJwtLayer::<_, Claims>::builder(key)
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_clock(clock.clone())
        .build()?;
    let jwks = JwksService::from_jwks(&layer.jwks())?;
    let login_issuer = layer.issuer();
    let protected = Router::new()
        .route(
            "/me",
            get(|user: Authenticated<Claims>| async move {
                user.registered.sub.clone().unwrap_or_default()
            }),
        )
        .route(
            "/logout",
            post(|session: Session<Claims>| async move {
                match session.end().await {
                    Ok(()) => StatusCode::NO_CONTENT,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }),
        )
        .route_layer(layer);
    let router = Router::new()
        .route(
            "/login",
            post(move || {
                let issuer = login_issuer.clone();
                async move {
                    // A real login checks a password first.
                    match issuer.issue(StandardClaims::new("alice", Default::default())) {
                        Ok(issued) => (StatusCode::OK, issued.into_token()),
                        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    }
                }
            }),
        )
        .route_service("/.well-known/jwks.json", jwks)
        .merge(protected);
    Ok(serve(router).await?)
}

/// A verify-only service: it loads the issuer's keys from its JWKS URL,
/// verifies the same tokens (renewals included) and never renews.
async fn orders(issuer: &str, clock: &ManualClock) -> Result<String, Box<dyn std::error::Error>> {
    let keys = RemoteJwks::builder(
        format!("{issuer}/.well-known/jwks.json").parse()?,
        // Loopback: plain HTTP, asked for explicitly (HyperFetcher::new is TLS-only).
        HyperFetcher::plain_http(),
    )
    .with_clock(clock.clone())
    .build()?;
    keys.refresh().await?;
    let layer = SlidingJwtLayer::<_, Claims>::verifier(keys)
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_clock(clock.clone())
        .build()?;
    let router = Router::new()
        .route(
            "/orders",
            get(|user: Authenticated<Claims>| async move {
                Json(serde_json::json!({ "user": user.registered.sub, "orders": [] }))
            }),
        )
        .route_layer(layer);
    Ok(serve(router).await?)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One request through `service`; the status and the body.
async fn call<S>(
    service: &S,
    method: Method,
    uri: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>> + Clone,
    S::Error: std::error::Error + 'static,
{
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::default())?;
    let response = service.clone().oneshot(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(tower_sliding_jwt::SystemClock.now());
    let issuer_origin = issuer(&clock).await?;
    let orders_origin = orders(&issuer_origin, &clock).await?;
    println!("issuer on {issuer_origin}, verify-only orders service on {orders_origin}");

    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (_, login) = call(&http, Method::POST, &format!("{issuer_origin}/login")).await?;
    println!("logged in as alice");
    let tokens = TokenStore::new(&login).with_clock(clock.clone());
    // One store, two layers: the issuer's refusal ends the session; the
    // verify-only service's does not clear the shared store.
    let to_issuer = ClientLayer::for_origin(&issuer_origin, tokens.clone())?
        .with_on_unauthorized(|| {
            println!("the issuer refused the token: session ended, log in again")
        })
        .layer(http.clone());
    let to_orders = ClientLayer::for_origin(&orders_origin, tokens.clone())?
        .with_clear_on_unauthorized(false)
        .layer(http);

    let (status, body) = call(&to_orders, Method::GET, &format!("{orders_origin}/orders")).await?;
    println!("orders service: {status} {body}");

    clock.advance(Duration::from_secs(50 * 60));
    let before = tokens.expires_at();
    let (status, body) = call(&to_issuer, Method::GET, &format!("{issuer_origin}/me")).await?;
    let after = tokens.expires_at();
    println!("50 minutes later, issuer /me: {status} {body}");
    if after > before {
        println!("renewal adopted by the client: exp {before:?} -> {after:?}");
    } else {
        return Err("the client did not adopt a renewal".into());
    }
    let (status, body) = call(&to_orders, Method::GET, &format!("{orders_origin}/orders")).await?;
    println!("orders service with the renewed token: {status} {body}");

    let (status, _) = call(&to_issuer, Method::POST, &format!("{issuer_origin}/logout")).await?;
    println!("logout at the issuer: {status}");
    let (status, _) = call(&to_issuer, Method::GET, &format!("{issuer_origin}/me")).await?;
    println!(
        "issuer /me after logout: {status}; the client holds a token: {}",
        tokens.token().is_some()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("services example failed: {error}");
            ExitCode::FAILURE
        }
    }
}
