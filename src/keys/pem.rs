//! Reading private keys in the PEM and DER forms tools print, and saying
//! exactly what is wrong with one that cannot be used.
//!
//! jsonwebtoken reads PKCS#8 (`PRIVATE KEY`) for every family and PKCS#1
//! (`RSA PRIVATE KEY`) for RSA. This module also accepts a SEC1
//! `EC PRIVATE KEY` (what `openssl ecparam -genkey` prints, after an
//! `EC PARAMETERS` block) by wrapping it into PKCS#8, and names the format
//! it found when it refuses one. Only labels, algorithm identifiers and curve
//! names are ever described: never key material.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use sec1::{EcParameters, EcPrivateKey};

use super::alg::alg_name;
use crate::error::{ConfigError, ConfigErrorKind};

/// `id-ecPublicKey` (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `rsaEncryption` (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-RSASSA-PSS` (1.2.840.113549.1.1.10).
const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// `id-Ed25519` (1.3.101.112).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `id-Ed448` (1.3.101.113).
const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

/// Named curves by OID.
const CURVES: &[(ObjectIdentifier, &str)] = &[
    (ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"), "P-256"),
    (ObjectIdentifier::new_unwrap("1.3.132.0.34"), "P-384"),
    (ObjectIdentifier::new_unwrap("1.3.132.0.35"), "P-521"),
    (ObjectIdentifier::new_unwrap("1.3.132.0.10"), "secp256k1"),
];

/// The command that turns any OpenSSL-readable private key into PKCS#8.
pub(crate) const TO_PKCS8: &str = "openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem";

/// The curve an ECDSA algorithm signs on.
fn curve_of(alg: Algorithm) -> Option<(ObjectIdentifier, &'static str)> {
    match alg {
        Algorithm::ES256 => Some(CURVES[0]),
        Algorithm::ES384 => Some(CURVES[1]),
        _ => None,
    }
}

fn curve_name(oid: ObjectIdentifier) -> &'static str {
    CURVES
        .iter()
        .find(|(known, _)| *known == oid)
        .map_or("an unknown curve", |(_, name)| name)
}

/// What an algorithm family needs, for messages.
pub(crate) fn needs(alg: Algorithm) -> &'static str {
    match alg.family() {
        AlgorithmFamily::Rsa => "an RSA private key",
        AlgorithmFamily::Ec if alg == Algorithm::ES384 => "an EC private key on P-384",
        AlgorithmFamily::Ec => "an EC private key on P-256",
        AlgorithmFamily::Ed => "an Ed25519 private key",
        AlgorithmFamily::Hmac => "a secret",
    }
}

/// A refusal naming the key (by its algorithm), what was found and what to
/// do; never key material.
pub(crate) fn problem(alg: Algorithm, what: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(ConfigErrorKind::InvalidKey)
        .with_detail(format!("{} private key: {what}", alg_name(alg)))
}

/// One `-----BEGIN <label>-----` ... `-----END <label>-----` block.
pub(crate) struct Block<'a> {
    pub(crate) label: &'a str,
    /// The whole block, markers included (what jsonwebtoken parses).
    pub(crate) text: &'a str,
}

impl Block<'_> {
    /// The block's DER bytes. Read leniently, as OpenSSL does: any line
    /// length and any whitespace (RFC 7468's strict 64-character lines
    /// would refuse keys that tools print with 76-character lines or on one
    /// line, e.g. from an environment variable).
    fn der(&self) -> Option<Vec<u8>> {
        let begin = format!("-----BEGIN {}-----", self.label);
        let end = format!("-----END {}-----", self.label);
        let body = self.text.strip_prefix(&begin)?.strip_suffix(&end)?;
        let compact: String = body.split_ascii_whitespace().collect();
        STANDARD.decode(compact).ok()
    }
}

/// Every complete PEM block in `input`, in order.
pub(crate) fn blocks(input: &[u8]) -> Vec<Block<'_>> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body_start = label_end + 5;
        let end_marker = format!("-----END {label}-----");
        let Some(body_len) = after[body_start..].find(&end_marker) else {
            break;
        };
        let block_end = begin + 11 + body_start + body_len + end_marker.len();
        found.push(Block {
            label,
            text: &rest[begin..block_end],
        });
        rest = &rest[block_end..];
    }
    found
}

/// How a private key was given, once its format is known.
pub(crate) enum Private<'a> {
    /// PEM that jsonwebtoken reads as it is: this block's text (the whole
    /// block, its markers included).
    Pem(&'a str),
    /// DER to hand to jsonwebtoken's `from_*_der` (PKCS#8 for EC and
    /// Ed25519, PKCS#1 for RSA).
    Der(Vec<u8>),
}

/// Picks the private key block out of `input` for `alg`, converting SEC1,
/// or says what is wrong.
pub(crate) fn private_pem(alg: Algorithm, input: &[u8]) -> Result<Private<'_>, ConfigError> {
    let blocks = blocks(input);
    // `openssl ecparam -genkey` prints the curve parameters first, and a
    // bundle may hold a certificate too: take the private key if there is one.
    let Some(block) = blocks
        .iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
        .or_else(|| blocks.iter().find(|b| b.label != "EC PARAMETERS"))
    else {
        return Err(problem(
            alg,
            format_args!(
                "no PEM private key block found (expected `-----BEGIN PRIVATE KEY-----`); \
                 for DER bytes use Key::from_der"
            ),
        ));
    };
    let family = alg.family();
    let der = || {
        block.der().ok_or_else(|| {
            problem(
                alg,
                format_args!(
                    "the base64 inside the \"{}\" PEM block does not decode",
                    block.label
                ),
            )
        })
    };
    match block.label {
        "PRIVATE KEY" => {
            // What does not parse here, jsonwebtoken refuses with its own
            // error as the cause.
            if let Some(der) = block.der()
                && pkcs8_algorithm(&der).is_some()
            {
                check_pkcs8(alg, &der)?;
            }
            Ok(Private::Pem(block.text))
        }
        "EC PRIVATE KEY" if family == AlgorithmFamily::Ec => {
            Ok(Private::Der(sec1_to_pkcs8(alg, &der()?)?))
        }
        "RSA PRIVATE KEY" if family == AlgorithmFamily::Rsa => Ok(Private::Pem(block.text)),
        "EC PRIVATE KEY" => Err(problem(
            alg,
            format_args!(
                "found a SEC1 \"EC PRIVATE KEY\"; {} needs {}",
                alg_name(alg),
                needs(alg)
            ),
        )),
        "RSA PRIVATE KEY" => Err(problem(
            alg,
            format_args!(
                "found a PKCS#1 \"RSA PRIVATE KEY\"; {} needs {}",
                alg_name(alg),
                needs(alg)
            ),
        )),
        "ENCRYPTED PRIVATE KEY" => Err(problem(
            alg,
            "found an encrypted PKCS#8 \"ENCRYPTED PRIVATE KEY\"; decrypt it first: \
             `openssl pkcs8 -in key.pem -out key.pkcs8.pem`",
        )),
        "OPENSSH PRIVATE KEY" => Err(problem(
            alg,
            format_args!(
                "found an OpenSSH \"OPENSSH PRIVATE KEY\", which is not read; export the key \
                 as PKCS#8 PEM (for RSA and ECDSA keys: `ssh-keygen -p -m PKCS8 -f key`, \
                 which rewrites the file in place, then `{TO_PKCS8}`)"
            ),
        )),
        "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(problem(
            alg,
            format_args!(
                "found a public key (\"{}\"); signing needs the private key \
                 (use Key::public_pem for a verification-only key)",
                block.label
            ),
        )),
        "CERTIFICATE" => Err(problem(
            alg,
            "found a \"CERTIFICATE\", which holds no private key \
             (for a verification-only key: `openssl x509 -pubkey -noout -in cert.pem` \
             and Key::public_pem)",
        )),
        "DSA PRIVATE KEY" => Err(problem(
            alg,
            "found a DSA private key; DSA is not a JWS algorithm",
        )),
        _ => Err(problem(
            alg,
            format_args!(
                "found an unsupported PEM block (expected \"PRIVATE KEY\"; convert with `{TO_PKCS8}`)"
            ),
        )),
    }
}

/// Says why a PEM public key for `alg` was refused.
pub(crate) fn public_problem(alg: Algorithm, input: &[u8]) -> ConfigError {
    let blocks = blocks(input);
    let label = blocks
        .iter()
        .map(|b| b.label)
        .find(|&l| l != "EC PARAMETERS");
    let what = match label {
        None => "no PEM block found (expected `-----BEGIN PUBLIC KEY-----`)".to_owned(),
        Some(label @ ("PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY")) => format!(
            "found a private key (\"{label}\"); use Key::from_pem, which derives the public key \
             (or extract it: `openssl pkey -in key.pem -pubout -out public.pem`)"
        ),
        Some(label @ ("PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE")) => {
            let needs = needs(alg).replace("private", "public");
            format!("the \"{label}\" does not hold {needs}")
        }
        Some(_) => "found an unsupported PEM block (expected \"PUBLIC KEY\")".to_owned(),
    };
    ConfigError::new(ConfigErrorKind::InvalidKey)
        .with_detail(format!("{} public key: {what}", alg_name(alg)))
}

/// Turns a DER private key into the form jsonwebtoken reads for `alg`
/// (SEC1 → PKCS#8 for EC, PKCS#8 → PKCS#1 for RSA), or says what is wrong.
pub(crate) fn private_der(alg: Algorithm, der: &[u8]) -> Result<Vec<u8>, ConfigError> {
    match alg.family() {
        AlgorithmFamily::Ec if is_sec1(der) => sec1_to_pkcs8(alg, der),
        AlgorithmFamily::Rsa if pkcs8_algorithm(der).is_some() => {
            check_pkcs8(alg, der)?;
            PrivateKeyInfo::from_der(der)
                .map(|info| info.private_key.to_vec())
                .map_err(|_| problem(alg, "the PKCS#8 structure does not parse"))
        }
        _ => {
            if pkcs8_algorithm(der).is_some() {
                check_pkcs8(alg, der)?;
            }
            Ok(der.to_vec())
        }
    }
}

/// Checks that a PKCS#8 key's algorithm (and curve) suits `alg`.
fn check_pkcs8(alg: Algorithm, der: &[u8]) -> Result<(), ConfigError> {
    let Some((oid, params)) = pkcs8_algorithm(der) else {
        return Err(problem(alg, "the PKCS#8 \"PRIVATE KEY\" does not parse"));
    };
    let (found, family) = match oid {
        RSA_ENCRYPTION => ("an RSA key", Some(AlgorithmFamily::Rsa)),
        // jsonwebtoken reads only `rsaEncryption` keys (which sign RS* and PS*).
        RSA_PSS => ("an RSASSA-PSS-restricted RSA key", None),
        EC_PUBLIC_KEY => ("an EC key", Some(AlgorithmFamily::Ec)),
        ED25519 => ("an Ed25519 key", Some(AlgorithmFamily::Ed)),
        ED448 => ("an Ed448 key", None),
        _ => ("a key of an unknown algorithm", None),
    };
    if family != Some(alg.family()) {
        return Err(problem(
            alg,
            format_args!(
                "the PKCS#8 \"PRIVATE KEY\" holds {found}; {} needs {}",
                alg_name(alg),
                needs(alg)
            ),
        ));
    }
    if let Some((curve, name)) = curve_of(alg)
        && params.is_some_and(|p| p != curve)
    {
        return Err(problem(
            alg,
            format_args!(
                "the PKCS#8 \"PRIVATE KEY\" is an EC key on {}; {} needs {name}",
                params.map_or("an unknown curve", curve_name),
                alg_name(alg)
            ),
        ));
    }
    Ok(())
}

/// A SEC1 `ECPrivateKey` wrapped into a PKCS#8 `PrivateKeyInfo` (RFC 5915,
/// RFC 5958), after checking its curve suits `alg`.
fn sec1_to_pkcs8(alg: Algorithm, sec1: &[u8]) -> Result<Vec<u8>, ConfigError> {
    let Some((expected, name)) = curve_of(alg) else {
        return Err(problem(
            alg,
            format_args!(
                "found a SEC1 \"EC PRIVATE KEY\"; {} needs {}",
                alg_name(alg),
                needs(alg)
            ),
        ));
    };
    let Ok(key) = EcPrivateKey::from_der(sec1) else {
        return Err(problem(alg, "the SEC1 \"EC PRIVATE KEY\" does not parse"));
    };
    if let Some(EcParameters::NamedCurve(curve)) = key.parameters
        && curve != expected
    {
        return Err(problem(
            alg,
            format_args!(
                "found a SEC1 \"EC PRIVATE KEY\" on {}; {} needs {name}",
                curve_name(curve),
                alg_name(alg)
            ),
        ));
    }
    let curve = expected
        .to_der()
        .map_err(|_| problem(alg, "the curve could not be encoded"))?;
    let parameters =
        AnyRef::from_der(&curve).map_err(|_| problem(alg, "the curve could not be encoded"))?;
    let info = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some(parameters),
        },
        private_key: sec1,
        public_key: None,
    };
    info.to_der()
        .map_err(|_| problem(alg, "the SEC1 \"EC PRIVATE KEY\" could not be rewrapped"))
}

/// Whether `der` is a SEC1 `ECPrivateKey`.
fn is_sec1(der: &[u8]) -> bool {
    EcPrivateKey::from_der(der).is_ok()
}

/// A PKCS#8 key's algorithm OID and, for EC, its curve OID.
fn pkcs8_algorithm(der: &[u8]) -> Option<(ObjectIdentifier, Option<ObjectIdentifier>)> {
    let info = PrivateKeyInfo::from_der(der).ok()?;
    let curve = info
        .algorithm
        .parameters
        .and_then(|params| params.decode_as::<ObjectIdentifier>().ok());
    Some((info.algorithm.oid, curve))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ES256_SEC1: &str = include_str!("../../tests/keys/es256-sec1.pem");
    const ES384_SEC1: &str = include_str!("../../tests/keys/es384-sec1.pem");
    const ES256_PKCS8: &str = include_str!("../../tests/keys/es256-private.pem");
    const RSA_PKCS8: &str = include_str!("../../tests/keys/rsa-private.pem");

    fn der_of(pem: &str, label: &str) -> Vec<u8> {
        let blocks = blocks(pem.as_bytes());
        let block = blocks.iter().find(|b| b.label == label).expect(label);
        block.der().expect("base64")
    }

    fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
        PrivateKeyInfo::from_der(der)
            .ok()
            .map(|info| info.private_key)
    }

    fn detail(error: ConfigError) -> String {
        error.detail().unwrap_or_default().to_owned()
    }

    #[test]
    fn blocks_are_found_in_order_and_an_unterminated_one_is_dropped() {
        let labels: Vec<_> = blocks(ES256_SEC1.as_bytes())
            .iter()
            .map(|b| b.label)
            .collect();
        assert_eq!(labels, ["EC PARAMETERS", "EC PRIVATE KEY"]);
        let cut = &ES256_PKCS8[..ES256_PKCS8.len() - 10];
        assert!(blocks(cut.as_bytes()).is_empty());
        assert!(blocks(b"\xff\xfe-----BEGIN PRIVATE KEY-----").is_empty());
    }

    #[test]
    fn a_body_on_one_line_or_on_long_lines_is_read_too() {
        let sec1 = der_of(ES256_SEC1, "EC PRIVATE KEY");
        let body = STANDARD.encode(&sec1);
        for wrapped in [
            body.clone(),
            body.as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n"),
        ] {
            let pem = format!(
                "-----BEGIN EC PRIVATE KEY-----\n{wrapped}\n-----END EC PRIVATE KEY-----\n"
            );
            assert!(
                matches!(
                    private_pem(Algorithm::ES256, pem.as_bytes()),
                    Ok(Private::Der(_))
                ),
                "{wrapped:.20}"
            );
        }
    }

    #[test]
    fn sec1_becomes_pkcs8_of_the_same_curve() {
        let Private::Der(pkcs8) = private_pem(Algorithm::ES256, ES256_SEC1.as_bytes()).unwrap()
        else {
            panic!("SEC1 is converted to DER");
        };
        assert_eq!(
            pkcs8_algorithm(&pkcs8),
            Some((EC_PUBLIC_KEY, Some(CURVES[0].0)))
        );
        // The DER form converts the same way.
        let sec1 = der_of(ES256_SEC1, "EC PRIVATE KEY");
        assert!(is_sec1(&sec1));
        assert_eq!(private_der(Algorithm::ES256, &sec1).unwrap(), pkcs8);
    }

    #[test]
    fn a_key_of_the_wrong_curve_or_family_names_both() {
        let Err(error) = private_pem(Algorithm::ES256, ES384_SEC1.as_bytes()) else {
            panic!("a P-384 key is refused for ES256");
        };
        assert!(detail(error).contains("P-384"));
        let rsa = der_of(RSA_PKCS8, "PRIVATE KEY");
        let error = private_der(Algorithm::ES256, &rsa).unwrap_err();
        let detail = detail(error);
        assert!(
            detail.contains("RSA") && detail.contains("ES256"),
            "{detail}"
        );
        // PKCS#8 RSA is unwrapped to PKCS#1 for jsonwebtoken.
        let pkcs1 = private_der(Algorithm::RS256, &rsa).unwrap();
        assert!(pkcs1.len() < rsa.len() && pkcs1[0] == 0x30);
    }

    #[test]
    fn no_truncation_of_a_key_parses_as_one() {
        let sec1 = der_of(ES256_SEC1, "EC PRIVATE KEY");
        let pkcs8 = der_of(RSA_PKCS8, "PRIVATE KEY");
        assert!(is_sec1(&sec1) && pkcs8_private_key(&pkcs8).is_some());
        for len in 0..sec1.len() {
            assert!(!is_sec1(&sec1[..len]), "SEC1 cut at {len}");
            let _ = private_der(Algorithm::ES256, &sec1[..len]);
        }
        for len in 0..pkcs8.len() {
            let cut = &pkcs8[..len];
            assert!(pkcs8_algorithm(cut).is_none(), "PKCS#8 cut at {len}");
            assert!(pkcs8_private_key(cut).is_none(), "PKCS#8 cut at {len}");
            let _ = private_der(Algorithm::RS256, cut);
        }
    }
}
