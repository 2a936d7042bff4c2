//! The token a client holds, and what may replace it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::token::jws;

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
    sid: Option<String>,
}

#[derive(Clone)]
struct Current {
    /// `Bearer <token>`, ready to attach (marked sensitive).
    header: HeaderValue,
    /// `None` when the token is not a readable compact JWT.
    claims: Option<Unverified>,
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
        let Some(header) = bearer(token) else {
            return false;
        };
        let claims = unverified(token, MAX_HELD_TOKEN_BYTES);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Current { header, claims });
        true
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
    ///   arriving last never replaces a newer one;
    /// * when the current token has a `sid`, the offered one has the same
    ///   `sid`: a token of another session is never adopted.
    pub fn offer(&self, token: &str) -> bool {
        self.offer_within(token, MAX_TOKEN_BYTES)
    }

    pub(crate) fn offer_within(&self, token: &str, max_bytes: usize) -> bool {
        let Some(offered) = unverified(token, max_bytes) else {
            return false;
        };
        let Some(header) = bearer(token) else {
            return false;
        };
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let Some(Current {
            claims: Some(held), ..
        }) = &*slot
        else {
            return false;
        };
        if offered.exp <= held.exp {
            return false;
        }
        if held.sid.is_some() && offered.sid != held.sid {
            return false;
        }
        *slot = Some(Current {
            header,
            claims: Some(offered),
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

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// The `exp` and `sid` of a compact JWS of at most `max_bytes`, read without
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
    let sid = match claims.get("sid") {
        None | Some(Value::Null) => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(_) => return None,
    };
    Some(Unverified { exp, sid })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// A compact JWS with header `{"alg":alg}` and the JSON `payload`.
    fn jwt(alg: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    /// A token without a `sid`, expiring at `exp`.
    fn token(exp: i64) -> String {
        jwt("HS256", &format!(r#"{{"exp":{exp}}}"#))
    }

    #[test]
    fn the_latest_exp_wins() {
        let store = TokenStore::new(&token(100));
        assert_eq!(store.expires_at(), Some(100));
        assert!(store.offer(&token(300)));
        assert!(
            !store.offer(&token(200)),
            "an older renewal arriving late is ignored"
        );
        assert!(!store.offer(&token(300)), "an equal exp is no renewal");
        assert_eq!(store.token().unwrap(), token(300));
        assert!(
            !store.offer("not a jwt"),
            "unreadable tokens never replace a readable one"
        );
        assert!(!store.offer("bad\nheader"));
        assert!(!format!("{store:?}").contains(&token(300)));
    }

    #[test]
    fn offer_never_fills_an_empty_or_opaque_store() {
        let store = TokenStore::empty();
        assert!(!store.offer(&token(300)), "nothing to tie a renewal to");
        assert!(store.token().is_none());
        assert!(store.replace("opaque"), "replace is unconditional");
        assert_eq!(store.expires_at(), None);
        assert!(!store.offer(&token(300)));
        assert_eq!(store.token().as_deref(), Some("opaque"));
        assert!(!store.replace("bad\nheader"));
        assert_eq!(store.token().as_deref(), Some("opaque"));
    }

    #[test]
    fn offer_refuses_another_session() {
        let store = TokenStore::new(&jwt("HS256", r#"{"exp":100,"sid":"mine"}"#));
        for other in [
            r#"{"exp":200,"sid":"theirs"}"#,
            r#"{"exp":200}"#,
            r#"{"exp":200,"sid":null}"#,
            r#"{"exp":200,"sid":7}"#,
        ] {
            assert!(!store.offer(&jwt("HS256", other)), "{other}");
        }
        assert!(store.offer(&jwt("HS256", r#"{"exp":200,"sid":"mine"}"#)));
        // A current token without a sid accepts any later one.
        let store = TokenStore::new(&token(100));
        assert!(store.offer(&jwt("HS256", r#"{"exp":200,"sid":"new"}"#)));
    }

    #[test]
    fn offer_reads_only_compact_jws() {
        let store = TokenStore::new(&token(100));
        let mut too_big = r#"{"exp":200,"pad":""#.to_owned();
        too_big.push_str(&"x".repeat(MAX_TOKEN_BYTES));
        too_big.push_str(r#""}"#);
        for bad in [
            jwt("none", r#"{"exp":200}"#),
            jwt("NONE", r#"{"exp":200}"#),
            format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(r#"{"exp":200}"#)),
            jwt("HS256", r#"{"exp":200.5}"#),
            jwt("HS256", r#"{"exp":"200"}"#),
            jwt("HS256", r#"{"exp":18446744073709551615}"#),
            jwt("HS256", r#"[200]"#),
            jwt("HS256", r#"{"nbf":200}"#),
            jwt("HS256", &too_big),
            format!("{}.", jwt("HS256", r#"{"exp":200}"#)),
            jwt("HS256", r#"{"exp":200}"#).replace(".c2ln", "."),
            jwt("HS256", r#"{"exp":200}"#).replace(".c2ln", ".c2ln="),
            jwt("HS256", r#"{"exp":200}"#).replace(".c2ln", ".c2+n"),
        ] {
            assert!(!store.offer(&bad), "{bad}");
        }
        assert_eq!(store.expires_at(), Some(100));
        assert!(
            store.offer_within(&jwt("HS256", &too_big), 2 * MAX_TOKEN_BYTES),
            "the limit is configurable"
        );
        // The application's own (login) token is read above the default limit,
        // so a layer configured for large tokens can renew it.
        let big_login = too_big.replace(r#""exp":200"#, r#""exp":300"#);
        assert!(store.replace(&jwt("HS256", &big_login)));
        assert_eq!(store.expires_at(), Some(300));
    }

    #[test]
    fn clear_if_only_clears_the_refused_token() {
        let store = TokenStore::new(&token(100));
        let sent = store.header().unwrap();
        assert!(store.offer(&token(200)));
        assert!(!store.clear_if(&sent), "a renewal adopted since is kept");
        let sent = store.header().unwrap();
        assert!(store.clear_if(&sent));
        assert!(store.token().is_none());
    }
}
