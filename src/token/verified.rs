//! A verified token, owned by its request or shared with the verified-token cache.

use std::ops::Deref;
use std::sync::Arc;

use super::{RawToken, TokenId, jws};

/// A verified token: its claims, the token itself and the key that verified
/// it. The verified-token cache shares one between requests.
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    pub(crate) token: RawToken,
    /// The key that verified it.
    pub(crate) key: KeyRef,
}

/// Which key verified a token: its [`Key::id`](crate::keys::Key) and algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef {
    pub(crate) id: u64,
    pub(crate) alg: jsonwebtoken::Algorithm,
}

impl<C> Verified<C> {
    /// The token's canonical identity (rule 8); `None` only for a signature
    /// that does not decode, which a verified token's always does.
    pub(crate) fn identity(&self) -> Option<TokenId> {
        TokenId::of(self.key.alg, jws::signature_part(self.token.as_str()))
    }
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
