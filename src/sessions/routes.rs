//! [`SessionRoutes`]: the routes of "where you're logged in", as a plain
//! tower service behind the layer.

// Without the `tracing` feature the events compile to nothing.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::{SessionInfo, plausible_sid};
use crate::BoxFuture;
use crate::claims::Claims;
use crate::log::event;
use crate::revoke::{StoreError, StoreErrorKind};
use crate::session::Session;

/// The caller's sessions over HTTP, for the routes behind the layer (the
/// layer must have authenticated the request: without a
/// [`Session<C>`](crate::Session) it answers 401):
///
/// | request | answer |
/// |---|---|
/// | `GET /` | 200 `{"sessions": [{"sid", "current", "created", "last_seen", "user_agent"}]}`, most recently seen first, times in Unix seconds |
/// | `DELETE /{sid}` | 204: that session of the caller ends (the current one included); 404 for a `sid` that is not the caller's live session, whoever owns it, or is malformed |
/// | `POST /end-others` | 200 `{"ended": n}`: every other session of the caller ends |
///
/// Paths are relative to where it is mounted: axum's
/// `Router::nest_service("/sessions", SessionRoutes::<C>::new())` strips the
/// prefix; with hyper, route the paths under `/sessions` to
/// [`with_prefix`](Self::with_prefix)`("/sessions")`. A store error is 503
/// with `Retry-After: 1`, never a partial list; answers carry
/// `Cache-Control: no-store`. The unsafe methods are covered by the layer's
/// cross-origin protection like every route behind it.
///
/// ```
/// use tower_sliding_jwt::{Key, SessionRoutes, SlidingJwtLayer, StandardClaims};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?).build()?;
/// let app: axum::Router = axum::Router::new()
///     .nest_service("/sessions", SessionRoutes::<StandardClaims>::new())
///     .layer(layer);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
pub struct SessionRoutes<C> {
    prefix: String,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for SessionRoutes<C> {
    fn clone(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            _claims: PhantomData,
        }
    }
}

impl<C> Default for SessionRoutes<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for SessionRoutes<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRoutes")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<C> SessionRoutes<C> {
    /// The routes, at the root of where they are mounted.
    pub fn new() -> Self {
        Self {
            prefix: String::new(),
            _claims: PhantomData,
        }
    }

    /// The routes under `prefix` (e.g. `/sessions`), for a router that does
    /// not strip it; a path outside it is 404.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }
}

/// What a request asks for.
enum Route<'a> {
    List,
    EndOthers,
    End(&'a str),
}

impl<C: Claims, B> Service<Request<B>> for SessionRoutes<C> {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The prefix ends at a path segment: `/sessionsfoo` is not under
        // `/sessions`.
        let Some(rest) = request
            .uri()
            .path()
            .strip_prefix(self.prefix.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        else {
            return ready(answer(StatusCode::NOT_FOUND, String::new()));
        };
        let route = match rest.trim_start_matches('/') {
            "" => Route::List,
            "end-others" => Route::EndOthers,
            sid if !sid.contains('/') => Route::End(sid),
            _ => return ready(answer(StatusCode::NOT_FOUND, String::new())),
        };
        let allowed = match route {
            Route::List => Method::GET,
            Route::EndOthers => Method::POST,
            Route::End(_) => Method::DELETE,
        };
        if request.method() != allowed {
            let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, String::new());
            response.headers_mut().insert(
                ALLOW,
                HeaderValue::from_str(allowed.as_str()).unwrap_or(HeaderValue::from_static("GET")),
            );
            return ready(response);
        }
        let Some(session) = request.extensions().get::<Session<C>>().cloned() else {
            let mut response = answer(StatusCode::UNAUTHORIZED, String::new());
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return ready(response);
        };
        match route {
            Route::List => Box::pin(async move {
                Ok(match session.sessions().await {
                    Ok(sessions) => json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "sessions": sessions.iter().map(listed).collect::<Vec<_>>()
                        }),
                    ),
                    Err(error) => store_failed(&error),
                })
            }),
            Route::EndOthers => Box::pin(async move {
                Ok(match session.end_others().await {
                    Ok(ended) => json(StatusCode::OK, &serde_json::json!({ "ended": ended })),
                    Err(error) => store_failed(&error),
                })
            }),
            Route::End(sid) => {
                // A malformed or over-long sid names no session of the
                // caller: 404, nothing touched.
                if !plausible_sid(sid) {
                    return ready(answer(StatusCode::NOT_FOUND, String::new()));
                }
                let sid = sid.to_owned();
                Box::pin(async move {
                    Ok(match session.end_session(&sid).await {
                        Ok(true) => answer(StatusCode::NO_CONTENT, String::new()),
                        Ok(false) => answer(StatusCode::NOT_FOUND, String::new()),
                        Err(error) => store_failed(&error),
                    })
                })
            }
        }
    }
}

fn ready(response: Response<String>) -> BoxFuture<'static, Result<Response<String>, Infallible>> {
    Box::pin(std::future::ready(Ok(response)))
}

fn listed(session: &SessionInfo) -> serde_json::Value {
    let mut value = serde_json::json!({
        "sid": session.sid,
        "current": session.current,
        "created": session.created.unix_timestamp(),
        "last_seen": session.last_seen.unix_timestamp(),
        "user_agent": session.user_agent,
    });
    if let (Some(address), Some(object)) = (&session.address, value.as_object_mut()) {
        object.insert("address".into(), address.as_str().into());
    }
    value
}

fn answer(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<String> {
    let mut response = answer(status, value.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 503 with `Retry-After: 1`; a store that keeps no registry is the
/// application's mistake: 500.
fn store_failed(error: &StoreError) -> Response<String> {
    if error.kind() == StoreErrorKind::Unsupported {
        event!(error, %error, "session routes need a store with a session registry");
        return answer(StatusCode::INTERNAL_SERVER_ERROR, String::new());
    }
    event!(warn, %error, "session routes: the store cannot answer");
    let mut response = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "error": "temporarily_unavailable" }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
