//! The token engine shared by the layer and the issuer: decode, verify,
//! validate, sign. One JSON pass over the claims, straight into the user's type.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};

use crate::claims::{Audience, Claims, RegisteredClaims};
use crate::clock::Clock;
use crate::error::{IssueError, IssueErrorKind};
use crate::keys::{Key, Keys, missed, select};
use crate::reject::RejectionKind;
use crate::revoke::RevocationStore;
use crate::stats::Counters;

/// Validation and lifetime settings, checked when the layer is built.
pub(crate) struct Core<K, C> {
    pub(crate) keys: K,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) required_typ: Option<String>,
    pub(crate) leeway: i64,
    pub(crate) max_token_bytes: usize,
    pub(crate) ttl: i64,
    pub(crate) max_session: i64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) _claims: PhantomData<fn() -> C>,
}

impl<K, C> fmt::Debug for Core<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
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

/// The JOSE header fields this crate reads. Everything else (`jku`, `x5u`,
/// `jwk`, `x5c`, ...) is ignored: keys come only from configuration.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Text<'a>,
    #[serde(borrow, default)]
    typ: Option<Text<'a>>,
    #[serde(borrow, default)]
    kid: Option<Text<'a>>,
    #[serde(default)]
    crit: Present,
}

/// A string borrowed from the header when it has no escapes (serde's own
/// `Cow` would copy it when wrapped in an `Option`).
struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Whether a member is present at all, whatever its value (even `null`).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

fn b64_decode(part: &str) -> Result<Vec<u8>, RejectionKind> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| RejectionKind::MalformedToken)
}

/// Decodes into `buffer` when it fits (the common case: no allocation), into
/// a new vector otherwise.
fn b64_decode_into<'b>(part: &str, buffer: &'b mut [u8]) -> Result<Cow<'b, [u8]>, RejectionKind> {
    if base64::decoded_len_estimate(part.len()) > buffer.len() {
        return b64_decode(part).map(Cow::Owned);
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(part, buffer)
        .map_err(|_| RejectionKind::MalformedToken)?;
    Ok(Cow::Borrowed(&buffer[..len]))
}

thread_local! {
    /// The decoded signature, reused: the backends' verifiers take a `&Vec<u8>`.
    static SIGNATURE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decodes `signature_b64` (into this thread's reused buffer) and checks it
/// over `input` with `key`.
fn verify_signature(key: &Key, input: &[u8], signature_b64: &str) -> Result<(), RejectionKind> {
    let check = |buffer: &mut Vec<u8>| {
        buffer.clear();
        URL_SAFE_NO_PAD
            .decode_vec(signature_b64, buffer)
            .map_err(|_| RejectionKind::MalformedToken)?;
        let valid = !buffer.is_empty() && key.verify(input, buffer);
        // Keep the buffer small: signatures are at most a few hundred bytes.
        if buffer.capacity() > 4096 {
            *buffer = Vec::new();
        }
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

/// `typ` values compare case-insensitively, with an optional `application/` prefix
/// (RFC 7515 §4.1.9).
fn same_type(actual: &str, expected: &str) -> bool {
    fn strip(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    strip(actual).eq_ignore_ascii_case(strip(expected))
}

/// Splits a compact JWS into exactly three parts.
fn split(token: &str) -> Result<(&str, &str, &str, &str), RejectionKind> {
    let first = token.find('.').ok_or(RejectionKind::MalformedToken)?;
    let second = first
        + 1
        + token[first + 1..]
            .find('.')
            .ok_or(RejectionKind::MalformedToken)?;
    let signature = &token[second + 1..];
    if signature.contains('.') {
        return Err(RejectionKind::MalformedToken);
    }
    Ok((
        &token[..first],
        &token[first + 1..second],
        signature,
        &token[..second],
    ))
}

/// The part of the token that identifies it for single flight: its signature.
pub(crate) fn signature_part(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
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

/// Random bytes from the operating system's CSPRNG (`getrandom`), fetched
/// 1 KiB at a time per thread: one system call per 64 ids instead of one per
/// id. Every byte comes from the OS and is handed out once, then wiped; there
/// is no user-space generator to seed or predict. (A process that forks after
/// issuing tokens and issues more in the child could repeat the ids left in
/// the forking thread's buffer: fork before serving, as servers do.)
struct Entropy {
    bytes: [u8; 1024],
    used: usize,
}

thread_local! {
    static ENTROPY: RefCell<Entropy> = const {
        RefCell::new(Entropy { bytes: [0; 1024], used: 1024 })
    };
}

/// Fills `out` with fresh randomness from this thread's buffer of OS
/// randomness, refilled when used up.
fn fill_random(out: &mut [u8; 16]) -> Result<(), IssueError> {
    let failed = |e: getrandom::Error| IssueError::new(IssueErrorKind::Random, Some(Box::new(e)));
    let from_buffer = ENTROPY.try_with(|cell| {
        let Ok(mut entropy) = cell.try_borrow_mut() else {
            return Ok(false);
        };
        if entropy.used + out.len() > entropy.bytes.len() {
            getrandom::fill(&mut entropy.bytes).map_err(failed)?;
            entropy.used = 0;
        }
        let start = entropy.used;
        out.copy_from_slice(&entropy.bytes[start..start + 16]);
        // Each byte is handed out once: wipe it.
        entropy.bytes[start..start + 16].fill(0);
        entropy.used += 16;
        Ok(true)
    });
    match from_buffer {
        Ok(Ok(true)) => Ok(()),
        Ok(Err(error)) => Err(error),
        // Thread teardown or re-entrance: ask the OS directly.
        _ => getrandom::fill(out).map_err(failed),
    }
}

/// A fresh 128-bit random id, base64url (22 characters).
pub(crate) fn random_id() -> Result<String, IssueError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl<K: Keys, C: Claims> Core<K, C> {
    /// Verifies `token` completely (RFC 8725 order: size, shape, header, key,
    /// signature, then claims) and returns its claims.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<C, RejectionKind> {
        self.verify_keyed(token, now).map(|(claims, _)| claims)
    }

    /// [`verify`](Self::verify), also naming the key that verified the token
    /// (its [`Key::id`](crate::keys::Key::id)).
    pub(crate) fn verify_keyed(&self, token: &str, now: i64) -> Result<(C, u64), RejectionKind> {
        if token.len() > self.max_token_bytes {
            return Err(RejectionKind::TokenTooLarge);
        }
        let (header_b64, payload_b64, signature_b64, signing_input) = split(token)?;
        let mut header_buffer = [0u8; 256];
        let header_json = b64_decode_into(header_b64, &mut header_buffer)?;
        // A struct would also deserialize from an array: the header is an object.
        if header_json.trim_ascii_start().first() != Some(&b'{') {
            return Err(RejectionKind::MalformedToken);
        }
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| RejectionKind::MalformedToken)?;
        let keys = self.keys.verification_keys();
        let key = select(&keys, &header.alg, header.kid.as_deref())
            .map_err(|miss| missed(&self.keys, &keys, miss, header.kid.as_deref()))?;
        if header.crit.0 {
            return Err(RejectionKind::UnsupportedCritical);
        }
        if let Some(expected) = &self.required_typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|typ| same_type(typ, expected))
        {
            return Err(RejectionKind::WrongType);
        }
        verify_signature(key, signing_input.as_bytes(), signature_b64)?;
        let mut payload_buffer = [0u8; 1536];
        let payload = b64_decode_into(payload_b64, &mut payload_buffer)?;
        // RFC 7519 §7.2: the claims set is a JSON object.
        if payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(RejectionKind::InvalidClaims);
        }
        let claims: C =
            serde_json::from_slice(&payload).map_err(|_| RejectionKind::InvalidClaims)?;
        self.validate(claims.registered(), now)?;
        Ok((claims, key.id()))
    }

    pub(crate) fn validate(
        &self,
        claims: &RegisteredClaims,
        now: i64,
    ) -> Result<(), RejectionKind> {
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(RejectionKind::Expired);
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
        if self
            .session_deadline(claims)
            .is_some_and(|deadline| now >= deadline)
        {
            return Err(RejectionKind::SessionExpired);
        }
        Ok(())
    }

    /// `auth_time + max_session`, when the token says when the session began.
    pub(crate) fn session_deadline(&self, claims: &RegisteredClaims) -> Option<i64> {
        claims.auth_time.map(|t| t.saturating_add(self.max_session))
    }

    /// Sets the registered claims of a login token, signs it and returns it.
    pub(crate) fn issue(&self, mut claims: C) -> Result<(String, C), IssueError> {
        let now = self.clock.now();
        let registered = claims.registered_mut();
        registered.iat = Some(now);
        registered.nbf = None;
        registered.auth_time = Some(now);
        registered.exp = now.saturating_add(self.ttl.min(self.max_session));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_exactly_three_parts() {
        assert_eq!(split("a.b.c").unwrap(), ("a", "b", "c", "a.b"));
        assert_eq!(split("a.b.").unwrap().2, "");
        assert!(split("a.b").is_err());
        assert!(split("a.b.c.d").is_err());
        assert!(split("abc").is_err());
        assert!(split("").is_err());
    }

    #[test]
    fn typ_comparison() {
        assert!(same_type("JWT", "jwt"));
        assert!(same_type("application/at+jwt", "at+JWT"));
        assert!(!same_type("JWS", "JWT"));
        assert!(!same_type("applicatio", "JWT"));
    }

    #[test]
    fn buffered_randomness_never_repeats_across_refills() {
        let ids: std::collections::HashSet<String> =
            (0..500).map(|_| random_id().unwrap()).collect();
        assert_eq!(ids.len(), 500, "64 ids per refill, each handed out once");
        ENTROPY.with(|cell| {
            let entropy = cell.borrow();
            assert!(
                entropy.bytes[..entropy.used].iter().all(|&b| b == 0),
                "handed-out bytes are wiped"
            );
        });
    }

    #[test]
    fn random_ids_differ() {
        let a = random_id().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_id().unwrap());
    }

    #[test]
    fn padding_is_refused() {
        assert!(b64_decode("eyJ9").is_ok());
        assert!(b64_decode("eyJ=").is_err());
        assert!(b64_decode("e+J9").is_err());
    }
}
