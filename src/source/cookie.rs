//! [`CookieSource`]: a cookie carrying the token, renewed with `Set-Cookie`.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use super::TokenSource;
use super::syntax::{as_token, sensitive};
use crate::claims::Claims;
use crate::clock::push_http_date;
use crate::error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
use crate::reject::{Rejection, RejectionKind};
use crate::token::IssuedToken;
use crate::token::jws::is_compact;

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level cross-site navigations (the default).
    #[default]
    Lax,
    /// Sent on all requests; browsers require `Secure` with it.
    None,
}

/// A cookie carrying the token; renewed tokens are written with `Set-Cookie`.
///
/// Defaults: `HttpOnly; Secure; SameSite=Lax; Path=/`, `Max-Age` equal to the
/// token's remaining lifetime and, beside it, `Expires` at the token's `exp`
/// (an HTTP date by the layer's clock, for clients that ignore `Max-Age`). A cookie sent twice (e.g. planted for a parent
/// domain) is a 400 `invalid_request`: the layer will not guess which is real.
/// An empty cookie value counts as no token.
#[derive(Debug, Clone)]
pub struct CookieSource {
    name: String,
    http_only: bool,
    secure: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
}

fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn is_attribute_value(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

impl CookieSource {
    /// A cookie named `name`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidCookie`] for a name that is not an RFC 6265 token.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        if !is_cookie_token(name) {
            return Err(ConfigErrorKind::InvalidCookie.into());
        }
        Ok(Self {
            name: name.to_owned(),
            http_only: true,
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
        })
    }

    /// Whether to send `Secure` (default `true`; turn off only for plain-HTTP
    /// development).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether to send `HttpOnly` (default `true`).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `Path` attribute (default `/`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidCookie`] for an empty value or one with `;` or
    /// non-printable characters.
    pub fn with_path(mut self, path: &str) -> Result<Self, ConfigError> {
        if !is_attribute_value(path) {
            return Err(ConfigErrorKind::InvalidCookie.into());
        }
        self.path = path.to_owned();
        Ok(self)
    }

    /// The `Domain` attribute (default: none, a host-only cookie).
    ///
    /// # Errors
    /// As [`CookieSource::with_path`].
    pub fn with_domain(mut self, domain: &str) -> Result<Self, ConfigError> {
        if !is_attribute_value(domain) {
            return Err(ConfigErrorKind::InvalidCookie.into());
        }
        self.domain = Some(domain.to_owned());
        Ok(self)
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Set-Cookie` value for a freshly issued login token (marked
    /// sensitive): `Max-Age` is the token's lifetime and `Expires` its `exp`.
    ///
    /// ```
    /// use tower_sliding_jwt::{CookieSource, Key, ManualClock, SlidingJwtLayer, StandardClaims};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cookie = CookieSource::new("session")?;
    /// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
    ///     .with_clock(ManualClock::new(784_111_777))
    ///     .with_token_source(cookie.clone())
    ///     .build()?;
    /// let issued = layer.issuer().issue(StandardClaims::new("alice", Default::default()))?;
    /// let value = cookie.set_cookie_for(&issued)?;
    /// assert!(value.to_str()?.ends_with("; Max-Age=3600; Expires=Sun, 06 Nov 1994 09:49:37 GMT"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`set_cookie`](Self::set_cookie).
    pub fn set_cookie_for<C: Claims>(
        &self,
        issued: &IssuedToken<C>,
    ) -> Result<HeaderValue, IssueError> {
        self.set_cookie_until(issued.token(), issued.lifetime(), issued.expires_at())
    }

    /// A `Set-Cookie` value carrying `token` for `max_age` seconds (marked
    /// sensitive), without `Expires` (it has no clock to compute one from;
    /// [`set_cookie_for`](Self::set_cookie_for) writes both).
    ///
    /// # Errors
    /// [`IssueErrorKind::NotCompact`] when `token` is not a compact JWS (three
    /// base64url segments separated by dots): nothing else, such as extra
    /// cookie attributes smuggled in after a `;`, is ever written.
    pub fn set_cookie(&self, token: &str, max_age: i64) -> Result<HeaderValue, IssueError> {
        if !is_compact(token) {
            return Err(IssueError::new(IssueErrorKind::NotCompact, None));
        }
        Ok(self.cookie_value(token, max_age.max(0), None))
    }

    fn set_cookie_until(
        &self,
        token: &str,
        max_age: i64,
        expires_at: i64,
    ) -> Result<HeaderValue, IssueError> {
        if !is_compact(token) {
            return Err(IssueError::new(IssueErrorKind::NotCompact, None));
        }
        Ok(self.cookie_value(token, max_age.max(0), Some(expires_at)))
    }

    /// A `Set-Cookie` value that deletes the cookie (empty value, `Max-Age=0`,
    /// `Expires` at the Unix epoch).
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_value("", 0, Some(0))
    }

    fn cookie_value(&self, token: &str, max_age: i64, expires_at: Option<i64>) -> HeaderValue {
        let mut value = format!("{}={}", self.name, token);
        if self.http_only {
            value.push_str("; HttpOnly");
        }
        if self.secure {
            value.push_str("; Secure");
        }
        value.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        value.push_str("; Path=");
        value.push_str(&self.path);
        if let Some(domain) = &self.domain {
            value.push_str("; Domain=");
            value.push_str(domain);
        }
        value.push_str("; Max-Age=");
        value.push_str(&max_age.to_string());
        if let Some(expires_at) = expires_at {
            value.push_str("; Expires=");
            push_http_date(expires_at, &mut value);
        }
        // Name, attributes and token characters are all checked printable ASCII.
        sensitive(value).unwrap_or_else(|| HeaderValue::from_static(""))
    }
}

impl TokenSource for CookieSource {
    fn extract<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Rejection> {
        let mut found = None;
        for header in headers.get_all(COOKIE) {
            for pair in header.as_bytes().split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if pair[..eq].trim_ascii() != self.name.as_bytes() {
                    continue;
                }
                let mut value = pair[eq + 1..].trim_ascii();
                if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                    value = &value[1..value.len() - 1];
                }
                if found.is_some() {
                    return Err(Rejection::new(RejectionKind::DuplicateCredentials));
                }
                found = Some(value);
            }
        }
        match found {
            None | Some(b"") => Ok(None),
            Some(value) => as_token(value).map(Some),
        }
    }

    fn deliver(&self, token: &str, max_age: i64, headers: &mut HeaderMap) {
        if let Ok(value) = self.set_cookie(token, max_age) {
            headers.append(SET_COOKIE, value);
        }
    }

    fn deliver_at(&self, token: &str, now: i64, expires_at: i64, headers: &mut HeaderMap) {
        let max_age = expires_at.saturating_sub(now);
        if let Ok(value) = self.set_cookie_until(token, max_age, expires_at) {
            headers.append(SET_COOKIE, value);
        }
    }

    fn end_session(&self, headers: &mut HeaderMap) {
        headers.append(SET_COOKIE, self.clear_cookie());
    }

    fn is_ambient(&self) -> bool {
        true
    }

    fn is_delivered(&self, headers: &HeaderMap) -> bool {
        headers.get_all(SET_COOKIE).iter().any(|v| {
            let v = v.as_bytes();
            v.len() > self.name.len()
                && v.starts_with(self.name.as_bytes())
                && v[self.name.len()] == b'='
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::{headers, kind};

    #[test]
    fn cookie_parsing() {
        let c = CookieSource::new("session").unwrap();
        let h = headers(&[("cookie", b"a=1; session=x.y.z; b=2")]);
        assert_eq!(kind(c.extract(&h)), Ok(Some("x.y.z")));
        let h = headers(&[("cookie", b"a=1"), ("cookie", b"session=\"x.y.z\"")]);
        assert_eq!(kind(c.extract(&h)), Ok(Some("x.y.z")));
        let h = headers(&[("cookie", b"sessionx=1; xsession=2")]);
        assert_eq!(kind(c.extract(&h)), Ok(None));
        let h = headers(&[("cookie", b"session=")]);
        assert_eq!(kind(c.extract(&h)), Ok(None));
        let h = headers(&[("cookie", b"session=a; session=b")]);
        assert_eq!(
            kind(c.extract(&h)),
            Err(RejectionKind::DuplicateCredentials)
        );
        let h = headers(&[("cookie", b"session=a\xffb")]);
        assert_eq!(
            kind(c.extract(&h)),
            Err(RejectionKind::MalformedCredentials)
        );
    }

    #[test]
    fn set_cookie_attributes() {
        let c = CookieSource::new("session").unwrap();
        let v = c.set_cookie("x.y.z", 100).unwrap();
        assert!(v.is_sensitive());
        assert_eq!(
            v,
            "session=x.y.z; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=100"
        );
        let c = c
            .with_secure(false)
            .with_same_site(SameSite::Strict)
            .with_domain("example.com")
            .unwrap();
        assert_eq!(
            c.clear_cookie(),
            "session=; HttpOnly; SameSite=Strict; Path=/; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let mut headers = HeaderMap::new();
        c.deliver_at("x.y.z", 784_111_777, 784_111_777 + 60, &mut headers);
        assert_eq!(
            headers[SET_COOKIE],
            "session=x.y.z; HttpOnly; SameSite=Strict; Path=/; Domain=example.com; Max-Age=60; Expires=Sun, 06 Nov 1994 08:50:37 GMT"
        );
        assert!(CookieSource::new("a;b").is_err());
        assert!(CookieSource::new("s").unwrap().with_path("/a;b").is_err());
    }

    #[test]
    fn delivery_detection() {
        let c = CookieSource::new("session").unwrap();
        let h = headers(&[("set-cookie", b"sessionid=1"), ("set-cookie", b"other=2")]);
        assert!(!c.is_delivered(&h));
        let h = headers(&[("set-cookie", b"session=abc; Path=/")]);
        assert!(c.is_delivered(&h));
    }
}
