//! [`BearerHeader`]: `Authorization: Bearer <token>`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use super::TokenSource;
use super::syntax::{as_token, credential, header_name, single_value};
use crate::error::ConfigError;
use crate::reject::Rejection;
use crate::token::jws::is_compact;

/// `Authorization: Bearer <token>` (RFC 6750 §2.1). The scheme is matched
/// case-insensitively; another scheme (e.g. `Basic`) counts as "no token here";
/// two `Authorization` headers or a `Bearer` without a well-formed token are a
/// 400 `invalid_request`.
///
/// A renewed token is written as `Authorization: Bearer <token>` on the response
/// unless another response header is chosen.
#[derive(Debug, Clone)]
pub struct BearerHeader {
    request: HeaderName,
    response: HeaderName,
    /// `Bearer`, or `DPoP` for the layer's own DPoP channel.
    scheme: &'static str,
}

impl Default for BearerHeader {
    fn default() -> Self {
        Self {
            request: AUTHORIZATION,
            response: AUTHORIZATION,
            scheme: "Bearer",
        }
    }
}

impl BearerHeader {
    /// Reads `Authorization`, renews into `Authorization`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Authorization: DPoP <token>` (RFC 9449 §7.1), renewed the same way:
    /// the channel a layer configured with DPoP reads first.
    pub(crate) fn dpop() -> Self {
        Self {
            scheme: "DPoP",
            ..Self::default()
        }
    }

    /// Writes renewed tokens into `name` instead (e.g. `x-renewed-token`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidHeaderName`](crate::ConfigErrorKind::InvalidHeaderName) for an invalid name or one that
    /// must not carry a token (`Refresh`, `Set-Cookie`, `Location`, ...).
    pub fn with_response_header(mut self, name: &str) -> Result<Self, ConfigError> {
        self.response = header_name(name)?;
        Ok(self)
    }
}

impl TokenSource for BearerHeader {
    fn extract<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Rejection> {
        let Some(value) = single_value(headers, &self.request)? else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
            Some(space) => bytes.split_at(space),
            None => (bytes, &[][..]),
        };
        if !scheme.eq_ignore_ascii_case(self.scheme.as_bytes()) {
            return Ok(None);
        }
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        let end = rest
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |i| i + 1);
        as_token(&rest[start..end]).map(Some)
    }

    fn deliver(&self, token: &str, _max_age: i64, headers: &mut HeaderMap) {
        if !is_compact(token) {
            return;
        }
        if let Some(value) = credential(self.scheme, token) {
            headers.insert(self.response.clone(), value);
        }
    }

    fn is_delivered(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::RejectionKind;
    use crate::source::tests::{headers, kind};

    #[test]
    fn bearer_parsing() {
        let b = BearerHeader::new();
        let h = headers(&[("authorization", b"Bearer a.b.c")]);
        assert_eq!(kind(b.extract(&h)), Ok(Some("a.b.c")));
        let h = headers(&[("authorization", b"bEaReR   a.b.c  ")]);
        assert_eq!(kind(b.extract(&h)), Ok(Some("a.b.c")));
        let h = headers(&[("authorization", b"Basic dXNlcjpwYXNz")]);
        assert_eq!(kind(b.extract(&h)), Ok(None));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer \xff",
            b"Bearer ==",
            b"Bearer a\"b",
        ] {
            let h = headers(&[("authorization", bad)]);
            assert_eq!(
                kind(b.extract(&h)),
                Err(RejectionKind::MalformedCredentials),
                "{bad:?}"
            );
        }
        let h = headers(&[
            ("authorization", b"Bearer a.b.c"),
            ("authorization", b"Bearer a.b.c"),
        ]);
        assert_eq!(
            kind(b.extract(&h)),
            Err(RejectionKind::DuplicateCredentials)
        );
        assert_eq!(kind(b.extract(&HeaderMap::new())), Ok(None));
    }
}
