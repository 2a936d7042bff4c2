//! The canonical identity of a token (rule 8): a byte-different copy of a
//! token — an ECDSA twin `(r, n − s)` — is the same token for the single
//! flight and for `renew_with`'s retirement; and a token the layer cannot
//! tie to a session (no `sid`) is never renewed (rule 3).

mod common;

use common::*;
use http::StatusCode;
use tower::{Layer, service_fn};
use tower_sliding_jwt::{Key, RejectionKind, SlidingJwtLayer};

/// The order of P-256's base point, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// What anyone holding an ES256 token can make of it without any key: the
/// same header and claims, the signature's `s` replaced by `n − s`.
fn twin(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(signature.len(), 64);
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_ORDER[i]) - i16::from(signature[32 + i]) - borrow;
        signature[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn es256_layer(clock: &tower_sliding_jwt::ManualClock) -> SlidingJwtLayer<Key, Claimset> {
    SlidingJwtLayer::builder(es256())
        .with_clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_ecdsa_twin_is_accepted_and_gets_the_same_replacement_as_its_original() {
    let clock = clock();
    let layer = es256_layer(&clock);
    let app = app(&layer);
    let login = layer.issuer().issue(user("alice", "admin")).unwrap();
    let copy = twin(login.token());
    assert_ne!(copy, login.token());
    // The backends accept both signatures: the twin verifies.
    assert_eq!(send(&app, get(&copy)).await.status(), StatusCode::OK);

    clock.advance(minutes(45));
    let from_original = renewed(&send(&app, get(login.token())).await).expect("renewed");
    let from_twin = renewed(&send(&app, get(&copy)).await).expect("renewed");
    assert_eq!(
        from_twin, from_original,
        "one replacement per token, whatever its bytes"
    );
    // And the other way round, on a fresh layer.
    let layer = es256_layer(&clock);
    let app = common::app(&layer);
    let login = layer.issuer().issue(user("bob", "user")).unwrap();
    clock.advance(minutes(45));
    let from_twin = renewed(&send(&app, get(&twin(login.token()))).await).expect("renewed");
    let from_original = renewed(&send(&app, get(login.token())).await).expect("renewed");
    assert_eq!(from_original, from_twin);
}

#[tokio::test]
async fn renew_with_on_a_token_retires_what_its_twin_renewed_into_and_the_other_way_round() {
    for demote_the_twin in [false, true] {
        let clock = clock();
        let layer = es256_layer(&clock);
        let app = layer.layer(service_fn(demoting));
        let admin = layer.issuer().issue(user("alice", "admin")).unwrap();
        let copy = twin(admin.token());
        let (renewing, demoting) = if demote_the_twin {
            (admin.token(), copy.as_str())
        } else {
            (copy.as_str(), admin.token())
        };
        clock.advance(minutes(45));
        // The user being demoted renews one copy first, with the old role...
        let kept = renewed(&send(&app, get(renewing)).await).expect("renewed");
        assert_eq!(payload(&kept)["role"], "admin");
        // ...then the demotion runs on the other copy.
        let demoted = renewed(&send(&app, demote(demoting)).await).expect("renew_with's token");
        assert_eq!(payload(&demoted)["role"], "user");
        // The replacement obtained with the other copy is never served with
        // the old role again: its holder is served as the demoted token and
        // gets it...
        let response = send(&common::app(&layer), get(&kept)).await;
        assert_eq!(response.status(), StatusCode::OK, "{demote_the_twin}");
        let seen: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(seen["role"], "user", "{demote_the_twin}");
        assert_eq!(renewed(&response).as_deref(), Some(demoted.as_str()));
        // ...and every copy of the old token is retired.
        for old in [admin.token(), copy.as_str()] {
            let response = send(&app, get(old)).await;
            assert_eq!(
                rejection(&response),
                Some(RejectionKind::Revoked),
                "{demote_the_twin}"
            );
        }
        assert_eq!(send(&app, get(&demoted)).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn hmac_rsa_and_eddsa_tokens_keep_one_replacement_each() {
    for key in [hs256(), rs256(), eddsa()] {
        let clock = clock();
        let layer = SlidingJwtLayer::<_, Claimset>::builder(key)
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let app = app(&layer);
        let a = layer.issuer().issue(user("alice", "admin")).unwrap();
        let b = layer.issuer().issue(user("alice", "admin")).unwrap();
        clock.advance(minutes(45));
        let first = renewed(&send(&app, get(a.token())).await).expect("renewed");
        assert_eq!(
            renewed(&send(&app, get(a.token())).await),
            Some(first.clone())
        );
        let other = renewed(&send(&app, get(b.token())).await).expect("renewed");
        assert_ne!(other, first, "two sessions, two replacements");
    }
}

#[tokio::test]
async fn a_token_without_sid_is_served_but_never_renewed() {
    let clock = clock();
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let app = layer.layer(service_fn(demoting));
    // A foreign issuer's token on the same key: everything but a `sid`.
    let now = T0;
    let foreign = forge_hs256(&format!(
        r#"{{"sub":"alice","role":"admin","iat":{now},"exp":{},"auth_time":{now},"jti":"j1"}}"#,
        now + 3600
    ));
    clock.advance(minutes(45));
    let response = send(&app, get(&foreign)).await;
    assert_eq!(response.status(), StatusCode::OK, "verified and served");
    assert_eq!(
        renewed(&response),
        None,
        "a logout could not catch its replacement"
    );
    let response = send(&app, demote(&foreign)).await;
    assert_eq!(renewed(&response), None, "renew_with neither");
    // The same token with a `sid` renews.
    let with_sid = forge_hs256(&format!(
        r#"{{"sub":"alice","role":"admin","iat":{now},"exp":{},"auth_time":{now},"jti":"j2","sid":"s"}}"#,
        now + 3600
    ));
    assert!(renewed(&send(&app, get(&with_sid)).await).is_some());
}
