//! The session registry in Redis: one hash per subject,
//! `{prefix}sessions:{<tag>}`, whose hash tag (a digest of the subject) keeps
//! all of a subject's rows in one slot of a Redis Cluster. A field per
//! session (`sid`), its value `<expires> <last_seen> <order> <row JSON>`, so
//! the scripts read the times without a JSON parser. The key expires with
//! its latest row; expired fields go whenever a login of that subject runs.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::store::RedisStore;
use super::{MAX_REVOCATION_SECS, Shared};
use crate::BoxFuture;
use crate::revoke::registry_codec::{self as codec, MAX_ROW_BYTES};
use crate::revoke::sealed::hex;
use crate::revoke::{MAX_SESSIONS_LIMIT, SessionRegistry, SessionRow};
use crate::revoke::{StoreError, StoreErrorKind};

/// The most fields a subject's hash may hold before a listing refuses it
/// as planted (the layer never writes more than its limit).
const MAX_FIELDS: usize = 2 * MAX_SESSIONS_LIMIT;

/// Adds a row unless the subject would pass its limit: drops expired
/// fields, counts the live ones that stay, then deletes `remove`, sets the
/// row and extends the key's lifetime. Answers 1, or 0 (nothing added, no
/// row removed) at the limit.
/// KEYS[1] the hash; ARGV: now, max rows, sid, value, seconds to keep the
/// key, then the sids to remove.
const INSERT: &str = r"
local now = tonumber(ARGV[1])
local drop = {}
for i = 6, #ARGV do drop[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%-?%d+) '))
  if expires == nil or expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[3] and not drop[all[i]] then
    live = live + 1
  end
end
if live + 1 > tonumber(ARGV[2]) then return 0 end
for i = 6, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
";

/// A renewal: raises a row's `expires` and `last_seen`, if it is there.
/// KEYS[1] the hash; ARGV: sid, last_seen, expires, seconds to keep the key.
const TOUCH: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local expires, seen, rest = string.match(value, '^(%-?%d+) (%-?%d+) (.*)$')
if not expires then return 0 end
expires = math.max(tonumber(expires), tonumber(ARGV[3]))
seen = math.max(tonumber(seen), tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d ', expires, seen) .. rest)
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
";

/// Every field of a subject's hash, or an error past `ARGV[1]` fields.
const LIST: &str = r"
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then
  return redis.error_reply('too many sessions in one hash')
end
return redis.call('HGETALL', KEYS[1])
";

impl Shared {
    /// The hash of `subject`'s rows.
    fn sessions_key(&self, subject: &str) -> String {
        let tag = hex(&Sha256::digest(subject.as_bytes())[..16]);
        format!("{}sessions:{{{tag}}}", self.prefix)
    }

    /// Seconds to keep a hash holding a row that expires at `expires`
    /// (a minute past it: the layer's clock and Redis's may differ).
    fn keep_for(&self, expires: i64) -> i64 {
        expires
            .saturating_sub(self.clock.now())
            .saturating_add(60)
            .clamp(1, MAX_REVOCATION_SECS)
    }

    async fn list_sessions(
        &self,
        subject: String,
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.reachable()?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(LIST)
            .arg(1)
            .arg(self.sessions_key(&subject))
            .arg(MAX_FIELDS);
        let fields: Vec<(String, String)> = self.query(&script).await?;
        let mut rows = Vec::with_capacity(fields.len());
        let mut garbage = Vec::new();
        for (sid, value) in fields {
            // A field this crate did not write is skipped, never trusted,
            // and deleted: it would count against the subject's limit.
            let Some((order, row)) =
                parse(&value).filter(|(_, row)| row.sid == sid && row.subject == subject)
            else {
                garbage.push(sid);
                continue;
            };
            if row.expires > now {
                rows.push((order, row));
            }
        }
        if !garbage.is_empty() {
            self.remove_sessions(subject, garbage).await?;
        }
        rows.sort_by_key(|(order, _)| *order);
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    }

    async fn insert_session(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.reachable()?;
        let order = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros());
        let value = format!(
            "{} {} {order} {}",
            row.expires,
            row.last_seen,
            codec::encode(&row)
        );
        let mut script = redis::cmd("EVAL");
        script
            .arg(INSERT)
            .arg(1)
            .arg(self.sessions_key(&row.subject))
            .arg(now)
            .arg(max_rows)
            .arg(&row.sid)
            .arg(value)
            .arg(self.keep_for(row.expires));
        for sid in &remove {
            script.arg(sid);
        }
        let added: i64 = self.query(&script).await?;
        if added == 1 {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::Full,
                Some("this subject has as many sessions as it may".into()),
            ))
        }
    }

    async fn touch_session(
        &self,
        subject: String,
        sid: String,
        last_seen: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        self.reachable()?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(TOUCH)
            .arg(1)
            .arg(self.sessions_key(&subject))
            .arg(sid)
            .arg(last_seen)
            .arg(expires)
            .arg(self.keep_for(expires));
        let _: i64 = self.query(&script).await?;
        Ok(())
    }

    async fn remove_sessions(&self, subject: String, sids: Vec<String>) -> Result<(), StoreError> {
        if sids.is_empty() {
            return Ok(());
        }
        self.reachable()?;
        let mut command = redis::cmd("HDEL");
        command.arg(self.sessions_key(&subject));
        for sid in &sids {
            command.arg(sid);
        }
        let _: i64 = self.query(&command).await?;
        Ok(())
    }
}

/// A stored value: its insert order and its row (with the times the
/// scripts keep up to date), or `None` when it is not one this crate wrote.
fn parse(value: &str) -> Option<(u128, SessionRow)> {
    if value.len() > MAX_ROW_BYTES + 64 {
        return None;
    }
    let mut parts = value.splitn(4, ' ');
    let expires = parts.next()?.parse().ok()?;
    let last_seen = parts.next()?.parse().ok()?;
    let order = parts.next()?.parse().ok()?;
    let mut row = codec::decode(parts.next()?)?;
    row.expires = expires;
    row.last_seen = last_seen;
    Some((order, row))
}

/// Straight to Redis (one round trip each), shared by every instance: a
/// session recorded or ended on one is listed so on all at once.
impl SessionRegistry for RedisStore {
    fn list(
        &self,
        subject: &str,
        now: i64,
    ) -> BoxFuture<'static, Result<Vec<SessionRow>, StoreError>> {
        let (shared, subject) = (self.shared.clone(), subject.to_owned());
        Box::pin(async move { shared.list_sessions(subject, now).await })
    }

    fn insert(
        &self,
        row: SessionRow,
        remove: Vec<String>,
        max_rows: usize,
        now: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.insert_session(row, remove, max_rows, now).await })
    }

    fn touch(
        &self,
        subject: &str,
        sid: &str,
        last_seen: i64,
        expires: i64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (shared, subject, sid) = (self.shared.clone(), subject.to_owned(), sid.to_owned());
        Box::pin(async move { shared.touch_session(subject, sid, last_seen, expires).await })
    }

    fn remove(
        &self,
        subject: &str,
        sids: Vec<String>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (shared, subject) = (self.shared.clone(), subject.to_owned());
        Box::pin(async move { shared.remove_sessions(subject, sids).await })
    }
}

/// Reads `value` as a registry hash's field: what is accepted is within
/// the row's bounds.
#[cfg(fuzzing)]
pub(crate) fn fuzz_value(value: &str) {
    if let Some((_, row)) = parse(value) {
        assert!(codec::encode(&row).len() <= MAX_ROW_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_parse_back_and_garbage_is_refused() {
        let mut row = SessionRow::new("s", "u");
        (row.created, row.last_seen, row.expires, row.cap) = (1, 2, 3, 4);
        let value = format!("30 20 7 {}", codec::encode(&row));
        let (order, parsed) = parse(&value).unwrap();
        assert_eq!(
            (order, parsed.expires, parsed.last_seen, parsed.cap),
            (7, 30, 20, 4)
        );
        for garbage in [
            "",
            "1 2 3",
            "x 2 3 {}",
            "1 2 3 {\"sid\":1}",
            &format!("1 2 3 {}", "x".repeat(MAX_ROW_BYTES + 64)),
        ] {
            assert!(parse(garbage).is_none(), "{garbage:.40}");
        }
    }
}
