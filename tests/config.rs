//! Configuration is checked when it is built, with a clear error kind.

mod common;

use std::time::Duration;

use common::*;
use tower_sliding_jwt::{
    Algorithm, BearerHeader, ConfigErrorKind as E, CookieSource, DecodingKey, EncodingKey,
    HeaderSource, Key, KeyRing, SlidingJwtLayer,
};

fn build(
    f: impl FnOnce(
        tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset>,
    ) -> tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset>,
) -> Result<(), E> {
    f(SlidingJwtLayer::builder(hs256()))
        .build()
        .map(drop)
        .map_err(|e| e.kind())
}

#[test]
fn builder_settings_are_validated() {
    assert_eq!(build(|b| b), Ok(()));
    assert_eq!(
        build(|b| b.with_ttl(Duration::ZERO)),
        Err(E::InvalidDuration)
    );
    assert_eq!(
        build(|b| b.with_ttl(Duration::from_millis(500))),
        Err(E::InvalidDuration)
    );
    assert_eq!(
        build(|b| b.with_max_session(Duration::ZERO)),
        Err(E::InvalidDuration)
    );
    assert_eq!(
        build(|b| b.with_leeway(Duration::from_secs(61))),
        Err(E::LeewayTooLarge)
    );
    assert_eq!(build(|b| b.with_leeway(Duration::from_secs(60))), Ok(()));
    assert_eq!(build(|b| b.with_max_token_bytes(10)), Err(E::InvalidValue));
    assert_eq!(
        build(|b| b.with_max_token_bytes(usize::MAX)),
        Err(E::InvalidValue)
    );
    assert_eq!(
        build(|b| b.with_single_flight_capacity(0)),
        Err(E::InvalidValue)
    );
    assert_eq!(build(|b| b.with_issuer("")), Err(E::InvalidValue));
    assert_eq!(build(|b| b.with_audience("a\nb")), Err(E::InvalidValue));
    assert_eq!(build(|b| b.with_required_typ("")), Err(E::InvalidValue));
}

#[test]
fn a_session_cap_longer_than_a_browser_keeps_a_cookie_is_refused() {
    let day = Duration::from_secs(86_400);
    assert_eq!(build(|b| b.with_max_session(400 * day)), Ok(()));
    assert_eq!(
        build(|b| b.with_max_session(401 * day)),
        Err(E::InvalidDuration)
    );
    let error = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_max_session(Duration::from_secs(u64::MAX / 4))
        .build()
        .unwrap_err();
    assert!(error.detail().unwrap().contains("with_max_session"));
}

#[test]
fn token_channels_are_validated() {
    assert_eq!(
        BearerHeader::new()
            .with_response_header("Refresh")
            .unwrap_err()
            .kind(),
        E::InvalidHeaderName
    );
    assert_eq!(
        BearerHeader::new()
            .with_response_header("Set-Cookie")
            .unwrap_err()
            .kind(),
        E::InvalidHeaderName
    );
    assert_eq!(
        HeaderSource::new("x token").unwrap_err().kind(),
        E::InvalidHeaderName
    );
    assert_eq!(CookieSource::new("").unwrap_err().kind(), E::InvalidCookie);
    assert_eq!(
        CookieSource::new("a=b").unwrap_err().kind(),
        E::InvalidCookie
    );
}

#[test]
fn keys_are_validated_and_paired() {
    assert_eq!(Key::hs256(b"short").unwrap_err().kind(), E::WeakSecret);
    assert_eq!(
        Key::from_pem(Algorithm::ES256, RSA_PRIVATE)
            .unwrap_err()
            .kind(),
        E::InvalidKey
    );
    assert_eq!(
        Key::from_pem(Algorithm::ES384, ES256_PRIVATE)
            .unwrap_err()
            .kind(),
        E::InvalidKey
    );
    assert_eq!(
        Key::from_pem(Algorithm::EdDSA, ES256_PRIVATE)
            .unwrap_err()
            .kind(),
        E::InvalidKey
    );
    assert!(Key::from_pem(Algorithm::ES384, ES384_PRIVATE).is_ok());
    assert!(Key::from_pem(Algorithm::PS256, RSA_PRIVATE).is_ok());
    assert!(Key::public_pem(Algorithm::ES256, ES256_PUBLIC).is_ok());
    assert!(Key::public_pem(Algorithm::EdDSA, ED25519_PUBLIC).is_ok());
    assert!(Key::public_pem(Algorithm::RS256, RSA_PUBLIC).is_ok());
    // A private key with somebody else's public key.
    let mismatched = Key::new(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(ES256_OTHER_PRIVATE.as_bytes()).unwrap(),
        DecodingKey::from_ec_pem(ES256_PUBLIC.as_bytes()).unwrap(),
    );
    assert_eq!(mismatched.unwrap_err().kind(), E::KeyMismatch);
    // A key that cannot sign cannot be the active key.
    let public = Key::public_pem(Algorithm::ES256, ES256_PUBLIC).unwrap();
    assert!(!public.can_sign());
    assert_eq!(
        SlidingJwtLayer::<_, Claimset>::builder(public.clone())
            .build()
            .unwrap_err()
            .kind(),
        E::NotASigningKey
    );
    assert_eq!(KeyRing::new(public).unwrap_err().kind(), E::NotASigningKey);
}

#[test]
fn verification_only_keys_verify_tokens_signed_elsewhere() {
    // An auth server signs; this service only verifies with the public key.
    let signer = SlidingJwtLayer::<_, Claimset>::builder(es256())
        .with_clock(clock())
        .build()
        .unwrap();
    let token = signer.issuer().issue(user("alice", "admin")).unwrap();
    let public = Key::public_pem(Algorithm::ES256, ES256_PUBLIC).unwrap();
    let ring = KeyRing::new(hs256().with_kid("local").unwrap())
        .unwrap()
        .with_verification_key(public)
        .unwrap();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(ring)
        .with_clock(clock())
        .build()
        .unwrap();
    let app = app(&layer);
    let response = futures_lite_block_on(send(&app, get(token.token())));
    assert_eq!(response.status(), http::StatusCode::OK);
}

fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn errors_name_the_problem_but_never_the_secret() {
    let secret = "hunter2-hunter2-hunter2-hunter2";
    let error = Key::hs256(&secret[..20]).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("hmac secret is shorter"), "{text}");
    assert!(!text.contains("hunter2"));
    let error = Key::from_pem(
        Algorithm::ES256,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
    )
    .unwrap_err();
    assert!(!format!("{error} {error:?}").contains("c2VjcmV0"));
    assert!(
        std::error::Error::source(&error).is_some(),
        "the underlying cause is kept"
    );
}

#[test]
fn a_configuration_that_could_never_renew_is_refused_with_the_fix() {
    use tower_sliding_jwt::{RenewWindow, Throttle};
    let secs = Duration::from_secs;
    // "Set a short ttl to see a renewal": the default throttle (60 s) outlives it.
    let error = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_ttl(secs(30))
        .with_renew_window(RenewWindow::absolute(secs(20)).unwrap())
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), E::NeverRenews);
    let detail = error.detail().unwrap();
    assert!(
        detail.contains("ttl 30 s") && detail.contains("throttle 60 s"),
        "{detail}"
    );
    assert!(detail.contains("with_throttle"), "names a fix: {detail}");
    assert_eq!(build(|b| b.with_ttl(secs(60))), Err(E::NeverRenews));
    // A session cap that leaves no room beyond the first token.
    let error = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_ttl(secs(3600))
        .with_max_session(secs(3600))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), E::NeverRenews);
    assert!(error.detail().unwrap().contains("with_max_session"));
    // The same short ttl with a throttle that fits renews.
    let clock = tower_sliding_jwt::ManualClock::new(T0);
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .with_ttl(secs(30))
        .with_renew_window(RenewWindow::absolute(secs(20)).unwrap())
        .with_throttle(Throttle::new(secs(5)).unwrap())
        .build()
        .unwrap();
    let login = layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(secs(15));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let response = runtime.block_on(send(&app(&layer), get(login.token())));
    assert!(renewed(&response).is_some(), "a built layer can renew");
}
