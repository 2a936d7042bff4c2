//! The public half of a key as JWK parameters (there is no `oct` variant, so
//! an HMAC secret can never be published), read from the verifying key, and
//! the RFC 7638 thumbprint input.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

/// The JWK parameters of the public half of `decoding`, or `None` for HMAC
/// (and for a key whose public half cannot be read back, which then cannot
/// be published).
pub(super) fn public_params(
    provider: &CryptoProvider,
    alg: Algorithm,
    decoding: &DecodingKey,
) -> Option<PublicParams> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match (alg.family(), decoding.kind()) {
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            // An uncompressed SEC1 point: 0x04 || x || y.
            let (crv, size) = match alg {
                Algorithm::ES256 => ("P-256", 32),
                Algorithm::ES384 => ("P-384", 48),
                _ => return None,
            };
            let coordinates = point.strip_prefix(&[0x04])?;
            if coordinates.len() != 2 * size {
                return None;
            }
            let (x, y) = coordinates.split_at(size);
            Some(PublicParams::Ec {
                crv,
                x: b64(x),
                y: b64(y),
            })
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(x)) if x.len() == 32 => {
            Some(PublicParams::Okp { x: b64(x) })
        }
        (AlgorithmFamily::Rsa, kind) => {
            let (n, e) = match kind {
                DecodingKeyKind::RsaModulusExponent { n, e } => (n.clone(), e.clone()),
                DecodingKeyKind::SecretOrDer(der) => {
                    (provider.key_utils.rsa_pub_components_from_public_key)(der).ok()?
                }
            };
            // RFC 7518 §6.3.1: unsigned big-endian, no leading zero octets.
            let trim = |v: &[u8]| {
                let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                b64(&v[start..])
            };
            Some(PublicParams::Rsa {
                n: trim(&n),
                e: trim(&e),
            })
        }
        _ => None,
    }
}

/// The public half of an asymmetric key as JWK parameters (base64url).
///
/// There is no symmetric (`oct`) variant: an HMAC secret cannot be expressed
/// here, so it can never be published.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicParams {
    /// `kty: EC`, `crv: P-256` or `P-384`.
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    /// `kty: OKP`, `crv: Ed25519`.
    Okp { x: String },
    /// `kty: RSA`.
    Rsa { n: String, e: String },
}

impl PublicParams {
    /// The RFC 7638 thumbprint input: the required members in lexicographic
    /// order, no whitespace. Every value is base64url or a fixed name, so
    /// nothing needs escaping.
    pub(crate) fn thumbprint_input(&self) -> String {
        match self {
            Self::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        }
    }

    pub(super) fn kty(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "EC",
            Self::Okp { .. } => "OKP",
            Self::Rsa { .. } => "RSA",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_input_is_canonical() {
        let params = PublicParams::Rsa {
            n: "n1".into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            params.thumbprint_input(),
            r#"{"e":"AQAB","kty":"RSA","n":"n1"}"#
        );
    }
}
