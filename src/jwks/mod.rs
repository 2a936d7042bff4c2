//! Key publishing and remote key sets: the public halves of the keys as a
//! JWKS (RFC 7517), the service that serves it, and (feature `jwks`) a key
//! set loaded from another service's JWKS URL.

mod document;
#[cfg(feature = "jwks")]
mod fetch;
#[cfg(feature = "jwks")]
mod remote;
mod service;

#[cfg(feature = "jwks")]
pub use fetch::{HyperFetcher, JwksError, JwksErrorKind, JwksFetcher};
#[cfg(feature = "jwks")]
pub use remote::{MAX_JWKS_BYTES, RemoteJwks, RemoteJwksBuilder};
pub use service::{JwksBody, JwksService};
