//! The `htu` comparison (RFC 9449 §4.3): both URLs in their RFC 3986
//! syntax- and scheme-based normal form (lowercase scheme and host, no
//! default port, percent-encodings normalised, dot segments removed), without
//! query and fragment.

use http::{HeaderMap, Uri};

/// The longest URL compared; a longer `htu` is refused unread.
pub(crate) const MAX_URL_BYTES: usize = 4096;

/// The normal form of an absolute `http`/`https` URL, without query and
/// fragment; `None` when it is not one (another scheme, userinfo, a bad
/// port or percent-encoding, a byte outside printable ASCII).
pub(crate) fn normalise(url: &str) -> Option<String> {
    if url.len() > MAX_URL_BYTES {
        return None;
    }
    let url = url.split('#').next().unwrap_or_default();
    let url = url.split('?').next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    push_authority(&mut out, authority, default_port)?;
    let path = normalise_escapes(if path.is_empty() { "/" } else { path })?;
    out.push_str(&remove_dot_segments(&path));
    Some(out)
}

/// The URL a request was sent to, for comparison with a proof's `htu`: the
/// configured public base (scheme, host, port and path prefix) followed by
/// the request's path, or, without one, the request's own scheme (`http`
/// when the request line has none) and authority (`:authority`, else the
/// single `Host` header). Forwarded headers are never read.
pub(crate) fn of_request(base: Option<&str>, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let path = uri.path();
    // A path the router would see differently from its normal form (dot
    // segments, raw or escaped) is refused rather than compared.
    let escaped = normalise_escapes(path)?;
    if escaped
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return None;
    }
    let url = match base {
        Some(base) => format!("{base}{path}"),
        None => {
            let scheme = uri.scheme_str().unwrap_or("http");
            let authority = match uri.authority() {
                Some(authority) => authority.as_str(),
                None => {
                    let mut hosts = headers.get_all(http::header::HOST).iter();
                    let host = hosts.next()?;
                    if hosts.next().is_some() {
                        return None;
                    }
                    // An authority and nothing else: a `Host` carrying a
                    // path, query or fragment would rewrite the URL.
                    let host = host.to_str().ok()?;
                    if host.contains(['/', '?', '#', '@'])
                        || http::uri::Authority::try_from(host).is_err()
                    {
                        return None;
                    }
                    host
                }
            };
            format!("{scheme}://{authority}{path}")
        }
    };
    normalise(&url)
}

/// Checks a configured public base URL and answers its normal form without
/// a trailing slash, so that the request path follows it.
pub(crate) fn base(url: &str) -> Option<String> {
    if url.contains(['?', '#']) {
        return None;
    }
    let normal = normalise(url)?;
    Some(normal.trim_end_matches('/').to_owned())
}

fn push_authority(out: &mut String, authority: &str, default_port: &str) -> Option<()> {
    if authority.is_empty() || authority.contains('@') || !authority.bytes().all(printable) {
        return None;
    }
    // An IPv6 literal keeps its colons inside the brackets.
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['%', '/', '\\']) {
        return None;
    }
    out.push_str(&host.to_ascii_lowercase());
    match port {
        None | Some("") => {}
        Some(port) => {
            if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let number: u16 = port.parse().ok()?;
            let number = number.to_string();
            if number != default_port {
                out.push(':');
                out.push_str(&number);
            }
        }
    }
    Some(())
}

fn printable(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodings of unreserved characters decoded, the others in
/// uppercase hex; `None` for a broken escape or a byte that is not
/// printable ASCII.
fn normalise_escapes(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let value = u8::from_str_radix(hex, 16).ok()?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            if unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else if printable(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    let mut trailing = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => trailing = last,
            ".." => {
                segments.pop();
                trailing = last;
            }
            _ => {
                segments.push(segment);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let same = [
            (
                "https://API.Example.com:443/a/b",
                "https://api.example.com/a/b",
            ),
            ("HTTP://h:80/x?q=1#f", "http://h/x"),
            ("http://h", "http://h/"),
            ("http://h:8080/%7euser/%2f", "http://h:8080/~user/%2F"),
            ("http://h/a/./b/../c", "http://h/a/c"),
            ("http://h/a/..", "http://h/"),
            ("http://[::1]:3000/p", "http://[::1]:3000/p"),
            ("http://h:/p", "http://h/p"),
            ("http://h:0080/p", "http://h/p"),
        ];
        for (url, normal) in same {
            assert_eq!(normalise(url).as_deref(), Some(normal), "{url}");
        }
        for bad in [
            "ftp://h/",
            "http://user@h/",
            "http:///p",
            "http://h:99999/",
            "http://h:8x/",
            "http://h/%zz",
            "http://h/%4",
            "http://h/a b",
            "http://h/\u{e9}",
            "/relative",
            "http://h%2f/",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        assert_eq!(normalise(&format!("http://h/{}", "a".repeat(5000))), None);
    }

    #[test]
    fn request_urls_from_authority_or_host_never_forwarded_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "Example.com:80".parse().unwrap());
        headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
        let uri: Uri = "/me?x=1".parse().unwrap();
        assert_eq!(
            of_request(None, &uri, &headers).as_deref(),
            Some("http://example.com/me")
        );
        let absolute: Uri = "https://h2.example/me".parse().unwrap();
        assert_eq!(
            of_request(None, &absolute, &headers).as_deref(),
            Some("https://h2.example/me")
        );
        let base = base("https://api.example.com/v1/").unwrap();
        assert_eq!(
            of_request(Some(&base), &uri, &headers).as_deref(),
            Some("https://api.example.com/v1/me")
        );
        for host in [
            "api.test?",
            "api.test#",
            "h/transfer?",
            "u@api.test",
            "api.test/",
        ] {
            let mut crafted = HeaderMap::new();
            crafted.insert("host", host.parse().unwrap());
            assert_eq!(of_request(None, &uri, &crafted), None, "Host: {host}");
        }
        for path in ["/x/../me", "/x/%2e%2e/me", "/./me", "/x/%2E/me"] {
            let dotted: Uri = path.parse().unwrap();
            assert_eq!(of_request(None, &dotted, &headers), None, "{path}");
        }
        headers.append("host", "other".parse().unwrap());
        assert_eq!(of_request(None, &uri, &headers), None, "two Host headers");
        assert_eq!(of_request(None, &uri, &HeaderMap::new()), None, "no host");
        assert!(super::base("https://h/?q").is_none());
    }
}
