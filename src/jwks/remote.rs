//! A key set loaded from a JWKS URL, refreshed in the background and on an
//! unknown `kid` (feature `jwks`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use http::Uri;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::jwks::document::{DocumentError, parse};
use crate::jwks::fetch::{JwksError, JwksErrorKind, JwksFetcher};
use crate::keys::Jwks;
use crate::keys::{Key, KeySnapshot, Keys};
use crate::log::event;

/// The largest JWKS document read (1 MiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Verification keys loaded from a JWKS URL, for a
/// [verify-only layer](crate::SlidingJwtLayer::verifier) (feature `jwks`).
///
/// * It loads the document at once, then refreshes it in the background
///   every interval (default 5 minutes), and when a token names a `kid` it
///   does not know, at most once per cooldown (default 30 s) whatever the
///   requests do. The request that met the unknown `kid` is not held up: it
///   gets 401 `invalid_token`, and the next one finds the key.
/// * A refresh that fails, times out (default 10 s) or returns something
///   that is not a usable JWKS changes nothing: the last good set stays.
///   [`Keys::version`] changes only when the set does, so the verified-token
///   cache is emptied exactly then.
/// * `oct` (HMAC) keys are never accepted; keys it cannot use are skipped,
///   with the reason in the log (target `tower_sliding_jwt`). The body is limited to
///   1 MiB and 100 keys.
/// * Until the first load succeeds, a request with a token gets 503 with
///   `Retry-After` (gRPC `UNAVAILABLE`), never 401; the first load is
///   retried after 1, 2, 4... seconds up to the cooldown.
/// * A set that could not be refreshed for longer than its maximum
///   staleness (default 24 hours) is no longer trusted: a key the issuer
///   removed must not stay valid for as long as the issuer's endpoint is
///   down. Requests then get 503 (`KeysUnavailable`) as before the first
///   load, and the next good fetch restores the set.
///
/// Fetching goes through a [`JwksFetcher`]: [`HyperFetcher::new`](crate::HyperFetcher::new)
/// over TLS, [`HyperFetcher::plain_http`](crate::HyperFetcher::plain_http)
/// for an issuer on loopback, or your own client. The URL is never logged or
/// printed with its user info or query.
/// Cheap to clone; the background task ends when the last clone is dropped.
///
/// What reaches a verify-only service is the issuer's keys, not its
/// logouts: give it the issuer's shared revocation store (e.g.
/// `redis::RedisStore`) too, so a session ended at the issuer is refused here.
///
/// ```no_run
/// use tower_sliding_jwt::{HyperFetcher, RemoteJwks, SlidingJwtLayer, StandardClaims};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = RemoteJwks::builder(
///     "https://login.example.com/.well-known/jwks.json".parse()?,
///     HyperFetcher::new(),
/// )
/// .build()?;
/// let layer = SlidingJwtLayer::<_, StandardClaims>::verifier(keys)
///     .with_issuer("login-service")
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    shared: Arc<Shared>,
}

struct Shared {
    uri: Uri,
    fetcher: Box<dyn JwksFetcher>,
    current: RwLock<Current>,
    version: AtomicU64,
    ready: AtomicBool,
    /// When the last fetch started or was requested (clock seconds): the
    /// cooldown's atomic timestamp.
    last_attempt: AtomicI64,
    /// When the set was last fetched successfully (clock seconds).
    last_success: AtomicI64,
    /// How long the set is trusted without a successful fetch.
    max_staleness: i64,
    clock: Arc<dyn Clock>,
    cooldown: i64,
    timeout: Duration,
    wake: Arc<Notify>,
}

struct Current {
    keys: Arc<[Key]>,
    /// What the keys publish: compared to tell a changed set from the same one.
    published: Jwks,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the background task see that it is no longer needed.
        self.wake.notify_one();
    }
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("RemoteJwks")
            .field("uri", &Redacted(&shared.uri))
            .field("ready", &shared.ready.load(Ordering::Relaxed))
            .field("version", &shared.version.load(Ordering::Relaxed))
            .field("keys", &shared.snapshot().len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`RemoteJwks`].
pub struct RemoteJwksBuilder {
    uri: Uri,
    fetcher: Box<dyn JwksFetcher>,
    interval: Duration,
    cooldown: Duration,
    timeout: Duration,
    max_staleness: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksBuilder")
            .field("uri", &Redacted(&self.uri))
            .field("max_staleness", &self.max_staleness)
            .field("interval", &self.interval)
            .field("cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Starts a key set loaded from `uri` through `fetcher`.
    pub fn builder(uri: Uri, fetcher: impl JwksFetcher) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            uri,
            fetcher: Box::new(fetcher),
            interval: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            max_staleness: Duration::from_secs(86_400),
            clock: Arc::new(SystemClock),
        }
    }

    /// Fetches the document now, whatever the cooldown, and waits for it:
    /// `Ok(true)` when the key set changed, `Ok(false)` when it is the same.
    /// For start-up (to wait for the first load) and operations.
    ///
    /// # Errors
    /// A [`JwksError`] when the fetch fails or the document is unusable; the
    /// last good set stays in use.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let shared = &self.shared;
        shared
            .last_attempt
            .store(shared.clock.now(), Ordering::SeqCst);
        shared.load().await
    }
}

impl RemoteJwksBuilder {
    /// How often the document is fetched in the background (default 5 minutes).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The least time between two fetches prompted by unknown `kid`s
    /// (default 30 s, whole seconds, at least 1 s).
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The longest a fetch may take, body included (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the set is trusted without a successful fetch (default 24
    /// hours): past it, requests get 503 until a fetch succeeds again.
    /// Whole seconds, at least the refresh interval plus the timeout.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// The clock the cooldown and the staleness are measured with (default:
    /// the system clock; a [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and starts the background task, which loads the
    /// document at once.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoRuntime`] outside a tokio runtime;
    /// [`ConfigErrorKind::InvalidDuration`] for a zero interval or timeout,
    /// a cooldown under 1 s, or a maximum staleness shorter than the
    /// refresh interval plus the timeout (the set would go stale between two
    /// good refreshes).
    pub fn build(self) -> Result<RemoteJwks, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::NoRuntime, e))?;
        let cooldown = i64::try_from(self.cooldown.as_secs())
            .ok()
            .filter(|&s| s >= 1)
            .ok_or(ConfigErrorKind::InvalidDuration)?;
        if self.interval.is_zero()
            || self.timeout.is_zero()
            || self.max_staleness < self.interval.saturating_add(self.timeout)
        {
            return Err(ConfigErrorKind::InvalidDuration.into());
        }
        let max_staleness = i64::try_from(self.max_staleness.as_secs())
            .map_err(|_| ConfigErrorKind::InvalidDuration)?;
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            uri: self.uri,
            fetcher: self.fetcher,
            current: RwLock::new(Current {
                keys: Arc::from(Vec::new()),
                published: Jwks::default(),
            }),
            version: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            last_attempt: AtomicI64::new(i64::MIN),
            last_success: AtomicI64::new(i64::MIN),
            max_staleness,
            clock: self.clock,
            cooldown,
            timeout: self.timeout,
            wake: wake.clone(),
        });
        runtime.spawn(background(
            Arc::downgrade(&shared),
            wake,
            self.interval,
            self.cooldown,
        ));
        Ok(RemoteJwks { shared })
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<[Key]> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .clone()
    }

    /// Whether the set is loaded and was refreshed within its maximum staleness.
    fn is_fresh(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && self.clock.now()
                < self
                    .last_success
                    .load(Ordering::SeqCst)
                    .saturating_add(self.max_staleness)
    }

    /// An unknown `kid` was seen: ask the background task for a fetch,
    /// unless one was started or asked for within the cooldown. Never waits.
    fn hint(&self) {
        let now = self.clock.now();
        let last = self.last_attempt.load(Ordering::SeqCst);
        if now < last.saturating_add(self.cooldown) {
            return;
        }
        // Among racing requests, exactly one wins the timestamp.
        if self
            .last_attempt
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            event!(debug, "unknown kid: refreshing the remote key set");
            self.wake.notify_one();
        }
    }

    /// Fetches, reads and installs the document; the last good set stays on
    /// any failure.
    async fn load(&self) -> Result<bool, JwksError> {
        let fetch = self.fetcher.fetch(&self.uri, MAX_JWKS_BYTES);
        let body = match tokio::time::timeout(self.timeout, fetch).await {
            Ok(body) => body?,
            Err(_) => return Err(JwksError::new(JwksErrorKind::Timeout)),
        };
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::new(JwksErrorKind::TooLarge));
        }
        let keys = parse(&body).map_err(|e| match e {
            DocumentError::NoUsableKey => JwksError::new(JwksErrorKind::NoUsableKey),
            e => JwksError::with_source(JwksErrorKind::InvalidDocument, e),
        })?;
        let published = Jwks::from_keys(&keys);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let changed = current.published != published;
        if changed {
            current.keys = Arc::from(keys);
            current.published = published;
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        drop(current);
        self.last_success.store(self.clock.now(), Ordering::SeqCst);
        self.ready.store(true, Ordering::SeqCst);
        Ok(changed)
    }
}

/// The refresh loop: at once, then every `interval` (or after a back-off
/// until the first success), and when woken by an unknown `kid`. Ends when
/// the key set is dropped.
// Without the `tracing` feature the events compile to nothing.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
async fn background(weak: Weak<Shared>, wake: Arc<Notify>, interval: Duration, cooldown: Duration) {
    let mut due = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut last_start: Option<i64> = None;
    loop {
        let woken = tokio::select! {
            () = tokio::time::sleep_until(due) => false,
            () = wake.notified() => true,
        };
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let now = shared.clock.now();
        // A wake-up that raced a timed fetch does not make a second one
        // within the cooldown.
        if woken && last_start.is_some_and(|t| now < t.saturating_add(shared.cooldown)) {
            continue;
        }
        last_start = Some(now);
        shared.last_attempt.store(now, Ordering::SeqCst);
        match shared.load().await {
            Ok(changed) => {
                if changed {
                    event!(
                        info,
                        version = shared.version.load(Ordering::Relaxed),
                        "remote key set changed"
                    );
                }
            }
            Err(error) => {
                let url = Redacted(&shared.uri);
                let causes = Causes(&error);
                if !shared.ready.load(Ordering::SeqCst) {
                    event!(warn, %url, error = %causes, "remote key set could not be loaded: no key set yet, requests get 503");
                } else if shared.is_fresh() {
                    event!(warn, %url, error = %causes, "remote key set refresh failed; keeping the last good set");
                } else {
                    event!(error, %url, error = %causes, "remote key set refresh failed and the last good set is too old to trust: requests get 503");
                }
            }
        }
        let wait = if shared.ready.load(Ordering::SeqCst) {
            interval
        } else {
            let wait = backoff;
            backoff = (backoff * 2).min(cooldown);
            wait
        };
        // An interval too large for the clock means "not again on a timer".
        let now = Instant::now();
        due = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
    }
}

impl Keys for RemoteJwks {
    fn signing_key(&self) -> Option<&Key> {
        None
    }

    fn verification_keys(&self) -> KeySnapshot<'_> {
        // A set past its staleness verifies nothing: the layer answers 503.
        if !self.shared.is_fresh() {
            return KeySnapshot::from(&[][..]);
        }
        self.shared.snapshot().into()
    }

    fn version(&self) -> u64 {
        self.shared.version.load(Ordering::SeqCst)
    }

    fn is_ready(&self) -> bool {
        self.shared.is_fresh()
    }

    fn key_not_found(&self, _kid: Option<&str>) {
        self.shared.hint();
    }
}

/// A URL as it may be shown: scheme, host, port and path, never user info
/// or query (which may hold credentials).
struct Redacted<'a>(&'a Uri);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            f.write_str(authority.host())?;
            if let Some(port) = authority.port_u16() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// An error and its causes, `: `-separated ("JWKS fetch failed: client
/// error (Connect): tcp connect error: Connection refused").
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::BoxFuture;
    use crate::clock::ManualClock;

    /// Answers from a script (the last answer repeats) and counts calls.
    struct Script {
        answers: Arc<Mutex<VecDeque<Result<Bytes, JwksErrorKind>>>>,
        calls: Arc<AtomicU64>,
    }

    impl JwksFetcher for Script {
        fn fetch<'a>(&'a self, _: &'a Uri, _: usize) -> BoxFuture<'a, Result<Bytes, JwksError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            let answer = if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers[0].clone()
            };
            Box::pin(async move { answer.map_err(JwksError::new) })
        }
    }

    fn document() -> Bytes {
        let key = Key::from_pem(
            jsonwebtoken::Algorithm::EdDSA,
            include_str!("../../tests/keys/ed25519-private.pem"),
        )
        .unwrap()
        .with_kid("a")
        .unwrap();
        Bytes::from(Jwks::from_keys(&[key]).to_json())
    }

    async fn wait(seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_backs_off_until_loaded_then_runs_every_interval() {
        let calls = Arc::new(AtomicU64::new(0));
        let script = Script {
            answers: Arc::new(Mutex::new(VecDeque::from([
                Err(JwksErrorKind::Transport),
                Err(JwksErrorKind::Status),
                Err(JwksErrorKind::Timeout),
                Ok(document()),
            ]))),
            calls: calls.clone(),
        };
        let clock = ManualClock::new(1_800_000_000);
        let remote = RemoteJwks::builder("http://issuer/jwks".parse().unwrap(), script)
            .with_clock(clock.clone())
            .with_refresh_interval(Duration::from_secs(300))
            .build()
            .unwrap();
        let count = || calls.load(Ordering::SeqCst);
        tokio::task::yield_now().await;
        assert_eq!(count(), 1, "loads at once");
        assert!(!remote.is_ready());
        // Check half-way between the due times.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Back-off before the first success: 1 s, then 2 s, then 4 s.
        wait(1).await;
        assert_eq!(count(), 2);
        wait(2).await;
        assert_eq!(count(), 3);
        wait(4).await;
        assert_eq!(count(), 4);
        assert!(remote.is_ready());
        assert_eq!(remote.version(), 1);
        // Then every interval; the same document changes nothing.
        wait(299).await;
        assert_eq!(count(), 4);
        wait(2).await;
        assert_eq!(count(), 5);
        wait(300).await;
        assert_eq!(count(), 6);
        assert_eq!(remote.version(), 1);
        // Unknown kids: one fetch per cooldown of the manual clock.
        for _ in 0..100 {
            remote.key_not_found(Some("new"));
        }
        tokio::task::yield_now().await;
        assert_eq!(count(), 6, "within the cooldown of the timed fetch");
        clock.advance(Duration::from_secs(30));
        for _ in 0..100 {
            remote.key_not_found(Some("new"));
            tokio::task::yield_now().await;
        }
        assert_eq!(count(), 7);
        // The task ends with the last clone.
        drop(remote);
        wait(10_000).await;
        assert_eq!(count(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_not_refreshed_for_longer_than_its_staleness_is_not_trusted_until_a_good_fetch() {
        let calls = Arc::new(AtomicU64::new(0));
        let answers = Arc::new(Mutex::new(VecDeque::from([
            Ok(document()),
            Err(JwksErrorKind::Transport),
        ])));
        let script = Script {
            answers: answers.clone(),
            calls: calls.clone(),
        };
        let clock = ManualClock::new(1_800_000_000);
        let remote = RemoteJwks::builder("https://issuer/jwks".parse().unwrap(), script)
            .with_clock(clock.clone())
            .with_refresh_interval(Duration::from_secs(300))
            .with_max_staleness(Duration::from_secs(3600))
            .build()
            .unwrap();
        tokio::task::yield_now().await;
        assert!(remote.is_ready());
        assert_eq!(remote.verification_keys().len(), 1);
        // The issuer's endpoint is down from now on; the set ages.
        clock.advance(Duration::from_secs(3599));
        assert!(remote.is_ready(), "within its staleness");
        assert_eq!(remote.verification_keys().len(), 1);
        clock.advance(Duration::from_secs(1));
        assert!(!remote.is_ready(), "too old to trust");
        assert!(
            remote.verification_keys().is_empty(),
            "verifies nothing: 503"
        );
        // A good fetch restores it.
        answers.lock().unwrap()[0] = Ok(document());
        assert!(!remote.refresh().await.unwrap(), "the same set");
        assert!(remote.is_ready());
        assert_eq!(remote.verification_keys().len(), 1);
    }

    #[test]
    fn urls_are_shown_without_user_info_or_query() {
        let uri: Uri = "https://user:secret@issuer.example:8443/jwks.json?token=abc"
            .parse()
            .unwrap();
        assert_eq!(
            Redacted(&uri).to_string(),
            "https://issuer.example:8443/jwks.json"
        );
        let error = JwksError::with_source(
            JwksErrorKind::Transport,
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        );
        assert_eq!(
            Causes(&error).to_string(),
            "remote key set: JWKS fetch failed: connection refused"
        );
    }
}
