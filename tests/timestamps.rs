//! Time: clocks behind an `Arc` or a `Box`, and the `time` values that
//! tokens, sessions and cookies (`Max-Age` and `Expires`) report.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_sliding_jwt::{
    Clock, CookieSource, IssuedToken, ManualClock, Session, SlidingJwtLayer, StandardClaims,
    SystemClock,
};

#[test]
fn clocks_behind_an_arc_plug_in() {
    let manual = ManualClock::new(T0);
    let chosen: Arc<dyn Clock> = if std::env::var_os("NEVER_SET_TSJ").is_some() {
        Arc::new(SystemClock)
    } else {
        Arc::new(manual.clone())
    };
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_clock(chosen)
        .build()
        .unwrap();
    assert_eq!(layer.issuer().now(), T0);
    manual.advance(Duration::from_secs(5));
    assert_eq!(layer.issuer().now(), T0 + 5);

    let shared = Arc::new(manual.clone());
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_clock(shared)
        .build()
        .unwrap();
    assert_eq!(layer.issuer().now(), T0 + 5);
    let boxed: Box<dyn Clock> = Box::new(manual);
    assert_eq!(boxed.now(), T0 + 5);
}

#[tokio::test]
async fn tokens_sessions_and_cookies_speak_time() {
    // 1994-11-06T08:49:37Z, the RFC 9110 example date.
    let t0 = 784_111_777;
    let clock = ManualClock::new(t0);
    let cookie = CookieSource::new("session").unwrap();
    let layer = SlidingJwtLayer::<_, StandardClaims>::builder(hs256())
        .with_clock(clock.clone())
        .with_token_source(cookie.clone())
        .build()
        .unwrap();
    let issued: IssuedToken<StandardClaims> = layer
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    assert_eq!(issued.issued_at().unix_timestamp(), t0);
    assert_eq!(issued.expiry().unix_timestamp(), t0 + 3600);
    assert_eq!(
        issued.expiry() - issued.issued_at(),
        time::Duration::hours(1)
    );
    assert_eq!(
        cookie.set_cookie_for(&issued).unwrap(),
        format!(
            "session={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=3600; Expires=Sun, 06 Nov 1994 09:49:37 GMT",
            issued.token()
        )
    );

    let app = layer.layer(service_fn(|request: Request<()>| async move {
        let session = request
            .extensions()
            .get::<Session<StandardClaims>>()
            .unwrap();
        let seen = format!(
            "{} {} {}",
            session.expiry().unix_timestamp(),
            session.issued_at().unwrap().unix_timestamp(),
            session.authenticated_at().unwrap().unix_timestamp(),
        );
        Ok::<_, Infallible>(Response::new(seen))
    }));
    // 50 minutes in: renewed through the cookie, with both attributes.
    clock.advance(Duration::from_secs(50 * 60));
    let request = Request::get("/")
        .header("cookie", format!("session={}", issued.token()))
        .body(())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.body(), &format!("{} {t0} {t0}", t0 + 3600));
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.ends_with("; Max-Age=3600; Expires=Sun, 06 Nov 1994 10:39:37 GMT"),
        "{set_cookie}"
    );
}
