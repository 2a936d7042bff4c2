//! A ready tower service that publishes a JWKS (framework-free).

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::keys::Jwks;
use crate::keys::{Keys, provider};

/// Serves a JWKS (the public halves of the keys) at whatever path you mount it,
/// typically `GET /.well-known/jwks.json`, with no authentication.
///
/// The document is built once: `application/json`, `Cache-Control: public,
/// max-age=N` (default 300 s), a strong `ETag` (the base64url SHA-256 of the
/// body, quoted) answering `If-None-Match` with 304. `GET` and `HEAD` only;
/// any other method gets 405 with `Allow: GET, HEAD`. Cheap to clone.
///
/// ```
/// use http::Request;
/// use tower::ServiceExt;
/// use tower_sliding_jwt::{Algorithm, JwksService, Key};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = Key::from_pem(Algorithm::ES256, include_str!("../../tests/keys/es256-private.pem"))?
///     .with_thumbprint_kid()?;
/// let jwks = JwksService::new(&key)?;
/// let response = jwks.oneshot(Request::get("/.well-known/jwks.json").body(())?).await?;
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.headers()["cache-control"], "public, max-age=300");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JwksService {
    published: Arc<Published>,
}

struct Published {
    body: Bytes,
    etag: HeaderValue,
    cache_control: HeaderValue,
}

impl fmt::Debug for JwksService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksService")
            .field("etag", &self.published.etag)
            .field("cache_control", &self.published.cache_control)
            .field("bytes", &self.published.body.len())
            .finish()
    }
}

impl JwksService {
    /// Publishes [`Keys::jwks`]: every asymmetric verification key, active and
    /// retired.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoPublicKey`] when there is nothing to publish (for
    /// example only HMAC keys: a shared secret is never published);
    /// [`ConfigErrorKind::NoCryptoBackend`] without a crypto backend.
    pub fn new<K: Keys + ?Sized>(keys: &K) -> Result<Self, ConfigError> {
        Self::from_jwks(&keys.jwks())
    }

    /// Publishes `jwks`.
    ///
    /// # Errors
    /// As [`JwksService::new`].
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, ConfigError> {
        if jwks.is_empty() {
            return Err(ConfigErrorKind::NoPublicKey.into());
        }
        let body = Bytes::from(jwks.to_json());
        let digest = (provider()?.key_utils.compute_digest)(
            &body,
            jsonwebtoken::jwk::ThumbprintHash::SHA256,
        )
        .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest));
        Ok(Self {
            published: Arc::new(Published {
                body,
                etag: HeaderValue::try_from(etag)
                    .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidValue, e))?,
                cache_control: max_age(Duration::from_secs(300)),
            }),
        })
    }

    /// How long clients and caches may keep the document: `Cache-Control:
    /// public, max-age=N` (default 300 s). Publish a new key at least this
    /// long before it starts signing.
    pub fn with_max_age(self, max_age_value: Duration) -> Self {
        let published = Published {
            body: self.published.body.clone(),
            etag: self.published.etag.clone(),
            cache_control: max_age(max_age_value),
        };
        Self {
            published: Arc::new(published),
        }
    }

    /// The document served.
    pub fn body(&self) -> &[u8] {
        &self.published.body
    }

    /// The strong entity tag sent with it (quoted).
    pub fn etag(&self) -> &HeaderValue {
        &self.published.etag
    }

    fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<JwksBody> {
        let published = &self.published;
        let mut response = Response::new(JwksBody::empty());
        if method != Method::GET && method != Method::HEAD {
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let out = response.headers_mut();
        out.insert(ETAG, published.etag.clone());
        out.insert(CACHE_CONTROL, published.cache_control.clone());
        if matches_etag(headers, &published.etag) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        out.insert(CONTENT_LENGTH, HeaderValue::from(published.body.len()));
        if method == Method::GET {
            *response.body_mut() = JwksBody(Some(published.body.clone()));
        }
        response
    }
}

fn max_age(max_age: Duration) -> HeaderValue {
    HeaderValue::try_from(format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=300"))
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*`, or a list of entity tags compared
/// weakly (a `W/` prefix is ignored).
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
            tag == b"*" || tag == ours
        })
    })
}

impl<B> Service<Request<B>> for JwksService {
    type Response = Response<JwksBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<JwksBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.headers())))
    }
}

/// The body of a [`JwksService`] response: the document, or nothing (`HEAD`,
/// 304, 405).
#[derive(Debug, Clone, Default)]
pub struct JwksBody(Option<Bytes>);

impl JwksBody {
    fn empty() -> Self {
        Self(None)
    }

    /// The bytes of the body (empty when there is none).
    pub fn into_bytes(self) -> Bytes {
        self.0.unwrap_or_default()
    }
}

impl Body for JwksBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let check = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, HeaderValue::from_static(value));
            matches_etag(&headers, &etag)
        };
        assert!(check("\"abc\""));
        assert!(check("\"x\", W/\"abc\""));
        assert!(check("*"));
        assert!(!check("\"abcd\""));
        assert!(!check("abc"));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }
}
