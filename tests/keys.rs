//! Keys: the formats tools print (PKCS#8, SEC1 and PKCS#1, as PEM or DER),
//! what a refused key says about itself, and HMAC secrets too short to use
//! however the key is built.

mod common;

use common::*;
use tower_sliding_jwt::{
    Algorithm, ConfigErrorKind, DecodingKey, EncodingKey, Key, RejectionKind, SlidingJwtLayer,
    StandardClaims,
};

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

// ---- HMAC secrets: every constructor enforces the minimum length ----------

#[tokio::test]
async fn an_empty_hmac_key_built_any_way_is_refused_so_attacker_tokens_never_verify() {
    let clock = clock();
    let attacker = forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims_json(T0, T0 + 600, T0),
        &EncodingKey::from_secret(b""),
        Algorithm::HS256,
    );
    let new = Key::new(
        Algorithm::HS256,
        EncodingKey::from_secret(b""),
        DecodingKey::from_secret(b""),
    );
    assert_eq!(
        new.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::WeakSecret
    );
    let verifying = Key::verifying(Algorithm::HS256, DecodingKey::from_secret(b"short"));
    assert_eq!(
        verifying.unwrap_err().kind(),
        tower_sliding_jwt::ConfigErrorKind::WeakSecret
    );
    // The same forged token against a properly keyed layer: refused.
    let layer = SlidingJwtLayer::<_, Claimset>::builder(hs256())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let response = send(&app(&layer), get(&attacker)).await;
    assert_eq!(rejection(&response), Some(RejectionKind::InvalidSignature));
}

// ---- Key formats: PEM and DER, as tools print them ------------------------

/// Signs with `signer`, verifies with a layer built on `verifier`.
async fn signs_for(alg: Algorithm, signer: Key, verifier: Key) {
    let signing = SlidingJwtLayer::<_, StandardClaims>::builder(signer)
        .build()
        .unwrap();
    let verifying = SlidingJwtLayer::<_, StandardClaims>::builder(verifier)
        .build()
        .unwrap();
    let issued = signing
        .issuer()
        .issue(StandardClaims::new("alice", Default::default()))
        .unwrap();
    let claims = verifying.issuer().verify(issued.token()).await;
    assert!(claims.is_ok(), "{alg:?}: {claims:?}");
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_are_read() {
    for (alg, sec1, pkcs8) in [
        (Algorithm::ES256, "es256-sec1.pem", "es256-private.pem"),
        (Algorithm::ES384, "es384-sec1.pem", "es384-private.pem"),
        (Algorithm::RS256, "rsa-pkcs1.pem", "rsa-private.pem"),
        (Algorithm::PS256, "rsa-pkcs1.pem", "rsa-private.pem"),
    ] {
        let from_legacy = Key::from_pem(alg, read(sec1)).unwrap();
        let from_pkcs8 = Key::from_pem(alg, read(pkcs8)).unwrap();
        // The same key pair: each verifies what the other signs.
        signs_for(alg, from_legacy.clone(), from_pkcs8.clone()).await;
        signs_for(alg, from_pkcs8, from_legacy).await;
    }
}

#[tokio::test]
async fn keys_printed_by_the_openssl_binary_are_read() {
    let dir = std::env::temp_dir().join(format!("tsj-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !openssl(&["version"]) {
        eprintln!("no openssl binary: skipped");
        return;
    }
    let cases = [
        (
            Algorithm::ES256,
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "es256.pem",
            ],
            "es256.pem",
        ),
        (
            Algorithm::ES384,
            vec![
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "es384.pem",
            ],
            "es384.pem",
        ),
        (
            Algorithm::RS256,
            vec!["genrsa", "-traditional", "-out", "rsa.pem", "2048"],
            "rsa.pem",
        ),
    ];
    for (alg, args, file) in cases {
        assert!(openssl(&args), "openssl {args:?}");
        let pem = std::fs::read_to_string(dir.join(file)).unwrap();
        let key = Key::from_pem(alg, &pem).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        signs_for(alg, key.clone(), key).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn der_keys_in_the_other_forms_are_read_too() {
    use base64::Engine as _;
    let der = |pem: &str, label: &str| {
        let body: String = pem
            .split(&format!("-----BEGIN {label}-----"))
            .nth(1)
            .unwrap()
            .split("-----END")
            .next()
            .unwrap()
            .split_ascii_whitespace()
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let sec1 = der(&read("es256-sec1.pem"), "EC PRIVATE KEY");
    let pkcs8_rsa = der(&read("rsa-private.pem"), "PRIVATE KEY");
    let es = Key::from_der(Algorithm::ES256, &sec1).unwrap();
    signs_for(
        Algorithm::ES256,
        es,
        Key::from_pem(Algorithm::ES256, read("es256-private.pem")).unwrap(),
    )
    .await;
    let rs = Key::from_der(Algorithm::RS256, &pkcs8_rsa).unwrap();
    signs_for(
        Algorithm::RS256,
        rs,
        Key::from_pem(Algorithm::RS256, read("rsa-pkcs1.pem")).unwrap(),
    )
    .await;
    assert!(Key::from_der(Algorithm::ES384, &sec1).is_err());
}

// ---- A refused key names the format found and the fix ---------------------

#[test]
fn a_refused_key_names_itself_the_format_found_and_the_fix() {
    let detail = |alg, pem: &str| {
        let error = Key::from_pem(alg, pem).unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::InvalidKey);
        let detail = error.detail().expect("a detail").to_owned();
        assert!(error.to_string().ends_with(&detail), "{error}");
        detail
    };
    let block = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");

    assert_eq!(
        detail(Algorithm::ES256, &read("es384-sec1.pem")),
        "ES256 private key: found a SEC1 \"EC PRIVATE KEY\" on P-384; ES256 needs P-256"
    );
    assert_eq!(
        detail(Algorithm::ES384, &read("es256-private.pem")),
        "ES384 private key: the PKCS#8 \"PRIVATE KEY\" is an EC key on P-256; ES384 needs P-384"
    );
    assert_eq!(
        detail(Algorithm::ES256, &read("rsa-pkcs1.pem")),
        "ES256 private key: found a PKCS#1 \"RSA PRIVATE KEY\"; ES256 needs an EC private key on P-256"
    );
    assert_eq!(
        detail(Algorithm::RS256, &read("es256-sec1.pem")),
        "RS256 private key: found a SEC1 \"EC PRIVATE KEY\"; RS256 needs an RSA private key"
    );
    assert_eq!(
        detail(Algorithm::RS256, &read("ed25519-private.pem")),
        "RS256 private key: the PKCS#8 \"PRIVATE KEY\" holds an Ed25519 key; RS256 needs an RSA private key"
    );
    assert_eq!(
        detail(Algorithm::EdDSA, &read("es256-public.pem")),
        "EdDSA private key: found a public key (\"PUBLIC KEY\"); signing needs the private key (use Key::public_pem for a verification-only key)"
    );
    let encrypted = detail(Algorithm::ES256, &block("ENCRYPTED PRIVATE KEY"));
    assert!(
        encrypted.contains("openssl pkcs8 -in key.pem -out key.pkcs8.pem"),
        "{encrypted}"
    );
    let unknown = detail(Algorithm::ES256, &block("SOMETHING ELSE"));
    assert!(
        unknown.contains("openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem"),
        "{unknown}"
    );
    assert!(
        !unknown.contains("SOMETHING"),
        "input is not echoed: {unknown}"
    );
    assert!(detail(Algorithm::ES256, &block("CERTIFICATE")).contains("holds no private key"));
    assert!(detail(Algorithm::ES256, "not a pem").contains("no PEM private key block"));
    assert!(detail(Algorithm::HS256, "x").contains("Key::hmac"));
    // Public keys say what is wrong too.
    let public = |alg, pem: &str| {
        Key::public_pem(alg, pem)
            .unwrap_err()
            .detail()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        public(Algorithm::RS256, &read("es256-public.pem")),
        "RS256 public key: the \"PUBLIC KEY\" does not hold an RSA public key"
    );
    assert!(public(Algorithm::ES256, &read("es256-sec1.pem")).contains("use Key::from_pem"));
    // A bundle: the private key is found after a certificate.
    let bundle = format!("{}{}", block("CERTIFICATE"), read("es256-private.pem"));
    assert!(Key::from_pem(Algorithm::ES256, bundle).is_ok());
    // A SEC1 key whose body is damaged.
    let damaged = read("es256-sec1.pem").replace("MHcCAQEE", "MHcCAQIE");
    assert!(Key::from_pem(Algorithm::ES256, damaged).is_err());
}
