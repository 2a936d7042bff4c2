//! axum extractors (feature `axum`): the verified claims and the session,
//! read from what the layer put into the request.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use http::StatusCode;
//! use tower_sliding_jwt::{Session, StandardClaims, extract::Authenticated};
//!
//! async fn me(user: Authenticated<StandardClaims>) -> String {
//!     // `Authenticated<C>` derefs to `C`.
//!     user.registered.sub.clone().unwrap_or_default()
//! }
//!
//! async fn hello(user: Option<Authenticated<StandardClaims>>) -> &'static str {
//!     // With `with_anonymous(true)`, `None` for an anonymous request.
//!     if user.is_some() { "hello again" } else { "hello, stranger" }
//! }
//!
//! async fn logout(session: Session<StandardClaims>) -> StatusCode {
//!     match session.end().await {
//!         Ok(()) => StatusCode::NO_CONTENT,
//!         Err(_) => StatusCode::SERVICE_UNAVAILABLE,
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route("/hello", get(hello))
//!     .route("/logout", post(logout));
//! // .layer(sliding_jwt_layer)
//! # let _ = app;
//! ```
//!
//! A handler that asks for them on a request the layer did not authenticate
//! (a route outside the layer, or an anonymous request with `with_anonymous(true)`)
//! gets `401 Unauthorized` with `WWW-Authenticate: Bearer` (`None` for the
//! `Option` forms). One that asks for another claims type than the layer's
//! (a layer on `StandardClaims<Role>`, a handler asking for
//! `Authenticated<StandardClaims>`) is a programming error and loud: `500`
//! with an empty body (no type names reach the client), and an `error` event
//! naming the type asked for and the types the layers produce.

use std::fmt;
use std::ops::Deref;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::claims::Claims;
use crate::log::event;
#[cfg(feature = "tracing")]
use crate::session::claims_types;
use crate::session::{AuthenticatedByLayer, Session};

/// The verified claims of the request's token; derefs to `C`. As an
/// extractor it answers 401 when the layer did not authenticate the request
/// (`Option<Authenticated<C>>` is `None` instead), and 500 when the layer
/// did, with another claims type (see [`SessionRejection`]).
pub struct Authenticated<C>(pub Session<C>);

impl<C> Authenticated<C> {
    /// The session handle (to end the session or renew it with new claims).
    pub fn session(&self) -> &Session<C> {
        &self.0
    }

    /// Takes the session handle out.
    pub fn into_session(self) -> Session<C> {
        self.0
    }
}

impl<C> Deref for Authenticated<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.0.claims()
    }
}

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> fmt::Debug for Authenticated<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated").finish_non_exhaustive()
    }
}

/// The rejection of [`Authenticated`] and [`Session`] when the layer did not
/// authenticate the request: `401 Unauthorized`, `WWW-Authenticate: Bearer`,
/// empty body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unauthenticated;

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request was not authenticated by the sliding-JWT layer")
    }
}

impl std::error::Error for Unauthenticated {}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// Why [`Authenticated`] or [`Session`] could not be extracted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRejection {
    /// The layer did not authenticate the request: `401`,
    /// `WWW-Authenticate: Bearer`.
    Unauthenticated(Unauthenticated),
    /// The layer authenticated the request, but with another claims type
    /// than the one asked for: a programming error, answered `500` with an
    /// empty body (the `error` event names both types).
    ClaimsTypeMismatch,
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated(inner) => fmt::Display::fmt(inner, f),
            Self::ClaimsTypeMismatch => f.write_str(
                "the sliding-JWT layer produced another claims type than the one asked for",
            ),
        }
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(inner) => inner.into_response(),
            Self::ClaimsTypeMismatch => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

impl From<Unauthenticated> for SessionRejection {
    fn from(inner: Unauthenticated) -> Self {
        Self::Unauthenticated(inner)
    }
}

/// The request's `Session<C>`: `Ok(None)` when the layer did not
/// authenticate it, an error when it did with another claims type.
fn session<C: Claims>(parts: &Parts) -> Result<Option<Session<C>>, SessionRejection> {
    if let Some(session) = parts.extensions.get::<Session<C>>() {
        return Ok(Some(session.clone()));
    }
    if parts.extensions.get::<AuthenticatedByLayer>().is_some() {
        event!(
            error,
            asked = std::any::type_name::<C>(),
            produced = %claims_types(),
            "a handler asked for claims of another type than the sliding-JWT layer produces: answering 500"
        );
        return Err(SessionRejection::ClaimsTypeMismatch);
    }
    Ok(None)
}

impl<S: Send + Sync, C: Claims> FromRequestParts<S> for Session<C> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session(parts)?.ok_or(SessionRejection::Unauthenticated(Unauthenticated))
    }
}

impl<S: Send + Sync, C: Claims> OptionalFromRequestParts<S> for Session<C> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        session(parts)
    }
}

impl<S: Send + Sync, C: Claims> FromRequestParts<S> for Authenticated<C> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session(parts)?
            .map(Authenticated)
            .ok_or(SessionRejection::Unauthenticated(Unauthenticated))
    }
}

impl<S: Send + Sync, C: Claims> OptionalFromRequestParts<S> for Authenticated<C> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session(parts)?.map(Authenticated))
    }
}
