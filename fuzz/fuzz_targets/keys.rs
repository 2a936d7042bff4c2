//! A user's key file in PEM or DER, for every algorithm: never a panic; a
//! refusal is a `ConfigError` whose detail names the key, never its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_sliding_jwt::{Algorithm, Key};

const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::HS256,
    Algorithm::HS512,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let alg = ALGORITHMS[usize::from(selector) % ALGORITHMS.len()];
    for result in [
        Key::from_pem(alg, input),
        Key::from_der(alg, input),
        Key::public_pem(alg, input),
    ] {
        match result {
            Ok(key) => assert_eq!(key.algorithm(), alg),
            Err(error) => {
                let shown = format!("{error} {error:?} {}", error.detail().unwrap_or_default());
                // Key material is base64 (PEM lines are 64 characters): no run
                // of 32 or more base64 characters of the input is ever repeated
                // (shorter runs are names an error may carry, such as
                // `InvalidKeyFormat`).
                for run in input
                    .split(|b| !(b.is_ascii_alphanumeric() || b"+/=".contains(b)))
                    .filter(|run| run.len() >= 32)
                {
                    assert!(
                        !shown.as_bytes().windows(run.len()).any(|w| w == run),
                        "an error repeats the key's bytes"
                    );
                }
            }
        }
    }
});
