//! Sliding JWT sessions for any tower service: axum, hyper and tonic alike.
//!
//! The layer verifies the JWT on every request and puts the verified claims
//! into the request's extensions. When a valid token is close to expiry, it
//! signs a replacement for the same session (same `sid` and `auth_time`, new
//! `jti`, later `exp`) and returns it with the response, on the channel the token
//! came in. Active users stay logged in; idle ones time out; no session
//! outlives its cap.
//!
//! # Quick start
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_sliding_jwt::{Key, ManualClock, Session, SlidingJwtLayer, StandardClaims};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = ManualClock::new(1_700_000_000);
//! let layer = SlidingJwtLayer::<_, StandardClaims>::builder(Key::hs256(b"an example secret of 32+ bytes!!")?)
//!     .with_issuer("my-api")
//!     .with_ttl(Duration::from_secs(3600))
//!     .with_clock(clock.clone())
//!     .build()?;
//!
//! // At login: the same configuration issues the first token.
//! let login = layer.issuer().issue(StandardClaims::new("alice", Default::default()))?;
//!
//! // Any tower service; handlers read the session (it derefs to the claims)
//! // from the request's extensions.
//! let app = layer.layer(service_fn(|req: Request<()>| async move {
//!     let session = req.extensions().get::<Session<StandardClaims>>().expect("set by the layer");
//!     Ok::<_, Infallible>(Response::new(format!("hello {}", session.registered.sub.as_deref().unwrap_or("?"))))
//! }));
//!
//! let request = |token: &str| Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
//!
//! // A fresh token is verified and passed through.
//! let response = app.clone().oneshot(request(login.token())).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(!response.headers().contains_key("authorization"));
//!
//! // 50 minutes later the token is inside the renew window: a replacement comes back.
//! clock.advance(Duration::from_secs(50 * 60));
//! let response = app.clone().oneshot(request(login.token())).await?;
//! let renewed = response.headers()["authorization"].to_str()?;
//! assert!(renewed.starts_with("Bearer "));
//! assert_eq!(response.headers()["cache-control"], "no-store");
//!
//! // No token: 401 with a bare challenge.
//! let response = app.oneshot(Request::get("/").body(()).unwrap()).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it does |
//! |---|---|---|
//! | `rust_crypto` | yes | jsonwebtoken's RustCrypto backend (pure Rust; fastest for HMAC and EdDSA) |
//! | `aws_lc_rs` | no | jsonwebtoken's aws-lc-rs backend (much faster ECDSA and RSA); wins when both are enabled |
//! | `redis` | no | `redis::RedisStore`: one Redis handle for a cluster, shared revocations and single flight (tokio); enables `tracing` |
//! | `tracing` | no | events with target `tower_sliding_jwt` (never a token or a secret) |
//! | `jwks` | no | `RemoteJwks`: verification keys loaded from a JWKS URL, refreshed in the background and on an unknown `kid` (tokio; `HyperFetcher` or your own client); enables `tracing` |
//!
//! With neither backend, building a key or a layer is a [`ConfigError`]
//! (`NoCryptoBackend`), never a panic.
//!
//! # How renewal works
//!
//! For a verified token, renewal happens when all of these hold:
//!
//! * the request is not `OPTIONS`, and the token has `auth_time` (so the session
//!   cap can be enforced);
//! * the [`RenewalPolicy`] agrees: by default the token expires within the renew
//!   window (20 minutes), it was issued at least the throttle interval ago
//!   (60 s), and the new `exp` gains at least that interval;
//! * the token has not expired yet (one accepted within the leeway after `exp`
//!   is served, never renewed);
//! * the inner response is 2xx or 3xx (and, for gRPC, not an error status in
//!   the headers; an error sent later in the trailers of a streaming call cannot
//!   take back a renewal already sent in the initial metadata);
//! * the handler did not put [`NoRenewal`] in the response or set a token on
//!   that channel itself.
//!
//! The new `exp` is `min(now + ttl, auth_time + max_session)`. Every claim is
//! copied except `iat` (now), `nbf` (removed), `exp` and `jti` (new). `alg` and
//! `kid` come from the active key, so a key rotation moves live sessions to the
//! new key. Parallel requests presenting the same old token receive the same
//! replacement (a bounded single-flight map).
//!
//! Delivery follows the token's channel: a `Bearer` header is answered with
//! `Authorization: Bearer <new>` (the name is configurable), a cookie with
//! `Set-Cookie` (`HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=...`). Every
//! response carrying a token gets `Cache-Control: no-store`, and the header
//! value is marked sensitive.
//!
//! # Sessions: logout, log out everywhere, password and role changes
//!
//! Every authenticated request carries a [`Session`] handle in its extensions,
//! and every token is checked against a [`RevocationStore`] before the inner
//! service runs (a private [`MemoryStore`] by default; share one store between
//! layers, or use `redis::RedisStore` (feature `redis`) for a cluster). A revoked
//! token gets 401 `invalid_token` and is never renewed.
//!
//! | to... | do |
//! |---|---|
//! | log out | `session.end().await` in the handler: the session (`sid`) is revoked, the response carries no renewal, and a cookie is expired |
//! | log out everywhere | [`Revoker::revoke_subject`]: every session of the user that began before now gets 401 |
//! | change a password | `revoke_subject(user)`, then issue the current device a fresh login token (sessions that begin from this second on are unaffected) |
//! | change a role | `session.renew_with(updated_claims)`: this response carries a token with the new claims, same `sid` and `auth_time`, within the cap; for *other* sessions of the user, use a [`Revalidate`] hook that answers [`Verdict::Update`] (or [`Verdict::Reject`] for a disabled user) at their next renewal |
//! | end one session from an admin page | [`Revoker::revoke_session`] with its `sid` |
//!
//! The revalidation hook runs only when a renewal is about to happen, so its
//! cost (a database look-up, say) is paid at most once per session per
//! throttle interval. A token that is already out stays valid until it expires
//! unless it is revoked: revocation is the immediate switch, revalidation the
//! periodic one.
//!
//! # Clients
//!
//! [`ClientLayer`] is the other half: wrapped around a client (hyper-util's
//! `Client`, a tonic `Channel`), it attaches the current token from a shared
//! [`TokenStore`] and adopts renewed tokens from responses, so a long-running
//! client never has to log in again while it stays active. It is bound to one
//! [`Origin`] ([`ClientLayer::for_origin`], or [`ClientLayer::for_channel`]
//! around a single-endpoint channel): no other host gets the token or has its
//! responses read, and only a later token of the same session, from a 2xx/3xx
//! response, replaces the current one. A 401 clears the refused token and is
//! reported, so the application can log in again.
//!
//! # Security model
//!
//! * **Keys come only from configuration.** The accepted algorithms are exactly
//!   those of the configured keys; `alg: none`, a foreign algorithm, or a
//!   public key used as an HMAC secret never verify. `jku`, `x5u`, `jwk` and
//!   `x5c` headers are ignored. A `kid` must match a configured key exactly.
//!   A remote key set (`RemoteJwks`, feature `jwks`) reads only the URL you
//!   configure, never accepts `oct` keys, and refetches on an unknown `kid`
//!   at most once per cooldown.
//! * **Public keys only are published:** [`Keys::jwks`] and [`JwksService`]
//!   carry EC, OKP and RSA public halves; there is no `oct` JWK type, so an
//!   HMAC secret cannot be published. A verify-only layer
//!   ([`SlidingJwtLayer::verifier`]) holds no signing key and never renews.
//! * **Full validation before use:** size limit (8 KiB) before any decoding;
//!   exactly three unpadded base64url segments; JSON object header and claims;
//!   signature checked before the claims are parsed; integer `exp` required;
//!   `nbf`, `iss`, `aud` and `typ` when configured; any `crit` header refused.
//! * **Leeway never lengthens a lifetime**: it is at most 60 s, applies only to
//!   `exp`/`nbf` checks, and the session cap has none.
//! * **Nothing leaks:** rejection bodies are empty (or a generic RFC 9457
//!   problem, [`HttpResponder::with_problem_json`]) and `error_description`
//!   is generic. The precise [`RejectionKind`] is in the response's
//!   extensions for your code, and in a body only if you opt in. Tokens and keys have redacting `Debug` implementations.
//! * **Bounded work:** no panics on input, no unbounded allocation; the
//!   single-flight map and the revocation store have fixed capacities.
//! * **Revocation is checked on every request** and again before a renewal is
//!   handed out (awaited when the store is asynchronous), so a session revoked
//!   while a request was in flight gets no replacement. A store that cannot
//!   answer fails closed: 503 on the request, no replacement on the re-check.
//! * **Renewal rules live in the core**, not in a replaceable policy: success
//!   responses only, only while `now < exp`, never past the session cap, never
//!   larger than the token size limit. A custom policy can only be stricter.
//! * **Cookie sessions are protected against cross-site requests** (403 for a
//!   cross-site unsafe request carrying the cookie; see
//!   [`SlidingJwtBuilder::with_cross_origin_protection`]).
//! * **Only compact JWS are written** into `Authorization`, custom headers and
//!   `Set-Cookie`.
//!
//! * **The client half fails closed:** the token goes only to the bound
//!   origin; a renewal is adopted only from that origin's 2xx/3xx responses,
//!   only as a compact JWS (never `alg: none`) of the same `sid` with a later
//!   `exp`.
//!
//! Renewal makes a stolen token live as long as its thief keeps using it, up
//! to the session cap. Keep the cap short enough for your threat model.
//!
//! # Rejections
//!
//! | situation | HTTP ([`HttpResponder`]) | gRPC ([`GrpcResponder`]) |
//! |---|---|---|
//! | no token | 401, `WWW-Authenticate: Bearer` | `UNAUTHENTICATED` |
//! | malformed or duplicate `Authorization`/cookie | 400, `error="invalid_request"` | `UNAUTHENTICATED` |
//! | bad, expired, capped or revoked token | 401, `error="invalid_token"` | `UNAUTHENTICATED` |
//! | cross-site unsafe request with a cookie-borne token | 403 | `PERMISSION_DENIED` |
//! | revocation store unavailable | 503, `Retry-After: 1` | `UNAVAILABLE` |
//! | keys not loaded yet (remote key set before its first load) | 503, `Retry-After: 1` | `UNAVAILABLE` |
//!
//! [`Rejection::error_code`] is `None` only when no credentials were sent;
//! the bodies are empty, or `application/problem+json` with
//! [`HttpResponder::with_problem_json`].
//!
//! In optional mode ([`SlidingJwtBuilder::with_optional`]) a request without a
//! token passes through anonymously; a bad token is still refused.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod claims;
mod client;
mod clock;
mod error;
mod extensions;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod jwks;
mod keys;
mod layer;
mod log;
mod origin;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod reject;
mod revoke;
mod session;
mod source;
mod stats;
mod token;

pub use claims::{Audience, Claims, RegisteredClaims, StandardClaims};
pub use client::{Client, ClientFuture, ClientLayer, TokenStore};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
pub use extensions::{NoRenewal, Renewed};
pub use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
#[cfg(feature = "jwks")]
pub use jwks::{
    HyperFetcher, JwksError, JwksErrorKind, JwksFetcher, MAX_JWKS_BYTES, RemoteJwks,
    RemoteJwksBuilder,
};
pub use jwks::{JwksBody, JwksService};
pub use keys::{Jwk, Jwks, Key, KeyRing, KeySnapshot, Keys};
pub use layer::policy::{
    DefaultPolicy, RenewWindow, RenewalContext, RenewalPolicy, SuccessOnly, Throttle, is_success,
};
pub use layer::revalidate::{Revalidate, Verdict};
pub use layer::{ResponseFuture, SlidingJwt, SlidingJwtBuilder, SlidingJwtLayer, VerifierBuilder};
pub use origin::Origin;
pub use reject::{
    BodyMode, EmptyBody, GrpcResponder, HttpResponder, ProblemJson, Realm, Rejection,
    RejectionKind, Responder,
};
pub use revoke::{
    BoxFuture, Lookup, MemoryStore, Revocation, RevocationStore, RevocationTarget, Revoker,
    SharedFlight, Status, StoreError, StoreErrorKind, TokenIds,
};
pub use session::Session;
pub use source::{BearerHeader, CookieSource, HeaderSource, SameSite, TokenSource};
pub use stats::Stats;
/// The date-time type of [`IssuedToken::expiry`], [`Session::expiry`] and
/// friends, re-exported from the `time` crate so the versions always match.
pub use time::OffsetDateTime;
pub use token::{IssuedToken, Issuer, RawToken};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
