//! [`KeyRing`]: one active signing key and the retired keys that still verify.

use super::{Key, KeySnapshot, Keys};
use crate::error::{ConfigError, ConfigErrorKind};

/// One active signing key and any number of retired keys that still verify.
///
/// A token signed by a retired key stays valid until it expires, and its first
/// renewal is signed by the active key, so rotating keys logs nobody out.
///
/// ```
/// use tower_sliding_jwt::{Key, KeyRing};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// let retired = Key::hs256([1u8; 32])?.with_kid("2025-10")?;
/// let active = Key::hs256([2u8; 32])?.with_kid("2026-11")?;
/// let ring = KeyRing::new(active)?.with_verification_key(retired)?;
/// # let _ = ring;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// `keys[0]` is the active key when `signs`.
    keys: Vec<Key>,
    signs: bool,
}

impl KeyRing {
    /// A ring whose active key is `active`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NotASigningKey`] when `active` has no private part.
    pub fn new(active: Key) -> Result<Self, ConfigError> {
        if !active.can_sign() {
            return Err(ConfigErrorKind::NotASigningKey.into());
        }
        Ok(Self {
            keys: vec![active],
            signs: true,
        })
    }

    /// A verify-only ring: every key verifies, none signs (private parts are
    /// dropped). For a [verify-only layer](crate::SlidingJwtLayer::verifier)
    /// that accepts another service's tokens.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoPublicKey`] when `keys` is empty,
    /// [`ConfigErrorKind::DuplicateKeyId`] when two keys share a `kid` (or
    /// both have none).
    pub fn verifying(keys: impl IntoIterator<Item = Key>) -> Result<Self, ConfigError> {
        let mut ring = Self {
            keys: Vec::new(),
            signs: false,
        };
        for key in keys {
            ring = ring.with_verification_key(key)?;
        }
        if ring.keys.is_empty() {
            return Err(ConfigErrorKind::NoPublicKey.into());
        }
        Ok(ring)
    }

    /// The keys of the ring (the active one first when the ring signs).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Adds a key that verifies but does not sign.
    ///
    /// # Errors
    /// [`ConfigErrorKind::DuplicateKeyId`] when a key with the same `kid` (or
    /// another key without one) is already in the ring.
    pub fn with_verification_key(mut self, key: Key) -> Result<Self, ConfigError> {
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(ConfigErrorKind::DuplicateKeyId.into());
        }
        self.keys.push(key.verifying_half());
        Ok(self)
    }
}

impl Keys for KeyRing {
    fn signing_key(&self) -> Option<&Key> {
        self.keys.first().filter(|_| self.signs)
    }

    fn verification_keys(&self) -> KeySnapshot<'_> {
        self.keys.as_slice().into()
    }
}
