//! Without a crypto backend the crate still builds, and refuses keys with a
//! clear error instead of panicking. Run with
//! `cargo test --no-default-features --test no_backend`.
#![cfg(not(any(feature = "rust_crypto", feature = "aws_lc_rs")))]

use tower_sliding_jwt::{Algorithm, ConfigErrorKind, Key};

#[test]
fn keys_report_the_missing_backend() {
    let error = Key::hs256([7u8; 32]).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::NoCryptoBackend);
    assert!(error.to_string().contains("rust_crypto"));
    let pem = include_str!("keys/es256-private.pem");
    assert_eq!(
        Key::from_pem(Algorithm::ES256, pem).unwrap_err().kind(),
        ConfigErrorKind::NoCryptoBackend
    );
}
