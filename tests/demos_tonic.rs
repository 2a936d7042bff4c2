//! End-to-end: the tonic demo served on `127.0.0.1:0` and driven over real
//! TCP by a tonic client behind the client layer, with a manual clock for the
//! renew window.
#![allow(clippy::duplicate_mod)]

mod common;

#[path = "../examples/tonic.rs"]
#[allow(dead_code)]
mod tonic_demo;

use std::time::Duration;

use tokio::net::TcpListener;
use tower_sliding_jwt::{Clock, ManualClock, SystemClock, TokenStore};

use common::payload;

const SECRET: &[u8] = b"end-to-end test secret, at least 32 bytes";

#[tokio::test]
async fn tonic_demo_keeps_the_contract() {
    let clock = ManualClock::new(SystemClock.now());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = tonic_demo::grpc_layer(SECRET, clock.clone()).unwrap();
    let login = layer
        .issuer()
        .issue(tonic_demo::demo::claims("alice", "admin"))
        .unwrap();
    tokio::spawn(tonic_demo::serve(listener, layer));
    let address = format!("http://{addr}");

    // No token: UNAUTHENTICATED.
    let mut anonymous = tonic_demo::connect(address.clone(), TokenStore::empty())
        .await
        .unwrap();
    let status = anonymous
        .say_hello(tonic_demo::hello("nobody"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // A forged token: UNAUTHENTICATED.
    let forged = format!("{}x", login.token());
    let refused = TokenStore::new(&forged);
    let mut bad = tonic_demo::connect(address.clone(), refused.clone())
        .await
        .unwrap();
    assert_eq!(
        bad.say_hello(tonic_demo::hello("mallory"))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    assert!(
        refused.token().is_none(),
        "UNAUTHENTICATED in the headers clears the refused token"
    );

    let tokens = TokenStore::new(login.token());
    let mut greeter = tonic_demo::connect(address, tokens.clone()).await.unwrap();
    let reply = greeter.say_hello(tonic_demo::hello("world")).await.unwrap();
    assert!(reply.get_ref().message.contains("world") && reply.get_ref().message.contains("alice"));
    assert!(reply.metadata().get("authorization").is_none());
    assert_eq!(tokens.token().unwrap(), login.token());

    // Inside the window: the renewal arrives in the initial metadata and the
    // client layer swaps to it.
    clock.advance(Duration::from_secs(50 * 60));
    let reply = greeter.say_hello(tonic_demo::hello("again")).await.unwrap();
    let renewed = reply
        .metadata()
        .get("authorization")
        .expect("renewed token in metadata")
        .to_str()
        .unwrap();
    let renewed = renewed.strip_prefix("Bearer ").unwrap();
    assert_eq!(tokens.token().as_deref(), Some(renewed));
    assert_eq!(tokens.expires_at(), Some(clock.now() + 3600));
    assert_eq!(payload(renewed)["sid"], payload(login.token())["sid"]);
    // The old token expires; the client carries on with the new one.
    clock.advance(Duration::from_secs(20 * 60));
    assert!(greeter.say_hello(tonic_demo::hello("later")).await.is_ok());
}

#[tokio::test]
async fn the_tonic_demos_client_keeps_a_dpop_bound_session_alive() {
    let clock = ManualClock::new(SystemClock.now());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = tonic_demo::grpc_layer(SECRET, clock.clone()).unwrap();
    let key = tower_sliding_jwt::dpop::DpopKey::generate().unwrap();
    let mut claims = tonic_demo::demo::claims("alice", "admin");
    claims.registered.cnf = Some(tower_sliding_jwt::Confirmation::jkt(key.thumbprint()));
    let login = layer.issuer().issue(claims).unwrap();
    tokio::spawn(tonic_demo::serve(listener, layer));
    let address = format!("http://{addr}");

    // The bound token as a bearer token: UNAUTHENTICATED.
    let stolen = TokenStore::new(login.token()).with_clock(clock.clone());
    let mut thief = tonic_demo::connect(address.clone(), stolen).await.unwrap();
    let status = thief.say_hello(tonic_demo::hello("x")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // With its key, over HTTP/2 (`htu` from `:authority`), renewed under DPoP.
    let tokens = TokenStore::new(login.token()).with_clock(clock.clone());
    let mut greeter = tonic_demo::connect_with(address, tokens.clone(), Some(key))
        .await
        .unwrap();
    assert!(greeter.say_hello(tonic_demo::hello("world")).await.is_ok());
    clock.advance(Duration::from_secs(50 * 60));
    let reply = greeter.say_hello(tonic_demo::hello("again")).await.unwrap();
    let renewed = reply
        .metadata()
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let renewed = renewed.strip_prefix("DPoP ").expect("renewed under DPoP");
    assert_eq!(tokens.token().as_deref(), Some(renewed));
    assert_eq!(payload(renewed)["cnf"], payload(login.token())["cnf"]);
    clock.advance(Duration::from_secs(20 * 60));
    assert!(greeter.say_hello(tonic_demo::hello("later")).await.is_ok());
}
