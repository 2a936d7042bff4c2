//! The background task: keeps the replica synchronised with Redis, and
//! writes it back when Redis lost its data.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_core::Stream;

use super::store::Entry;
use super::{FailureMode, RedisCounters, Shared, TARGET, bounded, seconds_until};
use crate::revoke::{StoreError, StoreErrorKind};

/// Entries per write-back pipeline.
const WRITE_BACK_BATCH: usize = 500;

/// The longest stored revocation value read back: `{until}|{before}` is at
/// most 41 bytes.
const MAX_VALUE_BYTES: usize = 64;

/// What the background task remembers between reloads.
#[derive(Default)]
pub(super) struct SyncState {
    /// The marker of the Redis dataset last synchronised with; a different
    /// one means Redis lost what this instance wrote.
    marker: Option<String>,
}

impl Shared {
    /// Applies one entry to the replica; `false` when the replica could not
    /// take it (it is then missing a live revocation: not trusted any more).
    fn apply(&self, entry: Option<Entry<'_>>) -> bool {
        let now = self.clock.now();
        match entry.and_then(|e| e.revocation_at(now)) {
            Some(revocation) => match self.replica.insert(&revocation, now) {
                Ok(()) => true,
                Err(error) => {
                    if !self.overflow.swap(true, Ordering::AcqRel) {
                        let mode = match self.failure_mode {
                            FailureMode::Closed => {
                                "refusing authenticated requests (503) until a reload finds room"
                            }
                            FailureMode::Open => {
                                "answering from an incomplete replica until a reload finds room"
                            }
                        };
                        tracing::error!(target: TARGET, %error, replica = ?self.replica, "revocation replica is full and misses a revocation; {mode}");
                    }
                    false
                }
            },
            None => {
                tracing::debug!(target: TARGET, "ignored a malformed revocation entry");
                true
            }
        }
    }

    /// Writes the replica back when Redis lost its data (or missed one of
    /// this instance's revocations), then loads every live entry under the
    /// prefix into the replica.
    async fn load_all(&self, state: &mut SyncState) -> Result<(), StoreError> {
        self.reconcile(state).await?;
        let mut connection = self.commands.clone();
        // Revocation keys and reuse marks only: not the marker, not
        // single-flight entries.
        let pattern = format!("{}[sjur]:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut complete = true;
        loop {
            RedisCounters::add(&self.stats.round_trips, 1);
            let (next, keys): (u64, Vec<Vec<u8>>) = bounded(
                self.timeout,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection),
            )
            .await?;
            // A key name that is not UTF-8 was not written by this crate.
            let keys: Vec<String> = keys
                .into_iter()
                .filter_map(|key| String::from_utf8(key).ok())
                .collect();
            if !keys.is_empty() {
                // Each value's length and at most its first bytes: an entry
                // is `{until}|{before}`, and anything longer (planted by
                // someone with write access) costs no more than this to skip.
                // A key of another type answers an error for its own pair
                // only: it is skipped like any other garbage.
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in &keys {
                    pipe.cmd("STRLEN")
                        .arg(key)
                        .cmd("GETRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(MAX_VALUE_BYTES - 1);
                }
                RedisCounters::add(&self.stats.round_trips, 1);
                let values: Vec<redis::Value> =
                    bounded(self.timeout, pipe.query_async(&mut connection)).await?;
                for (key, pair) in keys.iter().zip(values.chunks(2)) {
                    let Some(key) = key.strip_prefix(self.prefix.as_str()) else {
                        continue;
                    };
                    let value = match pair {
                        [redis::Value::Int(length), redis::Value::BulkString(value)]
                            if (1..=MAX_VALUE_BYTES as i64).contains(length) =>
                        {
                            std::str::from_utf8(value).ok()
                        }
                        // Gone since the scan (length 0), or garbage.
                        _ => None,
                    };
                    if let Some(value) = value {
                        complete &= self.apply(Entry::parse_stored(key, value));
                    } else if !matches!(pair, [redis::Value::Int(0), _]) {
                        tracing::debug!(target: TARGET, "skipped an oversized or malformed revocation entry");
                    }
                }
            }
            if next == 0 {
                // Every live entry is in the replica again: it can be trusted.
                if complete && self.overflow.swap(false, Ordering::AcqRel) {
                    tracing::info!(target: TARGET, entries = self.replica.len(), "revocation replica has room again");
                }
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Reads the dataset's marker (setting it if Redis has none) and writes
    /// the replica back when it is not the one last seen, or when one of this
    /// instance's revocations may not have reached Redis.
    async fn reconcile(&self, state: &mut SyncState) -> Result<(), StoreError> {
        let key = format!("{}marker", self.prefix);
        let mut fresh = [0u8; 16];
        getrandom::fill(&mut fresh)
            .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error))))?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .cmd("SET")
            .arg(&key)
            .arg(URL_SAFE_NO_PAD.encode(fresh))
            .arg("NX")
            .ignore()
            .cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(63);
        let (marker,): (redis::Value,) = self.query(&pipe).await?;
        let marker = match marker {
            redis::Value::BulkString(bytes) if !bytes.is_empty() => {
                String::from_utf8_lossy(&bytes).into_owned()
            }
            // Flushed between the two commands: try again at the next reload.
            redis::Value::BulkString(_) | redis::Value::Nil => {
                return Err(StoreErrorKind::Unavailable.into());
            }
            // A key of another type planted at the marker: it can mark no
            // dataset; take it as one value (written back once), not as an
            // error that would keep the replica untrusted for good.
            _ => "\0unreadable marker".to_owned(),
        };
        let lost = state.marker.as_ref().is_some_and(|seen| *seen != marker);
        let unshared = self.unshared.swap(false, Ordering::AcqRel);
        if (lost || unshared)
            && let Err(error) = self.write_back(lost).await
        {
            self.unshared.fetch_or(unshared, Ordering::AcqRel);
            return Err(error);
        }
        state.marker = Some(marker);
        Ok(())
    }

    /// Writes every live replica entry to Redis with its own remaining
    /// lifetime (`SET ... NX`: an entry already there is left alone) and
    /// announces it, in bounded batches.
    async fn write_back(&self, lost: bool) -> Result<(), StoreError> {
        let mut cursor = None;
        let mut written = 0usize;
        loop {
            let now = self.clock.now();
            let (batch, next) = self
                .replica
                .live_batch(cursor.as_ref(), now, WRITE_BACK_BATCH);
            if !batch.is_empty() {
                let mut pipe = redis::pipe();
                for revocation in &batch {
                    if let Some(ttl) = seconds_until(revocation.until, now) {
                        Entry::from(revocation).write(
                            &mut pipe,
                            &self.prefix,
                            &self.channel,
                            ttl,
                            true,
                        );
                    }
                }
                self.query::<()>(&pipe).await?;
                written += batch.len();
                RedisCounters::add(&self.stats.written_back, batch.len() as u64);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let why = if lost {
            "Redis lost its data"
        } else {
            "some revocations of this instance had not reached Redis"
        };
        tracing::warn!(target: TARGET, entries = written, "{why}: wrote the live revocations of this instance back");
        Ok(())
    }
}

fn glob_escape(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Keeps the replica synchronised; reconnects with backoff when the
/// subscription fails.
pub(super) async fn sync_loop(shared: Arc<Shared>, client: redis::Client) {
    let mut backoff = Duration::from_millis(50);
    let mut state = SyncState::default();
    loop {
        let error = subscribe_and_follow(&shared, &client, &mut state, &mut backoff).await;
        if shared.live.swap(false, Ordering::AcqRel) {
            let mode = match shared.failure_mode {
                FailureMode::Closed => "refusing authenticated requests (503) until it is back",
                FailureMode::Open => "answering from the local replica until it is back",
            };
            tracing::warn!(target: TARGET, %error, "lost the Redis revocation feed; {mode}");
        } else {
            tracing::debug!(target: TARGET, %error, "Redis revocation feed still unavailable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Subscribes, loads, then follows announcements; returns only on failure.
async fn subscribe_and_follow(
    shared: &Shared,
    client: &redis::Client,
    state: &mut SyncState,
    backoff: &mut Duration,
) -> StoreError {
    let mut pubsub = match bounded(shared.timeout, client.get_async_pubsub()).await {
        Ok(pubsub) => pubsub,
        Err(error) => return error,
    };
    if let Err(error) = bounded(shared.timeout, pubsub.subscribe(&shared.channel)).await {
        return error;
    }
    let mut messages = pubsub.into_on_message();
    if let Err(error) = shared.load_all(state).await {
        return error;
    }
    shared.live.store(true, Ordering::Release);
    shared.synced.notify_one();
    *backoff = Duration::from_millis(50);
    tracing::info!(target: TARGET, entries = shared.replica.len(), "revocation replica synchronised with Redis");
    let mut resync = tokio::time::interval(shared.resync_interval);
    resync.tick().await;
    loop {
        tokio::select! {
            message = poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)) => match message {
                Some(message) => {
                    let entry = std::str::from_utf8(message.get_payload_bytes())
                        .ok()
                        .and_then(Entry::parse_message);
                    shared.apply(entry);
                }
                None => return StoreErrorKind::Unavailable.into(),
            },
            _ = resync.tick() => {
                if let Err(error) = shared.load_all(state).await {
                    return error;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_escaped_for_scan() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
