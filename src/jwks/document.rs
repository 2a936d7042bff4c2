//! JWKs and JWK sets (RFC 7517): the public halves this crate publishes, and
//! the key sets it reads.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::keys::{Key, alg_name};
use crate::log::event;

/// The most keys read from one JWKS document; the rest are skipped.
pub(crate) const MAX_KEYS: usize = 100;

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

    fn kty(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "EC",
            Self::Okp { .. } => "OKP",
            Self::Rsa { .. } => "RSA",
        }
    }
}

/// The public half of one asymmetric key, as published: `kty`, `use: "sig"`,
/// `alg`, `kid` (when the key has one) and the key's parameters (`crv`, `x`,
/// `y` for EC and OKP; `n`, `e` for RSA). Get one from [`Key::to_jwk`].
///
/// There is no way to build a JWK of an HMAC key: `oct` keys are never
/// published.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    alg: Algorithm,
    params: Arc<PublicParams>,
}

impl Jwk {
    pub(crate) fn new(kid: Option<String>, alg: Algorithm, params: Arc<PublicParams>) -> Self {
        Self { kid, alg, params }
    }

    /// The key id, if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key type: `EC`, `OKP` or `RSA` (never `oct`).
    pub fn key_type(&self) -> &'static str {
        self.params.kty()
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.key_type())
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Serialize for Jwk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            kty: &'static str,
            #[serde(rename = "use")]
            use_: &'static str,
            alg: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            crv: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            x: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            y: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            n: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            e: Option<&'a str>,
        }
        let mut wire = Wire {
            kty: self.params.kty(),
            use_: "sig",
            alg: alg_name(self.alg),
            kid: self.kid.as_deref(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match &*self.params {
            PublicParams::Ec { crv, x, y } => {
                wire.crv = Some(crv);
                wire.x = Some(x);
                wire.y = Some(y);
            }
            PublicParams::Okp { x } => {
                wire.crv = Some("Ed25519");
                wire.x = Some(x);
            }
            PublicParams::Rsa { n, e } => {
                wire.n = Some(n);
                wire.e = Some(e);
            }
        }
        wire.serialize(serializer)
    }
}

/// A JWK set (RFC 7517 §5): `{"keys": [...]}` of public halves only.
///
/// Built by [`Keys::jwks`](crate::Keys::jwks) from every asymmetric
/// verification key, active and retired; HMAC keys are left out, so a key set
/// of only HMAC keys gives an empty set. Serve it with
/// [`JwksService`](crate::JwksService).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// The public halves of `keys` (HMAC keys are left out).
    pub fn from_keys(keys: &[Key]) -> Self {
        Self {
            keys: keys.iter().filter_map(Key::to_jwk).collect(),
        }
    }

    /// The published keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Whether there is no key to publish.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The document as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings and fixed names cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
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
