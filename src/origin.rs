//! Origins: the one a client layer sends its token to, and those a server
//! trusts for cross-site requests with the session cookie.

use std::fmt;
use std::str::FromStr;

use http::Uri;

use crate::error::{ConfigError, ConfigErrorKind};

/// An origin (RFC 6454): scheme, host and port, e.g. `https://api.example.com`.
///
/// Only `http` and `https` are supported. The host is compared
/// case-insensitively and a missing port is the scheme's default (80, 443),
/// so `https://API.example.com:443` and `https://api.example.com` are the same
/// origin. Nothing else is normalised: `example.com.` and `example.com` are
/// different origins, as are `localhost` and `127.0.0.1`.
///
/// ```
/// use tower_sliding_jwt::Origin;
///
/// let origin: Origin = "https://API.example.com".parse()?;
/// assert_eq!((origin.scheme(), origin.host(), origin.port()), ("https", "api.example.com", 443));
/// assert!(Origin::parse("https://api.example.com/v1").is_err(), "a path is not part of an origin");
/// # Ok::<(), tower_sliding_jwt::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    secure: bool,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`, optionally with a trailing `/` (the form
    /// of a browser's `Origin` header).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidOrigin`] for anything else: no scheme, a
    /// scheme other than `http`/`https`, no host, user info (`user@host`), a
    /// path, a query, a fragment, or a port that is not a number up to 65535.
    pub fn parse(origin: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::new(ConfigErrorKind::InvalidOrigin);
        if origin.contains(['#', '@']) {
            return Err(invalid());
        }
        let uri: Uri = origin
            .parse()
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidOrigin, e))?;
        if uri
            .path_and_query()
            .is_some_and(|pq| !matches!(pq.as_str(), "" | "/"))
        {
            return Err(invalid());
        }
        Self::of(&uri).ok_or_else(invalid)
    }

    /// The origin a request URI goes to; `None` for a relative URI, another
    /// scheme, or a malformed port.
    fn of(uri: &Uri) -> Option<Self> {
        let secure = secure(uri)?;
        let host = uri.host().filter(|h| !h.is_empty())?;
        Some(Self {
            secure,
            host: host.to_ascii_lowercase(),
            port: port(uri, secure)?,
        })
    }

    /// Whether a request for `uri` goes to this origin. A relative URI (no
    /// scheme or no authority) never does.
    pub(crate) fn matches(&self, uri: &Uri) -> bool {
        secure(uri) == Some(self.secure)
            && uri
                .host()
                .is_some_and(|host| host.eq_ignore_ascii_case(&self.host))
            && port(uri, self.secure) == Some(self.port)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        if self.secure { "https" } else { "http" }
    }

    /// The host, in lowercase (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when none was given.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Origin {
    type Err = ConfigError;

    fn from_str(origin: &str) -> Result<Self, Self::Err> {
        Self::parse(origin)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme(), self.host, self.port)
    }
}

fn secure(uri: &Uri) -> Option<bool> {
    match uri.scheme_str()? {
        s if s.eq_ignore_ascii_case("https") => Some(true),
        s if s.eq_ignore_ascii_case("http") => Some(false),
        _ => None,
    }
}

/// The port a request for `uri` connects to: the explicit one, or the
/// scheme's default when there is none (or it is empty, RFC 3986 §3.2.3).
/// `None` when the port is not a number up to 65535, so such a URI matches
/// no origin.
fn port(uri: &Uri, secure: bool) -> Option<u16> {
    let authority = uri.authority()?.as_str();
    // The host and port follow any user info; an IPv6 host ends with `]`.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = host_port.rfind(']').map_or(0, |i| i + 1);
    match host_port[after_host..].rfind(':') {
        None => Some(if secure { 443 } else { 80 }),
        Some(colon) => match &host_port[after_host + colon + 1..] {
            "" => Some(if secure { 443 } else { 80 }),
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok(),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises_origins() {
        let o = origin("https://API.Example.com");
        assert_eq!(
            (o.scheme(), o.host(), o.port()),
            ("https", "api.example.com", 443)
        );
        assert_eq!(o, origin("https://api.example.com:443/"));
        assert_eq!(o, origin("HTTPS://api.example.com:"));
        assert_eq!(origin("http://127.0.0.1").port(), 80);
        assert_eq!(origin("http://[::1]:8080").host(), "[::1]");
        assert_eq!(origin("http://[::1]:8080").port(), 8080);
        assert_eq!(
            origin("http://example.com:8080").to_string(),
            "http://example.com:8080"
        );
        assert_ne!(origin("http://example.com"), origin("https://example.com"));
        assert_ne!(
            origin("http://example.com"),
            origin("http://example.com:8080")
        );
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "",
            "/",
            "example.com",
            "example.com:443",
            "ftp://example.com",
            "ws://example.com",
            "https://",
            "https://user@example.com",
            "https://user:pw@example.com",
            "https://example.com/api",
            "https://example.com/?q=1",
            "https://example.com?q=1",
            "https://example.com/#top",
            "https://example.com:99999",
            "https://example.com:8o",
            "https://exa mple.com",
        ] {
            let error = Origin::parse(bad).expect_err(bad);
            assert_eq!(error.kind(), ConfigErrorKind::InvalidOrigin, "{bad}");
        }
    }

    #[test]
    fn matches_only_the_same_scheme_host_and_port() {
        let o = origin("https://api.example.com");
        for same in [
            "https://api.example.com/v1/me?x=1",
            "https://API.EXAMPLE.COM/",
            "https://api.example.com:443/",
            "HTTPS://api.example.com",
        ] {
            assert!(o.matches(&uri(same)), "{same}");
        }
        for other in [
            "/v1/me",
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://api.example.com.evil.test/",
            "https://evil.test/",
            "https://api.example.com@evil.test/",
            "https://api.example.com:99999/",
            "https://api.example.com./",
        ] {
            assert!(!o.matches(&uri(other)), "{other}");
        }
        let v6 = origin("http://[::1]:50051");
        assert!(v6.matches(&uri("http://[::1]:50051/x")));
        assert!(!v6.matches(&uri("http://[::1]/x")));
    }
}
