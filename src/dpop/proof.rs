//! One DPoP proof checked as RFC 9449 §4.3 says: sizes first, then the
//! header (`typ`, an allowed asymmetric `alg`, a public `jwk` of the
//! algorithm's kind and nothing else naming a key), the claims (`htm`,
//! `htu`, `iat`, `ath`, `jti`), and the signature by the `jwk`. Nothing of
//! the proof is ever logged or put into an error.

use std::borrow::Cow;
use std::str::FromStr as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::htu;
use crate::keys::PublicParams;
use crate::token::jws;

/// The largest proof read (an RSA-4096 key and signature fit in half).
pub(crate) const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The longest `jti` accepted.
pub(crate) const MAX_JTI_BYTES: usize = 256;
/// The longest `nonce` read.
const MAX_NONCE_BYTES: usize = 256;

/// What the request says a proof must match.
pub(crate) struct Expected<'a> {
    /// The request's method (`htm`).
    pub(crate) method: &'a str,
    /// The request's URL in normal form (`htu`).
    pub(crate) url: &'a str,
    /// The access token presented with the proof (`ath`); `None` at login.
    pub(crate) token: Option<&'a str>,
    pub(crate) now: i64,
    /// How old `iat` may be, and how far ahead (the leeway).
    pub(crate) max_age: i64,
    pub(crate) leeway: i64,
}

/// A proof that passed every check but the nonce and the replay cache.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The RFC 7638 thumbprint of the proof's key (base64url SHA-256).
    pub(crate) jkt: String,
    /// Names the proof in replay caches: SHA-256 of `jkt`, a dot and `jti`.
    pub(crate) id: [u8; 32],
    pub(crate) iat: i64,
    pub(crate) nonce: Option<String>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    typ: Cow<'a, str>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    jwk: Jwk<'a>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    // Anything else that names a key, or that must be understood, is refused.
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Jwk<'a> {
    #[serde(borrow)]
    kty: Cow<'a, str>,
    #[serde(default, borrow)]
    crv: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    x: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    y: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    e: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    alg: Option<Cow<'a, str>>,
    // The private members of EC, OKP and RSA keys, and a symmetric key.
    #[serde(default)]
    d: Option<IgnoredAny>,
    #[serde(default)]
    p: Option<IgnoredAny>,
    #[serde(default)]
    q: Option<IgnoredAny>,
    #[serde(default)]
    dp: Option<IgnoredAny>,
    #[serde(default)]
    dq: Option<IgnoredAny>,
    #[serde(default)]
    qi: Option<IgnoredAny>,
    #[serde(default)]
    oth: Option<IgnoredAny>,
    #[serde(default)]
    k: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    jti: Cow<'a, str>,
    #[serde(borrow)]
    htm: Cow<'a, str>,
    #[serde(borrow)]
    htu: Cow<'a, str>,
    iat: i64,
    #[serde(default, borrow)]
    ath: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    nonce: Option<Cow<'a, str>>,
}

/// The key of a proof, with its public parameters (for the thumbprint).
struct ProofKey {
    decoding: DecodingKey,
    public: PublicParams,
}

/// Checks `proof` against `expected`; `None` when any check fails.
pub(crate) fn check(
    provider: &CryptoProvider,
    algorithms: &[Algorithm],
    proof: &str,
    expected: &Expected<'_>,
) -> Option<Checked> {
    if proof.len() > MAX_PROOF_BYTES || !jws::is_compact(proof) {
        return None;
    }
    let (header_b64, payload_b64, signature_b64, signing_input) = jws::split(proof).ok()?;
    let header_json = json_object(header_b64)?;
    let header: Header<'_> = serde_json::from_slice(&header_json).ok()?;
    if !header.typ.eq_ignore_ascii_case("dpop+jwt")
        || header.crit.is_some()
        || header.jku.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
    {
        return None;
    }
    let alg = Algorithm::from_str(&header.alg).ok()?;
    if !algorithms.contains(&alg) || alg.family() == AlgorithmFamily::Hmac {
        return None;
    }
    let jwk = &header.jwk;
    // A `kid` beside the `jwk` must name that very key.
    if header.kid.is_some() && header.kid != jwk.kid {
        return None;
    }
    if jwk.alg.as_deref().is_some_and(|a| a != header.alg) {
        return None;
    }
    let key = proof_key(alg, jwk)?;

    let payload_json = json_object(payload_b64)?;
    let payload: Payload<'_> = serde_json::from_slice(&payload_json).ok()?;
    if payload.jti.is_empty() || payload.jti.len() > MAX_JTI_BYTES {
        return None;
    }
    if payload.htm != expected.method {
        return None;
    }
    if htu::normalise(&payload.htu).as_deref() != Some(expected.url) {
        return None;
    }
    let age = expected.now.saturating_sub(payload.iat);
    if age > expected.max_age || -age > expected.leeway {
        return None;
    }
    let digest = |bytes: &[u8]| (provider.key_utils.compute_digest)(bytes, ThumbprintHash::SHA256);
    if let Some(token) = expected.token {
        let ath = payload.ath.as_deref()?;
        let hash = digest(token.as_bytes()).ok()?;
        if ath != URL_SAFE_NO_PAD.encode(hash) {
            return None;
        }
    }
    if payload
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_BYTES)
    {
        return None;
    }

    let signature = jws::b64_decode(signature_b64).ok()?;
    let verifier = (provider.verifier_factory)(&alg, &key.decoding).ok()?;
    verifier.verify(signing_input.as_bytes(), &signature).ok()?;

    let jkt = URL_SAFE_NO_PAD.encode(digest(key.public.thumbprint_input().as_bytes()).ok()?);
    let mut named = Vec::with_capacity(jkt.len() + 1 + payload.jti.len());
    named.extend_from_slice(jkt.as_bytes());
    named.push(b'.');
    named.extend_from_slice(payload.jti.as_bytes());
    let id = digest(&named).ok()?.try_into().ok()?;
    Some(Checked {
        jkt,
        id,
        iat: payload.iat,
        nonce: payload.nonce.map(Cow::into_owned),
    })
}

/// The encodings of the Ed25519 points of small order (their sign bit
/// cleared), canonical or not: the identity, the points of order 2, 4 and 8,
/// and `y = p - 1`, `p`, `p + 1`.
const SMALL_ORDER: [[u8; 32]; 7] = {
    let mut points = [[0u8; 32]; 7];
    // 0 (order 4).
    // 1 (order 1, the identity).
    points[1][0] = 1;
    // Order 8.
    points[2] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    points[3] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    // p - 1 (order 2), p (order 4), p + 1 (the identity).
    let mut i = 0;
    while i < 3 {
        let mut point = [0xffu8; 32];
        point[0] = 0xec + i as u8;
        point[31] = 0x7f;
        points[4 + i] = point;
        i += 1;
    }
    points
};

/// Whether `x` encodes an Ed25519 point of small order.
fn small_order(x: &[u8]) -> bool {
    let Ok(mut point) = <[u8; 32]>::try_from(x) else {
        return true;
    };
    point[31] &= 0x7f;
    SMALL_ORDER.contains(&point)
}

/// How deep a proof's JSON may nest (a header with its `jwk` needs 2).
const MAX_DEPTH: usize = 8;

/// A base64url segment holding a JSON object nested at most [`MAX_DEPTH`]
/// deep (checked before parsing).
fn json_object(segment: &str) -> Option<Vec<u8>> {
    let json = jws::b64_decode(segment).ok()?;
    if json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut string, mut escaped) = (0usize, false, false);
    for &b in &json {
        match b {
            _ if escaped => escaped = false,
            b'\\' if string => escaped = true,
            b'"' => string = !string,
            b'{' | b'[' if !string => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
            }
            b'}' | b']' if !string => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(json)
}

/// The verifying key a `jwk` describes, for `alg` only: the family and
/// curve must match, coordinates must have their exact sizes, and no
/// private member may be present.
fn proof_key(alg: Algorithm, jwk: &Jwk<'_>) -> Option<ProofKey> {
    let private = [
        &jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi, &jwk.oth, &jwk.k,
    ];
    if private.iter().any(|member| member.is_some()) {
        return None;
    }
    fn sized<'v>(
        value: &'v Option<Cow<'_, str>>,
        bytes: std::ops::RangeInclusive<usize>,
    ) -> Option<&'v str> {
        let value = value.as_deref()?;
        let decoded = jws::b64_decode(value).ok()?;
        bytes.contains(&decoded.len()).then_some(value)
    }
    match (alg.family(), &*jwk.kty) {
        (AlgorithmFamily::Ec, "EC") => {
            let (crv, size) = match alg {
                Algorithm::ES256 => ("P-256", 32),
                Algorithm::ES384 => ("P-384", 48),
                _ => return None,
            };
            if jwk.crv.as_deref() != Some(crv) {
                return None;
            }
            let x = sized(&jwk.x, size..=size)?;
            let y = sized(&jwk.y, size..=size)?;
            Some(ProofKey {
                decoding: DecodingKey::from_ec_components(x, y).ok()?,
                public: PublicParams::Ec {
                    crv,
                    x: x.to_owned(),
                    y: y.to_owned(),
                },
            })
        }
        (AlgorithmFamily::Ed, "OKP") => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return None;
            }
            let x = sized(&jwk.x, 32..=32)?;
            // A small-order point verifies forged signatures (the backends
            // verify without the strict checks).
            if small_order(&jws::b64_decode(x).ok()?) {
                return None;
            }
            Some(ProofKey {
                decoding: DecodingKey::from_ed_components(x).ok()?,
                public: PublicParams::Okp { x: x.to_owned() },
            })
        }
        (AlgorithmFamily::Rsa, "RSA") => {
            // 2048 to 8192 bits read (the RustCrypto backend verifies up to
            // 4096), without leading zero octets (RFC 7518
            // §6.3.1, and a short key padded to pass the size); an odd
            // exponent of at least 3.
            let n = sized(&jwk.n, 256..=1024)?;
            let e = sized(&jwk.e, 1..=8)?;
            let (modulus, exponent) = (jws::b64_decode(n).ok()?, jws::b64_decode(e).ok()?);
            let odd = exponent.last().is_some_and(|last| last & 1 == 1);
            let at_least_3 =
                exponent.iter().rev().skip(1).any(|&b| b != 0) || exponent.last() >= Some(&3);
            if modulus.first() == Some(&0) || exponent.first() == Some(&0) || !odd || !at_least_3 {
                return None;
            }
            Some(ProofKey {
                decoding: DecodingKey::from_rsa_components(n, e).ok()?,
                public: PublicParams::Rsa {
                    n: n.to_owned(),
                    e: e.to_owned(),
                },
            })
        }
        _ => None,
    }
}
