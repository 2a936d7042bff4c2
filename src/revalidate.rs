//! The revalidation hook: runs when a renewal is about to happen, so its cost
//! is throttled with the renewals.

use std::future::Future;

use crate::revoke::BoxFuture;

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
/// session still good? Closures `Fn(&C) -> impl Future<Output = Verdict<C>>`
/// are hooks:
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
