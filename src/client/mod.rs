//! The client half: keeps a caller's token fresh.
//!
//! [`ClientLayer`] wraps an HTTP or gRPC client service (a hyper-util
//! `Client`, a tonic `Channel`, any `tower::Service<http::Request<B>>`). It is
//! bound to one [`Origin`]: requests to that origin that have no
//! `Authorization` header of their own get the current token, and their
//! responses may carry a renewal. Requests anywhere else get no token, and
//! their responses are never read.
//!
//! A renewal (`Authorization: Bearer ...` for HTTP, `authorization` in the
//! initial metadata for gRPC) is adopted only from a 2xx/3xx response that is
//! not a gRPC error, only when it is a compact JWT tied to the held one (same
//! `sid`, `sub`, `iss`, `auth_time`, a bounded lifetime, and a valid signature
//! when the store has the issuer's keys)
//! with a later `exp` ([`TokenStore::offer`]). When responses race, the token
//! with the latest `exp` wins. The server refusing the token (its
//! `invalid_token` challenge on a 401 or a gRPC `UNAUTHENTICATED`) clears it
//! and is reported so the application can log in again; any other 401 or
//! `UNAUTHENTICATED` passes through.

//!
//! The files: `layer.rs` the [`ClientLayer`] and its settings, `service.rs`
//! the [`SlidingJwtClient`] service and what it checks in a response,
//! `future.rs` its response future, `challenge.rs` reading the server's
//! answer (a refusal of the token, a renewed token), `store.rs` the
//! [`TokenStore`].

mod challenge;
mod future;
mod layer;
mod service;
mod store;

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, Uri};

use crate::dpop::ClientDpop;
use crate::origin::Origin;
pub use future::ClientFuture;
pub use layer::ClientLayer;
pub use service::SlidingJwtClient;
pub use store::TokenStore;

pub(crate) type OnChange = Arc<dyn Fn(&str) + Send + Sync>;
pub(crate) type OnUnauthorized = Arc<dyn Fn() + Send + Sync>;

/// Where the token may go.
#[derive(Debug, Clone)]
pub(crate) enum Binding {
    /// Requests whose absolute URI has this origin.
    Origin(Origin),
    /// Every request: the inner service has one endpoint whatever the URI says.
    Channel,
}

impl Binding {
    pub(crate) fn covers(&self, uri: &Uri) -> bool {
        match self {
            Self::Origin(origin) => origin.matches(uri),
            Self::Channel => true,
        }
    }
}

/// What a layer and its services share, behind one `Arc`.
#[derive(Clone)]
pub(crate) struct ClientConfig {
    pub(crate) binding: Binding,
    pub(crate) tokens: TokenStore,
    pub(crate) response_header: HeaderName,
    pub(crate) max_token_bytes: usize,
    pub(crate) clear_on_unauthorized: bool,
    pub(crate) on_token_change: Option<OnChange>,
    pub(crate) on_unauthorized: Option<OnUnauthorized>,
    /// DPoP: the key proofs are signed with, and the server's latest nonce.
    pub(crate) dpop: Option<ClientDpop>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("binding", &self.binding)
            .field("tokens", &self.tokens)
            .field("response_header", &self.response_header)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("clear_on_unauthorized", &self.clear_on_unauthorized)
            .field("on_token_change", &self.on_token_change.is_some())
            .field("on_unauthorized", &self.on_unauthorized.is_some())
            .field("dpop", &self.dpop)
            .finish()
    }
}
