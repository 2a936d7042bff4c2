//! Per-request cost of the revocation check on the common path: a token that
//! is not revoked. `cargo bench --bench revocation` (memory store);
//! `cargo bench --features redis --bench revocation` adds the Redis store
//! against a `redis-server` the bench starts on loopback.
//!
//! ids: `revocation/{memory,redis}/{empty,10k}`, `revocation/memory/1m` (a
//! million live revocations; prints the resident memory they take) and
//! `revocation/memory/1m-varied` (a different not-revoked token each time, so
//! the filter's cache lines are not all hot); `revocation/durable/{10k,1m}`
//! (the durable store's check, next to the memory store's),
//! `revocation/durable/revoke` (one revocation, synced to disk, alone), and
//! the time to open a durable file of 100 000 and 1 000 000 live entries
//! and its size per entry (printed). `--features postgres` adds
//! `revocation/postgres/{empty,10k}`, `revocation/postgres/revoke`, the group
//! commit rate (1 and 64 concurrent callers) and the time to connect to a
//! table of 1 000 000 live revocations (printed), against a throw-away
//! PostgreSQL the bench starts on loopback.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_sliding_jwt::{
    MemoryStore,
    store::{Revocation, RevocationStore, RevocationTarget, TokenIds},
};

const NOW: i64 = 1_800_000_000;
const REVOKED: usize = 10_000;

fn ids() -> TokenIds<'static> {
    let claims: &'static tower_sliding_jwt::RegisteredClaims =
        Box::leak(Box::new(tower_sliding_jwt::RegisteredClaims {
            sub: Some("alice".into()),
            sid: Some("Q2hlY2tpbmcgc2Vzc2lvbnM".into()),
            jti: Some("dG9rZW4gaWQgMTIzNDU2Nzg".into()),
            auth_time: Some(NOW - 100),
            ..Default::default()
        }));
    TokenIds::of(claims)
}

fn revocation(n: usize) -> Revocation {
    Revocation {
        target: RevocationTarget::Session(format!("revoked-session-{n:08}")),
        until: NOW + 86_400,
        reason: None,
    }
}

fn check(store: &impl RevocationStore, token: &TokenIds<'_>) -> bool {
    match store.check(token, NOW) {
        tower_sliding_jwt::store::Lookup::Ready(Ok(status)) => {
            status == tower_sliding_jwt::store::RevocationStatus::Revoked
        }
        _ => panic!("the common path must answer at once"),
    }
}

fn bench_memory(c: &mut Criterion) {
    let token = ids();
    let empty = MemoryStore::new();
    c.bench_function("revocation/memory/empty", |b| {
        b.iter(|| check(&empty, black_box(&token)))
    });
    let full = MemoryStore::new();
    for n in 0..REVOKED {
        full.insert(&revocation(n), NOW).unwrap();
    }
    assert!(!check(&full, &token));
    c.bench_function("revocation/memory/10k", |b| {
        b.iter(|| check(&full, black_box(&token)))
    });
    drop(full);

    let before = resident_kib();
    let million = MemoryStore::new();
    for n in 0..1_000_000 {
        million.insert(&revocation(n), NOW).unwrap();
    }
    let after = resident_kib();
    eprintln!(
        "1 000 000 live revocations: {} KiB resident ({} bytes each)",
        after.saturating_sub(before),
        after.saturating_sub(before) * 1024 / 1_000_000
    );
    assert!(!check(&million, &token));
    c.bench_function("revocation/memory/1m", |b| {
        b.iter(|| check(&million, black_box(&token)))
    });
    let tokens: Vec<tower_sliding_jwt::RegisteredClaims> = (0..4096)
        .map(|n| tower_sliding_jwt::RegisteredClaims {
            sub: Some(format!("user-{n}")),
            sid: Some(format!("bm90IHJldm9rZWQ{n:08}")),
            jti: Some(format!("YW5vdGhlciB0b2tlbg{n:08}")),
            auth_time: Some(NOW - 100),
            ..Default::default()
        })
        .collect();
    let mut next = 0;
    c.bench_function("revocation/memory/1m-varied", |b| {
        b.iter(|| {
            next = (next + 1) % tokens.len();
            check(&million, black_box(&TokenIds::of(&tokens[next])))
        })
    });
}

fn bench_durable(c: &mut Criterion) {
    use tower_sliding_jwt::DurableStore;
    let dir = std::env::temp_dir().join(format!("tsj-bench-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = ids();
    let store = DurableStore::open(dir.join("10k")).unwrap();
    runtime.block_on(async {
        for n in 0..REVOKED {
            store.revoke(revocation(n), NOW).await.unwrap();
        }
    });
    assert!(!check(&store, &token));
    c.bench_function("revocation/durable/10k", |b| {
        b.iter(|| check(&store, black_box(&token)))
    });
    let mut n = REVOKED;
    c.bench_function("revocation/durable/revoke", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(store.revoke(revocation(n), NOW)).unwrap();
        })
    });
    // Group commit: revocations per second from one caller at a time, then
    // from 64 concurrent callers, and revocations per commit.
    for callers in [1usize, 64] {
        let total = 64 * 40;
        let commits = store.commits();
        let started = std::time::Instant::now();
        runtime.block_on(async {
            for round in 0..total / callers {
                let batch: Vec<_> = (0..callers)
                    .map(|i| {
                        n += 1;
                        let _ = (round, i);
                        store.revoke(revocation(n), NOW)
                    })
                    .collect();
                for done in batch {
                    done.await.unwrap();
                }
            }
        });
        let elapsed = started.elapsed();
        let commits = store.commits() - commits;
        eprintln!(
            "durable store, {callers} concurrent caller(s): {:.0} revocations/s, {:.1} revocations per commit",
            total as f64 / elapsed.as_secs_f64(),
            total as f64 / commits.max(1) as f64
        );
    }
    drop(store);
    for live in [100_000usize, 1_000_000] {
        let path = dir.join(format!("open-{live}"));
        // Written as a crash would leave it: every record synced, no compaction.
        let store = DurableStore::open(&path).unwrap();
        runtime.block_on(async {
            let mut pending = Vec::new();
            for n in 0..live {
                pending.push(store.revoke(revocation(n), NOW));
                if pending.len() == 4096 {
                    for done in pending.drain(..) {
                        done.await.unwrap();
                    }
                }
            }
            for done in pending {
                done.await.unwrap();
            }
        });
        drop(store);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let started = std::time::Instant::now();
        let store = DurableStore::open(&path).unwrap();
        let opened = started.elapsed();
        assert_eq!(store.len(), live);
        eprintln!(
            "durable store with {live} live revocations: opened in {opened:?}, file {bytes} bytes ({} per entry)",
            bytes / live as u64
        );
        if live == 1_000_000 {
            assert!(!check(&store, &token));
            c.bench_function("revocation/durable/1m", |b| {
                b.iter(|| check(&store, black_box(&token)))
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resident memory of this process, in KiB (Linux; 0 elsewhere).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

#[cfg(feature = "redis")]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
fn bench_redis(c: &mut Criterion) {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-server not found: skipping revocation/redis/*");
        return;
    }
    // The tests' own loopback server, without persistence; killed on drop.
    let server = redis_server::Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = server.url();
    let token = ids();
    let empty = runtime
        .block_on(tower_sliding_jwt::redis::RedisStore::builder(url.clone()).connect())
        .unwrap();
    c.bench_function("revocation/redis/empty", |b| {
        b.iter(|| check(&empty, black_box(&token)))
    });
    let full = runtime.block_on(async {
        let store = tower_sliding_jwt::redis::RedisStore::builder(url)
            .connect()
            .await
            .unwrap();
        for n in 0..REVOKED {
            store.revoke(revocation(n), NOW).await.unwrap();
        }
        store
    });
    assert!(!check(&full, &token));
    c.bench_function("revocation/redis/10k", |b| {
        b.iter(|| check(&full, black_box(&token)))
    });
    drop((empty, full, server));
}

#[cfg(feature = "postgres")]
#[path = "../tests/common/postgres_server.rs"]
mod postgres_server;

#[cfg(feature = "postgres")]
fn bench_postgres(c: &mut Criterion) {
    use tower_sliding_jwt::postgres::PostgresStore;
    let server = postgres_server::Postgres::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = server.url();
    let token = ids();
    let connect = |prefix: &str| {
        runtime
            .block_on(
                PostgresStore::builder(url.clone())
                    .with_clock(tower_sliding_jwt::ManualClock::new(NOW))
                    .with_table_prefix(prefix)
                    .connect(),
            )
            .unwrap()
    };
    let empty = connect("empty_");
    c.bench_function("revocation/postgres/empty", |b| {
        b.iter(|| check(&empty, black_box(&token)))
    });
    let store = connect("tsj_");
    runtime.block_on(async {
        for n in 0..REVOKED {
            store.revoke(revocation(n), NOW).await.unwrap();
        }
    });
    assert!(!check(&store, &token));
    c.bench_function("revocation/postgres/10k", |b| {
        b.iter(|| check(&store, black_box(&token)))
    });
    let mut n = REVOKED;
    c.bench_function("revocation/postgres/revoke", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(store.revoke(revocation(n), NOW)).unwrap();
        })
    });
    // Group commit: revocations per second from one caller, then from 64
    // callers each revoking in a loop (tasks of their own), and revocations
    // per commit.
    for callers in [1usize, 64] {
        let total = 64 * 40;
        let commits = store.stats().commits;
        let started = std::time::Instant::now();
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for caller in 0..callers {
                let store = store.clone();
                let first = n + caller * (total / callers);
                tasks.spawn(async move {
                    for i in 0..total / callers {
                        store.revoke(revocation(first + i), NOW).await.unwrap();
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        });
        n += total;
        let elapsed = started.elapsed();
        let commits = store.stats().commits - commits;
        eprintln!(
            "postgres store, {callers} concurrent caller(s): {:.0} revocations/s, {:.1} revocations per commit",
            total as f64 / elapsed.as_secs_f64(),
            total as f64 / commits.max(1) as f64
        );
    }
    drop((empty, store));
    // An instance starting on a table of a million live revocations.
    let live = 1_000_000usize;
    let filler = connect("big_");
    runtime.block_on(async {
        let mut pending = Vec::new();
        for n in 0..live {
            pending.push(filler.revoke(revocation(n), NOW));
            if pending.len() == 4096 {
                for done in pending.drain(..) {
                    done.await.unwrap();
                }
            }
        }
        for done in pending {
            done.await.unwrap();
        }
    });
    drop(filler);
    let started = std::time::Instant::now();
    let store = runtime
        .block_on(
            PostgresStore::builder(url)
                .with_clock(tower_sliding_jwt::ManualClock::new(NOW))
                .with_table_prefix("big_")
                .with_timeout(Duration::from_secs(30))
                .connect(),
        )
        .unwrap();
    let connected = started.elapsed();
    assert_eq!(store.len(), live);
    eprintln!("postgres store with {live} live revocations: connected and loaded in {connected:?}");
    drop((store, server));
}

#[cfg(not(feature = "postgres"))]
fn bench_postgres(_: &mut Criterion) {
    eprintln!("built without the `postgres` feature: skipping revocation/postgres/*");
}

#[cfg(not(feature = "redis"))]
fn bench_redis(_: &mut Criterion) {
    eprintln!("built without the `redis` feature: skipping revocation/redis/*");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_memory, bench_durable, bench_redis, bench_postgres
}
criterion_main!(benches);
