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
//!     // In optional mode, `None` for an anonymous request.
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
//! (a route outside the layer, or an anonymous request in optional mode)
//! gets `401 Unauthorized` with `WWW-Authenticate: Bearer`, never a 500 that
//! names a type.

use std::fmt;
use std::ops::Deref;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::claims::Claims;
use crate::session::Session;

/// The verified claims of the request's token; derefs to `C`. As an
/// extractor it answers 401 when the layer did not authenticate the request;
/// `Option<Authenticated<C>>` is `None` instead.
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

fn session<C: Claims>(parts: &Parts) -> Option<Session<C>> {
    parts.extensions.get::<Session<C>>().cloned()
}

impl<S: Send + Sync, C: Claims> FromRequestParts<S> for Session<C> {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session(parts).ok_or(Unauthenticated)
    }
}

impl<S: Send + Sync, C: Claims> OptionalFromRequestParts<S> for Session<C> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session(parts))
    }
}

impl<S: Send + Sync, C: Claims> FromRequestParts<S> for Authenticated<C> {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session(parts).map(Authenticated).ok_or(Unauthenticated)
    }
}

impl<S: Send + Sync, C: Claims> OptionalFromRequestParts<S> for Authenticated<C> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session(parts).map(Authenticated))
    }
}
