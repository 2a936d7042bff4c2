//! A server for measuring what the layer costs in throughput: one trivial
//! handler served three ways, chosen by path, so that `scripts/throughput.sh`
//! can compare them route against route on the same server:
//!
//! * `/plain`: the handler alone;
//! * `/layered`: the same handler behind `SlidingJwtLayer`;
//! * `/cached`: the same, with the verified-token cache.
//!
//! Every request may carry the same `Authorization` header; `/plain` ignores
//! it. On start it prints `token <jwt>` (a token both layers accept) and
//! `listening on ...`.
//!
//! ```sh
//! PORT=3918 cargo run --release --example bench_server
//! ```

use std::convert::Infallible;
use std::future::{Ready, ready};

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims};

type Body = Full<Bytes>;
type Route = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// The trivial handler every route shares.
fn handler(_request: Request<Incoming>) -> Ready<Result<Response<Body>, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn layer(cache: usize) -> SlidingJwtLayer<Key, StandardClaims> {
    let secret = b"throughput-benchmark secret, at least 32 bytes";
    let builder = SlidingJwtLayer::builder(Key::hs256(secret).expect("a 32+ byte secret"))
        .with_issuer("bench")
        .with_audience("bench-api");
    let builder = if cache > 0 {
        builder.with_verified_cache(cache)
    } else {
        builder
    };
    builder.build().expect("a valid configuration")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT").map_or(Ok(3918), |p| p.parse())?;
    let plain: Route = BoxCloneService::new(service_fn(handler));
    let layered = layer(0);
    let cached = layer(10_000);
    let mut role = serde_json::Map::new();
    role.insert("role".into(), "admin".into());
    let token = layered.issuer().issue(StandardClaims::new("alice", role))?;
    let layered: Route = BoxCloneService::new(layered.layer(service_fn(handler)));
    let cached: Route = BoxCloneService::new(cached.layer(service_fn(handler)));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("token {}", token.token());
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let routes = (plain.clone(), layered.clone(), cached.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            let route = match request.uri().path() {
                "/layered" => routes.1.clone(),
                "/cached" => routes.2.clone(),
                _ => routes.0.clone(),
            };
            route.oneshot(request)
        });
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}
