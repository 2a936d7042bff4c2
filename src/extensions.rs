//! Markers in response extensions: [`NoRenewal`] from a handler, [`Renewed`]
//! from the layer. (The request carries one [`Session`](crate::Session).)

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
