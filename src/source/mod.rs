//! Where tokens are read from, and where renewed tokens are written.
//!
//! A [`TokenSource`] reads a token from the request headers and writes a
//! renewed token on the same channel in the response. The layer tries its
//! sources in order and uses the first that finds a token; the renewed token
//! goes back through that same source. The query string is never read.

use http::HeaderMap;

use crate::reject::Rejection;

mod bearer;
mod cookie;
mod header;
mod syntax;

pub use bearer::BearerHeader;
pub use cookie::{CookieSource, SameSite};
pub use header::HeaderSource;
pub(crate) use syntax::credential;

/// Reads a token from a request and writes a renewed one to the response.
///
/// Implement it for a channel this crate does not know; a source never sees the
/// query string unless it is handed one itself.
pub trait TokenSource: Send + Sync + 'static {
    /// The token in `headers`, if this source finds one.
    ///
    /// `Ok(None)` means "not here" (the next source is tried). An `Err` stops
    /// the search and refuses the request; use
    /// [`RejectionKind::MalformedCredentials`](crate::RejectionKind::MalformedCredentials) or
    /// [`RejectionKind::DuplicateCredentials`](crate::RejectionKind::DuplicateCredentials) so the client gets a 400
    /// `invalid_request`.
    ///
    /// # Errors
    /// A [`Rejection`] when the credentials are present but malformed or repeated.
    fn extract<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Rejection>;

    /// Writes `token` into the response headers. `max_age` is the number of
    /// seconds until the token expires. The layer only ever hands over a
    /// compact JWS it signed itself.
    fn deliver(&self, token: &str, max_age: i64, headers: &mut HeaderMap);

    /// What the layer calls to write a renewed token: `now` is the layer's
    /// clock and `expires_at` the token's `exp` (both in seconds since the
    /// Unix epoch). Calls [`deliver`](Self::deliver) with
    /// `expires_at - now` by default; override it when the channel carries
    /// an absolute time (the cookie's `Expires`).
    fn deliver_at(&self, token: &str, now: i64, expires_at: i64, headers: &mut HeaderMap) {
        self.deliver(token, expires_at.saturating_sub(now), headers);
    }

    /// Whether the response already carries a token on this channel (a
    /// handler set one, e.g. at login): the layer then does not renew.
    fn is_delivered(&self, headers: &HeaderMap) -> bool;

    /// Whether browsers attach this credential by themselves, also to requests
    /// a foreign page triggers (a cookie). Such tokens get the cross-site check
    /// on unsafe methods. Defaults to `false` (a header the client sets).
    fn is_ambient(&self) -> bool {
        false
    }

    /// Called when the handler ended the session: remove the token from the
    /// client where this channel can (a cookie is expired). Does nothing by
    /// default: a client holding a bearer token simply gets 401 next time.
    fn end_session(&self, headers: &mut HeaderMap) {
        let _ = headers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConfigErrorKind, IssueErrorKind};
    use crate::token::jws::is_compact;

    /// Request headers from name/value pairs, in order (a name may repeat).
    pub(super) fn headers(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    /// What a source answered, with the rejection reduced to its kind.
    pub(super) fn kind(
        r: Result<Option<&str>, Rejection>,
    ) -> Result<Option<&str>, crate::reject::RejectionKind> {
        r.map_err(|e| e.kind())
    }

    #[test]
    fn refresh_header_is_refused() {
        assert_eq!(
            BearerHeader::new()
                .with_response_header("Refresh")
                .unwrap_err()
                .kind(),
            ConfigErrorKind::InvalidHeaderName
        );
        assert!(HeaderSource::new("set-cookie").is_err());
        assert!(HeaderSource::new("bad header").is_err());
        assert!(BearerHeader::new().with_response_header("x-token").is_ok());
    }

    #[test]
    fn only_compact_tokens_are_written() {
        let cookie = CookieSource::new("session").unwrap();
        let smuggled = "abc; Domain=evil.example; Max-Age=999999999; SameSite=None";
        assert_eq!(
            cookie.set_cookie(smuggled, 60).unwrap_err().kind(),
            IssueErrorKind::NotCompact
        );
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            ".b.c",
            "a.b.",
            "a.b.c;x=y",
            "a.b.c d",
            "a.b+.c",
            "a.b/.c",
            "a.b=.c",
            "a\r\n.b.c",
        ] {
            assert!(!is_compact(bad), "{bad:?}");
            assert!(cookie.set_cookie(bad, 60).is_err(), "{bad:?}");
            let mut headers = HeaderMap::new();
            cookie.deliver(bad, 60, &mut headers);
            BearerHeader::new().deliver(bad, 60, &mut headers);
            HeaderSource::new("x-token")
                .unwrap()
                .deliver(bad, 60, &mut headers);
            assert!(headers.is_empty(), "{bad:?} was written");
        }
        assert!(is_compact("eyJh.eyJi.c2ln-_"));
        let mut headers = HeaderMap::new();
        cookie.deliver("eyJh.eyJi.c2ln", 60, &mut headers);
        BearerHeader::new().deliver("eyJh.eyJi.c2ln", 60, &mut headers);
        assert_eq!(headers.len(), 2);
    }
}
