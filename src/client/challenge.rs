//! Reading the server's answer: whether it refused the token the request
//! carried, and the renewed token a response header holds.

use http::{HeaderValue, StatusCode};

/// Whether the response is the server refusing the token the request
/// carried (rule 16): a `Bearer` challenge with `error="invalid_token"`
/// (RFC 6750 §3.1) on a 401, or on a gRPC `UNAUTHENTICATED` (as the server
/// layer's [`GrpcResponder`](crate::GrpcResponder) sends it). Any other 401
/// or `UNAUTHENTICATED` — a wrong password at a login route, a handler's own
/// refusal — says nothing about the session.
pub(super) fn refused_the_token(
    status: StatusCode,
    headers: &http::HeaderMap,
    grpc: Option<&[u8]>,
) -> bool {
    (status == StatusCode::UNAUTHORIZED || grpc == Some(b"16"))
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|value| is_invalid_token(value.as_bytes()))
}

/// Whether a `WWW-Authenticate` value holds a `Bearer` challenge with the
/// parameter `error="invalid_token"` (RFC 9110 §11.6.1: challenges and their
/// parameters are comma-separated, values are tokens or quoted strings, and
/// a comma inside a quoted string separates nothing).
fn is_invalid_token(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut bearer = false;
    for element in split_outside_quotes(value) {
        let element = element.trim_matches([' ', '\t']);
        let name_end = element.find(['=', ' ', '\t']).unwrap_or(element.len());
        let (name, rest) = element.split_at(name_end);
        let rest = rest.trim_start_matches([' ', '\t']);
        let parameter = if let Some(value) = rest.strip_prefix('=') {
            // `name=value` of the current challenge.
            Some((name, value))
        } else {
            // A new challenge: `scheme`, maybe followed by its first parameter.
            bearer = name.eq_ignore_ascii_case("bearer");
            let name_end = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_end);
            after
                .trim_start_matches([' ', '\t'])
                .strip_prefix('=')
                .map(|value| (name, value))
        };
        if let Some((name, value)) = parameter
            && bearer
            && name.eq_ignore_ascii_case("error")
            && unquote(value.trim_matches([' ', '\t'])) == Some("invalid_token")
        {
            return true;
        }
    }
    false
}

/// The elements of a comma-separated header value; commas inside quoted
/// strings (with `\` escapes) do not split.
fn split_outside_quotes(value: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut parts = Vec::new();
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

/// A parameter value: a token as it is, or a well-formed quoted string's
/// content; `None` for anything else.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(inner) => {
            let inner = inner.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => (!value.is_empty() && !value.contains(['"', ' ', '\t'])).then_some(value),
    }
}

/// The token in a response header: `Bearer <token>` (or `DPoP <token>`
/// when `dpop`; scheme case-insensitive), or the bare token when
/// `bearer_only` is false.
pub(super) fn renewed_token(value: &HeaderValue, bearer_only: bool, dpop: bool) -> Option<&str> {
    let value = value.to_str().ok()?.trim_matches(' ');
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer")
                || (dpop && scheme.eq_ignore_ascii_case("dpop")) =>
        {
            Some(token.trim_start_matches(' '))
        }
        Some(_) => None,
        None if bearer_only => None,
        None => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_invalid_token_challenge_is_a_refusal() {
        for refusal in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="api", error="invalid_token", error_description="x""#,
            r#"bearer error=invalid_token"#,
            r#"Basic realm="x", Bearer error="invalid_token""#,
            r#"Bearer realm="a, b", error = "invalid_token""#,
        ] {
            assert!(is_invalid_token(refusal.as_bytes()), "{refusal}");
        }
        for other in [
            "",
            "Bearer",
            r#"Basic realm="login""#,
            r#"Bearer error="insufficient_scope""#,
            r#"Bearer realm="api, error=invalid_token""#,
            r#"Bearer error="insufficient_scope", error_description="x, error=invalid_token""#,
            r#"BearerV2, error="invalid_token""#,
            r#"BearerV2 error="invalid_token""#,
            r#"Bearer error=""invalid_token"""#,
            r#"Bearer error_description="invalid_token""#,
            r#"Basic error="invalid_token""#,
        ] {
            assert!(!is_invalid_token(other.as_bytes()), "{other}");
        }
    }
}
