//! How a remote key set fetches its document: a small trait for any HTTP
//! client, and an implementation for hyper-util's client.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::BoxFuture;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Fetches a JWKS document: plug in your own HTTP client (TLS, proxies,
/// retries, metrics are its business).
///
/// The remote key set calls it from its background task, never on the
/// request path, and bounds it with its own timeout.
///
/// ```
/// use bytes::Bytes;
/// use http::Uri;
/// use tower_sliding_jwt::{BoxFuture, JwksError, JwksFetcher};
///
/// /// A fetcher for tests: always the same document.
/// struct Fixed(Bytes);
///
/// impl JwksFetcher for Fixed {
///     fn fetch<'a>(&'a self, _: &'a Uri, _max_bytes: usize) -> BoxFuture<'a, Result<Bytes, JwksError>> {
///         Box::pin(async move { Ok(self.0.clone()) })
///     }
/// }
/// ```
pub trait JwksFetcher: Send + Sync + 'static {
    /// `GET uri`, and the body of a 200 response. Read at most `max_bytes`
    /// of body: answer [`JwksErrorKind::TooLarge`] beyond that (a longer body
    /// is refused anyway, but only after it was read).
    fn fetch<'a>(
        &'a self,
        uri: &'a Uri,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, JwksError>>;
}

/// A key set could not be fetched or read.
#[derive(Debug)]
pub struct JwksError {
    kind: JwksErrorKind,
    source: Option<BoxError>,
}

/// Why fetching or reading a key set failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksErrorKind {
    /// The server answered with a status other than 200.
    #[error("unexpected HTTP status")]
    Status,
    /// The body is larger than the limit (1 MiB).
    #[error("JWKS document too large")]
    TooLarge,
    /// The fetch took longer than the timeout.
    #[error("JWKS fetch timed out")]
    Timeout,
    /// The connection or the client failed.
    #[error("JWKS fetch failed")]
    Transport,
    /// The body is not a JWKS document.
    #[error("not a JWKS document")]
    InvalidDocument,
    /// The document holds no key this crate can use (`oct` keys never count).
    #[error("no usable key in the JWKS document")]
    NoUsableKey,
}

impl JwksError {
    /// An error of `kind` (for [`JwksFetcher`] implementations).
    pub fn new(kind: JwksErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(kind: JwksErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> JwksErrorKind {
        self.kind
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remote key set: {}", self.kind)
    }
}

impl StdError for JwksError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A [`JwksFetcher`] on hyper-util's legacy `Client` (feature `jwks`).
///
/// [`HyperFetcher::new`] fetches over TLS only (rustls with the ring
/// provider and the Mozilla roots of `webpki-roots`): an `http://` URL is
/// refused, so nobody on the path can hand the service keys of their own.
/// [`HyperFetcher::plain_http`] allows plain HTTP, for an issuer reached
/// over loopback or a sidecar; say so explicitly. For other roots, a proxy
/// or pool settings, pass your own client to [`HyperFetcher::from_client`].
#[derive(Clone)]
pub struct HyperFetcher<C = HttpsConnector<HttpConnector>> {
    client: Client<C, Empty<Bytes>>,
}

impl<C> fmt::Debug for HyperFetcher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperFetcher").finish_non_exhaustive()
    }
}

impl HyperFetcher {
    /// An HTTPS-only client on the tokio runtime, verifying servers against
    /// the Mozilla root certificates (`webpki-roots`).
    pub fn new() -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            // The ring provider supports rustls's default protocol versions.
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            .https_only()
            .enable_http1()
            .build();
        Self::from_client(Client::builder(TokioExecutor::new()).build(connector))
    }
}

impl HyperFetcher<HttpConnector> {
    /// A client that also fetches over plain `http://`: only for an issuer
    /// reached over loopback, a Unix-socket proxy or a sidecar, where nobody
    /// can be on the path. Everywhere else, use [`HyperFetcher::new`].
    pub fn plain_http() -> Self {
        Self::from_client(Client::builder(TokioExecutor::new()).build_http())
    }
}

impl Default for HyperFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> HyperFetcher<C> {
    /// Your own client (TLS connector, pool settings, proxy).
    pub fn from_client(client: Client<C, Empty<Bytes>>) -> Self {
        Self { client }
    }
}

impl<C> JwksFetcher for HyperFetcher<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn fetch<'a>(
        &'a self,
        uri: &'a Uri,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, JwksError>> {
        Box::pin(async move {
            let request = Request::get(uri.clone())
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|e| JwksError::with_source(JwksErrorKind::Transport, e))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| JwksError::with_source(JwksErrorKind::Transport, e))?;
            if response.status() != StatusCode::OK {
                return Err(JwksError::new(JwksErrorKind::Status));
            }
            let announced = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if announced.is_some_and(|len| len > max_bytes as u64) {
                return Err(JwksError::new(JwksErrorKind::TooLarge));
            }
            let body = Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        JwksError::new(JwksErrorKind::TooLarge)
                    } else {
                        JwksError::with_source(JwksErrorKind::Transport, e)
                    }
                })?;
            Ok(body.to_bytes())
        })
    }
}
