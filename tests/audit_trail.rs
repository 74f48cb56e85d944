//! The audit trail on a real SQLite file: a write the store refuses is kept and retried
//! until the store takes it (nothing dropped, the chain goes on), a truncated or
//! emptied log is reported at start through the checkpoint beside the database, and one
//! undecodable newest row never blocks later writes.
#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use selfheal::AuditStore;
use selfheal::storage::{SqliteOptions, SqliteStore, sqlx};
use selfheal::{AuditEntry, AuditRecord, ChainError, Healer, Pattern, Phase, verify_chain};
use tokio::time::Instant;

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open_with(
        path.to_str().unwrap(),
        SqliteOptions::default().seed_catalog(false),
    )
    .await
    .unwrap()
}

async fn sql(store: &SqliteStore, statement: &'static str) {
    sqlx::query(statement).execute(store.pool()).await.unwrap();
}

/// Appends `n` chained records straight to the store.
async fn chain_of(store: &SqliteStore, n: usize) -> Vec<AuditRecord> {
    let mut chain: Vec<AuditRecord> = Vec::new();
    for i in 0..n {
        let record = AuditEntry::new("self_heal.detected", format!("record {i}"))
            .chain(chain.last(), Utc::now());
        store.append_audit(&record).await.unwrap();
        chain.push(record);
    }
    chain
}

/// Waits (real time: the store is a real file) until `done` holds, for at most 30 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a healer on `store` (default build: buffered) and returns its verdict on the
/// chain at start.
async fn start(store: SqliteStore) -> (Healer, selfheal::Running, Result<(), ChainError>) {
    let healer = Healer::builder().store(store).build().unwrap();
    let running = healer.spawn();
    until("the chain was checked at start", || {
        healer.admin().audit_chain().is_some()
    })
    .await;
    let verdict = healer.admin().audit_chain().unwrap();
    (healer, running, verdict)
}

fn checkpoint_of(db: &Path) -> PathBuf {
    let mut name = std::fs::canonicalize(db).unwrap().into_os_string();
    name.push(".audit-head");
    PathBuf::from(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_audit_write_is_retried_until_the_store_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("selfheal.db")).await;
    let (healer, running, verdict) = start(store.clone()).await;
    assert_eq!(verdict, Ok(()));
    healer
        .admin()
        .add_pattern(Pattern::new("p0").regex("zero"), "alice")
        .await
        .unwrap();

    // The audit table goes away: every append fails (not an outage, so the store
    // buffer passes the error on and the healer keeps the records itself).
    sql(&store, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    for name in ["p1", "p2", "p3"] {
        healer
            .admin()
            .add_pattern(Pattern::new(name).regex(name), "alice")
            .await
            .unwrap();
    }
    assert_eq!(healer.audit_waiting(), 3, "kept, not dropped");
    assert!(healer.store_errors() >= 1);
    assert_eq!(healer.admin().stats().await.unwrap().audit_waiting, 3);

    // Back: the retry (with back-off) writes them, in order, chained after the last.
    sql(&store, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    until("the backlog was written", || healer.audit_waiting() == 0).await;
    healer
        .admin()
        .add_pattern(Pattern::new("p4").regex("four"), "alice")
        .await
        .unwrap();
    let audit = store.list_audit(100).await.unwrap();
    verify_chain(&audit).unwrap();
    let patterns: Vec<_> = audit.iter().filter_map(|r| r.pattern.clone()).collect();
    assert_eq!(
        patterns,
        ["p0", "p1", "p2", "p3", "p4"],
        "every record, once, in order"
    );
    assert_eq!(
        audit.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(healer.audit_dropped(), 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_emptied_log_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfheal.db");
    let store = open(&db).await;
    let chain = chain_of(&store, 5).await;
    let checkpoint = std::fs::read_to_string(checkpoint_of(&db)).unwrap();
    assert!(checkpoint.contains(&chain[4].hash), "{checkpoint}");
    let (_, running, verdict) = start(store.clone()).await;
    assert_eq!(verdict, Ok(()), "an intact log at its checkpoint");
    running.shutdown().await;

    // Someone with write access to the database removes the last two records while
    // the service is down; the chain that is left verifies on its own.
    sql(&store, "DROP TRIGGER audit_log_no_delete").await;
    sql(&store, "DELETE FROM audit_log WHERE seq > 3").await;
    store.close().await;
    let store = open(&db).await;
    verify_chain(&store.list_audit(100).await.unwrap()).unwrap();
    let healer = Healer::builder().store(store.clone()).build().unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.phase == Phase::ChainBroken {
                return e;
            }
        }
    })
    .await
    .expect("reported at start");
    assert!(event.detail.contains("truncated"), "{}", event.detail);
    let broken = healer.admin().audit_chain().unwrap().unwrap_err();
    assert_eq!(broken.seq, 4, "the first missing record");
    assert!(broken.reason.contains("truncated"), "{broken}");
    running.shutdown().await;

    sql(&store, "DELETE FROM audit_log").await;
    let (_, running, verdict) = start(store).await;
    let broken = verdict.unwrap_err();
    assert!(broken.reason.contains("emptied"), "{broken}");
    assert_eq!(broken.seq, 5, "the checkpoint's position");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_newest_row_never_blocks_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("selfheal.db")).await;
    let chain = chain_of(&store, 2).await;
    sql(&store, "DROP TRIGGER audit_log_no_update").await;
    sql(
        &store,
        "UPDATE audit_log SET detail = 'not json {' WHERE seq = 2",
    )
    .await;

    let (healer, running, verdict) = start(store.clone()).await;
    let broken = verdict.unwrap_err();
    assert_eq!(broken.seq, 2, "the bad row is reported");
    healer
        .admin()
        .add_pattern(Pattern::new("after").regex("after"), "alice")
        .await
        .unwrap();
    assert_eq!(healer.audit_waiting(), 0);
    assert_eq!(healer.store_errors(), 0, "{}", healer.store_errors());

    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit.len(), 3, "the write landed");
    let (bad, new) = (&audit[1], &audit[2]);
    assert_eq!((bad.seq, bad.hash.as_str()), (2, chain[1].hash.as_str()));
    assert_eq!(new.seq, 3);
    assert_eq!(new.prev_hash, chain[1].hash, "chained on the stored hash");
    assert_eq!(new.pattern.as_deref(), Some("after"));
    assert_eq!(
        verify_chain(&audit).unwrap_err().seq,
        2,
        "the check still names the bad row, and only it"
    );
    verify_chain(&audit[2..]).unwrap();
    running.shutdown().await;
}
