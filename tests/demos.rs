//! End-to-end: the axum, hyper and tonic demos served on `127.0.0.1:0` and
//! driven over real TCP by a hyper client and a tonic client, with a manual
//! clock for the renew window. Then the example binaries themselves.
// Each demo brings its own copy of the shared `demo` module.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod axum_demo;
#[path = "../examples/hyper.rs"]
#[allow(dead_code)]
mod hyper_demo;
#[path = "../examples/tonic.rs"]
#[allow(dead_code)]
mod tonic_demo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_sliding_jwt::{ClientLayer, Clock, ManualClock, SystemClock, TokenStore};

const SECRET: &[u8] = b"end-to-end test secret, at least 32 bytes";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn bearer(&self) -> Option<String> {
        let value = self.headers.get("authorization")?.to_str().unwrap();
        Some(value.strip_prefix("Bearer ").unwrap().to_owned())
    }

    fn set_cookie(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

async fn get_with(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    name: &str,
    value: &str,
) -> Reply {
    call(client, addr, Method::GET, path, &[(name, value)], "").await
}

async fn call(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Http {
    Axum,
    Hyper,
}

async fn start(which: Http, clock: &ManualClock) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match which {
        Http::Axum => {
            let app = axum_demo::app(axum_demo::demo::layer(SECRET, clock.clone()).unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        Http::Hyper => {
            let layer = hyper_demo::demo::layer(SECRET, clock.clone()).unwrap();
            tokio::spawn(hyper_demo::serve(listener, layer));
        }
    }
    addr
}

async fn login(client: &HttpClient, addr: SocketAddr, user: &str, password: &str) -> Reply {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    call(
        client,
        addr,
        Method::POST,
        "/login",
        &[("content-type", "application/json")],
        &body,
    )
    .await
}

/// The contract, for both HTTP demos: login, `/me`, `/admin`, renewal by
/// header and by cookie, no renewal on a 403, logout, 401 afterwards.
async fn http_contract(which: Http) {
    let clock = ManualClock::new(SystemClock.now());
    let addr = start(which, &clock).await;
    let client = http_client();
    let health = call(&client, addr, Method::GET, "/health", &[], "").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok"),
        "{which:?}"
    );

    // Login: bad credentials, malformed bodies, success.
    assert_eq!(
        login(&client, addr, "alice", "nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    for malformed in ["{", "[]", r#"{"username":"alice"}"#, "not json"] {
        let reply = call(
            &client,
            addr,
            Method::POST,
            "/login",
            &[("content-type", "application/json")],
            malformed,
        )
        .await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 422),
            "{which:?} {malformed}: {}",
            reply.status
        );
    }
    let reply = login(&client, addr, "alice", "wonderland").await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let cookie = &reply.set_cookie()[0];
    let expected =
        format!("session={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=3600; Expires=");
    assert!(
        cookie.starts_with(&expected) && cookie.ends_with(" GMT"),
        "{cookie}"
    );
    let claims = payload(&token);
    for claim in [
        "sub",
        "role",
        "iss",
        "aud",
        "iat",
        "exp",
        "jti",
        "sid",
        "auth_time",
    ] {
        assert!(claims.get(claim).is_some(), "{which:?}: claim {claim}");
    }
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("tower-sliding-jwt-demo"), Some("demo-api"))
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let bearer = format!("Bearer {token}");
    let me = get_with(&client, addr, "/me", "authorization", &bearer).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        (me.json()["sub"].as_str(), me.json()["role"].as_str()),
        (Some("alice"), Some("admin"))
    );
    assert_eq!(me.json()["sid"], claims["sid"]);
    assert!(me.bearer().is_none(), "a fresh token is not renewed");
    assert_eq!(
        call(&client, addr, Method::GET, "/me", &[], "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &client,
            addr,
            Method::GET,
            "/admin",
            &[("authorization", &bearer)],
            ""
        )
        .await
        .status,
        StatusCode::OK
    );

    // Bob is not an admin: 403, and no renewal on it even inside the window.
    let bob = login(&client, addr, "bob", "builder").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(Duration::from_secs(45 * 60));
    let forbidden = call(
        &client,
        addr,
        Method::GET,
        "/admin",
        &[("authorization", &format!("Bearer {bob}"))],
        "",
    )
    .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(forbidden.bearer().is_none());

    // Inside the window: renewed by header...
    let renewed = get_with(&client, addr, "/me", "authorization", &bearer).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(renewed.headers["cache-control"], "no-store");
    let next = renewed.bearer().expect("renewed in the window");
    assert_eq!(payload(&next)["sid"], claims["sid"]);
    assert_eq!(payload(&next)["exp"].as_i64().unwrap(), clock.now() + 3600);
    // ...and by cookie, on the cookie channel.
    let by_cookie = call(
        &client,
        addr,
        Method::GET,
        "/me",
        &[("cookie", &format!("session={token}"))],
        "",
    )
    .await;
    let set = by_cookie.set_cookie();
    assert!(
        set[0].starts_with("session=ey") && set[0].contains("; Max-Age=3600; Expires="),
        "{set:?}"
    );
    assert!(by_cookie.bearer().is_none());

    // The client-side layer over hyper's client adopts the renewal.
    let tokens = TokenStore::new(&bob);
    let layer = ClientLayer::for_origin(&format!("http://{addr}"), tokens.clone()).unwrap();
    let service = layer.layer(client.clone());
    // The same server under another name is another origin: no token goes there.
    let elsewhere = format!("http://localhost:{}/me", addr.port());
    let request = Request::get(elsewhere)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(tokens.token().unwrap(), bob, "a foreign 401 is not read");
    let request = Request::get(format!("http://{addr}/me"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(tokens.token().unwrap(), bob, "swapped to the renewed token");
    assert_eq!(tokens.expires_at(), Some(clock.now() + 3600));
    assert_eq!(
        payload(&tokens.token().unwrap())["sid"],
        payload(&bob)["sid"]
    );

    // Logout ends the session: every token of it gets 401.
    let logout = call(
        &client,
        addr,
        Method::POST,
        "/logout",
        &[("authorization", &format!("Bearer {next}"))],
        "",
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    for old in [&token, &next] {
        let reply = call(
            &client,
            addr,
            Method::GET,
            "/me",
            &[("authorization", &format!("Bearer {old}"))],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{which:?}");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // Logging out by cookie expires the cookie.
    let carol = login(&client, addr, "bob", "builder").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A cross-site POST carrying the cookie is refused and revokes nothing
    // (DESIGN rule 11); the same request with a bearer token is a bearer request.
    for cross_site in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let cookie = format!("session={carol}");
        let refused = call(
            &client,
            addr,
            Method::POST,
            "/logout",
            &[("cookie", &cookie), cross_site],
            "",
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{which:?} {cross_site:?}"
        );
        assert!(refused.set_cookie().is_empty());
    }
    let me = get_with(
        &client,
        addr,
        "/me",
        "authorization",
        &format!("Bearer {carol}"),
    )
    .await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the refused requests revoked nothing"
    );
    let logout = call(
        &client,
        addr,
        Method::POST,
        "/logout",
        &[("cookie", &format!("session={carol}"))],
        "",
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        logout.set_cookie(),
        [
            "session=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ]
    );
}

#[tokio::test]
async fn axum_demo_keeps_the_contract() {
    http_contract(Http::Axum).await;
}

#[tokio::test]
async fn hyper_demo_keeps_the_contract() {
    http_contract(Http::Hyper).await;
}

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
    let mut anonymous = tonic_demo::GreeterClient::connect(address.clone(), TokenStore::empty())
        .await
        .unwrap();
    let status = anonymous.say_hello("nobody").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // A forged token: UNAUTHENTICATED.
    let forged = format!("{}x", login.token());
    let refused = TokenStore::new(&forged);
    let mut bad = tonic_demo::GreeterClient::connect(address.clone(), refused.clone())
        .await
        .unwrap();
    assert_eq!(
        bad.say_hello("mallory").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert!(
        refused.token().is_none(),
        "UNAUTHENTICATED in the headers clears the refused token"
    );

    let tokens = TokenStore::new(login.token());
    let mut greeter = tonic_demo::GreeterClient::connect(address, tokens.clone())
        .await
        .unwrap();
    let reply = greeter.say_hello("world").await.unwrap();
    assert!(reply.get_ref().message.contains("world") && reply.get_ref().message.contains("alice"));
    assert!(reply.metadata().get("authorization").is_none());
    assert_eq!(tokens.token().unwrap(), login.token());

    // Inside the window: the renewal arrives in the initial metadata and the
    // client layer swaps to it.
    clock.advance(Duration::from_secs(50 * 60));
    let reply = greeter.say_hello("again").await.unwrap();
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
    assert!(greeter.say_hello("later").await.is_ok());
}

/// The example binaries, run as a user would: `PORT`, the `listening on` line,
/// `/health`, and a clear refusal of a short secret.
#[test]
fn example_binaries_start_and_answer() {
    let examples = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples");
    for name in ["axum", "hyper", "tonic"] {
        let binary = examples.join(name);
        assert!(
            binary.exists(),
            "{} is missing: `cargo test` builds the examples",
            binary.display()
        );

        let short = Command::new(&binary)
            .env("JWT_SECRET", "too short")
            .env("PORT", "0")
            .output()
            .unwrap();
        assert!(!short.status.success(), "{name} must refuse a short secret");
        assert!(
            String::from_utf8_lossy(&short.stderr).contains("at least 32 bytes"),
            "{name}"
        );

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&binary)
            .env("PORT", port.to_string())
            .env_remove("JWT_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("listening on http://127.0.0.1:{port}"),
            "{name}"
        );
        let mut warning = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut warning)
            .unwrap();
        assert!(
            warning.contains("JWT_SECRET is not set"),
            "{name}: {warning}"
        );

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(error) => panic!("{name}: {error}"),
            }
        };
        if name != "tonic" {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
            assert!(response.ends_with("ok"), "{name}: {response}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
