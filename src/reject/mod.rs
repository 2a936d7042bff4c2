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

use http::{HeaderValue, Response, StatusCode};

use crate::error::{ConfigError, ConfigErrorKind};

mod grpc_responder;
mod http_responder;

pub use grpc_responder::GrpcResponder;
pub use http_responder::{BodyMode, EmptyBody, HttpResponder, ProblemJson};

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
    /// `exp` lies further ahead than the longest lifetime this layer could
    /// sign (its ttl, or the most a session's own lifetimes may ask for,
    /// plus the leeway): a token minted elsewhere with the same key, which
    /// would outlive every revocation of its session.
    #[error("token lifetime too long")]
    LifetimeTooLong,
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
    /// A DPoP-bound token (one carrying `cnf`) sent as a bearer token or in
    /// a cookie, or to a layer without DPoP; an unbound token sent under the
    /// `DPoP` scheme; or a bearer token where DPoP is required
    /// ([`with_dpop`](crate::SlidingJwtBuilder::with_dpop)). Answers
    /// `invalid_token`.
    #[error("token presented under the wrong scheme")]
    SchemeMismatch,
    /// The DPoP proof is missing, malformed, signed by another key than
    /// the token's, for another method or URL, too old, or already used
    /// (RFC 9449 §4.3): 401 with `WWW-Authenticate: DPoP
    /// error="invalid_dpop_proof"`.
    #[error("invalid DPoP proof")]
    InvalidDpopProof,
    /// The DPoP proof lacks a current server nonce, or the replay cache is
    /// full and cannot remember the proof (RFC 9449 §8): 401 with
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a fresh
    /// `DPoP-Nonce`.
    #[error("DPoP nonce required")]
    UseDpopNonce,
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
        Self::LifetimeTooLong,
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
        Self::SchemeMismatch,
        Self::InvalidDpopProof,
        Self::UseDpopNonce,
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
            Self::LifetimeTooLong => "lifetime_too_long",
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
            Self::SchemeMismatch => "scheme_mismatch",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }

    fn class(self) -> Class {
        match self {
            Self::MissingCredentials => Class::Missing,
            Self::MalformedCredentials | Self::DuplicateCredentials => Class::InvalidRequest,
            Self::StoreUnavailable | Self::KeysUnavailable => Class::Unavailable,
            Self::CrossSiteRequest => Class::Forbidden,
            Self::InvalidDpopProof | Self::UseDpopNonce => Class::Dpop,
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
    /// A DPoP proof problem: the challenge is the layer's (`DPoP ...`).
    Dpop,
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
            Class::Missing | Class::InvalidToken | Class::Dpop => StatusCode::UNAUTHORIZED,
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
            Class::Dpop if self.kind == RejectionKind::UseDpopNonce => Some("use_dpop_nonce"),
            Class::Dpop => Some("invalid_dpop_proof"),
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
            Class::Dpop if self.kind == RejectionKind::UseDpopNonce => {
                "a DPoP proof with the server's current nonce is required"
            }
            Class::Dpop => "the DPoP proof is missing or invalid",
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
}
