//! What a hostile origin can answer the client half: any status, any
//! renewal header, any gRPC status. Never a panic, and the store only ever
//! holds the login token or a token tied to it (same `sid`, `sub`, a later
//! `exp` within the horizon).
#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{ClientLayer, ManualClock, TokenStore};

const NOW: i64 = 1_800_000_000;

fn login() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"alice","sid":"s1","iat":{NOW},"exp":{}}}"#,
        NOW + 3600
    ));
    format!("{header}.{claims}.c2ln")
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF);
    let status = parts
        .next()
        .and_then(|s| s.first())
        .map_or(200, |&b| [200, 204, 302, 401, 403, 500][usize::from(b) % 6]);
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (index, part) in parts.take(3).enumerate() {
        let name = ["authorization", "www-authenticate", "grpc-status"][index];
        if let Ok(value) = HeaderValue::from_bytes(part) {
            response = response.header(name, value);
        }
    }
    let Ok(response) = response.body(()) else {
        return;
    };
    let grpc_error = response.headers().contains_key("grpc-status");
    let login = login();
    let tokens = TokenStore::new(&login).with_clock(ManualClock::new(NOW));
    let server = service_fn(move |_: Request<()>| {
        let response = response.clone();
        async move { Ok::<_, Infallible>(response) }
    });
    let mut client = ClientLayer::for_channel(tokens.clone()).layer(server);
    let mut cx = Context::from_waker(Waker::noop());
    let request = Request::get("/").body(()).unwrap();
    let Poll::Ready(Ok(_)) = pin!(client.call(request)).as_mut().poll(&mut cx) else {
        panic!("a ready server answers at once");
    };
    match tokens.token() {
        None => assert!(status == 401 || grpc_error, "only a refusal clears the store"),
        Some(token) if token == login => {}
        Some(token) => {
            let adopted = claims(&token);
            assert_eq!(adopted["sid"], "s1");
            assert_eq!(adopted["sub"], "alice");
            let exp = adopted["exp"].as_i64().unwrap();
            assert!(exp > NOW + 3600 && exp <= NOW + 4 * 3600, "{exp}");
        }
    }
});
