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

/// Echoes the claims' `ver`; `x-bump` re-issues the token with `ver + 1`
/// (`renew_with`).
fn versioned(request: Request<()>) -> Ready<Result<Response<String>, Infallible>> {
    let mut body = String::new();
    if let Some(session) = request
        .extensions()
        .get::<tower_sliding_jwt::Session<Claimset>>()
    {
        let ver = session.claims().extra["ver"].as_i64().unwrap();
        body = ver.to_string();
        if request.headers().contains_key("x-bump") {
            let mut claims = session.claims().clone();
            claims.extra.insert("ver".into(), (ver + 1).into());
            session.renew_with(claims);
        }
    }
    ready(Ok(Response::new(body)))
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Request {
        on_b: bool,
        token: usize,
        bump: bool,
    },
    Logout,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0u64..=900).prop_map(Op::Advance),
        6 => (any::<bool>(), any::<usize>(), prop::bool::weighted(0.3))
            .prop_map(|(on_b, token, bump)| Op::Request { on_b, token, bump }),
        1 => Just(Op::Logout),
    ];
    prop::collection::vec(op, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Renewals, `renew_with` and logouts in any order, over two layers that
    /// share a store (each with its own single flight, so siblings arise):
    /// once a `renew_with` response is out, no request is served with, and
    /// no token is handed out carrying, earlier claims; the token it issued
    /// is accepted until it expires, unless a later `renew_with` or a logout
    /// ended it; after a logout nothing of the session is served.
    #[test]
    fn no_old_claims_after_renew_with_and_no_session_lost(ops in ops()) {
        let clock = ManualClock::new(T0);
        let store = tower_sliding_jwt::MemoryStore::new();
        let build = || {
            SlidingJwtLayer::<_, Claimset>::builder(hs256())
                .with_clock(clock.clone())
                .with_revocation_store(store.clone())
                .with_renew_window(RenewWindow::absolute(Duration::from_secs(59 * 60)).unwrap())
                .build()
                .unwrap()
        };
        let (a, b) = (build(), build());
        let mut services = [
            a.layer(service_fn(versioned as fn(_) -> _)),
            b.layer(service_fn(versioned as fn(_) -> _)),
        ];
        let mut login = user("alice", "user");
        login.extra.insert("ver".into(), 0.into());
        let login = a.issuer().issue(login).unwrap();
        let sid = login.claims().registered.sid.clone().unwrap();
        let mut held = vec![login.token().to_owned()];
        let (mut v_min, mut latest, mut logged_out) = (0i64, None::<String>, false);
        for op in ops {
            match op {
                Op::Advance(seconds) => clock.advance(Duration::from_secs(seconds)),
                Op::Logout => {
                    let revoke = a.revoker();
                    let mut logout = pin!(revoke.revoke_session(&sid));
                    let mut cx = Context::from_waker(Waker::noop());
                    prop_assert!(matches!(logout.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
                    logged_out = true;
                }
                Op::Request { on_b, token, bump } => {
                    let token = held[token % held.len()].clone();
                    let mut request = get(&token);
                    if bump {
                        request.headers_mut().insert("x-bump", "1".parse().unwrap());
                    }
                    let response = call(&mut services[usize::from(on_b)], request);
                    let now = clock.now();
                    if response.status().is_success() {
                        prop_assert!(!logged_out, "served after the logout");
                        let served: i64 = response.body().parse().unwrap();
                        prop_assert!(served >= v_min, "served claims {} after renew_with gave {}", served, v_min);
                    } else if latest.as_deref() == Some(token.as_str()) && !logged_out {
                        let claims = payload(&token);
                        let live = claims["exp"].as_i64().unwrap() + 5 > now
                            && claims["auth_time"].as_i64().unwrap() + 86_400 > now;
                        prop_assert!(!live, "renew_with's token refused while live: {:?}", rejection(&response));
                    }
                    if let Some(new) = renewed_token(&response) {
                        let ver = payload(&new)["ver"].as_i64().unwrap();
                        prop_assert!(ver >= v_min, "handed out claims {} after renew_with gave {}", ver, v_min);
                        if bump && response.body().parse::<i64>().ok() == Some(ver - 1) {
                            v_min = ver;
                            latest = Some(new.clone());
                        }
                        held.push(new);
                    }
                }
            }
        }
    }
}
