//! The token engine, without HTTP and without state: decode, verify,
//! validate, sign and the lifetime arithmetic — shared by the layer and the
//! issuer. One JSON pass over the claims, straight into the user's type. It
//! knows no store, counter or session: what a verified token means for a
//! session is decided by the layer and the stores.
//!
//! The rules about a token's text live in [`jws`] (the one copy), the JOSE
//! header in `header`, ids in `random`.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

mod header;
mod identity;
mod issue;
pub(crate) mod jws;
mod random;
mod raw;
mod verified;

pub(crate) use identity::{FlightKey, TokenId};
pub use issue::{IssuedToken, Lifetimes};
pub(crate) use random::random_id;
pub use raw::RawToken;
pub(crate) use verified::{Held, KeyRef, Verified};

use header::{Fields, JoseHeader, same_type};
use jws::{b64_decode_into, split};

use crate::claims::{Audience, Claims, RegisteredClaims};
use crate::clock::Clock;
use crate::error::{IssueError, IssueErrorKind};
use crate::keys::{Key, Keys, missed, select};
use crate::reject::RejectionKind;

/// JSON text read as `T`. The text is checked as UTF-8 once, up front (JSON
/// is UTF-8: RFC 8259 §8.1), so the parser need not check every string again.
fn json<'a, T: serde::Deserialize<'a>>(text: &'a [u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(text).ok()?).ok()
}

/// The engine: keys, validation and lifetime settings (checked when the layer
/// is built) and the clock.
pub(crate) struct TokenEngine<K, C> {
    pub(crate) keys: K,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) required_typ: Option<String>,
    pub(crate) leeway: i64,
    pub(crate) max_token_bytes: usize,
    pub(crate) ttl: i64,
    pub(crate) max_session: i64,
    /// The most a session's own lifetimes may ask for (at least the defaults).
    pub(crate) ttl_limit: i64,
    pub(crate) max_session_limit: i64,
    pub(crate) _claims: PhantomData<fn() -> C>,
}

impl<K, C> fmt::Debug for TokenEngine<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEngine")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("required_typ", &self.required_typ)
            .field("leeway", &self.leeway)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("ttl", &self.ttl)
            .field("max_session", &self.max_session)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The decoded signature, reused: the backends' verifiers take a `&Vec<u8>`.
    static SIGNATURE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether `token` is a compact JWS whose signature verifies with one of
/// `keys`, selected as the layer selects them (exact `kid`, same `alg`, no
/// `crit`): what the client half checks before adopting a renewal when it
/// has the issuer's keys. The claims are not validated here.
pub(crate) fn signature_verifies(keys: &dyn Keys, token: &str) -> bool {
    let Ok((header_b64, _, signature_b64, signing_input)) = split(token) else {
        return false;
    };
    let loaded = keys.verification_keys();
    let key = with_header(&loaded, header_b64, |header| {
        if header.crit {
            return Err(RejectionKind::UnsupportedCritical);
        }
        // No key for it: its signature does not verify.
        select(&loaded, header.alg, header.kid).map_err(|_| RejectionKind::InvalidSignature)
    });
    key.is_ok_and(|key| verify_signature(key, signing_input.as_bytes(), signature_b64).is_ok())
}

/// Reads the fields of a token's JOSE header segment with `read`: known
/// without parsing when it is byte for byte the header a configured key
/// writes (every token this crate issued: the same bytes give the same
/// fields), decoded and parsed otherwise.
fn with_header<T>(
    keys: &[Key],
    segment: &str,
    read: impl FnOnce(Fields<'_>) -> Result<T, RejectionKind>,
) -> Result<T, RejectionKind> {
    if let Some(fields) = Fields::known(keys, segment) {
        return read(fields);
    }
    let mut buffer = [0u8; 256];
    let text = b64_decode_into(segment, &mut buffer)?;
    // A struct would also deserialize from an array: the header is an object.
    if text.trim_ascii_start().first() != Some(&b'{') {
        return Err(RejectionKind::MalformedToken);
    }
    let parsed: JoseHeader<'_> = json(&text).ok_or(RejectionKind::MalformedToken)?;
    read(parsed.fields())
}

/// Decodes `signature_b64` (into this thread's reused buffer) and checks it
/// over `input` with `key`.
fn verify_signature(key: &Key, input: &[u8], signature_b64: &str) -> Result<(), RejectionKind> {
    let check = |buffer: &mut Vec<u8>| {
        let decoded = jws::b64_decode_vec(signature_b64, buffer);
        let valid = decoded.is_ok() && !buffer.is_empty() && key.verify(input, buffer);
        // Keep the buffer small, also after a malformed segment: signatures
        // are at most a few hundred bytes.
        if buffer.capacity() > 4096 {
            *buffer = Vec::new();
        }
        decoded?;
        if valid {
            Ok(())
        } else {
            Err(RejectionKind::InvalidSignature)
        }
    };
    SIGNATURE
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffer) => check(&mut buffer),
            Err(_) => check(&mut Vec::new()),
        })
        .unwrap_or_else(|_| check(&mut Vec::new()))
}

thread_local! {
    /// The payload JSON and the token being signed, reused across renewals.
    static SIGNING: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
}

/// Runs `f` with this thread's signing buffers, or with fresh ones when they
/// are in use; `None` only during thread teardown.
fn with_buffers<R>(f: impl FnOnce(&mut Vec<u8>, &mut String) -> R) -> Option<R> {
    let outcome = SIGNING.try_with(move |cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (payload, token) = &mut *buffers;
            let result = f(payload, token);
            // Keep what a usual token needs, not what an outlier needed.
            if token.capacity() > 16 * 1024 {
                *payload = Vec::new();
                *token = String::new();
            }
            Ok(result)
        }
        Err(_) => Err(f),
    });
    match outcome {
        Ok(Ok(result)) => Some(result),
        Ok(Err(f)) => Some(f(&mut Vec::new(), &mut String::new())),
        Err(_) => None,
    }
}

impl<K: Keys, C: Claims> TokenEngine<K, C> {
    /// Verifies `token` completely (RFC 8725 order: size, shape, header, key,
    /// signature, then claims) and returns its claims, the key that verified
    /// it, and the session's cap ([`validate`](Self::validate)'s answer).
    pub(crate) fn verify_keyed(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(C, KeyRef, Option<i64>), RejectionKind> {
        if token.len() > self.max_token_bytes {
            return Err(RejectionKind::TokenTooLarge);
        }
        let (header_b64, payload_b64, signature_b64, signing_input) = split(token)?;
        let keys = self.keys.verification_keys();
        let key = with_header(&keys, header_b64, |header| {
            let key = select(&keys, header.alg, header.kid)
                .map_err(|miss| missed(&self.keys, &keys, miss, header.kid))?;
            if header.crit {
                return Err(RejectionKind::UnsupportedCritical);
            }
            if let Some(expected) = &self.required_typ
                && !header.typ.is_some_and(|typ| same_type(typ, expected))
            {
                return Err(RejectionKind::WrongType);
            }
            Ok(key)
        })?;
        verify_signature(key, signing_input.as_bytes(), signature_b64)?;
        let mut payload_buffer = [0u8; 1536];
        let payload = b64_decode_into(payload_b64, &mut payload_buffer)?;
        // RFC 7519 §7.2: the claims set is a JSON object.
        if payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(RejectionKind::InvalidClaims);
        }
        let claims: C = json(&payload).ok_or(RejectionKind::InvalidClaims)?;
        let deadline = self.validate(claims.registered(), now)?;
        let key = KeyRef {
            id: key.id(),
            alg: key.algorithm(),
        };
        Ok((claims, key, deadline))
    }

    /// Checks what can change with time and configuration: `exp`, `nbf`,
    /// `iss`, `aud` and the session cap; answers the session's cap (its
    /// [`session_deadline`](Self::session_deadline)), computed once here
    /// for the whole request.
    pub(crate) fn validate(
        &self,
        claims: &RegisteredClaims,
        now: i64,
    ) -> Result<Option<i64>, RejectionKind> {
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(RejectionKind::Expired);
        }
        // No token this layer signs lives longer than its longest ttl: one
        // that does was minted elsewhere, and would outlive the revocations
        // of its session (they are kept until the session's cap).
        if claims.exp.saturating_sub(now) > self.ttl_limit.saturating_add(self.leeway) {
            return Err(RejectionKind::LifetimeTooLong);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(RejectionKind::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(RejectionKind::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            let aud = claims.aud.as_ref();
            if !aud.is_some_and(|aud| self.audiences.iter().any(|a| aud.contains(a))) {
                return Err(RejectionKind::WrongAudience);
            }
        }
        // The cap is absolute: no leeway.
        let deadline = self.session_deadline(claims);
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Err(RejectionKind::SessionExpired);
        }
        Ok(deadline)
    }

    /// The session's cap, when the token says when the session began: its
    /// own `session_exp` within `auth_time` plus the layer's limit, or
    /// `auth_time + max_session`.
    pub(crate) fn session_deadline(&self, claims: &RegisteredClaims) -> Option<i64> {
        let auth_time = claims.auth_time?;
        Some(match claims.session_exp {
            Some(own) => own.min(auth_time.saturating_add(self.max_session_limit)),
            None => auth_time.saturating_add(self.max_session),
        })
    }

    /// The lifetime of the session's next token: its own `session_ttl` within
    /// the layer's limit, or the layer's `ttl`.
    pub(crate) fn session_ttl(&self, claims: &RegisteredClaims) -> i64 {
        claims
            .session_ttl
            .filter(|&ttl| ttl > 0)
            .map_or(self.ttl, |ttl| ttl.min(self.ttl_limit))
    }

    /// The `exp` of the session's next token signed at `now`: its ttl from
    /// now, never past the session's cap (`deadline`, or the current token's
    /// own `exp` for a session that does not say when it began). The one
    /// copy of the arithmetic, for planned renewals and `renew_with` alike.
    pub(crate) fn next_expiry(
        &self,
        claims: &RegisteredClaims,
        deadline: Option<i64>,
        now: i64,
    ) -> i64 {
        now.saturating_add(self.session_ttl(claims))
            .min(deadline.unwrap_or(claims.exp))
    }

    /// Sets the registered claims of a login token, signs it and returns it;
    /// `ttl` and `max_session` are the session's own lifetimes, if it has
    /// them (already checked against the limits).
    pub(crate) fn issue(
        &self,
        mut claims: C,
        ttl: Option<i64>,
        max_session: Option<i64>,
    ) -> Result<(String, C), IssueError> {
        let now = self.clock.now();
        let registered = claims.registered_mut();
        registered.iat = Some(now);
        registered.nbf = None;
        registered.auth_time = Some(now);
        registered.session_ttl = ttl;
        registered.session_exp = max_session.map(|max| now.saturating_add(max));
        // A login replaces no token.
        registered.prev_jti = None;
        registered.prev_exp = None;
        let ttl = ttl.unwrap_or(self.ttl);
        let cap = max_session.unwrap_or(self.max_session);
        registered.exp = now.saturating_add(ttl.min(cap));
        registered.sid = Some(random_id()?);
        registered.jti = Some(random_id()?);
        registered.iss.clone_from(&self.issuer);
        registered.aud = match self.audiences.as_slice() {
            [] => None,
            [one] => Some(Audience::One(one.clone())),
            many => Some(Audience::Many(many.to_vec())),
        };
        let token = self.sign(&claims)?;
        Ok((token, claims))
    }

    /// Signs `claims` with the active key; `alg` and `kid` come from that key.
    pub(crate) fn sign(&self, claims: &C) -> Result<String, IssueError> {
        self.sign_with(claims, str::to_owned)
    }

    /// Signs `claims` into this thread's reused buffers and hands the token
    /// to `finish` (which makes the one copy the caller keeps).
    pub(crate) fn sign_with<T>(
        &self,
        claims: &C,
        finish: impl FnOnce(&str) -> T,
    ) -> Result<T, IssueError> {
        let key = self.keys.signing_key();
        let key = key.ok_or_else(|| IssueError::new(IssueErrorKind::NoSigningKey, None))?;
        let signed = with_buffers(|payload, token| {
            payload.clear();
            token.clear();
            serde_json::to_writer(&mut *payload, claims)
                .map_err(|e| IssueError::new(IssueErrorKind::Claims, Some(Box::new(e))))?;
            if payload.first() != Some(&b'{') {
                return Err(IssueError::new(IssueErrorKind::Claims, None));
            }
            token.push_str(key.header_b64());
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&*payload, token);
            let signature = key.sign(token.as_bytes())?;
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(signature, token);
            // A token this configuration would refuse is never handed out.
            if token.len() > self.max_token_bytes {
                return Err(IssueError::new(IssueErrorKind::TooLarge, None));
            }
            Ok(finish(token))
        });
        signed.unwrap_or_else(|| Err(IssueError::new(IssueErrorKind::Signing, None)))
    }
}
