//! [`HttpResponder`]: RFC 6750 challenges over HTTP, with an empty body or
//! RFC 9457 problem details.

use std::fmt;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response};

use super::{Class, Realm, Rejection, RejectionKind, Responder};

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
            // The DPoP challenge (with the layer's algorithms and nonce)
            // is written by the layer.
            Class::Forbidden | Class::Dpop => return response,
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
            problem(rejection.kind)
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
    (Dpop) => {
        r#"{"type":"about:blank","title":"Unauthorized","status":401,"error":"invalid_dpop_proof","detail":"the DPoP proof is missing or invalid""#
    };
    (Nonce) => {
        r#"{"type":"about:blank","title":"Unauthorized","status":401,"error":"use_dpop_nonce","detail":"a DPoP proof with the server's current nonce is required""#
    };
    (Unavailable) => {
        r#"{"type":"about:blank","title":"Service Unavailable","status":503,"error":"temporarily_unavailable","detail":"authentication is temporarily unavailable; retry later""#
    };
}

/// The generic problem body of a kind's class.
fn problem(kind: RejectionKind) -> &'static str {
    match kind.class() {
        Class::Missing => concat!(problem_start!(Missing), "}"),
        Class::InvalidRequest => concat!(problem_start!(InvalidRequest), "}"),
        Class::InvalidToken => concat!(problem_start!(InvalidToken), "}"),
        Class::Forbidden => concat!(problem_start!(Forbidden), "}"),
        Class::Unavailable => concat!(problem_start!(Unavailable), "}"),
        Class::Dpop if kind == RejectionKind::UseDpopNonce => concat!(problem_start!(Nonce), "}"),
        Class::Dpop => concat!(problem_start!(Dpop), "}"),
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
        LifetimeTooLong => InvalidToken, "lifetime_too_long";
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
        SchemeMismatch => InvalidToken, "scheme_mismatch";
        InvalidDpopProof => Dpop, "invalid_dpop_proof";
        UseDpopNonce => Nonce, "use_dpop_nonce";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
