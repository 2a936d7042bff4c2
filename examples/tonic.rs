//! The gRPC demo: `helloworld.Greeter/SayHello` behind the sliding-JWT layer
//! (see `examples/README.md`), and a client that keeps its session alive with
//! [`ClientLayer`].
//!
//! ```sh
//! cargo run --example tonic            # the server, on 127.0.0.1:50051
//! cargo run --example tonic -- client  # two calls; the first one renews the token
//! ```
//!
//! The service plumbing below is what `tonic-build` would generate, written
//! by hand so that no `protoc` is needed:
//!
//! ```proto
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
#![allow(unreachable_pub)]

#[path = "demo/mod.rs"]
pub mod demo;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use demo::DemoClaims;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service};
use tower_sliding_jwt::{
    Client, ClientLayer, Clock, DefaultPolicy, GrpcResponder, Key, ManualClock, Session,
    SlidingJwtLayer, SystemClock, TokenStore,
};

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The method's path.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// The `helloworld.Greeter` server.
#[derive(Debug, Clone, Default)]
pub struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "helloworld.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<tonic::body::Body>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match request.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(SayHello, request).await)
            }),
            _ => Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) }),
        }
    }
}

struct SayHello;

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = Ready<Result<tonic::Response<HelloReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        // The layer verified the token and put the session (it derefs to the
        // claims) into the extensions.
        let user = request
            .extensions()
            .get::<Session<DemoClaims>>()
            .and_then(|session| session.registered.sub.clone());
        let message = format!(
            "Hello {}! (signed in as {})",
            request.get_ref().name,
            user.as_deref().unwrap_or("?")
        );
        ready(Ok(tonic::Response::new(HelloReply { message })))
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
        .add_service(Greeter)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// A Greeter client over a channel wrapped in the client-side layer.
#[derive(Debug)]
pub struct GreeterClient {
    grpc: tonic::client::Grpc<Client<Channel>>,
}

impl GreeterClient {
    /// Connects to `address` (e.g. `http://127.0.0.1:50051`), authenticating with `tokens`.
    pub async fn connect(
        address: String,
        tokens: TokenStore,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(address)?.connect().await?;
        // Attaches `authorization: Bearer <current>` and adopts renewed tokens
        // of the same session. A channel has one endpoint, so the layer is
        // bound to it by construction (tonic sends relative URIs and the
        // channel adds its own origin).
        let service = ClientLayer::for_channel(tokens).layer(channel);
        Ok(Self {
            grpc: tonic::client::Grpc::new(service),
        })
    }

    /// Calls `SayHello`.
    pub async fn say_hello(
        &mut self,
        name: &str,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let request = tonic::Request::new(HelloRequest {
            name: name.to_owned(),
        });
        self.grpc
            .unary(
                request,
                PathAndQuery::from_static(SAY_HELLO),
                tonic_prost::ProstCodec::default(),
            )
            .await
    }
}

async fn client(secret: &[u8], port: u16) -> Result<(), Box<dyn std::error::Error>> {
    // A real client gets its token from your login endpoint. The demo mints one
    // with the shared secret, dated 45 minutes back, so that its first call
    // falls inside the 20-minute renew window.
    let issued_at = ManualClock::new(SystemClock.now() - 45 * 60);
    let login = demo::layer(secret, issued_at)?
        .issuer()
        .issue(demo::claims("alice", "admin"))?;
    let tokens = TokenStore::new(login.token());
    let mut greeter =
        GreeterClient::connect(format!("http://127.0.0.1:{port}"), tokens.clone()).await?;
    println!("token expires at {:?} (login)", tokens.expires_at());
    for name in ["world", "again", "once more"] {
        let reply = greeter.say_hello(name).await?;
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
        return client(&secret, port).await.map_err(|e| e.to_string());
    }
    let layer = grpc_layer(&secret, SystemClock).map_err(|e| e.to_string())?;
    let listener = demo::listen(port).await?;
    tokio::select! {
        result = serve(listener, layer) => result.map_err(|e| e.to_string()),
        () = demo::shutdown() => Ok(()),
    }
}
