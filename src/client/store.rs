//! The token a client holds, and what may replace it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use std::time::Duration;

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::clock::{Clock, SystemClock};
use crate::keys::Keys;
use crate::source::credential;
use crate::token::{jws, signature_verifies};

/// The largest renewal the client reads by default: the server's default limit.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The largest token the application sets whose claims are read: the
/// server's highest limit (a renewal's limit is configured on the layer).
const MAX_HELD_TOKEN_BYTES: usize = 1024 * 1024;

/// What the client knows about a token without verifying it: a client has no
/// key, and only ties a replacement to the token it holds.
#[derive(Clone, PartialEq, Eq)]
struct Unverified {
    exp: i64,
    iat: Option<i64>,
    sid: Option<String>,
    sub: Option<String>,
    iss: Option<String>,
    auth_time: Option<i64>,
    /// The key binding (DPoP `cnf`), as it is: a renewal keeps it exactly.
    cnf: Option<Value>,
}

impl Unverified {
    /// Whether `offered` can be a renewal of this token: the same session
    /// (`sid`, which this token must have), and the same `sub`, `iss` and
    /// `auth_time` where this token has them — what a renewal copies.
    fn is_renewed_by(&self, offered: &Unverified) -> bool {
        let same =
            |held: &Option<String>, offered: &Option<String>| held.is_none() || held == offered;
        self.sid.is_some()
            && offered.sid == self.sid
            && same(&self.sub, &offered.sub)
            && same(&self.iss, &offered.iss)
            && (self.auth_time.is_none() || offered.auth_time == self.auth_time)
            && offered.cnf == self.cnf
    }
}

/// How far ahead of now an adopted token may expire, by default, for a held
/// token without `iat`: a day.
const DEFAULT_HORIZON: i64 = 86_400;

/// What a store checks offered tokens with; set before the store is shared.
#[derive(Clone)]
struct Checks {
    clock: Arc<dyn Clock>,
    /// The longest an adopted token may still live; `None`: four times the
    /// lifetime of the token the application set.
    max_lifetime: Option<i64>,
    keys: Option<Arc<dyn Keys>>,
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            max_lifetime: None,
            keys: None,
        }
    }
}

#[derive(Clone)]
struct Current {
    /// `Bearer <token>`, ready to attach (marked sensitive).
    header: HeaderValue,
    /// `None` when the token is not a readable compact JWT.
    claims: Option<Unverified>,
    /// How far past now an offered token may expire: from the token the
    /// application set, kept across renewals (a renewal never widens it).
    horizon: i64,
}

/// The token a client currently holds, shared by every clone of the client
/// service and by the application. `Debug` never prints the token.
///
/// The application sets it ([`replace`](Self::replace) after a login,
/// [`clear`](Self::clear) after a logout); [`ClientLayer`](crate::ClientLayer)
/// only ever swaps it for a renewal of the same session
/// ([`offer`](Self::offer)), or clears it when the server refuses it.
#[derive(Clone, Default)]
pub struct TokenStore {
    current: Arc<RwLock<Option<Current>>>,
    /// Serialises change notifications, so the last one sees the latest token.
    notify: Arc<Mutex<()>>,
    checks: Checks,
}

impl TokenStore {
    /// A store holding `token` (for example the login token). A token that is
    /// not a valid header value leaves the store empty.
    pub fn new(token: &str) -> Self {
        let store = Self::default();
        store.replace(token);
        store
    }

    /// An empty store: requests go out without a token until one is set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The current token.
    pub fn token(&self) -> Option<String> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let header = current.as_ref()?.header.to_str().ok()?;
        header.strip_prefix("Bearer ").map(str::to_owned)
    }

    /// The current token's `exp`, if it is a readable compact JWT.
    pub fn expires_at(&self) -> Option<i64> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref()?.claims.as_ref().map(|c| c.exp)
    }

    /// Sets the token unconditionally (e.g. after a new login, which may
    /// start another session); returns whether it was a well-formed header
    /// value (if not, the store is left as it was).
    pub fn replace(&self, token: &str) -> bool {
        let Some(header) = credential("Bearer", token) else {
            return false;
        };
        let claims = unverified(token, MAX_HELD_TOKEN_BYTES);
        let horizon = self.checks.max_lifetime.unwrap_or_else(|| {
            claims
                .as_ref()
                .and_then(|c| Some(c.exp.checked_sub(c.iat?)?.max(1)))
                .map_or(DEFAULT_HORIZON, |lifetime| lifetime.saturating_mul(4))
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Current {
            header,
            claims,
            horizon,
        });
        true
    }

    /// Where "now" comes from when an offered token's `exp` is checked
    /// against the horizon (default: the system clock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.checks.clock = Arc::new(clock);
        self.replace_current();
        self
    }

    /// The longest an adopted renewal may still live when it arrives
    /// (default: four times the lifetime, `exp - iat`, of the token the
    /// application set; a day when it has no `iat`). A token expiring later
    /// is not adopted, so no forgery can pin the client to a token that
    /// outlives every genuine renewal. Raise it if the server's ttl may grow
    /// more than that.
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.checks.max_lifetime = Some(i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX));
        self.replace_current();
        self
    }

    /// Adopts only renewals whose signature verifies with `keys` (the
    /// issuer's public keys: a [`KeyRing::verifying`](crate::KeyRing::verifying)
    /// ring, a [`KeyRing::from_jwks`](crate::KeyRing::from_jwks) ring, or a
    /// remote key set). Without keys, a client ties an offered token to the
    /// one it holds by its claims only.
    pub fn with_verification_keys(mut self, keys: impl Keys) -> Self {
        self.checks.keys = Some(Arc::new(keys));
        self
    }

    /// Applies changed checks to the token already held (a store is
    /// configured before it is shared).
    fn replace_current(&self) {
        let token = self.token();
        if let Some(token) = token {
            self.replace(&token);
        }
    }

    /// Forgets the token (e.g. after logout).
    pub fn clear(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Adopts `token` as a renewal of the current one; returns whether it did.
    ///
    /// The offer is taken only when all of these hold:
    /// * `token` is a compact JWS of at most 8 KiB: three non-empty base64url
    ///   segments, a JSON object header whose `alg` is not `none`, a JSON
    ///   object payload with an integer `exp` (the signature is not checked:
    ///   a client has no key);
    /// * the store holds a readable token (an empty store, or one holding an
    ///   opaque token, has nothing to tie a renewal to: use
    ///   [`replace`](Self::replace) for a first token);
    /// * its `exp` is later than the current one's, so an older renewal
    ///   arriving last never replaces a newer one, and at most the horizon
    ///   ahead of now ([`with_max_lifetime`](Self::with_max_lifetime));
    /// * it is tied to the current token: the current token has a `sid` and
    ///   the offered one the same `sid`, and the same `sub`, `iss` and
    ///   `auth_time` where the current one has them, and exactly the same
    ///   key binding (DPoP `cnf`, or none) — a token of another session or
    ///   user, or bound to another key, is never adopted;
    /// * with [`with_verification_keys`](Self::with_verification_keys), its
    ///   signature verifies.
    pub fn offer(&self, token: &str) -> bool {
        self.offer_within(token, MAX_TOKEN_BYTES)
    }

    pub(crate) fn offer_within(&self, token: &str, max_bytes: usize) -> bool {
        let Some(offered) = unverified(token, max_bytes) else {
            return false;
        };
        let Some(header) = credential("Bearer", token) else {
            return false;
        };
        // The signature first, outside the lock (it is the slow part).
        if let Some(keys) = &self.checks.keys
            && !signature_verifies(&**keys, token)
        {
            return false;
        }
        let now = self.checks.clock.now();
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let Some(Current {
            claims: Some(held),
            horizon,
            ..
        }) = &*slot
        else {
            return false;
        };
        if offered.exp <= held.exp
            || offered.exp > now.saturating_add(*horizon)
            || !held.is_renewed_by(&offered)
        {
            return false;
        }
        let horizon = *horizon;
        *slot = Some(Current {
            header,
            claims: Some(offered),
            horizon,
        });
        true
    }

    /// Clears the store if it still holds `sent` (the header value a refused
    /// request carried); returns whether it did. A token adopted or set since
    /// is kept.
    pub(crate) fn clear_if(&self, sent: &HeaderValue) -> bool {
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|c| c.header == *sent) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// Calls `notify` with the current token, one notification at a time:
    /// when renewals race, the last call sees the latest token.
    pub(crate) fn notify(&self, notify: &(dyn Fn(&str) + Send + Sync)) {
        let _serial = self.notify.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = self.token() {
            notify(&token);
        }
    }

    /// The time by the store's clock (a DPoP proof's `iat`).
    pub(crate) fn now(&self) -> i64 {
        self.checks.clock.now()
    }

    pub(crate) fn header(&self) -> Option<HeaderValue> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|c| c.header.clone())
    }
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

/// The claims a client ties a token by, of a compact JWS of at most `max_bytes`, read without
/// verification; `None` for anything else, including `alg: none`.
fn unverified(token: &str, max_bytes: usize) -> Option<Unverified> {
    if token.len() > max_bytes {
        return None;
    }
    let (header, claims) = jws::unverified::<Map<String, Value>, Map<String, Value>>(token)?;
    let alg = header.get("alg")?.as_str()?;
    if alg.eq_ignore_ascii_case("none") {
        return None;
    }
    let exp = claims.get("exp")?.as_i64()?;
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(value)) => Some(Some(value.clone())),
        Some(_) => None,
    };
    let number = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(value) => value.as_i64().map(Some),
    };
    Some(Unverified {
        exp,
        iat: number("iat")?,
        sid: text("sid")?,
        sub: text("sub")?,
        iss: text("iss")?,
        auth_time: number("auth_time")?,
        cnf: claims.get("cnf").filter(|c| !c.is_null()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::clock::ManualClock;

    const NOW: i64 = 1_000_000;

    /// A compact JWS with header `{"alg":alg}` and the JSON `payload`.
    fn jwt(alg: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    /// A token of session `s1`, issued an hour before it expires at `exp`.
    fn token(exp: i64) -> String {
        jwt(
            "HS256",
            &format!(
                r#"{{"exp":{exp},"iat":{},"sid":"s1","sub":"alice"}}"#,
                exp - 3600
            ),
        )
    }

    fn store(token: &str) -> TokenStore {
        TokenStore::new(token).with_clock(ManualClock::new(NOW))
    }

    #[test]
    fn the_latest_exp_wins() {
        let store = store(&token(NOW + 100));
        assert_eq!(store.expires_at(), Some(NOW + 100));
        assert!(store.offer(&token(NOW + 300)));
        assert!(
            !store.offer(&token(NOW + 200)),
            "an older renewal arriving late is ignored"
        );
        assert!(
            !store.offer(&token(NOW + 300)),
            "an equal exp is no renewal"
        );
        assert_eq!(store.token().unwrap(), token(NOW + 300));
        assert!(
            !store.offer("not a jwt"),
            "unreadable tokens never replace a readable one"
        );
        assert!(!store.offer("bad\nheader"));
        assert!(!format!("{store:?}").contains(&token(NOW + 300)));
    }

    #[test]
    fn offer_never_fills_an_empty_or_opaque_store() {
        let store = TokenStore::empty();
        assert!(
            !store.offer(&token(NOW + 300)),
            "nothing to tie a renewal to"
        );
        assert!(store.token().is_none());
        assert!(store.replace("opaque"), "replace is unconditional");
        assert_eq!(store.expires_at(), None);
        assert!(!store.offer(&token(NOW + 300)));
        assert_eq!(store.token().as_deref(), Some("opaque"));
        assert!(!store.replace("bad\nheader"));
        assert_eq!(store.token().as_deref(), Some("opaque"));
    }

    #[test]
    fn offer_needs_a_token_of_the_same_session_and_user() {
        let held = r#"{"exp":1000100,"sid":"mine","sub":"alice","iss":"api","auth_time":5}"#;
        let store = store(&jwt("HS256", held));
        for other in [
            r#"{"exp":1000200,"sid":"theirs","sub":"alice","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sub":"alice","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sid":null,"sub":"alice","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sid":7,"sub":"alice","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sid":"mine","sub":"mallory","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sid":"mine","iss":"api","auth_time":5}"#,
            r#"{"exp":1000200,"sid":"mine","sub":"alice","iss":"evil","auth_time":5}"#,
            r#"{"exp":1000200,"sid":"mine","sub":"alice","iss":"api","auth_time":6}"#,
            r#"{"exp":1000200,"sid":"mine","sub":"alice","iss":"api"}"#,
        ] {
            assert!(!store.offer(&jwt("HS256", other)), "{other}");
        }
        assert!(store.offer(&jwt(
            "HS256",
            r#"{"exp":1000200,"sid":"mine","sub":"alice","iss":"api","auth_time":5,"role":"user"}"#
        )));
        // A held token without a sid has nothing to tie another user's token to.
        let store = self::store(&jwt("HS256", r#"{"exp":1000100,"sub":"alice"}"#));
        assert!(!store.offer(&jwt(
            "HS256",
            r#"{"exp":1000200,"sid":"new","sub":"alice"}"#
        )));
        assert!(!store.offer(&jwt("HS256", r#"{"exp":1000200,"sub":"alice"}"#)));
    }

    #[test]
    fn an_offer_expiring_past_the_horizon_is_not_adopted() {
        // Held: a one-hour token, so renewals may live up to four hours.
        let clock = ManualClock::new(NOW);
        let store = TokenStore::new(&token(NOW + 100)).with_clock(clock.clone());
        assert!(
            !store.offer(&token(i64::MAX)),
            "a forgery cannot pin the client"
        );
        assert!(!store.offer(&token(NOW + 4 * 3600 + 1)));
        assert!(store.offer(&token(NOW + 4 * 3600)));
        // The horizon comes from the token the application set: a renewal
        // claiming a longer life does not widen it.
        let long = jwt(
            "HS256",
            &format!(
                r#"{{"exp":{},"iat":0,"sid":"s1","sub":"alice"}}"#,
                NOW + 4 * 3600 + 10
            ),
        );
        assert!(!store.offer(&long));
        // Configurable.
        let store = TokenStore::new(&token(NOW + 100))
            .with_clock(clock)
            .with_max_lifetime(Duration::from_secs(30 * 86_400));
        assert!(store.offer(&token(NOW + 20 * 86_400)));
    }

    #[test]
    fn offer_reads_only_compact_jws() {
        let store = store(&token(NOW + 100));
        let mut too_big = format!(r#"{{"exp":{},"sid":"s1","sub":"alice","pad":""#, NOW + 200);
        too_big.push_str(&"x".repeat(MAX_TOKEN_BYTES));
        too_big.push_str(r#""}"#);
        let ok = |exp: &str| format!(r#"{{"exp":{exp},"sid":"s1","sub":"alice"}}"#);
        for bad in [
            jwt("none", &ok("1000200")),
            jwt("NONE", &ok("1000200")),
            format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(ok("1000200"))),
            jwt("HS256", &ok("1000200.5")),
            jwt("HS256", &ok(r#""1000200""#)),
            jwt("HS256", &ok("18446744073709551615")),
            jwt("HS256", r#"[200]"#),
            jwt("HS256", r#"{"nbf":200,"sid":"s1"}"#),
            jwt("HS256", &too_big),
            format!("{}.", jwt("HS256", &ok("1000200"))),
            jwt("HS256", &ok("1000200")).replace(".c2ln", "."),
            jwt("HS256", &ok("1000200")).replace(".c2ln", ".c2ln="),
            jwt("HS256", &ok("1000200")).replace(".c2ln", ".c2+n"),
        ] {
            assert!(!store.offer(&bad), "{bad}");
        }
        assert_eq!(store.expires_at(), Some(NOW + 100));
        assert!(
            store.offer_within(&jwt("HS256", &too_big), 2 * MAX_TOKEN_BYTES),
            "the limit is configurable"
        );
        // The application's own (login) token is read above the default limit,
        // so a layer configured for large tokens can renew it.
        let big_login = too_big.replace(
            &format!(r#""exp":{}"#, NOW + 200),
            &format!(r#""exp":{}"#, NOW + 300),
        );
        assert!(store.replace(&jwt("HS256", &big_login)));
        assert_eq!(store.expires_at(), Some(NOW + 300));
    }

    #[test]
    fn clear_if_only_clears_the_refused_token() {
        let store = store(&token(NOW + 100));
        let sent = store.header().unwrap();
        assert!(store.offer(&token(NOW + 200)));
        assert!(!store.clear_if(&sent), "a renewal adopted since is kept");
        let sent = store.header().unwrap();
        assert!(store.clear_if(&sent));
        assert!(store.token().is_none());
    }
}
