//! The canonical identity of a token (rule 8): what makes two copies "the
//! same token" for the single flight, `renew_with`'s retirement and the
//! shared flight of a cluster — never the token's text.
//!
//! The text is not canonical: an ECDSA signature `(r, s)` has a twin
//! `(r, n − s)` that verifies just as well, so anyone holding an ES256 or
//! ES384 token can make a byte-different copy with the same header, claims
//! and `jti`. The identity is the decoded signature with `s` normalised to
//! the lower of the two (low-S); every other algorithm this crate verifies
//! has one valid signature per message and key (HMAC, RSA PKCS#1 v1.5 are
//! deterministic; RSA-PSS and EdDSA signatures cannot be re-made without the
//! key, and `s < L` is enforced for EdDSA), so its decoded bytes are canonical
//! as they are. Only a holder of the token knows its signature, so the
//! identity doubles as the secret the Redis flight is keyed and sealed with.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

/// The order `n` of P-256's base point, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order `n` of P-384's base point, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// A token's canonical signature: equal for a token and every twin of it.
/// `Debug` does not print it (it is as secret as the token).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenId {
    signature: Box<[u8]>,
}

impl TokenId {
    /// The identity of a verified token signed with `alg` whose signature
    /// segment is `signature_b64`; `None` when the segment does not decode
    /// (which a verified token's always does).
    pub(crate) fn of(alg: Algorithm, signature_b64: &str) -> Option<Self> {
        let mut signature = URL_SAFE_NO_PAD.decode(signature_b64).ok()?;
        match alg {
            Algorithm::ES256 => low_s(&mut signature, &P256_ORDER),
            Algorithm::ES384 => low_s(&mut signature, &P384_ORDER),
            _ => {}
        }
        Some(Self {
            signature: signature.into_boxed_slice(),
        })
    }

    /// The canonical signature bytes: the secret input of a shared flight's
    /// key derivation.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.signature
    }

    /// A fixed-size key for in-process maps: 128 bits of a hash keyed with
    /// this process's random keys, so nobody can aim two tokens at one key.
    pub(crate) fn key(&self) -> FlightKey {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        let key = KEY.get_or_init(RandomState::new);
        // One random key, two domains: two independent halves.
        FlightKey(
            key.hash_one((0u8, &self.signature)),
            key.hash_one((1u8, &self.signature)),
        )
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenId([redacted])")
    }
}

/// The in-process key of a [`TokenId`]: already a keyed hash, so maps use
/// its first half as their hash as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey(pub(crate) u64, pub(crate) u64);

/// Replaces `s` in a JWS ECDSA signature `r || s` by `n − s` when that is
/// smaller, so `(r, s)` and its twin `(r, n − s)` become one value. A
/// signature of the wrong length is left as it is (it never verified).
fn low_s<const N: usize>(signature: &mut [u8], order: &[u8; N]) {
    if signature.len() != 2 * N {
        return;
    }
    let s = &mut signature[N..];
    let mut flipped = [0u8; N];
    let mut borrow = 0u16;
    for i in (0..N).rev() {
        let difference = u16::from(order[i])
            .wrapping_sub(u16::from(s[i]))
            .wrapping_sub(borrow);
        flipped[i] = difference as u8;
        borrow = (difference >> 8) & 1;
    }
    // `s < n` for a valid signature, so `n − s` does not underflow; keep the
    // lesser of the two, compared as big-endian numbers.
    if borrow == 0 && flipped[..] < s[..] {
        s.copy_from_slice(&flipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn an_ecdsa_twin_has_the_identity_of_its_original() {
        for (alg, order) in [
            (Algorithm::ES256, &P256_ORDER[..]),
            (Algorithm::ES384, &P384_ORDER[..]),
        ] {
            let n = order.len();
            let mut signature = vec![0x11; 2 * n];
            signature[n..].copy_from_slice(&[0x22; 48][..n]);
            // The twin: s' = n − s.
            let mut twin = signature.clone();
            let mut borrow = 0i16;
            for i in (0..n).rev() {
                let d = i16::from(order[i]) - i16::from(signature[n + i]) - borrow;
                twin[n + i] = d.rem_euclid(256) as u8;
                borrow = i16::from(d < 0);
            }
            assert_ne!(signature, twin);
            let original = TokenId::of(alg, &encode(&signature)).unwrap();
            let copy = TokenId::of(alg, &encode(&twin)).unwrap();
            assert_eq!(original, copy, "{alg:?}");
            assert_eq!(original.key(), copy.key());
            assert_eq!(original.secret(), &signature[..], "low S stays as it is");
        }
    }

    #[test]
    fn other_signatures_are_their_own_identity() {
        let signature = [0xee; 64];
        for alg in [Algorithm::HS512, Algorithm::EdDSA] {
            let id = TokenId::of(alg, &encode(&signature)).unwrap();
            assert_eq!(id.secret(), &signature[..]);
        }
        let a = TokenId::of(Algorithm::HS256, &encode(&[1; 32])).unwrap();
        let b = TokenId::of(Algorithm::HS256, &encode(&[2; 32])).unwrap();
        assert_ne!(a.key(), b.key());
        assert!(TokenId::of(Algorithm::HS256, "not base64!").is_none());
        assert!(!format!("{a:?}").contains("AQEB"));
    }
}
