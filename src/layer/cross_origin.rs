//! Cross-origin protection for tokens a browser attaches by itself
//! (cookies), modelled on Go 1.25's `net/http.CrossOriginProtection`.
//!
//! A cookie travels with every request the browser makes to the site, also
//! those a foreign page triggers (a form post, a `fetch` with credentials).
//! For unsafe methods (anything but `GET`, `HEAD`, `OPTIONS`) carrying a
//! cookie-borne token, the layer asks the browser where the request came from:
//!
//! 1. `Sec-Fetch-Site: same-origin` or `none` (typed URL, bookmark) passes;
//!    any other value (`cross-site`, `same-site`) is refused unless `Origin`
//!    is a trusted origin.
//! 2. Without `Sec-Fetch-Site` (older browsers), an `Origin` header must name
//!    the request's own host or a trusted origin.
//! 3. With neither header the request is not from a browser (or is a
//!    same-origin request of a very old one) and passes.
//!
//! Refused requests get 403 ([`RejectionKind::CrossSiteRequest`]); the handler
//! is not called. Bearer tokens are never checked: a foreign page cannot make
//! the browser attach them.
//!
//! [`RejectionKind::CrossSiteRequest`]: crate::RejectionKind::CrossSiteRequest

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Method, Uri};

use crate::error::ConfigError;
use crate::origin::Origin;

/// The cross-site check and its trusted origins.
#[derive(Debug, Clone)]
pub(crate) struct CrossOrigin {
    pub(crate) enabled: bool,
    trusted: Vec<Origin>,
}

impl Default for CrossOrigin {
    fn default() -> Self {
        Self {
            enabled: true,
            trusted: Vec::new(),
        }
    }
}

impl CrossOrigin {
    /// Adds a trusted origin, checked: `scheme://host[:port]` and nothing more.
    pub(crate) fn trust(&mut self, origin: &str) -> Result<(), ConfigError> {
        let origin = Origin::parse(origin)?;
        if !self.trusted.contains(&origin) {
            self.trusted.push(origin);
        }
        Ok(())
    }

    /// Whether a request whose token came from a cookie may proceed.
    pub(crate) fn allows(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        if !self.enabled || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return true;
        }
        let origin = headers.get(ORIGIN).map(|v| v.as_bytes());
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"same-origin" | b"none") => return true,
            Some(_) => return origin.is_some_and(|o| self.is_trusted(o)),
            None => {}
        }
        let Some(origin) = origin else {
            // Neither header: not a browser, or a same-origin request.
            return true;
        };
        same_host(origin, uri, headers) || self.is_trusted(origin)
    }

    fn is_trusted(&self, origin: &[u8]) -> bool {
        !self.trusted.is_empty()
            && std::str::from_utf8(origin)
                .ok()
                .and_then(|origin| Origin::parse(origin).ok())
                .is_some_and(|o| self.trusted.contains(&o))
    }
}

/// Whether `Origin`'s `host[:port]` is the request's own `Host` (or, for
/// HTTP/2, the URI's authority), as Go compares them.
fn same_host(origin: &[u8], uri: &Uri, headers: &HeaderMap) -> bool {
    let Some(authority) = origin
        .iter()
        .position(|&b| b == b':')
        .filter(|&i| origin[i + 1..].starts_with(b"//"))
        .map(|i| &origin[i + 3..])
    else {
        return false;
    };
    let host = match headers.get(HOST) {
        Some(host) => host.as_bytes(),
        None => match uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => return false,
        },
    };
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn allows(check: &CrossOrigin, method: Method, pairs: &[(&'static str, &'static str)]) -> bool {
        check.allows(&method, &Uri::from_static("/logout"), &headers(pairs))
    }

    #[test]
    fn the_go_rules() {
        let check = CrossOrigin::default();
        let host = ("host", "app.example");
        for safe in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(allows(&check, safe, &[("sec-fetch-site", "cross-site")]));
        }
        let post = || Method::POST;
        assert!(allows(
            &check,
            post(),
            &[host, ("sec-fetch-site", "same-origin")]
        ));
        assert!(allows(&check, post(), &[host, ("sec-fetch-site", "none")]));
        assert!(!allows(
            &check,
            post(),
            &[host, ("sec-fetch-site", "cross-site")]
        ));
        assert!(!allows(
            &check,
            post(),
            &[host, ("sec-fetch-site", "same-site")]
        ));
        assert!(!allows(
            &check,
            Method::DELETE,
            &[host, ("sec-fetch-site", "cross-site")]
        ));
        // No Sec-Fetch-Site: Origin must be the request's own host.
        assert!(allows(
            &check,
            post(),
            &[host, ("origin", "https://app.example")]
        ));
        assert!(allows(
            &check,
            post(),
            &[host, ("origin", "https://APP.example")]
        ));
        assert!(!allows(
            &check,
            post(),
            &[host, ("origin", "https://evil.example")]
        ));
        assert!(!allows(&check, post(), &[host, ("origin", "null")]));
        assert!(!allows(
            &check,
            post(),
            &[host, ("origin", "https://app.example.evil")]
        ));
        assert!(
            !allows(&check, post(), &[("origin", "https://app.example")]),
            "no host to match"
        );
        // Neither header: not a browser.
        assert!(allows(&check, post(), &[host]));
        // HTTP/2: the authority is in the URI.
        let uri = Uri::from_static("https://app.example/logout");
        assert!(check.allows(
            &post(),
            &uri,
            &headers(&[("origin", "https://app.example")])
        ));
    }

    #[test]
    fn trusted_origins_and_opt_out() {
        let mut check = CrossOrigin::default();
        check.trust("https://Admin.Example:443").unwrap();
        let host = ("host", "app.example");
        assert!(allows(
            &check,
            Method::POST,
            &[host, ("origin", "https://admin.example")]
        ));
        assert!(allows(
            &check,
            Method::POST,
            &[
                host,
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.example")
            ]
        ));
        assert!(!allows(
            &check,
            Method::POST,
            &[host, ("origin", "http://admin.example")]
        ));
        assert!(!allows(
            &check,
            Method::POST,
            &[host, ("origin", "https://admin.example:8443")]
        ));
        check.enabled = false;
        assert!(allows(
            &check,
            Method::POST,
            &[host, ("sec-fetch-site", "cross-site")]
        ));
    }
}
