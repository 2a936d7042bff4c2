//! A tour of the layer without any web framework: log in, make a request,
//! come back near expiry and get a renewed token.
//!
//! Run it with `cargo run --example quickstart`.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{Key, ManualClock, Session, SlidingJwtLayer, StandardClaims};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock lets the tour jump 50 minutes ahead; real services use the
    // default system clock.
    let clock = ManualClock::new(1_800_000_000);
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256(
        b"quickstart secret: use 32+ random bytes in production",
    )?)
    .with_issuer("quickstart")
    .with_audience("demo-api")
    .with_ttl(Duration::from_secs(3600))
    .with_clock(clock.clone())
    .build()?;

    // 1. Login: the layer's issuer mints the first token of a session.
    let mut extra = serde_json::Map::new();
    extra.insert("role".into(), "admin".into());
    let login = layer.issuer().issue(StandardClaims::new("alice", extra))?;
    println!("login token:    {}", login.token());

    // 2. A protected service reads the verified claims from the request.
    let app = layer.layer(service_fn(|request: Request<()>| async move {
        // The session derefs to the verified claims.
        let session = request
            .extensions()
            .get::<Session<StandardClaims>>()
            .expect("set by the layer");
        let body = format!("hello {}", session.registered.sub.as_deref().unwrap_or("?"));
        Ok::<_, Infallible>(Response::new(body))
    }));
    let call = |token: &str| {
        Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(())
    };

    let response = app.clone().oneshot(call(login.token())?).await?;
    println!(
        "verified:       {} {:?}",
        response.status(),
        response.body()
    );

    // 3. Fifty minutes later the token is inside the 20-minute renew window.
    clock.advance(Duration::from_secs(50 * 60));
    let response = app.clone().oneshot(call(login.token())?).await?;
    let renewed = response
        .headers()
        .get("authorization")
        .ok_or("no renewal")?
        .to_str()?;
    println!("renewed token:  {}", renewed.trim_start_matches("Bearer "));
    println!(
        "cache-control:  {:?}",
        response.headers().get("cache-control")
    );

    // 4. Without a token: 401 and a bare challenge.
    let response = app.oneshot(Request::get("/me").body(())?).await?;
    println!(
        "no token:       {} {:?}",
        response.status(),
        response.headers().get("www-authenticate")
    );
    Ok(())
}
