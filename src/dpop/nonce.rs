//! Server nonces (RFC 9449 §8) that every instance sharing a secret accepts
//! without shared state: a nonce is a time step and a MAC over it. The step
//! of the current time and its two neighbours are accepted, and the next
//! step's nonce is handed out during the second half of a step, so a nonce
//! a client just received stays good for at least one and a half steps.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::keys::Key;

/// Domain label: a secret shared with another purpose (the demos pass their
/// token signing secret) yields an unrelated MAC key.
const LABEL: &[u8] = b"tower-sliding-jwt dpop nonce v1";

/// Bytes of MAC kept in a nonce.
const MAC_BYTES: usize = 16;

/// Length of a nonce: base64url of 8 step bytes and the MAC.
const NONCE_CHARS: usize = 32;

pub(crate) struct Nonces {
    mac: Key,
    period: i64,
}

impl Nonces {
    /// Nonces under `secret` (at least 32 bytes), changing every `period`
    /// seconds.
    pub(crate) fn new(secret: &[u8], period: i64) -> Result<Self, ConfigError> {
        if period <= 0 {
            return Err(ConfigErrorKind::InvalidDuration.into());
        }
        let outer = Key::hmac(Algorithm::HS256, secret).map_err(|_| {
            ConfigError::new(ConfigErrorKind::WeakSecret)
                .with_detail("the DPoP nonce secret must be at least 32 bytes".to_owned())
        })?;
        // The MAC key is derived from the secret under the label.
        let derived = outer
            .sign(LABEL)
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        Ok(Self {
            mac: Key::hmac(Algorithm::HS256, derived)?,
            period,
        })
    }

    /// Nonces under a fresh random secret: this instance alone accepts them.
    pub(crate) fn random(period: i64) -> Result<Self, ConfigError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        Self::new(&secret, period)
    }

    fn mac(&self, step: i64) -> Option<[u8; MAC_BYTES]> {
        let signed = self.mac.sign(&step.to_be_bytes()).ok()?;
        signed.get(..MAC_BYTES)?.try_into().ok()
    }

    fn make(&self, step: i64) -> String {
        let mut bytes = [0u8; 8 + MAC_BYTES];
        bytes[..8].copy_from_slice(&step.to_be_bytes());
        if let Some(mac) = self.mac(step) {
            bytes[8..].copy_from_slice(&mac);
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce to hand out now (the next step's in a step's second half).
    pub(crate) fn current(&self, now: i64) -> String {
        let step = now.div_euclid(self.period);
        let late = now.rem_euclid(self.period) * 2 >= self.period;
        self.make(step + i64::from(late))
    }

    /// Whether `nonce` is one of ours for a step next to now's.
    pub(crate) fn accepts(&self, nonce: &str, now: i64) -> bool {
        if nonce.len() != NONCE_CHARS {
            return false;
        }
        let mut bytes = [0u8; 8 + MAC_BYTES];
        if URL_SAFE_NO_PAD.decode_slice(nonce, &mut bytes) != Ok(bytes.len()) {
            return false;
        }
        let mut step = [0u8; 8];
        step.copy_from_slice(&bytes[..8]);
        let step = i64::from_be_bytes(step);
        let current = now.div_euclid(self.period);
        if step.abs_diff(current) > 1 {
            return false;
        }
        let Some(expected) = self.mac(step) else {
            return false;
        };
        // Constant time over the MAC.
        let difference = expected
            .iter()
            .zip(&bytes[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secrets_agree_and_steps_expire() {
        let a = Nonces::new(&[1u8; 32], 300).unwrap();
        let b = Nonces::new(&[1u8; 32], 300).unwrap();
        let other = Nonces::new(&[2u8; 32], 300).unwrap();
        let now = 1_700_000_000;
        let nonce = a.current(now);
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert!(a.accepts(&nonce, now) && b.accepts(&nonce, now));
        assert!(!other.accepts(&nonce, now));
        assert!(a.accepts(&nonce, now + 300), "good for a step after");
        assert!(!a.accepts(&nonce, now + 1200), "stale");
        let mut forged = nonce.into_bytes();
        forged[NONCE_CHARS - 2] ^= 1;
        assert!(!a.accepts(std::str::from_utf8(&forged).unwrap(), now));
        assert!(!a.accepts("", now) && !a.accepts(&"A".repeat(10_000), now));
        assert!(Nonces::new(&[1u8; 31], 300).is_err());
        assert!(Nonces::new(&[1u8; 32], 0).is_err());
    }

    #[test]
    fn the_next_nonce_is_sent_ahead() {
        let n = Nonces::new(&[1u8; 32], 100).unwrap();
        assert_eq!(n.current(1000), n.current(1049));
        assert_ne!(n.current(1049), n.current(1050));
        assert_eq!(n.current(1050), n.current(1100));
        // Handed out late in a step, still good late in the next one.
        assert!(n.accepts(&n.current(1099), 1199));
    }
}
