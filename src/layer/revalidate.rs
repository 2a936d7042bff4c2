//! The revalidation hook: runs when a renewal is about to happen, so its cost
//! is throttled with the renewals.

use std::fmt;
use std::future::Future;

use crate::BoxFuture;
#[cfg(doc)]
use crate::SlidingJwtBuilder;

/// The outcome of a [`Revalidate`] hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<C> {
    /// Renew as planned.
    Approve,
    /// Renew, but with these claims (e.g. a refreshed role). `sid`,
    /// `auth_time` and the times are still set by the layer.
    Update(C),
    /// Serve the request with the old token and do not renew.
    Veto,
    /// Refuse the request: 401 `invalid_token` (e.g. the user was disabled).
    Reject,
}

/// Runs when a renewal is about to happen, before the inner service: is the
/// session still good?
///
/// The easy way to write one is a closure that takes the claims by value,
/// given to [`SlidingJwtBuilder::with_revalidation_fn`]: its future may use
/// the claims freely, so `|claims| async move { ... }` just works. Clone
/// what the future needs (a database pool, say) inside the closure:
///
/// ```
/// use tower_sliding_jwt::{Key, SlidingJwtLayer, StandardClaims, Verdict};
///
/// /// A stand-in for a database pool (`sqlx::PgPool`, `deadpool`...): cheap to clone.
/// #[derive(Clone)]
/// struct Pool;
/// impl Pool {
///     async fn user_is_active(&self, user: &str) -> Result<bool, std::io::Error> {
///         Ok(user != "mallory")
///     }
/// }
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// let pool = Pool;
/// let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256([7u8; 32])?)
///     .with_revalidation_fn(move |claims| {
///         let pool = pool.clone();
///         async move {
///             let user = claims.registered.sub.as_deref().unwrap_or_default();
///             match pool.user_is_active(user).await {
///                 Ok(true) => Verdict::Approve,
///                 Ok(false) => Verdict::Reject,
///                 // The database is down: serve the request, renew later.
///                 Err(_) => Verdict::Veto,
///             }
///         }
///     })
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
///
/// Closures `Fn(&C) -> impl Future<Output = Verdict<C>> + 'static` are hooks
/// too (for [`with_revalidation`](SlidingJwtBuilder::with_revalidation)); their
/// future cannot borrow the claims, so copy what it needs first:
///
/// ```
/// use tower_sliding_jwt::{Revalidate, StandardClaims, Verdict};
///
/// let hook = |claims: &StandardClaims| {
///     let disabled = claims.registered.sub.as_deref() == Some("mallory");
///     async move { if disabled { Verdict::Reject } else { Verdict::Approve } }
/// };
/// fn assert_hook<H: Revalidate<StandardClaims>>(_: &H) {}
/// assert_hook(&hook);
/// ```
///
/// [`SlidingJwtBuilder::with_revalidation_fn`]: crate::SlidingJwtBuilder::with_revalidation_fn
pub trait Revalidate<C>: Send + Sync + 'static {
    /// The verdict for a session about to be renewed.
    fn revalidate(&self, claims: &C) -> BoxFuture<'static, Verdict<C>>;
}

impl<C, F, Fut> Revalidate<C> for F
where
    F: Fn(&C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict<C>> + Send + 'static,
{
    fn revalidate(&self, claims: &C) -> BoxFuture<'static, Verdict<C>> {
        Box::pin(self(claims))
    }
}

/// A hook from a closure that takes the claims by value (built by
/// [`SlidingJwtBuilder::with_revalidation_fn`]). The hook runs only when a
/// renewal is due, so the copy of the claims it gets costs little overall.
pub(crate) struct OwnedClaims<F>(pub(crate) F);

impl<C, F, Fut> Revalidate<C> for OwnedClaims<F>
where
    C: Clone,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict<C>> + Send + 'static,
{
    fn revalidate(&self, claims: &C) -> BoxFuture<'static, Verdict<C>> {
        Box::pin((self.0)(claims.clone()))
    }
}

impl<F> fmt::Debug for OwnedClaims<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnedClaims")
    }
}
