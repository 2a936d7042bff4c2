//! Why a request was refused, and how the refusal is written.
//!
//! A refusal is a response, never an error of the service: the layer hands a
//! [`Rejection`] to a [`Responder`], which writes an RFC 6750 challenge for
//! HTTP ([`HttpResponder`]) or a gRPC `UNAUTHENTICATED` status
//! ([`GrpcResponder`]). The rejection itself is also put into the response's
//! extensions, so outer layers and tests can read the precise reason.
//! Neither the response nor the rejection's `Debug`/`Display` ever contains the
//! token.

use std::fmt;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::error::{ConfigError, ConfigErrorKind};

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
}

/// The precise reason for a [`Rejection`].
///
/// Grouped by the RFC 6750 error it answers with: [`MissingCredentials`] has no
/// error code, the `*Credentials` request errors answer `invalid_request` (400)
/// and every token error answers `invalid_token` (401).
///
/// [`MissingCredentials`]: RejectionKind::MissingCredentials
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectionKind {
    /// The request carries no token at all.
    #[error("no credentials")]
    MissingCredentials,
    /// A credential header is not a well-formed `Bearer` value (or cookie).
    #[error("malformed credentials")]
    MalformedCredentials,
    /// More than one credential where exactly one is allowed.
    #[error("duplicate credentials")]
    DuplicateCredentials,
    /// The token is larger than the configured limit; it was not decoded.
    #[error("token too large")]
    TokenTooLarge,
    /// Not three base64url segments holding a JSON header and JSON claims.
    #[error("malformed token")]
    MalformedToken,
    /// The `alg` is not used by any configured key (including `none`).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No configured key has the token's `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The header lists `crit` extensions, none of which this crate understands.
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// The header's `typ` is not the required one.
    #[error("wrong token type")]
    WrongType,
    /// The claims do not deserialize into the claims type (for example a missing
    /// or non-integer `exp`).
    #[error("invalid claims")]
    InvalidClaims,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is missing or names none of the configured audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// The session is older than the session cap (`auth_time + max_session`).
    #[error("session expired")]
    SessionExpired,
    /// The session, the token or the subject's sessions were revoked.
    #[error("token revoked")]
    Revoked,
    /// The revalidation hook refused the session (e.g. the user was disabled).
    #[error("session rejected on revalidation")]
    SessionRejected,
    /// An unsafe request (e.g. `POST`) carrying a cookie-borne token came from
    /// another site (`Sec-Fetch-Site`, or a foreign `Origin`): 403, the handler
    /// is not called. See [`SlidingJwtBuilder::with_cross_origin_protection`](crate::SlidingJwtBuilder::with_cross_origin_protection).
    #[error("cross-site request with a cookie-borne token")]
    CrossSiteRequest,
    /// The revocation store could not answer, and fails closed: 503 (gRPC
    /// `UNAVAILABLE`), not 401, so clients keep their token and retry.
    #[error("revocation store unavailable")]
    StoreUnavailable,
    /// The keys are not loaded yet (a remote JWKS (`RemoteJwks`, feature `jwks`) before
    /// its first successful load): 503 with `Retry-After` (gRPC
    /// `UNAVAILABLE`), not 401, so clients keep their token and retry.
    #[error("verification keys not loaded yet")]
    KeysUnavailable,
}

impl RejectionKind {
    fn class(self) -> Class {
        match self {
            Self::MissingCredentials => Class::Missing,
            Self::MalformedCredentials | Self::DuplicateCredentials => Class::InvalidRequest,
            Self::StoreUnavailable | Self::KeysUnavailable => Class::Unavailable,
            Self::CrossSiteRequest => Class::Forbidden,
            _ => Class::InvalidToken,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Missing,
    InvalidRequest,
    InvalidToken,
    Unavailable,
    Forbidden,
}

impl Rejection {
    /// A rejection of the given kind (for custom [`TokenSource`](crate::TokenSource)s
    /// and responders).
    pub fn new(kind: RejectionKind) -> Self {
        Self { kind }
    }

    /// The precise reason.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The HTTP status: 401, 400 for a malformed request, 403 for a
    /// cross-site request with a cookie-borne token, 503 when the revocation
    /// store is unavailable.
    pub fn status(&self) -> StatusCode {
        match self.kind.class() {
            Class::InvalidRequest => StatusCode::BAD_REQUEST,
            Class::Missing | Class::InvalidToken => StatusCode::UNAUTHORIZED,
            Class::Forbidden => StatusCode::FORBIDDEN,
            Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code: `None` when no credentials were sent (or the
    /// store is unavailable, or the request was cross-site: not a credential
    /// problem), `invalid_request` or `invalid_token` otherwise.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind.class() {
            Class::Missing | Class::Unavailable | Class::Forbidden => None,
            Class::InvalidRequest => Some("invalid_request"),
            Class::InvalidToken => Some("invalid_token"),
        }
    }

    /// A generic description safe to send to clients: it names the class of
    /// problem, never the token or the precise check that failed.
    pub fn public_description(&self) -> Option<&'static str> {
        match self.kind.class() {
            Class::Missing | Class::Unavailable | Class::Forbidden => None,
            Class::InvalidRequest => Some("the request's credentials are malformed"),
            Class::InvalidToken => Some("the access token is invalid or expired"),
        }
    }

    /// The `WWW-Authenticate` challenge for this rejection (RFC 6750 §3).
    pub fn challenge(&self, realm: Option<&Realm>) -> HeaderValue {
        let mut value = String::from("Bearer");
        let mut sep = " ";
        if let Some(realm) = realm {
            value.push_str(" realm=\"");
            value.push_str(&realm.0);
            value.push('"');
            sep = ", ";
        }
        if let (Some(code), Some(description)) = (self.error_code(), self.public_description()) {
            value.push_str(sep);
            value.push_str("error=\"");
            value.push_str(code);
            value.push_str("\", error_description=\"");
            value.push_str(description);
            value.push('"');
        }
        // Every part is checked printable ASCII without quotes.
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request rejected: {}", self.kind)
    }
}

impl std::error::Error for Rejection {}

/// A checked `realm` value for the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm(String);

impl Realm {
    /// A realm; printable ASCII without `"` or `\`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidValue`] for an empty or unprintable realm.
    pub fn new(realm: impl Into<String>) -> Result<Self, ConfigError> {
        let realm = realm.into();
        if realm.is_empty()
            || !realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(ConfigErrorKind::InvalidValue.into());
        }
        Ok(Self(realm))
    }
}

/// Writes the response for a refused request.
///
/// `B` is the inner service's response body. Closures
/// `Fn(&Rejection) -> http::Response<B>` are responders:
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_sliding_jwt::{Rejection, Responder};
///
/// let json = |rejection: &Rejection| {
///     let mut response = Response::new(format!("{{\"error\":\"{}\"}}", rejection.kind()));
///     *response.status_mut() = rejection.status();
///     response
/// };
/// fn assert_responder<R: Responder<String>>(_: &R) {}
/// assert_responder(&json);
/// ```
pub trait Responder<B>: Send + Sync + 'static {
    /// The response for `rejection`. The layer adds the rejection to the
    /// response's extensions afterwards.
    fn respond(&self, rejection: &Rejection) -> Response<B>;
}

impl<F, B> Responder<B> for F
where
    F: Fn(&Rejection) -> Response<B> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        self(rejection)
    }
}

/// The default responder: RFC 6750 status and `WWW-Authenticate` challenge,
/// empty body.
///
/// | rejection | status | challenge |
/// |---|---|---|
/// | no credentials | 401 | `Bearer` (plus `realm` if set) |
/// | malformed or duplicate credentials | 400 | `Bearer error="invalid_request", ...` |
/// | anything wrong with the token, revoked | 401 | `Bearer error="invalid_token", ...` |
/// | cross-site request with a cookie-borne token | 403 | none |
/// | revocation store unavailable | 503 | none (`Retry-After: 1`) |
#[derive(Debug, Clone)]
pub struct HttpResponder {
    /// The three challenges (missing, invalid request, invalid token), built
    /// once: a rejection costs no formatting.
    challenges: [HeaderValue; 3],
}

impl Default for HttpResponder {
    fn default() -> Self {
        Self::challenges(None)
    }
}

impl HttpResponder {
    /// A responder without a realm.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `realm="..."` to every challenge.
    pub fn with_realm(self, realm: Realm) -> Self {
        Self::challenges(Some(&realm))
    }

    fn challenges(realm: Option<&Realm>) -> Self {
        let of = |kind| Rejection::new(kind).challenge(realm);
        Self {
            challenges: [
                of(RejectionKind::MissingCredentials),
                of(RejectionKind::MalformedCredentials),
                of(RejectionKind::InvalidSignature),
            ],
        }
    }
}

impl<B: Default> Responder<B> for HttpResponder {
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        let (name, value) = match rejection.kind.class() {
            Class::Missing => (WWW_AUTHENTICATE, self.challenges[0].clone()),
            Class::InvalidRequest => (WWW_AUTHENTICATE, self.challenges[1].clone()),
            Class::InvalidToken => (WWW_AUTHENTICATE, self.challenges[2].clone()),
            Class::Unavailable => (RETRY_AFTER, HeaderValue::from_static("1")),
            Class::Forbidden => return response,
        };
        response.headers_mut().insert(name, value);
        response
    }
}

/// Answers every rejection as a gRPC `UNAUTHENTICATED` status (code 16) in a
/// trailers-only response: HTTP 200, `content-type: application/grpc`,
/// `grpc-status: 16` and a generic `grpc-message`; an unavailable revocation
/// store is `UNAVAILABLE` (14), a cross-site request with a cookie-borne token
/// `PERMISSION_DENIED` (7). Needs no tonic dependency.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcResponder;

impl<B: Default> Responder<B> for GrpcResponder {
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let (status, message) = match rejection.kind.class() {
            Class::Missing => ("16", "missing credentials"),
            Class::InvalidRequest => ("16", "malformed credentials"),
            Class::InvalidToken => ("16", "invalid or expired token"),
            Class::Unavailable => ("14", "authentication backend unavailable"),
            Class::Forbidden => ("7", "cross-site request refused"),
        };
        headers.insert("grpc-status", HeaderValue::from_static(status));
        // grpc-message is percent-encoded; these fixed messages need no escaping.
        headers.insert("grpc-message", HeaderValue::from_static(message));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let realm = Realm::new("api").unwrap();
        let missing = Rejection::new(RejectionKind::MissingCredentials);
        assert_eq!(missing.challenge(None), "Bearer");
        assert_eq!(missing.challenge(Some(&realm)), "Bearer realm=\"api\"");
        let expired = Rejection::new(RejectionKind::Expired);
        assert_eq!(
            expired.challenge(Some(&realm)),
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token is invalid or expired\""
        );
        let dup = Rejection::new(RejectionKind::DuplicateCredentials);
        assert_eq!(dup.status(), StatusCode::BAD_REQUEST);
        assert!(
            dup.challenge(None)
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_request\"")
        );
    }

    #[test]
    fn realm_must_be_printable() {
        assert!(Realm::new("").is_err());
        assert!(Realm::new("a\"b").is_err());
        assert!(Realm::new("a\nb").is_err());
    }

    #[test]
    fn grpc_shape() {
        let response: Response<()> = GrpcResponder.respond(&Rejection::new(RejectionKind::Expired));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["content-type"], "application/grpc");
    }
}
