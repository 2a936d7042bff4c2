//! Property tests of the renewal arithmetic: for any claims, clock and
//! settings, a renewal never passes the session cap, never moves `exp`
//! backwards, sets `iat` to now, keeps the session's claims, and never happens
//! outside the window or inside the throttle.

mod common;

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::*;
use http::{Request, Response};
use proptest::prelude::*;
use tower::{Layer, Service, service_fn};
use tower_sliding_jwt::{Clock, ManualClock, RenewWindow, SlidingJwtLayer, Throttle};

fn ok(_: Request<()>) -> Ready<Result<Response<String>, Infallible>> {
    ready(Ok(Response::new(String::new())))
}

/// Drives a service whose futures are ready at once, without a runtime.
fn call<S>(service: &mut S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    match pin!(service.call(request)).as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the layer completes at once with an in-memory store"),
    }
}

#[derive(Debug, Clone)]
struct Case {
    now: i64,
    auth_age: i64,
    iat_age: i64,
    exp_in: i64,
    ttl: u64,
    max_session: u64,
    window: u64,
    throttle: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1_000_000_000i64..4_000_000_000,
        0i64..200_000,
        0i64..10_000,
        -100i64..10_000,
        1u64..20_000,
        1u64..200_000,
        1u64..20_000,
        0u64..5_000,
    )
        .prop_map(
            |(now, auth_age, iat_age, exp_in, ttl, max_session, window, throttle)| Case {
                now,
                auth_age,
                iat_age: iat_age.min(auth_age),
                exp_in,
                ttl,
                max_session,
                window,
                throttle,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn renewals_respect_cap_window_throttle_and_identity(case in cases()) {
        let clock = ManualClock::new(case.now);
        let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
            .with_clock(clock.clone())
            .with_ttl(Duration::from_secs(case.ttl))
            .with_max_session(Duration::from_secs(case.max_session))
            .with_renew_window(RenewWindow::absolute(Duration::from_secs(case.window)).unwrap())
            .with_throttle(Throttle::new(Duration::from_secs(case.throttle)).unwrap())
            .with_leeway(Duration::ZERO)
            .build();
        // Lifetimes that could never renew are refused when the layer is
        // built (rule 3); there is no layer to try then.
        let layer = match layer {
            Ok(layer) => layer,
            Err(error) => {
                prop_assert_eq!(error.kind(), tower_sliding_jwt::ConfigErrorKind::NeverRenews);
                prop_assert!(
                    case.throttle >= case.ttl
                        || case.window == 0
                        || case.max_session.saturating_sub(case.ttl) < case.throttle.max(1)
                );
                return Ok(());
            }
        };
        let mut service = layer.layer(service_fn(ok as fn(_) -> _));
        let now = clock.now();
        let (auth_time, iat, exp) = (now - case.auth_age, now - case.iat_age, now + case.exp_in);
        let token = forge_hs256(&format!(
            r#"{{"sub":"u","team":{{"id":7}},"sid":"s-1","jti":"j-1","auth_time":{auth_time},"iat":{iat},"exp":{exp}}}"#
        ));
        let response = call(&mut service, get(&token));
        let cap = auth_time + case.max_session as i64;
        // A token living longer than this layer signs (its ttl, no leeway
        // here) was minted elsewhere: refused.
        let valid = exp > now && now < cap && exp - now <= case.ttl as i64;
        prop_assert_eq!(response.status().is_success(), valid);

        match renewed_token(&response) {
            Some(new) => {
                prop_assert!(valid, "a rejected request is never renewed");
                let claims = payload(&new);
                let new_exp = claims["exp"].as_i64().unwrap();
                prop_assert!(new_exp <= cap, "never past the cap");
                prop_assert!(new_exp <= now + case.ttl as i64, "never longer than the ttl");
                prop_assert!(new_exp > exp, "never earlier than the old exp");
                prop_assert!(new_exp - exp >= (case.throttle as i64).max(1), "gains at least the throttle");
                prop_assert_eq!(claims["iat"].as_i64(), Some(now));
                prop_assert_eq!(claims["sid"].as_str(), Some("s-1"));
                prop_assert_eq!(claims["auth_time"].as_i64(), Some(auth_time));
                prop_assert_eq!(claims["sub"].as_str(), Some("u"));
                prop_assert_eq!(&claims["team"]["id"], &serde_json::json!(7));
                prop_assert_ne!(claims["jti"].as_str(), Some("j-1"));
                prop_assert!(exp - now <= case.window as i64, "only inside the window");
                prop_assert!(now - iat >= case.throttle as i64, "never inside the throttle");
            }
            None if valid => {
                // Not renewed: then some rule said no.
                let target = (now + case.ttl as i64).min(cap);
                let in_window = exp - now <= case.window as i64;
                let throttled = now - iat < case.throttle as i64;
                let gain_too_small = target - exp < (case.throttle as i64).max(1);
                prop_assert!(!in_window || throttled || gain_too_small,
                    "a renewal was due but did not happen: {:?}", case);
            }
            None => {}
        }
    }
}

fn renewed_token(response: &Response<String>) -> Option<String> {
    let value = response.headers().get("authorization")?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.to_owned())
}
