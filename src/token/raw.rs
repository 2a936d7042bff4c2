//! [`RawToken`]: the verified token's text, shared with the request header.

use std::fmt;

use http::{HeaderMap, HeaderValue};

/// The verified token as it arrived ([`Session::token`](crate::Session::token)).
/// `Debug` does not print it.
///
/// It shares the request header's bytes (a reference-count increment, no
/// copy) when the token came from a header of the request.
#[derive(Clone)]
pub struct RawToken {
    value: HeaderValue,
    start: usize,
    end: usize,
}

impl RawToken {
    /// `token`, which points into one of `headers`' values (as every token
    /// source returns it): that value is shared. Copied otherwise.
    pub(crate) fn find(headers: &HeaderMap, token: &str) -> Self {
        let at = token.as_ptr() as usize;
        for value in headers.values() {
            let base = value.as_bytes().as_ptr() as usize;
            if at >= base && at + token.len() <= base + value.len() {
                return Self {
                    value: value.clone(),
                    start: at - base,
                    end: at - base + token.len(),
                };
            }
        }
        Self::copy(token)
    }

    /// A copy of `token` (every token here is token68, a valid header value).
    pub(crate) fn copy(token: &str) -> Self {
        let value = HeaderValue::from_str(token).unwrap_or_else(|_| HeaderValue::from_static(""));
        let end = value.len();
        Self {
            value,
            start: 0,
            end,
        }
    }

    /// The token's bytes, without the UTF-8 check [`as_str`](Self::as_str)
    /// makes (for comparisons on the request path).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.value
            .as_bytes()
            .get(self.start..self.end)
            .unwrap_or_default()
    }

    /// The compact JWS.
    pub fn as_str(&self) -> &str {
        // The bytes were a `&str` when the token was found.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq for RawToken {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RawToken {}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawToken([redacted])")
    }
}
