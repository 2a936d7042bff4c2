//! The single flight shared through Redis: the first replacement offered for
//! an old token wins, sealed with keys only holders of the old token can
//! derive.

use std::sync::Arc;

use super::store::RedisStore;
use super::{RedisCounters, Shared, clamp_ttl, seconds_until};
use crate::BoxFuture;
use crate::revoke::sealed::{FlightKeys, MAX_SEALED_BYTES, MAX_TOKEN_BYTES, Malformed};
use crate::revoke::{SharedFlight, StoreError};

/// Seconds a flight entry outlives its old token by the writer's clock, so
/// an instance whose clock runs behind (by up to the largest leeway) still
/// finds it while the old token verifies there.
const CLOCK_MARGIN: i64 = 60;

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
        self.reachable()?;
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
        self.reachable()?;
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
        self.reachable()?;
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
