//! The durable store against a real crash: a child process revokes as fast
//! as it can and says which revocations were answered; it is killed with
//! `kill -9` in the middle, and the file it leaves is opened again.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tower_sliding_jwt::{
    DurableStore, RegisteredClaims,
    store::{Lookup, Revocation, RevocationStatus, RevocationStore, RevocationTarget, TokenIds},
};

const NOW: i64 = 1_800_000_000;
const CHILD: &str = "TSJ_DURABLE_CHILD";

fn session(sid: &str) -> Revocation {
    Revocation {
        target: RevocationTarget::Session(sid.into()),
        until: NOW + 86_400,
        reason: None,
    }
}

fn revoked(store: &DurableStore, sid: &str) -> bool {
    let claims = RegisteredClaims {
        sid: Some(sid.into()),
        ..RegisteredClaims::default()
    };
    matches!(
        store.check(&TokenIds::of(&claims), NOW),
        Lookup::Ready(Ok(RevocationStatus::Revoked))
    )
}

/// The child: revokes `s0`, `s1`, ... and prints each id once its
/// revocation was answered, until it is killed. Run by the test below.
#[test]
#[ignore = "the child process of every_answered_revocation_survives_kill_9"]
fn revoking_child() {
    let path = std::env::var(CHILD).expect("run by its parent test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = DurableStore::open(&path).unwrap();
        // Several revocations in flight at once, as parallel logouts are.
        let mut next = 0u64;
        loop {
            let batch: Vec<_> = (next..next + 8).collect();
            next += 8;
            let done = futures_join(batch.iter().map(|i| {
                let store = store.clone();
                let id = format!("s{i}");
                async move {
                    store.revoke(session(&id), NOW).await.unwrap();
                    id
                }
            }))
            .await;
            for id in done {
                println!("revoked {id}");
            }
        }
    });
}

async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsj-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("revocations")
}

#[test]
fn every_answered_revocation_survives_kill_9() {
    for (round, answered_before_kill) in [5usize, 300, 2000].into_iter().enumerate() {
        let path = temp_path(&format!("round{round}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "revoking_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut answered = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("revoked ") {
                answered.push(id.to_owned());
                if answered.len() == answered_before_kill {
                    break;
                }
            }
        }
        assert_eq!(answered.len(), answered_before_kill, "the child revoked");
        // SIGKILL, in the middle of whatever it is writing.
        child.kill().unwrap();
        child.wait().unwrap();
        let store = DurableStore::open(&path).unwrap();
        for id in &answered {
            assert!(revoked(&store, id), "answered revocation {id} was lost");
        }
        assert!(!revoked(&store, "never-revoked"), "no live session lost");
        assert!(store.len() >= answered.len());
        drop(store);
        // And it keeps working after the crash.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = DurableStore::open(&path).unwrap();
            store.revoke(session("after"), NOW).await.unwrap();
            drop(store);
            let store = DurableStore::open(&path).unwrap();
            assert!(revoked(&store, "after"));
        });
    }
}
