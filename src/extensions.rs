//! Values the layer puts into request and response extensions.

use std::fmt;
use std::sync::Arc;

/// The verified token as it arrived, in the request's extensions (next to the
/// verified claims). `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(pub(crate) Arc<str>);

impl RawToken {
    /// The compact JWS.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawToken([redacted])")
    }
}

/// Put this in a response's extensions to stop the layer from renewing the
/// token on that response (for example when the handler logged the user out).
///
/// ```
/// use tower_sliding_jwt::NoRenewal;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(NoRenewal);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRenewal;

/// Added to a response's extensions when the layer attached a renewed token.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// The new token's `exp`.
    pub expires_at: i64,
}
