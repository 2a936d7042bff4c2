//! The server middleware, in tower-http's shape: the layer and its builders,
//! the service, its response future, and the renewal it drives.
//!
//! This file holds what the siblings share — the configuration behind one
//! `Arc` and the rejection helper — and siblings import it, never each other
//! both ways. The verification settings both builders offer are written
//! once, in `settings.rs`.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Response, Uri};

#[cfg(feature = "tracing")]
use crate::log::event;
#[cfg(feature = "tracing")]
use crate::reject::RejectionKind;
use crate::reject::{Rejection, Responder};
use crate::revoke::Checkpoint;
use crate::sessions::SessionEnv;
use crate::source::TokenSource;
use crate::token::TokenEngine;

use cache::VerifiedCache;
use cross_origin::CrossOrigin;
use revalidate::Revalidate;
use single_flight::SingleFlight;

#[macro_use]
mod settings;

mod builder;
pub(crate) mod cache;
pub(crate) mod cross_origin;
mod future;
mod issuer;
#[allow(clippy::module_inception)] // `layer/layer.rs`, tower-http's shape
mod layer;
pub(crate) mod policy;
mod renewal;
pub(crate) mod revalidate;
mod service;
pub(crate) mod single_flight;
mod verify_only;

pub use builder::SlidingJwtBuilder;
pub use future::ResponseFuture;
pub use issuer::Issuer;
pub use layer::SlidingJwtLayer;
pub use service::SlidingJwt;
pub use verify_only::VerifierBuilder;

/// Everything a layer and its services share, behind one `Arc`.
pub(crate) struct Config<K, C, P, R> {
    pub(crate) engine: Arc<TokenEngine<K, C>>,
    /// The revocation check, reuse detection and the counters.
    pub(crate) checkpoint: Arc<Checkpoint<C>>,
    /// What every session of the layer shares (store, clock, counters).
    pub(crate) env: Arc<SessionEnv>,
    pub(crate) policy: P,
    pub(crate) responder: R,
    pub(crate) sources: Vec<Box<dyn TokenSource>>,
    /// Requests without a token pass through as anonymous.
    pub(crate) anonymous: bool,
    pub(crate) flights: Arc<SingleFlight>,
    /// The token `renew_with` issued, by the identity of each token it
    /// superseded that a parallel request handed out: a request presenting
    /// one is served as its successor. Apart from `flights`, so ordinary
    /// renewals never evict it.
    pub(crate) successors: Arc<SingleFlight>,
    pub(crate) revalidate: Option<Box<dyn Revalidate<C>>>,
    pub(crate) cache: Option<VerifiedCache<C>>,
    pub(crate) cross_origin: CrossOrigin,
    /// Which requests count as activity (rule 17); `None`: every request.
    pub(crate) activity: Option<Box<ActivityRule>>,
}

/// The rule deciding from a request whether it counts as activity.
pub(crate) type ActivityRule = dyn Fn(&Method, &Uri, &HeaderMap) -> bool + Send + Sync;

impl<K, C, P: fmt::Debug, R: fmt::Debug> fmt::Debug for Config<K, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("engine", &self.engine)
            .field("checkpoint", &self.checkpoint)
            .field("policy", &self.policy)
            .field("responder", &self.responder)
            .field("sources", &self.sources.len())
            .field("anonymous", &self.anonymous)
            .field("flights", &self.flights)
            .field("successors", &self.successors)
            .field("revalidate", &self.revalidate.is_some())
            .field("cache", &self.cache)
            .field("cross_origin", &self.cross_origin)
            .field("activity", &self.activity.is_some())
            .finish()
    }
}

/// Counts, logs and answers a refused request with the layer's responder;
/// the rejection goes into the response's extensions for the caller's code.
pub(crate) fn reject<K, C, P, R, B>(
    config: &Config<K, C, P, R>,
    rejection: Rejection,
) -> Response<B>
where
    R: Responder<B>,
{
    let kind = rejection.kind();
    config.env.counters.rejected(kind);
    let mut response = config.responder.respond(&rejection);
    if let Some(dpop) = &config.env.dpop {
        dpop.challenge(kind, response.headers_mut(), config.engine.clock.now());
    }
    // What was sent: the HTTP status, and the gRPC status when the responder
    // answered in gRPC (an UNAUTHENTICATED is HTTP 200 on the wire).
    // (The fields are read only when the event is enabled.)
    #[cfg(feature = "tracing")]
    {
        let status = || response.status().as_u16();
        let grpc_status = || {
            const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
            response
                .headers()
                .get(&GRPC_STATUS)
                .and_then(|value| value.to_str().ok())
        };
        if matches!(
            kind,
            RejectionKind::StoreUnavailable | RejectionKind::KeysUnavailable
        ) {
            event!(warn, %kind, status = status(), grpc_status = grpc_status(), "request refused: authentication is unavailable");
        } else {
            event!(debug, %kind, status = status(), grpc_status = grpc_status(), "request refused");
        }
    }
    response.extensions_mut().insert(rejection);
    response
}
