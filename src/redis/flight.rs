//! The single flight shared through Redis: the first replacement offered for
//! an old token wins, sealed with keys only holders of the old token can
//! derive.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::store::RedisStore;
use super::{RedisCounters, Shared, clamp_ttl, seconds_until};
use crate::BoxFuture;
use crate::revoke::{SharedFlight, StoreError, StoreErrorKind};
use crate::token::jws;

type HmacSha256 = Hmac<Sha256>;

/// The largest replacement shared through Redis (the layer's own size limit
/// is 8 KiB by default).
const MAX_TOKEN_BYTES: usize = 64 * 1024;
const VERSION: u8 = 1;
const NONCE: usize = 16;
const TAG: usize = 32;

/// Seconds a flight entry outlives its old token by the writer's clock, so
/// an instance whose clock runs behind (by up to the largest leeway) still
/// finds it while the old token verifies there.
const CLOCK_MARGIN: i64 = 60;

/// The largest sealed entry read back from Redis: anything longer is
/// garbage (planted by someone with write access) and costs no more than
/// this much memory to refuse.
const MAX_SEALED_BYTES: usize = 1 + NONCE + 8 + MAX_TOKEN_BYTES + TAG;

/// Installs a replacement whatever was there, and answers the length and the
/// first `ARGV[3] + 1` bytes of the entry it displaced (a missing key answers
/// length 0): one key, so it stays in one slot of a Redis Cluster.
const SUPERSEDE: &str = r"
local length = redis.call('STRLEN', KEYS[1])
local previous = redis.call('GETRANGE', KEYS[1], 0, ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {length, previous}
";

impl SharedFlight for RedisStore {
    fn claim(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<(Arc<str>, i64), StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.claim(keys, token, expires_at, until).await })
    }

    fn supersede(
        &self,
        old: &[u8],
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.supersede(keys, token, expires_at, until).await })
    }

    fn replacement(
        &self,
        old: &[u8],
    ) -> BoxFuture<'static, Result<Option<(Arc<str>, i64)>, StoreError>> {
        let shared = self.shared.clone();
        let keys = FlightKeys::derive(old);
        Box::pin(async move { shared.replacement(keys).await })
    }
}

impl Shared {
    async fn claim(
        &self,
        keys: FlightKeys,
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> Result<(Arc<str>, i64), StoreError> {
        let Some(ttl) = seconds_until(until, self.clock.now()) else {
            // The old token no longer verifies: nobody else can ask.
            return Ok((token, expires_at));
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed.into());
        }
        RedisCounters::add(&self.stats.flight_claims, 1);
        let answer = self.offer(&keys, &token, expires_at, ttl).await;
        match answer {
            Ok(Some(winner)) => {
                RedisCounters::add(&self.stats.flight_lost, 1);
                Ok(winner)
            }
            Ok(None) => Ok((token, expires_at)),
            Err(error) => {
                RedisCounters::add(&self.stats.flight_errors, 1);
                Err(error)
            }
        }
    }

    /// `None` when this offer won, the winner otherwise.
    async fn offer(
        &self,
        keys: &FlightKeys,
        token: &str,
        expires_at: i64,
        ttl: i64,
    ) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        // Without the feed Redis is most likely unreachable: do not wait for
        // a timeout on every renewal.
        if !self.live.load(Ordering::Acquire) {
            return Err(StoreErrorKind::Unavailable.into());
        }
        let key = format!("{}flight:{}", self.prefix, keys.id);
        let sealed = keys.seal(expires_at, token)?;
        // One round trip on every Redis version: the `SET` stores this offer
        // only if there is none; `STRLEN` and a bounded `GETRANGE` then read
        // whichever offer won, never more than a sealed entry can be.
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(&sealed)
            .arg("NX")
            .arg("EX")
            .arg(clamp_ttl(ttl.saturating_add(CLOCK_MARGIN)))
            .cmd("STRLEN")
            .arg(&key)
            .cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(MAX_SEALED_BYTES);
        let (set, length, stored): (Option<String>, usize, Vec<u8>) = self.query(&pipe).await?;
        if set.is_some() {
            return Ok(None);
        }
        if length > MAX_SEALED_BYTES {
            return Err(Malformed.into());
        }
        if stored == sealed {
            return Ok(None);
        }
        Ok(Some(keys.open(&stored)?))
    }

    /// The replacement stored for the old token of `keys`, if one sealed
    /// for it is there (read bounded; anything else is garbage).
    async fn replacement(&self, keys: FlightKeys) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        if !self.live.load(Ordering::Acquire) {
            return Err(StoreErrorKind::Unavailable.into());
        }
        let key = format!("{}flight:{}", self.prefix, keys.id);
        let mut pipe = redis::pipe();
        pipe.cmd("STRLEN")
            .arg(&key)
            .cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(MAX_SEALED_BYTES);
        let (length, stored): (usize, Vec<u8>) = self.query(&pipe).await?;
        if length == 0 || length > MAX_SEALED_BYTES {
            return Ok(None);
        }
        Ok(keys.open(&stored).ok())
    }

    /// Installs `token` as the replacement whatever was offered before, and
    /// answers the replacement it displaced (if it was one sealed for this
    /// old token: anything else was never handed out).
    async fn supersede(
        &self,
        keys: FlightKeys,
        token: Arc<str>,
        expires_at: i64,
        until: i64,
    ) -> Result<Option<(Arc<str>, i64)>, StoreError> {
        let Some(ttl) = seconds_until(until, self.clock.now()) else {
            return Ok(None);
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed.into());
        }
        if !self.live.load(Ordering::Acquire) {
            return Err(StoreErrorKind::Unavailable.into());
        }
        let key = format!("{}flight:{}", self.prefix, keys.id);
        let sealed = keys.seal(expires_at, &token)?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(SUPERSEDE)
            .arg(1)
            .arg(&key)
            .arg(&sealed)
            .arg(clamp_ttl(ttl.saturating_add(CLOCK_MARGIN)))
            .arg(MAX_SEALED_BYTES);
        let (length, previous): (usize, Vec<u8>) = self.query(&script).await?;
        if length == 0 || length > MAX_SEALED_BYTES {
            return Ok(None);
        }
        Ok(keys.open(&previous).ok())
    }
}

/// What is derived from an old token's canonical identity (its canonical
/// signature): the Redis key, and the keys that seal its replacement.
/// HMAC-SHA-256 keyed by that identity, so only a holder of the old token (or
/// of a twin of it) can find, read or write its entry.
struct FlightKeys {
    id: String,
    seal: HmacSha256,
    tag: HmacSha256,
}

impl FlightKeys {
    fn derive(old: &[u8]) -> Self {
        let derive = |label: &[u8]| {
            let mut mac = new_mac(old);
            mac.update(b"tower-sliding-jwt single flight v1 ");
            mac.update(label);
            mac.finalize().into_bytes()
        };
        let id = derive(b"id");
        let mut hex = String::with_capacity(64);
        for byte in id.iter().take(20) {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self {
            id: hex,
            seal: new_mac(&derive(b"seal")),
            tag: new_mac(&derive(b"tag")),
        }
    }

    /// XORs `data` with the keystream of `nonce` (HMAC-SHA-256 in counter mode).
    fn keystream(&self, nonce: &[u8], data: &mut [u8]) {
        for (counter, chunk) in data.chunks_mut(32).enumerate() {
            let mut mac = self.seal.clone();
            mac.update(nonce);
            mac.update(&(counter as u32).to_be_bytes());
            let block = mac.finalize().into_bytes();
            for (byte, key) in chunk.iter_mut().zip(block.iter()) {
                *byte ^= key;
            }
        }
    }

    fn mac(&self, sealed: &[u8]) -> HmacSha256 {
        let mut mac = self.tag.clone();
        mac.update(sealed);
        mac
    }

    /// `version | nonce | keystream ^ (exp | token) | tag`.
    fn seal(&self, expires_at: i64, token: &str) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce)
            .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error))))?;
        let mut sealed = Vec::with_capacity(1 + NONCE + 8 + token.len() + TAG);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&expires_at.to_be_bytes());
        sealed.extend_from_slice(token.as_bytes());
        self.keystream(&nonce, &mut sealed[1 + NONCE..]);
        let tag = self.mac(&sealed).finalize().into_bytes();
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    /// The replacement in `sealed`, if it was sealed with these keys and
    /// holds a compact JWS within the size limit.
    fn open(&self, sealed: &[u8]) -> Result<(Arc<str>, i64), Malformed> {
        if sealed.len() < 1 + NONCE + 8 + TAG
            || sealed.len() > 1 + NONCE + 8 + MAX_TOKEN_BYTES + TAG
            || sealed[0] != VERSION
        {
            return Err(Malformed);
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        self.mac(body).verify_slice(tag).map_err(|_| Malformed)?;
        let (nonce, cipher) = body[1..].split_at(NONCE);
        let mut plain = cipher.to_vec();
        self.keystream(nonce, &mut plain);
        let (exp, token) = plain.split_at(8);
        let expires_at = i64::from_be_bytes(exp.try_into().map_err(|_| Malformed)?);
        let token = std::str::from_utf8(token).map_err(|_| Malformed)?;
        if !jws::is_compact(token) {
            return Err(Malformed);
        }
        Ok((Arc::from(token), expires_at))
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A single-flight entry that is not a replacement sealed for this old token.
#[derive(Debug)]
struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed single-flight entry in Redis")
    }
}

impl std::error::Error for Malformed {}

impl From<Malformed> for StoreError {
    fn from(error: Malformed) -> Self {
        StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

    #[test]
    fn a_sealed_replacement_opens_only_with_the_old_signature() {
        let keys = FlightKeys::derive(b"old-signature");
        let sealed = keys.seal(1234, TOKEN).unwrap();
        assert!(
            !sealed.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is not stored in the clear"
        );
        let (token, exp) = keys.open(&sealed).unwrap();
        assert_eq!((&*token, exp), (TOKEN, 1234));
        // Another old token's keys neither find nor open it.
        let other = FlightKeys::derive(b"other-signature");
        assert_ne!(other.id, keys.id);
        assert!(other.open(&sealed).is_err());
        // Two seals of the same token differ (random nonce).
        assert_ne!(keys.seal(1234, TOKEN).unwrap(), sealed);
        assert_eq!(keys.id.len(), 40);
        assert!(!keys.id.contains("old-signature"));
    }

    #[test]
    fn tampered_or_foreign_entries_are_refused() {
        let keys = FlightKeys::derive(b"old-signature");
        let sealed = keys.seal(1234, TOKEN).unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(keys.open(&tampered).is_err(), "byte {i}");
        }
        assert!(keys.open(&sealed[..sealed.len() - 1]).is_err());
        assert!(keys.open(b"").is_err());
        assert!(keys.open(TOKEN.as_bytes()).is_err());
        // Authentic but not a compact JWS: refused too.
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.c d", "a.b.c=="] {
            let sealed = keys.seal(1, bad).unwrap();
            assert!(keys.open(&sealed).is_err(), "{bad:?}");
        }
        let big = format!("a.b.{}", "c".repeat(MAX_TOKEN_BYTES));
        assert!(keys.open(&keys.seal(1, &big).unwrap()).is_err());
    }
}
