//! The PostgreSQL store against a real, throw-away PostgreSQL on loopback,
//! started by the tests themselves. Run with `cargo test --features postgres`
//! (`.ci/run` installs `postgresql` when it is missing).
#![cfg(feature = "postgres")]

mod common;
#[path = "common/dpop.rs"]
mod dpop_cluster;
#[path = "common/postgres_server.rs"]
mod postgres_server;
#[path = "common/sessions.rs"]
mod sessions;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use postgres_server::Postgres;
use tower_sliding_jwt::postgres::{FailureMode, PostgresStore, PostgresStoreBuilder};
use tower_sliding_jwt::{Clock, Key, ManualClock, RejectionKind, SlidingJwtLayer, StoreErrorKind};

struct Instance {
    store: PostgresStore,
    layer: SlidingJwtLayer<Key, Claimset>,
    app: App,
}

async fn instance(
    server: &Postgres,
    clock: &ManualClock,
    configure: impl FnOnce(PostgresStoreBuilder) -> PostgresStoreBuilder,
) -> Instance {
    let store = configure(PostgresStore::builder(server.url()).with_clock(clock.clone()))
        .connect()
        .await
        .unwrap();
    let layer = SlidingJwtLayer::builder(hs256())
        .with_clock(clock.clone())
        .with_revocation_store(store.clone())
        .build()
        .unwrap();
    let app = app(&layer);
    Instance { store, layer, app }
}

async fn cluster(server: &Postgres, clock: &ManualClock, timeout: Duration) -> Vec<Instance> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(server, clock, |b| b.with_timeout(timeout)).await);
    }
    instances
}

/// Polls `condition` until it holds (bounded): a real network hop is
/// involved.
async fn within(what: &str, bound: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn kind(instance: &Instance, token: &str) -> (StatusCode, Option<RejectionKind>) {
    let response = send(&instance.app, get(token)).await;
    (response.status(), rejection(&response))
}

/// `sid`'s logout (living ten minutes), straight through `store` at `now`.
fn logout(
    store: &PostgresStore,
    sid: String,
    now: i64,
) -> tower_sliding_jwt::BoxFuture<'_, Result<(), tower_sliding_jwt::StoreError>> {
    use tower_sliding_jwt::store::{Revocation, RevocationStore, RevocationTarget};
    store.revoke(
        Revocation {
            target: RevocationTarget::Session(sid),
            until: now + 600,
            reason: None,
        },
        now,
    )
}

/// Holds the state row locked from another session for `seconds` (the
/// database answers no statement touching it meanwhile); joined for the
/// `psql` output.
fn lock_state(server: &Postgres, seconds: u32) -> std::thread::JoinHandle<std::process::Output> {
    let mut locker = server.psql_command();
    locker.arg("-c").arg(format!(
        "BEGIN; LOCK tsj_state IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT"
    ));
    std::thread::spawn(move || locker.output().unwrap())
}

fn sid(login: &tower_sliding_jwt::IssuedToken<Claimset>) -> String {
    login.claims().registered.sid.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_on_revocations_and_a_later_one_sees_everything() {
    let server = Postgres::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let alice = instances[0]
        .layer
        .issuer()
        .issue(user("alice", "user"))
        .unwrap();
    let bob = instances[0]
        .layer
        .issuer()
        .issue(user("bob", "user"))
        .unwrap();
    for instance in &instances {
        assert_eq!(kind(instance, alice.token()).await.0, StatusCode::OK);
    }

    instances[1]
        .layer
        .revoker()
        .revoke_session(&sid(&alice))
        .await
        .unwrap();
    for instance in &instances {
        within(
            "a logout reaches every instance",
            Duration::from_secs(1),
            async || kind(instance, alice.token()).await.1 == Some(RejectionKind::Revoked),
        )
        .await;
        assert_eq!(kind(instance, bob.token()).await.0, StatusCode::OK);
    }
    // Log out everywhere, from a third instance.
    clock.advance(Duration::from_secs(1));
    instances[2]
        .layer
        .revoker()
        .revoke_subject("bob")
        .await
        .unwrap();
    for instance in &instances {
        within(
            "log out everywhere reaches every instance",
            Duration::from_secs(1),
            async || kind(instance, bob.token()).await.1 == Some(RejectionKind::Revoked),
        )
        .await;
    }
    // One row each, committed and announced.
    assert_eq!(server.psql("SELECT count(*) FROM tsj_revocations"), "2");
    assert_eq!(instances[1].store.stats().revocations_written, 1);

    // An instance started later loads everything.
    let later = instance(&server, &clock, |b| b).await;
    assert_eq!(
        kind(&later, alice.token()).await.1,
        Some(RejectionKind::Revoked)
    );
    assert_eq!(
        kind(&later, bob.token()).await.1,
        Some(RejectionKind::Revoked)
    );
    let carol = later.layer.issuer().issue(user("carol", "user")).unwrap();
    assert_eq!(kind(&later, carol.token()).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_requests_over_three_instances_get_one_replacement() {
    let server = Postgres::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let login = instances[0]
        .layer
        .issuer()
        .issue(user("alice", "user"))
        .unwrap();
    clock.advance(minutes(45));

    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let app = instances[i % 3].app.clone();
            let token = login.token().to_owned();
            tokio::spawn(async move { send(&app, get(&token)).await })
        })
        .collect();
    let mut replacements = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        replacements.push(renewed(&response).expect("every response carries the replacement"));
    }
    replacements.sort();
    replacements.dedup();
    assert_eq!(replacements.len(), 1, "one replacement: {replacements:?}");
    let stats: Vec<_> = instances.iter().map(|i| i.store.stats()).collect();
    let claims: u64 = stats.iter().map(|s| s.flight_claims).sum();
    let lost: u64 = stats.iter().map(|s| s.flight_lost).sum();
    assert!(claims >= 3, "every instance asked the database ({claims})");
    assert_eq!(lost, claims - 1, "one offer won, every other read it");
    assert_eq!(stats.iter().map(|s| s.flight_errors).sum::<u64>(), 0);

    // One row, keyed by a hash, holding neither token in the clear, living
    // until the old token stops verifying (exp + leeway) and a minute more.
    let rows = server.psql("SELECT id, encode(sealed, 'hex'), until_ FROM tsj_flights");
    let columns: Vec<&str> = rows.split('|').collect();
    assert_eq!(columns.len(), 3, "one row: {rows}");
    let signature = login.token().rsplit('.').next().unwrap();
    assert!(!columns[0].contains(signature));
    for secret in [login.token(), replacements[0].as_str()] {
        let part = secret.rsplit('.').next().unwrap();
        let hex: String = part.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!columns[1].contains(&hex));
    }
    let until: i64 = columns[2].parse().unwrap();
    assert_eq!(until, login.claims().registered.exp + 5 + 60);
    for instance in &instances {
        assert_eq!(
            send(&instance.app, get(&replacements[0])).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_fails_closed_and_a_restarted_one_loses_nothing_answered() {
    let mut server = Postgres::start();
    let clock = clock();
    let timeout = Duration::from_millis(500);
    let instances = cluster(&server, &clock, timeout).await;
    let issuer = instances[0].layer.issuer();
    let logins: Vec<_> = (0..20)
        .map(|i| issuer.issue(user(&format!("user{i}"), "user")).unwrap())
        .collect();
    // Ten answered logouts, from all three instances.
    for (i, login) in logins.iter().take(10).enumerate() {
        instances[i % 3]
            .layer
            .revoker()
            .revoke_session(&sid(login))
            .await
            .unwrap();
    }
    let kept = &logins[15];

    server.stop_immediate();
    for instance in &instances {
        within(
            "PostgreSQL down: 503 (fail closed)",
            Duration::from_secs(5),
            async || {
                let response = send(&instance.app, get(kept.token())).await;
                response.status() == StatusCode::SERVICE_UNAVAILABLE
                    && response.headers().contains_key("retry-after")
            },
        )
        .await;
        assert!(!instance.store.is_synchronised());
    }
    // A logout while the database is down is honoured here, not answered
    // as shared.
    let error = instances[0]
        .layer
        .revoker()
        .revoke_session(&sid(&logins[10]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        ),
        "{error:?}"
    );

    server.start_again();
    for instance in &instances {
        within("recovered by itself", Duration::from_secs(10), async || {
            kind(instance, kept.token()).await.0 == StatusCode::OK
        })
        .await;
    }
    // Nothing answered was lost; the logout made during the outage was
    // written back; an instance started now sees all eleven.
    let later = instance(&server, &clock, |b| b).await;
    within(
        "the outage's logout is written back",
        Duration::from_secs(5),
        async || kind(&later, logins[10].token()).await.1 == Some(RejectionKind::Revoked),
    )
    .await;
    for (i, login) in logins.iter().enumerate() {
        let expected = if i <= 10 {
            Some(RejectionKind::Revoked)
        } else {
            None
        };
        for instance in instances.iter().chain([&later]) {
            assert_eq!(kind(instance, login.token()).await.1, expected, "login {i}");
        }
    }
    assert!(instances[0].store.stats().written_back >= 1);
}

/// A row whose announcement never reached an instance (written without
/// `NOTIFY`, as one lost while its `LISTEN` connection was down) is caught
/// up by the periodic confirmation; and a revocation made while an
/// instance's `LISTEN` connection is being re-established is caught up when
/// it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_notification_is_caught_up() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let b = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_millis(200))
    })
    .await;
    let alice = a.layer.issuer().issue(user("alice", "user")).unwrap();
    // Alice's logout, written into the table by hand: no announcement.
    let until = clock.now() + 3600;
    let mut record = vec![b's'];
    record.extend_from_slice(&until.to_le_bytes());
    record.extend_from_slice(&0i64.to_le_bytes());
    record.extend_from_slice(sid(&alice).as_bytes());
    let hex: String = record.iter().map(|b| format!("{b:02x}")).collect();
    server.psql(&format!(
        "WITH s AS (UPDATE tsj_state SET seq = seq + 1 RETURNING seq)
         INSERT INTO tsj_revocations (seq, until_, record, digest)
         SELECT s.seq, {until}, decode('{hex}', 'hex'), decode(md5('{hex}'), 'hex') FROM s"
    ));
    within(
        "the periodic catch-up",
        Duration::from_secs(2),
        async || kind(&b, alice.token()).await.1 == Some(RejectionKind::Revoked),
    )
    .await;

    // Instance C confirms only every minute: after its LISTEN connection
    // is cut, only the catch-up at reconnection brings bob's logout.
    let c = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_secs(60))
    })
    .await;
    let bob = a.layer.issuer().issue(user("bob", "user")).unwrap();
    server.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    );
    a.layer.revoker().revoke_session(&sid(&bob)).await.unwrap();
    within(
        "C catches up after reconnecting",
        Duration::from_secs(5),
        async || kind(&c, bob.token()).await.1 == Some(RejectionKind::Revoked),
    )
    .await;
}

/// A database that went back to an earlier state (here: emptied, as a
/// restore of an old backup would leave it) gets every instance's live
/// revocations written back, and an instance started afterwards has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_lost_writes_gets_the_replicas_written_back() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_millis(200))
    })
    .await;
    let alice = a.layer.issuer().issue(user("alice", "user")).unwrap();
    a.layer
        .revoker()
        .revoke_session(&sid(&alice))
        .await
        .unwrap();
    server.psql("BEGIN; DELETE FROM tsj_revocations; UPDATE tsj_state SET seq = 0; COMMIT");
    within("written back", Duration::from_secs(5), async || {
        server.psql("SELECT count(*) FROM tsj_revocations") == "1"
    })
    .await;
    let later = instance(&server, &clock, |b| b).await;
    assert_eq!(
        kind(&later, alice.token()).await.1,
        Some(RejectionKind::Revoked)
    );
    assert_eq!(a.store.stats().written_back, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_path_sends_no_query() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_secs(60))
    })
    .await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    let before = a.store.stats().queries;
    for _ in 0..100 {
        assert_eq!(kind(&a, login.token()).await.0, StatusCode::OK);
    }
    assert_eq!(a.store.stats().queries, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_serves_from_a_stale_replica_but_renews_nothing() {
    let mut server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_failure_mode(FailureMode::Open)
            .with_timeout(Duration::from_millis(300))
    })
    .await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    server.stop_immediate();
    within("unsynchronised", Duration::from_secs(5), async || {
        !a.store.is_synchronised()
    })
    .await;
    clock.advance(minutes(45));
    let response = send(&a.app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK, "served from the replica");
    assert!(renewed(&response).is_none(), "but not renewed on its word");
}

/// What a party with write access to the tables may plant is read bounded:
/// a record longer than any writer writes is skipped, and so is one that
/// does not decode; a well-formed row asking to live for ever is taken
/// (its `until` cut to the longest a revocation can need). None of them
/// makes the replica untrusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_rows_are_read_bounded() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_millis(200))
    })
    .await;
    let mut forever = vec![b's'];
    forever.extend_from_slice(&i64::MAX.to_le_bytes());
    forever.extend_from_slice(&0i64.to_le_bytes());
    forever.extend_from_slice(b"planted");
    let forever: String = forever.iter().map(|b| format!("{b:02x}")).collect();
    server.psql(&format!(
        "WITH s AS (UPDATE tsj_state SET seq = seq + 3 RETURNING seq)
         INSERT INTO tsj_revocations (seq, until_, record, digest)
         SELECT s.seq - 2, 0, decode(repeat('73', 20000), 'hex'), '\\x01'::bytea FROM s
         UNION ALL SELECT s.seq - 1, 0, '\\x7300'::bytea, '\\x02'::bytea FROM s
         UNION ALL SELECT s.seq, 9223372036854775807, decode('{forever}', 'hex'), '\\x03'::bytea FROM s"
    ));
    within(
        "the planted rows are read",
        Duration::from_secs(2),
        async || a.store.len() == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.store.is_synchronised());
    assert_eq!(a.store.len(), 1, "only the well-formed row");
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(kind(&a, login.token()).await.0, StatusCode::OK);
}

/// The tables' schema version and the prefix: tables written by a newer
/// version are refused with a message naming the version; a prefix that is
/// not a plain identifier is refused before anything is sent; two prefixes
/// are two independent stores; and a role that may not create tables but
/// holds the documented grants runs on tables made by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_prefix_and_grants() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    a.layer
        .revoker()
        .revoke_session(&sid(&login))
        .await
        .unwrap();

    let other = instance(&server, &clock, |b| b.with_table_prefix("other_")).await;
    assert_eq!(
        kind(&other, login.token()).await.0,
        StatusCode::OK,
        "its own tables"
    );

    let refused = PostgresStore::builder(server.url())
        .with_table_prefix("x; DROP TABLE tsj_state; --")
        .connect()
        .await
        .unwrap_err();
    assert!(
        std::error::Error::source(&refused)
            .unwrap()
            .to_string()
            .contains("prefix")
    );

    server.psql(
        "CREATE ROLE app LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON tsj_state, tsj_revocations, tsj_flights, tsj_sessions, tsj_proofs TO app",
    );
    let app_url = server.url().replace("postgres@", "app@");
    let store = PostgresStore::builder(app_url.clone())
        .with_clock(clock.clone())
        .connect()
        .await
        .unwrap();
    assert_eq!(store.len(), 1);
    let refused = PostgresStore::builder(app_url)
        .with_table_prefix("fresh_")
        .connect()
        .await
        .unwrap_err();
    assert!(format!("{refused}: {:?}", std::error::Error::source(&refused)).contains("permission"));

    // A version 1 dataset (before the session registry) gains its table.
    server.psql("DROP TABLE tsj_sessions, tsj_proofs; UPDATE tsj_state SET version = 1");
    let upgraded = instance(&server, &clock, |b| b).await;
    let (parts, ()) = http::Request::post("/login").body(()).unwrap().into_parts();
    upgraded
        .layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap();
    assert_eq!(
        upgraded.layer.sessions().list("alice").await.unwrap().len(),
        1
    );
    assert_eq!(server.psql("SELECT version FROM tsj_state").trim(), "3");
    assert_eq!(server.psql("SELECT count(*) FROM tsj_proofs").trim(), "0");

    server.psql("UPDATE tsj_state SET version = 4");
    let refused = PostgresStore::builder(server.url())
        .connect()
        .await
        .unwrap_err();
    let message = std::error::Error::source(&refused).unwrap().to_string();
    assert!(message.contains("version 4"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_with_on_one_instance_retires_the_replacement_another_instance_handed_out() {
    use tower::{Layer, service_fn};
    let server = Postgres::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let admin = instances[0]
        .layer
        .issuer()
        .issue(user("alice", "admin"))
        .unwrap();
    clock.advance(minutes(45));
    // A renews T: its replacement R1 (old role) wins the shared flight.
    let r1 = renewed(&send(&instances[0].app, get(admin.token())).await).expect("renewed");
    assert_eq!(payload(&r1)["role"], "admin");
    // B demotes on T.
    let b = instances[1].layer.layer(service_fn(demoting));
    let r2 = renewed(&send(&b, demote(admin.token())).await).expect("renew_with's token");
    assert_eq!(payload(&r2)["role"], "user");
    // R1 is never served with the old role again, on any instance: its
    // holder is served as R2 and gets it.
    for instance in &instances {
        within(
            "the cut-off reaches every instance",
            Duration::from_secs(1),
            async || {
                let response = send(&instance.app, get(&r1)).await;
                let seen: serde_json::Value =
                    serde_json::from_str(response.body()).unwrap_or_default();
                response.status() == StatusCode::OK
                    && seen["role"] == "user"
                    && renewed(&response).as_deref() == Some(r2.as_str())
            },
        )
        .await;
    }
    // A third instance presenting T gets the new replacement or a 401,
    // never R1.
    let response = send(&instances[2].app, get(admin.token())).await;
    match renewed(&response) {
        Some(token) => assert_eq!(token, r2),
        None => assert_eq!(rejection(&response), Some(RejectionKind::Revoked)),
    }
    assert_eq!(kind(&instances[2], &r2).await.0, StatusCode::OK);
}

/// A database that answers no more (here: the state row locked by another
/// session, while the instance's `LISTEN` connection stays up) fails closed
/// within the confirmation bound, and serves again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_fails_closed_within_the_bound() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_timeout(Duration::from_millis(300))
            .with_confirm_interval(Duration::from_millis(200))
    })
    .await;
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(kind(&a, login.token()).await.0, StatusCode::OK);
    let locker = lock_state(&server, 3);
    within(
        "503 while the database does not answer",
        Duration::from_secs(2),
        async || kind(&a, login.token()).await.0 == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(locker.join().unwrap().status.success());
    within("serves again", Duration::from_secs(5), async || {
        kind(&a, login.token()).await.0 == StatusCode::OK
    })
    .await;
}

/// Revocations made together share a commit (group commit): 64 at once
/// take far fewer than 64 statements, and each is answered only once its
/// commit is done (all 64 rows are there when the last answer arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_share_commits() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let now = clock.now();
    let pending: Vec<_> = (0..64)
        .map(|i| logout(&a.store, format!("session-{i}"), now))
        .collect();
    for done in pending {
        done.await.unwrap();
    }
    let stats = a.store.stats();
    assert_eq!(stats.revocations_written, 64);
    assert!(
        stats.commits <= 8,
        "{} commits for 64 revocations",
        stats.commits
    );
    assert_eq!(server.psql("SELECT count(*) FROM tsj_revocations"), "64");
}

/// An id longer than any instance reads back (16 KiB) is refused before
/// anything is written, in the database or in the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_id_is_refused_with_nothing_written() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| b).await;
    let now = clock.now();
    let revoke = |sid: String| logout(&a.store, sid, now);
    assert!(revoke("x".repeat(16 * 1024 + 1)).await.is_err());
    assert!(a.store.is_empty());
    assert_eq!(server.psql("SELECT count(*) FROM tsj_revocations"), "0");
    revoke("y".repeat(16 * 1024)).await.unwrap();
    assert_eq!(a.store.len(), 1);
    assert_eq!(server.psql("SELECT count(*) FROM tsj_revocations"), "1");
}

/// Hand-writes a session revocation row at sequence number `seq`, as an
/// instance's write lands (no announcement).
fn plant_logout(server: &Postgres, sid: &str, until: i64, seq: i64) {
    let mut record = vec![b's'];
    record.extend_from_slice(&until.to_le_bytes());
    record.extend_from_slice(&0i64.to_le_bytes());
    record.extend_from_slice(sid.as_bytes());
    let hex: String = record.iter().map(|b| format!("{b:02x}")).collect();
    server.psql(&format!(
        "INSERT INTO tsj_revocations (seq, until_, record, digest)
         VALUES ({seq}, {until}, decode('{hex}', 'hex'), decode(md5('{hex}'), 'hex'))"
    ));
}

/// The database goes back to an earlier state and takes a new logout at a
/// sequence number an instance already read past. The instance that finds
/// the loss first writes back and gives the dataset a new epoch, so another
/// instance, whose own check would find nothing amiss by then (the
/// write-back moved the sequence past what it read), reads everything again
/// and honours the new logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_finds_lost_writes_makes_every_instance_read_everything_again() {
    let server = Postgres::start();
    let clock = clock();
    let x = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_millis(100))
    })
    .await;
    let y = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_secs(2))
    })
    .await;
    let (alice, carol, bob) = (
        x.layer.issuer().issue(user("alice", "user")).unwrap(),
        x.layer.issuer().issue(user("carol", "user")).unwrap(),
        x.layer.issuer().issue(user("bob", "user")).unwrap(),
    );
    for login in [&alice, &carol] {
        x.layer.revoker().revoke_session(&sid(login)).await.unwrap();
    }
    within("Y has both", Duration::from_secs(1), async || {
        y.store.len() == 2
    })
    .await;
    // Restored to empty; bob's logout lands at sequence 1.
    server.psql("BEGIN; DELETE FROM tsj_revocations; UPDATE tsj_state SET seq = 1; COMMIT");
    plant_logout(&server, &sid(&bob), clock.now() + 3600, 1);
    within(
        "Y honours bob's logout",
        Duration::from_secs(6),
        async || kind(&y, bob.token()).await.1 == Some(RejectionKind::Revoked),
    )
    .await;
    assert_eq!(
        kind(&y, alice.token()).await.1,
        Some(RejectionKind::Revoked)
    );
    assert!(x.store.stats().written_back >= 2);
}

/// A logout whose caller went away before it was answered (the database
/// was down) is still shared once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_whose_caller_went_away_is_shared_once_the_database_is_back() {
    let mut server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_timeout(Duration::from_millis(300))
    })
    .await;
    let alice = a.layer.issuer().issue(user("alice", "user")).unwrap();
    server.stop_immediate();
    // The caller gives up at once: its future is dropped.
    let revoker = a.layer.revoker();
    let sid = sid(&alice);
    let gave_up =
        tokio::time::timeout(Duration::from_millis(1), revoker.revoke_session(&sid)).await;
    assert!(!matches!(gave_up, Ok(Ok(()))), "not answered as shared");
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.start_again();
    let later = instance(&server, &clock, |b| b).await;
    within(
        "the logout reaches the database",
        Duration::from_secs(10),
        async || kind(&later, alice.token()).await.1 == Some(RejectionKind::Revoked),
    )
    .await;
}

/// Expired rows are deleted by the instances, in batches, however many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_deleted() {
    let server = Postgres::start();
    let clock = clock();
    let _a = instance(&server, &clock, |b| {
        b.with_resync_interval(Duration::from_millis(200))
    })
    .await;
    let old = clock.now() - 3600;
    server.psql(&format!(
        "WITH s AS (UPDATE tsj_state SET seq = seq + 2500 RETURNING seq)
         INSERT INTO tsj_revocations (seq, until_, record, digest)
         SELECT s.seq - n, {old}, '\\\\x00'::bytea, int8send(n) FROM s, generate_series(0, 2499) n"
    ));
    within("expired rows deleted", Duration::from_secs(5), async || {
        server.psql("SELECT count(*) FROM tsj_revocations") == "0"
    })
    .await;
}

/// Timeouts and intervals of any size are taken (cut to an hour), never a
/// panic in the background that would leave the replica trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_timeout_is_taken() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_timeout(Duration::MAX)
            .with_confirm_interval(Duration::MAX)
            .with_resync_interval(Duration::MAX)
    })
    .await;
    assert!(a.store.is_synchronised());
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    assert_eq!(kind(&a, login.token()).await.0, StatusCode::OK);
}

/// Reuse detection across instances: a replacement renewed on A and used on
/// B, then the old token back on C past the grace, is caught on C through
/// the mark B wrote, and the session ends on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_on_one_instance_of_a_replacement_used_on_another_is_caught_on_a_third() {
    let server = Postgres::start();
    let clock = clock();
    let mut instances = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        let layer = SlidingJwtLayer::builder(hs256())
            .with_clock(clock.clone())
            .with_revocation_store(store.clone())
            .with_reuse_detection(Duration::from_secs(30))
            .build()
            .unwrap();
        let app = app(&layer);
        instances.push(Instance { store, layer, app });
    }
    let (a, b, c) = (&instances[0], &instances[1], &instances[2]);
    let login = a.layer.issuer().issue(user("alice", "user")).unwrap();
    clock.advance(minutes(41));
    let replacement = renewed(&send(&a.app, get(login.token())).await).expect("renewed on A");
    // Used on B; inside the grace the old token still works on C and gets
    // the cluster's one replacement.
    assert_eq!(kind(b, &replacement).await.0, StatusCode::OK);
    let response = send(&c.app, get(login.token())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(renewed(&response).as_deref(), Some(replacement.as_str()));
    // Past the grace plus the default 5 s leeway, the old token on C is a
    // stolen copy, and the session is over on every instance.
    clock.advance(Duration::from_secs(36));
    within(
        "the mark written on B reaches C",
        Duration::from_secs(2),
        async || {
            kind(c, login.token()).await
                == (StatusCode::UNAUTHORIZED, Some(RejectionKind::TokenReused))
        },
    )
    .await;
    assert_eq!(c.layer.stats().reuse_detected(), 1);
    for instance in [a, b, c] {
        within(
            "the session is revoked everywhere",
            Duration::from_secs(1),
            async || {
                kind(instance, &replacement).await
                    == (StatusCode::UNAUTHORIZED, Some(RejectionKind::Revoked))
            },
        )
        .await;
    }
}

/// A row planted ahead of the state row's sequence number is not read
/// before the dataset reaches it, and does not make later writes collide
/// with it: they are numbered past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_planted_ahead_of_the_sequence_neither_blocks_writes_nor_is_read_early() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_confirm_interval(Duration::from_millis(100))
    })
    .await;
    let next: i64 = server
        .psql("SELECT seq + 1 FROM tsj_state")
        .parse()
        .unwrap();
    plant_logout(&server, "planted", clock.now() + 3600, next);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.store.is_empty(), "not read while ahead of the state row");
    let alice = a.layer.issuer().issue(user("alice", "user")).unwrap();
    a.layer
        .revoker()
        .revoke_session(&sid(&alice))
        .await
        .unwrap();
    within("both read", Duration::from_secs(2), async || {
        a.store.len() == 2
    })
    .await;
    assert_eq!(server.psql("SELECT count(*) FROM tsj_revocations"), "2");
}

/// With the database slower than the logouts (its state row locked by
/// another session), the write queue fills: further revocations are
/// honoured here, answered as not shared yet, kept aside, and every one of
/// them reaches the database once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_keeps_revocations_aside_and_writes_them_back() {
    let server = Postgres::start();
    let clock = clock();
    let a = instance(&server, &clock, |b| {
        b.with_timeout(Duration::from_millis(500))
            .with_confirm_interval(Duration::from_millis(200))
    })
    .await;
    let locker = lock_state(&server, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = clock.now();
    let revoke = |i: usize| logout(&a.store, format!("session-{i}"), now);
    // 3 000 whose callers go away at once, never awaiting: the queue holds
    // 2 000, the writer 500, the rest never got in.
    drop((0..3000).map(revoke).collect::<Vec<_>>());
    // 3 000 whose callers wait, within the timeout.
    let pending: Vec<_> = (3000..6000).map(revoke).collect();
    let mut refused = 0;
    for done in pending {
        if done.await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "the queue was full");
    assert_eq!(a.store.len(), 6000, "every one honoured here");
    assert!(locker.join().unwrap().status.success());
    within(
        "every revocation reaches the database",
        Duration::from_secs(10),
        async || server.psql("SELECT count(*) FROM tsj_revocations") == "6000",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_are_shared_by_every_instance_and_bounded() {
    let mut server = Postgres::start();
    let clock = clock();
    let instances = cluster(&server, &clock, Duration::from_secs(2)).await;
    let layers: Vec<_> = instances.iter().map(|i| &i.layer).collect();
    sessions::shared_registry(&layers, &clock, "pg").await;
    let mut limited = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        limited.push(sessions::limited(
            store,
            &clock,
            tower_sliding_jwt::OnLimit::EndLeastRecent,
        ));
    }
    sessions::limit_counts_every_instance(&limited.iter().collect::<Vec<_>>(), "pg").await;
    let mut refusing = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::builder(server.url())
            .with_clock(clock.clone())
            .connect()
            .await
            .unwrap();
        refusing.push(sessions::limited(
            store,
            &clock,
            tower_sliding_jwt::OnLimit::Refuse,
        ));
    }
    sessions::simultaneous_logins_keep_the_limit(&refusing.iter().collect::<Vec<_>>(), "pg").await;
    // Planted rows the crate could not have written are not listed.
    server.psql(&format!(
        "INSERT INTO tsj_sessions (subject, sid, created, last_seen, expires, cap, user_agent)
         VALUES ('mallory', 'planted', 0, 0, {far}, {far}, repeat('x', 5000))",
        far = T0 + 86_400
    ));
    assert!(
        instances[0]
            .layer
            .sessions()
            .list("mallory")
            .await
            .unwrap()
            .is_empty()
    );
    // ... and deleted, so they do not count against mallory's limit.
    assert_eq!(
        server.psql("SELECT count(*) FROM tsj_sessions WHERE subject = 'mallory'"),
        "0"
    );
    // More rows than any limit allows: refused, never listed in part.
    server.psql(&format!(
        "INSERT INTO tsj_sessions (subject, sid, created, last_seen, expires, cap)
         SELECT 'bulk', 's' || n, 0, 0, {far}, {far} FROM generate_series(1, 2001) AS n",
        far = T0 + 86_400
    ));
    assert!(instances[0].layer.sessions().list("bulk").await.is_err());
    // A database that goes away: logins and listings are refused, never
    // answered from what is left.
    let (parts, ()) = http::Request::post("/login").body(()).unwrap().into_parts();
    server.stop_immediate();
    within("the store notices", Duration::from_secs(10), async || {
        !instances[0].store.is_synchronised()
    })
    .await;
    let refused = instances[0]
        .layer
        .issuer()
        .login(&parts, user("alice", "user"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), tower_sliding_jwt::IssueErrorKind::Store);
    assert!(
        instances[0]
            .layer
            .sessions()
            .list("alice-pg")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_proofs_are_refused_on_every_instance_once_used() {
    let server = Postgres::start();
    let clock = clock();
    let store = || {
        PostgresStore::builder(server.url())
            .with_clock(clock.clone())
            // The other tests of this binary load the machine meanwhile.
            .with_timeout(Duration::from_secs(10))
            .connect()
    };
    let a = dpop_cluster::instance(store().await.unwrap(), &clock);
    let b = dpop_cluster::instance(store().await.unwrap(), &clock);
    dpop_cluster::proofs_and_nonces_are_shared(&a, &b, T0, "pg").await;
    assert_eq!(server.psql("SELECT count(*) FROM tsj_proofs").trim(), "2");
}
