//! Reading JWK sets (RFC 7517) that other services publish: which keys are
//! usable, and the verify-only [`KeyRing`] built from them. (What this crate
//! publishes is `keys/public.rs`.)

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::keys::{Key, KeyRing};
use crate::log::event;

/// The most keys read from one JWKS document; the rest are skipped.
pub(crate) const MAX_KEYS: usize = 100;

impl KeyRing {
    /// A verify-only ring from a JWKS document (RFC 7517), such as another
    /// service's `/.well-known/jwks.json`. `oct` (HMAC) keys are never
    /// accepted; keys this crate cannot use (an unknown `kty` or curve,
    /// `use` other than `sig`, an RSA modulus under 2048 bits, a duplicate
    /// `kid`) are skipped, with the reason in the log (feature `tracing`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidJwks`] when the document is not a JWKS or
    /// holds no usable key.
    pub fn from_jwks(document: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let keys = parse(document.as_ref())
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidJwks, e))?;
        Self::verifying(keys)
    }
}

/// Why a JWKS document could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DocumentError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document")]
    NotAJwks(#[source] serde_json::Error),
    /// Every key was skipped (or there were none).
    #[error("no usable key in the JWKS document")]
    NoUsableKey,
}

/// One member of `keys`, read loosely so a key this crate cannot use is
/// skipped rather than failing the whole set.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Reads a JWKS document into verification keys. `oct` keys are never
/// accepted; keys that cannot be used are skipped with the reason in the log.
///
/// # Errors
/// [`DocumentError`] when the document is not a JWKS, or no key is usable.
// Without the `tracing` feature the events compile to nothing.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn parse(document: &[u8]) -> Result<Vec<Key>, DocumentError> {
    let set: RawSet = serde_json::from_slice(document).map_err(DocumentError::NotAJwks)?;
    let mut keys: Vec<Key> = Vec::new();
    for (index, value) in set.keys.into_iter().enumerate() {
        if index >= MAX_KEYS {
            event!(
                warn,
                skipped = index,
                "JWKS holds more than {MAX_KEYS} keys; the rest are skipped"
            );
            break;
        }
        let raw = match serde_json::from_value::<RawJwk>(value) {
            Ok(raw) => raw,
            Err(_) => {
                event!(
                    warn,
                    index,
                    reason = "not a JWK object",
                    "skipping a JWKS key"
                );
                continue;
            }
        };
        let kid = raw.kid.clone();
        match key_of(raw) {
            Ok(key) if keys.iter().any(|k| k.kid() == key.kid()) => {
                event!(warn, index, kid = ?kid, reason = "duplicate kid", "skipping a JWKS key");
            }
            Ok(key) => keys.push(key),
            Err(reason) => {
                event!(warn, index, kid = ?kid, reason, "skipping a JWKS key");
            }
        }
    }
    if keys.is_empty() {
        return Err(DocumentError::NoUsableKey);
    }
    Ok(keys)
}

/// One usable verification key, or why the JWK is skipped.
fn key_of(raw: RawJwk) -> Result<Key, &'static str> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err("key_ops does not include verify");
    }
    fn field(value: &Option<String>) -> Result<&str, &'static str> {
        value.as_deref().ok_or("missing key parameter")
    }
    let decode = |value: &str| URL_SAFE_NO_PAD.decode(value).map_err(|_| "bad base64url");
    let (alg, decoding) = match raw.kty.as_deref() {
        Some("oct") => return Err("symmetric (oct) keys are never accepted"),
        Some("EC") => {
            let (alg, size) = match raw.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let (x, y) = (field(&raw.x)?, field(&raw.y)?);
            if decode(x)?.len() != size || decode(y)?.len() != size {
                return Err("EC coordinate of the wrong length");
            }
            let decoding = DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC key")?;
            (alg, decoding)
        }
        Some("OKP") => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err("unsupported OKP curve");
            }
            let x = field(&raw.x)?;
            if decode(x)?.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            let decoding = DecodingKey::from_ed_components(x).map_err(|_| "bad Ed25519 key")?;
            (Algorithm::EdDSA, decoding)
        }
        Some("RSA") => {
            let (n, e) = (field(&raw.n)?, field(&raw.e)?);
            let modulus = decode(n)?;
            let significant = modulus.iter().skip_while(|&&b| b == 0).count();
            if significant * 8 < 2048 {
                return Err("RSA modulus under 2048 bits");
            }
            decode(e)?;
            // RS256 when `alg` is absent: the OpenID Connect default.
            let decoding = DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA key")?;
            (Algorithm::RS256, decoding)
        }
        _ => return Err("unsupported kty"),
    };
    let alg = match raw.alg.as_deref() {
        None => alg,
        Some(name) => {
            let named = name.parse::<Algorithm>().map_err(|_| "unknown alg")?;
            let fits = match alg {
                Algorithm::RS256 => matches!(
                    named,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                _ => named == alg,
            };
            if !fits {
                return Err("alg does not match the key");
            }
            named
        }
    };
    let key = Key::verifying(alg, decoding).map_err(|_| "key rejected by the crypto backend")?;
    match raw.kid {
        Some(kid) => key.with_kid(kid).map_err(|_| "invalid kid"),
        None => Ok(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oct_and_unusable_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256","kid":"h"},
            {"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc","kid":"enc"},
            "not an object"
        ]}"#;
        assert!(matches!(parse(doc), Err(DocumentError::NoUsableKey)));
        assert!(matches!(parse(b"garbage"), Err(DocumentError::NotAJwks(_))));
        assert!(matches!(
            parse(b"{\"keys\":{}}"),
            Err(DocumentError::NotAJwks(_))
        ));
        assert!(matches!(
            parse(b"{\"keys\":[]}"),
            Err(DocumentError::NoUsableKey)
        ));
    }

    #[test]
    fn rfc8037_ed25519_key_is_read() {
        // RFC 8037 appendix A.2.
        let doc = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}"#;
        let keys = parse(doc).unwrap();
        assert_eq!(keys.len(), 1, "the duplicate kid is skipped");
        assert_eq!(keys[0].algorithm(), Algorithm::EdDSA);
        assert!(!keys[0].can_sign());
        // RFC 8037 appendix A.3: the thumbprint of that key.
        assert_eq!(
            keys[0].thumbprint().unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
