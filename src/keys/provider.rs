//! The crypto backend: which jsonwebtoken provider this crate's features chose.

use jsonwebtoken::crypto::CryptoProvider;

#[cfg_attr(
    any(feature = "rust_crypto", feature = "aws_lc_rs"),
    allow(unused_imports)
)]
use crate::error::{ConfigError, ConfigErrorKind};

/// The jsonwebtoken crypto backend chosen by this crate's features.
///
/// `aws_lc_rs` wins when both features are enabled, so enabling features stays
/// additive; with neither, building a key is a [`ConfigErrorKind::NoCryptoBackend`].
pub(crate) fn provider() -> Result<&'static CryptoProvider, ConfigError> {
    #[cfg(feature = "aws_lc_rs")]
    {
        Ok(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
    }
    #[cfg(all(feature = "rust_crypto", not(feature = "aws_lc_rs")))]
    {
        Ok(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER)
    }
    #[cfg(not(any(feature = "rust_crypto", feature = "aws_lc_rs")))]
    {
        Err(ConfigError::new(ConfigErrorKind::NoCryptoBackend))
    }
}
