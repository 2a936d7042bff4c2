//! Where tokens are read from, and where renewed tokens are written.
//!
//! A [`TokenSource`] reads a token from the request headers and writes a
//! renewed token on the same channel in the response. The layer tries its
//! sources in order and uses the first that finds a token; the renewed token
//! goes back through that same source. The query string is never read.

use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::claims::Claims;
use crate::clock::push_http_date;
use crate::error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
use crate::issuer::IssuedToken;
use crate::reject::{Rejection, RejectionKind};

/// Reads a token from a request and writes a renewed one to the response.
///
/// Implement it for a channel this crate does not know; a source never sees the
/// query string unless it is handed one itself.
pub trait TokenSource: Send + Sync + 'static {
    /// The token in `headers`, if this source finds one.
    ///
    /// `Ok(None)` means "not here" (the next source is tried). An `Err` stops
    /// the search and refuses the request; use
    /// [`RejectionKind::MalformedCredentials`] or
    /// [`RejectionKind::DuplicateCredentials`] so the client gets a 400
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

/// Headers that must never carry a token.
fn forbidden(name: &HeaderName) -> bool {
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

fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    let name = HeaderName::try_from(name)
        .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidHeaderName, e))?;
    if forbidden(&name) {
        return Err(ConfigErrorKind::InvalidHeaderName.into());
    }
    Ok(name)
}

/// Whether `b` is a base64url character (`A-Z a-z 0-9 - _`). Branch-free,
/// so that checks over whole chunks compile to vector instructions: every
/// request validates its token this way.
#[inline(always)]
fn base64url_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// Whether every byte passes `valid`: whole 32-byte chunks without early
/// exits (vectorized), stopping at the first bad chunk.
#[inline(always)]
fn all_bytes(bytes: &[u8], valid: impl Fn(u8) -> bool) -> bool {
    bytes
        .chunks(32)
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & valid(b)))
}

/// `token68` (RFC 7235): token68 characters (a superset of what a JWT uses),
/// then optional `=` padding.
fn is_token68(bytes: &[u8]) -> bool {
    let body = bytes
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(&[][..], |last| &bytes[..=last]);
    !body.is_empty() && all_bytes(body, token68_char)
}

/// Whether `b` is a token68 character (`A-Z a-z 0-9 - . _ ~ + /`): two
/// range checks and three comparisons, branch-free (vectorized like
/// [`base64url_char`]). `-` `.` `/` and the digits are one range, 0x2D to 0x39.
#[inline(always)]
fn token68_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let dash_to_nine = b.wrapping_sub(b'-') < 13;
    letter | dash_to_nine | (b == b'_') | (b == b'~') | (b == b'+')
}

fn single_value<'a>(
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

fn as_token(bytes: &[u8]) -> Result<&str, Rejection> {
    if !is_token68(bytes) {
        return Err(Rejection::new(RejectionKind::MalformedCredentials));
    }
    std::str::from_utf8(bytes).map_err(|_| Rejection::new(RejectionKind::MalformedCredentials))
}

/// Whether `token` is a compact JWS: three non-empty base64url segments
/// separated by dots. Nothing else is ever written into a response header.
pub(crate) fn is_compact_jws(token: &str) -> bool {
    let mut segments = token.split('.');
    let compact = |segment: Option<&str>| {
        segment.is_some_and(|s| !s.is_empty() && all_bytes(s.as_bytes(), base64url_char))
    };
    compact(segments.next())
        && compact(segments.next())
        && compact(segments.next())
        && segments.next().is_none()
}
fn sensitive(value: String) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

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
}

impl Default for BearerHeader {
    fn default() -> Self {
        Self {
            request: AUTHORIZATION,
            response: AUTHORIZATION,
        }
    }
}

impl BearerHeader {
    /// Reads `Authorization`, renews into `Authorization`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes renewed tokens into `name` instead (e.g. `x-renewed-token`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidHeaderName`] for an invalid name or one that
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
        if !scheme.eq_ignore_ascii_case(b"bearer") {
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
        if !is_compact_jws(token) {
            return;
        }
        let mut value = String::with_capacity(7 + token.len());
        value.push_str("Bearer ");
        value.push_str(token);
        if let Some(value) = sensitive(value) {
            headers.insert(self.response.clone(), value);
        }
    }

    fn is_delivered(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.response)
    }
}

/// A custom header carrying the bare token, e.g. `X-Auth-Token: <token>`;
/// renewed tokens go back in the same header.
#[derive(Debug, Clone)]
pub struct HeaderSource {
    name: HeaderName,
}

impl HeaderSource {
    /// Reads and writes the header `name`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidHeaderName`] as for [`BearerHeader::with_response_header`].
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            name: header_name(name)?,
        })
    }
}

impl TokenSource for HeaderSource {
    fn extract<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Rejection> {
        match single_value(headers, &self.name)? {
            Some(value) => as_token(value.as_bytes()).map(Some),
            None => Ok(None),
        }
    }

    fn deliver(&self, token: &str, _max_age: i64, headers: &mut HeaderMap) {
        if !is_compact_jws(token) {
            return;
        }
        if let Some(value) = sensitive(token.to_owned()) {
            headers.insert(self.name.clone(), value);
        }
    }

    fn is_delivered(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.name)
    }
}

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
        if !is_compact_jws(token) {
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
        if !is_compact_jws(token) {
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

    fn headers(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn kind(r: Result<Option<&str>, Rejection>) -> Result<Option<&str>, RejectionKind> {
        r.map_err(|e| e.kind())
    }

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
            assert!(!is_compact_jws(bad), "{bad:?}");
            assert!(cookie.set_cookie(bad, 60).is_err(), "{bad:?}");
            let mut headers = HeaderMap::new();
            cookie.deliver(bad, 60, &mut headers);
            BearerHeader::new().deliver(bad, 60, &mut headers);
            HeaderSource::new("x-token")
                .unwrap()
                .deliver(bad, 60, &mut headers);
            assert!(headers.is_empty(), "{bad:?} was written");
        }
        assert!(is_compact_jws("eyJh.eyJi.c2ln-_"));
        let mut headers = HeaderMap::new();
        cookie.deliver("eyJh.eyJi.c2ln", 60, &mut headers);
        BearerHeader::new().deliver("eyJh.eyJi.c2ln", 60, &mut headers);
        assert_eq!(headers.len(), 2);
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
