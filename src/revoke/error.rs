//! [`StoreError`]: a store could not answer or record, and why.

use std::fmt;

/// A store could not answer or record.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Why a store failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreErrorKind {
    /// The backend cannot be reached or is not synchronised.
    #[error("revocation store unavailable")]
    Unavailable,
    /// The backend did not answer in time.
    #[error("revocation store timed out")]
    Timeout,
    /// The store holds as many live entries as it may.
    #[error("revocation store is full")]
    Full,
    /// A durable store's file is damaged or is not a revocation file: it is
    /// refused rather than opened without the revocations it held.
    #[error("revocation store is corrupted")]
    Corrupted,
    /// The token has neither `sid` nor `jti`, so nothing identifies it.
    #[error("token has no sid or jti to revoke")]
    NotRevocable,
    /// The store does not keep the part asked for (e.g. a session
    /// registry, [`RevocationStore::sessions`](crate::store::RevocationStore::sessions)).
    #[error("the store does not keep this")]
    Unsupported,
}

impl StoreError {
    /// An error of `kind`, with its cause.
    pub fn new(
        kind: StoreErrorKind,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { kind, source }
    }

    /// Why the store failed.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreErrorKind> for StoreError {
    fn from(kind: StoreErrorKind) -> Self {
        Self::new(kind, None)
    }
}
