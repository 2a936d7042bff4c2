//! The background task: keeps the replica synchronised with Redis, and
//! writes it back when Redis lost its data.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_core::Stream;

use std::collections::BTreeMap;

use redis::cluster_routing::SingleNodeRoutingInfo;

use super::cluster::{self, Master};
use super::store::Entry;
use super::topology::Commands;
use super::{FailureMode, RedisCounters, Shared, TARGET, bounded, seconds_until};
use crate::revoke::{RevocationTarget, StoreError, StoreErrorKind};

/// Entries per write-back pipeline.
const WRITE_BACK_BATCH: usize = 500;

/// The longest stored revocation value read back: `{until}|{before}` is at
/// most 41 bytes, and a cut-off adds `|{keep}`, at most
/// [`MAX_KEEP_BYTES`](super::store::MAX_KEEP_BYTES).
const MAX_VALUE_BYTES: usize = 64 + super::store::MAX_KEEP_BYTES;

/// What the background task remembers between reloads.
#[derive(Default)]
pub(super) struct SyncState {
    /// The marker of the Redis dataset last synchronised with; a different
    /// one means Redis lost what this instance wrote. On a cluster, one per
    /// master (by node id).
    markers: BTreeMap<String, String>,
    /// The cluster's masters at the last reload.
    masters: Vec<Master>,
    /// The master Sentinels named at the last (re)subscription.
    master: Option<String>,
    /// Another master than the one synchronised with before (a failover):
    /// it may lack what asynchronous replication had not copied yet.
    moved: bool,
}

impl SyncState {
    /// The addresses of the cluster's masters, to subscribe on.
    fn known(&self) -> Vec<(String, u16)> {
        self.masters
            .iter()
            .map(|master| (master.host.clone(), master.port))
            .collect()
    }
}

impl Shared {
    /// Applies one entry to the replica; `false` when the replica could not
    /// take it (it is then missing a live revocation: not trusted any more).
    fn apply(&self, entry: Option<Entry<'_>>) -> bool {
        let now = self.clock.now();
        match entry.and_then(|e| e.revocation_at(now)) {
            Some(revocation) => match self.replica.insert(&revocation, now) {
                Ok(()) => true,
                // A reuse mark the replica has no room for loses one
                // generation's detection; it does not make the replica
                // untrusted (revocations have their own budget).
                Err(_) if matches!(revocation.target, RevocationTarget::Replaced { .. }) => {
                    tracing::debug!(target: TARGET, "reuse mark dropped: the replica is full of marks");
                    true
                }
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
        let mut complete = true;
        match self.commands() {
            // Every master holds its own share of the keys.
            mut connection @ Commands::Cluster(_) => {
                for master in &state.masters {
                    let route = master.route();
                    complete &= self.scan(&mut connection, Some(&route)).await?;
                }
            }
            mut connection @ Commands::Single(_) => {
                complete &= self.scan(&mut connection, None).await?;
            }
        }
        // Every live entry is in the replica again: it can be trusted.
        if complete && self.overflow.swap(false, Ordering::AcqRel) {
            tracing::info!(target: TARGET, entries = self.replica.len(), "revocation replica has room again");
        }
        Ok(())
    }

    /// Loads every live entry of one node (the cluster's master at `route`)
    /// into the replica; `false` when the replica could not take one.
    async fn scan(
        &self,
        connection: &mut Commands,
        route: Option<&SingleNodeRoutingInfo>,
    ) -> Result<bool, StoreError> {
        // Revocation keys and reuse marks only: not the marker, not
        // single-flight entries.
        let pattern = format!("{}[sjurc]:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut complete = true;
        loop {
            RedisCounters::add(&self.stats.round_trips, 1);
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let reply = bounded(self.timeout, connection.run_command(scan, route)).await?;
            let (next, keys): (u64, Vec<Vec<u8>>) =
                redis::from_redis_value(reply).map_err(|error| {
                    StoreError::new(StoreErrorKind::Unavailable, Some(error.to_string().into()))
                })?;
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
                    bounded(self.timeout, connection.run_pipeline(pipe, route)).await?;
                for (key, pair) in keys.iter().zip(values.chunks(2)) {
                    // A slot that moved (or a node loading, a cluster down)
                    // since the scan: this load is not complete.
                    if pair.iter().any(moved_or_unavailable) {
                        return Err(StoreError::new(
                            StoreErrorKind::Unavailable,
                            Some("a key moved while the replica was loading".into()),
                        ));
                    }
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
                return Ok(complete);
            }
            cursor = next;
        }
    }

    /// Reads the dataset's marker (setting it if Redis has none; on a
    /// cluster one per master) and writes the replica back when one is not
    /// the one last seen, when the master changed (a failover, a cluster
    /// whose masters changed), or when one of this instance's revocations
    /// may not have reached Redis.
    async fn reconcile(&self, state: &mut SyncState) -> Result<(), StoreError> {
        let mut markers = BTreeMap::new();
        let mut masters = Vec::new();
        if let Commands::Cluster(mut connection) = self.commands() {
            masters = cluster::masters(&mut connection, self.timeout).await?;
            // Every slot must be served by a master this instance scans:
            // a shard left out (failing, or a cluster that serves partial
            // coverage) would be a replica missing its logouts.
            if !cluster::covers_every_slot(&masters) {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    Some("some slots of the Redis Cluster have no live master".into()),
                ));
            }
            for master in &masters {
                let Some(key) = master.marker_key(&self.prefix) else {
                    continue;
                };
                markers.insert(master.id.clone(), self.marker(&key).await?);
            }
        } else {
            let key = format!("{}marker", self.prefix);
            markers.insert(String::new(), self.marker(&key).await?);
        }
        let shards_changed = !state.masters.is_empty()
            && state
                .masters
                .iter()
                .map(|m| &m.id)
                .ne(masters.iter().map(|m| &m.id));
        let lost = markers
            .iter()
            .any(|(id, marker)| state.markers.get(id).is_some_and(|seen| seen != marker))
            || shards_changed
            || state.moved;
        let unshared = self.unshared.swap(false, Ordering::AcqRel);
        if (lost || unshared)
            && let Err(error) = self.write_back(lost).await
        {
            self.unshared.fetch_or(unshared, Ordering::AcqRel);
            return Err(error);
        }
        state.markers = markers;
        state.masters = masters;
        state.moved = false;
        Ok(())
    }

    /// The marker at `key`, set first when there is none. A marker that
    /// cannot be written (a master demoted to replica answers READONLY) is
    /// an error: the replica is not trusted on that node's word.
    async fn marker(&self, key: &str) -> Result<String, StoreError> {
        let mut fresh = [0u8; 16];
        getrandom::fill(&mut fresh)
            .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, Some(Box::new(error))))?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(URL_SAFE_NO_PAD.encode(fresh))
            .arg("NX")
            .ignore()
            .cmd("GETRANGE")
            .arg(key)
            .arg(0)
            .arg(63);
        let (marker,): (redis::Value,) = match self.query(&pipe).await {
            Ok(marker) => marker,
            // A key of another type planted at the marker: it can mark no
            // dataset; take it as one value (written back once), not as an
            // error that would keep the replica untrusted for good.
            Err(error) if is_wrong_type(&error) => return Ok("\0unreadable marker".to_owned()),
            Err(error) => return Err(error),
        };
        match marker {
            redis::Value::BulkString(bytes) if !bytes.is_empty() => {
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            // Flushed between the two commands: try again at the next reload.
            redis::Value::BulkString(_) | redis::Value::Nil => {
                Err(StoreErrorKind::Unavailable.into())
            }
            _ => Ok("\0unreadable marker".to_owned()),
        }
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
                let pipes = batch.iter().filter_map(|revocation| {
                    let ttl = seconds_until(revocation.until, now)?;
                    let mut pipe = redis::pipe();
                    let entry = Entry::from(revocation);
                    entry.write(&mut pipe, &self.prefix, &self.channel, ttl, true);
                    Some((pipe, entry.full_key(&self.prefix)))
                });
                if self.topology.is_cluster() {
                    // One slot per pipeline on a cluster: the entries go
                    // out side by side on the cluster connection.
                    let mut writes = tokio::task::JoinSet::new();
                    for (pipe, key) in pipes {
                        let mut connection = self.commands();
                        RedisCounters::add(&self.stats.round_trips, 1);
                        writes
                            .spawn(async move { connection.query_on_key::<()>(&pipe, &key).await });
                    }
                    let all = async {
                        while let Some(done) = writes.join_next().await {
                            done.map_err(|error| {
                                redis::RedisError::from(std::io::Error::other(error.to_string()))
                            })??;
                        }
                        Ok(())
                    };
                    bounded(self.timeout, all).await?;
                } else {
                    let mut pipe = redis::pipe();
                    for (one, _) in pipes {
                        for command in one.cmd_iter() {
                            pipe.add_command(command.clone()).ignore();
                        }
                    }
                    self.query::<()>(&pipe).await?;
                }
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
/// subscription fails. `master` is the master Sentinels named when the
/// store connected.
pub(super) async fn sync_loop(shared: Arc<Shared>, master: Option<String>) {
    let mut backoff = Duration::from_millis(50);
    let mut state = SyncState {
        master,
        ..SyncState::default()
    };
    let mut attempt = 0usize;
    loop {
        let error = subscribe_and_follow(&shared, attempt, &mut state, &mut backoff).await;
        attempt = attempt.wrapping_add(1);
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
    attempt: usize,
    state: &mut SyncState,
    backoff: &mut Duration,
) -> StoreError {
    let timeout = shared.timeout;
    let (client, master) = match shared
        .topology
        .subscriber(attempt, &state.known(), timeout)
        .await
    {
        Ok(found) => found,
        Err(error) => return error,
    };
    // Sentinels name another master: commands follow it, and what it may
    // lack is written back before the replica is trusted again.
    if let Some(master) = master
        && state.master.as_ref() != Some(&master)
    {
        match shared.topology.connect(timeout).await {
            Ok((commands, Some(now))) if now == master => {
                *shared
                    .commands
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = commands;
                if shared.wait.is_some() {
                    let waits = match shared.topology.connect(timeout).await {
                        Ok((waits, _)) => Some(waits),
                        Err(error) => return error,
                    };
                    *shared
                        .waits
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = waits;
                }
                tracing::warn!(target: TARGET, "Sentinels name another Redis master; following it");
                state.master = Some(master);
                state.moved = true;
            }
            Ok(_) => return StoreErrorKind::Unavailable.into(),
            Err(error) => return error,
        }
    }
    let mut pubsub = match bounded(timeout, client.get_async_pubsub()).await {
        Ok(pubsub) => pubsub,
        Err(error) => return error,
    };
    if let Err(error) = bounded(timeout, pubsub.subscribe(&shared.channel)).await {
        return error;
    }
    let mut messages = pubsub.into_on_message();
    if let Err(error) = shared.load_all(state).await {
        return error;
    }
    shared.live.store(true, Ordering::Release);
    shared.synced.notify_one();
    *backoff = Duration::from_millis(50);
    tracing::info!(target: TARGET, entries = shared.replica.len(), topology = shared.topology.name(), "revocation replica synchronised with Redis");
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
                // Sentinels may name another master while this one still
                // answers (a partition): ask them at every reload, and move.
                if shared.topology.is_sentinel() {
                    match shared.topology.master(timeout).await {
                        Ok((_, master)) if state.master.as_ref() != Some(&master) => {
                            return StoreError::new(
                                StoreErrorKind::Unavailable,
                                Some("Sentinels name another master".into()),
                            );
                        }
                        Ok(_) => {}
                        Err(error) => return error,
                    }
                }
                if let Err(error) = shared.load_all(state).await {
                    return error;
                }
            }
        }
    }
}

/// Whether a pipeline reply says the key is elsewhere now or the node cannot
/// answer for it (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`).
fn moved_or_unavailable(value: &redis::Value) -> bool {
    use redis::ServerErrorKind as Kind;
    matches!(
        value,
        redis::Value::ServerError(error) if matches!(
            error.kind(),
            Some(Kind::Moved | Kind::Ask | Kind::TryAgain | Kind::ClusterDown | Kind::BusyLoading)
        )
    )
}

/// Whether `error` is Redis's `WRONGTYPE` (a key of another type).
fn is_wrong_type(error: &StoreError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<redis::RedisError>())
        .is_some_and(|error| error.code() == Some("WRONGTYPE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_escaped_for_scan() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
