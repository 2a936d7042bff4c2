//! Signing and verification keys: the [`Keys`] trait the layer reads them
//! through, and the rules that select a key for a token.
//!
//! Keys are checked and paired when they are built: a bad PEM, a secret that
//! is too short, or a private key that does not match its public key is a
//! [`ConfigError`](crate::ConfigError), never a failure on a request.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::reject::RejectionKind;

mod alg;
mod jwk;
mod key;
mod pem;
mod provider;
mod public;
mod ring;

pub(crate) use alg::alg_name;
pub use jwk::{Jwk, Jwks};
pub use key::Key;
pub(crate) use provider::provider;
pub(crate) use public::PublicParams;
pub use ring::KeyRing;

/// The keys a [`Keys`] implementation verifies with at this moment: borrowed
/// from a key set that never changes, or a shared snapshot of one that does
/// (a remote JWKS (`RemoteJwks`, feature `jwks`)). Dereferences to `[Key]`.
pub struct KeySnapshot<'a>(Snapshot<'a>);

enum Snapshot<'a> {
    Borrowed(&'a [Key]),
    Shared(Arc<[Key]>),
}

impl<'a> From<&'a [Key]> for KeySnapshot<'a> {
    fn from(keys: &'a [Key]) -> Self {
        Self(Snapshot::Borrowed(keys))
    }
}

impl From<Arc<[Key]>> for KeySnapshot<'_> {
    fn from(keys: Arc<[Key]>) -> Self {
        Self(Snapshot::Shared(keys))
    }
}

impl Deref for KeySnapshot<'_> {
    type Target = [Key];

    fn deref(&self) -> &[Key] {
        match &self.0 {
            Snapshot::Borrowed(keys) => keys,
            Snapshot::Shared(keys) => keys,
        }
    }
}

impl fmt::Debug for KeySnapshot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where the layer finds its keys: at most one active key that signs, and the
/// keys that verify (the active one among them).
///
/// The layer itself picks the verification key: the one whose `kid` equals the
/// token's `kid` exactly (a token without `kid` matches the key without one), and
/// only if that key's algorithm equals the token's `alg`. Implementations only
/// say which keys exist, so every implementation gets the same rules.
///
/// Without a signing key ([`signing_key`](Self::signing_key) is `None`) a
/// layer only verifies: it is built with
/// [`SlidingJwtLayer::verifier`](crate::SlidingJwtLayer::verifier) and never
/// renews.
pub trait Keys: Send + Sync + 'static {
    /// The key that signs new and renewed tokens; `None` for a verify-only
    /// key set (public keys, a remote JWKS (`RemoteJwks`, feature `jwks`)).
    fn signing_key(&self) -> Option<&Key>;

    /// Every key that verifies incoming tokens, including the signing key.
    fn verification_keys(&self) -> KeySnapshot<'_>;

    /// Changes whenever the keys change (for implementations that rotate keys
    /// at run time); the verified-token cache is emptied when it does.
    ///
    /// The contract: if [`verification_keys`](Self::verification_keys) can
    /// return a different set than before, `version` must return a different
    /// value too. [`Key`] and [`KeyRing`] never change once built, so the
    /// default (a constant) is right for them. The cache does not rely on this
    /// alone: a cached token is only served while the very key that verified it
    /// is still among the verification keys.
    fn version(&self) -> u64 {
        0
    }

    /// Whether the keys are loaded. While `false`, a token that needs a key is
    /// answered 503 with `Retry-After` (gRPC `UNAVAILABLE`), never 401, so
    /// clients keep their tokens. Always `true` for keys given in code (the
    /// default); a remote JWKS (`RemoteJwks`, feature `jwks`) is ready after its first
    /// successful load.
    fn is_ready(&self) -> bool {
        true
    }

    /// Called on the request path when no verification key has the token's
    /// `kid`: a key set that can refresh itself may schedule a refresh. It
    /// must return at once (never fetch inline) and bound how often it acts,
    /// since anyone can send a token with a made-up `kid`. Does nothing by
    /// default.
    fn key_not_found(&self, kid: Option<&str>) {
        let _ = kid;
    }

    /// The public halves of the verification keys as a JWKS (RFC 7517), for
    /// [`JwksService`](crate::JwksService). HMAC keys never appear: a key
    /// set of only HMAC keys gives an empty set.
    fn jwks(&self) -> Jwks {
        Jwks::from_keys(&self.verification_keys())
    }
}

/// The rejection for a token no key was selected for. While the keys are not
/// loaded, that is 503, not 401; a `kid` no key has may make the key set
/// refresh itself ([`Keys::key_not_found`]).
pub(crate) fn missed<K: Keys + ?Sized>(
    keys: &K,
    loaded: &[Key],
    miss: KeyMiss,
    kid: Option<&str>,
) -> RejectionKind {
    if !keys.is_ready() {
        return RejectionKind::KeysUnavailable;
    }
    if !loaded.iter().any(|k| k.kid.as_deref() == kid) {
        keys.key_not_found(kid);
    }
    match miss {
        KeyMiss::Algorithm => RejectionKind::AlgorithmNotAllowed,
        KeyMiss::UnknownKid => RejectionKind::UnknownKey,
    }
}

/// Finds the verification key for a token header: exact `kid`, same `alg`.
pub(crate) fn select<'k>(
    keys: &'k [Key],
    alg: &str,
    kid: Option<&str>,
) -> Result<&'k Key, KeyMiss> {
    let Some(key) = keys.iter().find(|k| k.kid.as_deref() == kid) else {
        return Err(if keys.iter().any(|k| alg_name(k.alg) == alg) {
            KeyMiss::UnknownKid
        } else {
            KeyMiss::Algorithm
        });
    };
    if alg_name(key.alg) != alg {
        return Err(KeyMiss::Algorithm);
    }
    Ok(key)
}

/// Why no key was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMiss {
    /// The `alg` is not one the keys use (including `none`).
    Algorithm,
    /// The `alg` is known, the `kid` is not.
    UnknownKid,
}

impl Keys for Key {
    fn signing_key(&self) -> Option<&Key> {
        self.can_sign().then_some(self)
    }

    fn verification_keys(&self) -> KeySnapshot<'_> {
        std::slice::from_ref(self).into()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

    use super::*;
    use crate::error::{ConfigError, ConfigErrorKind};

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert_eq!(
            Key::hs256([0u8; 31]).unwrap_err().kind(),
            ConfigErrorKind::WeakSecret
        );
        assert!(Key::hs256([0u8; 32]).is_ok());
        assert_eq!(
            Key::hmac(Algorithm::HS512, [0u8; 63]).unwrap_err().kind(),
            ConfigErrorKind::WeakSecret
        );
        assert_eq!(
            Key::hmac(Algorithm::ES256, [0u8; 64]).unwrap_err().kind(),
            ConfigErrorKind::InvalidKey
        );
    }

    #[test]
    fn every_hmac_constructor_enforces_the_minimum_length() {
        let weak =
            |r: Result<Key, ConfigError>| r.unwrap_err().kind() == ConfigErrorKind::WeakSecret;
        for (alg, min) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            for len in [0, 5, min - 1] {
                let secret = vec![7u8; len];
                assert!(weak(Key::hmac(alg, &secret)), "{alg:?} {len}");
                assert!(weak(Key::new(
                    alg,
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )));
                assert!(weak(Key::verifying(alg, DecodingKey::from_secret(&secret))));
            }
            let secret = vec![7u8; min];
            assert!(Key::hmac(alg, &secret).is_ok());
            assert!(Key::verifying(alg, DecodingKey::from_secret(&secret)).is_ok());
            // A short signing half next to a long verifying half is refused too.
            assert!(weak(Key::new(
                alg,
                EncodingKey::from_secret(b"short"),
                DecodingKey::from_secret(&secret),
            )));
        }
    }

    #[test]
    fn the_written_header_is_json_whatever_the_kid() {
        let key = Key::hs256([0u8; 32]).unwrap();
        let header = |key: &Key| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(key.header_b64()).unwrap()).unwrap()
        };
        assert_eq!(
            header(&key),
            serde_json::json!({"alg": "HS256", "typ": "JWT"})
        );
        let key = key.with_kid("k-1 ~!#$%&'()*+,/:;<=>?@[]^`{|}").unwrap();
        let value = header(&key);
        assert_eq!(value["kid"], "k-1 ~!#$%&'()*+,/:;<=>?@[]^`{|}");
        assert_eq!(value.as_object().unwrap().len(), 3, "nothing breaks out");
        // Quotes, backslashes and control characters are refused outright.
        for bad in ["a\"b", "a\\b", "a\nb", "a\u{0}b", "é"] {
            assert!(
                Key::hs256([0u8; 32]).unwrap().with_kid(bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn garbage_pem_is_a_config_error() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert_eq!(
                Key::from_pem(alg, "not a pem").unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
            assert_eq!(
                Key::public_pem(alg, "not a pem").unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
            assert_eq!(
                Key::from_der(alg, [0u8; 40]).unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
        }
        assert_eq!(
            Key::from_pem(Algorithm::HS256, "x").unwrap_err().kind(),
            ConfigErrorKind::InvalidKey
        );
    }

    #[test]
    fn kid_rules() {
        let key = Key::hs256([0u8; 32]).unwrap();
        assert!(key.clone().with_kid("").is_err());
        assert!(key.clone().with_kid("a\"b").is_err());
        assert!(key.clone().with_kid("x".repeat(257)).is_err());
        assert_eq!(key.with_kid("k1").unwrap().kid(), Some("k1"));
    }

    #[test]
    fn ring_rejects_duplicate_kids_and_verify_only_active() {
        let a = Key::hs256([1u8; 32]).unwrap();
        let b = Key::hs256([2u8; 32]).unwrap();
        assert_eq!(
            KeyRing::new(a.clone())
                .unwrap()
                .with_verification_key(b)
                .unwrap_err()
                .kind(),
            ConfigErrorKind::DuplicateKeyId
        );
        let verify_only =
            Key::verifying(Algorithm::HS256, DecodingKey::from_secret(&[1u8; 32])).unwrap();
        assert_eq!(
            KeyRing::new(verify_only).unwrap_err().kind(),
            ConfigErrorKind::NotASigningKey
        );
    }

    #[test]
    fn debug_hides_key_material() {
        let key = Key::hs256(b"super-secret-super-secret-super-secret").unwrap();
        assert!(!format!("{key:?}").contains("super-secret"));
    }

    #[test]
    fn selection_is_exact() {
        let a = Key::hs256([1u8; 32]).unwrap().with_kid("a").unwrap();
        let b = Key::hs256([2u8; 32]).unwrap();
        let keys = [a, b];
        assert_eq!(select(&keys, "HS256", Some("a")).unwrap().kid(), Some("a"));
        assert_eq!(select(&keys, "HS256", None).unwrap().kid(), None);
        assert_eq!(
            select(&keys, "HS256", Some("A")).unwrap_err(),
            KeyMiss::UnknownKid
        );
        assert_eq!(
            select(&keys, "HS384", Some("a")).unwrap_err(),
            KeyMiss::Algorithm
        );
        assert_eq!(select(&keys, "none", None).unwrap_err(), KeyMiss::Algorithm);
    }
}
