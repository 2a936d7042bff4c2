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
    token.rsplit('.').next().unwrap_or(token)
}

pub(crate) fn b64_decode(part: &str) -> Result<Vec<u8>, RejectionKind> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| RejectionKind::MalformedToken)
}

/// Decodes into `buffer` when it fits (the common case: no allocation), into
/// a new vector otherwise.
pub(crate) fn b64_decode_into<'b>(
    part: &str,
    buffer: &'b mut [u8],
) -> Result<Cow<'b, [u8]>, RejectionKind> {
    if base64::decoded_len_estimate(part.len()) > buffer.len() {
        return b64_decode(part).map(Cow::Owned);
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(part, buffer)
        .map_err(|_| RejectionKind::MalformedToken)?;
    Ok(Cow::Borrowed(&buffer[..len]))
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
