//! What the three demo servers share: the demo users, the claims, the secret
//! and the layer configuration of `examples/README.md`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_sliding_jwt::{
    Algorithm, BearerHeader, Clock, ConfigError, CookieSource, JwksService, Key, Lifetimes,
    RenewWindow, SlidingJwtBuilder, SlidingJwtLayer, StandardClaims, Throttle,
};

/// The development secret used when `$JWT_SECRET` is unset. Never deploy it.
pub const DEV_SECRET: &str = "tower-sliding-jwt demo secret: change me in production";

/// The `iss` of every demo token.
pub const ISSUER: &str = "tower-sliding-jwt-demo";
/// The `aud` of every demo token.
pub const AUDIENCE: &str = "demo-api";

/// The demo's own claims: a role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    /// `admin` or `user`.
    pub role: String,
}

/// The demo's claims: the registered and session claims plus a role, read in
/// one pass (`StandardClaims<E>` with the demo's own typed part).
pub type DemoClaims = StandardClaims<Role>;

/// A session's lifetimes: the layer's (a one-day cap), or with `remember` a
/// 30-day cap ("keep me signed in"), which the layer's limits allow.
pub fn lifetimes(remember: bool) -> tower_sliding_jwt::Lifetimes {
    let lifetimes = tower_sliding_jwt::Lifetimes::new();
    if remember {
        lifetimes.with_max_session(REMEMBERED)
    } else {
        lifetimes
    }
}

/// The session cap of a login with `"remember": true`.
pub const REMEMBERED: Duration = Duration::from_secs(30 * 86_400);

/// Claims for a user who just logged in; the issuer fills in the rest.
pub fn claims(username: &str, role: &str) -> DemoClaims {
    StandardClaims::new(
        username,
        Role {
            role: role.to_owned(),
        },
    )
}

/// The demo users: `alice`/`wonderland` (admin) and `bob`/`builder` (user).
pub fn authenticate(username: &str, password: &str) -> Option<&'static str> {
    match (username, password) {
        ("alice", "wonderland") => Some("admin"),
        ("bob", "builder") => Some("user"),
        _ => None,
    }
}

/// The signing secret from `$JWT_SECRET`, or the development secret with a
/// warning. A secret shorter than 32 bytes is refused.
pub fn secret() -> Result<Vec<u8>, String> {
    match std::env::var("JWT_SECRET") {
        Ok(secret) if secret.len() < 32 => Err(format!(
            "JWT_SECRET is {} bytes long; HS256 needs at least 32 bytes (try: openssl rand -base64 48)",
            secret.len()
        )),
        Ok(secret) => Ok(secret.into_bytes()),
        Err(_) => {
            eprintln!(
                "warning: JWT_SECRET is not set; using the built-in development secret (never in production)"
            );
            Ok(DEV_SECRET.as_bytes().to_vec())
        }
    }
}

/// The secret and the port of a demo server, or what is wrong with them.
/// Starts logging first.
pub fn settings(default_port: u16) -> Result<(Vec<u8>, u16), String> {
    init_logging();
    Ok((secret()?, port(default_port)?))
}

/// Logs to stderr through `tracing-subscriber`, filtered by `RUST_LOG`
/// (default: the layer's events at `info`, e.g. revocations; `RUST_LOG=tower_sliding_jwt=debug`
/// adds every rejection and renewal). The layer never logs a token or a secret.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tower_sliding_jwt=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The signing key and the port of an HTTP demo: the PKCS#8 PEM private key
/// at `$JWT_PRIVATE_KEY` when set (asymmetric mode), the HMAC secret otherwise.
pub fn key_settings(default_port: u16) -> Result<(Key, u16), String> {
    init_logging();
    let key = match std::env::var_os("JWT_PRIVATE_KEY") {
        Some(path) => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read JWT_PRIVATE_KEY {}: {e}", path.display()))?;
            private_key(&pem)?
        }
        None => Key::hs256(secret()?).map_err(|e| e.to_string())?,
    };
    Ok((key, port(default_port)?))
}

/// A PKCS#8 PEM private key: P-256 signs ES256, Ed25519 signs EdDSA. Its
/// `kid` is its RFC 7638 JWK thumbprint.
pub fn private_key(pem: &str) -> Result<Key, String> {
    [Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .find_map(|alg| Key::from_pem(alg, pem).ok())
        .ok_or_else(|| {
            "JWT_PRIVATE_KEY must be a PKCS#8 PEM P-256 or Ed25519 private key \
             (try: openssl genpkey -algorithm ed25519 -out key.pem)"
                .to_owned()
        })?
        .with_thumbprint_kid()
        .map_err(|e| e.to_string())
}

/// `GET /.well-known/jwks.json`: the public key as a JWKS, `Cache-Control:
/// public, max-age=300`. `None` in HMAC mode, where that route is 404.
pub fn jwks(layer: &SlidingJwtLayer<Key, DemoClaims>) -> Option<JwksService> {
    JwksService::from_jwks(&layer.jwks()).ok()
}

/// Binds `127.0.0.1:port` and prints the `listening on` line.
pub async fn listen(port: u16) -> Result<tokio::net::TcpListener, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{address}");
    Ok(listener)
}

/// Resolves on Ctrl-C.
pub async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a demo's main function: `error: ...` on stderr and a failure exit
/// code if it fails.
pub fn exit(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The listening port: `$PORT` or `default`.
pub fn port(default: u16) -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, not {port:?}")),
        Err(_) => Ok(default),
    }
}

/// The `session` cookie: `HttpOnly; Secure; SameSite=Lax; Path=/`, without
/// `Secure` when `$COOKIE_INSECURE` is set (plain-HTTP development).
pub fn session_cookie() -> CookieSource {
    let cookie = CookieSource::new("session").expect("a valid cookie name");
    cookie.with_secure(std::env::var_os("COOKIE_INSECURE").is_none())
}

/// The contract's layer: HS256, ttl 1 h, renew in the last 20 min, at most once
/// a minute, sessions capped at 24 h, 5 s leeway; bearer header first, then the
/// `session` cookie.
pub fn layer(
    secret: &[u8],
    clock: impl Clock,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, ConfigError> {
    builder(secret, clock)?.build()
}

/// The contract's layer with any signing key (the asymmetric mode's).
pub fn layer_with_key(
    key: Key,
    clock: impl Clock,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, ConfigError> {
    builder_with_key(key, clock)?.build()
}

/// The contract's configuration, before it is built (the gRPC demo changes
/// the responder).
pub fn builder(
    secret: &[u8],
    clock: impl Clock,
) -> Result<SlidingJwtBuilder<Key, DemoClaims>, ConfigError> {
    builder_with_key(Key::hs256(secret)?, clock)
}

/// The contract's configuration with any signing key.
pub fn builder_with_key(
    key: Key,
    clock: impl Clock,
) -> Result<SlidingJwtBuilder<Key, DemoClaims>, ConfigError> {
    // `$VERIFIED_CACHE=N` remembers up to N verified tokens (see
    // `with_verified_cache`); off unless set.
    let cache = std::env::var("VERIFIED_CACHE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let builder = SlidingJwtLayer::builder(key).with_verified_cache(cache);
    Ok(builder
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_ttl(Duration::from_secs(3600))
        .with_renew_window(RenewWindow::absolute(Duration::from_secs(1200))?)
        .with_throttle(Throttle::new(Duration::from_secs(60))?)
        .with_max_session(Duration::from_secs(86_400))
        .with_lifetime_limits(Lifetimes::new().with_max_session(REMEMBERED))
        .with_leeway(Duration::from_secs(5))
        .with_clock(clock)
        // `GET /notifications` is a background poll, and `GET /events` a
        // stream that is opened and held: neither is activity.
        .with_activity_rule(|method, uri, _| {
            !(method == http::Method::GET && matches!(uri.path(), "/notifications" | "/events"))
        })
        .with_token_source(BearerHeader::new())
        .with_token_source(session_cookie())
        .with_dpop(dpop()))
}

/// DPoP (the contract's "Sender-constrained sessions"): bound and bearer
/// tokens both accepted; server nonces derived from the signing key (so
/// every instance sharing the key accepts the others'), required with
/// `DPOP_NONCE=1`; `PUBLIC_URL` (e.g. `https://api.example.com`) is the URL
/// proofs name when the demo sits behind a proxy. A bad `PUBLIC_URL` stops
/// the demo when the layer is built.
pub fn dpop() -> tower_sliding_jwt::dpop::Dpop {
    let mut dpop = tower_sliding_jwt::dpop::Dpop::allowed().with_nonce_secret(nonce_secret());
    if std::env::var("DPOP_NONCE").is_ok_and(|v| v == "1") {
        dpop = dpop.with_required_nonce(true);
    }
    if let Ok(url) = std::env::var("PUBLIC_URL")
        && !url.is_empty()
    {
        dpop = dpop.with_public_url(url);
    }
    dpop
}

/// What the DPoP nonces derive from: the signing key's material (the PEM
/// file in asymmetric mode, the HMAC secret otherwise). The layer derives
/// its nonce key from it under a label of its own.
fn nonce_secret() -> Vec<u8> {
    if let Some(path) = std::env::var_os("JWT_PRIVATE_KEY")
        && let Ok(pem) = std::fs::read(path)
    {
        return pem;
    }
    match std::env::var("JWT_SECRET") {
        Ok(secret) if secret.len() >= 32 => secret.into_bytes(),
        _ => DEV_SECRET.as_bytes().to_vec(),
    }
}

/// Why a login's DPoP proof was refused: the status and the JSON `error`.
pub type DpopRefusal = (http::StatusCode, &'static str);

/// The key binding a login asks for with its `DPoP` proof (`None`: a
/// bearer login), or its refusal: 400 `invalid_dpop_proof` or
/// `use_dpop_nonce` (answer with the issuer's `DPoP-Nonce`), 503 when the
/// cluster's replay cache cannot answer.
pub async fn dpop_binding(
    issuer: &tower_sliding_jwt::Issuer<Key, DemoClaims>,
    request: &http::request::Parts,
) -> Result<Option<tower_sliding_jwt::Confirmation>, DpopRefusal> {
    use tower_sliding_jwt::IssueErrorKind;
    issuer
        .dpop_binding(request)
        .await
        .map_err(|error| match error.kind() {
            IssueErrorKind::UseDpopNonce => (http::StatusCode::BAD_REQUEST, "use_dpop_nonce"),
            IssueErrorKind::InvalidDpopProof => {
                (http::StatusCode::BAD_REQUEST, "invalid_dpop_proof")
            }
            _ => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
            ),
        })
}

/// The body of a login answer: the token and its type (`DPoP` when it is
/// bound to the client's key, which then gets no cookie).
pub fn login_body(token: &str, bound: bool) -> serde_json::Value {
    let token_type = if bound { "DPoP" } else { "Bearer" };
    serde_json::json!({ "token": token, "token_type": token_type })
}

/// Reuse detection with `grace` seconds (`$REUSE_GRACE`), when given; it
/// says so, and logs each session it revokes for reuse (by `sid`).
pub fn with_reuse_grace(
    builder: SlidingJwtBuilder<Key, DemoClaims>,
    grace: Option<&str>,
) -> Result<SlidingJwtBuilder<Key, DemoClaims>, String> {
    let Some(grace) = grace.filter(|grace| !grace.is_empty()) else {
        return Ok(builder);
    };
    let grace: u64 = grace
        .parse()
        .map_err(|_| format!("REUSE_GRACE must be a whole number of seconds, not {grace:?}"))?;
    eprintln!("reuse detection on, grace {grace} s (REUSE_GRACE)");
    Ok(builder
        .with_reuse_detection(Duration::from_secs(grace))
        .with_on_reuse(|claims: &DemoClaims| {
            eprintln!(
                "reuse detected: session {} revoked",
                claims.registered.sid.as_deref().unwrap_or("?")
            );
        }))
}

/// At most `max` live sessions per user (`$MAX_SESSIONS`), when given: a
/// login past it ends the user's least recently seen session.
pub fn with_max_sessions(
    builder: SlidingJwtBuilder<Key, DemoClaims>,
    max: Option<&str>,
) -> Result<SlidingJwtBuilder<Key, DemoClaims>, String> {
    let Some(max) = max.filter(|max| !max.is_empty()) else {
        return Ok(builder);
    };
    let max: usize = max
        .parse()
        .ok()
        .filter(|max| (1..=1000).contains(max))
        .ok_or_else(|| {
            format!("MAX_SESSIONS must be a whole number from 1 to 1000, not {max:?}")
        })?;
    eprintln!(
        "at most {max} sessions per user (MAX_SESSIONS): a login past it ends the least recently seen"
    );
    Ok(builder.with_max_sessions(max, tower_sliding_jwt::OnLimit::EndLeastRecent))
}

/// The optional modes every store shares: `$REUSE_GRACE` and
/// `$MAX_SESSIONS`.
fn configured(
    builder: SlidingJwtBuilder<Key, DemoClaims>,
    grace: Option<&str>,
) -> Result<SlidingJwtBuilder<Key, DemoClaims>, String> {
    let max = std::env::var("MAX_SESSIONS").ok();
    with_max_sessions(with_reuse_grace(builder, grace)?, max.as_deref())
}

/// The contract's layer; with `$REDIS_URL` set, one instance of a cluster
/// on Redis (see [`cluster_layer`]), with `$DATABASE_URL` one on PostgreSQL
/// (see [`database_layer`]; both set is refused); otherwise revocations are kept by the durable
/// store (SQLite) in `tower-sliding-jwt-<demo>.sqlite3` in the working
/// directory, or in the file `$REVOCATION_PATH` names (logouts survive a
/// restart or a crash), or in memory with `REVOCATION_PATH=memory`.
/// `$REUSE_GRACE` turns reuse detection on in each.
pub async fn layer_from_env(
    demo: &str,
    key: Key,
    clock: impl Clock + Clone,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    let grace = std::env::var("REUSE_GRACE").ok();
    let grace = grace.as_deref();
    let redis = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let database = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    match (redis, database) {
        (Some(_), Some(_)) => {
            return Err(
                "REDIS_URL and DATABASE_URL are both set: a cluster shares one store; unset one of them"
                    .to_owned(),
            );
        }
        (Some(url), None) => {
            let layer = cluster_layer(key, clock, &url, grace).await?;
            eprintln!("cluster mode: revocations and single flight go through Redis (REDIS_URL)");
            return Ok(layer);
        }
        (None, Some(url)) => {
            let layer = database_layer(key, clock, &url, grace).await?;
            eprintln!(
                "cluster mode: revocations and single flight go through PostgreSQL (DATABASE_URL)"
            );
            return Ok(layer);
        }
        (None, None) => {}
    }
    let builder = builder_with_key(key, clock.clone()).map_err(|e| e.to_string())?;
    let path = match std::env::var_os("REVOCATION_PATH") {
        Some(path) if path == "memory" => {
            eprintln!(
                "revocations are kept in memory (REVOCATION_PATH=memory): a restart forgets every logout"
            );
            return configured(builder, grace)?
                .build()
                .map_err(|e| e.to_string());
        }
        Some(path) if !path.is_empty() => std::path::PathBuf::from(path),
        _ => std::path::PathBuf::from(format!("tower-sliding-jwt-{demo}.sqlite3")),
    };
    // Logouts survive restarts and crashes: the durable store. A damaged or
    // locked file stops the demo.
    let store = tower_sliding_jwt::DurableStore::builder(&path)
        .with_clock(clock)
        .open()
        .map_err(|e| cannot(&format!("keep revocations in {}", path.display()), &e))?;
    eprintln!("revocations are kept in {}", store.path().display());
    configured(builder.with_revocation_store(store), grace)?
        .build()
        .map_err(|e| e.to_string())
}

/// The contract's layer as one instance of a cluster: revocations and the
/// single flight go through the Redis at `url`, so demo processes on other
/// ports behind the same Redis agree on logouts and renewals (and, with a
/// reuse `grace`, on reuse). Redis down: 503 with `Retry-After` until it is back.
#[cfg(feature = "redis")]
pub async fn cluster_layer(
    key: Key,
    clock: impl Clock + Clone,
    url: &str,
    grace: Option<&str>,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    // The URL may carry a password: it is never printed.
    let store = tower_sliding_jwt::redis::RedisStore::builder(url)
        .with_clock(clock.clone())
        .connect()
        .await
        .map_err(|e| cannot("use the Redis at REDIS_URL", &e))?;
    layer_on(store, key, clock, grace)
}

/// Without the `redis` feature there is no cluster mode.
#[cfg(not(feature = "redis"))]
pub async fn cluster_layer(
    _key: Key,
    _clock: impl Clock + Clone,
    _url: &str,
    _grace: Option<&str>,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    Err(
        "REDIS_URL is set, but this demo was built without the `redis` feature: run it with `--features redis`"
            .to_owned(),
    )
}

/// The contract's layer as one instance of a cluster on PostgreSQL:
/// revocations and the single flight go through the database at `url`
/// (tables created if missing), so demo processes on other ports on the
/// same database agree on logouts and renewals (and, with a reuse `grace`,
/// on reuse). PostgreSQL down: 503 with `Retry-After` until it is back.
#[cfg(feature = "postgres")]
pub async fn database_layer(
    key: Key,
    clock: impl Clock + Clone,
    url: &str,
    grace: Option<&str>,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    // The URL may carry a password: it is never printed.
    let store = tower_sliding_jwt::postgres::PostgresStore::builder(url)
        .with_clock(clock.clone())
        .connect()
        .await
        .map_err(|e| cannot("use the PostgreSQL at DATABASE_URL", &e))?;
    layer_on(store, key, clock, grace)
}

/// Without the `postgres` feature there is no PostgreSQL cluster mode.
#[cfg(not(feature = "postgres"))]
pub async fn database_layer(
    _key: Key,
    _clock: impl Clock + Clone,
    _url: &str,
    _grace: Option<&str>,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    Err(
        "DATABASE_URL is set, but this demo was built without the `postgres` feature: run it with `--features postgres`"
            .to_owned(),
    )
}

/// The contract's layer on a cluster's shared `store`.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn layer_on(
    store: impl tower_sliding_jwt::store::RevocationStore,
    key: Key,
    clock: impl Clock + Clone,
    grace: Option<&str>,
) -> Result<SlidingJwtLayer<Key, DemoClaims>, String> {
    let builder = builder_with_key(key, clock).map_err(|e| e.to_string())?;
    configured(builder.with_revocation_store(store), grace)?
        .build()
        .map_err(|e| e.to_string())
}

/// "cannot {what}: {error}", and its cause when it has one (a store's
/// errors carry the backend's reason there; none holds a password).
fn cannot(what: &str, error: &tower_sliding_jwt::StoreError) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("cannot {what}: {error}: {cause}"),
        None => format!("cannot {what}: {error}"),
    }
}

/// The status of a login that could not be recorded: 503 (answer with
/// `Retry-After`) when the store cannot record the session, 500 otherwise.
pub fn login_failed(error: &tower_sliding_jwt::IssueError) -> http::StatusCode {
    match error.kind() {
        tower_sliding_jwt::IssueErrorKind::Store => http::StatusCode::SERVICE_UNAVAILABLE,
        tower_sliding_jwt::IssueErrorKind::TooManySessions => http::StatusCode::CONFLICT,
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of `GET /me`.
pub fn me(claims: &DemoClaims) -> serde_json::Value {
    let r = &claims.registered;
    serde_json::json!({
        "sub": r.sub, "role": claims.extra.role, "sid": r.sid, "exp": r.exp, "iat": r.iat, "auth_time": r.auth_time,
    })
}

/// `GET /events`: a Server-Sent Events stream that follows the caller's
/// session, not the token it was opened with. An event twice a second
/// (`data: {"n": 1}`, counting) while the session lives; when it ends (logout,
/// ended from another session, reuse, its cap, idle, superseded claims),
/// one last `event: session-ended` whose `data:` names the reason, and the
/// stream ends. When this instance cannot tell whether the session lives
/// (the shared store unreachable past its bound), it ends without that
/// event (fail closed): a reconnect then gets 503.
#[derive(Debug)]
pub struct Events {
    ended: tower_sliding_jwt::future::Ended,
    tick: tokio::time::Interval,
    sent: u64,
    done: bool,
}

impl Events {
    /// The stream of the request whose session is `session`.
    pub fn new(session: &tower_sliding_jwt::Session<DemoClaims>) -> Self {
        // Twice a second: "at least every second" with room for timers.
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ended: session.ended(),
            tick,
            sent: 0,
            done: false,
        }
    }

    /// `text/event-stream`, never cached.
    pub fn headers(headers: &mut http::HeaderMap) {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
    }
}

impl http_body::Body for Events {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(reason) = std::pin::Pin::new(&mut self.ended).poll(cx) {
            self.done = true;
            if reason == tower_sliding_jwt::EndReason::CannotTell {
                return Poll::Ready(None);
            }
            let last = format!("event: session-ended\ndata: {reason}\n\n");
            return Poll::Ready(Some(Ok(http_body::Frame::data(last.into()))));
        }
        match self.tick.poll_tick(cx) {
            Poll::Ready(_) => {
                self.sent += 1;
                let event = format!("data: {{\"n\":{}}}\n\n", self.sent);
                Poll::Ready(Some(Ok(http_body::Frame::data(event.into()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
