//! A replacement as the shared single flight stores it (Redis, PostgreSQL):
//! sealed with keys only holders of the old token can derive, under a key
//! derived the same way, so the store never sees the old token and cannot
//! plant a replacement.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{StoreError, StoreErrorKind};
use crate::token::jws;

type HmacSha256 = Hmac<Sha256>;

/// The largest replacement shared (the layer's own size limit is 8 KiB by
/// default).
pub(crate) const MAX_TOKEN_BYTES: usize = 64 * 1024;
const VERSION: u8 = 1;
const NONCE: usize = 16;
const TAG: usize = 32;

/// The largest sealed entry read back: anything longer is garbage (planted
/// by someone with write access to the store) and costs no more than this
/// much memory to refuse.
pub(crate) const MAX_SEALED_BYTES: usize = 1 + NONCE + 8 + MAX_TOKEN_BYTES + TAG;

/// What is derived from an old token's canonical identity (its canonical
/// signature): the entry's key in the shared store, and the keys that seal its replacement.
/// HMAC-SHA-256 keyed by that identity, so only a holder of the old token (or
/// of a twin of it) can find, read or write its entry.
pub(crate) struct FlightKeys {
    /// The entry's key: 40 hex digits.
    pub(crate) id: String,
    seal: HmacSha256,
    tag: HmacSha256,
}

/// `bytes` in lowercase hexadecimal (a flight's id, a Redis hash tag).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

impl FlightKeys {
    pub(crate) fn derive(old: &[u8]) -> Self {
        let derive = |label: &[u8]| {
            let mut mac = new_mac(old);
            mac.update(b"tower-sliding-jwt single flight v1 ");
            mac.update(label);
            mac.finalize().into_bytes()
        };
        let id = derive(b"id");
        Self {
            id: hex(&id[..20]),
            seal: new_mac(&derive(b"seal")),
            tag: new_mac(&derive(b"tag")),
        }
    }

    /// XORs `data` with the keystream of `nonce` (HMAC-SHA-256 in counter mode).
    fn keystream(&self, nonce: &[u8], data: &mut [u8]) {
        for (counter, chunk) in data.chunks_mut(32).enumerate() {
            let mut mac = self.seal.clone();
            mac.update(nonce);
            mac.update(&(counter as u32).to_be_bytes());
            let block = mac.finalize().into_bytes();
            for (byte, key) in chunk.iter_mut().zip(block.iter()) {
                *byte ^= key;
            }
        }
    }

    fn mac(&self, sealed: &[u8]) -> HmacSha256 {
        let mut mac = self.tag.clone();
        mac.update(sealed);
        mac
    }

    /// `version | nonce | keystream ^ (exp | token) | tag`.
    pub(crate) fn seal(&self, expires_at: i64, token: &str) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce)
            .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error))))?;
        let mut sealed = Vec::with_capacity(1 + NONCE + 8 + token.len() + TAG);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&expires_at.to_be_bytes());
        sealed.extend_from_slice(token.as_bytes());
        self.keystream(&nonce, &mut sealed[1 + NONCE..]);
        let tag = self.mac(&sealed).finalize().into_bytes();
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    /// The replacement in `sealed`, if it was sealed with these keys and
    /// holds a compact JWS within the size limit.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<(Arc<str>, i64), Malformed> {
        if sealed.len() < 1 + NONCE + 8 + TAG
            || sealed.len() > 1 + NONCE + 8 + MAX_TOKEN_BYTES + TAG
            || sealed[0] != VERSION
        {
            return Err(Malformed);
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        self.mac(body).verify_slice(tag).map_err(|_| Malformed)?;
        let (nonce, cipher) = body[1..].split_at(NONCE);
        let mut plain = cipher.to_vec();
        self.keystream(nonce, &mut plain);
        let (exp, token) = plain.split_at(8);
        let expires_at = i64::from_be_bytes(exp.try_into().map_err(|_| Malformed)?);
        let token = std::str::from_utf8(token).map_err(|_| Malformed)?;
        if !jws::is_compact(token) {
            return Err(Malformed);
        }
        Ok((Arc::from(token), expires_at))
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A single-flight entry that is not a replacement sealed for this old token.
#[derive(Debug)]
pub(crate) struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed single-flight entry in the shared store")
    }
}

impl std::error::Error for Malformed {}

impl From<Malformed> for StoreError {
    fn from(error: Malformed) -> Self {
        StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

    #[test]
    fn a_sealed_replacement_opens_only_with_the_old_signature() {
        let keys = FlightKeys::derive(b"old-signature");
        let sealed = keys.seal(1234, TOKEN).unwrap();
        assert!(
            !sealed.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is not stored in the clear"
        );
        let (token, exp) = keys.open(&sealed).unwrap();
        assert_eq!((&*token, exp), (TOKEN, 1234));
        // Another old token's keys neither find nor open it.
        let other = FlightKeys::derive(b"other-signature");
        assert_ne!(other.id, keys.id);
        assert!(other.open(&sealed).is_err());
        // Two seals of the same token differ (random nonce).
        assert_ne!(keys.seal(1234, TOKEN).unwrap(), sealed);
        assert_eq!(keys.id.len(), 40);
        assert!(!keys.id.contains("old-signature"));
    }

    #[test]
    fn tampered_or_foreign_entries_are_refused() {
        let keys = FlightKeys::derive(b"old-signature");
        let sealed = keys.seal(1234, TOKEN).unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(keys.open(&tampered).is_err(), "byte {i}");
        }
        assert!(keys.open(&sealed[..sealed.len() - 1]).is_err());
        assert!(keys.open(b"").is_err());
        assert!(keys.open(TOKEN.as_bytes()).is_err());
        // Authentic but not a compact JWS: refused too.
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.c d", "a.b.c=="] {
            let sealed = keys.seal(1, bad).unwrap();
            assert!(keys.open(&sealed).is_err(), "{bad:?}");
        }
        let big = format!("a.b.{}", "c".repeat(MAX_TOKEN_BYTES));
        assert!(keys.open(&keys.seal(1, &big).unwrap()).is_err());
    }
}
