//! The JWK and JWKS documents this crate publishes (RFC 7517): public halves
//! only. Reading other services' documents is `jwks/`'s business.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Serialize;

use super::alg::alg_name;
use super::key::Key;
use super::public::PublicParams;

impl Key {
    /// The public half of this key as a JWK (RFC 7517) with `kid`, `alg` and
    /// `use: "sig"`; `None` for an HMAC key, so a shared secret can never be
    /// published.
    pub fn to_jwk(&self) -> Option<Jwk> {
        let params = self.public_params()?.clone();
        Some(Jwk::new(
            self.kid().map(str::to_owned),
            self.algorithm(),
            params,
        ))
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
