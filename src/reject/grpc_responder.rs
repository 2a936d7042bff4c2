//! [`GrpcResponder`]: the same rejections as gRPC statuses.

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response};

use super::{Class, Rejection, Responder};

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
            Class::Dpop => ("16", "invalid DPoP proof"),
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
    use http::StatusCode;

    use crate::reject::RejectionKind;

    #[test]
    fn grpc_shape() {
        let response: Response<()> = GrpcResponder.respond(&Rejection::new(RejectionKind::Expired));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["content-type"], "application/grpc");
    }
}
