//! The syntax rules of the channels tokens travel in: header names that may
//! carry a token, `token68`, single values, sensitive header values.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{ConfigError, ConfigErrorKind};
use crate::reject::{Rejection, RejectionKind};
use crate::token::jws::all_bytes;

/// Headers that must never carry a token.
pub(super) fn forbidden(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "refresh"
            | "set-cookie"
            | "cookie"
            | "location"
            | "content-type"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "host"
            | "cache-control"
    )
}

pub(super) fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    let name = HeaderName::try_from(name)
        .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidHeaderName, e))?;
    if forbidden(&name) {
        return Err(ConfigErrorKind::InvalidHeaderName.into());
    }
    Ok(name)
}

/// `token68` (RFC 7235): token68 characters (a superset of what a JWT uses),
/// then optional `=` padding.
pub(super) fn is_token68(bytes: &[u8]) -> bool {
    let body = bytes
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(&[][..], |last| &bytes[..=last]);
    !body.is_empty() && all_bytes(body, token68_char)
}

/// Whether `b` is a token68 character (`A-Z a-z 0-9 - . _ ~ + /`): two
/// range checks and three comparisons, branch-free (vectorized like
/// [`base64url_char`](crate::token::jws::base64url_char)). `-` `.` `/` and the digits are one range, 0x2D to 0x39.
#[inline(always)]
fn token68_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let dash_to_nine = b.wrapping_sub(b'-') < 13;
    letter | dash_to_nine | (b == b'_') | (b == b'~') | (b == b'+')
}

pub(super) fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Rejection::new(RejectionKind::DuplicateCredentials));
    }
    Ok(first)
}

pub(super) fn as_token(bytes: &[u8]) -> Result<&str, Rejection> {
    if !is_token68(bytes) {
        return Err(Rejection::new(RejectionKind::MalformedCredentials));
    }
    std::str::from_utf8(bytes).map_err(|_| Rejection::new(RejectionKind::MalformedCredentials))
}

/// A header value that carries a token: marked sensitive, so HTTP/2's
/// HPACK never indexes it and `Debug` hides it. `None` when it is not a
/// valid header value.
pub(crate) fn sensitive(value: String) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `<scheme> <token>` as a sensitive header value (`Authorization: Bearer
/// ...`): the one place the server's delivery and the client's requests
/// write a credential.
pub(crate) fn credential(scheme: &str, token: &str) -> Option<HeaderValue> {
    let mut value = String::with_capacity(scheme.len() + 1 + token.len());
    value.push_str(scheme);
    value.push(' ');
    value.push_str(token);
    sensitive(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jws::base64url_char;

    #[test]
    fn character_classes_match_their_definitions_for_every_byte() {
        for b in 0..=255u8 {
            let base64url = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(base64url_char(b), base64url, "{b}");
            let token68 = base64url || matches!(b, b'.' | b'~' | b'+' | b'/');
            // Checked alone and at every position of a longer value.
            for at in [0, 5, 31, 32, 40] {
                let mut value = vec![b'a'; 41];
                value[at] = b;
                assert_eq!(
                    is_token68(&value),
                    token68 || (b == b'=' && at == 40),
                    "{b} at {at}"
                );
            }
        }
    }
}
