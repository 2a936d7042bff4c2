//! The DPoP replay cache in Redis: one key per proof,
//! `{prefix}dpop:<hex id>`, set only if absent (`SET NX`) with the proof's
//! remaining life: one round trip per DPoP request, shared by every
//! instance.

use super::store::RedisStore;
use crate::BoxFuture;
use crate::revoke::sealed::hex;
use crate::revoke::{ReplayCache, StoreError};

/// The longest a proof is kept: an hour past now (a proof older than the
/// layer's window is refused by its `iat` anyway).
const MAX_PROOF_SECS: i64 = 3600 + 120;

impl ReplayCache for RedisStore {
    fn remember(&self, id: [u8; 32], until: i64) -> BoxFuture<'static, Result<bool, StoreError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            shared.reachable()?;
            let ttl = until
                .saturating_sub(shared.clock.now())
                .clamp(1, MAX_PROOF_SECS);
            let mut set = redis::cmd("SET");
            set.arg(format!("{}dpop:{}", shared.prefix, hex(&id)))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl);
            // `OK` when it was set, nil when the key was there.
            let answer: Option<String> = shared.query(&set).await?;
            Ok(answer.is_some())
        })
    }
}
