//! The gRPC demo: `helloworld.Greeter/SayHello` behind the sliding-JWT layer
//! (see `examples/README.md`), and a client that keeps its session alive with
//! [`ClientLayer`].
//!
//! ```sh
//! cargo run --example tonic            # the server, on 127.0.0.1:50051
//! cargo run --example tonic -- client  # three calls; the first one renews the token
//! cargo run --example tonic -- client --dpop  # the same with a DPoP-bound session
//! ```
//!
//! The service and its messages are tonic's generated code for
//! `examples/proto/helloworld.proto`, checked in as
//! `examples/proto/helloworld.rs` (regenerate it with
//! `cargo run --manifest-path scripts/protogen/Cargo.toml`, which needs
//! `protoc`; building the demo does not). The server is what a tonic user
//! writes: an `impl Greeter` whose handler reads the `Session` the layer put
//! into the request's extensions, served as `GreeterServer::new(..)` behind
//! `Server::builder().layer(..)`; the client is the generated
//! `GreeterClient` over a channel wrapped in [`ClientLayer`].
#![allow(unreachable_pub)]

#[path = "demo/mod.rs"]
pub mod demo;

/// tonic's generated code for `helloworld.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod helloworld {
    include!("proto/helloworld.rs");
}

use std::process::ExitCode;

use demo::DemoClaims;
use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
pub use helloworld::{HelloReply, HelloRequest};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tower::Layer;
use tower_sliding_jwt::dpop::DpopKey;
use tower_sliding_jwt::{
    ClientLayer, Clock, Confirmation, GrpcResponder, Key, ManualClock, Session, SlidingJwtClient,
    SlidingJwtLayer, SystemClock, TokenStore, policy::DefaultPolicy,
};

/// The demo's `helloworld.Greeter`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoGreeter;

#[tonic::async_trait]
impl Greeter for DemoGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // The layer verified the token and put the session (it derefs to the
        // claims) into the extensions; tonic hands them to the handler.
        let user = request
            .extensions()
            .get::<Session<DemoClaims>>()
            .and_then(|session| session.registered.sub.clone());
        let message = format!(
            "Hello {}! (signed in as {})",
            request.get_ref().name,
            user.as_deref().unwrap_or("?")
        );
        Ok(Response::new(HelloReply { message }))
    }
}

/// The demo layer, answering rejections as gRPC `UNAUTHENTICATED`.
pub fn grpc_layer(
    secret: &[u8],
    clock: impl Clock,
) -> Result<
    SlidingJwtLayer<Key, DemoClaims, DefaultPolicy, GrpcResponder>,
    tower_sliding_jwt::ConfigError,
> {
    demo::builder(secret, clock)?
        .with_responder(GrpcResponder)
        .build()
}

/// Serves the Greeter on `listener` behind `layer`.
pub async fn serve(
    listener: TcpListener,
    layer: SlidingJwtLayer<Key, DemoClaims, DefaultPolicy, GrpcResponder>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(GreeterServer::new(DemoGreeter))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// A Greeter client for `address` (e.g. `http://127.0.0.1:50051`),
/// authenticating with `tokens`: the generated client over a channel wrapped
/// in the client-side layer, which attaches `authorization: Bearer
/// <current>` and adopts renewed tokens of the same session. A channel has
/// one endpoint, so the layer is bound to it by construction.
pub async fn connect(
    address: String,
    tokens: TokenStore,
) -> Result<GreeterClient<SlidingJwtClient<Channel>>, Box<dyn std::error::Error>> {
    connect_with(address, tokens, None).await
}

/// [`connect`], and with a DPoP key the client signs a proof for every
/// call (`dpop` metadata, `htm` POST, `htu` the address and the method's
/// path) and sends the token as `authorization: DPoP <token>`.
pub async fn connect_with(
    address: String,
    tokens: TokenStore,
    dpop: Option<DpopKey>,
) -> Result<GreeterClient<SlidingJwtClient<Channel>>, Box<dyn std::error::Error>> {
    let mut layer = ClientLayer::for_channel(tokens);
    if let Some(key) = dpop {
        // A channel's requests carry relative URIs: proofs name its origin.
        layer = layer.with_dpop(key).with_dpop_origin(&address)?;
    }
    let channel = Endpoint::from_shared(address)?.connect().await?;
    Ok(GreeterClient::new(layer.layer(channel)))
}

/// A `SayHello` request for `name`.
pub fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
    }
}

async fn client(secret: &[u8], port: u16, dpop: bool) -> Result<(), Box<dyn std::error::Error>> {
    // A real client gets its token from your login endpoint. The demo mints one
    // with the shared secret, dated 45 minutes back, so that its first call
    // falls inside the 20-minute renew window. With `--dpop` the token is
    // bound to a key the client generates (it holds the key, so the issuer
    // can bind it without an HTTP login).
    let issued_at = ManualClock::new(SystemClock.now() - 45 * 60);
    let key = dpop.then(DpopKey::generate).transpose()?;
    let mut claims = demo::claims("alice", "admin");
    claims.registered.cnf = key.as_ref().map(|key| Confirmation::jkt(key.thumbprint()));
    let login = demo::layer(secret, issued_at)?.issuer().issue(claims)?;
    let tokens = TokenStore::new(login.token());
    if key.is_some() {
        println!("DPoP: the session is bound to this client's key");
    }
    let mut greeter = connect_with(format!("http://127.0.0.1:{port}"), tokens.clone(), key).await?;
    println!("token expires at {:?} (login)", tokens.expires_at());
    for name in ["world", "again", "once more"] {
        let reply = greeter.say_hello(hello(name)).await?;
        println!(
            "{}  -- token expires at {:?}",
            reply.get_ref().message,
            tokens.expires_at()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    demo::exit(run().await)
}

async fn run() -> Result<(), String> {
    let (secret, port) = demo::settings(50051)?;
    if std::env::args().nth(1).as_deref() == Some("client") {
        let dpop = std::env::args().any(|arg| arg == "--dpop");
        return client(&secret, port, dpop).await.map_err(|e| e.to_string());
    }
    let layer = grpc_layer(&secret, SystemClock).map_err(|e| e.to_string())?;
    let listener = demo::listen(port).await?;
    tokio::select! {
        result = serve(listener, layer) => result.map_err(|e| e.to_string()),
        () = demo::shutdown() => Ok(()),
    }
}
