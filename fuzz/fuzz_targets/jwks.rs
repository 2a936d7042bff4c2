//! A JWKS document as a hostile or broken key server may send it: never a
//! panic; whatever is accepted holds public keys only and publishes back to
//! the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_sliding_jwt::{KeyRing, Keys};

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = KeyRing::from_jwks(data) else {
        return;
    };
    assert!(!ring.keys().is_empty(), "an accepted document holds a key");
    assert!(ring.signing_key().is_none(), "a JWKS never yields a signing key");
    for key in ring.keys() {
        assert!(!key.can_sign());
        assert!(key.to_jwk().is_some(), "only public, publishable keys");
    }
    // What it publishes reads back as the same keys.
    let again = KeyRing::from_jwks(ring.jwks().to_json()).expect("its own JWKS reads back");
    assert_eq!(again.keys().len(), ring.keys().len());
});
