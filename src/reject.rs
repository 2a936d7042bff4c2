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
/// Grouped by the error it answers with (see [`Rejection::error_code`]):
/// [`MissingCredentials`] has no error code, the `*Credentials` request errors
/// answer `invalid_request` (400), every token error answers `invalid_token`
/// (401), [`CrossSiteRequest`] answers `access_denied` (403) and
/// [`StoreUnavailable`] and [`KeysUnavailable`] `temporarily_unavailable` (503).
///
/// [`MissingCredentials`]: RejectionKind::MissingCredentials
/// [`KeysUnavailable`]: RejectionKind::KeysUnavailable
/// [`CrossSiteRequest`]: RejectionKind::CrossSiteRequest
/// [`StoreUnavailable`]: RejectionKind::StoreUnavailable
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
    /// A token that was renewed arrived more than the reuse grace after its
    /// replacement was first used: a stolen or leaked copy. Its session is
    /// revoked (see
    /// [`with_reuse_detection`](crate::SlidingJwtBuilder::with_reuse_detection)).
    #[error("replaced token reused")]
    TokenReused,
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
    /// Every kind, e.g. to pre-register a metric label for each.
    pub const ALL: &'static [RejectionKind] = &[
        Self::MissingCredentials,
        Self::MalformedCredentials,
        Self::DuplicateCredentials,
        Self::TokenTooLarge,
        Self::MalformedToken,
        Self::AlgorithmNotAllowed,
        Self::UnknownKey,
        Self::InvalidSignature,
        Self::UnsupportedCritical,
        Self::WrongType,
        Self::InvalidClaims,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::SessionExpired,
        Self::Revoked,
        Self::TokenReused,
        Self::SessionRejected,
        Self::CrossSiteRequest,
        Self::StoreUnavailable,
        Self::KeysUnavailable,
    ];

    /// A stable `snake_case` name for this kind (`"expired"`, `"revoked"`,
    /// `"store_unavailable"`...), for logs and metrics, and for response
    /// bodies only where you choose to expose it
    /// ([`HttpResponder::with_reason_in_body`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::MalformedCredentials => "malformed_credentials",
            Self::DuplicateCredentials => "duplicate_credentials",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedToken => "malformed_token",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::InvalidSignature => "invalid_signature",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::WrongType => "wrong_type",
            Self::InvalidClaims => "invalid_claims",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::SessionExpired => "session_expired",
            Self::Revoked => "revoked",
            Self::TokenReused => "token_reused",
            Self::SessionRejected => "session_rejected",
            Self::CrossSiteRequest => "cross_site_request",
            Self::StoreUnavailable => "store_unavailable",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

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
    Forbidden,
    Unavailable,
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
    /// store is unavailable or the keys are not loaded yet.
    pub fn status(&self) -> StatusCode {
        match self.kind.class() {
            Class::InvalidRequest => StatusCode::BAD_REQUEST,
            Class::Missing | Class::InvalidToken => StatusCode::UNAUTHORIZED,
            Class::Forbidden => StatusCode::FORBIDDEN,
            Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error code, `None` exactly when the request carried no
    /// credentials (RFC 6750 §3.1: a request without authentication
    /// information gets a challenge without an error code).
    ///
    /// | rejection | status | `error_code()` | `WWW-Authenticate` |
    /// |---|---|---|---|
    /// | no credentials | 401 | `None` | `Bearer` (and `realm`) |
    /// | malformed or duplicate credentials | 400 | `invalid_request` (RFC 6750 §3.1) | with `error` |
    /// | bad, expired, capped, revoked token; revalidation refused | 401 | `invalid_token` (RFC 6750 §3.1) | with `error` |
    /// | cross-site request with a cookie-borne token | 403 | `access_denied` (RFC 6749 §4.1.2.1) | none |
    /// | revocation store unavailable, keys not loaded yet | 503 | `temporarily_unavailable` (RFC 6749 §4.1.2.1) | none, `Retry-After: 1` |
    ///
    /// Only the two RFC 6750 codes go into a challenge: the 403 and the 503
    /// are not authentication failures, and the client should keep its token.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind.class() {
            Class::Missing => None,
            Class::InvalidRequest => Some("invalid_request"),
            Class::InvalidToken => Some("invalid_token"),
            Class::Forbidden => Some("access_denied"),
            Class::Unavailable => Some("temporarily_unavailable"),
        }
    }

    /// A generic description safe to send to clients: it names the class of
    /// problem, never the token or the precise check that failed.
    pub fn public_description(&self) -> &'static str {
        match self.kind.class() {
            Class::Missing => "the request carries no credentials",
            Class::InvalidRequest => "the request's credentials are malformed",
            Class::InvalidToken => "the access token is invalid or expired",
            Class::Forbidden => "a cross-site request with the session cookie was refused",
            Class::Unavailable => "authentication is temporarily unavailable; retry later",
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
        if let Class::InvalidRequest | Class::InvalidToken = self.kind.class() {
            let (code, description) = (
                self.error_code().unwrap_or_default(),
                self.public_description(),
            );
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
/// `B` is the inner service's response body, so a responder must build
/// *that* type: in axum it is `axum::body::Body`, in hyper often
/// `http_body_util::Full<Bytes>`. Closures `Fn(&Rejection) -> http::Response<B>`
/// are responders. Keep the body generic: the precise
/// [`kind`](Rejection::kind) is in the response's extensions for your own
/// code, and in a body it tells an attacker which check their token failed.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{HeaderValue, Response, header};
/// use tower_sliding_jwt::{Key, Rejection, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// // An axum body, the challenge kept, a generic message.
/// let json = |rejection: &Rejection| {
///     let body = match rejection.error_code() {
///         Some(code) => format!(r#"{{"error":"{code}"}}"#),
///         None => r#"{"error":"unauthorized"}"#.to_owned(),
///     };
///     let mut response = Response::new(Body::from(body));
///     *response.status_mut() = rejection.status();
///     let headers = response.headers_mut();
///     headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
///     if rejection.status() == http::StatusCode::UNAUTHORIZED {
///         headers.insert(header::WWW_AUTHENTICATE, rejection.challenge(None));
///     }
///     response
/// };
///
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_responder(json)
///     .build()?;
/// let app: Router = Router::new().route("/me", get(|| async { "me" })).layer(layer);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// For RFC 9457 problem details, [`HttpResponder::with_problem_json`] does
/// this without formatting anything per request.
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
/// with an empty body ([`EmptyBody`]) or, after
/// [`with_problem_json`](HttpResponder::with_problem_json), an RFC 9457
/// `application/problem+json` body ([`ProblemJson`]).
///
/// | rejection | status | headers |
/// |---|---|---|
/// | no credentials | 401 | `WWW-Authenticate: Bearer` (plus `realm` if set) |
/// | malformed or duplicate credentials | 400 | `WWW-Authenticate: Bearer error="invalid_request", ...` |
/// | anything wrong with the token, revoked | 401 | `WWW-Authenticate: Bearer error="invalid_token", ...` |
/// | cross-site request with a cookie-borne token | 403 | none |
/// | revocation store unavailable, keys not loaded yet | 503 | `Retry-After: 1` |
///
/// The challenges are prepared when the responder is built (constants when
/// there is no realm) and the bodies are constants, so a rejection formats
/// nothing: it clones a prepared value into a fresh response.
#[derive(Debug, Clone)]
pub struct HttpResponder<M = EmptyBody> {
    /// The challenges of the missing-credentials, invalid-request and
    /// invalid-token classes, built once (inserting a prepared value into
    /// the fresh response measured faster than cloning a prepared map).
    challenges: [HeaderValue; 3],
    realm: Option<Realm>,
    body: M,
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
const INVALID_REQUEST_CHALLENGE: &str = "Bearer error=\"invalid_request\", error_description=\"the request's credentials are malformed\"";
const INVALID_TOKEN_CHALLENGE: &str =
    "Bearer error=\"invalid_token\", error_description=\"the access token is invalid or expired\"";

/// [`HttpResponder`]'s body mode: no body (the default). Works with any body
/// type that implements `Default`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyBody;

/// [`HttpResponder`]'s body mode: an RFC 9457 `application/problem+json`
/// body. Works with any body type built from a `&'static str`
/// (`axum::body::Body`, `http_body_util::Full<Bytes>`, `String`).
///
/// The body is fixed per class and says nothing about the token:
///
/// ```json
/// {"type":"about:blank","title":"Unauthorized","status":401,"error":"invalid_token","detail":"the access token is invalid or expired"}
/// ```
///
/// (`error` is [`Rejection::error_code`], absent when no credentials were
/// sent.) With [`HttpResponder::with_reason_in_body`] it also carries
/// `"reason"`, the precise [`RejectionKind::as_str`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson {
    reason: bool,
}

impl Default for HttpResponder {
    fn default() -> Self {
        Self::prepare(None, EmptyBody)
    }
}

impl HttpResponder {
    /// A responder without a realm and with empty bodies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers with an RFC 9457 `application/problem+json` body: generic
    /// `title`, `status`, `detail` and `error` code, never the precise
    /// reason (see [`with_reason_in_body`](HttpResponder::with_reason_in_body)).
    /// `WWW-Authenticate` and `Retry-After` are kept.
    ///
    /// ```
    /// use http::Response;
    /// use tower_sliding_jwt::{HttpResponder, Rejection, RejectionKind, Responder};
    ///
    /// let responder = HttpResponder::new().with_problem_json();
    /// let response: Response<String> = responder.respond(&Rejection::new(RejectionKind::Expired));
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["content-type"], "application/problem+json");
    /// assert!(response.headers().contains_key("www-authenticate"));
    /// assert!(response.body().contains(r#""error":"invalid_token""#));
    /// assert!(!response.body().contains("reason"), "the precise kind is not sent");
    /// ```
    pub fn with_problem_json(self) -> HttpResponder<ProblemJson> {
        HttpResponder::prepare(self.realm, ProblemJson::default())
    }
}

impl<M: BodyMode> HttpResponder<M> {
    /// Adds `realm="..."` to every challenge.
    pub fn with_realm(self, realm: Realm) -> Self {
        Self::prepare(Some(realm), self.body)
    }

    fn prepare(realm: Option<Realm>, body: M) -> Self {
        let challenge = |kind: RejectionKind| match (&realm, kind.class()) {
            // Without a realm the challenges are constants: cloning one
            // costs no reference count.
            (None, Class::Missing) => HeaderValue::from_static("Bearer"),
            (None, Class::InvalidRequest) => HeaderValue::from_static(INVALID_REQUEST_CHALLENGE),
            (None, _) => HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
            (Some(realm), _) => Rejection::new(kind).challenge(Some(realm)),
        };
        Self {
            challenges: [
                challenge(RejectionKind::MissingCredentials),
                challenge(RejectionKind::MalformedCredentials),
                challenge(RejectionKind::InvalidSignature),
            ],
            realm,
            body,
        }
    }

    /// A response with the status and the class's header: its challenge,
    /// or `Retry-After` for an unavailable store.
    fn response<B>(&self, rejection: &Rejection, body: B) -> Response<B> {
        let mut response = Response::new(body);
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

impl HttpResponder<ProblemJson> {
    /// Adds `"reason"`, the precise [`RejectionKind::as_str`] (`"expired"`,
    /// `"invalid_signature"`...), to problem bodies.
    ///
    /// Off by default, and best left off on the open internet: it tells
    /// whoever holds a token which check it failed. Useful between services
    /// you trust, and in development. It never contains the token.
    pub fn with_reason_in_body(mut self) -> Self {
        self.body.reason = true;
        self
    }
}

/// How an [`HttpResponder`] writes its body: [`EmptyBody`] or [`ProblemJson`].
/// Sealed: for another body, write a [`Responder`] closure.
pub trait BodyMode: sealed::Sealed + fmt::Debug + Clone + Send + Sync + 'static {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::EmptyBody {}
    impl Sealed for super::ProblemJson {}
}

impl BodyMode for EmptyBody {}

impl BodyMode for ProblemJson {}

impl<B: Default> Responder<B> for HttpResponder<EmptyBody> {
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        self.response(rejection, B::default())
    }
}

impl<B: From<&'static str>> Responder<B> for HttpResponder<ProblemJson> {
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        let body = if self.body.reason {
            problem_with_reason(rejection.kind)
        } else {
            problem(rejection.kind.class())
        };
        let mut response = self.response(rejection, B::from(body));
        response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
        response
    }
}

/// The start of each class's problem body, without the closing brace.
macro_rules! problem_start {
    (Missing) => {
        r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"the request carries no credentials""#
    };
    (InvalidRequest) => {
        r#"{"type":"about:blank","title":"Bad Request","status":400,"error":"invalid_request","detail":"the request's credentials are malformed""#
    };
    (InvalidToken) => {
        r#"{"type":"about:blank","title":"Unauthorized","status":401,"error":"invalid_token","detail":"the access token is invalid or expired""#
    };
    (Forbidden) => {
        r#"{"type":"about:blank","title":"Forbidden","status":403,"error":"access_denied","detail":"a cross-site request with the session cookie was refused""#
    };
    (Unavailable) => {
        r#"{"type":"about:blank","title":"Service Unavailable","status":503,"error":"temporarily_unavailable","detail":"authentication is temporarily unavailable; retry later""#
    };
}

/// The generic problem body of a class.
fn problem(class: Class) -> &'static str {
    match class {
        Class::Missing => concat!(problem_start!(Missing), "}"),
        Class::InvalidRequest => concat!(problem_start!(InvalidRequest), "}"),
        Class::InvalidToken => concat!(problem_start!(InvalidToken), "}"),
        Class::Forbidden => concat!(problem_start!(Forbidden), "}"),
        Class::Unavailable => concat!(problem_start!(Unavailable), "}"),
    }
}

/// The problem body of a kind, with its `reason`; one constant per kind.
fn problem_with_reason(kind: RejectionKind) -> &'static str {
    macro_rules! with_reason {
        ($($kind:ident => $class:ident, $reason:literal;)*) => {
            match kind {
                $(RejectionKind::$kind => concat!(problem_start!($class), r#","reason":""#, $reason, r#""}"#),)*
            }
        };
    }
    with_reason! {
        MissingCredentials => Missing, "missing_credentials";
        MalformedCredentials => InvalidRequest, "malformed_credentials";
        DuplicateCredentials => InvalidRequest, "duplicate_credentials";
        TokenTooLarge => InvalidToken, "token_too_large";
        MalformedToken => InvalidToken, "malformed_token";
        AlgorithmNotAllowed => InvalidToken, "algorithm_not_allowed";
        UnknownKey => InvalidToken, "unknown_key";
        InvalidSignature => InvalidToken, "invalid_signature";
        UnsupportedCritical => InvalidToken, "unsupported_critical";
        WrongType => InvalidToken, "wrong_type";
        InvalidClaims => InvalidToken, "invalid_claims";
        Expired => InvalidToken, "expired";
        NotYetValid => InvalidToken, "not_yet_valid";
        WrongIssuer => InvalidToken, "wrong_issuer";
        WrongAudience => InvalidToken, "wrong_audience";
        SessionExpired => InvalidToken, "session_expired";
        Revoked => InvalidToken, "revoked";
        TokenReused => InvalidToken, "token_reused";
        SessionRejected => InvalidToken, "session_rejected";
        CrossSiteRequest => Forbidden, "cross_site_request";
        StoreUnavailable => Unavailable, "store_unavailable";
        KeysUnavailable => Unavailable, "keys_unavailable";
    }
}

/// Answers every rejection as a gRPC `UNAUTHENTICATED` status (code 16) in a
/// trailers-only response: HTTP 200, `content-type: application/grpc`,
/// `grpc-status: 16` and a generic `grpc-message`; an unavailable revocation
/// store or keys not loaded yet are `UNAVAILABLE` (14), a cross-site request with a cookie-borne token
/// `PERMISSION_DENIED` (7). A refused token (bad, expired, capped, revoked)
/// also carries its `WWW-Authenticate: Bearer error="invalid_token"` challenge
/// in the metadata, which is how [`ClientLayer`](crate::ClientLayer) tells
/// it from a handler's own `UNAUTHENTICATED`. Needs no tonic dependency.
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
        // What tells the client half that the server refused *the token*,
        // not that a handler answered UNAUTHENTICATED for reasons of its own.
        if rejection.kind.class() == Class::InvalidToken {
            headers.insert(WWW_AUTHENTICATE, rejection.challenge(None));
        }
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
    fn constant_challenges_are_the_built_ones() {
        let responder = HttpResponder::new();
        for kind in [
            RejectionKind::MissingCredentials,
            RejectionKind::DuplicateCredentials,
            RejectionKind::Revoked,
        ] {
            let rejection = Rejection::new(kind);
            let response: Response<()> = responder.respond(&rejection);
            assert_eq!(
                response.headers()[WWW_AUTHENTICATE],
                rejection.challenge(None)
            );
        }
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
