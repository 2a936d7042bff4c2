//! A verified token, owned by its request or shared with the verified-token cache.

use std::ops::Deref;
use std::sync::Arc;

use super::RawToken;

/// A verified token: its claims, the token itself and the key that verified
/// it. The verified-token cache shares one between requests.
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    pub(crate) token: RawToken,
    /// [`Key::id`](crate::keys::Key) of the key that verified it.
    pub(crate) key: u64,
}

/// A request's verified token: its own (one allocation for the whole
/// session), or shared with the verified-token cache (no copy at all).
pub(crate) enum Held<C> {
    Owned(Verified<C>),
    Shared(Arc<Verified<C>>),
}

impl<C> Deref for Held<C> {
    type Target = Verified<C>;

    fn deref(&self) -> &Verified<C> {
        match self {
            Self::Owned(verified) => verified,
            Self::Shared(verified) => verified,
        }
    }
}
