//! [`DpopKey`]: the client's key, and the proofs it signs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Serialize;

use crate::error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
use crate::keys::{Key, provider};
use crate::token::random_id;

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte
/// seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A client's DPoP key (RFC 9449): signs a fresh proof for every request,
/// and its thumbprint is what a bound token's `cnf.jkt` names.
///
/// [`generate`](Self::generate) makes a new Ed25519 key in memory (it never
/// leaves the process); [`from_key`](Self::from_key) takes the
/// application's own (ES256, ES384, EdDSA or RSA). Keep one key for the
/// life of a session: a token bound to it is useless with any other.
///
/// ```
/// use tower_sliding_jwt::dpop::DpopKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = DpopKey::generate()?;
/// let proof = key.proof("GET", "https://api.example.com/me", Some("eyJ.eyJ.sig"), None, 1_700_000_000)?;
/// assert_eq!(proof.split('.').count(), 3);
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DpopKey {
    key: Key,
    /// The base64url proof header: `typ`, `alg` and the public `jwk`.
    header: Arc<str>,
    thumbprint: Arc<str>,
}

impl DpopKey {
    /// A new Ed25519 key from the operating system's randomness.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when randomness or the crypto
    /// backend fails, [`ConfigErrorKind::NoCryptoBackend`] without one.
    pub fn generate() -> Result<Self, ConfigError> {
        let mut der = [0u8; 48];
        der[..16].copy_from_slice(&ED25519_PKCS8_PREFIX);
        getrandom::fill(&mut der[16..])
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        let key = Key::from_der(Algorithm::EdDSA, der);
        Self::from_key(key?)
    }

    /// The application's own key: an asymmetric key with its private part.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] for an HMAC key (a proof must be
    /// verifiable by anyone from the key it carries),
    /// [`ConfigErrorKind::NotASigningKey`] for a key without its private part.
    pub fn from_key(key: Key) -> Result<Self, ConfigError> {
        provider()?;
        if key.algorithm().family() == AlgorithmFamily::Hmac {
            return Err(ConfigError::new(ConfigErrorKind::InvalidKey).with_detail(
                "a DPoP key must be asymmetric (ES256, ES384, EdDSA, RSA)".to_owned(),
            ));
        }
        if !key.can_sign() {
            return Err(ConfigErrorKind::NotASigningKey.into());
        }
        let jwk = key.to_jwk().ok_or(ConfigErrorKind::NoPublicKey)?;
        let thumbprint = key.thumbprint().ok_or(ConfigErrorKind::NoPublicKey)?;
        #[derive(Serialize)]
        struct Header<'a> {
            typ: &'static str,
            alg: Algorithm,
            jwk: &'a crate::keys::Jwk,
        }
        let header = serde_json::to_vec(&Header {
            typ: "dpop+jwt",
            alg: key.algorithm(),
            jwk: &jwk,
        })
        .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        Ok(Self {
            key,
            header: URL_SAFE_NO_PAD.encode(header).into(),
            thumbprint: thumbprint.into(),
        })
    }

    /// The key's RFC 7638 thumbprint (SHA-256, base64url): the `cnf.jkt`
    /// of tokens bound to it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The algorithm proofs are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// A proof for one request: `method` (`htm`), `url` (`htu`; its query
    /// and fragment are left out), the access token it accompanies (`ath`;
    /// `None` at login), the server's latest nonce, and the time (`iat`).
    /// Each proof has a fresh random `jti`: use it once.
    ///
    /// # Errors
    /// [`IssueErrorKind::Signing`] when the backend fails to sign,
    /// [`IssueErrorKind::Random`] when randomness fails.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String, IssueError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            jti: String,
            htm: &'a str,
            htu: &'a str,
            iat: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            ath: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce: Option<&'a str>,
        }
        let htu = url.split(['?', '#']).next().unwrap_or_default();
        let ath = match token {
            None => None,
            Some(token) => Some(sha256_b64(token.as_bytes())?),
        };
        let claims = Claims {
            jti: random_id()?,
            htm: method,
            htu,
            iat: now,
            ath,
            nonce,
        };
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| IssueError::new(IssueErrorKind::Claims, Some(Box::new(e))))?;
        let mut proof = String::with_capacity(self.header.len() + payload.len() * 2 + 128);
        proof.push_str(&self.header);
        proof.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut proof);
        let signature = self.key.sign(proof.as_bytes())?;
        proof.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut proof);
        Ok(proof)
    }
}

/// base64url SHA-256, through the crypto backend (`ath`, thumbprints).
pub(crate) fn sha256_b64(bytes: &[u8]) -> Result<String, IssueError> {
    let failed = |e: Option<Box<dyn std::error::Error + Send + Sync>>| {
        IssueError::new(IssueErrorKind::Signing, e)
    };
    let provider = provider().map_err(|e| failed(Some(Box::new(e))))?;
    let digest =
        (provider.key_utils.compute_digest)(bytes, jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|e| failed(Some(Box::new(e))))?;
    Ok(URL_SAFE_NO_PAD.encode(digest))
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.key.algorithm())
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}
