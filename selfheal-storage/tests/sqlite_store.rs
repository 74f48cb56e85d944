//! `SqliteStore` against the conformance suite, in memory and on disk, plus what only a
//! database does: persistence, migrations, the append-only trigger, retention.
#![cfg(feature = "sqlite")]

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use selfheal_core::{
    ActionRecord, ActionStatus, AuditEntry, AuditStore, ErrorKind, Fingerprint, FixBinding,
    Incident, IncidentFilter, IncidentStatus, IncidentStore, Pattern, PatternStore, Severity,
    Store, testkit, verify_chain,
};
use selfheal_storage::{MAX_SAMPLE_BYTES, SqliteStore};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn incident(target: &str, status: IncidentStatus, opened_at: DateTime<Utc>) -> Incident {
    Incident {
        id: Uuid::new_v4(),
        target: target.into(),
        fingerprint: "00112233aabbccdd".into(),
        template: "disk full on <*>".into(),
        stack: None,
        related: Vec::new(),
        pattern: None,
        status,
        severity: Severity::Medium,
        occurrences: 1,
        samples: vec!["disk full on /var".into()],
        opened_at,
        last_seen: opened_at,
        closed_at: status
            .is_terminal()
            .then_some(opened_at + TimeDelta::minutes(1)),
        reason: String::new(),
    }
}

fn action(incident: &Incident) -> ActionRecord {
    ActionRecord {
        id: Uuid::new_v4(),
        incident: incident.id,
        pattern: None,
        strategy: "run_command".into(),
        target: incident.target.clone(),
        preview: "rm -rf /var/tmp/cache".into(),
        status: ActionStatus::Succeeded,
        outcome: None,
        health_before: None,
        health_after: None,
        started_at: incident.opened_at,
        finished_at: None,
        error: None,
    }
}

async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count query")
}

/// These tests count and name their own patterns: no stock catalog.
fn unseeded() -> selfheal_storage::SqliteOptions {
    selfheal_storage::SqliteOptions::default().seed_catalog(false)
}

#[tokio::test]
async fn in_memory_store_passes_the_conformance_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    testkit::run_all(&store).await;
    // A second run against the same data: the checks do not trip over each other.
    testkit::run_all(&store).await;

    let by_url = SqliteStore::open("sqlite::memory:").await.unwrap();
    testkit::run_all(&by_url).await;
}

#[tokio::test]
async fn file_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    // A plain path, in a directory that does not exist yet.
    let path = dir.path().join("state").join("selfheal.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert!(path.exists(), "the database file is created");
    testkit::run_all(&store).await;
    testkit::run_all(&store).await;
}

#[tokio::test]
async fn a_sqlite_url_opens_a_file_in_exclusive_wal_mode_with_foreign_keys_and_no_mmap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selfheal.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The WAL index is in heap memory: no `-shm` file to map, and nothing else mapped.
    let locking: String = sqlx::query_scalar("PRAGMA locking_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(locking, "exclusive");
    let mmap: i64 = sqlx::query_scalar("PRAGMA mmap_size")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mmap, 0);
    store
        .save_incident(&incident("disk", IncidentStatus::Open, now()))
        .await
        .unwrap();
    assert!(!dir.path().join("selfheal.db-shm").exists());
    assert!(dir.path().join("selfheal.db-wal").exists());
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    assert_eq!(store.name(), "sqlite");
}

#[tokio::test]
async fn the_schema_has_every_table_of_the_design() {
    let store = SqliteStore::in_memory().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "actions",
            "approvals",
            "audit_log",
            "backups",
            "control_state",
            "cooldowns",
            "diagnosis_cache",
            "fingerprints",
            "fleet_attempts",
            "incidents",
            "leases",
            "pattern_fixes",
            "patterns",
            "rate_permits"
        ]
    );
    let views: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        views,
        [
            "actions_by_outcome",
            "healing_overview",
            "pattern_hourly",
            "pattern_mttr",
            "recent_activity",
            "strategy_success"
        ]
    );
    // Every view answers.
    for view in &views {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {view}")))
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
    }
}

#[tokio::test]
async fn reopening_a_file_keeps_the_data_and_migrating_again_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selfheal.db");
    let url = format!("sqlite://{}", path.display());

    let pattern = Pattern::new("disk_full")
        .regex("No space left on device")
        .fix(FixBinding::new("run_command").params(serde_json::json!({"argv": ["cleanup"]})));
    let inc = incident("disk", IncidentStatus::Open, now());
    let record = AuditEntry::new("self_heal.detected", "incident opened").chain(None, now());
    {
        let store = SqliteStore::open_with(&url, unseeded()).await.unwrap();
        store.add_pattern(&pattern).await.unwrap();
        store
            .record_outcome("disk_full", "run_command", true, 0.05)
            .await
            .unwrap();
        store.save_incident(&inc).await.unwrap();
        store.append_audit(&record).await.unwrap();
        store.close().await;
    }

    let store = SqliteStore::open_with(&url, unseeded()).await.unwrap();
    let migrations = count(&store, "SELECT COUNT(*) FROM _sqlx_migrations").await;
    let stored = store.get_pattern("disk_full").await.unwrap().unwrap();
    assert_eq!(stored.use_count, 1);
    assert_eq!(stored.fixes[0].successes, 1);
    assert!((stored.confidence - 0.55).abs() < 1e-9);
    assert_eq!(store.get_incident(inc.id).await.unwrap(), Some(inc.clone()));
    assert_eq!(
        store.list_audit(10).await.unwrap(),
        std::slice::from_ref(&record)
    );

    // Opening again over the same pool, and from a new one once the file is free (the
    // store holds it exclusively), applies nothing new.
    let again = SqliteStore::from_pool(store.pool().clone()).await.unwrap();
    for s in [&store, &again] {
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM _sqlx_migrations").await,
            migrations
        );
    }
    store.close().await;
    let third = SqliteStore::open_with(path.to_str().unwrap(), unseeded())
        .await
        .unwrap();
    for s in [&third] {
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM _sqlx_migrations").await,
            migrations
        );
        assert_eq!(
            s.list_patterns().await.unwrap(),
            std::slice::from_ref(&stored)
        );
        assert_eq!(
            s.list_incidents(&IncidentFilter::default()).await.unwrap(),
            std::slice::from_ref(&inc)
        );
    }
    assert!(migrations >= 1);
}

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_audit_records() {
    let store = SqliteStore::in_memory().await.unwrap();
    let first = AuditEntry::new("self_heal.auto", "ok").chain(None, now());
    let second = AuditEntry::new("self_heal.resolved", "ok").chain(Some(&first), now());
    store.append_audit(&first).await.unwrap();
    store.append_audit(&second).await.unwrap();

    let update = sqlx::query("UPDATE audit_log SET result = 'failed' WHERE seq = 1")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let update = selfheal_core::Error::from(selfheal_storage::StorageError::from(update));
    assert_eq!(update.kind(), ErrorKind::Conflict, "{update}");

    let delete = sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");

    let stored = store.list_audit(10).await.unwrap();
    assert_eq!(stored, [first, second]);
    verify_chain(&stored).unwrap();
}

#[tokio::test]
async fn retention_cleanup_deletes_old_closed_incidents_and_their_actions_only() {
    let store = SqliteStore::in_memory().await.unwrap();
    let base = now();
    let old_resolved = incident("db", IncidentStatus::Resolved, base - TimeDelta::days(10));
    let old_escalated = incident("db", IncidentStatus::Escalated, base - TimeDelta::days(9));
    let old_open = incident("db", IncidentStatus::Open, base - TimeDelta::days(10));
    let recent_closed = incident("db", IncidentStatus::Closed, base - TimeDelta::hours(1));
    // Closed long after it opened: its close time decides, not its open time.
    let mut long_running = incident("db", IncidentStatus::Resolved, base - TimeDelta::days(30));
    long_running.closed_at = Some(base - TimeDelta::days(1));

    let all = [
        &old_resolved,
        &old_escalated,
        &old_open,
        &recent_closed,
        &long_running,
    ];
    for i in all {
        store.save_incident(i).await.unwrap();
        store.save_action(&action(i)).await.unwrap();
        store.save_action(&action(i)).await.unwrap();
    }
    let mut prev = None;
    for i in all {
        let entry = AuditEntry {
            incident: Some(i.id),
            ..AuditEntry::new("self_heal.detected", "opened")
        };
        let record = entry.chain(prev.as_ref(), now());
        store.append_audit(&record).await.unwrap();
        prev = Some(record);
    }

    let deleted = store
        .retention_cleanup(base - TimeDelta::days(7))
        .await
        .unwrap();
    assert_eq!(deleted, 2);

    let left: Vec<Uuid> = store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left, [recent_closed.id, old_open.id, long_running.id]);
    for gone in [&old_resolved, &old_escalated] {
        assert_eq!(store.get_incident(gone.id).await.unwrap(), None);
        assert!(store.list_actions(Some(gone.id)).await.unwrap().is_empty());
    }
    for kept in [&old_open, &recent_closed, &long_running] {
        assert_eq!(store.list_actions(Some(kept.id)).await.unwrap().len(), 2);
    }
    let audit = store.list_audit(100).await.unwrap();
    assert_eq!(audit.len(), 5, "audit records are never deleted");
    verify_chain(&audit).unwrap();

    assert_eq!(
        store
            .retention_cleanup(base - TimeDelta::days(7))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn record_fingerprint_counts_and_keeps_the_latest_sample() {
    let store = SqliteStore::in_memory().await.unwrap();
    let fp = Fingerprint::new("api", "timeout after <*>", Some("app::db::query".into()));
    let t0 = now();

    assert_eq!(
        store
            .record_fingerprint(&fp, "timeout after 30ms", t0)
            .await
            .unwrap(),
        1
    );
    let later = t0 + TimeDelta::seconds(10);
    assert_eq!(
        store
            .record_fingerprint(&fp, "timeout after 90ms", later)
            .await
            .unwrap(),
        2
    );
    // Arriving late: counted, but it neither moves last_seen back nor replaces the sample.
    let earlier = t0 - TimeDelta::seconds(10);
    assert_eq!(
        store
            .record_fingerprint(&fp, "timeout after 5ms", earlier)
            .await
            .unwrap(),
        3
    );

    let (template, stack, sample, first, last, n): (String, Option<String>, String, String, String, i64) =
        sqlx::query_as(
            "SELECT template, stack, sample, first_seen, last_seen, count FROM fingerprints WHERE id = ?1",
        )
        .bind(&fp.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(template, "timeout after <*>");
    assert_eq!(stack.as_deref(), Some("app::db::query"));
    assert_eq!(sample, "timeout after 90ms");
    assert_eq!(DateTime::parse_from_rfc3339(&first).unwrap(), earlier);
    assert_eq!(DateTime::parse_from_rfc3339(&last).unwrap(), later);
    assert_eq!(n, 3);

    let huge = "é".repeat(MAX_SAMPLE_BYTES);
    let other = Fingerprint::new("api", "huge <*>", None);
    store.record_fingerprint(&other, &huge, t0).await.unwrap();
    let sample: String = sqlx::query_scalar("SELECT sample FROM fingerprints WHERE id = ?1")
        .bind(&other.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(sample.len() <= MAX_SAMPLE_BYTES && sample.len() > MAX_SAMPLE_BYTES - 2);
    assert!(huge.starts_with(&sample));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outcomes_on_a_file_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open_with(dir.path().join("selfheal.db").to_str().unwrap(), unseeded())
            .await
            .unwrap();
    let pattern = Pattern::new("pool_timeout")
        .regex("pool timed out")
        .confidence(0.0)
        .fix(FixBinding::new("reset_pool"));
    store.add_pattern(&pattern).await.unwrap();

    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_outcome("pool_timeout", "reset_pool", i % 3 != 0, 0.01)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let p = store.get_pattern("pool_timeout").await.unwrap().unwrap();
    assert_eq!(p.use_count, 16);
    assert_eq!((p.fixes[0].successes, p.fixes[0].failures), (16, 8));
    assert!((p.confidence - 0.24).abs() < 1e-9, "{}", p.confidence);
}

#[tokio::test]
async fn bad_locations_and_closed_stores_give_clear_errors() {
    let err = SqliteStore::open("  ").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // A directory that cannot be created: its parent is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(file.join("selfheal.db").to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("not-a-dir"), "{err}");

    let err = SqliteStore::open("postgres://localhost/selfheal")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let err = SqliteStore::open("sqlite://x.db?mode=sideways")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let store = SqliteStore::in_memory().await.unwrap();
    store.close().await;
    let err = store.list_patterns().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

#[tokio::test]
async fn values_sqlite_cannot_hold_are_refused_not_mangled() {
    let store = SqliteStore::in_memory().await.unwrap();
    let mut p = Pattern::new("forever").keywords(["x"]);
    p.window = Duration::MAX;
    let err = store.add_pattern(&p).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(store.get_pattern("forever").await.unwrap(), None);

    let ok = Pattern::new("ok").keywords(["x"]);
    store.add_pattern(&ok).await.unwrap();
    let err = store
        .record_outcome("ok", "x", true, f64::NAN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(store.get_pattern("ok").await.unwrap(), Some(ok));
}

#[tokio::test]
async fn a_second_store_on_an_open_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selfheal.db");
    let path = path.to_str().unwrap();
    let first = SqliteStore::open_with(path, unseeded()).await.unwrap();
    // Waits out the busy timeout (5 s) for the lock the first store holds.
    let err = SqliteStore::open_with(path, unseeded()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains("another process has it open"),
        "{err}"
    );
    first
        .save_incident(&incident("disk", IncidentStatus::Open, now()))
        .await
        .unwrap();
    first.close().await;
    SqliteStore::open_with(path, unseeded()).await.unwrap();
}
