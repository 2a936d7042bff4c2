//! The one copy of every rule about a token's text: splitting a compact JWS,
//! base64url, the compact-JWS check, and reading a payload without verifying
//! it. The layer, the token sources, the client half and the Redis store all
//! use these, so a fix here reaches every one of them.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use crate::reject::RejectionKind;

/// Splits a compact JWS into exactly three parts.
pub(crate) fn split(token: &str) -> Result<(&str, &str, &str, &str), RejectionKind> {
    let first = token.find('.').ok_or(RejectionKind::MalformedToken)?;
    let second = first
        + 1
        + token[first + 1..]
            .find('.')
            .ok_or(RejectionKind::MalformedToken)?;
    let signature = &token[second + 1..];
    if signature.contains('.') {
        return Err(RejectionKind::MalformedToken);
    }
    Ok((
        &token[..first],
        &token[first + 1..second],
        signature,
        &token[..second],
    ))
}

/// The part of the token that identifies it for single flight: its signature.
pub(crate) fn signature_part(token: &str) -> &str {
    match token.rfind('.') {
        Some(dot) => &token[dot + 1..],
        None => token,
    }
}

pub(crate) fn b64_decode(part: &str) -> Result<Vec<u8>, RejectionKind> {
    let mut decoded = vec![0; decoded_len(part.len()).ok_or(RejectionKind::MalformedToken)?];
    decode_into(part.as_bytes(), &mut decoded).ok_or(RejectionKind::MalformedToken)?;
    Ok(decoded)
}

/// Decodes into `buffer` when it fits (the common case: no allocation), into
/// a new vector otherwise.
pub(crate) fn b64_decode_into<'b>(
    part: &str,
    buffer: &'b mut [u8],
) -> Result<Cow<'b, [u8]>, RejectionKind> {
    let len = decoded_len(part.len()).ok_or(RejectionKind::MalformedToken)?;
    let Some(buffer) = buffer.get_mut(..len) else {
        return b64_decode(part).map(Cow::Owned);
    };
    decode_into(part.as_bytes(), buffer).ok_or(RejectionKind::MalformedToken)?;
    Ok(Cow::Borrowed(buffer))
}

/// Decodes `part` into the reused `buffer` (cleared first).
pub(crate) fn b64_decode_vec(part: &str, buffer: &mut Vec<u8>) -> Result<(), RejectionKind> {
    buffer.clear();
    buffer.resize(
        decoded_len(part.len()).ok_or(RejectionKind::MalformedToken)?,
        0,
    );
    decode_into(part.as_bytes(), buffer).ok_or(RejectionKind::MalformedToken)
}

/// base64url's alphabet (RFC 4648 §5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Each byte's 6-bit value already shifted into place for each of a group's
/// four characters, with a byte outside the alphabet (padding `=` included)
/// as `0xFF00_0000` (bits no group of 24 uses): a group is four look-ups and
/// three ORs.
static PLACED: [[u32; 256]; 4] = {
    let mut tables = [[0xFF00_0000; 256]; 4];
    let mut i = 0;
    while i < 64 {
        let c = ALPHABET[i] as usize;
        let sextet = i as u32;
        tables[0][c] = sextet << 18;
        tables[1][c] = sextet << 12;
        tables[2][c] = sextet << 6;
        tables[3][c] = sextet;
        i += 1;
    }
    tables
};

/// The decoded length of `len` base64url characters without padding; `None`
/// for a length no encoding has (one character past a group of four).
fn decoded_len(len: usize) -> Option<usize> {
    match len % 4 {
        1 => None,
        rest => Some(len / 4 * 3 + rest.saturating_sub(1)),
    }
}

/// Strict unpadded base64url into `out` (exactly [`decoded_len`] bytes):
/// `None` for a byte outside the alphabet, padding, or a last character whose
/// unused low bits are not zero (a second spelling of the same bytes). The
/// same rules as `base64`'s `URL_SAFE_NO_PAD`, checked against it in the
/// tests; four characters a step and one verdict at the end, so the usual
/// token costs no branch per character.
fn decode_into(input: &[u8], out: &mut [u8]) -> Option<()> {
    // Every group must have its room: a shorter `out` would stop the loop early.
    if out.len() != decoded_len(input.len())? {
        return None;
    }
    let groups = input.chunks_exact(4);
    let tail = groups.remainder();
    let mut invalid = 0u32;
    let mut written = 0;
    for (group, bytes) in groups.zip(out.chunks_exact_mut(3)) {
        let n = PLACED[0][usize::from(group[0])]
            | PLACED[1][usize::from(group[1])]
            | PLACED[2][usize::from(group[2])]
            | PLACED[3][usize::from(group[3])];
        invalid |= n;
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
        written += 3;
    }
    // The tail is a group cut short (two or three characters: the length
    // was checked), its bytes the first one or two of a group's; the low
    // bits no byte uses must be zero (one spelling per byte string).
    if !tail.is_empty() {
        let rest = &mut out[written..];
        let n = tail
            .iter()
            .zip(&PLACED)
            .fold(0, |n, (&c, placed)| n | placed[usize::from(c)]);
        if n & (0x00FF_FFFF >> (8 * rest.len())) != 0 {
            return None;
        }
        rest.copy_from_slice(&n.to_be_bytes()[1..=rest.len()]);
        invalid |= n;
    }
    (invalid & 0xFF00_0000 == 0).then_some(())
}

/// Whether `b` is a base64url character (`A-Z a-z 0-9 - _`). Branch-free,
/// so that checks over whole chunks compile to vector instructions: every
/// request validates its token this way.
#[inline(always)]
pub(crate) fn base64url_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// Whether every byte passes `valid`. Whole 32-byte chunks are checked
/// without a branch per byte (vectorized) and the verdict is taken once a
/// chunk, so a bad byte stops the scan within 32 bytes.
#[inline(always)]
pub(crate) fn all_bytes(bytes: &[u8], valid: impl Fn(u8) -> bool) -> bool {
    let chunks = bytes.chunks_exact(32);
    let rest = chunks.remainder();
    let bad = |chunk: &[u8]| chunk.iter().fold(0u8, |bad, &b| bad | u8::from(!valid(b)));
    for chunk in chunks {
        if bad(chunk) != 0 {
            return false;
        }
    }
    bad(rest) == 0
}

/// Whether `token` is a compact JWS: three non-empty base64url segments
/// separated by dots. Nothing else is ever written into a response header.
pub(crate) fn is_compact(token: &str) -> bool {
    let mut segments = token.split('.');
    let compact = |segment: Option<&str>| {
        segment.is_some_and(|s| !s.is_empty() && all_bytes(s.as_bytes(), base64url_char))
    };
    compact(segments.next())
        && compact(segments.next())
        && compact(segments.next())
        && segments.next().is_none()
}
/// The JSON object in one base64url segment, read into `T`; `None` when the
/// segment is not base64url or not such an object.
pub(crate) fn decode_json<T: DeserializeOwned>(segment: &str) -> Option<T> {
    let json = URL_SAFE_NO_PAD.decode(segment).ok()?;
    if json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&json).ok()
}

/// The header and payload of `token`, read **without verifying** it, when it
/// is a compact JWS: for tokens this crate signed itself, or for a client
/// that only compares a token with the one it holds. Never trust what it
/// returns as verified claims.
pub(crate) fn unverified<H: DeserializeOwned, P: DeserializeOwned>(token: &str) -> Option<(H, P)> {
    if !is_compact(token) {
        return None;
    }
    let (header, payload, _, _) = split(token).ok()?;
    Some((decode_json(header)?, decode_json(payload)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_exactly_three_parts() {
        assert_eq!(split("a.b.c").unwrap(), ("a", "b", "c", "a.b"));
        assert_eq!(split("a.b.").unwrap().2, "");
        assert!(split("a.b").is_err());
        assert!(split("a.b.c.d").is_err());
        assert!(split("abc").is_err());
        assert!(split("").is_err());
    }

    /// Every string of up to 6 characters over the alphabet, `=`, `.`, a
    /// space and a non-ASCII byte decodes as `base64`'s `URL_SAFE_NO_PAD`
    /// decodes it (the same bytes, or both refuse), then long random ones.
    #[test]
    fn decoding_matches_the_base64_crate() {
        fn same(input: &[u8]) {
            let theirs = URL_SAFE_NO_PAD.decode(input).ok();
            let Ok(text) = std::str::from_utf8(input) else {
                // Ours only ever sees text; the crate refuses all non-UTF-8.
                assert_eq!(theirs, None, "{input:?}");
                return;
            };
            assert_eq!(b64_decode(text).ok(), theirs, "{input:?}");
            let mut small = [0u8; 8];
            let into = b64_decode_into(text, &mut small).ok();
            assert_eq!(into.map(|d| d.into_owned()), theirs, "{input:?}");
            let mut reused = vec![7u8; 3];
            let vec = b64_decode_vec(text, &mut reused).ok().map(|()| reused);
            assert_eq!(vec, theirs, "{input:?}");
        }
        // The characters that matter at each position: every sextet's low
        // bits (trailing-bit checks), the alphabet's edges and outsiders
        // (one of them two bytes of UTF-8).
        let chars: Vec<u8> = b"AQgwBCDEFGHIJKLMNOPZaz09-_=. +/\xc3\xa9".to_vec();
        // Six characters deep over a few: an outsider anywhere in a full
        // group and in the tail after it.
        walk(&mut Vec::new(), b"ABw_=.", 6);
        let mut input = Vec::new();
        fn walk(input: &mut Vec<u8>, chars: &[u8], depth: usize) {
            same(input);
            if depth == 0 {
                return;
            }
            for &c in chars {
                input.push(c);
                walk(input, chars, depth - 1);
                input.pop();
            }
        }
        walk(&mut input, &chars[..20], 4);
        walk(&mut input, &chars, 3);
        for c in 0..=255u8 {
            same(&[b'A', b'A', b'A', c]);
            same(&[b'A', b'A', c]);
            same(&[c, b'A']);
            same(&[b'A', b'A', b'A', b'A', c, b'A']);
        }
        // Only the exact room is written into.
        assert_eq!(decode_into(b"QUJDREVG", &mut [0; 3]), None);
        assert_eq!(decode_into(b"QUJD", &mut [0; 4]), None);
        same("é".as_bytes());
        same("AAAAé".as_bytes());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let encoded = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(b64_decode(&encoded).unwrap(), bytes);
            same(encoded.as_bytes());
            let mut broken = encoded.into_bytes();
            if let Some(at) = broken.len().checked_sub(1 + len % 7) {
                broken[at] = b"=.+/ !"[len % 6];
                same(&broken);
            }
        }
    }

    #[test]
    fn padding_is_refused() {
        assert!(b64_decode("eyJ9").is_ok());
        assert!(b64_decode("eyJ=").is_err());
        assert!(b64_decode("e+J9").is_err());
    }

    #[test]
    fn compact_means_three_non_empty_base64url_segments() {
        for bad in [
            "", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b.", "a b.c.d", "a.b.c=", "a+b.c.d", "a/b.c.d",
        ] {
            assert!(!is_compact(bad), "{bad:?}");
        }
        assert!(is_compact("eyJh.eyJi.c2ln-_"));
    }

    #[test]
    fn unverified_reading_needs_a_compact_jws_of_json_objects() {
        #[derive(serde::Deserialize)]
        struct Exp {
            exp: i64,
        }
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"exp":5}"#);
        let token = format!("{header}.{payload}.c2ln");
        let (_, claims): (serde_json::Value, Exp) = unverified(&token).unwrap();
        assert_eq!(claims.exp, 5);
        assert!(unverified::<serde_json::Value, Exp>(&format!("{header}.{payload}.")).is_none());
        let array = URL_SAFE_NO_PAD.encode("[1]");
        assert!(
            unverified::<serde_json::Value, serde_json::Value>(&format!("{header}.{array}.c2ln"))
                .is_none()
        );
    }
}
