//! DPoP proofs as a client (or an attacker) sends them: arbitrary bytes
//! checked as a proof, and as the URL a proof names. Never a panic, never
//! unbounded work; a URL's normal form is its own normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tower_sliding_jwt::fuzzing::dpop_proof(text);
    }
});
