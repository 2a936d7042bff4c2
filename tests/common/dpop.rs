//! What a store shared by a cluster must do for DPoP: a proof used on one
//! instance is refused by every other, and a nonce one instance gives is
//! accepted by all (they share the nonce secret, not state).
#![allow(dead_code, unreachable_pub)]

use http::{Request, StatusCode};
use tower_sliding_jwt::dpop::{Dpop, DpopKey};
use tower_sliding_jwt::store::RevocationStore;
use tower_sliding_jwt::{IssueErrorKind, Key, ManualClock, RejectionKind, SlidingJwtLayer};

use super::{Claimset, SECRET, app, hs256, rejection, send, user};

type Layer = SlidingJwtLayer<Key, Claimset>;

/// An instance on `store` taking DPoP with nonces derived from the test secret.
pub fn instance(store: impl RevocationStore, clock: &ManualClock) -> Layer {
    SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store)
        .with_dpop(
            Dpop::allowed()
                .with_nonce_secret(SECRET)
                .with_required_nonce(true),
        )
        .build()
        .unwrap()
}

/// `POST /login` on `api.test` carrying the DPoP `proof`.
pub fn login_parts(proof: &str) -> http::request::Parts {
    Request::post("/login")
        .header("host", "api.test")
        .header("dpop", proof)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// `a` and `b` are two instances on one shared store.
pub async fn proofs_and_nonces_are_shared(a: &Layer, b: &Layer, now: i64, what: &str) {
    let key = DpopKey::generate().unwrap();
    let nonce = a.issuer().dpop_nonce().unwrap();
    let nonce = nonce.to_str().unwrap().to_owned();
    let proof = key
        .proof("POST", "http://api.test/login", None, Some(&nonce), now)
        .unwrap();
    // A's nonce is good at B; the login proof, once used, is good nowhere.
    let issued = b
        .issuer()
        .login(&login_parts(&proof), user("alice", "user"))
        .await
        .unwrap();
    let replayed = a
        .issuer()
        .login(&login_parts(&proof), user("alice", "user"))
        .await;
    assert_eq!(
        replayed.unwrap_err().kind(),
        IssueErrorKind::InvalidDpopProof,
        "{what}: a login proof replayed on another instance"
    );
    let token = issued.token();
    let proof = key
        .proof("GET", "http://api.test/", Some(token), Some(&nonce), now)
        .unwrap();
    let request = || {
        Request::get("/")
            .header("host", "api.test")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", &proof)
            .body(())
            .unwrap()
    };
    assert_eq!(
        send(&app(a), request()).await.status(),
        StatusCode::OK,
        "{what}"
    );
    let replay = send(&app(b), request()).await;
    assert_eq!(
        rejection(&replay),
        Some(RejectionKind::InvalidDpopProof),
        "{what}: a proof replayed on another instance"
    );
}
